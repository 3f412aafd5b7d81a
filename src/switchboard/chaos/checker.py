"""Judge a chaos run's history against its fault-free control run (pure, no I/O).

What counts, per call (a call is the same call in both runs: same index, same script):

- **lost**: the call ended in failure (Retell gave up reconnecting, or never connected)
  while its control twin did not.
- **second greeting**: a replacement socket's begin message was not empty.
- **repeated question**: a reply that asks something (it ends with ``?``) and equals an
  earlier reply of the same call, where the control run did not repeat it at that turn.
  With the shipped receptionist that is a form asking again for a name or a day the
  caller already gave: state lost in the fault. A turn the control call never reached
  because it was handed over (an escalation lands when it lands) is not judged.
- **reply differing from control**: a turn both runs answered, with different words.
- **unanswered turn**: a turn asked and never completed, or a turn a call that neither
  failed nor was hung up never reached (it ended early). A call handed over (a transfer,
  by the agent or by the escalation service) owes no more turns, and the turn in flight
  when it was handed over is not owed an answer.
- **time to recover**, per fault: from the fault's start until every call it touched had
  a turn answered again. A call is touched when it lost a socket after the fault began
  (and before the next fault): it recovers when its new socket is open and the first
  turn asked on it is answered (the caller's pause before asking is not counted). Or
  it had a turn in flight at the fault's instant (for a pause: asked while the pause
  lasted): the fault held that turn from the later of its asking and the fault's start
  until its answer, and the recovery is the longest such hold. A touched call that never
  had a turn answered again, and was not done, is *unrecovered*.

The verdict fails with one reason per check that did not hold, so a report says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from switchboard.chaos.history import CallResult, FaultEvent, History, SocketEvent, TurnEvent

#: Kinds whose ``param`` is a time the cluster is out (a pause): the recovery limit
#: allows it on top.
PAUSE_KINDS = frozenset({"redis-pause", "bus-stop"})
#: Simulator violations the checker counts under its own names.
COUNTED_ELSEWHERE = frozenset({"repeated_greeting", "missing_content_complete"})
#: Findings kept per check, for the report.
MAX_SAMPLES = 10


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    #: a fault's time to recover above this fails the run (pauses add their length)
    max_recovery_s: float = 10.0


class Recovery(msgspec.Struct, kw_only=True):
    kind: str
    target: str
    started_at: float
    #: fault start -> the last touched call's first answered turn (``None``: no call
    #: was touched, or some never recovered)
    recovery_s: float | None = None
    touched_calls: int = 0
    unrecovered_calls: int = 0
    #: sockets lost in this fault's window whose replacement greeted the caller again
    second_greetings: int = 0


class Findings(msgspec.Struct, kw_only=True):
    calls: int = 0
    turns_answered: int = 0
    calls_lost: int = 0
    second_greetings: int = 0
    repeated_questions: int = 0
    replies_differing: int = 0
    unanswered_turns: int = 0
    violations: dict[str, int] = msgspec.field(default_factory=dict)
    recoveries: list[Recovery] = msgspec.field(default_factory=list)
    passed: bool = True
    reasons: list[str] = msgspec.field(default_factory=list)
    #: examples behind the counts: ``"call 3 turn 2: ..."``
    samples: list[str] = msgspec.field(default_factory=list)


def check(history: History, control: History | None, limits: Limits | None = None) -> Findings:
    """Every figure of the report, and the verdict with its reasons."""
    limits = limits or Limits()
    f = Findings(calls=len(history.calls))
    twins = {c.call: c for c in control.calls} if control else {}
    f.turns_answered = sum(sum(c.completed) for c in history.calls)
    for call in history.calls:
        twin = twins.get(call.call)
        if call.failed and not (twin is not None and twin.failed):
            f.calls_lost += 1
            _sample(f, f"call {call.call} lost: ended with {call.reason}")
        if call.repeated_greetings:
            f.second_greetings += call.repeated_greetings
            _sample(f, f"call {call.call} greeted again {call.repeated_greetings}x")
        f.repeated_questions += _repeated_questions(call, twin, f)
        f.replies_differing += _differing(call, twin, f)
        f.unanswered_turns += _unanswered(call, twin, f)
    f.violations = {
        k: n for k, n in sorted(history.violations.items()) if n and k not in COUNTED_ELSEWHERE
    }
    f.recoveries = recoveries(history)
    f.reasons = _reasons(f, history, control, limits)
    f.passed = not f.reasons
    return f


def _sample(f: Findings, text: str) -> None:
    if len(f.samples) < MAX_SAMPLES:
        f.samples.append(text)


def is_question(reply: str) -> bool:
    """A reply that asks the caller something: its last sentence ends with ``?``."""
    return reply.rstrip().endswith("?")


def _repeated_questions(call: CallResult, twin: CallResult | None, f: Findings) -> int:
    count = 0
    for i, reply in enumerate(call.replies):
        if not (call.completed[i] and is_question(reply)):
            continue
        earlier = [r for r, done in zip(call.replies[:i], call.completed[:i], strict=True) if done]
        if reply not in earlier:
            continue
        if twin is not None and reply in twin.replies[:i] and twin.replies[i : i + 1] == [reply]:
            continue  # the agent repeats itself here without any fault
        if twin is not None and twin.transferred and len(twin.replies) <= i:
            continue  # the control call was handed over before this turn: it cannot say
        count += 1
        _sample(f, f"call {call.call} turn {i + 1}: asked again: {reply[:60]!r}")
    return count


def _differing(call: CallResult, twin: CallResult | None, f: Findings) -> int:
    if twin is None:
        return 0
    count = 0
    for i, (reply, done) in enumerate(zip(call.replies, call.completed, strict=True)):
        if i >= len(twin.replies) or not done or not twin.completed[i]:
            continue
        if reply != twin.replies[i]:
            count += 1
            _sample(
                f,
                f"call {call.call} turn {i + 1}: {reply[:50]!r}, control: {twin.replies[i][:50]!r}",
            )
    return count


def _owed(call: CallResult) -> list[bool]:
    """``completed`` of the turns owed an answer: all, but the last of a handed-over call."""
    return call.completed[:-1] if call.transferred else call.completed


def _unanswered(call: CallResult, twin: CallResult | None, f: Findings) -> int:
    asked_not_done = sum(1 for done in _owed(call) if not done)
    missing = 0
    if not call.failed and not call.hung_up and not call.transferred:
        expected = len(twin.replies) if twin is not None else call.planned_turns
        missing = max(0, expected - len(call.replies))
    if asked_not_done or missing:
        _sample(
            f,
            f"call {call.call}: {asked_not_done} turns unanswered, {missing} never reached "
            f"(ended with {call.reason})",
        )
    return asked_not_done + missing


def recoveries(history: History) -> list[Recovery]:
    """Time to recover from each fault (see the module docstring)."""
    faults = sorted(history.faults, key=lambda e: e.started_at)
    turns_by_call: dict[int, list[TurnEvent]] = {}
    for t in history.turns:
        turns_by_call.setdefault(t.call, []).append(t)
    sockets_by_call: dict[int, list[SocketEvent]] = {}
    for s in history.sockets:
        sockets_by_call.setdefault(s.call, []).append(s)
    calls = {c.call: c for c in history.calls}
    out = []
    for i, fault in enumerate(faults):
        until = faults[i + 1].started_at if i + 1 < len(faults) else history.ended_at + 1.0
        out.append(_recovery(fault, until, calls, turns_by_call, sockets_by_call))
    return out


def _recovery(
    fault: FaultEvent,
    until: float,
    calls: dict[int, CallResult],
    turns_by_call: dict[int, list[TurnEvent]],
    sockets_by_call: dict[int, list[SocketEvent]],
) -> Recovery:
    start = fault.started_at
    end = fault.ended_at if fault.ended_at is not None else start
    r = Recovery(kind=fault.kind, target=fault.target, started_at=start)
    latest: float | None = None
    for number, call in calls.items():
        if call.hung_up:
            continue
        turns = turns_by_call.get(number, [])
        lost = [s for s in sockets_by_call.get(number, []) if start <= s.lost_at < until]
        hit = [
            t
            for t in turns
            if t.asked_at <= (end if fault.kind in PAUSE_KINDS else start)
            and (t.answered_at is None or t.answered_at > start)
            and not t.superseded
        ]
        if not lost and not hit:
            continue
        answered: float | None
        r.second_greetings += sum(1 for s in lost if s.begin_empty is False)
        if lost:
            since = lost[-1].lost_at
            answered = _served_again(lost[-1], turns)
        else:
            since = start
            held = [
                None if t.answered_at is None else t.answered_at - max(t.asked_at, start)
                for t in hit
            ]
            answered = None if None in held else start + max(h for h in held if h is not None)
        if answered is None:
            if not call.failed and not any(t.asked_at >= since for t in turns):
                continue  # nothing left to ask: the call was done
            r.touched_calls += 1
            r.unrecovered_calls += 1
            continue
        r.touched_calls += 1
        latest = answered if latest is None else max(latest, answered)
    if latest is not None and not r.unrecovered_calls:
        r.recovery_s = round(max(0.0, latest - start), 3)
    return r


def control_clean(control: History) -> bool:
    """Every control call ended well and had every turn it asked answered."""
    return not any(c.failed or not all(_owed(c)) for c in control.calls)


def _served_again(socket: SocketEvent, turns: list[TurnEvent]) -> float | None:
    """When a call that lost ``socket`` was served again: its new socket opened, plus how
    long the first turn asked on it took. The caller's own pause before asking is left
    out, so a caller who was thinking does not make the cluster look slow."""
    if socket.reopened_at is None:
        return None
    for t in sorted(turns, key=lambda t: t.asked_at):
        if t.asked_at >= socket.reopened_at and t.answered_at is not None:
            return socket.reopened_at + (t.answered_at - t.asked_at)
    return None


def _reasons(f: Findings, history: History, control: History | None, limits: Limits) -> list[str]:
    reasons = []
    if control is not None and not control_clean(control):
        bad = sum(1 for c in control.calls if c.failed)
        reasons.append(
            f"the control run was not clean ({bad} calls failed, or turns went unanswered, "
            "without any fault): the cluster is unhealthy before any fault"
        )
    checks: Sequence[tuple[int, str]] = (
        (f.calls_lost, "calls lost"),
        (f.second_greetings, "second greetings"),
        (f.repeated_questions, "repeated questions"),
        (f.replies_differing, "replies differing from control"),
        (f.unanswered_turns, "unanswered turns"),
    )
    for count, what in checks:
        if count:
            reasons.append(f"{count} {what}")
    if f.violations:
        shown = ", ".join(f"{k} {n}" for k, n in f.violations.items())
        reasons.append(f"protocol violations: {shown}")
    for fault in history.faults:
        if not fault.ok:
            reasons.append(
                f"fault {fault.kind} on {fault.target} was not carried out: {fault.detail}"
            )
    events = {(e.kind, e.target, e.started_at): e for e in history.faults}
    for r in f.recoveries:
        event = events.get((r.kind, r.target, r.started_at))
        if r.unrecovered_calls:
            reasons.append(
                f"after {r.kind} on {r.target}: {r.unrecovered_calls} calls never had a turn "
                "answered again"
            )
            continue
        allowed = limits.max_recovery_s
        if event is not None and r.kind in PAUSE_KINDS and event.param:
            allowed += event.param
        if r.recovery_s is not None and r.recovery_s > allowed:
            reasons.append(
                f"after {r.kind} on {r.target}: recovered in {r.recovery_s:.1f} s > {allowed:g} s"
            )
    return reasons
