"""A day's calls replayed at 10x against the event-driven cluster that took them.

Calls placed on a real ``switchboard cluster --profile event-driven --bus redis`` reach
its archive; ``switchboard archive export`` freezes them as Retell call objects; and
``switchboard replay`` plays the archive (and the export) back through HAProxy at
``--speed 10 --concurrency 50``: every caller turn is compared and none differs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from switchboard.replay.command import ReplayRequest, replay
from switchboard.replay.model import RecordedReply
from switchboard.replay.source import load_archive, parse_calls_json
from switchboard.services.archive import open_archive
from switchboard.services.archive import queries as q
from switchboard.services.archive.store import ArchiveDb
from switchboard.sim.runner import simulate
from tests.fixtures.broken_servers import fast_options
from tests.fixtures.cluster import running_cluster
from tests.fixtures.conditions import eventually_async

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent


async def _all_ended(archive: ArchiveDb, calls: int, turns: int) -> bool:
    ended = await archive.fetch("SELECT COUNT(*) FROM calls WHERE ended_at IS NOT NULL")
    return int(ended[0][0]) >= calls and (await q.stats(archive)).turns >= turns


def _switchboard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


async def _replay_a_days_calls(tmp_path: Path, calls: int) -> None:
    with running_cluster(
        tmp_path / "cluster", nodes=2, profile="event-driven", extra_args=["--bus", "redis"]
    ) as (_child, state):
        assert state.archive_db is not None
        report = await simulate(
            fast_options(state.url, calls=calls, turns=4, think_ms=200.0, reminder_rate=0.1)
        )
        assert report.calls_failed == {}
        archive = await open_archive(state.archive_db)
        try:
            await eventually_async(lambda: _all_ended(archive, calls, report.turns), timeout=60)
        finally:
            await archive.close()
        recorded = await load_archive(state.archive_db)
        assert len(recorded) == calls
        caller_turns = sum(c.caller_turns for c in recorded)
        assert caller_turns >= calls  # every call said something
        assert all(c.dynamic_variables for c in recorded)  # kept for the replay

        export = tmp_path / "calls.json"
        exported = _switchboard(
            "archive", "export", "--db", state.archive_db, "--since", "1d", "--out", str(export)
        )
        assert exported.returncode == 0, exported.stderr
        frozen = parse_calls_json(export.read_text())
        assert [
            (c.call_id, c.greeting, [(t.number, t.caller, t.reply) for t in c.turns])
            for c in frozen
        ] == [
            (
                c.call_id,
                c.greeting and _no_ttfb(c.greeting),
                [(t.number, t.caller, t.reply and _no_ttfb(t.reply)) for t in c.turns],
            )
            for c in recorded
        ]

        summary_file = tmp_path / "summary.json"
        result = _switchboard(
            "replay",
            state.archive_db,
            "--url",
            state.url,
            "--speed",
            "10",
            "--concurrency",
            "50",
            "--profile",
            "event-driven",
            "--json-out",
            str(summary_file),
        )
        summary = json.loads(summary_file.read_text())
        assert result.returncode == 0, (result.stdout, summary["differences"][:5])
        assert summary["calls"] == calls
        assert summary["turns_compared"] == caller_turns
        assert summary["turns_differing"] == 0

        code, again = await replay(
            ReplayRequest(source=str(export), url=state.url, speed=10.0, concurrency=50),
            echo=lambda _line: None,
        )
        assert (code, again.turns_compared, again.differences) == (0, caller_turns, [])


def _no_ttfb(reply: RecordedReply) -> RecordedReply:
    return replace(reply, ttfb_ms=None)  # an export keeps no TTFB


async def test_twenty_archived_calls_replay_at_10x_on_the_event_driven_cluster(
    tmp_path: Path,
) -> None:
    await _replay_a_days_calls(tmp_path, 20)


@pytest.mark.soak
async def test_a_hundred_archived_calls_replay_at_10x_on_the_event_driven_cluster(
    tmp_path: Path,
) -> None:
    await _replay_a_days_calls(tmp_path, 100)
