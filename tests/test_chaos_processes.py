"""The nemesis's hands on real processes: a valkey-server read back from ``/proc`` and
``CONFIG GET``, killed, emptied and started again on the same port; a node-like process
stopped and paused. Real processes, no mocks."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import redis

from switchboard.chaos.processes import (
    ClusterProcess,
    ProcessError,
    delete_valkey_data,
    read_valkey,
)
from switchboard.cluster.processes import Child
from switchboard.cluster.valkey import redis_url, start_valkey


def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for ``condition`` with a generous deadline (a signal is delivered, not obeyed,
    when ``kill`` returns)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


@pytest.mark.integration
def test_valkey_restarted_empty_comes_back_on_its_port_without_its_data(tmp_path: Path) -> None:
    valkey = start_valkey(log_dir=tmp_path)
    url = redis_url(valkey)
    process = read_valkey("redis", valkey.pid, port=valkey.port, url=url)
    try:
        assert process.option("--port") == str(valkey.port)
        client = redis.Redis.from_url(url)
        client.set("call:1", "state")
        client.save()  # an RDB file on disk: the restart must not load it back
        client.close()
        process.signal(signal.SIGKILL)
        process.wait_gone(30)
        valkey.stop()  # reaps the killed child
        removed = delete_valkey_data(process)
        assert sorted(p.name for p in removed) == ["appendonlydir", "dump.rdb"]
        process.start_again(tmp_path)
        process.wait_ready(30)
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.get("call:1") is None
        assert client.config_get("port")["port"] == str(valkey.port)
        client.close()
    finally:
        if process.popen is not None:
            process.popen.kill()
            process.popen.wait(10)
        valkey.stop()


def test_only_the_data_files_are_deleted(tmp_path: Path) -> None:
    (tmp_path / "dump.rdb").write_text("x")
    (tmp_path / "appendonlydir").mkdir()
    (tmp_path / "appendonlydir" / "appendonly.aof.1.base.rdb").write_text("x")
    (tmp_path / "notes.txt").write_text("keep me")
    process = ClusterProcess(
        name="redis", pid=0, argv=["valkey-server", "--dir", str(tmp_path)], env={}, cwd="/"
    )
    assert {p.name for p in delete_valkey_data(process)} == {"dump.rdb", "appendonlydir"}
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.integration
def test_a_process_is_read_stopped_and_started_again_with_its_argv_env_and_cwd(
    tmp_path: Path,
) -> None:
    script = (
        "import os, time; print(os.environ['CHAOS_MARK'], os.getcwd(), flush=True); time.sleep(600)"
    )
    child = Child(
        "sleeper",
        [sys.executable, "-c", script],
        log_path=tmp_path / "sleeper.log",
        env={"CHAOS_MARK": "marked"},
    )
    try:
        # once it has printed, it runs the script (a read before its exec sees the fork's argv)
        first_log = tmp_path / "sleeper.log"
        until(lambda: first_log.exists() and "marked" in first_log.read_text())
        process = ClusterProcess.read("sleeper", child.pid)
        assert process.argv == [sys.executable, "-c", script]
        assert process.env["CHAOS_MARK"] == "marked"
        process.signal(signal.SIGSTOP)
        until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_STOPPED)
        process.signal(signal.SIGCONT)
        until(lambda: psutil.Process(child.pid).status() != psutil.STATUS_STOPPED)
        process.signal(signal.SIGTERM)
        process.wait_gone(30)
        process.start_again(tmp_path)
        assert process.pid != child.pid
        assert process.restarts == [process.pid]
        process.wait_ready(30)  # no port, no URL: ready while it runs
        assert not process.gone()
        log = tmp_path / "sleeper.chaos.log"
        until(lambda: log.exists() and "marked" in log.read_text())
        assert log.read_text().split() == ["marked", str(Path.cwd())]
    finally:
        child.stop()
        if process.popen is not None:
            process.popen.kill()
            process.popen.wait(10)


def test_a_process_that_is_gone_cannot_be_read() -> None:
    with pytest.raises(ProcessError, match="cannot read ghost"):
        ClusterProcess.read("ghost", 2**22 + 12345)
