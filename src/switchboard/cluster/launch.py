"""``switchboard cluster`` as a child process, for the demo, the bench and the tests.

The cluster runs through its own command line, as a user would run it, and is found
through its ``--state-file``; ``stop_cluster_child`` sends it one SIGTERM, so it drains
its nodes and stops everything it started.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from switchboard.cluster.plan import ClusterState, read_state
from switchboard.cluster.processes import (
    POLL_INTERVAL_S,
    SWITCHBOARD_ARGV,
    Child,
    ChildError,
    free_port,
)


def start_cluster_child(
    *,
    nodes: int,
    log_dir: Path,
    profile: str = "distributed",
    port: int | None = None,
    agent_file: Path | None = None,
    redis_url: str | None = None,
    env: Mapping[str, str] | None = None,
    ready_deadline_s: float = 90.0,
    extra_args: Sequence[str] = (),
) -> tuple[Child, ClusterState]:
    """Start the cluster and return once its state file is written (everything is ready)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    state_file = log_dir / "cluster.json"
    state_file.unlink(missing_ok=True)
    port = port or free_port()
    argv = [*SWITCHBOARD_ARGV, "cluster", "--nodes", str(nodes), "--port", str(port)]
    argv += ["--profile", profile, "--state-file", str(state_file)]
    argv += ["--log-dir", str(log_dir / "cluster")]
    if agent_file is not None:
        argv += ["--agent-file", str(agent_file)]
    if redis_url is not None:
        argv += ["--redis-url", redis_url]
    argv += extra_args
    child = Child("cluster", argv, log_path=log_dir / "cluster.log", env=env, port=port)
    try:
        return child, wait_state(child, state_file, ready_deadline_s)
    except BaseException:
        child.stop(timeout_s=30.0)
        raise


def wait_state(child: Child, path: Path, deadline_s: float) -> ClusterState:
    """The state file of a cluster started as ``child``, once it is written (it is written
    atomically when the whole stack is up); ``ChildError`` if the child exits first."""
    deadline = time.monotonic() + deadline_s
    while True:
        code = child.poll()
        if code is not None:
            raise child.error(f"exited with code {code} before writing {path}")
        if path.exists():
            try:
                return read_state(path)
            except (OSError, msgspec.DecodeError):
                pass  # written atomically, so only a stale reader gets here; try again
        if time.monotonic() > deadline:
            raise child.error(f"no state file {path} within {deadline_s:g} s")
        time.sleep(POLL_INTERVAL_S)


def stop_cluster_child(cluster: Child, deadline_s: float = 60.0) -> int:
    """One SIGTERM, so the cluster drains its nodes and stops everything it started; then
    wait for it (killing what is left after ``deadline_s``). Returns its exit code."""
    cluster.send_signal(signal.SIGTERM)
    try:
        with contextlib.suppress(ChildError):
            cluster.wait(deadline_s)
    finally:
        code = cluster.stop()
    return code
