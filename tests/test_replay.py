"""``switchboard replay``: recorded calls played again against an agent, and compared.

The recordings are real: the receptionist's calls, placed by the simulator against a
real server and written as Retell call objects (``fixtures/recorded_calls.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from switchboard.agents.loader import load_agent
from switchboard.replay.command import ReplayInputError, ReplayRequest, run_replay
from switchboard.replay.source import SourceError, parse_calls_json
from switchboard.sim.scenario import load_scenarios
from tests.fixtures.recorded_calls import record_call, say
from tests.fixtures.server import running_server

ROOT = Path(__file__).resolve().parent.parent
RECEPTIONIST = ROOT / "examples" / "receptionist.yaml"
SCENARIOS = ROOT / "examples" / "scenarios" / "receptionist"
HOURS = "We're open Monday to Friday"
SPEED = 20.0

SCRIPTS = [
    say("What are your opening hours?", None, "Where are you located?", "thats all, bye"),
    say("Is there parking nearby?", "Can I talk to a real person?"),
    say(
        "I'd like to book an appointment",
        "My name is Dana Smith",
        "Tuesday at 3 pm",
        "a checkup",
        "How much does a consultation cost?",
        "goodbye",
    ),
    say("What time do you close today?", "Are you open on Saturdays?"),
]


async def _record_all() -> list[dict[str, Any]]:
    async with running_server(load_agent(RECEPTIONIST)) as srv:
        calls = [
            await record_call(srv.ws_url, script, {"customer_name": name}, {"crm": i}, seed=i)
            for i, (script, name) in enumerate(
                zip(SCRIPTS, ("Dana", "Luis", "Priya", "Tom"), strict=False)
            )
        ]
        for i, scenario in enumerate(load_scenarios(SCENARIOS)):
            calls.append(
                await record_call(
                    srv.ws_url, scenario.turns, scenario.dynamic_variables, seed=9 + i
                )
            )
    return calls


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The receptionist's own calls as a list-calls export (recorded once per module)."""
    calls = asyncio.run(_record_all())
    path = tmp_path_factory.mktemp("replay") / "calls.json"
    path.write_text(json.dumps(calls))
    return path, calls


def _caller_lines(call: dict[str, Any]) -> int:
    return sum(1 for u in call["transcript_object"] if u["role"] == "user")


def _replay(source: Path, agent_file: Path, **extra: Any) -> tuple[int, dict[str, Any]]:
    code, summary = run_replay(
        ReplayRequest(source=str(source), agent_file=agent_file, speed=SPEED, **extra),
        echo=lambda _line: None,
    )
    return code, summary.as_dict()


