"""``TurnDeadlines``: one timer for the deadlines of every turn, and the session's turn
timeouts built on it (a first chunk too late, a turn that never ends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from switchboard.agents.base import Action, Agent, Turn, TurnKind
from switchboard.calls.deadlines import TurnDeadlines, turn_deadlines
from tests.fixtures.server import retell, spoken


async def _waiter(deadlines: TurnDeadlines, timeout_s: float, log: list[str]) -> None:
    """A turn's wait as ``CallSession._stream`` makes it."""
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling()
    deadline = deadlines.arm(task, timeout_s)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        if deadline.expired and task.uncancel() <= cancelling:
            log.append("timed out")
            raise TimeoutError from None
        log.append("cancelled")
        raise
    finally:
        deadlines.disarm(deadline)


async def test_a_late_wait_is_cancelled_as_a_timeout_and_the_timer_stops() -> None:
    loop = asyncio.get_running_loop()
    deadlines = TurnDeadlines(loop)
    log: list[str] = []
    started = loop.time()
    task = asyncio.ensure_future(_waiter(deadlines, 0.05, log))
    await asyncio.wait({task}, timeout=10)
    assert isinstance(task.exception(), TimeoutError)
    assert log == ["timed out"]
    assert loop.time() - started >= 0.05  # never early
    assert len(deadlines) == 0
    assert deadlines._timer is None  # nothing pending: no timer left running


async def test_a_moved_deadline_fires_at_its_new_time_only() -> None:
    loop = asyncio.get_running_loop()
    deadlines = TurnDeadlines(loop)
    task = asyncio.ensure_future(asyncio.Event().wait())
    await asyncio.sleep(0)
    deadline = deadlines.arm(task, 0.02)  # type: ignore[arg-type]
    deadlines.move(deadline, 30.0)
    other = asyncio.ensure_future(_waiter(deadlines, 0.05, []))
    # The other, shorter deadline passes and its timer runs; the moved one is untouched.
    await asyncio.wait({other}, timeout=10)
    assert isinstance(other.exception(), TimeoutError)
    assert not task.done()
    assert not deadline.expired
    deadlines.disarm(deadline)
    task.cancel()


async def test_a_wait_cancelled_for_another_reason_stays_cancelled() -> None:
    loop = asyncio.get_running_loop()
    deadlines = TurnDeadlines(loop)
    log: list[str] = []
    task = asyncio.ensure_future(_waiter(deadlines, 30.0, log))
    await asyncio.sleep(0)
    task.cancel()  # superseded, say
    await asyncio.wait({task}, timeout=10)
    assert task.cancelled()
    assert log == ["cancelled"]
    assert len(deadlines) == 0


async def test_a_deadline_and_another_cancel_together_leave_the_task_cancelled() -> None:
    loop = asyncio.get_running_loop()
    deadlines = TurnDeadlines(loop)
    log: list[str] = []
    task = asyncio.ensure_future(_waiter(deadlines, 0.01, log))
    await asyncio.sleep(0)
    # Expire it by hand in the same instant someone else cancels it.
    (deadline,) = deadlines._pending
    deadline.when = 0.0
    deadlines._tick()
    task.cancel()
    await asyncio.wait({task}, timeout=10)
    assert task.cancelled()  # not a TimeoutError: the other cancel wins, as asyncio.timeout
    assert log == ["cancelled"]


async def test_each_loop_has_its_own_deadlines() -> None:
    loop = asyncio.get_running_loop()
    assert turn_deadlines(loop) is turn_deadlines(loop)
    other = asyncio.new_event_loop()
    try:
        assert turn_deadlines(other) is not turn_deadlines(loop)
    finally:
        other.close()


class StallingAgent(Agent):
    """Speaks, then never ends the turn (a stream that hangs mid-answer)."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
        yield "One moment."
        if turn.kind is TurnKind.GREETING:
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def test_a_turn_that_never_ends_is_completed_at_its_turn_timeout(serve: Any) -> None:
    agent = StallingAgent()
    async with (
        serve(agent, call_details=False, turn_timeout_s=0.2) as srv,
        retell(srv.ws_url, "stalls") as peer,
    ):
        await peer.complete(0)
        await peer.request(1, "hello?")
        frames = await peer.complete(1)
        # What was said stands; content_complete closes the turn with nothing added.
        assert spoken(frames, 1) == "One moment."
        assert frames[-1]["response_id"] == 1
        assert frames[-1]["content_complete"] is True
        await asyncio.wait_for(agent.cancelled.wait(), 10)
        await peer.request(2, "still there?")
        assert spoken(await peer.complete(2), 2) == "One moment."
