"""``StateKeeper``: a call's ``CallState`` and its life in the ``CallStore``.

What may not change:

* One claim per socket, before anything is sent; nothing reads the store before a turn's
  first chunk, and one save follows each completed turn, *before* its
  ``content_complete`` is sent: once Retell has been told a turn is over, a node killed
  at any instant cannot make the call greet again or ask again (``persist``).
* A store that cannot be reached costs the caller as little as it can: a claim waits a
  moment for it (``wait_s``), then serves the call without its state; a save waits the
  same moment, then is held. Both are reconciled by a task that waits for the store to
  come back and outlives the socket (``Node`` keeps it), because the saved state is what
  a reconnect resumes from.
* Ownership is the claim's token. A newer claim anywhere fences this socket: it never
  writes again, and the session is told (``on_fenced``) so it drops the socket. Another
  node's word alone (a claim announcement) never fences: the token in the store decides.
* A call the store lost (restarted empty, evicted, expired) is written back by the
  socket that holds it (``reclaim``), never recreated silently by a save, and only if no
  other claim took it meanwhile.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, cast

from switchboard.state.base import (
    CallState,
    CallStore,
    FencedOut,
    InlineSaves,
    StaleWrite,
    StateLost,
    StoreUnavailable,
)

_PENDING = "pending"
#: how often a claim waiting for a lost call's state to be handed back looks for it
_RESTORE_POLL_S = 0.1
_CLAIMED = "claimed"
_FAILED = "failed"


class StateKeeper:
    __slots__ = (
        "_claim",
        "_inline",
        "_lock",
        "_log",
        "_node_id",
        "_on_fenced",
        "_recheck",
        "_saving",
        "_settled",
        "_store",
        "_suspect",
        "_verify",
        "call_id",
        "fenced",
        "live",
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
        #: the socket still serves the call (a held claim is only taken while it does)
        self.live = True
        #: the reconcile task of a claim or save the store could not take (an outage)
        self.pending_write: asyncio.Task[bool] | None = None
        self._store = store
        #: the store, if it saves in process memory (``persist_now``)
        # (not ``isinstance``: a runtime protocol check walks the protocol's attributes,
        # tens of microseconds on every call's start)
        self._inline = cast(InlineSaves, store) if hasattr(store, "save_now") else None
        self._node_id = node_id
        self._log = log
        self._on_fenced = on_fenced
        self._lock = asyncio.Lock()
        self._claim = _PENDING
        self._settled = asyncio.Event()
        self._verify: asyncio.Task[None] | None = None
        self._recheck = False
        self._saving: asyncio.Task[bool] | None = None
        self._suspect = False

    @property
    def epoch(self) -> int:
        """The epoch of this socket's claim (0 until it is claimed); for logs and events."""
        return self.state.epoch

    @property
    def token(self) -> str:
        """This socket's owner token ("" until it is claimed)."""
        return self.state.token if self._claim == _CLAIMED else ""

    @property
    def known(self) -> bool:
        """The state was read from the store and can be trusted (``False``: served
        without it during an outage, or found missing just after the store lost its
        data, when a call that is under way would look new)."""
        return self._claim == _CLAIMED and not self._suspect

    def snapshot(self) -> CallState | None:
        """The state this socket holds, if it owns the call (for a write-back after it
        closed, should the store lose its data)."""
        return self.state if self._claim == _CLAIMED and not self.fenced else None

    def unfinished(self) -> list[asyncio.Task[bool]]:
        """Writes still under way: a save in flight, a save or claim held for the store."""
        return [t for t in (self._saving, self.pending_write) if t is not None and not t.done()]

    async def claim(self, wait_s: float = 0.0, lost_wait_s: float = 0.0) -> bool:
        """Claim the call, waiting up to ``wait_s`` for an unreachable store. ``False`` if
        another claim fenced this socket meanwhile.

        A claim that finds nothing just after the store lost its data may be a call under
        way whose node has not written it back yet: it waits up to ``lost_wait_s`` for that
        node (``Node.reassert_calls``) to hand the state over, and is otherwise a new call."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            try:
                self.state = await self._store.claim(self.call_id, self._node_id)
                self._claim = _CLAIMED
                if self.state.lost:
                    self.state.lost = False
                    async with self._lock:  # no write-back of this empty state meanwhile
                        await self._await_restore(lost_wait_s)
                break
            except StoreUnavailable:
                remaining = deadline - loop.time()
                if remaining > 0:
                    try:
                        async with asyncio.timeout(remaining):
                            await self._store.wait_available()
                        continue
                    except TimeoutError:
                        pass
                self._claim = _FAILED
                self._log.warning("call state unreachable; serving the call without it")
                self._schedule_reconcile()
                break
            except Exception:
                self._claim = _FAILED
                self._log.exception("call claim failed; serving the call without its state")
                self._schedule_reconcile()
                break
        self._settled.set()
        return not self.fenced

    async def _await_restore(self, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        version = self.state.version
        while loop.time() < deadline:
            await asyncio.sleep(_RESTORE_POLL_S)
            try:
                stored = await self._store.load(self.call_id)
            except Exception:
                break
            if stored is None or stored.token != self.state.token:
                break
            if stored.version > version:
                self.state = stored
                self._log.warning("call state lost by the store was handed back; resuming")
                return
        self._suspect = True
        self._log.warning("call not found just after the store lost its data; starting fresh")

    def claimed_elsewhere(self, epoch: int) -> None:
        """Another node announced a claim of this call: check the store, and fence this
        socket only if another token holds the call (a forged or stale announcement,
        or one the store does not back, changes nothing)."""
        if self.fenced:
            return
        if self._verify is not None and not self._verify.done():
            self._recheck = True
            return
        self._verify = asyncio.get_running_loop().create_task(
            self._check_latest_claim(epoch), name=f"verify-claim-{self.call_id}"
        )

    async def _check_latest_claim(self, epoch: int) -> None:
        while True:
            self._recheck = False
            await self._settled.wait()
            if self.fenced:
                return
            try:
                latest = await self._store.latest_claim(self.call_id)
            except StoreUnavailable:
                return  # cannot tell now; the next save or claim decides
            except Exception:
                self._log.exception("checking a claim announcement failed")
                return
            # Another token, even one already released (the call moved and ended there
            # before this check ran), means this socket is stale.
            if latest is not None and (self._claim != _CLAIMED or latest != self.state.token):
                self._fence(f"claimed by another node (epoch {epoch})")
                return
            if not self._recheck:
                self._log.info("claim announcement not backed by the store; ignored", epoch=epoch)
                return

    def persist_now(self) -> bool | None:
        """Save at once, without a task, where the store saves in process memory
        (``InlineSaves``) and nothing else is writing this call: whether the save is
        durable, as ``persist``'s task would say. ``None``: not saved, call ``persist``
        (another store, a write under way, or a refusal only ``persist`` resolves: a stale
        version or a lost call; the refused save changed nothing).

        Per turn, that is a task, a shielded future and two loop iterations fewer on the
        single profile, where the save itself costs a few microseconds."""
        store = self._inline
        if (
            store is None
            or self._claim != _CLAIMED
            or self.fenced
            or self._lock.locked()
            or (self._saving is not None and not self._saving.done())
            or (self.pending_write is not None and not self.pending_write.done())
        ):
            return None
        try:
            store.save_now(self.state)
        except FencedOut:
            self._fence("another claim refused this socket's save")
            return False
        except (StaleWrite, StateLost, StoreUnavailable):
            return None
        except Exception:
            self._log.exception("state save failed")
            return False
        return True

    def persist(self, wait_s: float) -> asyncio.Task[bool]:
        """Save the state after a completed turn; the task says whether it is durable.

        If the store is unreachable the save waits up to ``wait_s`` for it, then is held
        (``False``); the held save goes on in the background."""
        task = asyncio.get_running_loop().create_task(
            self._persist(wait_s), name=f"save-{self.call_id}"
        )
        self._saving = task
        return task

    async def _persist(self, wait_s: float) -> bool:
        async with self._lock:
            if self.fenced:
                return False
            if self._claim == _CLAIMED:
                try:
                    await self._save()
                    return True
                except FencedOut:
                    self._fence("another claim refused this socket's save")
                    return False
                except StaleWrite as err:
                    self._log.error("state save refused", reason=str(err))
                    return False
                except StoreUnavailable:
                    pass
                except Exception:
                    self._log.exception("state save failed")
                    return False
        task = self._schedule_reconcile()
        try:
            async with asyncio.timeout(wait_s):
                return await asyncio.shield(task)
        except TimeoutError:
            return False

    async def reassert(self) -> None:
        """Write the call back if the store lost it (it restarted empty): owner, live-call
        entry and state, under this socket's token. Fences the socket if another claim
        holds the call now."""
        async with self._lock:
            if self.fenced or self._claim != _CLAIMED:
                return
            try:
                held = await self._store.reclaim(self.state, self._node_id)
            except StoreUnavailable:
                self._schedule_reconcile()
                return
            except Exception:
                self._log.exception("writing the call back to the store failed")
                return
            if not held:
                self._fence("another claim holds the call")

    def _fence(self, why: str) -> None:
        self.fenced = True
        self._on_fenced(why)

    def _schedule_reconcile(self) -> asyncio.Task[bool]:
        task = self.pending_write
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(
                self._reconcile(), name=f"reconcile-{self.call_id}"
            )
            self.pending_write = task
        return task

    async def _reconcile(self) -> bool:
        """Once the store is back, claim (if the first claim failed and the socket still
        serves the call) and save the latest state. ``True`` once it is saved."""
        while True:
            await self._store.wait_available()
            async with self._lock:
                if self.fenced:
                    return False
                try:
                    if self._claim != _CLAIMED:
                        if not self.live:
                            self._log.warning(
                                "call ended during a store outage; its state was not saved",
                                turns=self.state.turns,
                            )
                            return False
                        self._adopt(await self._store.claim(self.call_id, self._node_id))
                    await self._save()
                except StoreUnavailable:
                    continue
                except FencedOut:
                    self._fence("another claim refused this socket's held save")
                    return False
                except Exception:
                    self._log.exception("held state save failed")
                    return False
                self._log.info("held call state saved", turns=self.state.turns)
                return True

    async def _save(self) -> None:
        """Save. If the stored version moved on *under this socket's token*, the move was
        ours (a save whose reply was lost to a timeout): take its version and save again.
        If the call is gone from the store, write it back explicitly (``reclaim``)."""
        try:
            await self._store.save(self.state)
        except StaleWrite:
            stored = await self._store.load(self.call_id)
            if stored is None or stored.token != self.state.token:
                raise
            self.state.version = stored.version
            await self._store.save(self.state)
        except StateLost:
            if not await self._store.reclaim(self.state, self._node_id):
                raise FencedOut("another claim took the call while the store had lost it") from None
            self._log.warning(
                "call state was missing from the store; written back by its owner",
                turns=self.state.turns,
            )

    def _adopt(self, stored: CallState) -> None:
        """Merge a late claim into what this socket did meanwhile: the caller heard this
        socket, so its view wins; keys of ``state`` it never touched are kept."""
        mine = self.state
        mine.epoch, mine.version, mine.token = stored.epoch, stored.version, stored.token
        mine.greeted = mine.greeted or stored.greeted
        mine.turns = max(mine.turns, stored.turns)
        if stored.last_response_id > mine.last_response_id:
            mine.last_response_id = stored.last_response_id
            mine.last_reply = stored.last_reply
        mine.call = mine.call or stored.call
        mine.state = {**stored.state, **mine.state}
        self._claim = _CLAIMED


def weakly(method: Callable[[str], None]) -> Callable[[str], None]:
    """``method``, without keeping its object alive. The keeper lives inside the session:
    a strong bound method would make every session a reference cycle, freed only by a
    garbage collection, and at thousands of calls those collections are the node's
    longest pauses. Without the cycle, refcounting frees a session when its socket ends."""
    ref = weakref.WeakMethod(method)

    def call(arg: str) -> None:
        bound = ref()
        if bound is not None:
            bound(arg)

    return call