def _switchboard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.integration
def test_replaying_the_receptionists_own_calls_finds_no_difference(
    recorded: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, calls = recorded
    out = tmp_path / "summary.json"
    junit = tmp_path / "replay.xml"
    html = tmp_path / "replay.html"
    result = _switchboard(
        "replay",
        str(source),
        "--agent-file",
        str(RECEPTIONIST),
        "--speed",
        str(SPEED),
        "--concurrency",
        "4",
        "--json-out",
        str(out),
        "--junit",
        str(junit),
        "--report",
        str(html),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(out.read_text())
    assert summary["differences"] == []
    assert summary["calls"] == len(calls)
    assert summary["turns_compared"] == sum(_caller_lines(c) for c in calls)
    assert summary["turns_differing"] == 0
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures")) == (str(len(calls)), "0")
    assert "PASS" in html.read_text()


def _changed_agent(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    text = RECEPTIONIST.read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "changed.yaml"
    path.write_text(text)
    return path


def _replies(call: dict[str, Any]) -> list[tuple[int, str, str]]:
    """(turn, caller line, reply) of each agent reply, numbered as replay numbers them."""
    out = []
    number = 0
    caller = ""
    for u in call["transcript_object"]:
        if u["role"] == "user":
            number += 1
            caller = u["content"]
        else:
            out.append((number, caller, u["content"]))
            caller = ""
    return out


@pytest.mark.integration
def test_a_changed_agent_differs_in_exactly_the_changed_turns(
    recorded: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, calls = recorded
    agent = _changed_agent(
        tmp_path, ("We're open Monday to Friday", "Our doors are open Tuesday to Friday")
    )
    expected = {
        (c["call_id"], turn, "text")
        for c in calls
        for turn, _caller, reply in _replies(c)
        if HOURS in reply
    }
    assert len(expected) >= 2  # the recordings ask for the hours more than once
    html, junit = tmp_path / "replay.html", tmp_path / "replay.xml"
    code, summary = _replay(source, agent, report=html, junit=junit)
    assert code == 1
    got = {(d["call_id"], d["turn"], d["kind"]) for d in summary["differences"]}
    page = html.read_text()
    assert "FAIL" in page
    assert page.count("Our doors are open Tuesday to Friday") == len(expected)
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == str(len({c for c, _t, _k in expected}))
    assert got == expected
    assert summary["turns_differing"] == len({(c, t) for c, t, _ in expected})
    for d in summary["differences"]:
        assert HOURS in d["expected"]
        assert "Tuesday to Friday" in d["got"]


@pytest.mark.integration
def test_a_changed_transfer_and_a_lost_hang_up_are_action_differences(
    recorded: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, calls = recorded
    agent = _changed_agent(
        tmp_path,
        ('transfer: "+14155550100"', 'transfer: "+14155550199"'),
        ("Take care, and goodbye!\n    end_call: true", "Take care, and goodbye!"),
    )
    code, summary = _replay(source, agent)
    assert code == 1
    transferred = {c["call_id"] for c in calls if c["disconnection_reason"] == "call_transfer"}
    hung_up = {c["call_id"] for c in calls if c["disconnection_reason"] == "agent_hangup"}
    assert transferred
    assert hung_up
    actions = {(d["call_id"], d["expected"], d["got"]) for d in summary["differences"]}
    assert all(d["kind"] == "action" for d in summary["differences"])
    assert actions == {
        (cid, "transfer_number +14155550100", "transfer_number +14155550199") for cid in transferred
    } | {(cid, "end_call", "none") for cid in hung_up}


@pytest.mark.integration
def test_an_agent_that_hangs_up_early_leaves_the_later_turns_missing(
    recorded: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _source, calls = recorded
    first = next(c for c in calls if _replies(c)[1][1] == "What are your opening hours?")
    one = tmp_path / "one.json"
    one.write_text(json.dumps(first))  # one call object, not an array
    agent = _changed_agent(
        tmp_path,
        (
            "closed on Sundays and public holidays.\n",
            "closed on Sundays and public holidays.\n    end_call: true\n",
        ),
    )
    code, summary = _replay(one, agent)
    assert code == 1
    kinds = [(d["turn"], d["kind"]) for d in summary["differences"]]
    after = len(_replies(first)) - 2  # every reply after the greeting and the hours
    assert kinds[0] == (1, "action")
    assert [k for _t, k in kinds[1:]] == ["missing"] * after
    assert summary["turns_compared"] == _caller_lines(first)


@pytest.mark.integration
def test_a_recorded_line_left_unanswered_is_an_extra_reply(
    recorded: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _source, calls = recorded
    call = json.loads(json.dumps(calls[1]))  # parking, then a transfer
    items = call["transcript_object"]
    parking = next(i for i, u in enumerate(items) if u["content"] == "Is there parking nearby?")
    del items[parking + 1]  # the reply to it, as if the caller had talked on
    path = tmp_path / "cut.json"
    path.write_text(json.dumps([call]))
    code, summary = _replay(path, RECEPTIONIST)
    assert code == 1
    assert [(d["turn"], d["kind"], d["expected"]) for d in summary["differences"]] == [
        (1, "extra", "")
    ]


def test_recorded_variables_and_metadata_go_out_in_call_details(
    recorded: tuple[Path, list[dict[str, Any]]],
) -> None:
    _source, calls = recorded
    parsed = parse_calls_json(json.dumps(calls[:1]))
    assert parsed[0].dynamic_variables == {"customer_name": "Dana"}
    assert parsed[0].metadata == {"crm": 0}
    assert parsed[0].greeting is not None
    assert "Hi Dana" in parsed[0].greeting.text
    # replay numbering: the reminder carries the number of the line it followed
    assert [(t.number, t.caller is None) for t in parsed[0].turns] == [
        (1, False),
        (1, True),
        (2, False),
        (3, False),
    ]


def test_word_timings_become_gaps_scaled_by_speed(
    recorded: tuple[Path, list[dict[str, Any]]],
) -> None:
    from switchboard.replay.plan import script

    _source, calls = recorded
    call = parse_calls_json(json.dumps(calls[0]))[0]
    words = calls[0]["transcript_object"][1]["words"]
    turn = call.turns[0]
    assert turn.word_gaps_s == tuple(
        round(b["end"] - a["end"], 3) for a, b in itertools.pairwise(words)
    )
    assert turn.pause_s == round(
        words[0]["start"] - calls[0]["transcript_object"][0]["words"][-1]["end"], 3
    )
    fast = script(call, 10.0)[0]
    assert fast.pause_s == pytest.approx(turn.pause_s / 10)
    assert fast.word_gaps_s == pytest.approx([g / 10 for g in turn.word_gaps_s])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"call_id": "a", "agent_id": "x"', "not valid JSON"),
        ("[]", "no calls"),
        ('"calls"', "expected a call object or an array"),
        ("[1]", "call 1: not a call object"),
    ],
)
def test_malformed_exports_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(SourceError, match=message) as err:
        parse_calls_json(text, "calls.json")
    assert "\n" not in str(err.value)


def test_a_renamed_or_missing_field_fails_loudly(
    recorded: tuple[Path, list[dict[str, Any]]],
) -> None:
    _source, calls = recorded
    renamed = dict(calls[0])
    renamed["transcript_objects"] = renamed.pop("transcript_object")
    later = dict(calls[1], brand_new_field=1)
    assert "brand_new_field" in parse_calls_json(json.dumps(later))[0].unknown_fields
    with pytest.raises(SourceError, match=r"call 2 \(\w+\): no transcript_object"):
        parse_calls_json(json.dumps([calls[1], renamed]), "calls.json")
    retyped = json.loads(json.dumps(calls[0]))
    retyped["transcript_object"][1]["role"] = "caller"
    with pytest.raises(SourceError, match=r"call 1 \(\w+\): transcript_object\.1\.role"):
        parse_calls_json(json.dumps([retyped]), "calls.json")
    partial = {k: v for k, v in calls[0].items() if k != "agent_version"}
    with pytest.raises(SourceError, match="agent_version: Field required"):
        parse_calls_json(json.dumps(partial), "calls.json")


@pytest.mark.integration
def test_bad_input_exits_2_with_one_line_and_no_traceback(
    recorded: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    source, _calls = recorded
    cut = tmp_path / "cut.json"
    cut.write_text(source.read_text()[:-200])  # an export cut short
    result = _switchboard("replay", str(cut), "--agent-file", str(RECEPTIONIST))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"replay: {cut}: not valid JSON")
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "exactly one of --url and --agent-file"),
        ({"agent_file": RECEPTIONIST, "url": "ws://127.0.0.1:1"}, "exactly one of"),
        ({"agent_file": Path("nope.yaml")}, "no such agent file"),
        ({"url": "ftp://x"}, "url must be"),
        ({"agent_file": RECEPTIONIST, "speed": 0.0}, "speed must be positive"),
        ({"agent_file": RECEPTIONIST, "concurrency": 0}, "concurrency must be"),
        ({"agent_file": RECEPTIONIST, "similarity": 1.5}, "similarity must be"),
        ({"agent_file": RECEPTIONIST, "profile": "huge"}, "profile must be"),
    ],
)
def test_bad_options_are_input_errors(
    recorded: tuple[Path, list[dict[str, Any]]], extra: dict[str, Any], message: str
) -> None:
    source, _calls = recorded
    with pytest.raises(ReplayInputError, match=message):
        run_replay(ReplayRequest(source=str(source), **extra), echo=lambda _line: None)
