"""Webhook dedupe claims become permanent only once the event is durable: a node that
took a webhook and could not make it safe must not turn Retell's retry into a
"duplicate" (that would lose ``call_analyzed``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from switchboard.cluster.processes import free_port
from switchboard.connections import RedisHealth, redis_client
from switchboard.events.buses.memory import MemoryBus
from switchboard.events.codec import decode
from switchboard.protocol.signature import sign
from switchboard.protocol.webhook import WebhookEvent, parse_webhook
from switchboard.server.cluster_dedupe import SharedDedupe
from switchboard.server.dedupe import Verdict
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually, eventually_async
from tests.fixtures.distributed import node
from tests.fixtures.server import RunningServer

pytestmark = pytest.mark.integration

KEY = "test-api-key"


def _analyzed(call_id: str, padding: int = 0) -> bytes:
    call = {"call_id": call_id, "call_analysis": {"user_sentiment": "Positive"}}
    if padding:
        call["transcript"] = "x" * padding
    return msgspec.json.encode({"event": "call_analyzed", "call": call})


def _event(body: bytes) -> WebhookEvent:
    event = parse_webhook(body)
    assert isinstance(event, WebhookEvent)
    return event


async def test_a_claim_is_in_flight_until_confirmed_then_a_duplicate(
    redis_server_url: str, redis_namespace: str
) -> None:
    client = redis_client(redis_server_url)
    shared = SharedDedupe(client, RedisHealth(client), namespace=redis_namespace)
    event = _event(_analyzed("c1"))
    try:
        assert await shared.admit(event) is Verdict.DELIVER
        assert await shared.admit(event) is Verdict.IN_FLIGHT
        assert await shared.confirm(event)
        assert await shared.admit(event) is Verdict.DUPLICATE
    finally:
        await client.aclose()


async def test_a_claim_never_confirmed_expires_and_the_retry_is_delivered(
    redis_server_url: str, redis_namespace: str
) -> None:
    client = redis_client(redis_server_url)
    shared = SharedDedupe(client, RedisHealth(client), namespace=redis_namespace, claim_ttl_s=0.3)
    event = _event(_analyzed("c2"))
    try:
        assert await shared.admit(event) is Verdict.DELIVER  # ...and the node dies here
        assert await shared.admit(event) is Verdict.IN_FLIGHT

        async def delivered() -> bool:
            return await shared.admit(event) is Verdict.DELIVER

        await eventually_async(delivered)
    finally:
        await client.aclose()


async def _post(http: httpx.AsyncClient, srv: RunningServer, body: bytes) -> int:
    headers = {"x-retell-signature": sign(body, KEY, int(time.time() * 1000))}
    response = await http.post(f"{srv.http_url}/webhook", content=body, headers=headers)
    return response.status_code


async def test_a_webhook_a_node_could_not_make_durable_is_delivered_by_the_retry(
    redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    """Node a: its bus refuses and its spill file is full, so the event is dropped; its
    claim is released and the retry on node b (healthy) delivers it."""
    broken = {
        "bus_url": f"redis://127.0.0.1:{free_port()}/0",
        "outbox_dir": tmp_path / "a",
        "outbox_spill_max_bytes": 1024,
        "retell_api_key": KEY,
    }
    healthy = {"bus_url": "memory://", "outbox_dir": tmp_path / "b", "retell_api_key": KEY}
    body = _analyzed("c3", padding=4000)
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a", **broken) as a,
        node(EchoAgent(), redis_server_url, redis_namespace, "b", **healthy) as b,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        assert await _post(http, a, body) == 204
        await eventually(lambda: a.app.webhooks.counters.subscriber_errors == 1)
        await eventually(lambda: a.app.webhooks.pending == 0)
        assert a.app.webhooks.counters.confirmed == 0
        assert await _post(http, b, body) == 204
        await eventually(lambda: b.app.webhooks.counters.confirmed == 1)
        assert await _post(http, a, body) == 204  # now a true duplicate
        assert a.app.webhooks.counters.duplicates == 1
        outbox = b.app.node.outbox
        assert outbox is not None
        assert isinstance(outbox.bus, MemoryBus)
        (message,) = outbox.bus.log
    assert decode(message).type == "retell.call_analyzed"


async def test_a_webhook_spilled_while_the_bus_is_down_counts_as_durable(
    redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    down = {
        "bus_url": f"redis://127.0.0.1:{free_port()}/0",
        "outbox_dir": tmp_path / "a",
        "retell_api_key": KEY,
    }
    body = _analyzed("c5")
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a", **down) as a,
        node(EchoAgent(), redis_server_url, redis_namespace, "b", retell_api_key=KEY) as b,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        assert await _post(http, a, body) == 204
        await eventually(lambda: a.app.webhooks.counters.confirmed == 1)
        outbox = a.app.node.outbox
        assert outbox is not None
        assert outbox.stats.spilled == outbox.stats.put
        assert await _post(http, b, body) == 204
        assert b.app.webhooks.counters.duplicates == 1


async def test_a_retry_while_the_first_delivery_is_in_flight_gets_503(
    redis_server_url: str, redis_namespace: str
) -> None:
    """Node a has not finished delivering (its subscriber waits, as the event publisher
    waits for the event to be durable): the retry on node b is told to come back, not
    told it is a duplicate. Once a is done, it is one."""
    gate = asyncio.Event()

    async def slow(_event: WebhookEvent) -> None:
        await gate.wait()

    body = _analyzed("c4")
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a", retell_api_key=KEY) as a,
        node(EchoAgent(), redis_server_url, redis_namespace, "b", retell_api_key=KEY) as b,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        a.app.webhooks.subscribe(slow)
        assert await _post(http, a, body) == 204
        await eventually(lambda: a.app.webhooks.pending == 1)
        assert await _post(http, b, body) == 503
        assert b.app.webhooks.counters.in_flight == 1
        gate.set()
        await eventually(lambda: a.app.webhooks.counters.confirmed == 1)
        assert await _post(http, b, body) == 204
        assert b.app.webhooks.counters.duplicates == 1
