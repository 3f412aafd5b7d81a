"""``StoreWatch``: notices that Redis lost its data, and has the node write its calls back.

Redis restarted without persistence, flushed, or failed over to an empty replica holds
none of the calls this node serves: no owner, no live-call entry, no state. Every save
would find out one call at a time (``StateLost``, then a reclaim), but a call with no
turn for a while would meanwhile be unlisted and uncontrollable, and a reconnect of it
would start fresh. So each node keeps a marker key in Redis and checks it once per
heartbeat (one ``SET NX``): when it has to write the marker again, Redis lost its data,
and the node writes every call it serves back at once (``Node.reassert_calls``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from switchboard.log import get_logger

if TYPE_CHECKING:
    from switchboard.connections import RedisHealth
    from switchboard.state.redis import RedisCallStore

_log = get_logger("switchboard.store_watch")
#: How long after a loss a claim that finds nothing is treated as a call under way.
LOSS_NOTICE_S = 30.0


class StoreWatch:
    def __init__(
        self,
        store: RedisCallStore,
        health: RedisHealth,
        reassert: Callable[[], Awaitable[int]],
        *,
        node_id: str,
        interval_s: float,
    ) -> None:
        self._node_id = node_id
        self._store = store
        self._health = health
        self._reassert = reassert
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._marked = False
        #: how many times this node found Redis emptied and wrote its calls back
        self.losses = 0
        #: set after every check (tests wait on it rather than on time)
        self.checked = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="store-watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)

    async def check(self) -> bool:
        """One check; ``True`` if Redis had lost its data (the calls were written back)."""
        written = await self._store.mark(self._node_id)
        lost = written and self._marked
        self._marked = True
        if lost:
            self.losses += 1
            _log.warning("redis lost its data (restarted empty or flushed); writing calls back")
            await self._store.note_loss(LOSS_NOTICE_S)
            calls = await self._reassert()
            _log.warning("calls written back to redis", calls=calls)
        self.checked.set()
        return lost

    async def _run(self) -> None:
        while True:
            if self._health.is_up:
                try:
                    await self.check()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._health.down(exc)
            await asyncio.sleep(self._interval_s)
