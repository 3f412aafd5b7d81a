"""The parts a bench case needs beyond the server, per profile.

``single`` needs nothing. ``distributed`` gets a private valkey-server for call state.
``event-driven`` adds the event bus (Redis Streams on the same valkey) and the archive
service, both on the simulator's core so the server's core measures the node alone;
after the run it waits for the archive to catch up and measures each turn's event
latency: the node's ``call.turn_completed`` time to the archive's commit of it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from switchboard.cluster.valkey import redis_url, start_valkey
from switchboard.sim.processes import Child, pin_prefix

_SWITCHBOARD = (sys.executable, "-c", "from switchboard.cli import main; main()")
NAMESPACE = "bench:"


@dataclass
class ProfileParts:
    env: dict[str, str] = field(default_factory=dict)
    archive_db: Path | None = None


@contextlib.contextmanager
def profile_parts(
    profile: str, log_dir: Path, name: str, cpu: int | None
) -> Iterator[ProfileParts]:
    if profile == "single":
        yield ProfileParts()
        return
    if profile not in ("distributed", "event-driven"):
        raise ValueError(f"unknown profile {profile!r}")
    valkey = start_valkey(log_dir=log_dir / name)
    children: list[Child] = [valkey]
    try:
        url = redis_url(valkey)
        parts = ProfileParts(
            env={
                "SWITCHBOARD_PROFILE": profile,
                "SWITCHBOARD_REDIS_URL": url,
                "SWITCHBOARD_REDIS_NAMESPACE": NAMESPACE,
            }
        )
        if profile == "event-driven":
            parts.archive_db = log_dir / name / "archive.db"
            parts.env["SWITCHBOARD_BUS_URL"] = url
            parts.env["SWITCHBOARD_NODE_ID"] = f"bench-{name}"
            parts.env["SWITCHBOARD_OUTBOX_DIR"] = str(log_dir / name / "outbox")
            argv = [*pin_prefix(cpu), *_SWITCHBOARD, "service", "archive", "--bus", url]
            argv += ["--namespace", NAMESPACE, "--db", str(parts.archive_db)]
            children.append(Child("archive", argv, log_path=log_dir / name / "archive.log"))
        yield parts
    finally:
        for child in reversed(children):
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
