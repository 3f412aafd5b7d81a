"""Prometheus for a deployment: the scrape configs (compose and Kubernetes), and the files
under ``prometheus/``: those and the alert rules (``render_alerts``) with their
``promtool test rules`` cases (``render_alert_tests``).
"""

from __future__ import annotations

from typing import Any

import yaml

from switchboard.blueprint.model import Deployment
from switchboard.blueprint.render_alert_tests import alert_tests
from switchboard.blueprint.render_alerts import ALERTS_FILE, JOB, alert_rules

SCRAPE_FILE = "prometheus.yml"
SCRAPE_K8S_FILE = "prometheus-kubernetes.yml"
ALERTS_TEST_FILE = "alerts.test.yml"
SERVICES_JOB = "switchboard-services"
#: The analytics service's default port (dashboard and /metrics).
ANALYTICS_PORT = 8090
#: Where archive and escalation serve ``/metrics`` in the generated deployments.
SERVICE_METRICS_PORT = 9464


def scrape_config(d: Deployment) -> dict[str, Any]:
    targets = [f"{n}:{d.port}" for n in d.node_ids]
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [ALERTS_FILE],
        "scrape_configs": [
            {"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": targets}]},
            *service_jobs(d),
        ],
    }


def service_jobs(d: Deployment) -> list[dict[str, Any]]:
    """The event-driven services' ``/metrics`` (compose): group lag, dead letters, gaps."""
    if d.bus is None:
        return []
    targets = [
        f"archive:{SERVICE_METRICS_PORT}",
        f"escalation:{SERVICE_METRICS_PORT}",
        f"analytics:{ANALYTICS_PORT}",
    ]
    return [
        {
            "job_name": SERVICES_JOB,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": targets}],
        }
    ]


def scrape_config_kubernetes(d: Deployment) -> dict[str, Any]:
    """Pods found through the API: the node pods (job ``switchboard``) and, event-driven,
    the services' pods (job ``switchboard-services``). Every target carries ``namespace``
    and ``pod``: the Prometheus Adapter maps a series to its pod through exactly those two
    labels, so without them the HPA never gets its metric."""
    jobs = [_kubernetes_job(d, JOB, component="node", port_name="http")]
    if d.bus is not None:
        jobs.append(
            _kubernetes_job(
                d, SERVICES_JOB, component="|".join(d.services), port_name="metrics|http"
            )
        )
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [ALERTS_FILE],
        "scrape_configs": jobs,
    }


def _kubernetes_job(d: Deployment, job: str, *, component: str, port_name: str) -> dict[str, Any]:
    meta = "__meta_kubernetes_pod_"
    return {
        "job_name": job,
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [d.namespace]}}],
        "relabel_configs": [
            {
                "source_labels": [f"{meta}label_app_kubernetes_io_name"],
                "regex": d.name,
                "action": "keep",
            },
            {
                "source_labels": [f"{meta}label_app_kubernetes_io_component"],
                "regex": component,
                "action": "keep",
            },
            {
                "source_labels": [f"{meta}container_port_name"],
                "regex": port_name,
                "action": "keep",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": [f"{meta}name"], "target_label": "pod"},
        ],
    }


def _dump(data: dict[str, Any], header: str) -> str:
    return f"# {header}\n" + yaml.safe_dump(data, sort_keys=False, width=100)


def render_prometheus(d: Deployment) -> dict[str, str]:
    """The files under ``prometheus/``."""
    return {
        SCRAPE_FILE: _dump(scrape_config(d), "Prometheus for docker-compose: scrape every node."),
        SCRAPE_K8S_FILE: _dump(
            scrape_config_kubernetes(d),
            "Prometheus in Kubernetes: node pods and services, with namespace and pod.",
        ),
        ALERTS_FILE: _dump(alert_rules(d), f"Alerts for the {d.profile} profile."),
        ALERTS_TEST_FILE: _dump(alert_tests(d), "promtool test rules alerts.test.yml"),
    }
