"""Escalation decisions as pure functions: when a rule fires, that it fires once per call,
and what a rules file must say."""

from __future__ import annotations

import pytest

from switchboard.config import builtin_example
from switchboard.events.types import (
    CallEnded,
    CallEscalated,
    CallStarted,
    Event,
    EventData,
    TurnCompleted,
    make_event,
)
from switchboard.services.escalation.rules import (
    CallTrack,
    RulesError,
    load_rules,
    observe,
    parse_rules,
)

RULES = parse_rules(
    """
transfer_number: "+15550100"
supervisor_webhook: "http://127.0.0.1:9/alerts"
rules:
  - {name: asks_for_human, when: asks_for_human, count: 2}
  - {name: not_understood, when: consecutive_fallbacks, count: 3}
  - {name: upset, when: negative_language, count: 1, action: alert}
  - {name: silent, when: reminders, count: 2, action: say, line: "Still there?"}
"""
)


def ev(data: EventData) -> Event:
    return make_event(data, call_id="c1", source="node/n")


def said(
    line: str, reply: str = "ok", fallback: str | None = None, kind: str = "response"
) -> Event:
    return ev(
        TurnCompleted(
            response_id=1, kind=kind, caller_line=line, reply=reply, fallback_reason=fallback
        )
    )


def run(events: list[Event]) -> list[str]:
    track = CallTrack()
    return [d.rule for e in events if (d := observe(RULES, track, e)) is not None]


def test_asking_for_a_person_twice_escalates_once_with_the_handoff() -> None:
    track = CallTrack()
    assert observe(RULES, track, said("Can I talk to a person?")) is None
    decision = observe(RULES, track, said("Let me TALK TO A PERSON please"))
    assert decision is not None
    assert (decision.rule, decision.action, decision.number) == (
        "asks_for_human",
        "transfer",
        "+15550100",
    )
    assert decision.line == "Let me connect you with a colleague who can help."
    assert observe(RULES, track, said("talk to a person!")) is None
    assert track.escalated


def test_fallbacks_must_be_in_a_row_and_not_understood_replies_count() -> None:
    broken = said("hm", fallback="agent_error")
    confused = said("blah", reply="Sorry, I didn't get that.")
    fine = said("what are your hours")
    assert run([broken, confused, fine, broken, confused]) == []
    assert run([broken, confused, broken]) == ["not_understood"]


def test_negative_language_alerts_and_reminders_say_a_line() -> None:
    assert run([said("this is ridiculous")]) == ["upset"]
    track = CallTrack()
    assert observe(RULES, track, said("", kind="reminder")) is None
    decision = observe(RULES, track, said("", kind="reminder"))
    assert decision is not None
    assert (decision.action, decision.line, decision.number) == ("say", "Still there?", None)


def test_no_escalation_after_the_call_ended_or_another_instance_escalated() -> None:
    ask = said("talk to a person")
    assert run([ask, ev(CallEnded(node_id="n", how="closed")), ask]) == []
    assert run([ask, ev(CallEnded(node_id="n", how="dropped")), ask]) == ["asks_for_human"]
    resumed = ev(CallStarted(node_id="n2", resumed=True))
    assert run([ask, ev(CallEnded(node_id="n", how="closed")), resumed, ask]) == ["asks_for_human"]
    other = ev(CallEscalated(rule="x", action="transfer"))
    assert run([other, ask, ask]) == []


def test_superseded_turns_and_greetings_do_not_count() -> None:
    sup = ev(
        TurnCompleted(
            response_id=2, kind="response", caller_line="talk to a person", superseded=True
        )
    )
    assert run([sup, sup, sup]) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rules: [{name: a, when: asks_for_human}]", "names no number"),
        ("rules: [{name: a, when: reminders, action: alert}]", "no supervisor_webhook"),
        ("rules: [{name: a, when: moon_phase}]", "when"),
        ("transfer_number: '1'\nrules: [{name: a, when: reminders, count: 0}]", "at least 1"),
        ("rules: [{name: a, when: reminders, colour: red}]", "colour"),
        ("rules: [", "rules"),
    ],
)
def test_bad_rules_files_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(RulesError, match=problem):
        parse_rules(text)


def test_the_shipped_example_rules_load() -> None:
    rules = load_rules(builtin_example("escalation.yaml"))
    assert [r.name for r in rules.rules] == [
        "asks_for_human",
        "not_understood",
        "upset_caller",
        "silent_caller",
    ]


def test_a_stale_turn_is_neither_counted_nor_acted_on() -> None:
    track = CallTrack()
    ask = TurnCompleted(response_id=1, kind="response", caller_line="a real person please")
    assert observe(RULES, track, ev(ask), stale=True) is None
    assert observe(RULES, track, ev(ask), stale=True) is None
    assert track.human_asks == 0
    assert not track.escalated
    # Lifecycle facts still count, however late they arrive.
    observe(RULES, track, ev(CallEnded(node_id="n", how="closed")), stale=True)
    assert track.ended
