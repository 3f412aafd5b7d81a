"""Our HTTP protocol for uvicorn: a deadline for the request head, and the hand-off of a
WebSocket upgrade to the call socket with the head already parsed.

Slow or silent clients cannot hold sockets forever.

uvicorn bounds only the idle time between keep-alive requests. A client that sends half a
request line or half its headers (slowloris) is otherwise kept until it goes away, and
enough of them exhaust the file descriptors that calls need. ``guarded_http`` is uvicorn's
httptools protocol with one timer: from the connection's start (and from the first byte
of every later request on it) to the end of the headers. When it fires, the client gets
``408`` and the connection is closed. WebSocket upgrades are unaffected once their
headers are in; the body has its own deadline where it is read (the webhook).
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from switchboard.log import LogThrottle, get_logger
from switchboard.server.call_socket import CallSocket

_log = get_logger("switchboard.http")
_throttle = LogThrottle()
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)


class _GuardedHttp(HttpToolsProtocol):
    header_timeout_s = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        if self._head_timer is None:
            self._arm()  # a later request on a kept-alive connection
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        """Hand the call socket the request as parsed here; uvicorn would serialise it again
        for the WebSocket protocol to parse a second time (a tenth of a node's CPU at
        thousands of calls, with handshakes every few seconds)."""
        protocol_class = self.ws_protocol_class
        if not (isinstance(protocol_class, type) and issubclass(protocol_class, CallSocket)):
            super().handle_websocket_upgrade()  # pragma: no cover - always ours in serve
            return
        try:
            url = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            self.send_400_response("Invalid URL in the upgrade request.")
            return
        path = url.path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        self.connections.discard(self)
        protocol = protocol_class(self.config, self.server_state, self.app_state)
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        protocol.upgrade(self.scope["method"], path, url.query or b"", self.headers)
        # This protocol is done with the connection. Its parser calls back into it (a
        # reference cycle), so without this it would wait for a garbage collection: at
        # thousands of calls, those middle collections of dead HTTP protocols were the
        # node's longest pauses (~100 ms each). Without the cycle, refcounting frees it now.
        self.parser = None  # type: ignore[assignment]

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        suppressed = _throttle.allow("header_timeout")
        if suppressed is not None:
            _log.info(
                "request head not received in time; closing",
                client=self.client[0] if self.client else None,
                timeout_s=self.header_timeout_s,
                **({"suppressed": suppressed} if suppressed else {}),
            )
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def guarded_http(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's ``http`` protocol class with a ``header_timeout_s`` deadline."""
    return type("GuardedHttp", (_GuardedHttp,), {"header_timeout_s": header_timeout_s})
