"""``switchboard.testing``: agents tested with pytest, in-process, through the real session.

These tests use the plugin's fixtures exactly as a user's project would: they come from
the ``pytest11`` entry point, not from this suite's conftest.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from switchboard import Agent, Turn, TurnKind
from switchboard.agents.base import Action
from switchboard.testing import CallOver

ROOT = Path(__file__).resolve().parent.parent
RECEPTIONIST = str(ROOT / "examples" / "receptionist.yaml")


async def test_books_a_visit(agent_call: Any) -> None:
    call = await agent_call(RECEPTIONIST, dynamic_variables={"customer_name": "Dana"})
    assert "Hi Dana" in call.greeting.text
    reply = await call.say("I'd like to book an appointment")
    assert "name" in reply.text
    reply = await call.say("It's Dana Whitfield")
    assert call.state["patient_name"] == "Dana Whitfield"
    assert not reply.actions
    assert "day and time" in reply.text


async def test_a_transfer_ends_the_call_for_the_test_too(agent_call: Any) -> None:
    call = await agent_call(RECEPTIONIST)
    reply = await call.say("Can I talk to a real person?")
    assert reply.transfer_number == "+14155550100"
    assert not reply.ended
    with pytest.raises(CallOver):
        await call.say("hello?")


async def test_goodbye_hangs_up(agent_call: Any) -> None:
    call = await agent_call(RECEPTIONIST)
    reply = await call.say("That's all, bye")
    assert reply.ended
    assert "goodbye" in reply.text.lower()


async def test_silence_draws_a_reminder(agent_call: Any) -> None:
    call = await agent_call(RECEPTIONIST)
    reply = await call.remind()
    assert "still there" in reply.text.lower()


class _Slow(Agent):
    """Says one word, then waits for a go that only the second request gets."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []

    async def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
        if turn.kind is TurnKind.GREETING:
            yield "Hello."
            return
        line = turn.last_user_text
        yield "Let me see."
        if "Friday" not in line:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(line)
                raise
        yield f" You said: {line}"


async def test_a_barge_in_cancels_the_reply_and_answers_the_whole_utterance(
    agent_call: Any,
) -> None:
    agent = _Slow()
    call = await agent_call(agent)
    reply = await call.say("I need to reschedule", barge_in="to Friday")
    assert reply.text == "Let me see. You said: I need to reschedule to Friday"
    assert agent.cancelled == ["I need to reschedule"]
    assert call.replies[1].completed is False  # the superseded reply never completed


async def test_talking_over_a_reply_cuts_it_to_what_was_said(agent_call: Any) -> None:
    call = await agent_call(_Slow())
    await call.say("on Friday")
    reply = await call.interrupt("sorry, Friday morning")
    assert reply.text.endswith("You said: sorry, Friday morning")
    agent_lines = [u["content"] for u in call.transcript if u["role"] == "agent"]
    assert agent_lines[1] == "Let me see."  # the rest was never heard


@pytest.mark.integration
async def test_an_llm_agent_talks_to_the_fake_openai_server(
    agent_call: Any, fake_openai: Any
) -> None:
    call = await agent_call(str(ROOT / "examples" / "openai-receptionist.yaml"))
    reply = await call.say("Hi there, can you help me?")
    assert reply.completed
    assert reply.text.strip()
    assert fake_openai.stats.started >= 1


@pytest.mark.integration
def test_scenario_files_run_as_pytest_items(tmp_path: Path) -> None:
    scenarios = ROOT / "examples" / "scenarios" / "receptionist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            f"switchboard_scenarios={scenarios}",
            "-o",
            f"switchboard_agent={RECEPTIONIST}",
            str(scenarios),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    count = len(list(scenarios.glob("*.yaml")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{count} passed" in result.stdout
