"""The archive as Retell call objects: last week's calls frozen as a regression set.

``switchboard archive export --since 7d --out calls.json`` writes what Retell's list-calls
API returns (an array of call objects), so the same file feeds ``switchboard replay``
whether it came from Retell or from our archive. Every object validates against the
``retell-sdk`` types the replay parses with.

The archive keeps text and timing per turn, not per word, and no phone numbers. So:
calls are written as ``web_call`` (no numbers to invent; ``access_token`` is empty),
each utterance's words are spaced as the simulator speaks them (0.32 s a word), and the
silence before each turn is the recorded one (the time from the previous reply's
completion to this request). An agent's ``digit_to_press`` is a ``dtmf`` item right
after its utterance in ``transcript_with_tool_calls``; the call's end is its
``disconnection_reason`` (``agent_hangup``, ``call_transfer`` with
``transfer_destination``, else ``user_hangup``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from switchboard.replay.model import RecordedCall, RecordedReply

SECONDS_PER_WORD = 0.32
WORD_S = 0.28
#: how long after the caller's last word the reply starts, when no TTFB is recorded
REPLY_GAP_S = 0.5

_RELATIVE = re.compile(r"^(\d+)([dhm])$")


def parse_since(text: str, now: datetime | None = None) -> str:
    """``7d``, ``24h``, ``30m`` (before now) or an ISO date/time, as the archive's
    RFC 3339 UTC text (so it compares with ``started_at`` as text)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        n, unit = int(match.group(1)), match.group(2)
        delta = {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}
        return (now - delta[unit]).isoformat()
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since: expected 7d, 24h, 30m or an ISO date/time, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat()


class _Clock:
    """Audio time of the transcript being written."""

    def __init__(self) -> None:
        self.t = 0.0

    def words(self, text: str, start: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        t = start
        end = start
        for word in text.split():
            end = round(t + WORD_S, 3)
            out.append({"word": word, "start": round(t, 3), "end": end})
            t += SECONDS_PER_WORD
        self.t = end
        return out


def _transcripts(
    call: RecordedCall,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], RecordedReply | None, float]:
    """``transcript_object``, ``transcript_with_tool_calls``, the last reply, the length."""
    clock = _Clock()
    transcript: list[dict[str, Any]] = []
    with_tools: list[dict[str, Any]] = []
    last: RecordedReply | None = None

    def agent(reply: RecordedReply, start: float) -> None:
        nonlocal last
        item = {"role": "agent", "content": reply.text, "words": clock.words(reply.text, start)}
        transcript.append(item)
        with_tools.append(item)
        if reply.digits:
            with_tools.append({"role": "dtmf", "digit": reply.digits})
        last = reply

    if call.greeting is not None:
        agent(call.greeting, 0.0)
    for turn in call.turns:
        start = clock.t + turn.pause_s
        if turn.caller is None:
            if turn.reply is not None:
                agent(turn.reply, start)
            continue
        item = {"role": "user", "content": turn.caller, "words": clock.words(turn.caller, start)}
        transcript.append(item)
        with_tools.append(item)
        if turn.reply is not None:
            gap = REPLY_GAP_S if turn.reply.ttfb_ms is None else turn.reply.ttfb_ms / 1000
            agent(turn.reply, clock.t + gap)
    return transcript, with_tools, last, clock.t


def call_object(call: RecordedCall) -> dict[str, Any]:
    """One recorded call as a Retell call object (``call_status: ended``)."""
    transcript, with_tools, last, length_s = _transcripts(call)
    out: dict[str, Any] = {
        "call_id": call.call_id,
        "call_type": "web_call",
        "access_token": "",
        "agent_id": call.agent_id,
        "agent_version": 0,
        "call_status": "ended",
        "transcript": "\n".join(
            f"{'Agent' if u['role'] == 'agent' else 'User'}: {u['content']}" for u in transcript
        ),
        "transcript_object": transcript,
        "transcript_with_tool_calls": with_tools,
        "disconnection_reason": "user_hangup",
    }
    if last is not None and last.end_call:
        out["disconnection_reason"] = "agent_hangup"
    elif last is not None and last.transfer_number:
        out["disconnection_reason"] = "call_transfer"
        out["transfer_destination"] = last.transfer_number
    if call.start_timestamp is not None:
        out["start_timestamp"] = call.start_timestamp
        out["end_timestamp"] = call.start_timestamp + round(length_s * 1000)
        out["duration_ms"] = round(length_s * 1000)
    if call.dynamic_variables is not None:
        out["retell_llm_dynamic_variables"] = call.dynamic_variables
    if call.metadata is not None:
        out["metadata"] = call.metadata
    return out
