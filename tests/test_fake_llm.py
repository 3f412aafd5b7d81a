"""The fake OpenAI server speaks the wire format exactly and records what clients did."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
import msgspec
import pytest
from openai import AsyncOpenAI, InternalServerError
from openai.types.chat import ChatCompletionFunctionToolParam

from switchboard.testing.fake_llm import DEFAULT_REPLY, FakeLLMConfig, FakeLLMServer

TIMEOUT = 10.0
BOOK_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "book_appointment",
        "description": "Book a visit.",
        "parameters": {
            "type": "object",
            "properties": {
                "patient_name": {"type": "string"},
                "day": {"type": "string", "enum": ["monday", "tuesday"]},
                "visits": {"type": "integer"},
            },
            "required": ["patient_name", "day"],
        },
    },
}


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "any", "messages": [{"role": "user", "content": content}], **extra}


def sse_events(body: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking the framing on the way."""
    assert body.endswith("\n\n")
    events = body[:-2].split("\n\n")
    assert all(event.startswith("data: ") for event in events)
    return [event[len("data: ") :] for event in events]


async def test_stream_is_server_sent_events_like_openai(fake_llm: FakeLLMServer) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.post(
            f"{fake_llm.base_url}/chat/completions", json=chat("hi", stream=True)
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [msgspec.json.decode(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == DEFAULT_REPLY
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert fake_llm.stats.completed == 1
    assert fake_llm.stats.tokens_sent == len(chunks) - 1


async def test_usage_chunk_is_sent_when_asked(fake_llm: FakeLLMServer) -> None:
    body = chat("hi", stream=True, stream_options={"include_usage": True})
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.post(f"{fake_llm.base_url}/chat/completions", json=body)
    usage = msgspec.json.decode(sse_events(response.text)[-2])
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] > 0


async def test_real_sdk_reads_the_stream_and_the_whole_reply(fake_llm: FakeLLMServer) -> None:
    fake_llm.config = FakeLLMConfig(reply="One. Two three.", token_ms=1)
    async with AsyncOpenAI(base_url=fake_llm.base_url, api_key="k", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        pieces = [c.choices[0].delta.content async for c in stream if c.choices]
        whole = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert "".join(p or "" for p in pieces) == "One. Two three."
    assert whole.choices[0].message.content == "One. Two three."
    assert whole.choices[0].finish_reason == "stop"
    assert fake_llm.stats.completed == 2
    assert [r.stream for r in fake_llm.stats.streams] == [True, False]


async def test_tokens_override_by_directive_and_by_extra_body(fake_llm: FakeLLMServer) -> None:
    async with AsyncOpenAI(base_url=fake_llm.base_url, api_key="k", max_retries=0) as client:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "go [fake: tokens=7]"}], stream=True
        )
        by_directive = fake_llm.stats.streams[-1]
        reply = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "go"}],
            extra_body={"fake": {"tokens": 25, "reply": "Alpha beta."}},
        )
    assert by_directive.tokens_sent == 7
    text = reply.choices[0].message.content or ""
    assert text.startswith("Alpha beta. Alpha beta.")
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 25


async def test_forced_error_status_reaches_the_sdk(fake_llm: FakeLLMServer) -> None:
    async with AsyncOpenAI(base_url=fake_llm.base_url, api_key="k", max_retries=0) as client:
        with pytest.raises(InternalServerError) as raised:
            await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "[fake: error_status=503]"}],
                stream=True,
            )
    assert raised.value.status_code == 503
    assert fake_llm.stats.errors == 1
    assert fake_llm.stats.streams[-1].outcome == "error"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "invalid request"),
        (b'{"model": "m", "messages": []}', "messages must not be empty"),
        (msgspec.json.encode(chat("[fake: colour=red]")), "unknown field `colour`"),
        (msgspec.json.encode(chat("[fake: ttft_ms]")), "not key=value"),
        (msgspec.json.encode(chat("[fake: ttft_ms=soon]")), "Expected `float"),
    ],
)
async def test_bad_requests_get_a_clear_400(
    fake_llm: FakeLLMServer, body: bytes, message: str
) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.post(f"{fake_llm.base_url}/chat/completions", content=body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert fake_llm.stats.errors == 1
    assert fake_llm.stats.started == 0


async def test_tool_call_is_streamed_then_the_result_is_answered(
    fake_llm: FakeLLMServer,
) -> None:
    async with AsyncOpenAI(base_url=fake_llm.base_url, api_key="k", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "I'd like to book an appointment please"}],
            tools=[BOOK_TOOL],
            stream=True,
        )
        deltas = [c.choices[0] async for c in stream if c.choices]
        assert deltas[-1].finish_reason == "tool_calls"
        fragments = [t for d in deltas for t in d.delta.tool_calls or []]
        assert fragments[0].id
        assert fragments[0].function is not None
        assert fragments[0].function.name == "book_appointment"
        assert len(fragments) > 2  # arguments arrive in pieces
        arguments = "".join((f.function.arguments or "") for f in fragments if f.function)
        assert msgspec.json.decode(arguments) == {"patient_name": "test", "day": "monday"}
        follow_up = await client.chat.completions.create(
            model="m",
            messages=[
                {"role": "user", "content": "book an appointment"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": fragments[0].id,
                            "type": "function",
                            "function": {"name": "book_appointment", "arguments": arguments},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": fragments[0].id, "content": "Booked #42."},
            ],
            tools=[BOOK_TOOL],
        )
    assert follow_up.choices[0].message.content == "All done. Booked #42."
    assert [r.tool_calls for r in fake_llm.stats.streams] == [["book_appointment"], []]


async def test_directive_picks_parallel_tools_and_their_arguments(
    fake_llm: FakeLLMServer,
) -> None:
    other: ChatCompletionFunctionToolParam = {
        "type": "function",
        "function": {"name": "check_hours", "parameters": {}},
    }
    directive = "[fake: tool=book_appointment,check_hours args='{\"x\": 1}']"
    async with AsyncOpenAI(base_url=fake_llm.base_url, api_key="k", max_retries=0) as client:
        reply = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": directive}],
            tools=[BOOK_TOOL, other],
        )
        no_tools = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": directive}],
            tools=[BOOK_TOOL, other],
            tool_choice="none",
        )
    calls = reply.choices[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("book_appointment", '{"x":1}'),
        ("check_hours", '{"x":1}'),
    ]
    assert no_tools.choices[0].message.content == DEFAULT_REPLY


