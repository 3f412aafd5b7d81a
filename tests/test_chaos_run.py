"""``switchboard chaos`` end to end: a real 3-node distributed cluster, a short seeded
fault schedule, the report read back. The runner is run through its command line, as a
user runs it against their own cluster."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from typer.testing import CliRunner

from switchboard.chaos.report import load_json
from switchboard.chaos.run import ChaosReport
from switchboard.cli import app
from switchboard.cluster.plan import ClusterState, read_state
from switchboard.cluster.processes import SWITCHBOARD_ARGV, Child, free_port
from tests.fixtures.cluster import running_cluster

CHAOS_DEADLINE_S = 240.0


def run_chaos(
    tmp_path: Path, state_file: Path, *args: str, deadline_s: float = CHAOS_DEADLINE_S
) -> tuple[int, ChaosReport]:
    out = tmp_path / "chaos.json"
    argv = [*SWITCHBOARD_ARGV, "chaos", "--state", str(state_file), "--json-out", str(out)]
    argv += ["--report", str(tmp_path / "chaos.html"), *args]
    child = Child("chaos", argv, log_path=tmp_path / "chaos.log")
    try:
        code = child.wait(deadline_s)
    finally:
        child.stop()
    assert out.exists(), child.log_tail(40)
    return code, load_json(out)


def listening_pids(ports: set[int]) -> set[int]:
    pids = set()
    for conn in psutil.net_connections(kind="tcp"):
        listening = conn.status == psutil.CONN_LISTEN and conn.laddr
        if listening and conn.laddr.port in ports and conn.pid is not None:
            pids.add(conn.pid)
    return pids


def cluster_ports(state: ClusterState) -> set[int]:
    ports = {n.port for n in state.nodes}
    if state.haproxy.port is not None:
        ports.add(state.haproxy.port)
    if state.valkey is not None and state.valkey.port is not None:
        ports.add(state.valkey.port)
    return ports


@dataclass
class ChaosCluster:
    state_file: Path
    #: processes the chaos run restarted that outlived the cluster's stop (none expected)
    left_behind: set[int] = field(default_factory=set)


@contextlib.contextmanager
def chaos_cluster(
    tmp_path: Path,
    profile: str = "distributed",
    extra_args: Sequence[str] = (),
    **env: str,
) -> Iterator[ChaosCluster]:
    """A 3-node cluster. Its stop must also stop what the chaos runner restarted (the
    state file lists them); whatever outlives it is recorded, then killed, pass or fail."""
    restarted: set[int] = set()
    ports: set[int] = set()
    cluster = ChaosCluster(state_file=tmp_path / "cluster" / "cluster.json")
    try:
        with running_cluster(
            tmp_path / "cluster", nodes=3, profile=profile, extra_args=extra_args, **env
        ) as (_, state):
            ports = cluster_ports(state)
            started_by_cluster = set(state.pids)
            services = set(state.services.values())
            try:
                yield cluster
            finally:
                restarted = listening_pids(ports) - started_by_cluster
                restarted |= restarted_services(tmp_path, services)
    finally:
        leftovers = {pid for pid in restarted if _process(pid) is not None}
        leftovers |= listening_pids(ports)
        cluster.left_behind = set(leftovers)
        for pid in leftovers:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        psutil.wait_procs([p for p in map(_process, leftovers) if p is not None], timeout=10)


def restarted_services(tmp_path: Path, original: set[int]) -> set[int]:
    """Services the chaos run started again (they listen on no port of the state file)."""
    out = tmp_path / "chaos.json"
    if not out.exists():
        return set()
    return {p.pid for p in load_json(out).processes_started} - original


def _process(pid: int) -> psutil.Process | None:
    """The process, if it still runs (a zombie has exited)."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.Error:
        return None


