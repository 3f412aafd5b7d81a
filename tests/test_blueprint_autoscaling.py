"""The autoscaling chain of the generated Kubernetes files holds end to end: the pods the
manifests run, the targets the scrape config keeps (relabelled as Prometheus would), the
series those targets produce, and the Prometheus Adapter's queries over them, evaluated by
the real ``promtool``. It once broke on one missing label: the adapter needs ``namespace``
and the scrape config never set it, so the HPA never got its metric."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.blueprint.model import Deployment
from switchboard.blueprint.render_alerts import JOB
from switchboard.blueprint.render_kubernetes import render_kubernetes
from switchboard.blueprint.render_prometheus import SERVICES_JOB, render_prometheus
from tests.fixtures.blueprints import deployment_for
from tests.fixtures.relabel import scraped_targets

#: active calls each node pod reports in the evaluated series
CALLS = 7


def _manifests(d: Deployment) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [doc for doc in yaml.safe_load_all(text) if doc]
        for name, text in render_kubernetes(d).items()
    }


def _workloads(d: Deployment) -> list[dict[str, Any]]:
    files = _manifests(d)
    return [*files["deployment.yaml"], *files.get("services.yaml", [])]


def _scrape(d: Deployment) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(render_prometheus(d)["prometheus-kubernetes.yml"])
    return loaded


def _adapter_rule(d: Deployment) -> dict[str, Any]:
    (config_map,) = _manifests(d)["prometheus-adapter.yaml"]
    (rule,) = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    assert isinstance(rule, dict)
    return rule


def _series(labels: dict[str, str], metric: str = "switchboard_active_calls") -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: run scripts/ensure-system-packages.sh (Debian package prometheus)"
        )
    return path


def _adapter_queries_on(
    d: Deployment, scrape: dict[str, Any], where: Path
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: the adapter's series and metrics queries, evaluated on the
    series the scrape config would collect from the node pods."""
    rule = _adapter_rule(d)
    nodes = [t for t in scraped_targets(scrape, _workloads(d)) if t["job"] == JOB]
    assert nodes, "the scrape config keeps no node pod"
    pods = sorted({t.get("pod", "") for t in nodes})
    matchers = f'namespace="{d.namespace}",pod=~"{"|".join(pods)}"'
    metrics_query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", "switchboard_active_calls")
        .replace("<<.LabelMatchers>>", matchers)
        .replace("<<.GroupBy>>", "pod")
    )
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": _series(t), "values": f"{CALLS}x10"} for t in nodes],
                "promql_expr_test": [
                    {
                        "expr": rule["seriesQuery"],
                        "eval_time": "5m",
                        "exp_samples": [{"labels": _series(t), "value": CALLS} for t in nodes],
                    },
                    {
                        "expr": metrics_query,
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": f'{{pod="{pod}"}}', "value": CALLS} for pod in pods
                        ],
                    },
                ],
            }
        ],
    }
    path = where / "adapter.test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run(
        [_promtool(), "test", "rules", path.name],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_node_pod_is_scraped_with_the_labels_the_adapter_maps() -> None:
    d = deployment_for("event-driven")
    rule = _adapter_rule(d)
    needed = set(rule["resources"]["overrides"])
    assert needed == {"namespace", "pod"}
    assert set(re.findall(r'(\w+)!=""', rule["seriesQuery"])) <= needed
    nodes = [t for t in scraped_targets(_scrape(d), _workloads(d)) if t["job"] == JOB]
    assert len(nodes) == 2  # one per pod the manifests run (two here), and only those
    for target in nodes:
        assert needed <= set(target), target
        assert target["namespace"] == d.namespace
        assert target["pod"].startswith(d.name)


@pytest.mark.integration
def test_the_adapter_queries_select_every_node_pod_in_promtool(tmp_path: Path) -> None:
    d = deployment_for("event-driven")
    done = _adapter_queries_on(d, _scrape(d), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_the_chain_breaks_in_promtool_without_the_namespace_label(tmp_path: Path) -> None:
    """The scrape config as it was: the adapter's series query finds nothing."""
    d = deployment_for("event-driven")
    scrape = _scrape(d)
    for job in scrape["scrape_configs"]:
        job["relabel_configs"] = [
            r for r in job["relabel_configs"] if r.get("target_label") != "namespace"
        ]
    done = _adapter_queries_on(d, scrape, tmp_path)
    assert done.returncode != 0
    assert "switchboard_active_calls" in done.stdout + done.stderr


def test_the_hpa_asks_for_the_metric_the_adapter_serves() -> None:
    d = deployment_for("event-driven")
    (hpa,) = _manifests(d)["hpa.yaml"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == _adapter_rule(d)["name"]["as"]
    target = hpa["spec"]["scaleTargetRef"]
    (workload,) = _manifests(d)["deployment.yaml"]
    assert (target["kind"], target["name"]) == (workload["kind"], workload["metadata"]["name"])


def test_every_service_is_scraped_and_every_alerted_job_exists() -> None:
    """The consumer alerts (lag, dead letters, gaps) read the services' /metrics: each
    service pod is a target of the services job, and every ``job=`` an alert names is a job
    of the scrape config."""
    d = deployment_for("event-driven")
    scrape = _scrape(d)
    targets = scraped_targets(scrape, _workloads(d))
    services = {t["pod"].rsplit("-", 2)[-2] for t in targets if t["job"] == SERVICES_JOB}
    assert services == set(d.services)
    assert all({"namespace", "pod"} <= set(t) for t in targets)
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    alerts = render_prometheus(d)["alerts.yml"]
    named = set(re.findall(r'job="([^"]+)"', alerts))
    assert named <= jobs, named - jobs
    for service in d.services:
        (workload,) = [
            w
            for w in _workloads(d)
            if w["kind"] != "Service" and w["metadata"]["name"] == f"{d.name}-{service}"
        ]
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        (port,) = container["ports"]
        if port["name"] == "metrics":
            args = container["args"]
            assert args[args.index("--metrics-port") + 1] == str(port["containerPort"])
            assert args[args.index("--host") + 1] == "0.0.0.0"
