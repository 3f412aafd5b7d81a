"""``StateKeeper``: a call's ``CallState`` and its life in the ``CallStore``.

What may not change:

* One claim per socket, before anything is sent; nothing reads the store before a turn's
  first chunk, and one save follows each completed turn.
* A store that cannot be reached never costs the caller anything: a failed claim serves
  the call from a fresh state, a failed save is held, and both are reconciled by a task
  that waits for the store to come back. That task outlives the socket (``Node`` keeps
  it), because the saved state is what a reconnect resumes from.
* A newer claim anywhere fences this socket: it never writes again, and the session is
  told (``on_fenced``) so it drops the socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from switchboard.state.base import CallState, CallStore, FencedOut, StaleWrite, StoreUnavailable

_PENDING = "pending"
_CLAIMED = "claimed"
_FAILED = "failed"


class StateKeeper:
    __slots__ = (
        "_claim",
        "_foreign_epoch",
        "_lock",
        "_log",
        "_node_id",
        "_on_fenced",
        "_store",
        "call_id",
        "fenced",
        "pending_write",
        "state",
    )

    def __init__(
        self,
        call_id: str,
        store: CallStore,
        node_id: str,
        log: Any,
        on_fenced: Callable[[str], None],
    ) -> None:
        self.call_id = call_id
        self.state = CallState(call_id=call_id)
        self.fenced = False
        #: the reconcile task of a claim or save the store could not take (an outage)
        self.pending_write: asyncio.Task[None] | None = None
        self._store = store
        self._node_id = node_id
        self._log = log
        self._on_fenced = on_fenced
        self._lock = asyncio.Lock()
        self._claim = _PENDING
        self._foreign_epoch = 0

    @property
    def epoch(self) -> int:
        """The fencing epoch of this socket's claim (0 until it is claimed)."""
        return self.state.epoch

    async def claim(self) -> bool:
        """Claim the call. ``False`` if a newer claim elsewhere already fenced this socket."""
        try:
            self.state = await self._store.claim(self.call_id, self._node_id)
            self._claim = _CLAIMED
        except Exception as exc:
            self._claim = _FAILED
            if isinstance(exc, StoreUnavailable):
                self._log.warning("call state unreachable; serving the call from a fresh state")
            else:
                self._log.exception("call claim failed; serving the call from a fresh state")
            self._schedule_reconcile()
        if self._claim == _CLAIMED and self._foreign_epoch > self.state.epoch:
            self._fence("claimed by another node while this socket was claiming")
            return False
        return True

    def claimed_elsewhere(self, epoch: int) -> None:
        """Another node claimed this call at ``epoch``; fence this socket if that is newer."""
        if self.fenced:
            return
        if self._claim == _PENDING:
            self._foreign_epoch = max(self._foreign_epoch, epoch)
        elif self._claim == _FAILED or epoch > self.state.epoch:
            self._fence(f"claimed by another node (epoch {epoch})")

    async def persist(self) -> None:
        """Save the state after a completed turn; hold it if the store is unreachable."""
        async with self._lock:
            if self.fenced:
                return
            if self._claim != _CLAIMED:
                self._schedule_reconcile()
                return
            try:
                await self._save()
            except FencedOut:
                self._fence("a newer claim refused this socket's save")
            except StaleWrite as err:
                self._log.error("state save refused", reason=str(err))
            except StoreUnavailable:
                self._schedule_reconcile()
            except Exception:
                self._log.exception("state save failed")

    def _fence(self, why: str) -> None:
        self.fenced = True
        self._on_fenced(why)

    def _schedule_reconcile(self) -> None:
        task = self.pending_write
        if task is None or task.done():
            self.pending_write = asyncio.get_running_loop().create_task(
                self._reconcile(), name=f"reconcile-{self.call_id}"
            )

    async def _reconcile(self) -> None:
        """Once the store is back, claim (if the first claim failed) and save the latest state."""
        while True:
            await self._store.wait_available()
            async with self._lock:
                if self.fenced:
                    return
                try:
                    if self._claim != _CLAIMED:
                        stored = await self._store.claim(self.call_id, self._node_id)
                        if self._foreign_epoch > stored.epoch:
                            self._fence("claimed by another node during the outage")
                            return
                        self._adopt(stored)
                    await self._save()
                except StoreUnavailable:
                    continue
                except FencedOut:
                    self._fence("a newer claim refused this socket's held save")
                except Exception:
                    self._log.exception("held state save failed")
                else:
                    self._log.info("held call state saved", turns=self.state.turns)
                return

    async def _save(self) -> None:
        """Save; if the stored version moved on *at our own epoch*, the move was ours (a
        save whose reply was lost to a timeout), so take its version and save again."""
        try:
            await self._store.save(self.state)
        except StaleWrite:
            stored = await self._store.load(self.call_id)
            if stored is None or stored.epoch != self.state.epoch:
                raise
            self.state.version = stored.version
            await self._store.save(self.state)

    def _adopt(self, stored: CallState) -> None:
        """Merge a late claim into what this socket did meanwhile: the caller heard this
        socket, so its view wins; keys of ``state`` it never touched are kept."""
        mine = self.state
        mine.epoch, mine.version = stored.epoch, stored.version
        mine.greeted = mine.greeted or stored.greeted
        mine.turns = max(mine.turns, stored.turns)
        mine.last_response_id = max(mine.last_response_id, stored.last_response_id)
        mine.call = mine.call or stored.call
        mine.state = {**stored.state, **mine.state}
        self._claim = _CLAIMED