def test_kill_term_and_hang_ups_between_turns_pass_and_the_cluster_gets_its_nodes_back(
    tmp_path: Path,
) -> None:
    with chaos_cluster(tmp_path) as cluster:
        state_file = cluster.state_file
        code, report = run_chaos(
            tmp_path,
            state_file,
            *("--seed", "11", "--calls", "10", "--turns", "4", "--duration", "12"),
            *("--faults", "kill,term,hangup:2"),
        )
        f = report.findings
        assert f.passed, (f.reasons, f.samples)
        assert code == 0
        assert [e.kind for e in report.history.faults] == [s.kind for s in report.schedule]
        assert sorted(e.kind for e in report.history.faults) == ["hangup", "kill", "term"]
        assert all(e.ok and e.ended_at is not None for e in report.history.faults)
        assert f.calls == 10
        assert f.turns_answered > 0
        assert (f.calls_lost, f.second_greetings, f.repeated_questions) == (0, 0, 0)
        assert (f.replies_differing, f.unanswered_turns) == (0, 0)
        assert sum(c.hung_up for c in report.history.calls) == 2
        assert len(f.recoveries) == 3
        # the control run answered every turn of every call, and the same calls were played
        assert all(all(c.completed) for c in report.control.calls)
        assert [c.planned_turns for c in report.control.calls] == [4] * 10
        # killed and drained nodes were started again, on the same ports, and say so
        restarted = {p.name: p.pid for p in report.processes_started}
        targets = {e.target for e in report.history.faults if e.kind in ("kill", "term")}
        assert set(restarted) == targets
        now = read_state(state_file)
        for node in now.nodes:
            if node.node_id in restarted:
                assert node.pid == restarted[node.node_id]
                assert psutil.Process(node.pid).is_running()
        assert set(restarted.values()) <= set(now.pids)
        html = (tmp_path / "chaos.html").read_text()
        assert "PASS" in html
        assert "<svg" in html
    # stopping the cluster stopped the nodes the chaos run restarted, too
    assert cluster.left_behind == set()


