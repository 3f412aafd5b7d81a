"""Event envelope <-> bus message (key, headers, value), in CloudEvents' binary mode.

The envelope's attributes travel as ``ce_*`` headers, the ``data`` as the JSON value and
``call_id`` as the key, so a Kafka partitioner (and any tool reading the topic) sees the
partition key without parsing the value. Redis Streams stores the same three parts as
stream fields. Decoding never trusts the topic: a message that is not ours, of a type or
version this build does not know, or that does not parse raises a subclass of
:class:`EventDecodeError`, which consumers log and skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from switchboard.events.types import REGISTRY, Event

SPEC_VERSION = b"1.0"
CONTENT_TYPE = b"application/json"

Headers = tuple[tuple[str, bytes], ...]


class BusMessage(msgspec.Struct, frozen=True, array_like=True):
    """What a bus carries. ``array_like`` keeps the spill file compact."""

    key: bytes
    headers: Headers
    value: bytes


class EventDecodeError(ValueError):
    """A message on the topic that this build cannot turn into an event."""

    reason = "malformed"


class ForeignMessage(EventDecodeError):
    """Not a switchboard event at all (no CloudEvents headers)."""

    reason = "foreign"


class UnknownEvent(EventDecodeError):
    """A switchboard event of a type or schema version this build does not know."""

    reason = "unknown_type"


class MalformedEvent(EventDecodeError):
    """Ours by its headers, but the headers or the value do not parse."""


_encoder = msgspec.json.Encoder()
_decoders = {key: msgspec.json.Decoder(cls) for key, cls in REGISTRY.items()}


def encode(event: Event) -> BusMessage:
    headers: Headers = (
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", event.id.encode()),
        ("ce_type", event.type.encode()),
        ("ce_source", event.source.encode()),
        ("ce_time", event.time.isoformat().encode()),
        ("ce_schemaversion", str(event.schema_version).encode()),
        ("content-type", CONTENT_TYPE),
    )
    return BusMessage(event.call_id.encode(), headers, _encoder.encode(event.data))


def decode(message: BusMessage) -> Event:
    headers = dict(message.headers)
    if headers.get("ce_specversion") != SPEC_VERSION or "ce_type" not in headers:
        raise ForeignMessage("no CloudEvents headers")
    try:
        type_ = headers["ce_type"].decode()
        version = int(headers["ce_schemaversion"])
        event_id = headers["ce_id"].decode()
        source = headers["ce_source"].decode()
        time = datetime.fromisoformat(headers["ce_time"].decode())
        call_id = message.key.decode()
    except (KeyError, ValueError) as err:
        raise MalformedEvent(f"bad headers: {err}") from None
    decoder = _decoders.get((type_, version))
    if decoder is None:
        raise UnknownEvent(f"unknown event {type_!r} v{version}")
    try:
        data = decoder.decode(message.value)
    except msgspec.DecodeError as err:
        raise MalformedEvent(f"{type_} v{version}: {err}") from None
    return Event(
        id=event_id,
        type=type_,
        source=source,
        time=time,
        call_id=call_id,
        schema_version=version,
        data=data,
    )


def encode_all(events: Sequence[Event]) -> list[BusMessage]:
    return [encode(event) for event in events]
