"""``switchboard service analytics`` as a real process: totals agree with what was sent,
across a ``kill -9``; Prometheus and JSON exports; the dashboard in a real chromium."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.cluster.processes import Child, free_port, wait_http_ready
from switchboard.events.buses import open_bus
from switchboard.events.codec import encode_all
from switchboard.events.types import (
    CallEnded,
    CallStarted,
    Event,
    RetellWebhook,
    TurnCompleted,
    make_event,
)
from switchboard.services.archive import open_archive
from tests.fixtures.services import start_service, until

pytestmark = pytest.mark.system

CHROMIUM = "/usr/bin/chromium"


def _calls(calls: int, turns: int, tag: str = "") -> list[Event]:
    events = []
    for c in range(calls):
        call_id = f"call-{tag}{c}"
        events.append(make_event(CallStarted(node_id="n1"), call_id=call_id, source="node/n1"))
        for t in range(1, turns + 1):
            data = TurnCompleted(
                response_id=t,
                kind="response",
                caller_line=f"question {t} from {call_id}",
                reply=f"answer {t}",
                ttfb_ms=20.0 + t,
                ttc_ms=90.0,
                fallback_reason="agent_error" if t == turns else None,
            )
            events.append(make_event(data, call_id=call_id, source="node/n1"))
        how = "transferred" if c % 4 == 0 else "closed"
        events.append(make_event(CallEnded(node_id="n1", how=how), call_id=call_id, source="n"))
        analysis = {"user_sentiment": "Positive" if c % 2 else "Negative"}
        webhook = RetellWebhook(event="call_analyzed", call={"call_analysis": analysis})
        events.append(make_event(webhook, call_id=call_id, source="n", type="retell.call_analyzed"))
    return events


class AnalyticsProcess:
    def __init__(self, url: str, namespace: str, tmp_path: Path, archive: Path | None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = ["--bus", url, "--namespace", namespace, "--db", str(tmp_path / "an.db")]
        self.args += ["--port", str(self.port)]
        if archive is not None:
            self.args += ["--archive-db", str(archive)]
        self.tmp_path = tmp_path
        self.child: Child | None = None
        self.runs = 0

    def start(self) -> Child:
        self.runs += 1
        self.child = start_service("analytics", self.args, self.tmp_path, tag=str(self.runs))
        wait_http_ready(self.child, f"{self.base}/healthz")
        return self.child

    async def summary(self) -> dict[str, Any]:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            data: dict[str, Any] = (await client.get(f"{self.base}/api/summary")).json()
            return data


@pytest.fixture
async def analytics(
    request: pytest.FixtureRequest, redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> Any:
    url = f"{redis_server_url}?claim_idle_ms=500"
    archive = getattr(request, "param", None)
    process = AnalyticsProcess(
        url, redis_namespace, tmp_path, tmp_path / "archive.db" if archive else None
    )
    bus = open_bus(url, namespace=redis_namespace)
    try:
        yield process, bus
    finally:
        if process.child is not None:
            process.child.stop()
        await bus.close()


async def test_totals_agree_with_what_was_sent_across_a_kill_9(analytics: Any) -> None:
    process, bus = analytics
    child = process.start()
    first = _calls(40, 5)
    for start in range(0, len(first), 40):
        await bus.send(encode_all(first[start : start + 40]))

    async def some() -> bool:
        return (await process.summary())["events_applied"] > 0

    await until(some, child=child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    second = _calls(20, 5, tag="late-")
    await bus.send(encode_all(second))
    child = process.start()

    async def everything() -> bool:
        return (await process.summary())["events_applied"] == len(first) + len(second)

    await until(everything, timeout=60, child=child)
    summary = await process.summary()
    totals = summary["totals"]
    assert totals["calls_started"] == 60
    assert totals["turns"] == 300
    assert totals["fallbacks"] == {"agent_error": 60}
    assert totals["fallback_rate"] == pytest.approx(0.2)
    assert totals["end_reasons"] == {"transferred": 15, "closed": 45}
    assert totals["containment"] == pytest.approx(0.75)
    assert totals["sentiment"] == {"Positive": 30, "Negative": 30}
    assert totals["active_calls"] == 0
    assert totals["ttfb_ms"]["response"]["count"] == 300
    async with httpx.AsyncClient(trust_env=False) as client:
        text = (await client.get(f"{process.base}/metrics")).text
    assert 'switchboard_analytics_turns_total{kind="response"} 300.0' in text
    assert 'switchboard_analytics_ttfb_ms_bucket{kind="response",le="+Inf"} 300.0' in text
    assert "switchboard_analytics_active_calls 0.0" in text


@pytest.mark.parametrize("analytics", [True], indirect=True)
async def test_dashboard_shows_live_numbers_and_recent_transcripts(
    analytics: Any, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    process, bus = analytics
    events = _calls(6, 3)
    archive = await open_archive(str(tmp_path / "archive.db"))
    await archive.apply(events)
    await archive.close()
    child = process.start()
    await bus.send(encode_all(events))

    async def applied() -> bool:
        return (await process.summary())["events_applied"] == len(events)

    await until(applied, child=child)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(process.base + "/")
            await page.wait_for_function(
                "document.getElementById('turns-total').textContent === '18'", timeout=15_000
            )
            assert await page.text_content("#calls-started") == "6"
            assert await page.text_content("#containment") == "66.7 %"
            await page.wait_for_selector("#calls .call", timeout=15_000)
            calls = await page.locator("#calls .call").count()
            assert calls == 6
            text = await page.text_content("#calls")
            assert text is not None
            assert "question 3 from call-5" in text
            assert "Negative" in (await page.text_content("#sentiment") or "")
            shot = tmp_path / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("SWITCHBOARD_DASHBOARD_SHOT"):
                await asyncio.to_thread(
                    Path(os.environ["SWITCHBOARD_DASHBOARD_SHOT"]).write_bytes, shot.read_bytes()
                )
        finally:
            await browser.close()


async def test_dashboard_draws_the_last_hour_on_a_time_axis(analytics: Any) -> None:
    """Turns from 40 to 5 minutes ago, sent before the page is opened, are on its charts:
    the history is the service's, not the page's, and the x axis is labelled in time."""
    import re
    import time
    from datetime import UTC, datetime

    import msgspec
    from playwright.async_api import async_playwright

    process, bus = analytics
    now = time.time()
    events = [
        msgspec.structs.replace(event, time=datetime.fromtimestamp(now - 60 * (5 + i // 4), UTC))
        for i, event in enumerate(_calls(36, 1)[:144])
    ]
    slots = {int(e.time.timestamp() // 10) for e in events if isinstance(e.data, TurnCompleted)}
    child = process.start()
    await bus.send(encode_all(events))

    async def applied() -> bool:
        return (await process.summary())["events_applied"] == len(events)

    await until(applied, child=child)
    async with httpx.AsyncClient(trust_env=False) as client:
        body = (await client.get(f"{process.base}/api/history")).json()
    busy = [p for p in body["points"] if p["turns_per_s"] > 0]
    assert len(busy) == len(slots)
    assert len(body["points"]) == 360
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(process.base + "/")
            await page.wait_for_function(
                "Number(document.getElementById('chart-turns').dataset.points || 0) > 0",
                timeout=15_000,
            )
            drawn = await page.get_attribute("#chart-turns", "data-points")
            assert drawn == str(len(slots))
            labels = await page.locator("#axis-turns span").all_text_contents()
            assert 5 <= len(labels) <= 7  # one every ten minutes across the hour
            assert all(re.fullmatch(r"\d\d:\d\d", label) for label in labels), labels
        finally:
            await browser.close()
