"""Server-sent events of a streamed chat completion, decoded straight into small typed
chunks.

The openai SDK still sends the request (transport, auth, retries, status errors); this
module only reads the body. Its pure-Python SSE decoder plus ``json.loads`` per token was
the largest cost of an LLM turn after the request itself; msgspec decodes each event in
about a microsecond and skips the fields we never read.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import msgspec


class Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(msgspec.Struct):
    delta: Delta = msgspec.field(default_factory=Delta)


class Chunk(msgspec.Struct):
    choices: list[Choice] = msgspec.field(default_factory=list)
    error: Any = None


class StreamError(RuntimeError):
    """The provider reported an error inside the stream (after a 200 status)."""


_decoder = msgspec.json.Decoder(Chunk)
_DONE = b"[DONE]"


def parse_event(block: bytes) -> bytes | None:
    """The ``data`` of one event block (several ``data:`` lines join with newlines)."""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(data) if data else None


async def chunks(body: AsyncIterable[bytes]) -> AsyncIterator[Chunk]:
    """Decode an SSE byte stream into chunks until ``[DONE]`` or the end of the body."""
    buffer = b""
    async for piece in body:
        buffer += piece.replace(b"\r\n", b"\n") if b"\r" in piece else piece
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            block, buffer = buffer[:end], buffer[end + 2 :]
            data = parse_event(block)
            if data is None:
                continue  # a comment or a keep-alive
            if data == _DONE:
                return
            try:
                chunk = _decoder.decode(data)
            except msgspec.DecodeError as err:
                raise StreamError(f"malformed chunk from the model server: {err}") from None
            if chunk.error is not None:
                raise StreamError(f"the model server reported an error: {chunk.error}")
            yield chunk
    if buffer.strip():
        data = parse_event(buffer)
        if data is not None and data != _DONE:
            yield _decoder.decode(data)
