"""``POST /webhook`` through a real uvicorn server on a loopback port.

The receiver's clock is pinned so signatures are deterministic; subscribers are awaited
through events, never through sleeps.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
import pytest_asyncio
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from switchboard.protocol.signature import sign
from switchboard.protocol.webhook import InboundCall, WebhookEvent
from switchboard.server.webhook import WebhookReceiver

KEY = "test-api-key"
NOW = 1_700_000_000_000
WAIT_S = 10

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


class Inbox:
    """A subscriber that records events and lets a test wait for the n-th one."""

    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: WebhookEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int) -> list[WebhookEvent]:
        async with asyncio.timeout(WAIT_S):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events


class Gate:
    """An async subscriber that blocks until opened, to hold events off the request path."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.passed = Inbox()

    async def __call__(self, event: WebhookEvent) -> None:
        self.entered.set()
        await self.open.wait()
        self.passed(event)


def receiver(**kwargs: Any) -> WebhookReceiver:
    kwargs.setdefault("clock", lambda: NOW)
    return WebhookReceiver(kwargs.pop("api_key", KEY), **kwargs)


class Host:
    """One uvicorn server for the whole module; each test mounts its own app on it.

    Starting and stopping uvicorn costs ~0.2 s (fixed sleeps in its main loop and
    shutdown), so tests share it. The lifespan wiring has a test with its own server.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "no app mounted"
        await self.app(scope, receive, send)


@asynccontextmanager
async def running(app: ASGIApp, lifespan: bool) -> AsyncIterator[int]:
    # A socket already listening: requests queue in its backlog until uvicorn is up.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        config = uvicorn.Config(app, lifespan="on" if lifespan else "off", log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, WAIT_S)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def host() -> AsyncIterator[Host]:
    shared = Host(0)
    async with running(shared, lifespan=False) as port:
        shared.port = port
        yield shared


def client_for(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S)


@asynccontextmanager
async def serve(host: Host, rx: WebhookReceiver) -> AsyncIterator[httpx.AsyncClient]:
    host.app = Starlette(routes=[Route("/webhook", rx.endpoint, methods=["POST"])])
    await rx.start()
    try:
        async with client_for(host.port) as client:
            yield client
    finally:
        await rx.stop()
        host.app = None


def body_of(event: str, call: Mapping[str, Any] | None = None, **top: Any) -> bytes:
    return msgspec.json.encode({"event": event, "call": call or {"call_id": "c1"}, **top})


async def post(
    client: httpx.AsyncClient,
    body: bytes,
    *,
    key: str = KEY,
    at: int = NOW,
    signature: str | None = "sign",
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature == "sign":
        headers["X-Retell-Signature"] = sign(body, key, at)
    elif signature is not None:
        headers["X-Retell-Signature"] = signature
    return await client.post("/webhook", content=body, headers=headers)


# --- the fast path ---------------------------------------------------------------------


async def test_valid_webhook_gets_204_before_subscribers_finish(host: Host) -> None:
    rx = receiver()
    gate = Gate()
    rx.subscribe(gate)
    async with serve(host, rx) as client:
        response = await post(client, body_of("call_started"))
        assert response.status_code == 204
        assert response.content == b""
        # Acknowledged while the subscriber is still blocked: delivery is off the request path.
        assert gate.passed.events == []
        assert rx.pending == 1
        gate.open.set()
        await gate.passed.wait_for(1)
        assert rx.counters.delivered == 1


async def test_subscribers_receive_the_typed_event_with_its_raw_body(host: Host) -> None:
    rx = receiver()
    inbox = Inbox()
    seen_async: list[WebhookEvent] = []

    async def async_subscriber(event: WebhookEvent) -> None:
        seen_async.append(event)

    rx.subscribe(async_subscriber)
    rx.subscribe(inbox)
    call = {
        "call_id": "c42",
        "agent_id": "ag1",
        "call_status": "ended",
        "start_timestamp": 1_700_000_000_000,
        "end_timestamp": 1_700_000_060_000,
        "disconnection_reason": "user_hangup",
        "transcript_object": [{"role": "agent", "content": "Hi", "words": []}],
    }
    # Pretty-printed, non-ASCII: the signature is over these exact bytes.
    body = b'{\n  "event": "call_ended",\n  "call": ' + msgspec.json.encode(call) + b"  }"
    body = body.replace(b'"Hi"', '"Hi Zoë"'.encode())
    async with serve(host, rx) as client:
        assert (await post(client, body)).status_code == 204
        (event,) = await inbox.wait_for(1)
    assert seen_async == [event]
    assert event.event == "call_ended"
    assert event.call_id == "c42"
    assert event.agent_id == "ag1"
    assert event.call_status == "ended"
    assert event.start_timestamp == 1_700_000_000_000
    assert event.end_timestamp == 1_700_000_060_000
    assert event.disconnection_reason == "user_hangup"
    assert event.call["transcript_object"][0]["content"] == "Hi Zoë"
    assert event.raw == body
    assert rx.counters.received == 1
    assert rx.counters.delivered == 1


async def test_transfer_event_exposes_destination_and_option(host: Host) -> None:
    rx = receiver()
    inbox = Inbox()
    rx.subscribe(inbox)
    option = {"type": "warm_transfer", "showTransfereeAsCaller": True, "onHoldMusic": {"type": "x"}}
    body = body_of(
        "transfer_started",
        {"call_id": "c1", "start_timestamp": 1},
        transfer_destination={"number": "+15550001111", "extension": "9"},
        transfer_option=option,
    )
    async with serve(host, rx) as client:
        assert (await post(client, body)).status_code == 204
        (event,) = await inbox.wait_for(1)
    assert event.transfer_destination == {"number": "+15550001111", "extension": "9"}
    assert event.transfer_option == option


async def test_unknown_event_types_and_fields_are_passed_on(host: Host) -> None:
    rx = receiver()
    inbox = Inbox()
    rx.subscribe(inbox)
    body = body_of("call_paused", {"call_id": "c1", "brand_new": [1, 2]}, added_later={"a": 1})
    async with serve(host, rx) as client:
        assert (await post(client, body)).status_code == 204
        (event,) = await inbox.wait_for(1)
    assert event.event == "call_paused"
    assert not event.is_known
    assert event.call["brand_new"] == [1, 2]
    assert event.extra == {"added_later": {"a": 1}}


# --- dedupe through the endpoint -------------------------------------------------------


async def test_retried_lifecycle_event_gets_204_but_is_delivered_once(host: Host) -> None:
    rx = receiver()
    inbox = Inbox()
    rx.subscribe(inbox)
    first = body_of("call_ended", {"call_id": "c1"})
    async with serve(host, rx) as client:
        assert (await post(client, first)).status_code == 204
        # Retell's retry is signed afresh, and the call object may have been re-fetched.
        retry = body_of("call_ended", {"call_id": "c1", "recording_url": "https://r"})
        assert (await post(client, retry, at=NOW - 12_000)).status_code == 204
        assert rx.counters.duplicates == 1
        # FIFO delivery: once the sentinel is through, a wrongly queued retry would be too.
        assert (await post(client, body_of("call_ended", {"call_id": "c2"}))).status_code == 204
        events = await inbox.wait_for(2)
    assert [e.call_id for e in events] == ["c1", "c2"]
    assert rx.counters.delivered == 2


async def test_transcript_updated_is_latest_wins_per_call(host: Host) -> None:
    rx = receiver()
    inbox = Inbox()
    rx.subscribe(inbox)

    def update(*contents: str) -> bytes:
        twtc = [{"role": "user", "content": c} for c in contents]
        return body_of("transcript_updated", {"call_id": "c1", "transcript_with_tool_calls": twtc})

    async with serve(host, rx) as client:
        for body in (update("a", "b"), update("a"), update("a", "b"), update("a", "b", "c")):
            assert (await post(client, body)).status_code == 204
        events = await inbox.wait_for(2)
    assert [len(e.call["transcript_with_tool_calls"]) for e in events] == [2, 3]
    assert rx.counters.superseded == 1
    assert rx.counters.duplicates == 1


# --- rejections ------------------------------------------------------------------------


BAD_SIGNATURES: list[tuple[dict[str, Any], str]] = [
    ({"signature": None}, "missing_signature"),
    ({"signature": "v=1,d=abc"}, "malformed_signature"),
    ({"signature": f"v={NOW},d={'A' * 64}"}, "malformed_signature"),
    ({"at": NOW - 300_001}, "stale_signature"),
    ({"at": NOW + 300_001}, "stale_signature"),
    ({"key": "some-other-key"}, "bad_digest"),
]


async def test_bad_signature_gets_401_without_detail(host: Host) -> None:
    rx = receiver()
    inbox = Inbox()
    rx.subscribe(inbox)
    async with serve(host, rx) as client:
        for i, (kwargs, reason) in enumerate(BAD_SIGNATURES):
            response = await post(client, body_of("call_ended", {"call_id": f"bad{i}"}), **kwargs)
            assert (response.status_code, response.text) == (401, "unauthorized"), reason
            # The same connection still serves a good request afterwards.
            good = body_of("call_ended", {"call_id": f"ok{i}"})
            assert (await post(client, good)).status_code == 204
        await inbox.wait_for(len(BAD_SIGNATURES))
    assert rx.counters.rejected == dict(Counter(reason for _, reason in BAD_SIGNATURES))
    assert [e.call_id for e in inbox.events] == [f"ok{i}" for i in range(len(BAD_SIGNATURES))]


async def test_signature_boundary_is_inclusive_through_the_endpoint(host: Host) -> None:
    rx = receiver()
    async with serve(host, rx) as client:
        early = body_of("call_started", {"call_id": "early"})
        late = body_of("call_started", {"call_id": "late"})
        assert (await post(client, early, at=NOW - 300_000)).status_code == 204
        assert (await post(client, late, at=NOW + 300_000)).status_code == 204


async def test_tampered_body_gets_401(host: Host) -> None:
    rx = receiver()
    async with serve(host, rx) as client:
        body = body_of("call_ended")
        signature = sign(body, KEY, NOW)
        tampered = body.replace(b"c1", b"c2")
        response = await post(client, tampered, signature=signature)
    assert response.status_code == 401
    assert rx.counters.rejected == {"bad_digest": 1}


async def test_two_signature_headers_get_401(host: Host) -> None:
    rx = receiver()
    body = body_of("call_ended")
    good = sign(body, KEY, NOW)
    async with serve(host, rx) as client:
        response = await client.post(
            "/webhook",
            content=body,
            headers=[("X-Retell-Signature", good), ("x-retell-signature", good)],
        )
    assert response.status_code == 401
    assert rx.counters.rejected == {"malformed_signature": 1}


@pytest.mark.parametrize("api_key", [None, "", SecretStr("")])
async def test_without_an_api_key_every_webhook_gets_401(host: Host, api_key: Any) -> None:
    rx = receiver(api_key=api_key)
    assert not rx.configured
    async with serve(host, rx) as client:
        for key in ("", KEY):
            assert (await post(client, body_of("call_ended"), key=key)).status_code == 401
    assert rx.counters.rejected == {"no_api_key": 2}


async def test_api_key_may_be_a_secret_str(host: Host) -> None:
    rx = receiver(api_key=SecretStr(KEY))
    assert rx.configured
    async with serve(host, rx) as client:
        assert (await post(client, body_of("call_ended"))).status_code == 204


BAD_ENVELOPES: list[tuple[bytes, str]] = [
    (b"{not json", "malformed JSON"),
    (b"", "malformed JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"call": {"call_id": "c1"}}', "$.event"),
    (b'{"event": 7, "call": {}}', "$.event"),
    (b'{"event": "call_ended"}', "missing required field (at $.call)"),
    (b'{"event": "call_ended", "call": "c1"}', "expected an object, got str (at $.call)"),
    (b'{"event": "call_ended", "data": {"call_id": "c1"}}', "key is 'call', not 'data'"),
    (b'{"event": "call_inbound", "event_timestamp": 1}', "$.call_inbound"),
    (b'{"event": "call_inbound", "event_timestamp": "1", "call_inbound": {}}', "integer"),
    # Valid JSON nested deeper than the decoder goes: a bad payload, not a server error.
    (b'{"event": "call_ended", "call": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested too deeply"),
]


async def test_bad_envelope_gets_400_with_a_clear_message(host: Host) -> None:
    rx = receiver()
    async with serve(host, rx) as client:
        for body, message in BAD_ENVELOPES:
            response = await post(client, body)
            assert response.status_code == 400, body
            assert message in response.text, (body, response.text)
    assert rx.counters.rejected == {"bad_payload": len(BAD_ENVELOPES)}
    assert rx.counters.delivered == 0


async def test_body_over_the_limit_gets_413_from_content_length(host: Host) -> None:
    rx = receiver(max_body_bytes=1024)
    async with serve(host, rx) as client:
        body = body_of("call_ended", {"call_id": "c1", "transcript": "x" * 64 * 1024})
        response = await post(client, body)
        assert response.status_code == 413
        assert "1024" in response.text
        # Exactly at the limit is accepted.
        small = body_of("call_ended", {"call_id": "c2", "pad": ""})
        exact = small.replace(b'"pad":""', b'"pad":"' + b"x" * (1024 - len(small)) + b'"')
        assert len(exact) == 1024
        assert (await post(client, exact)).status_code == 204
    assert rx.counters.rejected == {"too_large": 1}


async def raw_request_head(port: int, head: bytes, body_part: bytes) -> bytes:
    """Send a request head and only part of its body; return the response status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body_part)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), WAIT_S)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_declared_huge_body_gets_413_before_any_of_it_is_sent(host: Host) -> None:
    rx = receiver()
    async with serve(host, rx):
        head = (
            b"POST /webhook HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
            b"content-length: 1000000000\r\n"
            b"x-retell-signature: v=1700000000000,d=" + b"0" * 64 + b"\r\n\r\n"
        )
        status = await raw_request_head(host.port, head, b"")
    assert status.startswith(b"HTTP/1.1 413")
    assert rx.counters.rejected == {"too_large": 1}


