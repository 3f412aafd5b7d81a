"""Messages Retell sends us, discriminated by ``interaction_type`` (spec 1.4).

Unknown fields are tolerated, yet noticed: these public classes forbid them, so the codec's
first (and, on the happy path, only) decode fails on a new field; the codec then decodes
with lenient private twins and converts back, reporting the field (see ``codec``).

``words`` timings are kept as raw JSON: no agent needs them per turn, and decoding a word
list for every utterance of a growing transcript on every frame would dominate the cost
of a turn. ``Utterance.word_timings()`` decodes them on demand.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

#: The largest ``response_id`` accepted: a signed 64-bit integer, what every store (SQLite
#: ``INTEGER``, PostgreSQL ``BIGINT``) and every consumer can hold. A frame outside
#: 0..2**63-1 is a malformed frame, refused here rather than published and choked on later.
MAX_RESPONSE_ID = 2**63 - 1
ResponseId = Annotated[int, msgspec.Meta(ge=0, le=MAX_RESPONSE_ID)]

_EMPTY_WORDS = msgspec.Raw(b"[]")


class Word(msgspec.Struct, frozen=True):
    word: str
    start: float
    end: float


_words_decoder = msgspec.json.Decoder(list[Word])


class Utterance(msgspec.Struct, frozen=True):
    """One transcript entry. ``role`` is a plain string: unknown roles are tolerated."""

    role: str
    content: str
    words: msgspec.Raw = _EMPTY_WORDS

    @property
    def is_agent(self) -> bool:
        return self.role == "agent"

    def word_timings(self) -> list[Word]:
        return _words_decoder.decode(self.words) if self.words else []


class PingPong(
    msgspec.Struct, tag="ping_pong", tag_field="interaction_type", forbid_unknown_fields=True
):
    timestamp: int


class CallDetails(
    msgspec.Struct, tag="call_details", tag_field="interaction_type", forbid_unknown_fields=True
):
    call: dict[str, Any]


class UpdateOnly(
    msgspec.Struct, tag="update_only", tag_field="interaction_type", forbid_unknown_fields=True
):
    """Transcript or turn-taking changed. Never answered, never supersedes a request.

    The transcript stays raw: nothing on the per-frame path reads it.
    """

    transcript: msgspec.Raw
    turntaking: str | None = None
    transcript_with_tool_calls: msgspec.Raw | None = None


class ResponseRequired(
    msgspec.Struct,
    tag="response_required",
    tag_field="interaction_type",
    forbid_unknown_fields=True,
):
    response_id: ResponseId
    transcript: list[Utterance]
    transcript_with_tool_calls: list[dict[str, Any]] | None = None


class ReminderRequired(
    msgspec.Struct,
    tag="reminder_required",
    tag_field="interaction_type",
    forbid_unknown_fields=True,
):
    response_id: ResponseId
    transcript: list[Utterance]
    transcript_with_tool_calls: list[dict[str, Any]] | None = None


InboundMessage = PingPong | CallDetails | UpdateOnly | ResponseRequired | ReminderRequired
