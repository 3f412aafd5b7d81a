"""What stands between the services' HTTP side and whoever can reach its port.

Two guards, both cheap and both on by default where they cost nothing:

- ``GuardedHttpProtocol``: uvicorn's httptools protocol with a deadline for a request's
  head (``HEADER_TIMEOUT_S`` from the connection or the request's first byte) and one for
  its body. uvicorn has neither: a client that trickles its headers holds a socket (and
  a file descriptor) for as long as it likes, so a few hundred of them exhaust the
  process. Past the deadline the connection is closed.
- ``require_token``: with ``SWITCHBOARD_SERVICE_TOKEN`` set, every route but ``/healthz``
  wants ``Authorization: Bearer <token>``. A browser opening the dashboard passes
  ``?token=...`` once; the answer sets an ``HttpOnly``, ``SameSite=Strict`` cookie that
  the dashboard's own requests then carry. Unset, the services answer anyone who can reach
  them (bind them to a private interface: ``docs/security.md``).
"""

from __future__ import annotations

import asyncio
import hmac
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TOKEN_ENV = "SWITCHBOARD_SERVICE_TOKEN"
COOKIE = "switchboard_token"
OPEN_PATHS = frozenset({"/healthz"})
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0


class GuardedHttpProtocol(HttpToolsProtocol):
    """Closes a connection whose request head or body does not arrive in time."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S
    _deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(header_timeout_s: float, body_timeout_s: float) -> type[GuardedHttpProtocol]:
    """A protocol class with these deadlines (uvicorn takes a class, not an instance)."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )


def service_token() -> str | None:
    return os.environ.get(TOKEN_ENV) or None


class require_token:
    """ASGI middleware: the bearer token (or the dashboard's cookie) on every route but
    ``OPEN_PATHS``; a ``?token=`` that matches sets the cookie."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        bearer = auth[7:] if auth[:7].lower() == "bearer " else None
        from_query = request.query_params.get("token")
        if self._ok(bearer) or self._ok(request.cookies.get(COOKIE)):
            await self.app(scope, receive, send)
            return
        if self._ok(from_query):

            async def with_cookie(message: Any) -> None:
                if message["type"] == "http.response.start":
                    cookie = f"{COOKIE}={self.token.decode()}; HttpOnly; SameSite=Strict; Path=/"
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"set-cookie", cookie.encode()),
                    ]
                await send(message)

            await self.app(scope, receive, with_cookie)
            return
        response: Response = JSONResponse(
            {"error": "unauthorized: send Authorization: Bearer <SWITCHBOARD_SERVICE_TOKEN>"},
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def guard(app: ASGIApp, token: str | None = None) -> ASGIApp:
    """``app`` behind the token, when one is set (argument or ``SWITCHBOARD_SERVICE_TOKEN``)."""
    token = token if token is not None else service_token()
    return require_token(app, token) if token else app
