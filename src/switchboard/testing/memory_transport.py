"""``CallSession``'s ``Transport`` without a socket: frames in by a method call, frames out
into a list (and to a listener).

The session's decisions (supersession, what closes first, which frames an action makes)
can be exercised here in microseconds and without uvicorn; the wire itself is tested
through real sockets. ``AgentCall`` (the pytest kit) listens to it frame by frame; the
suite's own session tests read its list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

TIMEOUT = 10.0


class MemoryTransport:
    """The session's ``Transport``, keeping every frame it is given (decoded JSON).

    ``on_frame`` is called with each frame's text as it is sent, ``on_close`` once when the
    session closes or aborts the transport. After that, sending raises ``ConnectionError``
    as a closing socket would.
    """

    def __init__(
        self,
        on_frame: Callable[[str], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.frames: list[dict[str, Any]] = []
        #: the close code the session chose (the first one), ``None`` while open
        self.closed_with: int | None = None
        self.aborted = False
        self._on_frame = on_frame
        self._on_close = on_close
        self._changed = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.aborted or self.closed_with is not None

    def send_now(self, text: str) -> None:
        if self.closed:
            raise ConnectionError("the call's transport is closed")
        self.frames.append(msgspec.json.decode(text))
        self._changed.set()
        if self._on_frame is not None:
            self._on_frame(text)

    async def send_text(self, text: str) -> None:
        self.send_now(text)

    def close(self, code: int) -> None:
        if self.closed_with is None:
            self.closed_with = code
            self._closed()

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            self._closed()

    def _closed(self) -> None:
        self._changed.set()
        if self._on_close is not None:
            self._on_close()

    async def until(self, predicate: Callable[[], bool], timeout_s: float = TIMEOUT) -> None:
        """Wait until ``predicate()`` holds, re-checked on every frame and close."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def complete(self, response_id: int) -> list[dict[str, Any]]:
        """Wait for ``content_complete`` of ``response_id``; return that id's frames."""
        await self.until(lambda: any(_completes(f, response_id) for f in self.frames))
        return self.of(response_id)

    def of(self, response_id: int) -> list[dict[str, Any]]:
        """The ``response`` frames of ``response_id``, in the order sent."""
        return [
            f
            for f in self.frames
            if f.get("response_type") == "response" and f.get("response_id") == response_id
        ]


def _completes(frame: dict[str, Any], response_id: int) -> bool:
    return (
        frame.get("response_type") == "response"
        and frame.get("response_id") == response_id
        and frame.get("content_complete") is True
    )
