"""SUMMARY.md is a runbook that runs as written: its Kubernetes steps are replayed here
against the generated files (every object a step applies exists, after everything it
needs), its compose steps are checked in the dry form available (``docker compose config``
where an engine is installed; else every variable, file and mount the compose file needs is
provided by the files beside it), and each target lists only the steps for what was asked.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.blueprint.files import render_all
from switchboard.blueprint.model import Deployment
from switchboard.blueprint.render_runbook import COMPOSE_ENV, SECRETS_ENV
from tests.fixtures.blueprints import decision_for, deployment_for

PROFILES = ("single", "distributed", "event-driven")


def _files(profile: str) -> tuple[Deployment, dict[str, str]]:
    d = deployment_for(profile)
    return d, render_all(decision_for(profile), d, "fixed")


def _section(summary: str, heading: str) -> str:
    return summary.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def _commands(section: str) -> list[str]:
    """The commands of a section's ``sh`` blocks, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _env_keys(text: str) -> set[str]:
    return {
        line.split("=", 1)[0].strip()
        for line in text.splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }


class Cluster:
    """What a Kubernetes cluster would hold after each command: objects by (kind, ns, name),
    plus the prerequisites the steps name (installed by the user, not by the files)."""

    def __init__(self, files: dict[str, str], prerequisites: str) -> None:
        self.files = files
        self.prerequisites = prerequisites
        self.objects: set[tuple[str, str, str]] = set()
        self.secret_keys: set[str] = set()
        self.applied_files: list[str] = []
        self.copies: dict[str, str] = {}

    def has(self, kind: str, namespace: str, name: str) -> bool:
        return (kind, namespace, name) in self.objects

    def run(self, command: str) -> None:
        argv = shlex.split(command)
        if argv[0] == "cp":
            source, target = argv[1:]
            assert source in self.files, f"{command}: no {source} among the files"
            self.copies[target] = self.files[source]
            return
        if argv[0] == "redis-server":
            assert argv[argv.index("--appendonly") + 1] == "yes"
            return
        assert argv[0] == "kubectl", command
        namespace = ""
        if argv[1] == "-n":
            namespace = argv[2]
            argv = [argv[0], *argv[3:]]
            if namespace == "monitoring":  # the adapter's, installed with it
                assert "Prometheus Adapter" in self.prerequisites
            else:
                assert self.has("Namespace", "", namespace), f"{command}: no namespace yet"
        verb = argv[1]
        if verb == "create" and argv[2] == "namespace":
            self.objects.add(("Namespace", "", argv[3]))
        elif verb == "create" and argv[2] == "secret":
            name = argv[4]
            (source,) = [a.split("=", 1)[1] for a in argv if a.startswith("--from-env-file=")]
            assert source in self.copies, f"{command}: {source} was never written"
            self.secret_keys = _env_keys(self.copies[source])
            self.objects.add(("Secret", namespace, name))
        elif verb == "create" and argv[2] == "configmap":
            (source,) = [a.split("=", 1)[1] for a in argv if a.startswith("--from-file=")]
            assert source in self.files, f"{command}: no {source} among the files"
            self.objects.add(("ConfigMap", namespace, argv[3]))
        elif verb == "apply":
            for path in [argv[i + 1] for i, a in enumerate(argv) if a == "-f"]:
                assert path in self.files, f"{command}: no {path} among the files"
                self.applied_files.append(path)
                for doc in yaml.safe_load_all(self.files[path]):
                    if doc:
                        self.apply(doc, command)
        elif verb == "rollout":
            kind, name = argv[3].split("/")
            if namespace == "monitoring":
                assert "Prometheus Adapter" in self.prerequisites
                return
            assert any(k.lower() == kind and n == name for k, _, n in self.objects), command
        else:
            raise AssertionError(f"a step the test cannot replay: {command}")

    def apply(self, doc: dict[str, Any], command: str) -> None:
        kind, meta = doc["kind"], doc["metadata"]
        namespace = meta.get("namespace", "")
        if namespace == "monitoring":
            assert "Prometheus Adapter" in self.prerequisites, "the adapter is not named"
        elif namespace:
            assert self.has("Namespace", "", namespace), f"{kind} before its namespace"
        for ref in _secret_refs(doc):
            assert self.has("Secret", namespace, ref["name"]), f"{kind} before its Secret"
            if not ref.get("optional"):
                assert ref["key"] in self.secret_keys, f"secrets env lacks {ref['key']}"
        for name in _config_map_volumes(doc):
            assert self.has("ConfigMap", namespace, name), f"{kind} {meta['name']} before {name}"
        if kind == "HorizontalPodAutoscaler":
            target = doc["spec"]["scaleTargetRef"]
            assert self.has(target["kind"], namespace, target["name"]), "HPA before its target"
        if kind == "ScaledObject":
            target = doc["spec"]["scaleTargetRef"]
            assert "KEDA" in self.prerequisites
            assert self.has(target.get("kind", "Deployment"), namespace, target["name"])
        self.objects.add((kind, namespace, meta["name"]))


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _secret_refs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [n["secretKeyRef"] for n in _walk(doc) if "secretKeyRef" in n]


