"""Judge the event pipeline after a chaos run (pure, no I/O).

The evidence (``event_evidence.py`` reads it from the real parts) is what the callers
heard and what the services hold afterwards; the verdict holds when:

- **every answered turn is archived exactly once**: each turn the simulator saw
  completed (its ``content_complete`` read) has exactly one archived, non-superseded row
  for its call and response id. Missing rows and second rows fail the run; archived
  turns the simulator never saw completed are only counted (a turn completed on a node
  whose socket dropped before the caller read it is archived, and then answered again
  from the saved reply without a second event);
- **every escalation is carried out exactly once**: a decision ``done`` was heard by its
  caller as exactly one handoff, a decision ``failed`` (the call was over when the
  service acted) as none, no decision is left ``pending``, and no caller heard a
  handoff no decision explains;
- **every dead letter is counted**: per service, the letters ``deadletters list``
  shows equal what its ``/metrics`` counts, and a poison message written during the run
  is parked exactly once by every service;
- **nothing was lost on the way**: no service counted a gap (entries trimmed before it
  read them) and no node dropped an event;
- **an oversized turn is answered and archived once, cut to the cap**.

Event latency (the node's event time to the archive's commit) is reported, p50 and p99,
over the answered turns; it is not judged (a bus down for a minute is a minute of it).
"""

from __future__ import annotations

import math
from collections import Counter

import msgspec

#: The characters a turn event keeps of a caller line (``calls.publisher.MAX_TEXT_CHARS``).
CAPPED_CHARS = 16_384
MAX_SAMPLES = 10


class TurnKey(msgspec.Struct, frozen=True, array_like=True):
    call_id: str
    response_id: int


