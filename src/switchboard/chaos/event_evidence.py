"""Gather the event pipeline's evidence from the real parts, after a chaos run.

What the callers heard comes from the run's history; what the services hold is read
from where they keep it: the archive's SQLite file (turn rows, with the node's event
time and the archive's commit time), the escalation service's SQLite file (one row per
decision), each service's dead letters as ``switchboard service deadletters list``
prints them, each service's ``/metrics`` (dead letters counted, gaps) and each node's
``/metrics`` (events its outbox dropped or parked). Where the files are is read from the
services' own command lines (``--db``, ``--dead-letters``), as the nemesis read them.

The services are given time to catch up first: the evidence is read again until every
answered turn is archived, no escalation is pending and every service's ``/metrics``
counts the letters its store holds, or until the settle deadline (then the checker
says they had not caught up). The checker (``event_checker.py``) judges it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from switchboard.chaos.event_checker import (
    ArchivedTurn,
    DeadLetterTally,
    EscalationRow,
    EventEvidence,
    TurnKey,
)
from switchboard.chaos.history import History
from switchboard.chaos.processes import ClusterProcess
from switchboard.cluster.plan import ClusterState
from switchboard.cluster.processes import SWITCHBOARD_ARGV
from switchboard.services.dead_letters import default_path

GROUPS = ("archive", "analytics", "escalation")
POLL_S = 0.5
LIST_TIMEOUT_S = 60.0


class EvidenceError(RuntimeError):
    """The pipeline's state cannot be read from here (a PostgreSQL archive, no service)."""


@dataclass(slots=True)
class PipelineParts:
    """Where each service keeps what the checker reads."""

    archive_db: Path
    escalation_db: Path | None
    dead_letters: dict[str, Path] = field(default_factory=dict)
    service_metrics: dict[str, str] = field(default_factory=dict)
    node_metrics: list[str] = field(default_factory=list)


