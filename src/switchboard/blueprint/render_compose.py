"""``docker-compose.yml``: the whole deployment on one Docker host.

Every long-lived part has a health check and ``restart: unless-stopped``; a node waits for
a healthy Redis (and bus), HAProxy for healthy nodes. ``stop_grace_period`` is the same
grace as Kubernetes', above the drain. Secrets are interpolated from the host's
environment (``${VAR:?}`` refuses to start without them); none is written here.

State lives on named volumes, never in a container's own filesystem: each node's outbox
spill file (under the node's stable service name), the archive's SQLite file, and the
analytics and escalation state (each one container, so one writer).
"""

from __future__ import annotations

from typing import Any

import yaml

from switchboard.blueprint.model import Deployment
from switchboard.blueprint.render_alerts import ALERTS_FILE
from switchboard.blueprint.render_haproxy import HAPROXY_FILE
from switchboard.blueprint.render_prometheus import (
    ANALYTICS_PORT,
    SCRAPE_FILE,
    SERVICE_METRICS_PORT,
)
from switchboard.blueprint.render_settings import SETTINGS_FILE
from switchboard.cluster.valkey import persistence_args

COMPOSE_FILE = "docker-compose.yml"
REDIS_IMAGE = "redis:7.4-alpine"
KAFKA_IMAGE = "apache/kafka:3.8.0"
HAPROXY_IMAGE = "haproxy:2.8-alpine"
PROMETHEUS_IMAGE = "prom/prometheus:v2.53.0"
CONFIG_DIR = "/etc/switchboard"
CONFIG_PATH = f"{CONFIG_DIR}/switchboard.toml"
#: the escalation service's rules: yours, next to this file (an example ships with switchboard)
ESCALATION_RULES = "escalation.yaml"
OUTBOX_DIR = "/var/lib/switchboard/outbox"
DATA_DIR = "/var/lib/switchboard"
#: services that keep state in a local SQLite file on their volume
STATEFUL_SERVICES = ("archive", "analytics", "escalation")


def service_command(service: str, bus_url: str, redis_url: str) -> list[str]:
    """The image's arguments for ``switchboard service NAME`` with the flags that service takes
    (docs/services.md); the image's entrypoint is ``switchboard`` itself (Dockerfile)."""
    argv = ["service", service, "--bus", bus_url, "--name", f"{service}-1"]
    if service in STATEFUL_SERVICES:
        argv += ["--db", f"{DATA_DIR}/{service}.db"]
    if service == "analytics":
        argv += ["--host", "0.0.0.0"]
    else:  # /metrics: group lag and dead letters (analytics serves them on its own port)
        argv += ["--host", "0.0.0.0", "--metrics-port", str(SERVICE_METRICS_PORT)]
    if service == "escalation":
        argv += ["--redis-url", redis_url, "--rules", f"{CONFIG_DIR}/{ESCALATION_RULES}"]
    return argv


def _service_port(service: str) -> int:
    return ANALYTICS_PORT if service == "analytics" else SERVICE_METRICS_PORT


def _http_check(port: int, path: str) -> dict[str, Any]:
    probe = (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=2)"
    )
    return {
        "test": ["CMD", "python", "-c", probe],
        "interval": "5s",
        "timeout": "3s",
        "retries": 3,
        "start_period": "10s",
    }


