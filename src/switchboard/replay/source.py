"""Recorded calls from where they are kept: Retell call objects (JSON) or the archive.

A JSON file holds what Retell's list-calls API returns (an array of call objects) or one
call object. Each is validated with the official ``retell-sdk`` types
(``PhoneCallResponse``/``WebCallResponse``), so a field Retell renames or retypes fails
here, loudly, instead of replaying a call with half its turns. What a call must have
for a replay (a transcript) is checked on top.

The transcript is read from ``transcript_with_tool_calls`` when present (it also holds
tool calls and DTMF), else from ``transcript_object``. Consecutive agent utterances of
one ``response_id`` are one reply; an agent utterance with no caller line before it is
the greeting, or, after a reply, the answer to a reminder (the caller was silent). A
``dtmf`` item after an agent utterance is that reply's digits (how Retell records a
custom LLM's ``digit_to_press`` is not documented; this is also how ``archive export``
writes it). The call's last reply carries its end: ``disconnection_reason:
agent_hangup`` is an ``end_call``, a ``transfer_destination`` a transfer.

An archive (a SQLite file or a ``postgresql://`` URL) gives every call with its
non-superseded turns in ``response_id`` order; the silence before a turn is the time
from the previous turn's completion to this request, on the node's clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from switchboard.replay.model import RecordedCall, RecordedReply, RecordedTurn

_SQLITE_MAGIC = b"SQLite format 3\x00"


class SourceError(ValueError):
    """A source that cannot be replayed; the message is one line naming where and why."""


def is_archive_url(source: str) -> bool:
    return source.startswith(("postgres://", "postgresql://", "sqlite://"))


def load_source(source: str, since: str | None = None) -> list[RecordedCall]:
    """``read_source`` in a fresh event loop."""
    return asyncio.run(read_source(source, since))


async def read_source(source: str, since: str | None = None) -> list[RecordedCall]:
    """Every call of ``source`` (a JSON file, a SQLite archive or a PostgreSQL URL).
    ``since`` (RFC 3339) keeps only archived calls started at or after it."""
    if is_archive_url(source):
        return await load_archive(source, since)
    text = await asyncio.to_thread(_read_file, source)
    if text is None:
        return await load_archive(source, since)
    return parse_calls_json(text, source)


def _read_file(source: str) -> str | None:
    """The JSON text of ``source``, or ``None`` when it is a SQLite archive."""
    path = Path(source)
    if not path.is_file():
        raise SourceError(f"{source}: no such file")
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
        if head == _SQLITE_MAGIC:
            return None
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise SourceError(f"{source}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SourceError(f"{source}: not UTF-8 text: {err.reason}") from None


# ---------------------------------------------------------------- Retell call objects


def parse_calls_json(text: str, origin: str = "<json>") -> list[RecordedCall]:
    """Retell call objects (an array, or one object) as recorded calls."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceError(
            f"{origin}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "is the export complete?"
        ) from None
    if isinstance(raw, dict):
        items: list[Any] = [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        raise SourceError(f"{origin}: expected a call object or an array of them")
    if not items:
        raise SourceError(f"{origin}: no calls in the file")
    return [parse_call_object(item, f"{origin}: call {i}") for i, item in enumerate(items, 1)]


def _validate(obj: Any, where: str) -> Any:
    """The call as a ``retell-sdk`` model (phone or web call, by its ``call_type``)."""
    from pydantic import ValidationError
    from retell.types.phone_call_response import PhoneCallResponse
    from retell.types.web_call_response import WebCallResponse

    if not isinstance(obj, dict):
        raise SourceError(f"{where}: not a call object")
    model = WebCallResponse if obj.get("call_type") == "web_call" else PhoneCallResponse
    try:
        return model.model_validate(obj)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(part) for part in first["loc"]) or "(call)"
        call_id = obj.get("call_id")
        named = f" ({call_id})" if isinstance(call_id, str) else ""
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise SourceError(f"{where}{named}: {loc}: {first['msg']}{more}") from None


