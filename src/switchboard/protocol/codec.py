"""Decode inbound frames and encode outbound ones.

Decoding is two-tier so that unknown fields cost nothing on the happy path yet are still
noticed: the public classes forbid unknown fields; only when a frame fails on one is it
decoded again with lenient private twins and converted back to the public type, and the
field is reported through ``FrameDecoder.unknown_fields`` so the caller can log it.

Every failure of either decode, whatever msgspec raises (a ``ValidationError``, a
``DecodeError`` further on in the frame, a ``RecursionError`` for deep nesting), leaves as
a ``ProtocolError``: the caller logs and ignores it, and the socket stays up.
"""

from __future__ import annotations

import re
from typing import cast

import msgspec

from switchboard.protocol.errors import FrameTooLarge, ProtocolError, UnknownInteraction
from switchboard.protocol.inbound import (
    CallDetails,
    InboundMessage,
    PingPong,
    ReminderRequired,
    ResponseRequired,
    UpdateOnly,
)
from switchboard.protocol.outbound import OutboundMessage


class _LenientPingPong(PingPong, forbid_unknown_fields=False):
    pass


class _LenientCallDetails(CallDetails, forbid_unknown_fields=False):
    pass


class _LenientUpdateOnly(UpdateOnly, forbid_unknown_fields=False):
    pass


class _LenientResponseRequired(ResponseRequired, forbid_unknown_fields=False):
    pass


class _LenientReminderRequired(ReminderRequired, forbid_unknown_fields=False):
    pass


_PUBLIC: dict[type[msgspec.Struct], type[msgspec.Struct]] = {
    _LenientPingPong: PingPong,
    _LenientCallDetails: CallDetails,
    _LenientUpdateOnly: UpdateOnly,
    _LenientResponseRequired: ResponseRequired,
    _LenientReminderRequired: ReminderRequired,
}

_strict: msgspec.json.Decoder[InboundMessage] = msgspec.json.Decoder(InboundMessage)
_lenient: msgspec.json.Decoder[InboundMessage] = msgspec.json.Decoder(
    _LenientPingPong
    | _LenientCallDetails
    | _LenientUpdateOnly
    | _LenientResponseRequired
    | _LenientReminderRequired
)
_encoder = msgspec.json.Encoder()

