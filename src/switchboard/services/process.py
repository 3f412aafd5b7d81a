"""Running one service as its own process: signals, the bus, the consume loop.

``SIGTERM``/``SIGINT`` stop the loop between batches (the batch in hand is written and
acked first). ``SIGKILL`` needs no handling: whatever was fetched and not acked is
delivered again and deduplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from switchboard.events.bus import EventBus, open_bus
from switchboard.log import get_logger
from switchboard.services.runner import BatchHandler, consume

_log = get_logger("switchboard.service")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceOptions:
    bus_url: str
    namespace: str = "switchboard:"
    #: consumer group; each service has its own, so each sees every event
    group: str
    #: member name; keep it stable across restarts (Redis re-reads its own pending first)
    name: str
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


async def run_consumer(
    options: ServiceOptions,
    handler: BatchHandler,
    stop: asyncio.Event,
    *,
    bus: EventBus | None = None,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    bus = bus or open_bus(options.bus_url, namespace=options.namespace)
    consumer = bus.consumer(options.group, options.name)
    _log.info("service consuming", group=options.group, name=options.name, bus=options.bus_url)
    try:
        if on_ready is not None:
            await on_ready()
        await consume(consumer, handler, stop, max_events=options.max_events)
    finally:
        await consumer.close()
        await bus.close()
        _log.info("service stopped", group=options.group)
