"""Scenario files: parsing (mistakes named before any call), expectations, and the
receptionist scenarios shipped in ``examples/`` played against the real server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from switchboard.agents.loader import load_agent
from switchboard.config import builtin_example
from switchboard.sim.conversation import CallRecord, TurnOutcome
from switchboard.sim.runner import Simulation, simulate
from switchboard.sim.scenario import ScenarioError, check, load_scenarios, parse_scenario
from switchboard.sim.verdict import judge
from tests.fixtures.broken_servers import Handler, ReferenceServer, fast_options
from tests.fixtures.server import running_server

Start = Callable[[Handler], Awaitable[str]]
RECEPTIONIST_SCENARIOS = builtin_example("scenarios/receptionist")


def test_scenario_file_is_parsed_into_turns_and_expectations() -> None:
    scenario = parse_scenario(
        """
        name: hours
        dynamic_variables: {customer_name: Dana}
        expect_greeting_contains: thanks
        turns:
          - say: What are your hours?
            expect: {contains: [Monday, "6 PM"], matches: "(?i)open", action: none}
          - silence: true
          - say: A person please
            barge_in: right now
            expect: {transfer_number: "+14155550100"}
        """.replace("\n        ", "\n")
    )
    assert scenario.name == "hours"
    assert scenario.dynamic_variables == {"customer_name": "Dana"}
    assert scenario.expect_greeting_contains == ("thanks",)
    first, silence, third = scenario.turns
    assert first.say == "What are your hours?"
    assert first.expect is not None
    assert first.expect.contains == ("Monday", "6 PM")
    assert silence.say is None
    assert third.barge_in == "right now"
    assert third.expect is not None
    assert third.expect.action == "transfer_number"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("turns: []", "at least one turn"),
        ("turns:\n - {say: hi, silence: true}", "exactly one of"),
        ("turns:\n - {}", "exactly one of"),
        ("turns:\n - {say: hi, expect: {action: hangup}}", "action must be one of"),
        ("turns:\n - {say: hi, expect: {matches: '('}}", "not a valid regex"),
        ("turns:\n - {say: hi, expect: {contain: x}}", "unknown field `contain`"),
        ("turns:\n - {say: hi, bargein: x}", "unknown field `bargein`"),
        ("turns:\n - {silence: true, barge_in: more}", "barge_in"),
        ("turns:\n - {say: '  '}", "empty"),
        ("turns: [", "not valid YAML"),
        ("- just a list", "Expected `object`"),
        (
            "turns:\n - {say: hi, expect: {action: end_call, transfer_number: '+1'}}",
            "transfer_number given with action",
        ),
    ],
)
def test_scenario_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=r"bad\.yaml") as err:
        parse_scenario(text, "bad.yaml")
    assert message in str(err.value)


def test_loading_a_directory(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("turns: [{say: hello}]")
    (tmp_path / "a.yml").write_text("turns: [{say: hi}]")
    (tmp_path / "notes.txt").write_text("not a scenario")
    assert [s.name for s in load_scenarios(tmp_path)] == ["a", "b"]

    (tmp_path / "c.yaml").write_text("name: a\nturns: [{say: hi}]")
    with pytest.raises(ScenarioError, match="duplicate scenario names: a"):
        load_scenarios(tmp_path)
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenarios(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ScenarioError, match=r"no \*\.yaml"):
        load_scenarios(empty)


def test_check_reports_every_unmet_expectation() -> None:
    scenario = parse_scenario(
        "expect_greeting_contains: hello\n"
        "turns:\n"
        " - say: one\n"
        "   expect: {contains: [alpha, beta], not_contains: gamma, matches: '^A', action: none}\n"
        " - say: two\n"
        "   expect: {transfer_number: '+1999'}\n"
        " - say: three\n",
        "s.yaml",
    )
    record = CallRecord(
        call_id="c",
        reason="agent_hangup",
        greeting="Hi there",
        outcomes=[
            TurnOutcome(reply="alpha and gamma", completed=True, end_call=True),
            TurnOutcome(reply="ok", completed=True, transfer_number="+1000"),
        ],
    )
    failures = check(scenario, record)
    joined = "\n".join(failures)
    assert "greeting lacks 'hello'" in joined
    assert "reply lacks 'beta'" in joined
    assert "reply contains 'gamma'" in joined
    assert "does not match /^A/" in joined
    assert "expected action none, got end_call" in joined
    assert "expected transfer to +1999, got +1000" in joined
    assert "turn 3 ('three'): never happened, the call ended first (agent_hangup)" in joined
    assert len(failures) == 7

    passing = CallRecord(
        call_id="c",
        reason="user_hangup",
        greeting="hello!",
        outcomes=[
            TurnOutcome(reply="Alpha, BETA", completed=True),
            TurnOutcome(reply="", completed=True, transfer_number="+1999"),
            TurnOutcome(reply="x", completed=True),
        ],
    )
    assert check(scenario, passing) == []


async def test_failed_expectation_fails_the_run(llm_server: Start, tmp_path: Path) -> None:
    (tmp_path / "echo.yaml").write_text(
        "turns:\n - say: hello there\n   expect: {contains: 'You said: hello there'}\n"
    )
    (tmp_path / "wrong.yaml").write_text(
        "expect_greeting_contains: Goodbye\n"
        "turns:\n - say: hello there\n   expect: {contains: banana, action: end_call}\n"
    )
    url = await llm_server(ReferenceServer())
    report = await simulate(fast_options(url, calls=None, scenario=tmp_path))

    assert report.calls_started == 2  # scenarios only: no random calls with --scenario
    results = {s.name: s for s in report.scenarios}
    assert results["echo"].passed
    assert not results["wrong"].passed
    assert len(results["wrong"].failures) == 3
    assert report.violations == {"expectation_failed": 3}
    assert all(v.detail.startswith("wrong: ") for v in report.violation_samples)
    verdict = judge(report)
    assert not verdict.passed
    assert any("wrong" in reason for reason in verdict.verdict_reasons)


async def test_dynamic_variables_reach_the_greeting(llm_server: Start) -> None:
    scenario = parse_scenario(
        "dynamic_variables: {customer_name: Zed}\n"
        "expect_greeting_contains: Hi Zed\n"
        "turns: [{say: hi}]\n",
        "zed.yaml",
    )
    server = ReferenceServer()
    url = await llm_server(server)
    report = await Simulation(fast_options(url), [scenario]).run()
    assert report.scenarios[0].passed, report.scenarios[0].failures
    assert report.calls_started == 5  # the scenario and four random calls alongside
    details = [c["retell_llm_dynamic_variables"] for c in server.seen.call_details]
    assert {"customer_name": "Zed"} in details


def test_shipped_receptionist_scenarios_parse() -> None:
    scenarios = load_scenarios(RECEPTIONIST_SCENARIOS)
    names = {s.name for s in scenarios}
    assert {"opening-hours", "booking", "transfer-to-human", "address-and-parking"} <= names
    assert any(len(s.turns) >= 4 for s in scenarios)  # a booking across several turns


@pytest.mark.integration
async def test_receptionist_scenarios_pass_against_the_real_server() -> None:
    agent = load_agent(builtin_example("receptionist.yaml"))
    async with running_server(agent) as server:
        report = await simulate(
            fast_options(server.ws_url, calls=None, scenario=RECEPTIONIST_SCENARIOS)
        )
    failed = {s.name: s.failures for s in report.scenarios if not s.passed}
    assert failed == {}
    assert report.violations == {}
    assert report.calls_failed == {}
    assert report.calls_ended["agent_hangup"] >= 2  # goodbyes end calls
    assert report.calls_ended["call_transfer"] == 1


INTERRUPT_SCENARIO = (
    "turns:\n"
    " - say: one\n"
    " - say: two\n"
    "expect_interrupt: {within_s: 5, contains: colleague, transfer_number: '+1555'}\n"
)


def test_expect_interrupt_waits_after_the_last_turn_and_wants_exactly_one() -> None:
    scenario = parse_scenario(INTERRUPT_SCENARIO, "esc.yaml")
    assert [t.then_wait_s for t in scenario.turns] == [0.0, 5.0]
    turns = [TurnOutcome(reply="hm", completed=True), TurnOutcome(reply="hm", completed=True)]
    handoff = TurnOutcome(reply="A colleague will help.", completed=True, transfer_number="+1555")
    ok = CallRecord(call_id="c", reason="call_transfer", outcomes=turns, interrupts=[handoff])
    assert check(scenario, ok) == []
    none = CallRecord(call_id="c", reason="user_hangup", outcomes=turns)
    assert check(scenario, none) == ["expected one agent_interrupt, got 0"]
    wrong = TurnOutcome(reply="Goodbye.", completed=True, end_call=True)
    twice = CallRecord(
        call_id="c", reason="call_transfer", outcomes=turns, interrupts=[wrong, handoff]
    )
    joined = "\n".join(check(scenario, twice))
    assert "expected one agent_interrupt, got 2" in joined
    assert "agent_interrupt: reply lacks 'colleague'" in joined
    assert "expected transfer to +1555, got None" in joined


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        ("expect_interrupt: {within_s: 0}\n", "within_s must be positive"),
        ("expect_interrupt: {action: dance}\n", "expect_interrupt: action must be one of"),
        ("expect_interrupt: {wait: 3}\n", "wait"),
    ],
)
def test_expect_interrupt_mistakes_are_named(tail: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario("turns:\n - say: hi\n" + tail, "esc.yaml")


def test_shipped_event_driven_scenario_parses() -> None:
    (scenario,) = load_scenarios(builtin_example("scenarios/event-driven"))
    assert scenario.name == "asks-for-a-manager-twice"
    assert scenario.expect_interrupt is not None
    assert scenario.expect_interrupt.transfer_number == "+15550100"
