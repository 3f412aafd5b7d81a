"""The services' HTTP side against clients that misbehave: sockets that trickle a request
head or body are closed at a deadline (uvicorn alone holds them for as long as the client
likes), a bad ``limit`` is a 400 (not a 500 with a traceback, nor everything), and with
``SWITCHBOARD_SERVICE_TOKEN`` set nothing but ``/healthz`` answers without the token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from switchboard.services.analytics.service import Analytics, create_app
from switchboard.services.analytics.store import AnalyticsStore
from switchboard.services.archive import open_archive
from switchboard.services.process import serve_http
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.integration


@asynccontextmanager
async def _analytics(tmp_path: Path, token: str | None = None) -> AsyncIterator[str]:
    store = await AnalyticsStore.open(tmp_path / "analytics.db")
    archive = await open_archive(str(tmp_path / "archive.db"))
    port = free_port()
    try:
        app = create_app(Analytics(store), archive)
        async with serve_http(
            app, "127.0.0.1", port, token=token, header_timeout_s=0.5, body_timeout_s=0.5
        ):
            yield f"http://127.0.0.1:{port}"
    finally:
        await archive.close()
        await store.close()


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Read to the end of the stream: returns once the server has closed the link (an
    answer, a 405 to the POST, may come first)."""
    await reader.read()
    return True


async def test_slow_sockets_are_closed_at_the_deadline(tmp_path: Path) -> None:
    async with _analytics(tmp_path) as base:
        port = int(base.rsplit(":", 1)[1])
        links = []
        for i in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if i % 3 == 0:
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # the head never ends
            elif i % 3 == 1:
                writer.write(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
                writer.write(b"0123456789")  # the body never ends
            links.append((reader, writer))  # and a third send nothing at all
        try:
            async with asyncio.timeout(60):
                closed = await asyncio.gather(*(_closed_by_server(r) for r, _ in links))
            assert all(closed)
            async with httpx.AsyncClient(trust_env=False) as http:
                assert (await http.get(f"{base}/healthz")).status_code == 200
        finally:
            for _, writer in links:
                writer.close()


async def test_a_bad_limit_is_a_400_with_the_reason(tmp_path: Path) -> None:
    async with _analytics(tmp_path) as base, httpx.AsyncClient(trust_env=False) as http:
        for bad in ("-1", "abc", "0", "51", "1e3", "9" * 40):
            answer = await http.get(f"{base}/api/calls", params={"limit": bad})
            assert answer.status_code == 400, bad
            assert "limit must be" in answer.json()["error"]
        ok = await http.get(f"{base}/api/calls", params={"limit": "5"})
        assert ok.status_code == 200
        assert ok.json() == {"archive": True, "calls": []}
        assert (await http.get(f"{base}/api/calls")).status_code == 200


async def test_with_a_token_only_healthz_is_open(tmp_path: Path) -> None:
    token = "s3cret-token"
    async with (
        _analytics(tmp_path, token=token) as base,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        for path in ("/", "/metrics", "/api/summary", "/api/calls"):
            refused = await http.get(base + path)
            assert refused.status_code == 401, path
            wrong = await http.get(base + path, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
            allowed = await http.get(base + path, headers={"authorization": f"Bearer {token}"})
            assert allowed.status_code == 200, path
        assert (await http.get(f"{base}/healthz")).status_code == 200

        page = await http.get(f"{base}/", params={"token": token})
        assert page.status_code == 200
        assert "HttpOnly" in page.headers["set-cookie"]
        # The dashboard's own requests carry the cookie the page set (the client kept it).
        assert http.cookies.get("switchboard_token") == token
        summary = await http.get(f"{base}/api/summary")
        assert summary.status_code == 200
