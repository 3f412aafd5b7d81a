"""``switchboard validate`` against real servers: a correct node passes every check that
applies to it, and a server that breaks a promise fails the check that guards it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from websockets.asyncio.server import ServerConnection

from switchboard.cli import app
from switchboard.validate.report import load_report, write_report
from switchboard.validate.run import ValidateOptions, validate
from switchboard.validate.target import TargetError, cluster_target, url_target
from tests.fixtures.agents import EchoAgent
from tests.fixtures.broken_servers import ReferenceServer, threaded_llm_server
from tests.fixtures.threaded_server import threaded_server

FAST = {"duration_s": 1.0, "turns": 2}


class GreetsAgain(ReferenceServer):
    """Forgets every call it greeted: a reconnect hears the greeting a second time."""

    async def greet(self, ws: ServerConnection, call_id: str, call: dict[str, Any] | None) -> None:
        self.greeted.discard(call_id)
        await super().greet(ws, call_id, call)


async def test_a_correct_node_passes_every_check_that_applies(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    async with serve(EchoAgent(), max_calls=4) as srv:
        report = await validate(
            # a generous budget: behaviour is judged here, latency by the bench
            url_target(srv.ws_url),
            ValidateOptions(profile="single", calls=3, budget_ms=10_000, **FAST),
        )
    by_name = {c.name: c for c in report.checks}
    assert set(by_name) == {
        "latency",
        "no drops under load",
        "protocol conformance",
        "calls past the cap",
        "reconnect",
    }
    assert report.passed, [c for c in report.checks if not c.passed]
    cap = by_name["calls past the cap"].figures
    assert (cap["cap"], cap["calls held"], cap["status past the cap"]) == (4, 4, 503)
    assert by_name["reconnect"].figures["greeting after reconnect"] == "(empty)"
    assert "node restart: state survives" in report.not_run
    # the load's per-turn breakdown, by the node's own clock, beside the latency it explains
    latency = by_name["latency"].figures
    for figure in ("server first chunk p50 (ms)", "server save before completing p99 (ms)"):
        assert str(latency[figure]).startswith("<= "), latency
    assert str(latency["outside the server p50 (ms)"]).startswith(">= ")
    json_path = write_report(report, tmp_path / "validation.html")
    again = load_report(json_path)
    assert [c.name for c in again.checks] == [c.name for c in report.checks]
    assert json.loads(json_path.read_text())["passed"] is True
    page = (tmp_path / "validation.html").read_text()
    assert page.count("<section>") == len(report.checks) + 1  # + the not-run list
    assert "server first chunk p99 (ms)" in page


async def test_a_second_greeting_and_no_cap_fail_their_checks(
    llm_server: Callable[..., Any],
) -> None:
    url = await llm_server(GreetsAgain())
    report = await validate(
        url_target(url),
        # no socket answers within a microsecond: the latency check must fail
        ValidateOptions(profile="single", calls=2, capacity=2, budget_ms=0.001, **FAST),
    )
    by_name = {c.name: c for c in report.checks}
    assert not report.passed
    assert not by_name["reconnect"].passed
    assert by_name["reconnect"].figures["greeting after reconnect"].startswith("Hi")
    assert not by_name["calls past the cap"].passed
    assert "accepted" in by_name["calls past the cap"].detail
    assert by_name["protocol conformance"].passed  # the load alone never reconnects
    assert not by_name["latency"].passed
    assert by_name["latency"].figures["budget (ms)"] == 0.001


def test_targets_are_checked_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="--url must be"):
        url_target("http//nowhere")
    with pytest.raises(TargetError, match="cannot read"):
        cluster_target(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"url": 3}')
    with pytest.raises(TargetError, match="not a cluster state file"):
        cluster_target(tmp_path / "bad.json")
    state = {
        "schema_version": 1,
        "url": "ws://127.0.0.1:1/llm-websocket",
        "profile": "distributed",
        "nodes": [{"pid": 1, "port": 2, "node_id": "node-1"}],
        "haproxy": {"pid": 3, "port": 1},
    }
    (tmp_path / "ok.json").write_text(json.dumps(state))
    target = cluster_target(tmp_path / "ok.json")
    assert target.is_cluster
    assert target.nodes[0].node_id == "node-1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "huge", "--url", "ws://127.0.0.1:1/x"], "unknown profile"),
        (["--profile", "single"], "exactly one of --url and --cluster"),
        (
            ["--profile", "single", "--url", "ws://a:1/x", "--cluster", "c.json"],
            "exactly one of",
        ),
        (["--profile", "single", "--cluster", "/nonexistent/state.json"], "cannot read"),
        (["--profile", "single", "--url", "ws://127.0.0.1:1/x", "--calls", "0"], "--calls"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["validate", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_the_terminal_report_shows_the_servers_turn_breakdown(tmp_path: Path) -> None:
    with threaded_server(EchoAgent(), max_calls=4) as srv:
        result = CliRunner().invoke(
            app,
            [
                "validate",
                "--profile",
                "single",
                "--url",
                srv.ws_url,
                "--calls",
                "2",
                "--duration",
                "1",
                "--budget-ms",
                "10000",
                "--report",
                str(tmp_path / "v.html"),
            ],
        )
    assert result.exit_code == 0, result.output
    latency = next(line for line in result.stdout.splitlines() if "  latency:" in line)
    assert "server first chunk p50 (ms) <= " in latency
    assert "server save before completing p99 (ms) <= " in latency
    assert "outside the server p50 (ms) >= " in latency
    assert srv.loop_errors == []


@pytest.mark.integration
def test_any_fail_exits_1_and_still_writes_the_report(tmp_path: Path) -> None:
    with threaded_llm_server(GreetsAgain()) as url:
        result = CliRunner().invoke(
            app,
            [
                "validate",
                "--profile",
                "single",
                "--url",
                url,
                "--calls",
                "2",
                "--capacity",
                "2",
                "--duration",
                "1",
                "--report",
                str(tmp_path / "v.html"),
            ],
        )
    assert result.exit_code == 1, result.output
    assert "FAIL  reconnect" in result.stdout
    report = load_report(tmp_path / "v.json")
    assert not report.passed
