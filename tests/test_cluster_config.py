"""The local cluster's decisions, without starting anything: the haproxy.cfg it renders
(checked by the real HAProxy binary too), node names, ports, node command lines and the
state file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from switchboard.cluster.haproxy import (
    HAProxyError,
    LoadBalancer,
    Server,
    check_config,
    render_config,
)
from switchboard.cluster.plan import (
    ClusterState,
    NodeInfo,
    ProcessInfo,
    cluster_state,
    node_argv,
    node_ids,
    plan_cluster,
    read_state,
    write_state,
)
from switchboard.cluster.run import distinct_free_ports
from switchboard.cluster.services import service_argvs
from switchboard.config import builtin_example


def three_nodes(**overrides: object) -> LoadBalancer:
    servers = tuple(Server(name=f"node-{i}", host="127.0.0.1", port=9000 + i) for i in (1, 2, 3))
    values: dict[str, object] = {"servers": servers, "port": 9000}
    values.update(overrides)
    return LoadBalancer(**values)  # type: ignore[arg-type]


def section(config: str, header: str) -> list[str]:
    """The stripped lines of one section (``backend calls``, ``defaults`` ...)."""
    block = config.split(f"\n{header}\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def ms(config: str, directive: str) -> int:
    found = re.search(rf"^\s*{directive} (\d+)ms$", config, re.MULTILINE)
    assert found, f"{directive} not in config"
    return int(found.group(1))


def test_tunnel_timeout_outlives_the_longest_call() -> None:
    config = render_config(three_nodes(longest_call_ms=7_200_000, tunnel_margin_ms=60_000))
    assert ms(config, "timeout tunnel") == 7_260_000
    # The HTTP-phase timeouts stay short: they never apply to an upgraded socket.
    assert ms(config, "timeout client") < ms(config, "timeout tunnel")
    assert ms(config, "timeout server") < ms(config, "timeout tunnel")


def test_every_node_is_health_checked_on_readyz_every_200_ms() -> None:
    config = render_config(three_nodes())
    calls = section(config, "backend calls")
    assert "balance leastconn" in calls
    assert "option httpchk GET /readyz" in calls
    assert "http-check expect status 200" in calls
    for i in (1, 2, 3):
        assert f"server node-{i} 127.0.0.1:900{i} check" in calls
    assert "default-server inter 200ms fall 2 rise 2" in section(config, "defaults")


def test_failed_connects_and_refused_handshakes_are_retried_elsewhere() -> None:
    defaults = section(render_config(three_nodes(retries=4)), "defaults")
    assert "retries 4" in defaults
    assert "option redispatch 1" in defaults
    assert "retry-on conn-failure empty-response 503" in defaults


def test_webhooks_are_balanced_over_the_same_checked_nodes() -> None:
    config = render_config(three_nodes())
    assert "use_backend webhooks if { path /webhook }" in section(config, "frontend switchboard")
    webhooks = section(config, "backend webhooks")
    for i in (1, 2, 3):
        assert f"server node-{i} 127.0.0.1:900{i} track calls/node-{i}" in webhooks
    # A draining node keeps its live calls: nothing shuts sessions down on a failed check.
    assert "shutdown-sessions" not in config


def test_bind_threads_and_logging_follow_the_model() -> None:
    config = render_config(three_nodes(bind_host="0.0.0.0", threads=2, log=False))
    assert "bind 0.0.0.0:9000" in section(config, "frontend switchboard")
    assert "nbthread 2" in section(config, "global")
    assert "no log" in section(config, "defaults")
    assert "log stdout" not in config


@pytest.mark.parametrize(
    "overrides",
    [
        {"servers": ()},
        {"servers": (Server("a", "127.0.0.1", 1), Server("a", "127.0.0.1", 2))},
        {"servers": (Server("two words", "127.0.0.1", 1),)},
        {"servers": (Server("a", "127.0.0.1", 70000),)},
        {"port": 0},
        {"longest_call_ms": 0},
        {"retries": 0},
    ],
)
def test_a_model_haproxy_would_reject_is_refused_up_front(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"server|port|must"):
        three_nodes(**overrides)


@pytest.mark.integration
def test_the_real_haproxy_accepts_the_rendered_config(tmp_path: Path) -> None:
    for lb in (three_nodes(), three_nodes(threads=1, log=False, bind_host="0.0.0.0")):
        path = tmp_path / "haproxy.cfg"
        path.write_text(render_config(lb))
        check_config(path)


@pytest.mark.integration
def test_the_real_haproxy_rejection_is_reported_with_its_words(tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text(render_config(three_nodes()).replace("balance leastconn", "balance nonsense"))
    with pytest.raises(HAProxyError, match="balance only supports"):
        check_config(path)


@pytest.mark.integration
def test_nodes_get_distinct_names_and_ports() -> None:
    assert node_ids(3) == ["node-1", "node-2", "node-3"]
    with pytest.raises(ValueError, match="at least one node"):
        node_ids(0)
    ports = distinct_free_ports(5, avoid={8080})
    assert len(set(ports)) == 5
    assert 8080 not in ports
    plan = plan_cluster(nodes=2, port=8080, node_ports=[9001, 9002], profile="single")
    assert [(n.node_id, n.port) for n in plan.nodes] == [("node-1", 9001), ("node-2", 9002)]
    assert [s.port for s in plan.load_balancer.servers] == [9001, 9002]
    assert plan.url == "ws://127.0.0.1:8080/llm-websocket"
    assert plan.webhook_url == "http://127.0.0.1:8080/webhook"
    for bad in ([9001], [9001, 9001], [8080, 9002]):
        with pytest.raises(ValueError, match="ports"):
            plan_cluster(nodes=2, port=8080, node_ports=bad)


def test_a_load_balancer_on_every_interface_is_reached_on_loopback() -> None:
    plan = plan_cluster(nodes=1, port=8080, node_ports=[9001], bind_host="0.0.0.0")
    assert plan.url == "ws://127.0.0.1:8080/llm-websocket"


def test_node_command_line_carries_its_identity_and_the_shared_redis() -> None:
    plan = plan_cluster(nodes=2, port=8080, node_ports=[9001, 9002])
    argv = node_argv(
        plan,
        plan.nodes[1],
        redis_url="redis://127.0.0.1:6379/0",
        agent_file=Path("agent.yaml"),
        config=Path("settings.toml"),
    )
    assert argv[0] == "serve"
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert flags == {
        "--host": "127.0.0.1",
        "--port": "9002",
        "--node-id": "node-2",
        "--profile": "distributed",
        "--redis-url": "redis://127.0.0.1:6379/0",
        "--agent-file": "agent.yaml",
        "--config": "settings.toml",
    }
    assert "--redis-url" not in node_argv(plan, plan.nodes[0], redis_url=None)


def test_state_file_lists_every_process_and_round_trips(tmp_path: Path) -> None:
    plan = plan_cluster(nodes=2, port=8080, node_ports=[9001, 9002])
    state = cluster_state(
        plan,
        node_pids=[11, 12],
        haproxy_pid=13,
        valkey=ProcessInfo(pid=10, port=6379),
        redis_url="redis://127.0.0.1:6379/0",
        haproxy_cfg=tmp_path / "haproxy.cfg",
        log_dir=tmp_path,
        cluster_pid=9,
    )
    assert state.pids == [10, 11, 12, 13]
    assert state.nodes == [
        NodeInfo(pid=11, port=9001, node_id="node-1"),
        NodeInfo(pid=12, port=9002, node_id="node-2"),
    ]
    path = tmp_path / "state.json"
    write_state(state, path)
    assert read_state(path) == state
    raw = path.read_text()
    for key in ('"url": "ws://127.0.0.1:8080/llm-websocket"', '"redis_url"', '"node_id"'):
        assert key in raw
    without_valkey = cluster_state(
        plan,
        node_pids=[11, 12],
        haproxy_pid=13,
        valkey=None,
        redis_url="redis://elsewhere:6379/0",
        haproxy_cfg=tmp_path / "haproxy.cfg",
        log_dir=tmp_path,
        cluster_pid=9,
    )
    assert without_valkey.pids == [11, 12, 13]
    assert isinstance(without_valkey, ClusterState)


def test_event_driven_nodes_get_the_bus_and_services_share_the_archive(tmp_path: Path) -> None:
    plan = plan_cluster(nodes=1, port=8080, node_ports=[9001], profile="event-driven")
    argv = node_argv(plan, plan.nodes[0], redis_url="redis://r:1/0", bus_url="kafka://k:2")
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert flags["--bus"] == "kafka://k:2"
    assert flags["--profile"] == "event-driven"
    assert "--bus" not in node_argv(plan, plan.nodes[0], redis_url=None)

    argvs = service_argvs(
        bus_url="kafka://k:2", redis_url="redis://r:1/0", data_dir=tmp_path, dashboard_port=8090
    )
    assert list(argvs) == ["archive", "analytics", "escalation"]
    by_name = {n: dict(zip(a[2::2], a[3::2], strict=True)) for n, a in argvs.items()}
    assert all(a[:2] == ["service", n] for n, a in argvs.items())
    assert {f["--bus"] for f in by_name.values()} == {"kafka://k:2"}
    archive = str(tmp_path / "archive.db")
    assert by_name["archive"]["--db"] == archive
    assert by_name["analytics"]["--archive-db"] == archive
    assert by_name["analytics"]["--port"] == "8090"
    assert by_name["escalation"]["--redis-url"] == "redis://r:1/0"
    assert by_name["escalation"]["--rules"] == str(builtin_example("escalation.yaml"))
    assert len({f["--db"] for f in by_name.values()}) == 3  # each service its own state
    assert all("--metrics-port" not in a for a in argvs.values())
    served = service_argvs(
        bus_url="kafka://k:2",
        redis_url="redis://r:1/0",
        data_dir=tmp_path,
        dashboard_port=8090,
        metrics_ports={"archive": 9101, "escalation": 9102},
    )
    ports = {
        n: dict(zip(a[2::2], a[3::2], strict=True)).get("--metrics-port") for n, a in served.items()
    }
    assert ports == {"archive": "9101", "analytics": None, "escalation": "9102"}


def test_event_driven_state_round_trips_with_the_bus_and_services(tmp_path: Path) -> None:
    plan = plan_cluster(nodes=1, port=8080, node_ports=[9001], profile="event-driven")
    state = cluster_state(
        plan,
        node_pids=[11],
        haproxy_pid=13,
        valkey=None,
        redis_url="redis://r:1/0",
        haproxy_cfg=tmp_path / "haproxy.cfg",
        log_dir=tmp_path,
        cluster_pid=9,
    )
    assert state.bus_url is None
    assert state.services == {}
    state.bus_url = "kafka://127.0.0.1:2"
    state.archive_db = str(tmp_path / "archive.db")
    state.dashboard_url = "http://127.0.0.1:8090/"
    state.services = {"archive": 21, "analytics": 22, "escalation": 23, "tansu": 24}
    path = tmp_path / "state.json"
    write_state(state, path)
    assert read_state(path) == state