_AT = re.compile(r"^(?P<reason>.*?)(?: - at `(?P<path>[^`]+)`)?$", re.DOTALL)
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`")
_TAG_VALUE = re.compile(r"^Invalid value '(?P<value>.*)'$", re.DOTALL)

DEFAULT_MAX_FRAME_BYTES = 1 << 20
_TOO_DEEP = "malformed JSON: nested too deeply"

# Salvage of a request whose frame does not decode (see ``undecodable_request``).
# The head of an ``update_only`` frame as Retell (and the simulator) writes it.
_UPDATE_HEAD = '{"interaction_type":"update_only",'
_UPDATE_HEAD_BYTES = _UPDATE_HEAD.encode()
#: How much of a frame ``FrameDecoder.skips_head`` needs to see.
UPDATE_HEAD_SIZE = len(_UPDATE_HEAD_BYTES)

_REQUEST_TYPE = re.compile(rb'"interaction_type"\s*:\s*"(response_required|reminder_required)"')
_RESPONSE_ID = re.compile(rb'"response_id"\s*:\s*(\d{1,18})\s*[,}]')


def _split(err: Exception) -> tuple[str, str | None]:
    m = _AT.match(str(err))
    if m is None:  # pragma: no cover - the pattern matches any string
        return str(err), None
    return m.group("reason"), m.group("path")


class FrameDecoder:
    """Decodes one frame at a time; collects unknown field paths for the caller to log."""

    __slots__ = ("_updates", "check_updates_every", "max_frame_bytes", "unknown_fields")

    def __init__(
        self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, check_updates_every: int = 1
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.check_updates_every = check_updates_every
        self.unknown_fields: list[str] = []
        self._updates = 0

    def skips_update(self, data: str | bytes) -> bool:
        """Whether ``data`` is an ``update_only`` frame this decoder leaves unread.

        An update carries the whole transcript (tens of KB late in a call, several times a
        turn) and nothing a node acts on, yet validating it was a quarter of a busy node's
        CPU. With ``check_updates_every`` N > 1 the first update of a decoder and every Nth
        after it are decoded as any frame (so a sender that malforms updates or adds fields
        is still reported); the others are recognised by their head alone and skipped. A
        frame that does not start exactly so, or is over the size limit, is decoded.
        """
        head = data[:UPDATE_HEAD_SIZE]
        if isinstance(head, str):
            head = head.encode("utf-8", "surrogatepass")  # never raises; a match is ASCII
        return self.skips_head(head, len(data))

    def skips_head(self, head: bytes, size: int) -> bool:
        """``skips_update`` for a frame of ``size`` bytes known only by its first
        ``UPDATE_HEAD_SIZE`` bytes (``head``): a WebSocket reader can then drop a skipped
        frame without unmasking the rest of it. Counts the update as ``skips_update`` does,
        so ask once per frame, one way or the other."""
        if (
            self.check_updates_every <= 1
            or size > self.max_frame_bytes
            or head != _UPDATE_HEAD_BYTES
        ):
            return False
        self._updates += 1
        return self._updates % self.check_updates_every != 1

    def decode(self, data: str | bytes) -> InboundMessage:
        """Return the typed message, or raise a ``ProtocolError`` naming the field."""
        if len(data) > self.max_frame_bytes:
            raise FrameTooLarge(len(data), self.max_frame_bytes)
        try:
            return _strict.decode(data)
        except msgspec.ValidationError as err:
            reason, path = _split(err)
            unknown = _UNKNOWN_FIELD.match(reason)
            if unknown is None:
                raise self._classify(reason, path) from None
            unknown_field = f"{path or '$'}.{unknown.group('name')}"
        except msgspec.DecodeError as err:
            raise ProtocolError(f"malformed JSON: {_split(err)[0]}") from None
        except RecursionError:
            raise ProtocolError(_TOO_DEEP) from None
        # The strict decode stopped at the unknown field: the rest of the frame is unread
        # and may still be malformed, so this decode can fail in every way the first can.
        try:
            lenient = _lenient.decode(data)
        except msgspec.ValidationError as err:
            raise self._classify(*_split(err)) from None
        except msgspec.DecodeError as err:
            raise ProtocolError(f"malformed JSON: {_split(err)[0]}") from None
        except RecursionError:
            raise ProtocolError(_TOO_DEEP) from None
        self.unknown_fields.append(unknown_field)
        public = _PUBLIC[type(lenient)]
        fields = {name: getattr(lenient, name) for name in public.__struct_fields__}
        return cast(InboundMessage, public(**fields))

    @staticmethod
    def _classify(reason: str, path: str | None) -> ProtocolError:
        if path == "$.interaction_type":
            tag = _TAG_VALUE.match(reason)
            if tag is not None:
                return UnknownInteraction(tag.group("value"))
        if reason == "Object missing required field `interaction_type`":
            return ProtocolError("missing required field", "$.interaction_type")
        missing = re.match(r"^Object missing required field `(?P<name>[^`]*)`$", reason)
        if missing is not None:
            return ProtocolError("missing required field", f"{path or '$'}.{missing['name']}")
        return ProtocolError(reason, path or "$")


def undecodable_request(data: str | bytes) -> tuple[str, int] | None:
    """``(interaction_type, response_id)`` of a request frame that failed to decode, if
    both can be read unambiguously; ``None`` otherwise.

    Retell waits for an answer to every request: a frame that is broken further on (a lone
    surrogate in the transcript, say) must still get a fallback and ``content_complete``
    rather than silence. Only the error path calls this; a key that appears more than once
    (a nested object could hold one) is ambiguous and salvages nothing.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    kinds = _REQUEST_TYPE.findall(raw)
    ids = _RESPONSE_ID.findall(raw)
    if len(kinds) != 1 or len(ids) != 1:
        return None
    return kinds[0].decode(), int(ids[0])


def decode_inbound(
    data: str | bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> InboundMessage:
    """Decode one inbound frame (convenience wrapper around ``FrameDecoder``)."""
    return FrameDecoder(max_frame_bytes).decode(data)


def encode(message: OutboundMessage) -> str:
    """Serialise an outbound message to the text a WebSocket text frame carries."""
    return _encoder.encode(message).decode()
