"""The event-driven part of a local cluster: the bus and the three services.

With ``--profile event-driven`` the cluster also runs an event bus and the archive,
analytics and escalation services, each as its own ``switchboard service ...`` child.
The bus is the ``tansu`` Kafka-compatible broker by default (``--bus kafka``), the shape
of a production deployment; ``--bus redis`` puts Redis Streams on the cluster's own
Redis instead (one process fewer, the lighter choice on a small machine). The services
keep their state in SQLite files in the cluster's log directory, so a run can be read
afterwards with ``switchboard archive ... --db LOG_DIR/archive.db``. Each service serves
``/metrics`` (analytics beside its dashboard; archive and escalation on a port of their
own, ``--metrics-port``), listed in the state file's ``service_metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from switchboard.cluster.processes import SWITCHBOARD_ARGV, Child, free_port, wait_http_ready
from switchboard.cluster.tansu import bootstrap, start_tansu
from switchboard.config import builtin_example
from switchboard.services.escalation.rules import load_rules

BusKind = Literal["kafka", "redis"]
BUS_KINDS: tuple[BusKind, ...] = ("kafka", "redis")
SERVICES = ("archive", "analytics", "escalation")


@dataclass(slots=True)
class EventStack:
    """The running bus (``None`` on the cluster's Redis) and services."""

    bus_url: str
    broker: Child | None
    services: dict[str, Child]
    archive_db: Path
    dashboard_url: str
    #: each service's ``/metrics`` URL
    metrics_urls: dict[str, str] = field(default_factory=dict)

    def children(self) -> list[Child]:
        return [*self.services.values(), *([self.broker] if self.broker else [])]


def start_bus(
    kind: BusKind, redis_url: str, log_dir: Path, ready_deadline_s: float
) -> tuple[str, Child | None]:
    """The bus URL, and the broker child when one was started."""
    if kind == "redis":
        return redis_url, None
    broker = start_tansu(log_dir=log_dir, ready_deadline_s=ready_deadline_s)
    return f"kafka://{bootstrap(broker)}", broker


def service_argvs(
    *,
    bus_url: str,
    redis_url: str,
    data_dir: Path,
    dashboard_port: int,
    rules: Path | None = None,
    metrics_ports: dict[str, int] | None = None,
) -> dict[str, list[str]]:
    """The ``switchboard service ...`` arguments of each service (after the program);
    ``metrics_ports``: the ``/metrics`` port of archive and escalation."""
    archive_db = str(data_dir / "archive.db")
    common = ["--bus", bus_url]
    ports = metrics_ports or {}

    def metrics(name: str) -> list[str]:
        return ["--metrics-port", str(ports[name])] if name in ports else []

    return {
        "archive": ["service", "archive", *common, "--db", archive_db, *metrics("archive")],
        "analytics": [
            *("service", "analytics", *common),
            *("--db", str(data_dir / "analytics.db"), "--archive-db", archive_db),
            *("--port", str(dashboard_port)),
        ],
        "escalation": [
            *("service", "escalation", *common, "--redis-url", redis_url),
            *("--rules", str(rules or builtin_example("escalation.yaml"))),
            *("--db", str(data_dir / "escalation.db")),
            *metrics("escalation"),
        ],
    }


def start_event_stack(
    *,
    kind: BusKind,
    redis_url: str,
    log_dir: Path,
    rules: Path | None,
    ready_deadline_s: float,
    dashboard_port: int | None = None,
) -> EventStack:
    """Start the bus and the services; returns once the dashboard answers. A failed start
    stops what had started."""
    load_rules(rules or builtin_example("escalation.yaml"))  # a bad file: RulesError now
    broker: Child | None = None
    services: dict[str, Child] = {}
    try:
        bus_url, broker = start_bus(kind, redis_url, log_dir, ready_deadline_s)
        port = dashboard_port or free_port()
        metrics_ports = {"archive": free_port(), "escalation": free_port()}
        while len({port, *metrics_ports.values()}) < 3:
            metrics_ports = {"archive": free_port(), "escalation": free_port()}
        argvs = service_argvs(
            bus_url=bus_url,
            redis_url=redis_url,
            data_dir=log_dir,
            dashboard_port=port,
            rules=rules,
            metrics_ports=metrics_ports,
        )
        for name, argv in argvs.items():
            services[name] = Child(
                name, [*SWITCHBOARD_ARGV, *argv], log_path=log_dir / f"{name}.log", port=None
            )
        dashboard_url = f"http://127.0.0.1:{port}/"
        metrics_urls = {
            name: f"http://127.0.0.1:{p}/metrics" for name, p in metrics_ports.items()
        } | {"analytics": f"{dashboard_url}metrics"}
        wait_http_ready(services["analytics"], f"{dashboard_url}api/summary", ready_deadline_s)
        for name, url in metrics_urls.items():
            wait_http_ready(services[name], url, ready_deadline_s)
        for child in services.values():
            if child.poll() is not None:
                raise child.error("exited at start")
    except BaseException:
        for child in [*services.values(), *([broker] if broker else [])]:
            child.stop()
        raise
    return EventStack(
        bus_url=bus_url,
        broker=broker,
        services=services,
        archive_db=log_dir / "archive.db",
        dashboard_url=dashboard_url,
        metrics_urls=metrics_urls,
    )