def _path(process: ClusterProcess, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else Path(process.cwd) / path


def pipeline_parts(state: ClusterState, processes: dict[str, ClusterProcess]) -> PipelineParts:
    """Read the services' files and metrics URLs from their argv and the state file."""
    archive = processes.get("archive")
    if archive is None:
        raise EvidenceError("the cluster lists no archive service")
    db = archive.option("--db") or state.archive_db
    if db is None or "://" in db:
        raise EvidenceError(f"the event checks read a SQLite archive, not {db!r}")
    parts = PipelineParts(archive_db=_path(archive, db), escalation_db=None)
    for group in GROUPS:
        proc = processes.get(group)
        if proc is None:
            continue
        own = proc.option("--db")
        if group == "escalation":
            parts.escalation_db = _path(proc, own or "switchboard-escalation.db")
        letters = proc.option("--dead-letters")
        if letters is None:
            state_db = own if group != "analytics" else own or "switchboard-analytics.db"
            letters = str(default_path(state_db, group))
        parts.dead_letters[group] = _path(proc, letters)
        url = state.service_metrics.get(group)
        port = proc.option("--metrics-port") or (
            proc.option("--port") if group == "analytics" else None
        )
        if url is None and port is not None:
            url = f"http://127.0.0.1:{port}/metrics"
        if url is not None:
            parts.service_metrics[group] = url
    parts.node_metrics = [f"http://127.0.0.1:{n.port}/metrics" for n in state.nodes]
    return parts


def expected_from(
    history: History, escalating: Iterable[int]
) -> tuple[list[TurnKey], list[TurnKey], dict[str, int], list[str], list[str]]:
    """From the run: the answered turns, the oversized ones, the handoffs heard per call,
    the escalating calls and the poison keys."""
    ids = {c.call: c.call_id for c in history.calls}
    answered = [
        TurnKey(ids[t.call], t.response_id)
        for t in history.turns
        if t.answered_at is not None and t.call in ids
    ]
    oversized = []
    poison = []
    for fault in history.faults:
        if fault.kind == "oversized" and fault.call_id:
            keys = [TurnKey(fault.call_id, rid) for rid in fault.answered]
            answered += keys
            oversized += keys
        if fault.kind == "poison" and fault.ok and fault.call_id:
            poison.append(fault.call_id)
    handoffs = {c.call_id: c.handoffs for c in history.calls}
    escalating_ids = [ids[i] for i in escalating if i in ids]
    return answered, oversized, handoffs, escalating_ids, poison


def gather(
    history: History,
    parts: PipelineParts,
    *,
    escalating: Iterable[int] = (),
    settle_s: float = 180.0,
    log: Callable[[str], None] = lambda _: None,
) -> EventEvidence:
    """Wait (up to ``settle_s``) for the services to catch up, then read everything."""
    answered, oversized, handoffs, escalating_ids, poison = expected_from(history, escalating)
    call_ids = sorted({k.call_id for k in answered} | set(handoffs))
    evidence = EventEvidence(
        answered=answered,
        oversized=oversized,
        handoffs=handoffs,
        escalating_calls=escalating_ids,
        poison_keys=poison,
    )
    started = time.monotonic()
    deadline = started + settle_s
    want = set(answered)
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        while True:
            evidence.archived = read_archive(parts.archive_db, call_ids)
            evidence.escalations = read_escalations(parts.escalation_db, call_ids)
            counted = {g: service_metrics(http, url) for g, url in parts.service_metrics.items()}
            stored = {g: count_letters(p, g) for g, p in parts.dead_letters.items()}
            archived = {TurnKey(r.call_id, r.response_id) for r in evidence.archived}
            done = (
                want <= archived
                and not any(r.status == "pending" for r in evidence.escalations)
                and all(
                    counted.get(g, {}).get("dead_letters") == stored[g] for g in parts.dead_letters
                )
                and all(poison_parked(p, g, poison) for g, p in parts.dead_letters.items())
            )
            if done or time.monotonic() > deadline:
                evidence.caught_up = done
                break
            time.sleep(POLL_S)
        evidence.settle_s = time.monotonic() - started
        log(f"event pipeline read {evidence.settle_s:.1f} s after the calls ended")
        groups = list(parts.dead_letters)
        with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
            listings = list(pool.map(list_letters, [parts.dead_letters[g] for g in groups]))
        for group, listed in zip(groups, listings, strict=True):
            metrics = counted.get(group, {})
            evidence.dead_letters.append(
                DeadLetterTally(
                    group=group,
                    listed=len(listed),
                    counted=None if not metrics else metrics.get("dead_letters", 0),
                    keys=[str(d.get("key", "")) for d in listed],
                    gaps=int(metrics.get("gaps", 0)),
                )
            )
        for url in parts.node_metrics:
            node = node_metrics(http, url)
            evidence.node_dropped += int(node.get("dropped", 0))
            evidence.node_parked += int(node.get("parked", 0))
    return evidence


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def read_archive(path: Path, call_ids: list[str]) -> list[ArchivedTurn]:
    """The archive's non-greeting turn rows of ``call_ids`` (none while it has no file)."""
    if not path.exists() or not call_ids:
        return []
    marks = ", ".join("?" * len(call_ids))
    try:
        with contextlib.closing(_connect(path)) as db:
            rows = db.execute(
                "SELECT t.call_id, t.response_id, t.superseded, t.at, p.applied_at,"
                " length(t.caller_line) FROM turns t"
                " LEFT JOIN processed_events p ON p.event_id = t.event_id"
                f" WHERE t.kind <> 'greeting' AND t.call_id IN ({marks})",
                call_ids,
            ).fetchall()
    except sqlite3.Error:
        return []
    return [
        ArchivedTurn(
            call_id=str(r[0]),
            response_id=int(r[1]),
            superseded=bool(r[2]),
            at=_ts(r[3]),
            applied_at=_ts(r[4]),
            caller_chars=int(r[5] or 0),
        )
        for r in rows
    ]


def read_escalations(path: Path | None, call_ids: list[str]) -> list[EscalationRow]:
    if path is None or not path.exists() or not call_ids:
        return []
    marks = ", ".join("?" * len(call_ids))
    try:
        with contextlib.closing(_connect(path)) as db:
            rows = db.execute(
                "SELECT call_id, rule, action, status, detail FROM escalations"
                f" WHERE call_id IN ({marks})",
                call_ids,
            ).fetchall()
    except sqlite3.Error:
        return []
    return [
        EscalationRow(call_id=r[0], rule=r[1], action=r[2], status=r[3], detail=r[4] or "")
        for r in rows
    ]


def count_letters(path: Path, group: str) -> int:
    if not path.exists():
        return 0
    try:
        with contextlib.closing(_connect(path)) as db:
            return int(
                db.execute("SELECT COUNT(*) FROM dead_letters WHERE grp = ?", (group,)).fetchone()[
                    0
                ]
            )
    except sqlite3.Error:
        return -1


def poison_parked(path: Path, group: str, keys: list[str]) -> bool:
    """Every poison key is parked by ``group`` (trivially, when there is none)."""
    if not keys:
        return True
    if not path.exists():
        return False
    try:
        with contextlib.closing(_connect(path)) as db:
            found = {
                bytes(r[0]).decode(errors="replace")
                for r in db.execute("SELECT msg_key FROM dead_letters WHERE grp = ?", (group,))
            }
    except sqlite3.Error:
        return False
    return set(keys) <= found


def list_letters(store: Path) -> list[dict[str, object]]:
    """``switchboard service deadletters list --json``: what an operator sees."""
    if not store.exists():
        return []
    argv = [*SWITCHBOARD_ARGV, "service", "deadletters", "list", "--store", str(store)]
    argv += ["--json", "--limit", "1000000"]
    done = subprocess.run(argv, capture_output=True, timeout=LIST_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise EvidenceError(
            f"deadletters list --store {store} failed: {done.stderr.decode()[-500:]}"
        )
    letters = json.loads(done.stdout or b"[]")
    return [d for d in letters if isinstance(d, dict)]


def _samples(http: httpx.Client, url: str) -> list[tuple[str, dict[str, str], float]]:
    try:
        response = http.get(url)
        response.raise_for_status()
    except httpx.HTTPError:
        return []
    out = []
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.append((sample.name, dict(sample.labels), float(sample.value)))
    return out


def service_metrics(http: httpx.Client, url: str) -> dict[str, int]:
    """A service's dead letters in its store (all states) and gap entries, as counted
    by its ``/metrics``; empty when it does not answer."""
    samples = _samples(http, url)
    if not samples:
        return {}
    letters = sum(v for n, _, v in samples if n == "switchboard_service_dead_letters")
    gaps = sum(v for n, _, v in samples if n == "switchboard_service_bus_gap_entries_total")
    return {"dead_letters": int(letters), "gaps": int(gaps)}


def node_metrics(http: httpx.Client, url: str) -> dict[str, int]:
    samples = _samples(http, url)
    dropped = sum(v for n, _, v in samples if n == "switchboard_outbox_dropped_total")
    parked = sum(v for n, _, v in samples if n == "switchboard_outbox_parked_total")
    return {"dropped": int(dropped), "parked": int(parked)}
