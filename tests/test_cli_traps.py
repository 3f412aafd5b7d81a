"""The first-hour traps a new user fell into, one test each: a wrong archive path, a dead
simulator URL, a Redis URL the cache command ignored, a blueprint that assumed an instant
LLM, help text wrapped mid-sentence, and demos that overwrote each other's report.
(A busy port for ``serve`` is in test_port_clash.py.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.cli import app, demo_report_path
from switchboard.services.archive import open_archive, sqlite_path
from tests.fixtures.ports import free_port

runner = CliRunner()


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_reading_an_archive_that_does_not_exist_is_an_error_and_creates_nothing(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere" / "archive.db"
    for command in (["list"], ["stats"], ["show", "call-1"], ["search", "x"], ["questions"]):
        result = runner.invoke(app, ["archive", *command, "--db", str(missing)])
        assert result.exit_code == 2, (command, result.output)
        assert one_line(result.output) == (
            f"archive: no archive at {missing} (pass --db PATH or postgresql://..., "
            "or set SWITCHBOARD_ARCHIVE_DB)"
        )
    assert not missing.parent.exists()


def test_a_file_uri_names_the_file_not_a_directory_called_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "archive.db"
    asyncio.run(_create_archive(str(path)))
    monkeypatch.chdir(tmp_path)
    for url in (f"file:{path}", f"file://{path}", f"file:{path}?mode=ro", f"sqlite://{path}"):
        assert sqlite_path(url) == path
        result = runner.invoke(app, ["archive", "stats", "--db", url])
        assert result.exit_code == 0, (url, result.output)
        assert "calls: 0" in result.output
    assert not (tmp_path / "file:").exists()


def test_a_file_that_is_not_an_archive_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 100)
    result = runner.invoke(app, ["archive", "list", "--db", str(junk)])
    assert result.exit_code == 2
    assert one_line(result.output).startswith(f"archive: cannot read {junk}")


async def _create_archive(url: str) -> None:
    archive = await open_archive(url)
    await archive.close()


@pytest.mark.integration
def test_simulate_against_a_dead_url_says_connection_refused() -> None:
    url = f"ws://127.0.0.1:{free_port()}/llm-websocket"
    result = runner.invoke(app, ["simulate", "--url", url, "--calls", "2"])
    assert result.exit_code == 2
    line = one_line(result.output)
    assert line.startswith(f"simulate: cannot reach {url}: connection refused")


def test_cache_stats_with_a_redis_url_reads_that_redis(
    redis_server_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_REDIS_NAMESPACE", redis_namespace)
    result = runner.invoke(app, ["cache", "stats", "--redis-url", redis_server_url])
    assert result.exit_code == 0, result.output
    assert "0 entries" in result.output
    # A dead Redis URL is now an error about that Redis, not about the in-process cache.
    dead = runner.invoke(
        app, ["cache", "stats", "--redis-url", f"redis://127.0.0.1:{free_port()}/0"]
    )
    assert dead.exit_code != 0
    assert "lives inside the server process" not in dead.output


def test_blueprint_says_when_it_assumes_an_instant_llm() -> None:
    args = ["blueprint", "--calls", "50", "--budget-ms", "500"]
    without = runner.invoke(app, args)
    assert without.exit_code == 0, without.output
    assert "no --llm-ttft-ms" in without.output
    with_ttft = runner.invoke(app, [*args, "--llm-ttft-ms", "120"])
    assert with_ttft.exit_code == 0, with_ttft.output
    assert "no --llm-ttft-ms" not in with_ttft.output


@pytest.mark.integration
def test_help_in_a_pipe_keeps_each_description_whole() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "cluster", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    sentence = "Run valkey-server, N nodes and HAProxy in the foreground; SIGTERM drains and stops."
    assert any(sentence in line for line in done.stdout.splitlines()), done.stdout
    # the docstring's own line breaks are reflowed, not kept as orphan lines
    assert not any(line.strip(" │") == "services." for line in done.stdout.splitlines())


def test_each_profiles_demo_keeps_its_own_report() -> None:
    paths = {demo_report_path(p) for p in ("single", "distributed", "event-driven")}
    assert len(paths) == 3
    assert demo_report_path("distributed") == Path("reports/demo-distributed.html")


@pytest.mark.parametrize("service", ["archive", "analytics", "escalation"])
@pytest.mark.integration
def test_a_service_given_a_file_that_is_not_a_database_exits_with_one_line(
    service: str, tmp_path: Path
) -> None:
    """It used to print a traceback and then hang: the unclosed SQLite connection's thread
    kept the process alive."""
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n" * 100)
    args = ["service", service, "--bus", "memory://", "--db", str(junk)]
    if service == "analytics":
        args += ["--port", str(free_port())]
    if service == "escalation":
        args += ["--redis-url", "redis://127.0.0.1:1/0"]
        args += ["--rules", str(Path("src/switchboard/examples/escalation.yaml").resolve())]
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr).startswith(f"{service}: cannot open its database:")
