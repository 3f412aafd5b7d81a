"""The WebSocket opening handshake of a call socket: which requests are refused, with
which status, and the 101 that accepts one (RFC 6455 section 4.2).

Pure: bytes and strings in, bytes out; ``call_socket.CallSocket.upgrade`` writes them.
Accepted paths: ``/llm-websocket/{call_id}`` and, with a URL secret,
``/llm-websocket/{secret}/{call_id}`` or ``/llm-websocket/{call_id}?token={secret}``.
Every other path gets the same 404.
"""

from __future__ import annotations

import base64
import binascii
import re
from http import HTTPStatus

from websockets.utils import accept_key

from switchboard.server.socket_access import (
    Network,
    ip_allowed,
    query_secret,
    secret_matches,
)

PREFIX = "/llm-websocket/"
_CALL_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")

STATUS = {
    "bad_path": HTTPStatus.NOT_FOUND,
    "bad_call_id": HTTPStatus.NOT_FOUND,
    "unauthorized": HTTPStatus.FORBIDDEN,
    "forbidden_ip": HTTPStatus.FORBIDDEN,
    "draining": HTTPStatus.SERVICE_UNAVAILABLE,
    "at_capacity": HTTPStatus.SERVICE_UNAVAILABLE,
}


def route(
    path: str,
    query_string: bytes,
    client_host: str | None,
    secret: str | None,
    networks: tuple[Network, ...],
) -> tuple[str | None, str | None]:
    """-> (call_id, refusal reason) for an upgrade request to ``path``."""
    if not path.startswith(PREFIX):
        return None, "bad_path"
    parts = path[len(PREFIX) :].split("/")
    if len(parts) == 2 and secret is not None:
        presented: str | None = parts[0]
        call_id = parts[1]
    elif len(parts) == 1:
        call_id = parts[0]
        presented = query_secret(query_string) if secret else None
    else:
        return None, "bad_path"
    if not _CALL_ID.match(call_id):
        return None, "bad_call_id"
    if secret is not None and not secret_matches(presented, secret):
        return None, "unauthorized"
    if not ip_allowed(client_host, networks):
        return None, "forbidden_ip"
    return call_id, None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of a header that must appear once; ``None`` if missing or repeated."""
    values = [value for key, value in headers if key == name]
    return values[0] if len(values) == 1 else None


def handshake_problem(
    method: str, headers: list[tuple[bytes, bytes]]
) -> tuple[HTTPStatus, str] | None:
    """What makes this upgrade request not a WebSocket opening handshake (RFC 6455
    section 4.2.1), or ``None``. uvicorn has already seen ``Upgrade: websocket``."""
    if method != "GET":
        return HTTPStatus.BAD_REQUEST, "a WebSocket handshake is a GET"
    connection = _header(headers, b"connection")
    if connection is None or b"upgrade" not in connection.lower():
        return HTTPStatus.BAD_REQUEST, "missing Connection: Upgrade"
    upgrade = _header(headers, b"upgrade")
    if upgrade is None or upgrade.strip().lower() != b"websocket":
        return HTTPStatus.BAD_REQUEST, "missing Upgrade: websocket"
    if _header(headers, b"sec-websocket-version") != b"13":
        return HTTPStatus.UPGRADE_REQUIRED, "Sec-WebSocket-Version must be 13"
    key = _header(headers, b"sec-websocket-key")
    if key is None or not _valid_key(key):
        return HTTPStatus.BAD_REQUEST, "invalid Sec-WebSocket-Key"
    return None


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except binascii.Error:
        return False


def switching_protocols(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The 101 response to a valid handshake (no subprotocol, no extension)."""
    key = _header(headers, b"sec-websocket-key")
    assert key is not None
    accept = accept_key(key.strip().decode("ascii"))
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept.encode("ascii") + b"\r\n\r\n"
    )


def refusal(status: HTTPStatus, reason: str) -> bytes:
    """A plain-text HTTP answer that ends the connection."""
    body = reason.encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
    )
    if status is HTTPStatus.UPGRADE_REQUIRED:
        head += "sec-websocket-version: 13\r\n"
    return (head + "connection: close\r\n\r\n").encode("latin-1") + body
