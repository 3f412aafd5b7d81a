"""An ended call leaves no reference cycle behind: refcounting frees its session and its
socket the moment the socket ends, without waiting for a garbage collection.

At thousands of calls, every ended call left in a cycle (its HTTP protocol, its session,
a cancelled turn's traceback) made the collector's middle and full passes walk and free
them, and those passes were the node's longest pauses (docs/scale.md). A call hung up
in the middle of a turn can still leave its cancelled turn's traceback in a cycle."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from switchboard.calls.session import CallSession
from switchboard.server.call_socket import CallSocket
from tests.fixtures.agents import GatedAgent
from tests.fixtures.server import TIMEOUT, retell

pytestmark = pytest.mark.integration


@pytest.fixture
def tracked(monkeypatch: pytest.MonkeyPatch) -> list[weakref.ref[Any]]:
    refs: list[weakref.ref[Any]] = []
    for cls in (CallSession, CallSocket):
        original = cls.__init__

        def init(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            _original(self, *args, **kwargs)
            refs.append(weakref.ref(self))

        monkeypatch.setattr(cls, "__init__", init)
    return refs


async def test_ended_calls_are_freed_without_a_garbage_collection(
    serve: Any, tracked: list[weakref.ref[Any]]
) -> None:
    agent = GatedAgent()
    async with serve(agent, call_details=False) as srv:
        async with retell(srv.ws_url, "answered") as peer:
            await peer.complete(0)
            agent.release.set()
            await peer.request(1, "hello")
            await peer.complete(1)
        await asyncio.wait_for(srv.app.node.wait_idle(), TIMEOUT)
        gc.disable()
        try:
            # the closing tasks have finished; let their last callbacks run
            for _ in range(5):
                await asyncio.sleep(0)
            alive = [type(ref()).__name__ for ref in tracked if ref() is not None]
        finally:
            gc.enable()
    assert len(tracked) == 2
    assert alive == []
