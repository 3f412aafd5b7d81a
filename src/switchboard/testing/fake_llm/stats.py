"""What the fake saw: a record per request and counters, readable from any thread, with waits
on a condition (no polling). This is how tests prove that a cancelled turn closed its stream.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

Outcome = Literal["running", "completed", "closed_early", "error"]


class StreamRecord(msgspec.Struct, kw_only=True):
    """One chat completion request, as the server saw it."""

    id: int
    stream: bool
    model: str
    outcome: Outcome = "running"
    status: int = 200
    tokens_sent: int = 0
    tool_calls: list[str] = msgspec.field(default_factory=list)
    started_at: float = 0.0  # time.monotonic()
    ended_at: float | None = None


class FakeLLMStats:
    """Counters and recent records. Written by the server's loop, readable from any thread.

    ``wait_for`` lets a test (on its own loop or thread) wait for a condition, with a
    timeout, without polling: every change wakes the waiters.
    """

    def __init__(self, keep: int = 1000) -> None:
        self._keep = keep
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.started = 0
        self.completed = 0
        self.closed_early = 0
        self.errors = 0
        self.tokens_sent = 0
        self.active = 0
        self.peak_active = 0
        self.streams: collections.deque[StreamRecord] = collections.deque(maxlen=self._keep)
        self._bodies: collections.deque[bytes] = collections.deque(maxlen=100)
        self._ids = itertools.count(1)
        self.changed()

    @property
    def recent_requests(self) -> list[dict[str, Any]]:
        """The last 100 request bodies, decoded (oldest first)."""
        return [msgspec.json.decode(body) for body in list(self._bodies)]

    @property
    def last_request(self) -> dict[str, Any]:
        if not self._bodies:
            raise LookupError("no request recorded")
        body: dict[str, Any] = msgspec.json.decode(self._bodies[-1])
        return body

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "started": self.started,
            "completed": self.completed,
            "closed_early": self.closed_early,
            "errors": self.errors,
            "active": self.active,
            "peak_active": self.peak_active,
            "tokens_sent": self.tokens_sent,
            "streams": [msgspec.to_builtins(r) for r in list(self.streams)[-100:]],
        }

    def changed(self) -> None:
        """Wake everyone waiting on a condition (called by the server after each change)."""
        if self._waiters:
            for loop, event in list(self._waiters):
                loop.call_soon_threadsafe(event.set)
        with self._cond:
            self._cond.notify_all()

    async def wait_for(
        self, predicate: Callable[[FakeLLMStats], bool], within: float = 10.0
    ) -> None:
        """Return once ``predicate(stats)`` holds; ``TimeoutError`` after ``within`` seconds."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                while not predicate(self):
                    await waiter[1].wait()
                    waiter[1].clear()
        finally:
            self._waiters.remove(waiter)

    def wait_for_blocking(
        self, predicate: Callable[[FakeLLMStats], bool], within: float = 10.0
    ) -> None:
        """``wait_for`` for threads that are not the server's (never call it on its loop)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), within):
                raise TimeoutError(f"fake LLM condition not met within {within} s")

    # Recording, called by the server.

    def _begin(self, body: bytes, stream: bool, model: str) -> StreamRecord:
        record = StreamRecord(
            id=next(self._ids), stream=stream, model=model, started_at=time.monotonic()
        )
        self.requests += 1
        self.started += 1
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        self.streams.append(record)
        self._bodies.append(body)
        self.changed()
        return record

    def _sent(self, record: StreamRecord, tokens: int) -> None:
        record.tokens_sent += tokens
        self.tokens_sent += tokens
        self.changed()

    def _end(self, record: StreamRecord, outcome: Outcome) -> None:
        if record.outcome != "running":
            return
        record.outcome = outcome
        record.ended_at = time.monotonic()
        self.active -= 1
        if outcome == "completed":
            self.completed += 1
        elif outcome == "closed_early":
            self.closed_early += 1
        else:
            self.errors += 1
        self.changed()

    def _rejected(self) -> None:
        self.requests += 1
        self.errors += 1
        self.changed()
