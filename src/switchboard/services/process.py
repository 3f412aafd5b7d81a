"""Running one service as its own process: signals, the bus, the consume loop.

``SIGTERM``/``SIGINT`` stop the loop between batches (the batch in hand is written and
acked first). ``SIGKILL`` needs no handling: whatever was fetched and not acked is
delivered again and deduplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from switchboard.events.bus import EventBus
from switchboard.events.buses import open_bus
from switchboard.log import get_logger
from switchboard.ports import bind_listener
from switchboard.services.dead_letters import DeadLetterStore
from switchboard.services.http_guard import (
    BODY_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    guard,
    guarded_protocol,
)
from switchboard.services.runner import BatchHandler, Runner
from switchboard.services.service_metrics import ServiceStats

_log = get_logger("switchboard.service")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceOptions:
    bus_url: str
    namespace: str = "switchboard:"
    #: consumer group; each service has its own, so each sees every event
    group: str
    #: member name; keep it stable across restarts (Redis re-reads its own pending first)
    name: str
    #: the dead-letter store (SQLite file)
    dead_letters: Path
    max_events: int = 500


@contextlib.asynccontextmanager
async def stop_on_signals() -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal capture: the service owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_http(
    app: Any,
    host: str,
    port: int,
    *,
    token: str | None = None,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> AsyncIterator[asyncio.Event]:
    """Serve ``app`` beside the consumer, behind ``http_guard`` (request deadlines, and
    the bearer token when set); yields the stop event that signals set."""
    config = uvicorn.Config(
        guard(app, token),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        http=guarded_protocol(header_timeout_s, body_timeout_s),
    )
    server = _QuietServer(config)
    listener = bind_listener(host, port)  # PortInUse names the port; never a shared one
    async with stop_on_signals() as stop:
        task = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started:
            if task.done():
                await task  # raises why it could not start (port taken ...)
                raise RuntimeError(f"HTTP server on {host}:{port} exited at start")
            await asyncio.sleep(0.01)
        _log.info("service HTTP listening", url=f"http://{host}:{port}/")
        try:
            yield stop
        finally:
            server.should_exit = True
            await task


async def run_consumer(
    options: ServiceOptions,
    handler: BatchHandler,
    stop: asyncio.Event,
    *,
    bus: EventBus | None = None,
    on_ready: Callable[[], Awaitable[None]] | None = None,
    stats: ServiceStats | None = None,
) -> None:
    dead_letters = await DeadLetterStore.open(options.dead_letters)
    bus = bus or open_bus(options.bus_url, namespace=options.namespace)
    consumer = bus.consumer(options.group, options.name)
    _log.info(
        "service consuming",
        group=options.group,
        name=options.name,
        bus=options.bus_url,
        dead_letters=str(options.dead_letters),
    )
    runner = Runner(
        consumer,
        handler,
        dead_letters,
        stop,
        group=options.group,
        stats=stats,
        max_events=options.max_events,
    )
    try:
        if on_ready is not None:
            await on_ready()
        await runner.run()
    finally:
        # The local file first: its worker thread would keep the process alive.
        await dead_letters.close()
        # A broker that is gone can hold a consumer's leave-group or a producer's flush
        # for as long as it stays gone: the exit waits CLOSE_GRACE_S at most for each.
        await _closed(consumer.close(), "consumer")
        await _closed(bus.close(), "bus")
        _log.info("service stopped", group=options.group)


#: Longest a service's shutdown waits for the bus client to close.
CLOSE_GRACE_S = 5.0


async def _closed(closing: Coroutine[Any, Any, None], what: str) -> None:
    """Close a bus client in its own task and wait ``CLOSE_GRACE_S`` at most: past that
    it is left to the loop's own shutdown (it is not awaited, so its cancellation, which
    a client retrying against a dead broker may take its time over, cannot hold us)."""
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=CLOSE_GRACE_S)
    if not done:
        task.cancel()
        _log.warning("bus client did not close in time; exiting anyway", part=what)
    elif task.cancelled():
        # aiokafka's consumer.stop() re-raises the cancellation of its own fetch tasks
        # when a fetch was retrying against a dead broker: closed all the same.
        _log.info("bus client closed (its pending requests cancelled)", part=what)
    elif task.exception() is not None:
        _log.error(
            "closing the bus client failed; exiting anyway",
            part=what,
            error=repr(task.exception()),
        )


@contextlib.asynccontextmanager
async def serve_metrics(
    stats: ServiceStats, host: str, port: int | None
) -> AsyncIterator[asyncio.Event]:
    """``/metrics`` beside a service without a dashboard; signals only, with no port."""
    if port is None:
        async with stop_on_signals() as stop:
            yield stop
        return
    from switchboard.services.service_metrics import metrics_app

    async with serve_http(metrics_app(stats), host, port) as stop:
        yield stop
