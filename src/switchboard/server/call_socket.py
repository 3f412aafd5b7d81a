"""The ``/llm-websocket/{call_id}`` endpoint: a WebSocket protocol of our own in uvicorn's
``ws`` slot, driving a ``CallSession`` without ASGI.

Why not ASGI: at thousands of calls, uvicorn's ASGI WebSocket plumbing cost more CPU than
the calls themselves. Every inbound frame became a message dict, a queue put and get, a
task wake-up and a pause then resume of reading (two epoll changes); every outbound frame
another dict. Here an inbound frame goes from the socket to the session in one synchronous
call (``CallSession.receive_text`` never awaits), and a reply is one ``transport.write``.

The framing is ``server.websocket`` (RFC 6455, server side; websockets' C code unmasks and
computes the accept key). uvicorn still owns the listening socket and the HTTP parsing:
when a request asks for an upgrade, our HTTP protocol (``http_protocol.guarded_http``) hands
the connection and the parsed request head to ``CallSocket.upgrade``. No extension or
subprotocol is negotiated (Retell uses neither). Which handshakes are accepted, and the
answers to the others, is ``server.handshake``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable
from typing import Any, ClassVar, cast

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.server import ServerState

from switchboard.calls.session import CallSession
from switchboard.log import LogThrottle, get_logger
from switchboard.protocol.codec import UPDATE_HEAD_SIZE
from switchboard.server.handshake import (
    STATUS,
    handshake_problem,
    refusal,
    route,
    switching_protocols,
)
from switchboard.server.node import Node
from switchboard.server.websocket import (
    CLOSE,
    INTERNAL_ERROR,
    PING,
    PONG,
    TEXT,
    FrameError,
    FrameReader,
    close_frame,
    parse_close,
    server_frame,
)

_log = get_logger("switchboard.socket")
_throttle = LogThrottle()

#: How long a close frame we sent may wait for the peer's reply before the TCP connection
#: is closed anyway (uvicorn's value).
CLOSE_TIMEOUT_S = 10.0


def _log_throttled(kind: str, message: str, **fields: object) -> None:
    """One info line per ``kind`` at a time, with how many were suppressed since: a flood
    of bad handshakes or frames must not become a flood of log lines."""
    suppressed = _throttle.allow(kind)
    if suppressed is not None:
        _log.info(message, **fields, **({"suppressed": suppressed} if suppressed else {}))


class Keepalive:
    """One timer for every call socket of the process, instead of one per socket.

    A socket silent for ``interval_s`` gets a WebSocket ping; one still silent
    ``timeout_s`` later is failed (1011), so a peer that vanished without a FIN does not
    hold its call slot forever. Retell's own ``ping_pong`` every 2 s keeps a live call
    from ever needing a ping, so at thousands of calls this costs one pass over the set
    every few seconds and nothing on the wire.
    """

    def __init__(self, interval_s: float | None, timeout_s: float | None) -> None:
        self.interval_s = interval_s if interval_s and interval_s > 0 else None
        self.timeout_s = timeout_s if timeout_s and timeout_s > 0 else None
        self.sockets: set[CallSocket] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, sock: CallSocket) -> None:
        if self.interval_s is None:
            return
        self.sockets.add(sock)
        if self._timer is None:
            self._schedule(asyncio.get_running_loop())

    def discard(self, sock: CallSocket) -> None:
        self.sockets.discard(sock)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.interval_s is not None
        period = min(self.interval_s, self.timeout_s or self.interval_s) / 4
        self._timer = loop.call_later(period, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for sock in list(self.sockets):
            sock.check_alive(now, self.interval_s or 0.0, self.timeout_s)
        if self.sockets:
            self._schedule(loop)


class CallSocket(asyncio.Protocol):
    """One call socket, from the upgrade request to the closed connection.

    Also the session's ``Transport``. Built by uvicorn for each upgrade (with its config and
    server state); ``call_socket_protocol`` binds the class to the node.
    """

    node: ClassVar[Node]
    keepalive: ClassVar[Keepalive]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()  # pragma: no cover - uvicorn loads it before serving
        self._loop = _loop or asyncio.get_event_loop()
        self._connections = server_state.connections
        self._tasks = server_state.tasks
        app = config.loaded_app
        self._trusted = app.trusted_hosts if isinstance(app, ProxyHeadersMiddleware) else None
        self._max_size = config.ws_max_size
        #: set once the handshake is accepted; ``None`` again once nothing more is read
        self._reader: FrameReader | None = None
        #: data frames may be sent (between the 101 and a close frame either way)
        self._open = False
        self._close_sent = False
        self._close_code: int | None = None
        self._transport: asyncio.Transport | None = None
        self._client: str | None = None
        self._session: CallSession | None = None
        self._admitted = False
        self._started = False
        self._backlog: list[tuple[bool, bytes]] = []
        self._close_timer: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None
        self._write_paused = False
        self._lost = False
        self.last_seen = 0.0
        self._ping_sent_at: float | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._connections.add(self)  # type: ignore[arg-type]  # uvicorn's shutdown walks these
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._client = peer[0] if isinstance(peer, tuple) and peer else None
        self.last_seen = self._loop.time()

    def data_received(self, data: bytes) -> None:
        self.last_seen = self._loop.time()
        self._ping_sent_at = None
        reader = self._reader
        if reader is None:
            return  # refused, failed or closed: nothing more is read
        try:
            reader.feed(data, self._message, self._control)
        except FrameError as err:
            self._fail(err.code, err.reason)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself; connection_lost ends the call

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._connections.discard(self)
        self.keepalive.discard(self)
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._wake_writers()
        session, self._session = self._session, None
        if session is not None:
            self._spawn(self._end(session, clean=self._close_code == 1000))
        elif self._admitted:
            self.node.release()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    def shutdown(self) -> None:
        """uvicorn's exit: the drain has already handed calls off; drop what is left
        without a close frame (Retell reconnects it elsewhere)."""
        if self._transport is not None and not self._lost:
            self._transport.abort()

    # ------------------------------------------------------------------ the session's Transport

    def send_now(self, text: str) -> None:
        """Write one text frame without waiting; raises ``ConnectionError`` once the socket
        is closing (no data frame may follow a close frame)."""
        if not self._open:
            raise ConnectionError("call socket is closing")
        assert self._transport is not None
        self._transport.write(server_frame(TEXT, text.encode()))

    async def send_text(self, text: str) -> None:
        """``send_now``, then wait while the peer reads slower than we write."""
        self.send_now(text)
        if self._write_paused:
            if self._writable is None:
                self._writable = self._loop.create_future()
            await self._writable
            if self._lost:
                raise ConnectionError("call socket closed")

    def close(self, code: int) -> None:
        """Start the closing handshake with ``code``; the connection closes when the peer
        answers, or after ``CLOSE_TIMEOUT_S``."""
        if not self._open or self._transport is None:
            return
        self._open = False
        self._close_sent = True
        self._transport.write(close_frame(code))
        self._close_timer = self._loop.call_later(CLOSE_TIMEOUT_S, self._transport.close)

    def abort(self) -> None:
        """Drop the connection without a close frame: Retell sees 1006 and reconnects."""
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ keepalive

    def check_alive(self, now: float, interval_s: float, timeout_s: float | None) -> None:
        if not self._open or self._transport is None:
            return
        if self._ping_sent_at is None:
            if now - self.last_seen >= interval_s:
                self._ping_sent_at = now
                self._transport.write(server_frame(PING, struct.pack("!d", now)))
        elif timeout_s is not None and now - self._ping_sent_at >= timeout_s:
            _log.info("no data or pong from the peer in time; closing", client=self._client)
            self._fail(INTERNAL_ERROR, "keepalive ping timeout")

    # ------------------------------------------------------------------ internals

    def _control(self, opcode: int, payload: bytes) -> None:
        transport = self._transport
        if transport is None or self._close_code is not None:
            return
        if opcode == PING:
            if self._open:
                transport.write(server_frame(PONG, payload))
        elif opcode == CLOSE:
            code, _ = parse_close(payload)
            self._close_code = code
            if not self._close_sent:  # echo it (section 5.5.1); the server closes first
                self._close_sent = True
                transport.write(close_frame(code))
            self._open = False
            self._reader = None
            transport.close()
        # a PONG only proves the peer is alive, which any data does (``last_seen``)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (section 7.1.7): a close frame if none was sent, then the
        TCP connection. The call is not over: Retell reconnects a socket lost this way."""
        _log_throttled(
            f"protocol_error:{code}",
            "call socket protocol error; closing",
            code=code,
            reason=reason,
            client=self._client,
        )
        self._reader = None
        self._open = False
        if self._transport is not None:
            if not self._close_sent:
                self._close_sent = True
                self._transport.write(close_frame(code, reason))
            self._transport.close()

    def _wake_writers(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _spawn(self, coro: Any) -> None:
        # In uvicorn's task set, so its shutdown waits for them before the lifespan ends
        # (the store and the outbox must outlive every session).
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _client_host(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The caller's address; behind a trusted proxy, the one it forwarded (as uvicorn's
        ``ProxyHeadersMiddleware`` does for HTTP)."""
        host = self._client
        trusted = self._trusted
        if trusted is not None and host in trusted:
            forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
            if forwarded:
                forwarded_host, _ = trusted.get_trusted_client_address(", ".join(forwarded))
                if forwarded_host:
                    host = forwarded_host
        return host

    def _log_refusal(self, reason: str, client: str | None, **extra: str) -> None:
        _log_throttled(
            f"refused:{reason}", "refused call socket", reason=reason, client=client, **extra
        )

    def _respond(self, response: bytes) -> None:
        if self._transport is not None:
            self._transport.write(response)
            self._transport.close()

    def upgrade(
        self, method: str, path: str, query: bytes, head: Iterable[tuple[bytes, bytes]]
    ) -> None:
        """The request head as uvicorn's HTTP protocol parsed it (path unquoted, header
        names lower-cased; ``http_protocol.guarded_http``): answer the handshake (RFC 6455
        section 4.2) and start the call, or refuse it."""
        node = self.node
        headers = list(head)
        client = self._client_host(headers)
        problem = handshake_problem(method, headers)
        if problem is not None:
            status, reason = problem
            self._log_refusal("bad_handshake", client, detail=reason)
            self._respond(refusal(status, reason))
            return
        call_id, refused = route(path, query, client, node.secret, node.networks)
        if refused is None:
            refused = node.admit()
        if refused is not None or call_id is None:
            reason = refused or "bad_path"
            node.metrics.rejected_total.labels(reason).inc()
            self._log_refusal(reason, client)
            self._respond(refusal(STATUS[reason], reason))
            return
        self._admitted = True
        assert self._transport is not None
        self._transport.write(switching_protocols(headers))
        self._reader = FrameReader(self._max_size, self._leaves_unread, UPDATE_HEAD_SIZE)
        self._open = True
        node.metrics.calls_total.inc()
        session = CallSession(
            call_id,
            self,
            node.agent,
            node.store,
            node.options,
            node_id=node.node_id,
            observer=node.metrics,
            events=node.call_events,
        )
        self._session = session
        node.attach(session)
        self.keepalive.add(self)
        # Frames wait in the kernel until the call is claimed and greeted: the first
        # frames out must be config and the begin message, whatever the caller sends.
        self._transport.pause_reading()
        self._spawn(self._start(session))

    async def _start(self, session: CallSession) -> None:
        try:
            await session.start()
        except Exception:
            self._failed(session)
            return
        self._started = True
        backlog, self._backlog = self._backlog, []
        for is_text, data in backlog:
            self._deliver(session, is_text, data)
        if not self._lost and self._transport is not None:
            self._transport.resume_reading()

    async def _end(self, session: CallSession, clean: bool) -> None:
        node = self.node
        try:
            await session.close()
            node.detach(session)
            if clean:
                await node.call_ended(session)
            else:
                node.remember(session)
        except Exception:
            _log.exception("closing a call socket failed", call_id=session.call_id)
        finally:
            node.release()

    def _leaves_unread(self, head: bytes, size: int) -> bool:
        session = self._session
        return session is not None and session.leaves_unread(head, size)

    def _message(self, is_text: bool, data: bytes) -> None:
        session = self._session
        if session is None or not self._open:
            return  # past the closing handshake: nothing more reaches the call
        if not self._started:
            self._backlog.append((is_text, data))
            return
        self._deliver(session, is_text, data)

    def _deliver(self, session: CallSession, is_text: bool, data: bytes) -> None:
        if session.closed:
            return
        try:
            if is_text:
                session.receive_text(data, judged=True)  # the reader asked _leaves_unread
            else:
                session.receive_binary(len(data))
        except Exception:
            self._failed(session)

    def _failed(self, session: CallSession) -> None:
        # Closing with 1000 would tell Retell the call is over; dropping the socket lets
        # it reconnect instead.
        _log.exception("call socket failed; dropping it", call_id=session.call_id)
        session.abort()


def call_socket_protocol(node: Node, keepalive: Keepalive) -> type[CallSocket]:
    """The ``ws`` protocol class for uvicorn, bound to ``node``."""
    return type("NodeCallSocket", (CallSocket,), {"node": node, "keepalive": keepalive})
