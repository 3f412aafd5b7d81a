"""The Redis-backed parts of a node in the shared-state profiles, started and stopped as one.

``server.compose`` builds them from the settings; this module runs them. One client and
one ``RedisHealth`` per node serve all of them, so an outage is logged once and every
part waits on the same recovery:

* ``store``: the ``RedisCallStore`` (claims, fenced saves);
* ``directory``: this node's heartbeat (its calls turn *orphaned* three beats after it dies,
  and leave the live set three beats later); beats also prune the ghosts, one page per
  beat, in passes ``PRUNE_REST_BEATS`` apart;
* ``releases``: the queue through which ended calls leave the live set, flushed at once
  and retried on every beat (docs/distributed.md, "Redis use");
* ``listener``: the command channel and the claims of other nodes;
* ``dedupe``: cluster-wide webhook dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable

from redis.asyncio import Redis

from switchboard.config import Settings
from switchboard.connections import RedisHealth, is_link_error
from switchboard.control.directory import Directory, NodeInfo
from switchboard.control.listener import CommandListener, LiveSession
from switchboard.log import get_logger
from switchboard.server.cluster_dedupe import SharedDedupe
from switchboard.server.releases import ReleaseQueue
from switchboard.state.redis import RedisCallStore

_log = get_logger("switchboard.redis_parts")
#: Bound on each part's shutdown: a wedged connection must not hold the process up.
STOP_TIMEOUT_S = 2.0
#: The rest, in beats, between two pruning passes over the live set (a pass is one page
#: per beat).
#: Ghosts are rare (a node died) and never listed meanwhile (readers prune what they read),
#: while a page costs a command per call in it: pruning at every beat cost each node one
#: HMGET per live call of the cluster per second.
PRUNE_REST_BEATS = 5


class RedisParts:
    """The Redis-backed parts of one node (built by ``server.compose.redis_parts``)."""

    def __init__(
        self,
        settings: Settings,
        node_id: str,
        *,
        client: Redis,
        health: RedisHealth,
        store: RedisCallStore,
        directory_client: Redis,
        directory: Directory,
        dedupe: SharedDedupe,
        releases: ReleaseQueue,
    ) -> None:
        self.settings = settings
        self.node_id = node_id
        self.client = client
        self.health = health
        self.store = store
        #: the heartbeat and the pruning have sockets of their own: a node whose calls
        #: fill the pool (a burst of claims) must not look dead for want of a socket
        self.directory_client = directory_client
        self.directory = directory
        self.dedupe = dedupe
        self.releases = releases
        self._prune_offset = 0
        #: loop time of the next pruning pass (the first beat starts one)
        self._next_prune = 0.0
        self._last_beat: float | None = None
        self._listener: CommandListener | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.started_at_ms = int(time.time() * 1000)

    def start(
        self,
        sessions: Callable[[str], LiveSession | None],
        info: Callable[[], NodeInfo],
        held: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        """Start the listener, the release queue and the heartbeat; ``held`` lists the
        ids of the calls this node serves (relisted after a stalled heartbeat)."""
        self._listener = CommandListener(
            self.client,
            namespace=self.settings.redis_namespace,
            node_id=self.node_id,
            claims_channel=self.store.claims_channel,
            sessions=sessions,
            health=self.health,
        )
        self._listener.start()
        self.releases.start()
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._beat(info, held), name="node-heartbeat"
        )

    @property
    def listener(self) -> CommandListener | None:
        return self._listener

    async def _beat(self, info: Callable[[], NodeInfo], held: Callable[[], Iterable[str]]) -> None:
        """Beat every ``heartbeat_ms`` (see ``beat``)."""
        interval = self.settings.heartbeat_ms / 1000
        while True:
            if self.health.is_up:
                await self.beat(info, held)
            await asyncio.sleep(interval)

    async def beat(self, info: Callable[[], NodeInfo], held: Callable[[], Iterable[str]]) -> None:
        """One heartbeat, then the release retries and, in a pruning pass, one page of it.

        Other nodes prune a call as a ghost once its owner's entry and marker are gone, so
        a beat that finds this node's entry gone lists its calls again: after a gap of
        three beats (a stalled loop, an outage) the entry expired; after Redis lost its
        data it vanished, and the calls this node wrote back may have been pruned by
        another node before this beat put the entry back."""
        loop = asyncio.get_running_loop()
        try:
            was_listed = await self.directory.heartbeat(info(), 3 * self.settings.heartbeat_ms)
            first, self._last_beat = self._last_beat is None, loop.time()
            if not was_listed and not first:
                await self._relist(list(held()))
        except Exception as exc:
            self.health.down(exc)
        self.releases.retry()
        if self._prune_offset or loop.time() >= self._next_prune:
            await self._prune()
            if not self._prune_offset:  # the pass is over
                rest_s = PRUNE_REST_BEATS * self.settings.heartbeat_ms / 1000
                self._next_prune = loop.time() + rest_s

    async def _relist(self, call_ids: list[str]) -> None:
        relisted = await self.directory.relist(self.node_id, call_ids)
        if relisted:
            _log.warning("node entry was gone; calls listed again", calls=relisted)

    async def _prune(self) -> None:
        try:
            self._prune_offset = await self.directory.prune_page(self._prune_offset)
        except Exception as exc:
            self._prune_offset = 0
            if is_link_error(exc):
                self.health.down(exc)
            else:
                _log.warning("pruning the live-call directory failed", error=str(exc)[:200])

    def node_info(self, active: int, draining: bool) -> NodeInfo:
        return NodeInfo(
            node_id=self.node_id,
            host=self.settings.host,
            port=self.settings.port,
            pid=os.getpid(),
            started_at_ms=self.started_at_ms,
            active_calls=active,
            max_calls=self.settings.max_calls,
            draining=draining,
        )

    async def stop(self) -> None:
        """Leave the directory and close the connection (the store closes with the node)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            _, pending = await asyncio.wait({self._heartbeat}, timeout=STOP_TIMEOUT_S)
            if pending:
                _log.warning("heartbeat task ignored cancellation")
        if self._listener is not None:
            await self._listener.stop()
        await self.releases.stop(STOP_TIMEOUT_S)
        if self.health.is_up:
            with contextlib.suppress(Exception):
                await self.directory.forget_node(self.node_id, 3 * self.settings.heartbeat_ms)
        await self.health.close()
        with contextlib.suppress(Exception):
            await self.client.aclose()
        with contextlib.suppress(Exception):
            await self.directory_client.aclose()