async def test_streamed_body_over_the_limit_gets_413_without_reading_it_all(host: Host) -> None:
    rx = receiver(max_body_bytes=4096)
    async with serve(host, rx):
        # Chunked, so only the running total can trip the limit; the body is never finished.
        head = (
            b"POST /webhook HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n"
            b"x-retell-signature: v=1700000000000,d=" + b"0" * 64 + b"\r\n\r\n"
        )
        chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
        status = await raw_request_head(host.port, head, chunk * 5)
    assert status.startswith(b"HTTP/1.1 413")
    assert rx.counters.rejected == {"too_large": 1}


# --- subscribers, lifecycle, back-pressure ---------------------------------------------


async def test_a_raising_subscriber_does_not_affect_others_or_the_response(host: Host) -> None:
    rx = receiver()
    inbox = Inbox()

    def broken(event: WebhookEvent) -> None:
        raise RuntimeError("subscriber bug")

    async def broken_async(event: WebhookEvent) -> None:
        raise ValueError("async subscriber bug")

    rx.subscribe(broken)
    rx.subscribe(broken_async)
    rx.subscribe(inbox)
    async with serve(host, rx) as client:
        for call_id in ("c1", "c2"):
            response = await post(client, body_of("call_ended", {"call_id": call_id}))
            assert response.status_code == 204
        events = await inbox.wait_for(2)
    assert [e.call_id for e in events] == ["c1", "c2"]
    assert rx.counters.subscriber_errors == 4
    assert rx.counters.delivered == 2


