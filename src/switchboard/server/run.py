"""``switchboard serve``: uvicorn with a drain on SIGTERM.

First SIGTERM/SIGINT: readiness goes false, new calls get 503, live calls may finish
until ``drain_timeout_s``; the rest are dropped without a close frame so Retell
reconnects them to another node, then the process exits.

A second signal cuts the drain short: every remaining call is dropped the same way
(1006, never a close code, which Retell would take as the end of the call), and the
shutdown still runs: queued webhooks are delivered within their own deadline, the agent
and the store are closed. A third signal exits at once.

The drain always ends in an exit, whatever fails on the way (a log sink, the drain
itself): a process that is neither serving nor exiting is the worst outcome.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from switchboard import tracing
from switchboard.config import ConfigError, Settings, load_settings, unknown_environment
from switchboard.events.spill import SpillLocked
from switchboard.log import configure, get_logger
from switchboard.ports import PortError, bind_listener
from switchboard.server.app import SwitchboardApp
from switchboard.server.call_socket import Keepalive, call_socket_protocol
from switchboard.server.http_protocol import guarded_http

_log = get_logger("switchboard.run")

#: Garbage-collector thresholds while serving. With thousands of calls the default (700,
#: 10, 10) spent a fifth of the node's CPU collecting (3,000 calls, think 3 s), most of it
#: in full collections over every session's objects; young collections every 10,000
#: allocations cut that by ~60% and each one stays short (docs/benchmarks.md).
GC_THRESHOLD = (10_000, 20, 10)
#: After the drain, how long in-flight HTTP requests (webhooks) may take before uvicorn
#: cancels them and runs the shutdown.
GRACEFUL_HTTP_S = 5


class StartupError(RuntimeError):
    """The server cannot start; the message is one line a person can act on."""


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: SwitchboardApp, drain_timeout_s: float):
        super().__init__(config)
        self._app = app
        self._drain_timeout_s = drain_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals = 0
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._loop is None or self._signals > 2:
            self.should_exit = True
            self.force_exit = True
        elif self._signals == 1:
            self._loop.call_soon_threadsafe(self._start_drain)
        else:
            self._loop.call_soon_threadsafe(self._stop_now)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            handed_off = await self._app.node.drain(self._drain_timeout_s)
            _log.info("drained", handed_off=handed_off)
        except asyncio.CancelledError:
            pass  # a second signal took over
        except Exception:
            _log.exception("drain failed; stopping anyway")
        finally:
            self.should_exit = True

    def _stop_now(self) -> None:
        if self._drain_task is not None:
            self._drain_task.cancel()
        handed_off = self._app.node.hand_off_all()
        _log.warning("second signal: calls handed off without waiting", handed_off=handed_off)
        self.should_exit = True


def uvicorn_config(app: SwitchboardApp, settings: Settings, **extra: Any) -> uvicorn.Config:
    """The uvicorn settings every entry point shares (serve, tests, bench). Call sockets
    are served by ``CallSocket`` in uvicorn's ``ws`` slot, not through ASGI."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=guarded_http(settings.header_timeout_s),
        ws=call_socket_protocol(
            app.node, Keepalive(settings.socket_idle_s, settings.socket_idle_s)
        ),
        ws_per_message_deflate=False,
        # Frames up to 4x our limit reach the session, which rejects them with a clear
        # log line; anything larger is refused by the WebSocket layer itself (1009).
        ws_max_size=4 * settings.max_frame_bytes,
        lifespan="on",
        log_config=None,
        access_log=False,
        # Calls are drained (or handed off) before uvicorn's own shutdown starts; what is
        # left is plain HTTP, which must not hold the exit (and the lifespan) for long.
        timeout_graceful_shutdown=GRACEFUL_HTTP_S,
        **extra,
    )


def run_server(
    config_file: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    agent_file: Path | None = None,
    profile: str | None = None,
    redis_url: str | None = None,
    node_id: str | None = None,
    bus_url: str | None = None,
) -> None:
    """Load everything, then serve until signalled. A configuration problem (settings,
    agent file, log level) is printed as a few lines on stderr and exits with status 2."""
    from switchboard.agents.agent_file import AgentFileError
    from switchboard.agents.loader import load_agent
    from switchboard.cache.build import with_cache
    from switchboard.server.compose import check_extras, check_redis, compose

    try:
        settings = load_settings(
            config_file,
            host=host,
            port=port,
            agent_file=agent_file,
            profile=profile,
            redis_url=redis_url,
            node_id=node_id,
            bus_url=bus_url,
        )
        configure(settings.log_level, settings.log_json)
        if tracing.configure():
            _log.info("tracing to an OTLP endpoint")
    except (ConfigError, ValueError, tracing.TracingUnavailable) as err:
        raise StartupError(str(err)) from None
    # The port first: nothing is loaded, opened or logged as ready on a port we cannot have.
    try:
        listener = bind_listener(settings.host, settings.port)
    except PortError as err:
        raise StartupError(f"{err}; pass --port or stop the other server") from None
    try:
        check_extras(settings)  # a missing extra is one line, before any part is built
        problem = check_redis(settings)
        if problem is not None:
            raise StartupError(problem)
        agent = with_cache(load_agent(settings.agent_file), settings)
        app = SwitchboardApp(settings, agent, parts=compose(settings))
    except SpillLocked as err:
        listener.close()
        raise StartupError(f"{err} (--node-id or SWITCHBOARD_OUTBOX_DIR)") from None
    except (ConfigError, AgentFileError, ValueError) as err:
        listener.close()
        raise StartupError(str(err)) from None
    except BaseException:
        listener.close()
        raise
    for name, _ in unknown_environment():
        _log.warning("environment variable names no setting; ignored", variable=name)
    server = DrainingServer(uvicorn_config(app, settings), app, settings.drain_timeout_s)
    # Everything loaded so far (modules, the agent, settings) lives as long as the process.
    # Freezing it keeps full garbage collections, which stall every call on the node, to
    # the objects that calls create; the thresholds make them rare (``GC_THRESHOLD``).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    _log.info(
        "listening",
        url=f"ws://{settings.host}:{settings.port}/llm-websocket/{{call_id}}",
        agent_file=str(settings.agent_file),
    )
    try:
        server.run(sockets=[listener])
    finally:
        tracing.shutdown()  # what is still queued goes out before the process ends
