"""The Redis-backed parts of a node in the shared-state profiles, started and stopped as one.

One client and one ``RedisHealth`` per node serve all of them, so an outage is logged
once and every part waits on the same recovery:

* ``store``: the ``RedisCallStore`` (claims, fenced saves);
* ``directory``: this node's heartbeat (its calls turn *orphaned* three beats after it dies);
* ``listener``: the command channel and the claims of other nodes;
* ``dedupe``: cluster-wide webhook dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable

from switchboard.config import Settings
from switchboard.connections import RedisHealth, redis_client
from switchboard.control.directory import Directory, NodeInfo
from switchboard.control.listener import CommandListener, LiveSession
from switchboard.log import get_logger
from switchboard.server.shared_dedupe import SharedDedupe
from switchboard.state.redis import RedisCallStore

_log = get_logger("switchboard.shared")
#: Bound on each part's shutdown: a wedged connection must not hold the process up.
STOP_TIMEOUT_S = 2.0


class SharedState:
    def __init__(self, settings: Settings, node_id: str) -> None:
        if not settings.redis_url:
            raise ValueError(
                f"profile {settings.profile!r} needs Redis: set --redis-url or "
                "SWITCHBOARD_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
            )
        self.settings = settings
        self.node_id = node_id
        ns = settings.redis_namespace
        self.client = redis_client(settings.redis_url, timeout_ms=settings.redis_timeout_ms)
        self.health = RedisHealth(self.client)
        self.store = RedisCallStore(
            self.client, namespace=ns, ttl_s=settings.state_ttl_s, health=self.health
        )
        self.directory = Directory(self.client, ns)
        self.dedupe = SharedDedupe(self.client, self.health, namespace=ns)
        self._listener: CommandListener | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.started_at_ms = int(time.time() * 1000)

    def start(
        self, sessions: Callable[[str], LiveSession | None], info: Callable[[], NodeInfo]
    ) -> None:
        self._listener = CommandListener(
            self.client,
            namespace=self.settings.redis_namespace,
            node_id=self.node_id,
            claims_channel=self.store.claims_channel,
            sessions=sessions,
            health=self.health,
        )
        self._listener.start()
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._beat(info), name="node-heartbeat"
        )

    @property
    def listener(self) -> CommandListener | None:
        return self._listener

    async def _beat(self, info: Callable[[], NodeInfo]) -> None:
        interval = self.settings.heartbeat_ms / 1000
        ttl_ms = 3 * self.settings.heartbeat_ms
        while True:
            if self.health.is_up:
                try:
                    await self.directory.heartbeat(info(), ttl_ms)
                except Exception as exc:
                    self.health.down(exc)
            await asyncio.sleep(interval)

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
        if self.health.is_up:
            with contextlib.suppress(Exception):
                await self.directory.forget_node(self.node_id)
        await self.health.close()
        with contextlib.suppress(Exception):
            await self.client.aclose()