async def test_stop_delivers_what_is_queued(host: Host) -> None:
    rx = receiver()
    gate = Gate()
    rx.subscribe(gate)
    async with serve(host, rx) as client:
        for call_id in ("c1", "c2", "c3"):
            assert (
                await post(client, body_of("call_started", {"call_id": call_id}))
            ).status_code == 204
        stopping = asyncio.create_task(rx.stop())
        await asyncio.wait_for(gate.entered.wait(), WAIT_S)
        assert not stopping.done()
        gate.open.set()
        await asyncio.wait_for(stopping, WAIT_S)
        assert [e.call_id for e in gate.passed.events] == ["c1", "c2", "c3"]
        assert rx.counters.dropped == 0
        # Stopped: not acknowledged, so Retell retries elsewhere.
        response = await post(client, body_of("call_started", {"call_id": "c4"}))
        assert response.status_code == 503
    assert rx.counters.rejected == {"not_running": 1}


async def test_stop_gives_up_after_its_timeout_and_counts_what_was_dropped(host: Host) -> None:
    rx = receiver()
    gate = Gate()  # never opened
    rx.subscribe(gate)
    async with serve(host, rx) as client:
        for call_id in ("c1", "c2"):
            assert (
                await post(client, body_of("call_started", {"call_id": call_id}))
            ).status_code == 204
        await asyncio.wait_for(gate.entered.wait(), WAIT_S)
        await asyncio.wait_for(rx.stop(timeout_s=0.05), WAIT_S)
    assert rx.counters.dropped == 2
    assert rx.pending == 0
    assert not rx.running


