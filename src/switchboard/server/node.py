"""One server process: its agent, store, live sessions, admission cap and drain state.

Admission is exact: ``admit`` checks and increments in one synchronous step, so no
interleaving of handshakes can push the node over ``max_calls``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from switchboard.agents.base import Agent
from switchboard.calls.call_events import NULL_CALL_EVENTS, CallEvents
from switchboard.calls.publisher import CallEventPublisher
from switchboard.calls.session import CallSession
from switchboard.config import Settings
from switchboard.events.outbox import Outbox
from switchboard.log import get_logger
from switchboard.server.compose import Parts
from switchboard.server.loop_health import LoopHealth
from switchboard.server.metrics import NodeMetrics
from switchboard.server.socket_access import Network, parse_networks
from switchboard.state.base import CallState, CallStore, StoreUnavailable

if TYPE_CHECKING:
    from switchboard.server.releases import ReleaseQueue

_log = get_logger("switchboard.node")
#: How many calls write themselves back at once after the store lost its data.
REASSERT_CONCURRENCY = 32
#: How long, and for how many calls, a node keeps the state of a call whose socket
#: dropped (not a hangup): Retell reconnects it within seconds, and should the store
#: lose its data meanwhile, this copy is written back for the reconnect to resume from.
RECENT_S = 60.0
RECENT_MAX = 20_000


class Node:
    """The live side of one process, over the parts ``server.compose`` made of it."""

    def __init__(self, settings: Settings, agent: Agent, parts: Parts) -> None:
        self.settings = settings
        self.agent = agent
        self.store: CallStore = parts.store
        self.options = parts.options
        self.node_id = parts.node_id
        #: where ended calls are released in the shared-state profiles (``RedisParts``)
        self.releases: ReleaseQueue | None = (
            parts.redis.releases if parts.redis is not None else None
        )
        self.metrics = NodeMetrics()
        self.loop_health = LoopHealth(self.metrics.registry)
        self.networks: tuple[Network, ...] = parse_networks(settings.allowed_ips)
        self.secret = settings.url_secret.get_secret_value() if settings.url_secret else None
        self.sessions: dict[str, CallSession] = {}
        #: state writes of sockets that closed: saves in flight, and saves held during a
        #: store outage (see ``CallSession.unsaved``); shutdown waits for them
        self.held_writes: set[asyncio.Task[bool]] = set()
        self.outbox: Outbox | None = parts.outbox
        self.publisher: CallEventPublisher | None = parts.publisher
        self.call_events: CallEvents = parts.publisher or NULL_CALL_EVENTS
        #: states of calls whose socket here dropped lately (see ``remember``)
        self.recent: dict[str, tuple[float, CallState]] = {}
        self.active = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    # ------------------------------------------------------------------ admission

    @property
    def ready(self) -> bool:
        return not self.draining and self.active < self.settings.max_calls

    def admit(self) -> str | None:
        """Take a slot, or say why not (``draining`` / ``at_capacity``)."""
        if self.draining:
            return "draining"
        if self.active >= self.settings.max_calls:
            return "at_capacity"
        self.active += 1
        self._idle.clear()
        self.metrics.active_calls.inc()
        return None

    def release(self) -> None:
        self.active -= 1
        self.metrics.active_calls.dec()
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until no call socket holds a slot (every socket has ended)."""
        await self._idle.wait()

    def attach(self, session: CallSession) -> None:
        """Register the socket serving ``call_id``; an older socket of the call is dropped."""
        previous = self.sessions.get(session.call_id)
        self.sessions[session.call_id] = session
        if previous is not None and previous is not session:
            _log.info("newer socket took the call; dropping the old one", call_id=session.call_id)
            previous.abort()

    def detach(self, session: CallSession) -> None:
        if self.sessions.get(session.call_id) is session:
            del self.sessions[session.call_id]
        for pending in session.unsaved():
            self.held_writes.add(pending)
            pending.add_done_callback(self.held_writes.discard)

    def remember(self, session: CallSession) -> None:
        """Keep the state of a call whose socket dropped without a hangup, for
        ``RECENT_S``: Retell reconnects it, and if the store lost its data meanwhile,
        ``reassert_calls`` writes this copy back."""
        state = session.snapshot()
        if state is None:
            return
        now = time.monotonic()
        recent = self.recent
        recent.pop(session.call_id, None)
        recent[session.call_id] = (now, state)
        while recent:
            oldest = next(iter(recent))
            if len(recent) <= RECENT_MAX and recent[oldest][0] > now - RECENT_S:
                break
            del recent[oldest]

    def session_for(self, call_id: str) -> CallSession | None:
        return self.sessions.get(call_id)

    async def call_ended(self, session: CallSession) -> None:
        """Retell closed the socket on purpose (1000): the call is over, not handed off.

        With a release queue (the shared-state profiles) the release is queued, so a burst
        of hang-ups costs a few Redis sockets and a failed release is retried.
        """
        if session.fenced or not session.token:
            return
        if self.releases is not None:
            self.releases.put(session.call_id, session.token)
            return
        try:
            await self.store.release(session.call_id, session.token)
        except StoreUnavailable:
            pass  # the directory shows it until its state expires; harmless
        except Exception:
            _log.exception("releasing an ended call failed", call_id=session.call_id)

    # ------------------------------------------------------------------ drain

    async def drain(self, timeout_s: float) -> int:
        """Stop admitting, let calls finish until ``timeout_s``, then drop the rest without a
        close frame so Retell reconnects them through the load balancer to another node.
        Returns how many calls were handed off that way."""
        self.draining = True
        _log.info("draining", active=self.active, timeout_s=timeout_s)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return 0
        except TimeoutError:
            handed_off = self.hand_off_all()
            _log.info("drain timeout; handed calls off", calls=handed_off)
            return handed_off

    def hand_off_all(self) -> int:
        """Drop every live socket without a close frame (Retell sees 1006 and reconnects
        elsewhere); returns how many. Admission is closed first."""
        self.draining = True
        remaining = list(self.sessions.values())
        for session in remaining:
            session.abort()
        return len(remaining)

    async def reassert_calls(self) -> int:
        """Write every call this node serves back to a store that lost its data (Redis
        restarted empty): owner, live-call entry and state. Returns how many calls."""
        sessions = list(self.sessions.values())
        cutoff = time.monotonic() - RECENT_S
        dropped = [s for at, s in self.recent.values() if at > cutoff]
        limit = asyncio.Semaphore(REASSERT_CONCURRENCY)

        async def one(session: CallSession) -> None:
            async with limit:
                await session.reassert()

        async def restore(state: CallState) -> None:
            async with limit:
                try:
                    await self.store.restore(state)
                except Exception:
                    _log.exception("writing back a dropped call failed", call_id=state.call_id)

        await asyncio.gather(*(one(s) for s in sessions), *(restore(s) for s in dropped))
        return len(sessions) + len(dropped)

    async def flush_writes(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the state writes of every call (open sockets and
        closed ones); returns how many are still unfinished."""
        pending = set(self.held_writes)
        for session in self.sessions.values():
            pending.update(session.unsaved())
        if not pending:
            return 0
        _, unfinished = await asyncio.wait(pending, timeout=timeout_s)
        return len(unfinished)

    async def aclose(self) -> None:
        await self.loop_health.stop()
        left = await self.flush_writes(self.settings.drain_save_timeout_s)
        held = [t for t in self.held_writes if not t.done()]
        for task in held:
            task.cancel()
        if held:
            await asyncio.wait(held)
        if left:
            _log.error("call states not saved before shutdown (store unreachable)", calls=left)
        if self.outbox is not None:
            await self.outbox.close()
            await self.outbox.bus.close()
        await self.agent.aclose()
        await self.store.close()
