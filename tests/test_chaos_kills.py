"""Nodes killed with SIGKILL at seeded instants (between turns, mid-turn, right after a
reply's ``content_complete``) under live calls on a real 3-node cluster: no call lost,
no second greeting, no question asked again, every reply the one a fault-free control
run got. The short schedule runs in ``make test``; the long one (20 kills across 60
calls) in ``make soak``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_chaos_run import chaos_cluster, run_chaos

pytestmark = pytest.mark.system


def kills(count: int) -> str:
    kinds = ("kill-mid-turn", "kill-after-reply", "kill")
    return ",".join(kinds[i % len(kinds)] for i in range(count))


def assert_nothing_lost(tmp_path: Path, seed: int, calls: int, count: int, duration: int) -> None:
    with chaos_cluster(tmp_path) as cluster:
        code, report = run_chaos(
            tmp_path,
            cluster.state_file,
            *("--seed", str(seed), "--calls", str(calls), "--turns", "4"),
            *("--duration", str(duration), "--faults", kills(count)),
        )
        f = report.findings
        assert sorted(e.kind for e in report.history.faults) == sorted(kills(count).split(","))
        assert all(e.ok for e in report.history.faults), report.history.faults
        assert (f.calls_lost, f.second_greetings, f.repeated_questions) == (0, 0, 0), f.samples
        assert (f.replies_differing, f.unanswered_turns) == (0, 0), f.samples
        assert f.passed, (f.reasons, f.samples)
        assert code == 0
    assert not cluster.left_behind


def test_six_kills_at_seeded_instants_across_twelve_calls_lose_nothing(tmp_path: Path) -> None:
    assert_nothing_lost(tmp_path, seed=5, calls=12, count=6, duration=30)


@pytest.mark.soak
def test_twenty_kills_at_seeded_instants_across_sixty_calls_lose_nothing(tmp_path: Path) -> None:
    assert_nothing_lost(tmp_path, seed=20, calls=60, count=20, duration=150)