def compose_model(d: Deployment) -> dict[str, Any]:
    services: dict[str, Any] = {}
    depends: dict[str, Any] = {}
    if d.shared_state:
        services["redis"] = {
            "image": REDIS_IMAGE,
            # call state must survive a Redis restart (docs/distributed.md, "Redis use")
            "command": ["redis-server", *persistence_args(True)],
            "volumes": ["redis-data:/data"],
            "healthcheck": {
                "test": ["CMD", "redis-cli", "ping"],
                "interval": "5s",
                "timeout": "3s",
                "retries": 5,
            },
            "restart": "unless-stopped",
        }
        depends["redis"] = {"condition": "service_healthy"}
    if d.bus == "kafka":
        services["kafka"] = {
            "image": KAFKA_IMAGE,
            "environment": {
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
                "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            },
            "healthcheck": {
                "test": [
                    "CMD-SHELL",
                    "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092",
                ],
                "interval": "10s",
                "timeout": "10s",
                "retries": 5,
                "start_period": "20s",
            },
            "restart": "unless-stopped",
        }
        depends["kafka"] = {"condition": "service_healthy"}
    env: dict[str, str] = {"SWITCHBOARD_RETELL_API_KEY": "${SWITCHBOARD_RETELL_API_KEY:?}"}
    if d.shared_state:
        env["SWITCHBOARD_REDIS_URL"] = "redis://redis:6379/0"
    volumes: dict[str, Any] = {}
    for node in d.node_ids:
        mounts = [f"./{SETTINGS_FILE}:{CONFIG_PATH}:ro"]
        if d.bus_url is not None:
            volumes[f"{node}-outbox"] = {}
            mounts.append(f"{node}-outbox:{OUTBOX_DIR}")
        services[node] = {
            "image": d.image,
            "command": ["serve", "--config", CONFIG_PATH, "--node-id", node],
            "environment": env,
            "volumes": mounts,
            "healthcheck": _http_check(d.port, "/healthz"),
            "restart": "unless-stopped",
            "stop_signal": "SIGTERM",
            "stop_grace_period": f"{d.grace_period_s}s",
            **({"depends_on": dict(depends)} if depends else {}),
        }
    if d.nodes > 1:
        services["lb"] = {
            "image": HAPROXY_IMAGE,
            "volumes": [f"./{HAPROXY_FILE}:/usr/local/etc/haproxy/haproxy.cfg:ro"],
            "ports": [f"{d.port}:{d.port}"],
            "depends_on": {n: {"condition": "service_healthy"} for n in d.node_ids},
            "healthcheck": {
                "test": ["CMD", "haproxy", "-c", "-f", "/usr/local/etc/haproxy/haproxy.cfg"],
                "interval": "30s",
                "timeout": "5s",
                "retries": 3,
            },
            "restart": "unless-stopped",
        }
    else:
        services[d.node_ids[0]]["ports"] = [f"{d.port}:{d.port}"]
    if d.bus_url is not None:
        for service in d.services:
            mounts = []
            if service == "escalation":
                mounts.append(f"./{ESCALATION_RULES}:{CONFIG_DIR}/{ESCALATION_RULES}:ro")
            if service in STATEFUL_SERVICES:
                volumes[f"{service}-data"] = {}
                mounts.append(f"{service}-data:{DATA_DIR}")
            services[service] = {
                "image": d.image,
                "command": service_command(service, d.bus_url, "redis://redis:6379/0"),
                # the image's own check asks a node's /readyz; a service answers on its own port
                "healthcheck": _http_check(_service_port(service), "/healthz"),
                "restart": "unless-stopped",
                "depends_on": dict(depends),
                **({"volumes": mounts} if mounts else {}),
            }
    services["prometheus"] = {
        "image": PROMETHEUS_IMAGE,
        "volumes": [
            f"./prometheus/{SCRAPE_FILE}:/etc/prometheus/prometheus.yml:ro",
            f"./prometheus/{ALERTS_FILE}:/etc/prometheus/{ALERTS_FILE}:ro",
        ],
        "ports": ["9090:9090"],
        "healthcheck": {
            "test": ["CMD", "wget", "-qO-", "http://127.0.0.1:9090/-/ready"],
            "interval": "10s",
            "timeout": "3s",
            "retries": 3,
        },
        "restart": "unless-stopped",
    }
    model: dict[str, Any] = {"name": d.name, "services": services}
    if d.shared_state:
        volumes["redis-data"] = {}
    if volumes:
        model["volumes"] = volumes
    return model


def render_compose(d: Deployment) -> str:
    header = (
        f"# docker compose for the {d.profile} profile: {d.nodes} node(s).\n"
        "# Needs SWITCHBOARD_RETELL_API_KEY in the environment.\n"
        f"# Build {d.image} from the repository with `make image`.\n"
    )
    return header + yaml.safe_dump(compose_model(d), sort_keys=False, width=100)
