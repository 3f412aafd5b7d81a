"""Scenario files as pytest items: each YAML scenario is one test, run in-process.

A scenario (``docs/simulator.md``) is played with ``AgentCall`` against the agent file
named by the ``switchboard_agent`` ini option, and judged by the simulator's own
``sim.scenario.check``, so a scenario passes here exactly when it would pass in
``switchboard simulate --scenario``. Scenarios that expect the agent to speak up on its
own (``expect_interrupt``) need the event-driven services, and are left to the
simulator: such an item is reported as skipped with that reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.sim.conversation import CallRecord, TurnOutcome
from switchboard.sim.scenario import Scenario, check, parse_scenario
from switchboard.testing.agent_call import AgentCall, Reply, load


class ScenarioFailed(AssertionError):
    pass


async def play(agent_file: Path, scenario: Scenario) -> list[str]:
    """Every way the agent fell short of ``scenario`` (empty: it passed)."""
    call = AgentCall(load(agent_file), dynamic_variables=scenario.dynamic_variables)
    call.owns_agent = True
    record = CallRecord(call_id=call.call_id)
    try:
        greeting = await call.start()
        record.greeting = greeting.text
        for turn in scenario.turns:
            if call.ended:
                break
            if turn.say is None:
                reply = await call.remind()
            else:
                reply = await call.say(turn.say, barge_in=turn.barge_in)
            record.outcomes.append(_outcome(reply))
        record.reason = "agent_hangup" if any(o.end_call for o in record.outcomes) else ""
        record.reason = record.reason or (
            "call_transfer" if any(o.transfer_number for o in record.outcomes) else "user_hangup"
        )
    finally:
        await call.hang_up()
    return check(scenario, record)


def _outcome(reply: Reply) -> TurnOutcome:
    return TurnOutcome(
        reply=reply.text,
        completed=reply.completed,
        end_call=reply.ended,
        transfer_number=None if reply.ended else reply.transfer_number,
    )


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        scenario = parse_scenario(self.path.read_text(encoding="utf-8"), str(self.path))
        yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def runtest(self) -> None:
        if self.scenario.expect_interrupt is not None:
            pytest.skip("expect_interrupt needs the event-driven services: use simulate")
        agent = self.config.getini("switchboard_agent")
        root = self.config.rootpath
        agent_file = (root / agent) if agent else None
        if agent_file is None:
            raise ScenarioFailed("set the switchboard_agent ini option to an agent file")
        failures = asyncio.run(play(agent_file, self.scenario))
        if failures:
            raise ScenarioFailed("\n".join(failures))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, ScenarioFailed):
            return f"scenario {self.scenario.name} failed:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario: {self.scenario.name}"