async def test_full_queue_gets_503_and_the_retry_is_accepted_later(host: Host) -> None:
    rx = receiver(max_queue=1)
    gate = Gate()
    rx.subscribe(gate)
    async with serve(host, rx) as client:
        assert (await post(client, body_of("call_ended", {"call_id": "c1"}))).status_code == 204
        await asyncio.wait_for(gate.entered.wait(), WAIT_S)  # c1 is out of the queue
        assert (await post(client, body_of("call_ended", {"call_id": "c2"}))).status_code == 204
        assert (await post(client, body_of("call_ended", {"call_id": "c3"}))).status_code == 503
        gate.open.set()
        await gate.passed.wait_for(2)
        # Not recorded as seen when refused: Retell's retry gets through.
        assert (await post(client, body_of("call_ended", {"call_id": "c3"}))).status_code == 204
        await asyncio.wait_for(rx.stop(), WAIT_S)
    assert [e.call_id for e in gate.passed.events] == ["c1", "c2", "c3"]
    assert rx.counters.rejected == {"overloaded": 1}


async def test_start_and_stop_are_idempotent() -> None:
    rx = receiver()
    await rx.start()
    await rx.start()
    assert rx.running
    await rx.stop()
    await rx.stop()
    assert not rx.running


async def test_app_lifespan_starts_and_stops_the_receiver() -> None:
    rx = receiver()
    inbox = Inbox()
    rx.subscribe(inbox)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rx.start()
        try:
            yield
        finally:
            await rx.stop()

    app = Starlette(routes=[Route("/webhook", rx.endpoint, methods=["POST"])], lifespan=lifespan)
    async with running(app, lifespan=True) as port, client_for(port) as client:
        # Served only once uvicorn has run the lifespan startup.
        assert (await post(client, body_of("call_ended"))).status_code == 204
        assert rx.running
        await inbox.wait_for(1)
    assert not rx.running


