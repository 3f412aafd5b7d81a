"""A taken port (or a missing extra) is refused before anything starts, with one line: ``serve``,
the services, ``cluster`` (naming the state file of the cluster already there), and the
cluster's HAProxy, which must fail to bind rather than share the port with SO_REUSEPORT.

Every process here is real; the port is held by a real listening socket or a real cluster.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard.cluster.haproxy import start_haproxy
from switchboard.cluster.plan import plan_cluster
from switchboard.cluster.processes import ChildError
from switchboard.ports import PortInUse, bind_listener, ensure_free
from tests.fixtures.cluster import running_cluster
from tests.fixtures.ports import free_port

#: Generous: a refused start exits at once, but the machine may be busy.
EXIT_DEADLINE_S = 60.0
SWITCHBOARD = [sys.executable, "-m", "switchboard"]


@contextlib.contextmanager
def held_port(reuse_port: bool = False) -> Iterator[int]:
    """A port someone else listens on (with SO_REUSEPORT if asked, as HAProxy does)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWITCHBOARD, *args],
        capture_output=True,
        text=True,
        timeout=EXIT_DEADLINE_S,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "SWITCHBOARD_LOG_JSON": "true"},
    )


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a refused start; nothing on stdout."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.stdout.strip() == "", result.stdout
    return lines[0]


def test_bind_listener_refuses_a_port_another_socket_listens_on() -> None:
    for reuse_port in (False, True):
        with held_port(reuse_port) as port:
            with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1"):
                bind_listener("127.0.0.1", port)
            with pytest.raises(PortInUse, match="in use by cluster X"):
                ensure_free("127.0.0.1", port, "cluster X")
    port = free_port()
    bind_listener("127.0.0.1", port).close()
    ensure_free("127.0.0.1", port)


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "reuseport"])
def test_serve_on_a_taken_port_exits_with_one_line_before_listening(reuse_port: bool) -> None:
    with held_port(reuse_port) as port:
        line = refusal(run("serve", "--port", str(port)))
    assert line.startswith("serve: port ")
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert line.endswith("pass --port or stop the other server")  # and no "listening" line


def test_serve_still_starts_and_serves_on_a_free_port(tmp_path: Path) -> None:
    """The bound socket is the one uvicorn serves (not a second bind)."""
    import httpx

    from switchboard.cluster.processes import Child, wait_http_ready

    port = free_port()
    child = Child(
        "serve", [*SWITCHBOARD, "serve", "--port", str(port)], log_path=tmp_path / "s.log"
    )
    try:
        wait_http_ready(child, f"http://127.0.0.1:{port}/readyz", EXIT_DEADLINE_S)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).status_code == 200
        with pytest.raises(PortInUse):
            ensure_free("127.0.0.1", port)
    finally:
        child.stop()


@pytest.mark.parametrize(
    ("service", "args"),
    [
        ("archive", ["--bus", "memory://", "--metrics-port"]),
        ("analytics", ["--bus", "memory://", "--port"]),
        (
            "escalation",
            ["--bus", "memory://", "--rules", "missing.yaml", "--redis-url", "redis://x:1/0"],
        ),
    ],
)
def test_a_service_on_a_taken_port_exits_with_one_line(
    service: str, args: list[str], tmp_path: Path
) -> None:
    with held_port() as port:
        if service == "escalation":
            args = [*args, "--metrics-port"]
        result = run("service", service, *args, str(port), "--db", str(tmp_path / f"{service}.db"))
    line = refusal(result)
    assert line.startswith(f"{service}: port {port} on 127.0.0.1 is already in use")
    # refused before opening anything: no database was created
    assert not (tmp_path / f"{service}.db").exists()


def test_the_clusters_haproxy_fails_to_bind_a_port_shared_with_reuseport(tmp_path: Path) -> None:
    """Without ``noreuseport`` HAProxy would bind beside the holder and take half the calls."""
    with held_port(reuse_port=True) as port:
        plan = plan_cluster(nodes=1, port=port, node_ports=[free_port()], profile="single")
        with pytest.raises(ChildError, match="exited with code"):
            start_haproxy(
                plan.load_balancer,
                config_path=tmp_path / "haproxy.cfg",
                log_dir=tmp_path,
                ready_deadline_s=EXIT_DEADLINE_S,
            )
    assert "noreuseport" in (tmp_path / "haproxy.cfg").read_text()


def test_a_cluster_on_a_port_held_by_another_process_starts_nothing(tmp_path: Path) -> None:
    with held_port() as port:
        result = run("cluster", "--nodes", "1", "--port", str(port), "--log-dir", str(tmp_path))
    line = refusal(result)
    assert f"port {port} on 127.0.0.1 is already in use by another process" in line
    assert list(tmp_path.iterdir()) == []  # no valkey, node or HAProxy was started


def test_a_second_cluster_on_the_same_port_names_the_first_ones_state_file(
    tmp_path: Path,
) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    with running_cluster(first_dir, nodes=1, profile="single") as (_child, state):
        port = state.haproxy.port
        result = run(
            "cluster", "--nodes", "1", "--profile", "single", "--port", str(port),
            "--log-dir", str(second_dir),
        )  # fmt: skip
        line = refusal(result)
        assert f"port {port} on 127.0.0.1 is already in use by switchboard cluster" in line
        assert str((first_dir / "cluster.json").resolve()) in line
        assert list(second_dir.iterdir()) == []


def test_serve_asked_to_trace_without_the_extra_exits_with_one_line(tmp_path: Path) -> None:
    """With an OTLP endpoint set and OpenTelemetry missing (hidden from the process), serve
    names the pip install instead of starting without the traces it was asked for."""
    hide = tmp_path / "sitecustomize.py"
    hide.write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    done = subprocess.run(
        [*SWITCHBOARD, "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=EXIT_DEADLINE_S,
        stdin=subprocess.DEVNULL,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
            "PYTHONPATH": str(tmp_path),
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
        },
    )
    line = refusal(done)
    assert line == (
        "serve: OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
        "pip install 'switchboard[otel]'"
    )
