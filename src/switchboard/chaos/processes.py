"""The cluster's processes as the nemesis sees them: what each was started with, and how
to kill, pause and start it again the same way.

``switchboard cluster`` records pids, not command lines, in its state file, so a restart
reads each process's argv, environment and working directory from ``/proc`` once, at the
start of the run, while every process is alive. A restarted process is started by the
chaos runner itself (its own session, output appended to ``LOG_DIR/NAME.chaos.log``) on
the same port with the same argv, so the cluster gets its capacity back; the
``switchboard cluster`` process does not know about it (see docs/chaos.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import redis

from switchboard.connections import blocking_redis_client

POLL_S = 0.05


class ProcessError(RuntimeError):
    """A process could not be read, stopped or started again."""


@dataclass(slots=True)
class ClusterProcess:
    """One process of the cluster: a node, ``redis``, ``haproxy``, ``bus`` or a service."""

    name: str
    pid: int
    argv: list[str]
    env: dict[str, str]
    cwd: str
    port: int | None = None
    #: ``GET`` this answers 200 once the process is ready (a node's ``/readyz``)
    ready_url: str | None = None
    #: the process we started to replace the original, once there is one
    popen: subprocess.Popen[bytes] | None = None
    restarts: list[int] = field(default_factory=list)

    @classmethod
    def read(
        cls, name: str, pid: int, *, port: int | None = None, ready_url: str | None = None
    ) -> ClusterProcess:
        """argv, environment and cwd of the live process ``pid`` (``ProcessError`` if it
        is gone or not ours to read)."""
        proc = Path(f"/proc/{pid}")
        try:
            argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            raw_env = (proc / "environ").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError as exc:
            raise ProcessError(f"cannot read {name} (pid {pid}): {exc}") from None
        if not argv:
            raise ProcessError(f"{name} (pid {pid}) has exited (no command line)")
        env = {}
        for item in raw_env:
            key, sep, value = item.decode(errors="replace").partition("=")
            if sep:
                env[key] = value
        return cls(name=name, pid=pid, argv=argv, env=env, cwd=cwd, port=port, ready_url=ready_url)

    def signal(self, sig: signal.Signals) -> None:
        """``sig`` to the process (not its group: a node's group is the cluster's child)."""
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            raise ProcessError(f"{self.name} (pid {self.pid}) is not running") from None

    def wait_gone(self, deadline_s: float) -> None:
        """Until the process has exited (a zombie waiting for its parent counts)."""
        deadline = time.monotonic() + deadline_s
        while not self.gone():
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{self.name} (pid {self.pid}) still runs after {deadline_s:g} s"
                )
            time.sleep(POLL_S)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(1.0)

    def gone(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            return True
        try:
            return psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def start_again(self, log_dir: Path) -> None:
        """The same argv, environment and cwd, in its own session (it outlives us)."""
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{self.name}.chaos.log").open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        self.restarts.append(self.pid)

    def wait_ready(self, deadline_s: float) -> None:
        """Until its ready URL answers 200, or its port accepts connections."""
        deadline = time.monotonic() + deadline_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if self.popen is not None and self.popen.poll() is not None:
                    raise ProcessError(
                        f"{self.name} exited with code {self.popen.returncode} after its restart"
                    )
                if self._ready(client):
                    return
                if time.monotonic() > deadline:
                    raise ProcessError(f"{self.name} not ready {deadline_s:g} s after its restart")
                time.sleep(POLL_S)

    def _ready(self, client: httpx.Client) -> bool:
        if self.ready_url is not None:
            try:
                return client.get(self.ready_url).status_code == 200
            except httpx.TransportError:
                return False
        if self.port is not None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return True
            except OSError:
                return False
        return not self.gone()

    def option(self, name: str) -> str | None:
        """The value after ``name`` in its argv (``--dir`` of valkey-server)."""
        with contextlib.suppress(ValueError, IndexError):
            return self.argv[self.argv.index(name) + 1]
        return None


#: The settings a restarted valkey-server is given back: where and how it listens and
#: persists (it rewrites its own command line, so ``/proc`` no longer holds its argv).
VALKEY_SETTINGS = (
    "bind",
    "port",
    "dir",
    "dbfilename",
    "save",
    "appendonly",
    "appendfsync",
    "appendfilename",
    "appenddirname",
    "protected-mode",
    "maxmemory",
    "maxmemory-policy",
)


def read_valkey(name: str, pid: int, *, port: int | None, url: str) -> ClusterProcess:
    """A valkey-server: its binary from ``/proc``, its settings from ``CONFIG GET``
    (``ProcessError`` if it does not answer)."""
    process = ClusterProcess.read(name, pid, port=port)
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError as exc:
        raise ProcessError(f"cannot read {name} (pid {pid}): {exc}") from None
    client = blocking_redis_client(url, timeout_ms=2000)
    try:
        argv = [exe]
        for key in VALKEY_SETTINGS:
            values = client.config_get(key)
            for value in values.values():
                argv += [f"--{key}", value.decode() if isinstance(value, bytes) else str(value)]
    except redis.RedisError as exc:
        raise ProcessError(f"cannot read the settings of {name} at {url}: {exc}") from None
    finally:
        client.close()
    process.argv = argv
    return process


def delete_valkey_data(process: ClusterProcess) -> list[Path]:
    """Remove the data files of a stopped valkey-server (its RDB file and its AOF, in
    ``--dir``), so it starts empty; returns what was removed. Only those files: ``--dir``
    may be shared with other things."""
    directory = Path(process.option("--dir") or process.cwd)
    if not directory.is_absolute():
        directory = Path(process.cwd) / directory
    names = [
        process.option("--dbfilename") or "dump.rdb",
        process.option("--appendfilename") or "appendonly.aof",
        process.option("--appenddirname") or "appendonlydir",
    ]
    removed = []
    for name in names:
        path = directory / name
        if path.is_dir():
            for child in path.iterdir():
                child.unlink(missing_ok=True)
            path.rmdir()
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    return removed