def parse_call_object(obj: Any, where: str = "call") -> RecordedCall:
    """One Retell call object (a dict as Retell sends it) as a recorded call."""
    call = _validate(obj, where)
    where = f"{where} ({call.call_id})"
    items: Sequence[Any] = call.transcript_with_tool_calls or call.transcript_object or []
    if not items:
        raise SourceError(f"{where}: no transcript_object (nothing to replay)")
    builder = _Builder(where)
    for item in items:
        builder.add(item)
    greeting, turns = builder.finish(
        end_call=call.disconnection_reason == "agent_hangup",
        transfer_number=call.transfer_destination,
    )
    if not any(turn.caller is not None for turn in turns) and greeting is None:
        raise SourceError(f"{where}: the transcript has no caller line and no greeting")
    variables = call.retell_llm_dynamic_variables
    return RecordedCall(
        call_id=call.call_id,
        agent_id=call.agent_id,
        dynamic_variables=dict(variables) if variables is not None else None,
        metadata=call.metadata,
        greeting=greeting,
        turns=tuple(turns),
        start_timestamp=call.start_timestamp,
        unknown_fields=tuple(sorted(call.model_extra or {})),
        origin=where,
    )


@dataclass(slots=True)
class _Reply:
    parts: list[str] = field(default_factory=list)
    response_id: int | None = None
    tools: list[str] = field(default_factory=list)
    digits: str = ""
    end_call: bool = False
    transfer_number: str | None = None

    def freeze(self) -> RecordedReply:
        return RecordedReply(
            text=" ".join(p.strip() for p in self.parts if p.strip()),
            end_call=self.end_call,
            transfer_number=None if self.end_call else self.transfer_number,
            digits=self.digits or None,
            tool_calls=tuple(self.tools),
        )


@dataclass(slots=True)
class _Turn:
    number: int
    caller: str | None
    pause_s: float
    gaps: tuple[float, ...]
    reply: _Reply | None = None


def _times(words: Iterable[Any]) -> list[tuple[float, float]]:
    out = []
    for w in words or ():
        if w.start is not None and w.end is not None:
            out.append((float(w.start), float(w.end)))
    return out


