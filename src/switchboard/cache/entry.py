"""One stored reply, as bytes: what it answers and the chunks it was spoken in.

Entries are msgpack with a schema tag. Anything under a cache key that does not decode
to this shape, or that belongs to another agent digest, is *foreign*: the caller ignores
and deletes it, and the turn goes to the LLM.
"""

from __future__ import annotations

import time

import msgspec

SCHEMA = "switchboard.cache/1"


class Entry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    schema: str = SCHEMA
    digest: str
    #: the caller's line as heard (the semantic guards compare raw lines)
    caller: str
    #: the normalised agent line before it (the context it answers in)
    context: str
    chunks: list[str]
    created: float = msgspec.field(default_factory=time.time)


class VectorRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A semantic index row as the backend keeps it: context id and float32 vector bytes."""

    context: str
    vector: bytes


_entry_decoder = msgspec.msgpack.Decoder(Entry)
_vector_decoder = msgspec.msgpack.Decoder(VectorRecord)
_encoder = msgspec.msgpack.Encoder()


def encode_entry(entry: Entry) -> bytes:
    return _encoder.encode(entry)


def decode_entry(data: bytes, digest: str) -> Entry | None:
    """The entry, or ``None`` when the bytes are corrupt, foreign or of another agent."""
    try:
        entry = _entry_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if entry.schema != SCHEMA or entry.digest != digest or not entry.chunks:
        return None
    if not all(isinstance(c, str) for c in entry.chunks):
        return None
    return entry


def encode_vector(record: VectorRecord) -> bytes:
    return _encoder.encode(record)


def decode_vector(data: bytes) -> VectorRecord | None:
    try:
        return _vector_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