async def test_client_closing_mid_stream_is_recorded_as_closed_early(
    fake_llm: FakeLLMServer,
) -> None:
    fake_llm.config = FakeLLMConfig(token_ms=20, tokens=1000)
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        body = chat("hi", stream=True)
        async with http.stream("POST", f"{fake_llm.base_url}/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    break  # leaving the block closes the response mid-stream
    await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)
    record = fake_llm.stats.streams[-1]
    assert record.outcome == "closed_early"
    assert 0 < record.tokens_sent < 1000
    assert fake_llm.stats.completed == 0
    assert fake_llm.stats.active == 0


async def test_disconnect_during_time_to_first_token_is_noticed_at_once(
    fake_llm: FakeLLMServer,
) -> None:
    fake_llm.config = FakeLLMConfig(ttft_ms=600_000)
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        body = chat("hi", stream=True)
        async with http.stream("POST", f"{fake_llm.base_url}/chat/completions", json=body) as r:
            assert r.status_code == 200
    # Far sooner than the ten-minute wait would end.
    await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)
    assert fake_llm.stats.streams[-1].tokens_sent == 0


async def test_stats_endpoints_and_runtime_config(fake_llm: FakeLLMServer) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        configured = await http.post(f"{fake_llm.root_url}/config", json={"reply": "Configured."})
        assert configured.json()["reply"] == "Configured."
        reply = await http.post(f"{fake_llm.base_url}/chat/completions", json=chat("hi"))
        assert reply.json()["choices"][0]["message"]["content"] == "Configured."
        stats = (await http.get(f"{fake_llm.root_url}/stats")).json()
        assert stats["requests"] == 1
        assert stats["completed"] == 1
        assert stats["active"] == 0
        assert stats["streams"][0]["outcome"] == "completed"
        bad = await http.post(f"{fake_llm.root_url}/config", json={"nope": 1})
        assert bad.status_code == 400
        reset = (await http.post(f"{fake_llm.root_url}/stats/reset")).json()
        assert reset["requests"] == 0
        assert reset["streams"] == []
        models = (await http.get(f"{fake_llm.base_url}/models")).json()
        assert models["data"][0]["id"] == "fake-llm"
    assert fake_llm.stats.requests == 0


async def test_recent_requests_are_kept_for_inspection(fake_llm: FakeLLMServer) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        await http.post(f"{fake_llm.base_url}/chat/completions", json=chat("first"))
        await http.post(f"{fake_llm.base_url}/chat/completions", json=chat("second"))
    assert [r["messages"][0]["content"] for r in fake_llm.stats.recent_requests] == [
        "first",
        "second",
    ]
    assert fake_llm.stats.last_request["messages"][0]["content"] == "second"


async def test_three_hundred_concurrent_streams(fake_llm: FakeLLMServer) -> None:
    # Raw HTTP/1.1 over asyncio streams: a pooled Python HTTP client would be the bottleneck.
    fake_llm.config = FakeLLMConfig(token_ms=1, tokens=20)
    body = msgspec.json.encode(chat("hi", stream=True))
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: fake\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    end = b"data: [DONE]\n\n\r\n0\r\n\r\n"  # the last SSE event, then the last HTTP chunk

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection(fake_llm.host, fake_llm.port)
        try:
            writer.write(request)
            received = b""
            while not received.endswith(end):
                data = await reader.read(65536)
                assert data, "connection closed before the stream ended"
                received += data
            return received
        finally:
            writer.close()

    responses = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(300))), 60)
    assert all(r.count(b'"content":') == 20 for r in responses)
    stats = fake_llm.stats
    assert (stats.completed, stats.closed_early, stats.errors) == (300, 0, 0)
    assert stats.tokens_sent == 300 * 20
    assert stats.peak_active > 1  # they really overlapped


def test_fixture_server_serves_sync_code_too(fake_llm: FakeLLMServer) -> None:
    response = httpx.post(f"{fake_llm.base_url}/chat/completions", json=chat("hi"), timeout=10)
    assert response.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY
    fake_llm.stats.wait_for_blocking(lambda s: s.completed == 1, TIMEOUT)


def test_server_object_starts_and_stops_cleanly() -> None:
    with FakeLLMServer(FakeLLMConfig(reply="Own server.")) as server:
        response = httpx.post(f"{server.base_url}/chat/completions", json=chat("hi"), timeout=10)
        assert response.json()["choices"][0]["message"]["content"] == "Own server."
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.root_url}/healthz", timeout=10)


async def test_command_line_prints_a_ready_line_and_serves() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "switchboard.testing.fake_llm",
        "--port",
        "0",
        "--ttft-ms",
        "0",
        "--token-ms",
        "0",
        "--reply",
        "From the CLI.",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT)).decode()
        assert line.startswith("fake-llm ready base_url=http://127.0.0.1:")
        base_url = line.strip().split("base_url=", 1)[1]
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            response = await http.post(f"{base_url}/chat/completions", json=chat("hi"))
        assert response.json()["choices"][0]["message"]["content"] == "From the CLI."
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), TIMEOUT)
