"""Event envelope <-> bus message (key, headers, value), in CloudEvents' binary mode.

The envelope's attributes travel as ``ce_*`` headers, the ``data`` as the JSON value and
``call_id`` as the key, so a Kafka partitioner (and any tool reading the topic) sees the
partition key without parsing the value. Redis Streams stores the same three parts as
stream fields. Decoding never trusts the topic: a message that is not ours, of a type or
version this build does not know, or that does not parse raises a subclass of
:class:`EventDecodeError`, which consumers park as a dead letter.

Whatever arrives, ``decode`` raises nothing else: invalid UTF-8, nesting deep enough for a
``RecursionError``, an integer past 64 bits, a value over ``MAX_VALUE_BYTES`` all become a
:class:`MalformedEvent` with the reason. Text is bounded at this edge too: U+0000 (which
PostgreSQL refuses in ``text``) and lone surrogates (which no UTF-8 store takes) are
replaced by U+FFFD, and a webhook's call object may nest at most ``MAX_DEPTH`` levels, so
no consumer recurses into a hostile structure later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

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


class OversizedEvent(MalformedEvent):
    """A value over ``MAX_VALUE_BYTES``: no consumer holds it whole."""

    reason = "too_large"


#: Largest value a consumer decodes. Twice Kafka's default message limit: a node's event
#: stays far below it (the outbox caps text), so only a foreign or hostile writer hits it.
MAX_VALUE_BYTES = 2 << 20
#: Deepest nesting of a webhook's call object; Retell's own is a handful of levels.
MAX_DEPTH = 32

#: ``\u0000`` or a surrogate escape in the JSON: the only ways such text gets in. A match
#: (rare, and a false positive such as an escaped backslash is harmless) takes the slow path.
_UNSAFE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")


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
    """The event a message holds, or an :class:`EventDecodeError`; never anything else."""
    try:
        return _decode(message)
    except EventDecodeError:
        raise
    except Exception as err:  # RecursionError, UnicodeDecodeError: whatever msgspec raises
        raise MalformedEvent(f"{type(err).__name__}: {err}"[:300]) from None


def clean_text(text: str) -> str:
    """``text`` with U+0000 and lone surrogates replaced by U+FFFD."""
    if text.isascii() and "\x00" not in text:  # the common case, without a regex
        return text
    return _UNSAFE_TEXT.sub("\ufffd", text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _depth_ok(value: Any, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` containers deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return False
                stack.append((child, depth + 1))
    return True


def _safe_value(value: bytes) -> bytes:
    """The JSON value with unsafe text replaced. Slow (a full parse), so only on a match."""
    if b"\\" not in value or _UNSAFE_ESCAPE.search(value) is None:
        return value
    return json.dumps(_clean(json.loads(value)), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def _decode(message: BusMessage) -> Event:
    headers = dict(message.headers)
    if headers.get("ce_specversion") != SPEC_VERSION or "ce_type" not in headers:
        raise ForeignMessage("no CloudEvents headers")
    try:
        type_ = headers["ce_type"].decode()
        version = int(headers["ce_schemaversion"])
        event_id = headers["ce_id"].decode()
        source = headers["ce_source"].decode()
        time = datetime.fromisoformat(headers["ce_time"].decode())
        call_id = clean_text(message.key.decode())
    except (KeyError, ValueError) as err:
        raise MalformedEvent(f"bad headers: {err}") from None
    decoder = _decoders.get((type_, version))
    if decoder is None:
        raise UnknownEvent(f"unknown event {type_!r} v{version}")
    if len(message.value) > MAX_VALUE_BYTES:
        raise OversizedEvent(f"{type_}: {len(message.value)} bytes > {MAX_VALUE_BYTES}")
    try:
        data = decoder.decode(_safe_value(message.value))
    except msgspec.DecodeError as err:
        raise MalformedEvent(f"{type_} v{version}: {err}") from None
    call = getattr(data, "call", None)
    if isinstance(call, dict) and not _depth_ok(call, MAX_DEPTH):
        raise MalformedEvent(f"{type_}: call object nested deeper than {MAX_DEPTH}")
    return Event(
        id=clean_text(event_id),
        type=type_,
        source=clean_text(source),
        time=time,
        call_id=call_id,
        schema_version=version,
        data=data,
    )


def encode_all(events: Sequence[Event]) -> list[BusMessage]:
    return [encode(event) for event in events]
