"""What an event-driven bench case adds: the archive service, and the event latency.

The bus is Redis Streams on the bench's valkey-server; the archive runs on the
simulator's core so the server's core measures the node alone. After the run the case
waits for the archive to catch up and measures each turn's event latency: the node's
``call.turn_completed`` time to the archive's commit of it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from switchboard.cluster.processes import SWITCHBOARD_ARGV, Child, pin_prefix


@contextlib.contextmanager
def archive_service(
    env: dict[str, str], log_dir: Path, name: str, cpu: int | None
) -> Iterator[Path | None]:
    """The archive service for an event-driven case (``None`` for other profiles), on the
    bus and namespace of the node's ``env``; yields its database."""
    if env.get("SWITCHBOARD_PROFILE") != "event-driven":
        yield None
        return
    db = log_dir / name / "archive.db"
    argv = [*pin_prefix(cpu), *SWITCHBOARD_ARGV, "service", "archive"]
    argv += ["--bus", env["SWITCHBOARD_BUS_URL"], "--namespace", env["SWITCHBOARD_REDIS_NAMESPACE"]]
    argv += ["--db", str(db)]
    child = Child("archive", argv, log_path=log_dir / name / "archive.log")
    try:
        yield db
    finally:
        child.stop()


def event_latency(archive_db: Path, turns: int, timeout_s: float = 60.0) -> dict[str, float]:
    """Wait until ``turns`` non-greeting turns are archived; p50/p99 of their latency (ms)."""
    deadline = time.monotonic() + timeout_s
    rows: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(archive_db, timeout=5) as conn:
                rows = conn.execute(
                    "SELECT t.at, p.applied_at FROM turns t JOIN processed_events p"
                    " ON p.event_id = t.event_id WHERE t.kind <> 'greeting' AND t.superseded = 0"
                ).fetchall()
        except sqlite3.Error:
            rows = []
        if len(rows) >= turns:
            break
        time.sleep(0.2)
    latencies = sorted(
        (datetime.fromisoformat(done) - datetime.fromisoformat(at)).total_seconds() * 1000
        for at, done in rows
    )
    if not latencies:
        return {"archived": 0.0}

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {"archived": float(len(latencies)), "p50": pct(0.5), "p99": pct(0.99)}
