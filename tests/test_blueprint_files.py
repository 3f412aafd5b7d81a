"""Each generated file, checked by the tool that would consume it where one exists here:
the settings by ``load_settings``, Kubernetes by ``kubernetes-validate --strict``, the
alerts by ``promtool``; compose has no engine here, so its structure is asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from redis.asyncio import Redis

from switchboard.blueprint.model import Deployment
from switchboard.blueprint.render_compose import compose_model
from switchboard.blueprint.render_haproxy import render_haproxy
from switchboard.blueprint.render_kubernetes import KUBERNETES_VERSION, render_kubernetes
from switchboard.blueprint.render_prometheus import render_prometheus
from switchboard.blueprint.render_settings import render_settings
from switchboard.cluster.haproxy import LoadBalancer, Server, check_config, render_config
from switchboard.config import load_settings
from switchboard.connections import RedisHealth
from switchboard.events.buses.memory import MemoryBus
from switchboard.events.metrics import OutboxCollector
from switchboard.events.outbox import Outbox
from switchboard.server.metrics import NodeMetrics, RedisCollector
from switchboard.services.service_metrics import ServiceCollector, ServiceStats
from tests.fixtures.blueprints import deployment_for

PROFILES = ("single", "distributed", "event-driven")


@pytest.fixture(params=PROFILES)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return deployment_for(request.param)


def test_settings_file_loads_with_the_plans_values(deployment: Deployment, tmp_path: Path) -> None:
    path = tmp_path / "switchboard.toml"
    path.write_text(render_settings(deployment))
    settings = load_settings(path)
    assert settings.profile == deployment.profile
    assert settings.max_calls == deployment.max_calls
    assert settings.drain_timeout_s == deployment.drain_timeout_s > deployment.longest_call_s
    assert settings.redis_url is None  # a secret: from the environment only
    assert (settings.bus_url is not None) == (deployment.profile == "event-driven")
    assert settings.retell_api_key is None


def test_compose_has_every_part_with_health_checks_and_restarts(deployment: Deployment) -> None:
    model = yaml.safe_load(yaml.safe_dump(compose_model(deployment)))
    services: dict[str, Any] = model["services"]
    d = deployment
    assert ("redis" in services) == d.shared_state
    assert ("kafka" in services) == (d.bus == "kafka")
    assert ("lb" in services) == (d.nodes > 1)
    for name in (*d.node_ids, *d.services):
        assert name in services
    for name, svc in services.items():
        assert svc["restart"] == "unless-stopped", name
        if name not in d.services:
            assert "healthcheck" in svc, name
    for node in d.node_ids:
        svc = services[node]
        assert svc["stop_grace_period"] == f"{d.grace_period_s}s"
        assert d.grace_period_s > d.drain_timeout_s
        assert "/healthz" in " ".join(svc["healthcheck"]["test"])
        if d.shared_state:
            assert svc["depends_on"]["redis"] == {"condition": "service_healthy"}
        for key, value in svc["environment"].items():
            if key == "SWITCHBOARD_RETELL_API_KEY":
                assert value.startswith("${"), "secrets come from the host environment"
    if d.nodes > 1:
        lb = services["lb"]
        assert any(v.startswith("./haproxy.cfg:") for v in lb["volumes"])
        assert set(lb["depends_on"]) == set(d.node_ids)


def _manifests(d: Deployment) -> dict[str, list[dict[str, Any]]]:
    return {name: list(yaml.safe_load_all(text)) for name, text in render_kubernetes(d).items()}


def test_kubernetes_manifests_validate_strictly(deployment: Deployment) -> None:
    checked = 0
    for docs in _manifests(deployment).values():
        for doc in docs:
            if doc["apiVersion"].startswith("keda.sh/"):
                continue  # a custom resource: checked below, no offline schema has it
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            checked += 1
    assert checked >= 5


def test_kubernetes_validate_rejects_what_strict_mode_is_for(deployment: Deployment) -> None:
    doc = _manifests(deployment)["deployment.yaml"][0]
    doc["spec"]["template"]["spec"]["terminationGracePeriod"] = 10  # a typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_node_pods_drain_longer_than_the_longest_call(deployment: Deployment) -> None:
    d = deployment
    pod = _manifests(d)["deployment.yaml"][0]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] > d.drain_timeout_s > d.longest_call_s
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    for env in container["env"]:
        assert "value" not in env, f"{env['name']}: no literal values, only references"


def test_no_secret_values_anywhere(deployment: Deployment) -> None:
    kinds = {doc["kind"] for docs in _manifests(deployment).values() for doc in docs}
    assert "Secret" not in kinds


def test_autoscaling_is_on_active_calls_not_cpu() -> None:
    d = deployment_for("event-driven")
    files = _manifests(d)
    assert "replicas" not in files["deployment.yaml"][0]["spec"]  # the HPA owns it
    (hpa,) = files["hpa.yaml"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "switchboard_active_calls"
    assert d.autoscale is not None
    assert metric["pods"]["target"]["averageValue"] == str(d.autoscale.target_calls_per_pod)
    adapter = yaml.safe_load(files["prometheus-adapter.yaml"][0]["data"]["config.yaml"])
    assert adapter["rules"][0]["name"]["as"] == "switchboard_active_calls"
    scaled = files["keda.yaml"]
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {f"{d.name}-archive"}
    for s in scaled:
        (trigger,) = s["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] in d.services


def test_fixed_pools_have_no_autoscaler() -> None:
    files = _manifests(deployment_for("distributed"))
    assert "hpa.yaml" not in files
    assert files["deployment.yaml"][0]["spec"]["replicas"] == deployment_for("distributed").nodes


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: run scripts/ensure-system-packages.sh (Debian package prometheus)"
        )
    return path


def _write_prometheus(d: Deployment, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    for name, text in render_prometheus(d).items():
        (where / name).write_text(text)
    return where


def _promtool_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.integration
def test_alert_rules_pass_promtool_check_and_their_unit_tests(
    deployment: Deployment, tmp_path: Path
) -> None:
    where = _write_prometheus(deployment, tmp_path)
    for args in (
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts.test.yml"),
        ("check", "config", "prometheus.yml"),
    ):
        done = _promtool_run(*args, cwd=where)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_kubernetes_scrape_config_keeps_the_node_pods_and_the_services(
    deployment: Deployment,
) -> None:
    """Debian's promtool is built without Kubernetes discovery, so this one is read here
    (test_blueprint_autoscaling.py derives the targets it would keep)."""
    config = yaml.safe_load(render_prometheus(deployment)["prometheus-kubernetes.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == (
        {"switchboard", "switchboard-services"} if deployment.bus else {"switchboard"}
    )
    for job in jobs.values():
        assert job["kubernetes_sd_configs"] == [
            {"role": "pod", "namespaces": {"names": [deployment.namespace]}}
        ]
        keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        assert deployment.name in {r["regex"] for r in keep}
        targets = {r.get("target_label") for r in job["relabel_configs"]}
        assert {"namespace", "pod"} <= targets
    keep = [r for r in jobs["switchboard"]["relabel_configs"] if r.get("action") == "keep"]
    assert {r["regex"] for r in keep} == {deployment.name, "node", "http"}
    assert config["rule_files"] == ["alerts.yml"]


@pytest.mark.integration
def test_promtool_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    where = _write_prometheus(deployment_for("distributed"), tmp_path)
    rules = (where / "alerts.yml").read_text()
    (where / "alerts.yml").write_text(
        rules.replace("switchboard_redis_up == 0", "switchboard_redis_up == 2")
    )
    done = _promtool_run("test", "rules", "alerts.test.yml", cwd=where)
    assert done.returncode != 0
    assert "SwitchboardRedisDown" in done.stdout + done.stderr


def _exported_names() -> set[str]:
    names: set[str] = set()
    node = NodeMetrics()
    node.fallback("timeout")  # labelled families export samples once a child exists
    node.rejected_total.labels("at_capacity").inc()
    box = Outbox(MemoryBus())
    box.stats.dropped_by_reason["spill_full"] = 1  # labelled: exported once counted
    box.stats.parked_by_reason["too_large"] = 1
    outbox = OutboxCollector(box)
    service = ServiceCollector(ServiceStats("archive", parked=Counter(malformed=1), lag=0))
    collectors = [node.registry, RedisCollector(RedisHealth(Redis())), outbox, service]
    for collector in collectors:
        for family in collector.collect():
            names.update(sample.name for sample in family.samples)
            names.add(family.name)
    return names


def test_alert_rules_use_metrics_the_node_exports(deployment: Deployment) -> None:
    rules = render_prometheus(deployment)["alerts.yml"]
    used = set(re.findall(r"\bswitchboard_[a-z_]+", rules))
    assert used, "the rules read switchboard metrics"
    unknown = used - _exported_names()
    assert not unknown, f"not exported by a node or a service: {sorted(unknown)}"
    assert "switchboard_first_chunk_seconds_bucket" in used
    assert "switchboard_handshakes_rejected_total" in used


def test_summary_gives_rationale_arithmetic_files_and_migration() -> None:
    from switchboard.blueprint.render_summary import render_summary
    from tests.fixtures.blueprints import decision_for

    decision = decision_for("event-driven")
    d = deployment_for("event-driven")
    files = ["switchboard.toml", "haproxy.cfg", "docker-compose.yml", "kubernetes/hpa.yaml"]
    text = render_summary(decision, d, files, "fixed")
    for factor in decision.factors:
        assert f"| {factor.name} | {factor.value} | {factor.row} |" in text
    c = decision.capacity
    assert f"{c.rate_turns_per_s:g} x {c.turn_interval_s:g} = {c.measured_calls}" in text
    assert f"ceil({d.calls} / {c.calls_per_node}) + 1 spare = {d.nodes}" in text
    assert f"`terminationGracePeriodSeconds` {d.grace_period_s} s" in text
    for name in ("`switchboard.toml`", "`haproxy.cfg`", "`kubernetes/`", "`SUMMARY.md`"):
        assert name in text
    migration = text.split("## Migration path", 1)[1]
    assert migration.index("Redis") < migration.index("HAProxy") < migration.index("bus")
    assert "switchboard validate" in migration


@pytest.mark.integration
def test_haproxy_cfg_is_the_clusters_with_runtime_dns(tmp_path: Path) -> None:
    d = deployment_for("distributed")
    cfg = render_haproxy(d)
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    check_config(path)  # the real binary; node-1.. do not resolve here, and need not
    assert f"timeout tunnel {d.tunnel_timeout_s * 1000}ms" in cfg
    assert d.tunnel_timeout_s > d.drain_timeout_s
    assert "option httpchk GET /readyz" in cfg
    for node in d.node_ids:
        assert f"server {node} {node}:{d.port} check" in cfg
    cluster = render_config(
        LoadBalancer(
            servers=(Server(name="node-1", host="127.0.0.1", port=1),),
            longest_call_ms=d.longest_call_s * 1000,
        )
    )
    ours = cfg.replace("init-addr last,libc,none resolvers dns ", "")
    assert _section(ours, "defaults") == _section(cluster, "defaults")


def _section(cfg: str, name: str) -> str:
    return cfg.split(f"\n{name}\n", 1)[1].split("\n\n", 1)[0]


def test_services_get_the_flags_they_take() -> None:
    d = deployment_for("event-driven")
    services = compose_model(d)["services"]
    escalation = services["escalation"]["command"]
    assert escalation[:2] == ["service", "escalation"]  # the image's entrypoint is switchboard
    assert "--rules" in escalation
    assert "--redis-url" in escalation
    assert any(v.startswith("./escalation.yaml:") for v in services["escalation"]["volumes"])
    assert services["archive"]["command"][2:4] == ["--bus", "kafka://kafka:9092"]
    pods = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in _manifests(d)["services.yaml"]
        if doc["kind"] != "Service"
    }
    rules = pods["switchboard-escalation"]["volumes"][0]["configMap"]["name"]
    assert rules == "switchboard-escalation-rules"
    assert "--db" in pods["switchboard-archive"]["containers"][0]["args"]


def test_event_driven_nodes_spill_to_a_persistent_volume_under_a_stable_id(
    tmp_path: Path,
) -> None:
    d = deployment_for("event-driven")
    files = _manifests(d)
    (nodes,) = files["deployment.yaml"]
    assert nodes["kind"] == "StatefulSet"  # pod names (the node ids) survive a restart
    assert "$(POD_NAME)" in nodes["spec"]["template"]["spec"]["containers"][0]["args"]
    (claim,) = nodes["spec"]["volumeClaimTemplates"]
    mounts = nodes["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    outbox = {m["mountPath"] for m in mounts if m["name"] == claim["metadata"]["name"]}
    toml = tmp_path / "switchboard.toml"
    toml.write_text(files["configmap.yaml"][0]["data"]["switchboard.toml"])
    settings = load_settings(toml)
    assert outbox == {str(settings.outbox_dir)}
    (hpa,) = files["hpa.yaml"]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    compose = compose_model(d)
    for node in d.node_ids:
        mounts = compose["services"][node]["volumes"]
        (volume,) = [v for v in mounts if v.endswith(str(settings.outbox_dir))]
        assert volume.split(":")[0] in compose["volumes"]  # a named volume, per node


def test_services_with_pod_local_state_are_singular_on_a_volume() -> None:
    d = deployment_for("event-driven")
    files = _manifests(d)
    workloads = {
        doc["metadata"]["name"]: doc for doc in files["services.yaml"] if doc["kind"] != "Service"
    }
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in files["keda.yaml"]}
    compose = compose_model(d)
    for name in ("analytics", "escalation"):
        if name not in d.services:
            continue
        doc = workloads[f"{d.name}-{name}"]
        assert doc["kind"] == "StatefulSet"
        assert doc["spec"]["replicas"] == 1
        assert doc["spec"]["volumeClaimTemplates"]
        assert doc["metadata"]["name"] not in scaled
        args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--db") + 1].startswith("/var/lib/switchboard/")
        assert any(v.startswith(f"{name}-data:") for v in compose["services"][name]["volumes"])
    archive = compose["services"]["archive"]
    assert any(v.startswith("archive-data:") for v in archive["volumes"])
    command = archive["command"]
    assert command[command.index("--db") + 1].startswith("/var/lib/switchboard/")


def test_the_blueprints_redis_is_persistent_and_says_so(deployment: Deployment) -> None:
    from switchboard.blueprint.render_summary import render_summary
    from tests.fixtures.blueprints import decision_for

    d = deployment
    model = yaml.safe_load(yaml.safe_dump(compose_model(d)))
    deployment_yaml = render_kubernetes(d)["deployment.yaml"]
    summary = render_summary(decision_for(d.profile), d, ["docker-compose.yml"], "fixed")
    if not d.shared_state:
        assert "redis" not in model["services"]
        assert "appendonly" not in deployment_yaml + summary
        return
    redis = model["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in model["volumes"]
    assert "appendonly yes" in deployment_yaml  # Redis is the user's: the file says how
    assert "redis-server --appendonly yes --appendfsync everysec" in summary