def _config_map_volumes(doc: dict[str, Any]) -> list[str]:
    return [n["configMap"]["name"] for n in _walk(doc) if isinstance(n.get("configMap"), dict)]


@pytest.mark.parametrize("profile", PROFILES)
def test_the_kubernetes_steps_apply_every_file_after_what_it_needs(profile: str) -> None:
    d, files = _files(profile)
    section = _section(files["SUMMARY.md"], "Run it on Kubernetes")
    cluster = Cluster(files, prerequisites=section)
    for command in _commands(section):
        cluster.run(command)
    manifests = sorted(f for f in files if f.startswith("kubernetes/"))
    assert sorted(cluster.applied_files) == manifests  # every file, each once
    assert cluster.has("Secret", d.namespace, "switchboard-secrets")


@pytest.mark.parametrize("profile", PROFILES)
def test_each_target_has_only_the_steps_for_what_was_asked(profile: str) -> None:
    d, files = _files(profile)
    summary = files["SUMMARY.md"]
    kubernetes = _section(summary, "Run it on Kubernetes")
    compose = _section(summary, "Run it with docker compose")
    assert ("redis-server" in kubernetes) == d.shared_state
    assert ("Kafka" in kubernetes) == (d.bus == "kafka")
    assert ("escalation-rules" in kubernetes) == ("escalation" in d.services)
    assert ("escalation.yaml" in files) == ("escalation" in d.services)
    assert ("hpa.yaml" in kubernetes) == (d.autoscale is not None)
    assert "kubectl" not in compose
    assert "docker" not in kubernetes
    keys = _env_keys(files[SECRETS_ENV])
    assert ("redis-url" in keys) == d.shared_state
    assert ("bus-url" in keys) == (d.bus_url is not None)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.integration
def test_the_compose_steps_find_every_variable_and_file_they_need(
    profile: str, tmp_path: Path
) -> None:
    _, files = _files(profile)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    commands = _commands(_section(files["SUMMARY.md"], "Run it with docker compose"))
    assert commands[0] == "make image"
    assert f"cp {COMPOSE_ENV} .env" in commands
    (tmp_path / ".env").write_text(files[COMPOSE_ENV].replace("=\n", "=set-by-the-test\n"))
    compose_text = files["docker-compose.yml"]
    needed = set(re.findall(r"\$\{(\w+):\?\}", compose_text))
    assert needed
    assert needed <= _env_keys(files[COMPOSE_ENV])
    model = yaml.safe_load(compose_text)
    for service in model["services"].values():
        assert service.get("image")
        assert "build" not in service
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("./"):
                assert (tmp_path / source).is_file(), f"{source} is mounted but not written"
            else:
                assert source in model.get("volumes", {}), f"volume {source} not declared"
    if _compose_engine() is not None:  # the real check, where an engine is installed
        done = subprocess.run(
            [*_compose_engine(), "config", "--quiet"],  # type: ignore[misc]
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def _compose_engine() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, timeout=30, check=False
    )
    return [docker, "compose"] if probe.returncode == 0 else None


def test_the_replay_fails_when_a_step_comes_before_what_it_needs() -> None:
    """The check bites: the Secret step moved after the nodes is caught."""
    _, files = _files("distributed")
    section = _section(files["SUMMARY.md"], "Run it on Kubernetes")
    commands = _commands(section)
    secret = [c for c in commands if "create secret" in c]
    reordered = [c for c in commands if c not in secret] + secret
    cluster = Cluster(files, prerequisites=section)

    def replay() -> None:
        for command in reordered:
            cluster.run(command)

    with pytest.raises(AssertionError, match="before its Secret"):
        replay()
