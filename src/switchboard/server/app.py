"""The ASGI application: the call socket, webhooks, health, readiness and metrics.

The call socket never reaches ASGI: uvicorn hands every WebSocket upgrade to
``server.call_socket.CallSocket`` (its ``ws`` protocol class, see ``run.uvicorn_config``).
What arrives here is plain HTTP, an ordinary Starlette app with a lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard.agents.base import Agent
from switchboard.cache.agent import CachedAgent
from switchboard.cache.warm import start_and_warm
from switchboard.config import Settings
from switchboard.events.metrics import OutboxCollector
from switchboard.log import get_logger
from switchboard.server.compose import Parts, compose
from switchboard.server.metrics import RedisCollector, WebhookCollector
from switchboard.server.node import Node
from switchboard.server.store_watch import StoreWatch
from switchboard.server.webhook import WebhookReceiver
from switchboard.state.base import CallStore

if TYPE_CHECKING:
    from switchboard.server.redis_parts import RedisParts

_log = get_logger("switchboard.app")


class SwitchboardApp:
    """ASGI callable. ``node`` holds the live state (sessions, drain) for the runner."""

    def __init__(
        self,
        settings: Settings,
        agent: Agent,
        store: CallStore | None = None,
        *,
        parts: Parts | None = None,
    ) -> None:
        parts = parts or compose(settings, store)
        self.profile = parts.profile
        #: the Redis-backed parts of the shared-state profiles (``None`` for ``single``)
        self.shared: RedisParts | None = parts.redis
        #: notices Redis losing its data (shared-state profiles, once started)
        self.store_watch: StoreWatch | None = None
        self.node = Node(settings, agent, parts)
        if self.shared is not None:
            self.node.metrics.registry.register(RedisCollector(self.shared.health))
        api_key = settings.retell_api_key.get_secret_value() if settings.retell_api_key else None
        self.webhooks = WebhookReceiver(
            api_key,
            tolerance_ms=settings.webhook_tolerance_ms,
            max_body_bytes=settings.webhook_max_body_bytes,
            shared=self.shared.dedupe if self.shared is not None else None,
            body_timeout_s=settings.webhook_body_timeout_s,
            max_pending_bodies=settings.webhook_max_pending_bodies,
        )
        self.node.metrics.registry.register(WebhookCollector(self.webhooks.counters))
        if self.node.publisher is not None:
            self.webhooks.subscribe(self.node.publisher.webhook)
            self.node.metrics.registry.register(OutboxCollector(self.node.publisher.outbox))
        if isinstance(agent, CachedAgent):
            agent.metrics.register(self.node.metrics.registry)
        self.http = Starlette(
            routes=[
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/readyz", self._readyz, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/webhook", self.webhooks.endpoint, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.http(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.webhooks.start()
        shared, node = self.shared, self.node
        node.loop_health.start()
        watch: StoreWatch | None = None
        if shared is not None:
            shared.start(
                node.session_for,
                lambda: shared.node_info(node.active, node.draining),
                lambda: list(node.sessions),
            )
            watch = StoreWatch(
                shared.store,
                shared.health,
                node.reassert_calls,
                node_id=node.node_id,
                interval_s=node.settings.heartbeat_ms / 1000,
            )
            self.store_watch = watch
            # The node's store marker before its first call: a claim that found no marker
            # would take a fresh call for one the store lost, and wait for a hand-back.
            # Then the socket the store's scripts go out on, so the first claim does not
            # wait for a connect and a greeting.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(node.settings.redis_timeout_ms / 1000 * 4):
                    await watch.check()
                    await shared.store.connect()
            watch.start()
        if self.node.outbox is not None:
            self.node.outbox.start()
        if isinstance(self.node.agent, CachedAgent):
            start_and_warm(self.node.agent)
        _log.info(
            "switchboard ready",
            profile=self.profile,
            node_id=self.node.node_id,
            max_calls=self.node.settings.max_calls,
        )
        try:
            yield
        finally:
            try:
                await self.webhooks.stop()
                if watch is not None:
                    await watch.stop()
                # The node first: its last state saves need the Redis client open.
                await self.node.aclose()
                if shared is not None:
                    await shared.stop()
            finally:
                counters = self.webhooks.counters
                _log.info(
                    "switchboard stopped",
                    webhooks_delivered=counters.delivered,
                    webhooks_dropped=counters.dropped,
                )

    async def _healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _readyz(self, _request: Request) -> Response:
        node = self.node
        body = {
            "ready": node.ready,
            "draining": node.draining,
            "active_calls": node.active,
            "max_calls": node.settings.max_calls,
        }
        return JSONResponse(body, status_code=200 if node.ready else 503)

    async def _metrics(self, _request: Request) -> Response:
        return Response(generate_latest(self.node.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, agent: Agent, store: CallStore | None = None) -> SwitchboardApp:
    return SwitchboardApp(settings, agent, store)
