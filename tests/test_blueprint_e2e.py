"""End to end: a blueprint per profile, started with ``switchboard cluster`` from the
generated files, validated with ``switchboard validate --cluster``; the report must pass.

Call counts and caps are small and runs short, so each profile takes seconds. Every
process is started as a ``Child`` and stopped, whatever happens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from switchboard.cluster.launch import wait_state
from switchboard.cluster.processes import Child, free_port

_SWITCHBOARD = (sys.executable, "-c", "from switchboard.cli import main; main()")

#: profile -> blueprint inputs that the matrix answers with it (tiny caps keep it fast)
PLANS = {
    "single": ["--calls", "3", "--budget-ms", "800", "--max-calls-per-node", "5"],
    "distributed": ["--calls", "12", "--budget-ms", "500", "--max-calls-per-node", "8"],
}


def _run(argv: list[str], log: Path, timeout_s: float) -> int:
    with Child(log.stem, [*_SWITCHBOARD, *argv], log_path=log) as child:
        return child.wait(timeout_s)


@pytest.mark.parametrize("profile", list(PLANS))
def test_blueprint_runs_on_the_cluster_and_validates(profile: str, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    log = tmp_path / "blueprint.log"
    code = _run(["blueprint", *PLANS[profile], "--out", str(out), "--json"], log, 60)
    assert code == 0, log.read_text()
    decision = json.loads(log.read_text())
    assert decision["profile"] == profile
    nodes = str(decision["nodes"])
    assert f"Deployment blueprint: {profile}" in (out / "SUMMARY.md").read_text()
    settings = (out / "switchboard.toml").read_text()
    state_file = tmp_path / "cluster.json"
    argv = ["cluster", "--nodes", nodes, "--port", str(free_port()), "--profile", profile]
    argv += ["--config", str(out / "switchboard.toml"), "--state-file", str(state_file)]
    argv += ["--log-dir", str(tmp_path / "cluster")]
    # A one-second drain, so the drain check's calls hand off instead of finishing.
    env = {"SWITCHBOARD_DRAIN_TIMEOUT_S": "1", "SWITCHBOARD_LOG_LEVEL": "warning"}
    cluster = Child("cluster", [*_SWITCHBOARD, *argv], log_path=tmp_path / "cluster.log", env=env)
    try:
        state = wait_state(cluster, state_file, 90.0)
        if (out / "haproxy.cfg").exists():
            dns = "init-addr last,libc,none resolvers dns "  # the deployment's resolver only
            generated = (out / "haproxy.cfg").read_text().replace(dns, "")
            running = Path(state.haproxy_cfg).read_text()
            assert _defaults(generated) == _defaults(running), "the same renderer, the same choices"
        report = tmp_path / "validation.html"
        code = _run(
            [
                "validate",
                "--cluster",
                str(state_file),
                "--profile",
                profile,
                "--calls",
                PLANS[profile][1],
                "--duration",
                "2",
                # Behaviour is what this test proves; latency is the bench's to measure, and a
                # busy machine must not fail it.
                "--budget-ms",
                "10000",
                "--report",
                str(report),
            ],
            tmp_path / "validate.log",
            300,
        )
    finally:
        cluster.stop(timeout_s=30)
    result = json.loads(report.with_suffix(".json").read_text())
    failed = [c for c in result["checks"] if not c["passed"]]
    assert code == 0, failed or (tmp_path / "validate.log").read_text()
    assert result["passed"] is True
    names = {c["name"] for c in result["checks"]}
    assert {"latency", "calls past the cap", "reconnect", "protocol conformance"} <= names
    if profile != "single":
        assert {"node restart: state survives", "drain"} <= names
    assert f'profile = "{profile}"' in settings


def _defaults(cfg: str) -> str:
    """The ``defaults`` section: timeouts, retries, checks (the servers differ by design)."""
    return cfg.split("defaults", 1)[1].split("frontend", 1)[0]
