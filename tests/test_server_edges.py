"""Admission, authentication and bad input on the call socket."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from switchboard.config import Settings
from switchboard.server.app import SwitchboardApp
from switchboard.state.memory import MemoryCallStore
from tests.fixtures.agents import EchoAgent
from tests.fixtures.server import handshake_status, retell, spoken

pytestmark = pytest.mark.integration


async def test_admission_cap_is_exact_and_readiness_follows_it(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False, max_calls=2) as srv:
        async with retell(srv.ws_url, "a1") as one, retell(srv.ws_url, "a2") as two:
            await one.complete(0)
            await two.complete(0)
            assert await handshake_status(f"{srv.ws_url}/a3") == 503
            async with httpx.AsyncClient() as http:
                ready = await http.get(f"{srv.http_url}/readyz")
            assert ready.status_code == 503
            assert ready.json()["active_calls"] == 2
        async with retell(srv.ws_url, "a4") as again:
            await again.complete(0)  # slots were released
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{srv.http_url}/readyz")).status_code == 200
            assert (await http.get(f"{srv.http_url}/healthz")).json() == {"status": "ok"}
            metrics = (await http.get(f"{srv.http_url}/metrics")).text
        assert 'switchboard_handshakes_rejected_total{reason="at_capacity"} 1.0' in metrics


async def test_url_secret_is_required_before_any_state_is_touched(serve: Any) -> None:
    store = MemoryCallStore()
    async with serve(EchoAgent(), store=store, call_details=False, url_secret="s3cr3t") as srv:
        assert await handshake_status(f"{srv.ws_url}/c1") == 403
        assert await handshake_status(f"{srv.ws_url}/wrong/c1") == 403
        assert await handshake_status(f"{srv.ws_url}/c1?token=wrong") == 403
        assert len(store) == 0
        async with retell(f"{srv.ws_url}/s3cr3t", "c1") as peer:
            await peer.complete(0)
        async with connect(f"{srv.ws_url}/c2?token=s3cr3t") as ws:
            assert '"config"' in str(await ws.recv())


async def test_ip_allowlist_refuses_other_addresses(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False, allowed_ips=["100.20.5.228"]) as srv:
        assert await handshake_status(f"{srv.ws_url}/c1") == 403
    async with (
        serve(EchoAgent(), call_details=False, allowed_ips=["127.0.0.0/8"]) as srv,
        retell(srv.ws_url, "c1") as peer,
    ):
        await peer.complete(0)


async def test_bad_call_ids_are_refused(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv:
        assert await handshake_status(f"{srv.ws_url}/a/b/c") == 404
        assert await handshake_status(f"{srv.ws_url}/{'x' * 200}") == 404


async def test_every_wrong_websocket_path_is_404(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv:
        base = srv.ws_url.removesuffix("/llm-websocket")
        # Without the trailing slash, elsewhere, or at the root: the same answer as a bad id.
        for path in ("/llm-websocket", "/llm-websocket/", "/llm-websocketx/c1", "/", "/webhook"):
            assert await handshake_status(f"{base}{path}") == 404, path


async def test_malformed_frames_are_ignored_and_the_socket_stays_open(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv, retell(srv.ws_url, "m1") as peer:
        await peer.complete(0)
        await peer.send_raw("{not json")
        await peer.send_raw('{"interaction_type": "response_required", "response_id": "7"}')
        await peer.send_raw('{"interaction_type": "call_ended_maybe", "x": 1}')
        await peer.send_raw('["response_required"]')
        await peer.send_raw(b"\x00\x01binary")
        await peer.send(
            interaction_type="response_required",
            response_id=1,
            transcript=[{"role": "system", "content": "hi", "words": [], "confidence": 0.9}],
            brand_new_field={"nested": True},
        )
        frames = await peer.complete(1)
        assert spoken(frames, 1) == "You said: hi (turn 1)"
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{srv.http_url}/metrics")).text
        assert 'switchboard_frames_rejected_total{reason="malformed"} 3.0' in metrics
        assert 'switchboard_frames_rejected_total{reason="unknown_interaction"} 1.0' in metrics
        assert 'switchboard_frames_rejected_total{reason="binary"} 1.0' in metrics


async def test_updates_are_sampled_over_a_real_socket(serve: Any) -> None:
    """The socket drops skipped updates by their head; the first and every 32nd are still
    decoded (here refused as malformed: 3 of 65), each counted once, and the call goes on."""
    broken = '{"interaction_type":"update_only","transcript":[{"role":"user","content":tru}]}'
    async with serve(EchoAgent(), call_details=False) as srv:
        async with retell(srv.ws_url, "sampled") as peer:
            await peer.complete(0)
            for _ in range(65):
                await peer.send_raw(broken)
            await peer.request(1, "still there")
            assert spoken(await peer.complete(1), 1) == "You said: still there (turn 1)"
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{srv.http_url}/metrics")).text
    assert 'switchboard_frames_rejected_total{reason="malformed"} 3.0' in metrics


async def test_oversized_frame_closes_only_that_call(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False, max_frame_bytes=4096) as srv:
        async with retell(srv.ws_url, "big") as big, retell(srv.ws_url, "neighbour") as other:
            await big.complete(0)
            await other.complete(0)
            await big.send_raw(
                '{"interaction_type":"update_only","transcript":[],"pad":"' + "x" * 8000 + '"}'
            )
            closed = await big.closed()
            assert closed.rcvd is not None
            assert closed.rcvd.code == 1009
            await other.request(1, "are you fine")
            assert "are you fine" in spoken(await other.complete(1), 1)
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{srv.http_url}/metrics")).text
        assert 'switchboard_frames_rejected_total{reason="too_large"} 1.0' in metrics


def test_shared_state_profiles_refuse_to_run_on_process_memory() -> None:
    with pytest.raises(ValueError, match="needs Redis: set --redis-url"):
        SwitchboardApp(Settings(profile="distributed"), EchoAgent())


async def test_webhook_outcomes_are_exported_as_metrics(serve: Any) -> None:
    async with (
        serve(EchoAgent(), retell_api_key="test-api-key") as srv,
        httpx.AsyncClient() as http,
    ):
        refused = await http.post(f"{srv.http_url}/webhook", content=b'{"event":"call_ended"}')
        assert refused.status_code == 401
        metrics = (await http.get(f"{srv.http_url}/metrics")).text
    assert 'switchboard_webhooks_total{outcome="received"} 1.0' in metrics
    assert 'switchboard_webhooks_rejected_total{reason="missing_signature"} 1.0' in metrics
