"""Payloads Retell POSTs to us (spec 3.1, 3.4): call-event webhooks and the inbound-call webhook.

Pure and I/O-free. Parse only after the signature has been checked on the raw bytes.

The call object stays a plain dict: it is large, grows with every Retell release, and
subscribers read a handful of fields from it. Unknown event types and unknown fields are
kept, never rejected, so a Retell release cannot make us drop (and 4xx) real events.
The envelope key is ``call``; public examples that read ``data`` fail on every event
(spec section 5, pitfall 1), so a ``data`` envelope gets an error that says so.

Chat events (``chat_started`` ...) carry a chat object; Retell's docs do not show their
envelope, so it is accepted under ``chat`` (seen in public integrations) or ``call``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from switchboard.protocol.errors import ProtocolError

LIFECYCLE_EVENTS = frozenset(
    {"call_started", "call_ended", "call_analyzed", "chat_started", "chat_ended", "chat_analyzed"}
)
TRANSFER_EVENTS = frozenset(
    {"transfer_started", "transfer_bridged", "transfer_cancelled", "transfer_ended"}
)
TRANSCRIPT_UPDATED = "transcript_updated"
#: Inbound webhooks, synchronous: Retell waits for our answer before routing the call.
INBOUND_EVENTS = frozenset({"call_inbound", "chat_inbound"})
KNOWN_EVENTS = LIFECYCLE_EVENTS | TRANSFER_EVENTS | INBOUND_EVENTS | {TRANSCRIPT_UPDATED}

_ENVELOPE_FIELDS = frozenset({"event", "call", "chat", "transfer_destination", "transfer_option"})
_INBOUND_FIELDS = frozenset({"event", "event_timestamp", *INBOUND_EVENTS})

_encoder = msgspec.json.Encoder()


def _str(obj: Mapping[str, Any] | None, key: str) -> str | None:
    value = obj.get(key) if obj is not None else None
    return value if isinstance(value, str) else None


def _int(obj: Mapping[str, Any] | None, key: str) -> int | None:
    value = obj.get(key) if obj is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One call-event webhook: ``{"event": ..., "call": {...}}``.

    ``call`` is the call object (``{}`` for chat events, whose object is ``chat``).
    ``transfer_destination`` / ``transfer_option`` are the top-level extras of transfer
    events, as sent (shapes vary by transfer type). ``extra`` holds any other top-level
    fields. ``raw`` is the exact body that was signed, kept for archival at no cost.
    """

    event: str
    call: dict[str, Any]
    chat: dict[str, Any] | None = None
    transfer_destination: Any = None
    transfer_option: Any = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    raw: bytes = b""

    @property
    def call_id(self) -> str | None:
        return _str(self.call, "call_id")

    @property
    def chat_id(self) -> str | None:
        return _str(self.chat, "chat_id")

    @property
    def agent_id(self) -> str | None:
        return _str(self.call, "agent_id") or _str(self.chat, "agent_id")

    @property
    def call_status(self) -> str | None:
        return _str(self.call, "call_status")

    @property
    def start_timestamp(self) -> int | None:
        return _int(self.call, "start_timestamp")

    @property
    def end_timestamp(self) -> int | None:
        return _int(self.call, "end_timestamp")

    @property
    def disconnection_reason(self) -> str | None:
        return _str(self.call, "disconnection_reason")

    @property
    def is_known(self) -> bool:
        return self.event in KNOWN_EVENTS


class InboundCall(msgspec.Struct, frozen=True, kw_only=True):
    """The inbound-call (or inbound-SMS) webhook: a number is ringing, no call exists yet.

    ``details`` is the ``call_inbound`` / ``chat_inbound`` object (``from_number``,
    ``to_number``, optional ``agent_id``, ``custom_sip_headers`` ...).
    """

    event: str
    details: dict[str, Any]
    event_timestamp: int | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    raw: bytes = b""

    @property
    def from_number(self) -> str | None:
        return _str(self.details, "from_number")

    @property
    def to_number(self) -> str | None:
        return _str(self.details, "to_number")

    @property
    def agent_id(self) -> str | None:
        return _str(self.details, "agent_id")

    def answer(self, overrides: Mapping[str, Any] | None = None) -> bytes:
        """The JSON body to return: ``{}`` (route as configured) or the wrapped overrides.

        ``overrides`` holds the documented keys (``override_agent_id``,
        ``dynamic_variables``, ``metadata``, ``reject`` ...); they are wrapped in the
        ``call_inbound`` / ``chat_inbound`` key Retell expects.
        """
        if not overrides:
            return b"{}"
        return _encoder.encode({self.event: dict(overrides)})


def _object(envelope: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = envelope.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"expected an object, got {type(value).__name__}", f"$.{key}")
    return value


def parse_webhook(body: bytes) -> WebhookEvent | InboundCall:
    """Decode a verified webhook body, or raise ``ProtocolError`` saying what is wrong."""
    try:
        envelope = msgspec.json.decode(body)
    except msgspec.DecodeError as err:
        raise ProtocolError(f"malformed JSON: {err}") from None
    except RecursionError:
        raise ProtocolError("malformed JSON: nested too deeply") from None
    if not isinstance(envelope, dict):
        raise ProtocolError(f"expected a JSON object, got {type(envelope).__name__}", "$")
    event = envelope.get("event")
    if not isinstance(event, str) or not event:
        raise ProtocolError("missing required string field", "$.event")

    if event in INBOUND_EVENTS:
        details = _object(envelope, event)
        if details is None:
            raise ProtocolError("missing required field", f"$.{event}")
        timestamp = _int(envelope, "event_timestamp")
        if timestamp is None and envelope.get("event_timestamp") is not None:
            raise ProtocolError("expected an integer", "$.event_timestamp")
        return InboundCall(
            event=event,
            details=details,
            event_timestamp=timestamp,
            extra={k: v for k, v in envelope.items() if k not in _INBOUND_FIELDS},
            raw=body,
        )

    call = _object(envelope, "call")
    chat = _object(envelope, "chat")
    if call is None and (chat is None or not event.startswith("chat_")):
        if "data" in envelope:
            raise ProtocolError("the envelope key is 'call', not 'data'", "$.call")
        raise ProtocolError("missing required field", "$.call")
    return WebhookEvent(
        event=event,
        call=call if call is not None else {},
        chat=chat,
        transfer_destination=envelope.get("transfer_destination"),
        transfer_option=envelope.get("transfer_option"),
        extra={k: v for k, v in envelope.items() if k not in _ENVELOPE_FIELDS},
        raw=body,
    )
