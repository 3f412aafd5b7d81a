"""Scenario files: scripted conversations with expectations (a conversation test).

One YAML file is one scenario::

    name: opening-hours                 # optional, defaults to the file name
    dynamic_variables: {customer_name: Dana}
    expect_greeting_contains: "thanks for calling"
    turns:
      - say: "What are your opening hours?"
        expect:
          contains: ["9", "5"]          # every string, case-insensitive
          not_contains: "sorry"
          matches: "(?i)monday"         # re.search
          action: none                  # none | end_call | transfer_number
      - silence: true                   # the caller says nothing: a reminder
      - say: "Can I talk to a person?"
        barge_in: "a real person please"  # keeps talking while the agent answers
        expect: {action: transfer_number, transfer_number: "+14155550123"}
    expect_interrupt:                   # after the last turn, the agent speaks up on its
      within_s: 30                      # own (agent_interrupt) exactly once, as expected
      contains: "colleague"
      transfer_number: "+15550100"

A directory holds several (``*.yaml``/``*.yml``, sorted by name). Mistakes in a file are
reported with the file and field, before any call is placed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import msgspec
import yaml

from switchboard.sim.conversation import CallerTurn, CallRecord, Expectation

ACTIONS = ("none", "end_call", "transfer_number")


class ScenarioError(ValueError):
    """A scenario file that cannot be used, naming the file and what is wrong."""


class _ExpectSpec(msgspec.Struct, forbid_unknown_fields=True):
    contains: str | list[str] = msgspec.field(default_factory=list)
    not_contains: str | list[str] = msgspec.field(default_factory=list)
    matches: str | None = None
    action: str | None = None
    transfer_number: str | None = None


class _TurnSpec(msgspec.Struct, forbid_unknown_fields=True):
    say: str | None = None
    silence: bool = False
    barge_in: str | None = None
    expect: _ExpectSpec | None = None


class _InterruptSpec(_ExpectSpec, forbid_unknown_fields=True):
    within_s: float = 30.0


class _ScenarioSpec(msgspec.Struct, forbid_unknown_fields=True):
    turns: list[_TurnSpec]
    expect_interrupt: _InterruptSpec | None = None
    name: str | None = None
    description: str = ""
    dynamic_variables: dict[str, str] | None = None
    expect_greeting_contains: str | list[str] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    turns: tuple[CallerTurn, ...]
    description: str = ""
    #: ``None`` lets the simulator pick (a random customer name); ``{}`` sends none.
    dynamic_variables: dict[str, str] | None = None
    expect_greeting_contains: tuple[str, ...] = ()
    #: exactly one ``agent_interrupt`` after the last turn, satisfying this
    expect_interrupt: Expectation | None = None


def _strings(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _expectation(spec: _ExpectSpec, where: str) -> Expectation:
    action = spec.action
    if spec.transfer_number is not None:
        if action not in (None, "transfer_number"):
            raise ScenarioError(f"{where}: transfer_number given with action {action!r}")
        action = "transfer_number"
    if action is not None and action not in ACTIONS:
        raise ScenarioError(f"{where}: action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if spec.matches is not None:
        try:
            re.compile(spec.matches)
        except re.error as err:
            raise ScenarioError(f"{where}: matches is not a valid regex: {err}") from None
    return Expectation(
        contains=_strings(spec.contains),
        not_contains=_strings(spec.not_contains),
        matches=spec.matches,
        action=action,
        transfer_number=spec.transfer_number,
    )


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Build a scenario from YAML text; ``source`` names it in errors and by default."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ScenarioError(f"{source}: not valid YAML: {err}") from None
    try:
        spec = msgspec.convert(raw, _ScenarioSpec)
    except msgspec.ValidationError as err:
        raise ScenarioError(f"{source}: {err}") from None
    if not spec.turns:
        raise ScenarioError(f"{source}: a scenario needs at least one turn")
    turns: list[CallerTurn] = []
    for index, turn in enumerate(spec.turns, start=1):
        where = f"{source}: turn {index}"
        if turn.silence == (turn.say is not None):
            raise ScenarioError(f"{where}: give exactly one of 'say' or 'silence: true'")
        if turn.say is not None and not turn.say.split():
            raise ScenarioError(f"{where}: 'say' is empty")
        if turn.barge_in is not None and (turn.silence or not turn.barge_in.split()):
            raise ScenarioError(f"{where}: 'barge_in' needs words and a 'say' to interrupt")
        expect = _expectation(turn.expect, where) if turn.expect is not None else None
        turns.append(CallerTurn(say=turn.say, barge_in=turn.barge_in, expect=expect))
    interrupt = None
    if spec.expect_interrupt is not None:
        if spec.expect_interrupt.within_s <= 0:
            raise ScenarioError(f"{source}: expect_interrupt: within_s must be positive")
        interrupt = _expectation(spec.expect_interrupt, f"{source}: expect_interrupt")
        last = turns[-1]
        turns[-1] = CallerTurn(
            say=last.say,
            barge_in=last.barge_in,
            expect=last.expect,
            then_wait_s=spec.expect_interrupt.within_s,
        )
    name = spec.name or Path(source).stem
    return Scenario(
        name=name,
        turns=tuple(turns),
        description=spec.description,
        dynamic_variables=spec.dynamic_variables,
        expect_greeting_contains=_strings(spec.expect_greeting_contains),
        expect_interrupt=interrupt,
    )


def load_scenarios(path: Path) -> list[Scenario]:
    """One scenario from a file, or every ``*.yaml``/``*.yml`` of a directory."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        if not files:
            raise ScenarioError(f"{path}: no *.yaml scenario files in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise ScenarioError(f"{path}: no such file or directory")
    scenarios = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ScenarioError(f"{file}: cannot read: {err}") from None
        scenarios.append(parse_scenario(text, str(file)))
    names = [s.name for s in scenarios]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScenarioError(f"{path}: duplicate scenario names: {', '.join(duplicates)}")
    return scenarios


def _check_reply(
    expect: Expectation, reply: str, end_call: bool, transfer: str | None
) -> list[str]:
    failures: list[str] = []
    lowered = reply.lower()
    failures += [f"reply lacks {s!r}" for s in expect.contains if s.lower() not in lowered]
    failures += [f"reply contains {s!r}" for s in expect.not_contains if s.lower() in lowered]
    if expect.matches is not None and re.search(expect.matches, reply) is None:
        failures.append(f"reply does not match /{expect.matches}/")
    action = "end_call" if end_call else "transfer_number" if transfer is not None else "none"
    if expect.action is not None and action != expect.action:
        failures.append(f"expected action {expect.action}, got {action}")
    if expect.transfer_number is not None and transfer != expect.transfer_number:
        failures.append(f"expected transfer to {expect.transfer_number}, got {transfer}")
    return failures


def check(scenario: Scenario, record: CallRecord) -> list[str]:
    """Every way the call fell short of the scenario (empty when it passed)."""
    failures: list[str] = []
    if scenario.expect_greeting_contains:
        greeting = record.greeting
        if greeting is None:
            failures.append("greeting: no begin message")
        else:
            failures += [
                f"greeting lacks {s!r} (got {greeting[:80]!r})"
                for s in scenario.expect_greeting_contains
                if s.lower() not in greeting.lower()
            ]
    for index, turn in enumerate(scenario.turns, start=1):
        label = f"turn {index} ({turn.say[:40] if turn.say else 'silence'!r})"
        if index > len(record.outcomes):
            failures.append(f"{label}: never happened, the call ended first ({record.reason})")
            break
        outcome = record.outcomes[index - 1]
        if not outcome.completed:
            why = "cut off by agent_interrupt" if outcome.interrupted else "no complete reply"
            failures.append(f"{label}: {why}")
            continue
        if turn.expect is not None:
            failures += [
                f"{label}: {failure} (reply {outcome.reply[:80]!r})"
                for failure in _check_reply(
                    turn.expect, outcome.reply, outcome.end_call, outcome.transfer_number
                )
            ]
    if scenario.expect_interrupt is not None:
        said = record.interrupts
        if len(said) != 1:
            failures.append(f"expected one agent_interrupt, got {len(said)}")
        for outcome in said[:1]:
            failures += [
                f"agent_interrupt: {failure} (said {outcome.reply[:80]!r})"
                for failure in _check_reply(
                    scenario.expect_interrupt,
                    outcome.reply,
                    outcome.end_call,
                    outcome.transfer_number,
                )
            ]
    if record.failed:
        failures.append(f"call failed: {record.reason}")
    return failures