class _Builder:
    """Walks the transcript items in order (see the module docstring for the rules)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.greeting: _Reply | None = None
        self.turns: list[_Turn] = []
        self.current: _Reply | None = None  # the reply the latest agent words belong to
        self.tools: list[str] = []  # tools reported before the reply they belong to
        self.number = 0
        self.last_end = 0.0

    def _pause(self, times: list[tuple[float, float]]) -> float:
        return max(0.0, times[0][0] - self.last_end) if times else 0.0

    def _heard(self, times: list[tuple[float, float]]) -> None:
        if times:
            self.last_end = max(self.last_end, times[-1][1])

    def add(self, item: Any) -> None:
        role = getattr(item, "role", None)
        if role == "user":
            times = _times(item.words)
            self.number += 1
            gaps = tuple(max(0.0, b[1] - a[1]) for a, b in itertools.pairwise(times))
            self.turns.append(_Turn(self.number, item.content, self._pause(times), gaps))
            self.current = None
            self._heard(times)
        elif role == "agent":
            self._agent(item)
        elif role == "tool_call_invocation":
            (self.current.tools if self.current is not None else self.tools).append(item.name)
        elif role == "dtmf" and self.current is not None:
            self.current.digits += item.digit
        # transfer_target, node_transition, sms, injected, tool results: nothing to replay

    def _agent(self, item: Any) -> None:
        times = _times(item.words)
        metadata = getattr(item, "metadata", None)
        rid = getattr(metadata, "response_id", None) if metadata is not None else None
        current = self.current
        if current is not None and rid is not None and rid == current.response_id:
            current.parts.append(item.content)
            self._heard(times)
            return
        reply = _Reply(parts=[item.content], response_id=rid, tools=self.tools)
        self.tools = []
        last = self.turns[-1] if self.turns else None
        if last is not None and last.caller is not None and last.reply is None:
            last.reply = reply
        elif last is None and self.greeting is None:
            self.greeting = reply
        else:  # the agent spoke again with no caller line between: a reminder's answer
            self.turns.append(_Turn(self.number, None, self._pause(times), (), reply))
        self.current = reply
        self._heard(times)

    def finish(
        self, end_call: bool, transfer_number: str | None
    ) -> tuple[RecordedReply | None, list[RecordedTurn]]:
        last: _Reply | None = None
        for turn in reversed(self.turns):
            if turn.reply is not None:
                last = turn.reply
                break
        last = last or self.greeting
        if last is not None:
            last.end_call = last.end_call or end_call
            if transfer_number and not last.end_call:
                last.transfer_number = transfer_number
        turns = [
            RecordedTurn(
                number=t.number,
                caller=t.caller,
                reply=None if t.reply is None else t.reply.freeze(),
                pause_s=round(t.pause_s, 3),
                word_gaps_s=tuple(round(g, 3) for g in t.gaps),
            )
            for t in self.turns
        ]
        return (None if self.greeting is None else self.greeting.freeze()), turns


# ---------------------------------------------------------------- the archive


_CALLS = "SELECT call_id, started_at, end_how, dynamic_variables, metadata FROM calls"
_CALLS_ORDER = " ORDER BY COALESCE(started_at, ended_at, ''), call_id"
_TURNS = (
    "SELECT call_id, response_id, kind, caller_line, reply, ttfb_ms, ttc_ms, at,"
    " end_call, transfer_number, digits FROM turns WHERE superseded = 0"
    " ORDER BY call_id, response_id, at"
)


async def load_archive(url: str, since: str | None = None) -> list[RecordedCall]:
    """Every archived call (started at or after ``since``) with at least one turn."""
    from switchboard.services.archive import open_archive

    try:
        archive = await open_archive(url)
    except Exception as err:
        raise SourceError(f"{url}: cannot open the archive: {err}") from None
    try:
        if since is None:
            calls = await archive.fetch(_CALLS + _CALLS_ORDER)
        else:
            calls = await archive.fetch(_CALLS + " WHERE started_at >= ?" + _CALLS_ORDER, since)
        turns = await archive.fetch(_TURNS)
    except Exception as err:
        raise SourceError(f"{url}: cannot read the archive: {err}") from None
    finally:
        await archive.close()
    by_call: dict[str, list[tuple[Any, ...]]] = {}
    for row in turns:
        by_call.setdefault(row[0], []).append(row)
    out = []
    for call_id, started, end_how, variables, metadata in calls:
        rows = by_call.get(call_id)
        if rows:
            call = _archived_call(call_id, end_how, variables, metadata, rows, f"{url}: {call_id}")
            if started:
                call = replace(call, start_timestamp=round(_instant(started) * 1000))
            out.append(call)
    return out


def _instant(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _archived_call(
    call_id: str,
    end_how: str | None,
    variables: str | None,
    metadata: str | None,
    rows: list[tuple[Any, ...]],
    origin: str,
) -> RecordedCall:
    greeting: RecordedReply | None = None
    turns: list[RecordedTurn] = []
    number = 0
    seen: set[int] = set()
    previous_done: float | None = None
    for _cid, rid, kind, line, text, ttfb, ttc, at, end_call, transfer, digits in rows:
        if rid in seen:  # answered again after a reconnect: the first answer stands
            continue
        seen.add(rid)
        reply = RecordedReply(
            text=text,
            end_call=bool(end_call),
            transfer_number=None if end_call else transfer,
            digits=digits,
            ttfb_ms=ttfb,
        )
        done = _instant(at)
        asked = done - (ttc or 0.0) / 1000.0
        pause = 0.0 if previous_done is None else max(0.0, asked - previous_done)
        previous_done = done
        if kind == "greeting":
            greeting = reply
        elif kind == "reminder":
            turns.append(RecordedTurn(number, None, reply, round(pause, 3)))
        else:
            number += 1
            turns.append(RecordedTurn(number, line, reply, round(pause, 3)))
    # Rows written before the archive kept each turn's end_call: the call's end says it.
    last = turns[-1].reply if turns else None
    if (
        end_how == "agent_ended"
        and last is not None
        and not any(t.reply and t.reply.end_call for t in turns)
    ):
        turns[-1] = replace(turns[-1], reply=replace(last, end_call=True))
    return RecordedCall(
        call_id=call_id,
        dynamic_variables=json.loads(variables) if variables else None,
        metadata=json.loads(metadata) if metadata else None,
        greeting=greeting,
        turns=tuple(turns),
        origin=origin,
    )
