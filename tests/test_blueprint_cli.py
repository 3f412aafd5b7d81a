"""``switchboard blueprint``: the decision printed, the files written whole or not at all,
and bad input answered with one line and exit code 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.blueprint.writer import OutputError, write_blueprint
from switchboard.cli import app

REPO = Path(__file__).resolve().parents[1]
BENCH = str(REPO / "src" / "switchboard" / "blueprint" / "data" / "reference.json")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["blueprint", "--bench", BENCH, *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_decision_names_profile_nodes_and_reasons() -> None:
    code, out, _ = run("--calls", "50", "--budget-ms", "500", "--json")
    assert code == 0
    decision = json.loads(out)
    assert decision["profile"] == "distributed"
    assert decision["nodes"] >= 2
    assert any("10-100 row" in r for r in decision["reasons"])
    assert {f["name"] for f in decision["factors"]} == {
        "concurrent calls",
        "latency budget",
        "state",
        "capacity",
    }
    assert decision["capacity"]["calls_per_node"] >= 1


def test_contradictions_are_warned_with_the_nearest_sound_plan() -> None:
    code, out, _ = run("--calls", "200", "--budget-ms", "800", "--nodes", "1", "--json")
    assert code == 0
    warnings = json.loads(out)["warnings"]
    assert any("nearest sound plan" in w for w in warnings)
    code, out, _ = run("--calls", "20", "--budget-ms", "300", "--llm-ttft-ms", "450", "--json")
    decision = json.loads(out)
    assert decision["cache"] is True
    assert any("LLM's TTFT" in w for w in decision["warnings"])


def test_the_table_says_why_factor_by_factor() -> None:
    code, out, _ = run("--calls", "5", "--budget-ms", "800")
    assert code == 0
    assert "single" in out
    assert "what would change it" in " ".join(out.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--calls", "-5", "--budget-ms", "800"), "--calls must be at least 1"),
        (("--calls", "5", "--budget-ms", "0"), "--budget-ms must be a positive"),
        (("--calls", "5"), "--calls and --budget-ms are required"),
        (("--calls", "5", "--budget-ms", "800", "--profile", "huge"), "unknown profile"),
        (("--calls", "5", "--budget-ms", "800", "--bus", "pigeon"), "bus must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_an_existing_directory_needs_force_and_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, _, err = run("--calls", "5", "--budget-ms", "800", "--out", str(out))
    assert code == 2
    assert "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    code, _, _ = run("--calls", "5", "--budget-ms", "800", "--out", str(out), "--force")
    assert code == 0
    assert not (out / "mine.txt").exists()
    assert (out / "switchboard.toml").is_file()
    assert (out / "SUMMARY.md").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["deploy"], "no staging left behind"


def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run("--calls", "5", "--budget-ms", "800", "--out", str(blocker / "deploy"))
    assert code == 2
    assert "cannot write" in err


def test_a_file_that_does_not_check_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    with pytest.raises(ValueError, match="not valid YAML"):
        write_blueprint({"ok.yml": "a: 1\n", "bad.yml": "a: [1\n"}, out)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="max_calls"):
        write_blueprint({"switchboard.toml": "max_calls = 0\n"}, out)
    assert list(tmp_path.iterdir()) == []


def test_a_replaced_directory_is_swapped_whole(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    write_blueprint({"a.yml": "v: 1\n", "sub/b.yml": "v: 1\n"}, out)
    inode = os.stat(out).st_ino
    with pytest.raises(OutputError):
        write_blueprint({"a.yml": "v: 2\n"}, out)
    assert (out / "a.yml").read_text() == "v: 1\n"
    write_blueprint({"a.yml": "v: 2\n"}, out, force=True)
    assert (out / "a.yml").read_text() == "v: 2\n"
    assert not (out / "sub").exists()
    assert os.stat(out).st_ino != inode


@pytest.mark.integration
def test_blueprint_runs_from_any_directory_on_the_shipped_figures_and_says_so(
    tmp_path: Path,
) -> None:
    """A user who installed the package has no bench/ directory: the reference run shipped
    inside the package is used, and the output names it."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "switchboard", "blueprint", "--calls", "50", "--budget-ms", "500"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "reference figures shipped with switchboard" in said
    assert "distributed" in said
    assert not (tmp_path / "bench").exists()
