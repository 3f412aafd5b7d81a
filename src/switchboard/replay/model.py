"""A recorded call as a replay sees it: what the caller said, when, and what came back.

Pure data. ``number`` is the caller line a turn belongs to, counted from 1: the reply
to the N-th caller line is turn N, whatever else happened in between (reminders carry
the number of the line they followed, and are never counted as caller turns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RecordedReply:
    """What the agent did in answer to one request."""

    text: str
    end_call: bool = False
    transfer_number: str | None = None
    digits: str | None = None
    #: names of the tools the agent reported while answering, in order
    tool_calls: tuple[str, ...] = ()
    ttfb_ms: float | None = None


@dataclass(frozen=True, slots=True)
class RecordedTurn:
    """One caller line (or one silence that drew a reminder) and the recorded reply."""

    number: int
    #: ``None``: the caller was silent and the agent was reminded
    caller: str | None
    #: ``None``: the recording holds no reply to this line
    reply: RecordedReply | None
    #: silence before the turn, recorded (seconds, unscaled)
    pause_s: float = 0.0
    #: time from one word's end to the next word's end (seconds, unscaled)
    word_gaps_s: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordedCall:
    call_id: str
    agent_id: str = ""
    dynamic_variables: dict[str, str] | None = None
    metadata: Any = None
    greeting: RecordedReply | None = None
    turns: tuple[RecordedTurn, ...] = ()
    #: top-level fields of a Retell call object that retell-sdk's types do not know (a
    #: newer API, or a renamed field): ignored, and named in a warning
    unknown_fields: tuple[str, ...] = ()
    #: when the call started (ms since the epoch), when known
    start_timestamp: int | None = None
    #: where the call came from, for messages ("calls.json: call 3")
    origin: str = field(default="", compare=False)

    @property
    def caller_turns(self) -> int:
        return sum(1 for turn in self.turns if turn.caller is not None)