async def test_only_post_is_routed(host: Host) -> None:
    rx = receiver()
    async with serve(host, rx) as client:
        assert (await client.get("/webhook")).status_code == 405


# --- inbound-call webhook (spec 3.4) ---------------------------------------------------

INBOUND = msgspec.json.encode(
    {
        "event": "call_inbound",
        "event_timestamp": NOW,
        "call_inbound": {
            "agent_id": "ag1",
            "from_number": "+15550001111",
            "to_number": "+15550002222",
            "custom_sip_headers": {"x-tenant": "t1"},
        },
    }
)


async def test_inbound_call_is_answered_with_no_overrides_by_default(host: Host) -> None:
    rx = receiver()
    inbox = Inbox()
    rx.subscribe(inbox)
    async with serve(host, rx) as client:
        response = await post(client, INBOUND)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    assert rx.counters.inbound == 1
    assert rx.pending == 0


async def test_inbound_call_overrides_come_back_wrapped(host: Host) -> None:
    seen: list[InboundCall] = []

    async def answer(call: InboundCall) -> Mapping[str, Any]:
        seen.append(call)
        return {"override_agent_id": "ag2", "dynamic_variables": {"tenant": "t1"}}

    rx = receiver(answer_inbound=answer)
    async with serve(host, rx) as client:
        response = await post(client, INBOUND)
    assert response.status_code == 200
    assert response.json() == {
        "call_inbound": {"override_agent_id": "ag2", "dynamic_variables": {"tenant": "t1"}}
    }
    (call,) = seen
    assert (call.from_number, call.to_number, call.agent_id) == (
        "+15550001111",
        "+15550002222",
        "ag1",
    )
    assert call.event_timestamp == NOW
    assert call.details["custom_sip_headers"] == {"x-tenant": "t1"}


async def test_failing_inbound_answer_routes_as_configured(host: Host) -> None:
    async def answer(call: InboundCall) -> Mapping[str, Any]:
        raise RuntimeError("directory down")

    async def unserialisable(call: InboundCall) -> Mapping[str, Any]:
        return {"metadata": object()}

    for callback in (answer, unserialisable):
        rx = receiver(answer_inbound=callback)
        async with serve(host, rx) as client:
            response = await post(client, INBOUND)
        assert response.status_code == 200
        assert response.json() == {}


async def test_inbound_call_must_be_signed_too(host: Host) -> None:
    rx = receiver()
    async with serve(host, rx) as client:
        response = await post(client, INBOUND, key="wrong")
    assert response.status_code == 401
