"""Child processes for ``switchboard demo`` and ``switchboard bench``: server, fake LLM, simulator.

Each piece runs through its own command line, as a user would run it, so the demo proves
the CLIs work and the bench measures the server's CPU apart from the load generator's.
Every child gets its own process group (so stopping it also stops anything it spawned),
writes its output to a log file (a full pipe can never stall it, and the tail explains a
failure), and can be pinned to a core with ``taskset`` where that exists.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from switchboard.sim.report import load_json
from switchboard.sim.results import RunReport

#: How often readiness is polled; the deadline, not this, bounds the wait.
POLL_INTERVAL_S = 0.05
#: Runs ``switchboard`` with this very interpreter, whether or not the script is on PATH.
SWITCHBOARD_ARGV = (sys.executable, "-c", "from switchboard.cli import main; main()")


class ChildError(RuntimeError):
    """A child process that failed to start, to become ready, or to finish its run."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Drawn *below* the kernel's ephemeral range: a port the kernel hands out (bind to 0)
    can be taken again, as the source port of any outgoing connection, between this
    call and the server's own bind; a port outside that range cannot.
    """
    low = _ephemeral_low()
    for _ in range(64):
        port = _rng.randrange(_PORTS_FROM, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


_PORTS_FROM = 10_000
_rng = random.SystemRandom()


@functools.cache
def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux; 32768 elsewhere)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    return max(low, _PORTS_FROM + 1_000)


def pin_prefix(cpu: int | None) -> list[str]:
    """``taskset -c CPU`` when pinning is asked for and possible, else nothing."""
    if cpu is None or shutil.which("taskset") is None:
        return []
    if cpu >= (os.cpu_count() or 1):
        return []
    return ["taskset", "-c", str(cpu)]


class Child:
    """One subprocess we started and must stop: its own process group, output to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cpu: int | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        #: the port it serves on, when it is a server
        self.port = port
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **(env or {})}
        self.argv = [*pin_prefix(cpu), *argv]
        with log_path.open("wb") as log:
            # taskset execs the command, so the pid is the command's own.
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        self.pid = self._popen.pid
        self._psutil = psutil.Process(self.pid)

    def poll(self) -> int | None:
        """The exit code, or ``None`` while it runs."""
        return self._popen.poll()

    def wait(self, timeout_s: float) -> int:
        """Wait for the child to exit on its own; ``ChildError`` after ``timeout_s``."""
        try:
            return self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise self.error(f"still running after {timeout_s:g} s") from None

    def cpu_seconds(self) -> float:
        """User + system CPU the child has used so far (0 once it is gone)."""
        try:
            times = self._psutil.cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return float(times.user + times.system)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM the process group (a server drains), then SIGKILL what is left.

        Returns the exit code. Safe to call twice and on a child that already exited;
        members of the group that outlive the child are killed too, so nothing is orphaned.
        """
        # Until we reap the child its pid (and so its group id) cannot be reused, which
        # makes signalling the whole group safe.
        if self._popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._popen.wait(timeout_s)
        leftovers = self._group_members()
        for leftover in leftovers:
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        # A signal is delivered, not obeyed, by the time kill() returns: wait until they
        # are gone, so "stopped" means no process of the group is left running.
        deadline = time.monotonic() + timeout_s
        while leftovers and time.monotonic() < deadline:
            leftovers = [p for p in leftovers if _running(p)]
            if leftovers:
                time.sleep(0.01)
        return self._popen.returncode

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child's process group, if the child still runs (a server
        drains on its first SIGTERM; ``stop`` then waits for it)."""
        if self._popen.poll() is None:
            self._signal_group(sig)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def _group_members(self) -> list[psutil.Process]:
        """Live processes still in the child's group once the child itself is reaped."""
        members = []
        for proc in psutil.process_iter():
            try:
                if (
                    proc.pid != self.pid
                    and os.getpgid(proc.pid) == self.pid
                    and proc.status() != psutil.STATUS_ZOMBIE
                ):
                    members.append(proc)
            except (OSError, psutil.Error):
                continue
        return members

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def error(self, what: str) -> ChildError:
        tail = self.log_tail()
        detail = f"\n--- last lines of {self.log_path} ---\n{tail}" if tail else ""
        return ChildError(f"{self.name} (pid {self.pid}) {what}{detail}")

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (a zombie has exited; only its parent's wait is missing)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_http_ready(child: Child, url: str, deadline_s: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail early if the child exits, or at the deadline."""
    deadline = time.monotonic() + deadline_s
    with httpx.Client(timeout=2.0, trust_env=False) as client:  # never via a proxy
        while True:
            code = child.poll()
            if code is not None:
                raise child.error(f"exited with code {code} before {url} answered")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise child.error(f"not ready: {url} did not answer 200 within {deadline_s:g} s")
            time.sleep(POLL_INTERVAL_S)


def listening(child: Child, deadline_s: float = 30.0) -> Child:
    """``child`` once it accepts connections on its port; stopped, and the error raised, if
    it exits or is not listening by the deadline (so a failed start leaves nothing behind)."""
    assert child.port is not None
    try:
        wait_port_open(child, child.port, deadline_s)
    except BaseException:
        child.stop()
        raise
    return child


def wait_port_open(child: Child, port: int, deadline_s: float = 30.0) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections (for children without a ready URL)."""
    deadline = time.monotonic() + deadline_s
    while True:
        code = child.poll()
        if code is not None:
            raise child.error(f"exited with code {code} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise child.error(f"not listening on port {port} within {deadline_s:g} s")
        time.sleep(POLL_INTERVAL_S)


def start_server(
    *,
    port: int,
    agent_file: Path,
    log_dir: Path,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    cpu: int | None = None,
    ready_deadline_s: float = 30.0,
) -> Child:
    """``switchboard serve`` on 127.0.0.1:``port``, returned once ``/readyz`` answers 200."""
    argv = [*SWITCHBOARD_ARGV, "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--agent-file", str(agent_file)]
    if config is not None:
        argv += ["--config", str(config)]
    log_path = log_dir / f"server-{port}.log"
    child = Child("server", argv, log_path=log_path, env=env, cpu=cpu, port=port)
    try:
        wait_http_ready(child, f"http://127.0.0.1:{port}/readyz", ready_deadline_s)
    except BaseException:
        child.stop()
        raise
    return child


def start_fake_llm(
    *,
    port: int,
    log_dir: Path,
    ttft_ms: float = 0.0,
    token_ms: float = 0.0,
    cpu: int | None = None,
    ready_deadline_s: float = 30.0,
) -> Child:
    """The OpenAI-compatible fake LLM on 127.0.0.1:``port``, returned once it listens."""
    argv = [sys.executable, "-m", "switchboard.testing.fake_llm", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--ttft-ms", f"{ttft_ms:g}", "--token-ms", f"{token_ms:g}"]
    log_path = log_dir / f"fake-llm-{port}.log"
    child = Child("fake LLM", argv, log_path=log_path, cpu=cpu, port=port)
    return listening(child, ready_deadline_s)


def start_simulator(
    args: Sequence[str], *, json_path: Path, log_dir: Path, cpu: int | None = None
) -> Child:
    """Start ``switchboard simulate ARGS --json PATH --quiet`` and return at once (a
    failover run kills a node while it plays); ``simulator_result`` waits for it."""
    json_path.unlink(missing_ok=True)
    argv = [*SWITCHBOARD_ARGV, "simulate", *args, "--json", str(json_path), "--quiet"]
    return Child("simulator", argv, log_path=log_dir / f"{json_path.stem}.log", cpu=cpu)


def simulator_result(child: Child, json_path: Path, timeout_s: float) -> tuple[int, RunReport]:
    """Wait for a simulator started by ``start_simulator``: its exit code and report.

    A non-zero exit code with a report is a failed run (the report says why); no report
    at all is a ``ChildError`` carrying the simulator's last output lines.
    """
    try:
        code = child.wait(timeout_s)
    finally:
        child.stop()
    if not json_path.exists():
        raise child.error(f"exited with code {code} without writing {json_path}")
    return code, load_json(json_path)


def run_simulator(
    args: Sequence[str],
    *,
    json_path: Path,
    log_dir: Path,
    cpu: int | None = None,
    timeout_s: float = 600.0,
) -> tuple[int, RunReport]:
    """Run ``switchboard simulate`` to the end; its exit code and report."""
    child = start_simulator(args, json_path=json_path, log_dir=log_dir, cpu=cpu)
    return simulator_result(child, json_path, timeout_s)
