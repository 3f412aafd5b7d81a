"""The chat-completion SSE decoder: whatever way the bytes are split, the same chunks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.agents.sse import StreamError, chunks


def event(content: str) -> bytes:
    payload = {"id": "x", "choices": [{"index": 0, "delta": {"content": content}}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def pieces(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        yield data[start:cut]
        start = cut
    yield data[start:]


async def texts(data: bytes, cuts: list[int] | None = None) -> list[str]:
    return [
        c.choices[0].delta.content or ""
        async for c in chunks(pieces(data, cuts or []))
        if c.choices
    ]


WORDS = ["Hello", " there", ", how", " can I help?", " é ✓"]


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_chunks(cuts: list[int]) -> None:
    data = b": keep-alive\n\n" + b"".join(event(w) for w in WORDS) + b"data: [DONE]\n\n"
    assert asyncio.run(texts(data, cuts)) == WORDS


async def test_crlf_line_endings_and_multiline_data() -> None:
    data = event("a").replace(b"\n", b"\r\n") + b'data: {"choices":\ndata: []}\n\n'
    assert await texts(data) == ["a"]


async def test_done_ends_the_stream_even_if_more_follows() -> None:
    assert await texts(event("a") + b"data: [DONE]\n\n" + event("b")) == ["a"]


async def test_a_final_event_without_its_blank_line_is_kept() -> None:
    assert await texts(event("a") + event("b").rstrip(b"\n")) == ["a", "b"]


async def test_tool_call_fragments_and_finish_chunks_decode() -> None:
    data = (
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":'
        b'{"name":"book","arguments":"{\\"d"}}]}}]}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    )
    decoded = [c async for c in chunks(pieces(data, []))]
    assert decoded[0].choices[0].delta.tool_calls == [
        {"index": 0, "id": "c1", "function": {"name": "book", "arguments": '{"d'}}
    ]
    assert decoded[1].choices[0].delta.content is None


async def test_an_error_event_raises() -> None:
    with pytest.raises(StreamError, match="overloaded"):
        await texts(event("a") + b'data: {"error": {"message": "overloaded"}}\n\n')


async def test_malformed_json_raises_a_clear_error() -> None:
    with pytest.raises(StreamError, match="malformed chunk"):
        await texts(b"data: {nope\n\n")