def test_a_state_file_that_does_not_exist_is_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["chaos", "--state", str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert "no cluster state file" in result.output


def test_a_fault_spec_that_cannot_run_is_bad_input(tmp_path: Path) -> None:
    state = tmp_path / "cluster.json"
    state.write_text(
        json.dumps(
            {
                "url": "ws://127.0.0.1:1/llm-websocket",
                "webhook_url": "http://127.0.0.1:1/webhook",
                "redis_url": None,
                "profile": "distributed",
                "nodes": [{"pid": 1, "port": 2, "node_id": "node-1"}],
                "haproxy": {"pid": 1, "port": 1},
            }
        )
    )
    for spec, words in [("explode", "unknown fault"), ("redis-restart", "own Redis")]:
        result = CliRunner().invoke(app, ["chaos", "--state", str(state), "--faults", spec])
        assert result.exit_code == 2, result.output
        assert words in result.output
    state.write_text("{not json")
    result = CliRunner().invoke(app, ["chaos", "--state", str(state)])
    assert result.exit_code == 2
    assert "cannot read the cluster state file" in result.output


def test_kills_mid_turn_and_after_a_reply_a_redis_pause_and_an_haproxy_restart_lose_nothing(
    tmp_path: Path,
) -> None:
    """A node killed the moment a reply's content_complete is read (between it and the
    save), another right after a request to it is written (the turn in its hands), Redis
    paused, HAProxy restarted (every socket drops at once): every call goes on as in the
    control run: none lost, none greeted twice, none asked again. Seed 34 aims the two
    kills at different nodes while calls are live."""
    with chaos_cluster(tmp_path) as cluster:
        code, report = run_chaos(
            tmp_path,
            cluster.state_file,
            *("--seed", "34", "--calls", "10", "--turns", "4", "--duration", "20"),
            *("--faults", "kill-after-reply,kill-mid-turn,redis-pause:1,haproxy-restart"),
        )
        faults = {e.kind: e for e in report.history.faults}
        assert all(e.ok for e in faults.values()), report.history.faults
        # both kills were aimed: a call the target owned tripped them
        assert faults["kill-after-reply"].detail == ""
        assert faults["kill-mid-turn"].detail == ""
        assert faults["kill-mid-turn"].turns_in_flight >= 1
        haproxy = next(r for r in report.findings.recoveries if r.kind == "haproxy-restart")
        assert haproxy.touched_calls > 0  # the calls lost their sockets and came back
        f = report.findings
        assert f.passed, (f.reasons, f.samples)
        assert code == 0


def test_calls_reconnecting_after_redis_restarted_empty_are_not_greeted_again(
    tmp_path: Path,
) -> None:
    """Redis restarted empty (kill -9, data files removed, same port), then every socket
    dropped before the calls spoke again (seed 84 puts the HAProxy restart 0.7 s after
    the Redis restart): each call reconnects to a cluster that lost its state, and must
    still not be greeted twice nor asked again for what it gave (issue 14, items 2-3)."""
    with chaos_cluster(tmp_path) as cluster:
        state_file = cluster.state_file
        code, report = run_chaos(
            tmp_path,
            state_file,
            *("--seed", "84", "--calls", "10", "--turns", "4", "--duration", "16"),
            *("--faults", "redis-restart,haproxy-restart"),
        )
        assert [e.kind for e in report.history.faults] == ["redis-restart", "haproxy-restart"]
        assert all(e.ok for e in report.history.faults), report.history.faults
        f = report.findings
        assert f.second_greetings == 0, f.samples
        assert f.repeated_questions == 0, f.samples
        assert f.passed, (f.reasons, f.samples)
        assert code == 0


def test_an_event_driven_cluster_survives_its_bus_stopped_and_a_service_killed(
    tmp_path: Path,
) -> None:
    """The event-driven faults: the tansu broker stopped (SIGSTOP) for a second, a
    service killed and started again with its argv. Calls never wait for the bus."""
    with chaos_cluster(tmp_path, profile="event-driven") as cluster:
        state_file = cluster.state_file
        state = read_state(state_file)
        code, report = run_chaos(
            tmp_path,
            state_file,
            *("--seed", "3", "--calls", "8", "--turns", "3", "--duration", "10"),
            *("--faults", "bus-stop:1,service-kill"),
        )
        assert sorted(e.kind for e in report.history.faults) == ["bus-stop", "service-kill"]
        assert all(e.ok for e in report.history.faults), report.history.faults
        killed = next(e.target for e in report.history.faults if e.kind == "service-kill")
        assert killed in ("archive", "analytics", "escalation")
        [started] = report.processes_started
        assert started.name == killed
        assert read_state(state_file).services[killed] == started.pid != state.services[killed]
        f = report.findings
        assert f.passed, (f.reasons, f.samples)
        assert code == 0


def test_no_fault_is_run_against_a_cluster_that_fails_its_control_run(tmp_path: Path) -> None:
    """Nothing answers at the cluster's URL: the control run fails, the verdict says the
    cluster is unhealthy before any fault, and the nemesis touches no process."""
    stand_in = Child(
        "stand-in",
        [sys.executable, "-c", "import time; time.sleep(600)"],
        log_path=tmp_path / "s.log",
    )
    try:
        port = free_port()
        state = tmp_path / "cluster.json"
        state.write_text(
            json.dumps(
                {
                    "url": f"ws://127.0.0.1:{port}/llm-websocket",
                    "webhook_url": f"http://127.0.0.1:{port}/webhook",
                    "redis_url": None,
                    "profile": "distributed",
                    "nodes": [{"pid": stand_in.pid, "port": free_port(), "node_id": "node-1"}],
                    "haproxy": {"pid": stand_in.pid, "port": port},
                }
            )
        )
        code, report = run_chaos(
            tmp_path, state, "--calls", "2", "--turns", "1", "--faults", "kill,haproxy-restart"
        )
        assert code == 1
        assert "the cluster is unhealthy before any fault" in report.findings.reasons[0]
        assert report.history.faults == []
        assert report.history.calls == []
        assert stand_in.poll() is None
    finally:
        stand_in.stop()


def test_a_chaos_run_killed_half_way_leaves_no_restarted_process_behind(tmp_path: Path) -> None:
    """The state file names a restarted node as soon as it is restarted, not at the end of
    the run: a runner killed with SIGKILL after a restart leaves the cluster's stop a
    complete list (it used to leave the new node running)."""
    import signal
    import time

    with chaos_cluster(tmp_path) as cluster:
        before = read_state(cluster.state_file)
        node_pids = {n.pid for n in before.nodes}
        argv = [*SWITCHBOARD_ARGV, "chaos", "--state", str(cluster.state_file)]
        argv += ["--seed", "5", "--calls", "3", "--turns", "4", "--duration", "10"]
        argv += ["--faults", "kill", "--json-out", str(tmp_path / "half.json")]
        child = Child("chaos", argv, log_path=tmp_path / "chaos-half.log")
        try:
            deadline = time.monotonic() + CHAOS_DEADLINE_S
            while {n.pid for n in read_state(cluster.state_file).nodes} == node_pids:
                assert child.poll() is None, child.log_tail(40)
                assert time.monotonic() < deadline, "no restart was recorded"
                time.sleep(0.1)
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        finally:
            child.stop()
        after = read_state(cluster.state_file)
        new = {n.pid for n in after.nodes} - node_pids
        assert len(new) == 1
        assert new <= set(after.pids)
    assert cluster.left_behind == set()
