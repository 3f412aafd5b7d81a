"""One simulator run split across processes (``simulate --workers``), and the bench parts
that hold 5,000 calls: the merged report, the extra targets, the server's resources, the
cost per frame kind."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from switchboard.bench.cases import BenchCase
from switchboard.bench.frame_costs import SIZES, measure, transcript_of
from switchboard.bench.judge import missed_targets
from switchboard.cli import app
from switchboard.sim.metrics import RunMetrics
from switchboard.sim.options import SimOptions
from switchboard.sim.results import ReconnectEvent
from switchboard.sim.workers import shares, worker_options
from tests.fixtures.broken_servers import ReferenceServer, threaded_llm_server
from tests.test_verdict import passing_report, summary

runner = CliRunner()


def test_calls_are_split_evenly_and_each_worker_gets_its_own_seed() -> None:
    assert shares(5, 2) == [3, 2]
    assert shares(1, 3) == [1, 0, 0]
    options = SimOptions(url="ws://x/llm-websocket", calls=5000, seed=7, scenario=Path("s"))
    parts = worker_options(options, 4)
    assert [p.calls for p in parts] == [1250] * 4
    assert len({p.seed for p in parts}) == 4
    assert [p.scenario for p in parts] == [Path("s"), None, None, None]
    assert all(p.ping_interval_s == options.ping_interval_s for p in parts)
    unseeded = worker_options(SimOptions(url="ws://x/llm-websocket", calls=3), 2)
    assert [p.seed for p in unseeded] == [None, None]


def test_merged_metrics_add_counts_and_keep_every_latency() -> None:
    fast, slow = RunMetrics(), RunMetrics()
    for _ in range(99):
        fast.per_kind["response"].ttfb.record(0.001)
    slow.per_kind["response"].ttfb.record(0.5)
    fast.pong_rtt.record(0.002)
    slow.pong_rtt.record(0.004)
    fast.turns, slow.turns = 99, 1
    fast.calls_failed["no_begin"] += 1
    slow.calls_failed["no_begin"] += 2
    slow.violation("stale_frame", "c1", "late")
    slow.socket_lost(ReconnectEvent(call_id="c1", cause="abnormal", lost_at=1.0))
    states = [fast.export(), slow.export()]

    merged = RunMetrics.merged(states)

    ttfb = merged.per_kind["response"].ttfb
    assert ttfb.count == 100
    assert ttfb.percentile_ms(50) < 2
    assert ttfb.percentile_ms(100) > 400
    assert merged.pong_rtt.count == 2
    assert merged.turns == 100
    assert merged.calls_failed == {"no_begin": 3}
    assert merged.violations == {"stale_frame": 1}
    assert [v.call_id for v in merged.violation_samples] == ["c1"]
    assert [e.call_id for e in merged.reconnect_events] == ["c1"]
    assert merged.started == min(fast.started, slow.started)
    assert merged.elapsed() == max(s["finished"] for s in states) - merged.started


@pytest.mark.integration
def test_simulate_with_workers_writes_one_report_of_every_call(tmp_path: Path) -> None:
    json_path = tmp_path / "run.json"
    with threaded_llm_server(ReferenceServer()) as url:
        result = runner.invoke(
            app,
            [
                "simulate",
                "--url",
                url,
                "--calls",
                "5",
                "--turns",
                "2",
                "--think-ms",
                "0",
                "--seed",
                "1",
                "--workers",
                "2",
                "--quiet",
                "--json",
                str(json_path),
            ],
        )
    assert result.exit_code == 0, result.output
    report = json.loads(json_path.read_text())
    assert report["passed"] is True
    assert report["options"]["workers"] == 2
    assert report["options"]["calls"] == 5
    assert report["calls_started"] == report["calls_completed"] == 5
    # 2 caller turns per call (greetings are their own kind), each counted once.
    assert report["turns"] == 5 * 2
    kinds = {k["kind"]: k["turns"] for k in report["per_kind"]}
    assert kinds["greeting"] == 5


def test_pong_rtt_and_failed_calls_are_targets() -> None:
    case = BenchCase(
        name="c", agent="scripted", calls=1, max_pong_rtt_p99_ms=100, max_failed_calls=0
    )
    assert missed_targets(case, passing_report()) == []
    slow = passing_report(pong_rtt=summary([50.0] * 98 + [2500.0] * 2))
    assert missed_targets(case, slow) == ["pong RTT p99 2500.0 ms > target 100 ms"]
    failed = passing_report(calls_failed={"no_begin": 2})
    assert missed_targets(case, failed) == ["2 failed calls > target 0"]
    assert missed_targets(case, passing_report(pong_rtt=summary([]))) == [
        "pong RTT p99 unknown > target 100 ms"
    ]


async def test_frame_costs_measure_every_kind_on_real_frames() -> None:
    costs = await measure(frames=20, idle_sessions=30)
    kinds = [c.kind for c in costs]
    assert kinds[0] == "ping_pong"
    assert kinds.count("update_only") == len(SIZES)
    assert kinds.count("response_required") == len(SIZES)
    assert kinds[-6].startswith("connection")
    assert [k.split(":")[0] for k in kinds[-5:-1]] == ["websocket"] * 4
    assert "websocket: parse, skip by head" in kinds
    assert kinds[-1].startswith("full GC, 30 idle calls")
    updates = [c for c in costs if c.kind == "update_only"]
    assert [c.utterances for c in updates] == list(SIZES)
    assert updates[0].frame_bytes < updates[1].frame_bytes
    assert all(c.cpu_us_per_frame >= 0 for c in costs)
    assert {c.frames for c in costs if c.kind == "response_required"} == {2}


def test_a_built_transcript_is_what_retell_sends() -> None:
    frame = msgspec.json.decode(transcript_of(4).update_only("user_turn"))
    assert frame["interaction_type"] == "update_only"
    assert [u["role"] for u in frame["transcript"]] == ["agent", "user", "agent", "user"]


class _ClosingTransport:
    """A socket whose caller has sent its close frame: every send fails, as the server's does."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closing = False

    def send_now(self, text: str) -> None:
        if self.closing:
            raise ConnectionError("connection is closing")
        self.sent.append(text)

    async def send_text(self, text: str) -> None:
        self.send_now(text)

    def close(self, code: int) -> None:
        return None

    def abort(self) -> None:
        raise AssertionError("a hangup must not be dropped as a failed socket")


async def test_a_ping_that_crosses_the_hangup_does_not_fail_the_socket() -> None:
    from switchboard.calls.session import CallSession, SessionOptions
    from switchboard.state.memory import MemoryCallStore
    from tests.fixtures.agents import EchoAgent

    transport = _ClosingTransport()
    session = CallSession(
        "c1", transport, EchoAgent(), MemoryCallStore(), SessionOptions(call_details=False)
    )
    await session.start()
    session.receive_text('{"interaction_type":"ping_pong","timestamp":5}')
    assert '{"response_type":"ping_pong","timestamp":5}' in transport.sent
    transport.closing = True
    session.receive_text('{"interaction_type":"ping_pong","timestamp":6}')
    # Still open: the disconnect behind the ping ends the call as a hangup.
    assert not session.closed
    await session.close()
