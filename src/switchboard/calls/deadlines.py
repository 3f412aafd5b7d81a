"""``TurnDeadlines``: one timer for the deadlines of every turn of an event loop.

A turn may not wait forever for its agent: no first chunk within ``first_chunk_timeout_s``,
or no end within ``turn_timeout_s``, and the turn is cancelled and answered with the
fallback. ``asyncio.timeout`` per turn did that with a timeout object, a timer handle
created, cancelled and created again at the first chunk, and Python code at entry and exit:
several microseconds and half a dozen objects for the collector on every turn, for a
deadline that almost never fires (an agent that answers at once leaves before any timer
could). Here a turn's deadline is one entry in a dict; one timer, armed only while entries
exist, walks them every ``resolution_s`` and cancels the turns that are late, as
``server.call_socket.Keepalive`` does for silent sockets. A deadline then fires up to one
``resolution_s`` late: a few percent of the shortest timeout.

The cancellation is the one ``asyncio.timeout`` makes: the task is cancelled, and the
``CancelledError`` becomes a ``TimeoutError`` where the turn waits (``Deadline.expired``,
``asyncio.Task.uncancel``) unless someone else cancelled the task too.
"""

from __future__ import annotations

import asyncio
import weakref

#: The timer's period, as a share of the deadline that armed it (bounded below and above).
_SHARE = 0.05
_MIN_RESOLUTION_S = 0.005
_MAX_RESOLUTION_S = 0.25


class Deadline:
    """One turn's deadline: ``when`` (the loop's clock) may be moved; once it has passed
    the task is cancelled and ``expired`` is set."""

    __slots__ = ("expired", "task", "when")

    def __init__(self, task: asyncio.Task[None], when: float) -> None:
        self.task = task
        self.when = when
        self.expired = False


class TurnDeadlines:
    """The deadlines of one event loop's turns (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: set[Deadline] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._resolution_s = _MAX_RESOLUTION_S

    def arm(self, task: asyncio.Task[None], timeout_s: float) -> Deadline:
        """A deadline ``timeout_s`` from now for ``task``; ``disarm`` it when the wait ends."""
        deadline = Deadline(task, self._loop.time() + timeout_s)
        self._pending.add(deadline)
        resolution = min(max(timeout_s * _SHARE, _MIN_RESOLUTION_S), _MAX_RESOLUTION_S)
        if self._timer is None or resolution < self._resolution_s:
            if self._timer is not None:
                self._timer.cancel()
            self._resolution_s = resolution
            self._timer = self._loop.call_later(resolution, self._tick)
        return deadline

    def move(self, deadline: Deadline, timeout_s: float) -> None:
        """``deadline`` now falls ``timeout_s`` from now (a later one needs no finer timer)."""
        deadline.when = self._loop.time() + timeout_s

    def disarm(self, deadline: Deadline) -> None:
        self._pending.discard(deadline)

    def __len__(self) -> int:
        return len(self._pending)

    def _tick(self) -> None:
        self._timer = None
        now = self._loop.time()
        for deadline in [d for d in self._pending if d.when <= now]:
            self._pending.discard(deadline)
            if not deadline.task.done():
                deadline.expired = True
                deadline.task.cancel()
        if self._pending:
            self._timer = self._loop.call_later(self._resolution_s, self._tick)
        else:
            self._resolution_s = _MAX_RESOLUTION_S


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnDeadlines] = (
    weakref.WeakKeyDictionary()
)


def turn_deadlines(loop: asyncio.AbstractEventLoop) -> TurnDeadlines:
    """The ``TurnDeadlines`` of ``loop`` (made at its first turn)."""
    deadlines = _by_loop.get(loop)
    if deadlines is None:
        deadlines = _by_loop[loop] = TurnDeadlines(loop)
    return deadlines