class ArchivedTurn(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    response_id: int
    superseded: bool = False
    #: the node's event time and the archive's commit, Unix seconds
    at: float | None = None
    applied_at: float | None = None
    caller_chars: int = 0


class EscalationRow(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    rule: str
    action: str
    status: str  # pending | done | failed
    detail: str = ""


class DeadLetterTally(msgspec.Struct, kw_only=True):
    """One service's dead letters: what ``deadletters list`` shows, what ``/metrics``
    counts, and the keys of the letters."""

    group: str
    listed: int = 0
    #: ``None``: its /metrics could not be read
    counted: int | None = None
    keys: list[str] = msgspec.field(default_factory=list)
    #: entries this group had not read and the bus no longer held (``/metrics``)
    gaps: int = 0


class EventEvidence(msgspec.Struct, kw_only=True):
    #: turns the callers of the chaos run (and the nemesis's own callers) heard completed
    answered: list[TurnKey] = msgspec.field(default_factory=list)
    #: the archive's turn rows for those calls
    archived: list[ArchivedTurn] = msgspec.field(default_factory=list)
    #: the escalation service's decisions for those calls
    escalations: list[EscalationRow] = msgspec.field(default_factory=list)
    #: per call id: handoffs its caller heard from a service
    handoffs: dict[str, int] = msgspec.field(default_factory=dict)
    #: calls whose script asks for the escalation
    escalating_calls: list[str] = msgspec.field(default_factory=list)
    dead_letters: list[DeadLetterTally] = msgspec.field(default_factory=list)
    #: keys of the poison messages the nemesis wrote
    poison_keys: list[str] = msgspec.field(default_factory=list)
    #: turns whose caller line was over the cap (the ``oversized`` fault's)
    oversized: list[TurnKey] = msgspec.field(default_factory=list)
    #: the nodes' outbox counters (as their /metrics read at the end; a restarted node
    #: starts again from zero)
    node_dropped: int = 0
    node_parked: int = 0
    #: the services caught up before the deadline (every answered turn archived, no
    #: decision pending, the metrics counting every letter)
    caught_up: bool = True
    #: seconds from the end of the calls until the evidence was read
    settle_s: float = 0.0


class EventFindings(msgspec.Struct, kw_only=True):
    answered_turns: int = 0
    archived_once: int = 0
    not_archived: int = 0
    archived_twice: int = 0
    #: archived rows for turns the callers did not see completed (counted, not judged)
    archived_unanswered: int = 0
    escalations_decided: int = 0
    escalations_done: int = 0
    escalations_failed: int = 0
    escalations_pending: int = 0
    #: escalating calls without a decision (a turn stale by the time it was read, by design)
    escalations_not_decided: int = 0
    handoffs_heard: int = 0
    handoffs_twice: int = 0
    handoffs_unexplained: int = 0
    done_not_heard: int = 0
    dead_letters_listed: int = 0
    dead_letters_counted: int = 0
    poison_parked: dict[str, int] = msgspec.field(default_factory=dict)
    gaps: int = 0
    node_dropped: int = 0
    node_parked: int = 0
    oversized_capped: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    settle_s: float = 0.0
    passed: bool = True
    reasons: list[str] = msgspec.field(default_factory=list)
    samples: list[str] = msgspec.field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``None`` when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def check_events(e: EventEvidence) -> EventFindings:
    f = EventFindings(settle_s=round(e.settle_s, 3))
    _turns(e, f)
    _escalations(e, f)
    _dead_letters(e, f)
    f.node_dropped, f.node_parked = e.node_dropped, e.node_parked
    f.reasons = _reasons(e, f)
    f.passed = not f.reasons
    return f


def _sample(f: EventFindings, text: str) -> None:
    if len(f.samples) < MAX_SAMPLES:
        f.samples.append(text)


def _turns(e: EventEvidence, f: EventFindings) -> None:
    answered = set(e.answered)
    f.answered_turns = len(answered)
    rows = [r for r in e.archived if not r.superseded]
    counts = Counter(TurnKey(r.call_id, r.response_id) for r in rows)
    latencies: list[float] = []
    for key in sorted(answered, key=lambda k: (k.call_id, k.response_id)):
        n = counts.get(key, 0)
        if n == 0:
            f.not_archived += 1
            _sample(f, f"turn {key.response_id} of {key.call_id}: answered, not archived")
        elif n > 1:
            f.archived_twice += 1
            _sample(f, f"turn {key.response_id} of {key.call_id}: archived {n} times")
        else:
            f.archived_once += 1
    for r in rows:
        key = TurnKey(r.call_id, r.response_id)
        if key not in answered:
            continue
        if r.at is not None and r.applied_at is not None:
            latencies.append(max(0.0, (r.applied_at - r.at) * 1000.0))
    f.archived_unanswered = len(set(counts) - answered)
    f.latency_p50_ms = _round(percentile(latencies, 0.50))
    f.latency_p99_ms = _round(percentile(latencies, 0.99))
    f.latency_max_ms = _round(max(latencies) if latencies else None)
    by_key = {TurnKey(r.call_id, r.response_id): r for r in rows}
    for key in e.oversized:
        row = by_key.get(key)
        if row is not None and counts[key] == 1 and row.caller_chars == CAPPED_CHARS:
            f.oversized_capped += 1
        elif row is not None:
            _sample(f, f"oversized turn of {key.call_id}: archived with {row.caller_chars} chars")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _escalations(e: EventEvidence, f: EventFindings) -> None:
    decided = {row.call_id: row for row in e.escalations}
    f.escalations_decided = len(decided)
    f.handoffs_heard = sum(e.handoffs.values())
    for call_id, row in decided.items():
        heard = e.handoffs.get(call_id, 0)
        if row.status == "done":
            f.escalations_done += 1
            if heard == 0:
                f.done_not_heard += 1
                _sample(f, f"escalation of {call_id} recorded done; the caller heard no handoff")
        elif row.status == "failed":
            f.escalations_failed += 1
            if heard:
                _sample(f, f"escalation of {call_id} recorded failed; the caller heard it")
                f.handoffs_unexplained += 1
        else:
            f.escalations_pending += 1
            _sample(f, f"escalation of {call_id} still {row.status}")
    for call_id, heard in e.handoffs.items():
        if heard > 1:
            f.handoffs_twice += 1
            _sample(f, f"call {call_id}: the caller heard the handoff {heard} times")
        if heard and call_id not in decided:
            f.handoffs_unexplained += 1
            _sample(f, f"call {call_id}: a handoff no escalation decision explains")
    f.escalations_not_decided = sum(1 for c in set(e.escalating_calls) if c not in decided)


def _dead_letters(e: EventEvidence, f: EventFindings) -> None:
    for tally in e.dead_letters:
        f.dead_letters_listed += tally.listed
        f.dead_letters_counted += tally.counted or 0
        f.gaps += tally.gaps
        keys = Counter(tally.keys)
        f.poison_parked[tally.group] = sum(keys[k] for k in set(e.poison_keys))


def _reasons(e: EventEvidence, f: EventFindings) -> list[str]:
    reasons = []
    if not e.caught_up:
        reasons.append(f"the services had not caught up {e.settle_s:.0f} s after the calls ended")
    checks = (
        (f.not_archived, "answered turns not archived"),
        (f.archived_twice, "answered turns archived more than once"),
        (f.escalations_pending, "escalations never carried out (still pending)"),
        (f.done_not_heard, "escalations recorded done that no caller heard"),
        (f.handoffs_twice, "calls handed over more than once"),
        (f.handoffs_unexplained, "handoffs no done escalation explains"),
        (f.gaps, "bus entries lost before a service read them (gaps)"),
        (f.node_dropped, "events dropped by a node's outbox"),
    )
    for count, what in checks:
        if count:
            reasons.append(f"{count} {what}")
    for tally in e.dead_letters:
        if tally.counted is None:
            reasons.append(f"{tally.group}: its /metrics could not be read")
        elif tally.counted != tally.listed:
            reasons.append(
                f"{tally.group}: {tally.listed} dead letters listed, {tally.counted} counted"
            )
    if e.poison_keys:
        for group, parked in sorted(f.poison_parked.items()):
            expected = len(set(e.poison_keys))
            if parked != expected:
                reasons.append(f"{group}: {parked} poison messages parked, {expected} written")
    missing_capped = len(e.oversized) - f.oversized_capped
    if missing_capped:
        reasons.append(f"{missing_capped} oversized turns not archived once, cut to the cap")
    return reasons
