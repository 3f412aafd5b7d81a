"""The ``/llm-websocket/{call_id}`` endpoint as a raw ASGI handler.

Raw ASGI rather than a framework wrapper: it is the per-frame path, and it needs the
connection itself to drop a socket without a close frame during a drain.

Accepted paths: ``/llm-websocket/{call_id}`` and, with a URL secret,
``/llm-websocket/{secret}/{call_id}`` or ``/llm-websocket/{call_id}?token={secret}``.
"""

from __future__ import annotations

import re
from typing import Any

from switchboard.calls.session import CallSession
from switchboard.log import get_logger
from switchboard.server.guard import ip_allowed, query_secret, secret_matches
from switchboard.server.node import Node

PREFIX = "/llm-websocket/"
_CALL_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_log = get_logger("switchboard.socket")

Scope = dict[str, Any]
Message = dict[str, Any]


class AsgiTransport:
    """Adapts the ASGI ``send`` callable to the session's ``Transport``."""

    __slots__ = ("_send",)

    def __init__(self, send: Any) -> None:
        self._send = send

    async def send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int) -> None:
        await self._send({"type": "websocket.close", "code": code})

    def abort(self) -> None:
        # uvicorn passes its protocol's bound ``asgi_send``; its transport can be aborted,
        # which Retell sees as 1006 and answers with a reconnect.
        protocol = getattr(self._send, "__self__", None)
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.abort()
        else:  # pragma: no cover - only for ASGI servers that hide the transport
            _log.warning("cannot drop the socket without a close frame on this server")


def _route(scope: Scope, node: Node) -> tuple[str | None, str | None]:
    """-> (call_id, refusal reason)."""
    if not scope["path"].startswith(PREFIX):
        return None, "bad_path"
    rest = scope["path"][len(PREFIX) :]
    parts = rest.split("/")
    secret = node.secret
    if len(parts) == 2 and secret is not None:
        presented: str | None = parts[0]
        call_id = parts[1]
    elif len(parts) == 1:
        call_id = parts[0]
        presented = query_secret(scope.get("query_string", b"")) if secret else None
    else:
        return None, "bad_path"
    if not _CALL_ID.match(call_id):
        return None, "bad_call_id"
    if secret is not None and not secret_matches(presented, secret):
        return None, "unauthorized"
    client = scope.get("client")
    if not ip_allowed(client[0] if client else None, node.networks):
        return None, "forbidden_ip"
    return call_id, None


_STATUS = {
    "bad_path": 404,
    "bad_call_id": 404,
    "unauthorized": 403,
    "forbidden_ip": 403,
    "draining": 503,
    "at_capacity": 503,
}


async def _refuse(scope: Scope, send: Any, reason: str) -> None:
    status = _STATUS[reason]
    if "websocket.http.response" in scope.get("extensions", {}):
        body = reason.encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # pragma: no cover - servers without the denial extension answer 403
        await send({"type": "websocket.close", "code": 1008})


async def serve_call(scope: Scope, receive: Any, send: Any, node: Node) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    call_id, refusal = _route(scope, node)
    if refusal is None:
        refusal = node.admit()
    if refusal is not None or call_id is None:
        reason = refusal or "bad_path"
        node.metrics.rejected_total.labels(reason).inc()
        client = scope.get("client")
        _log.info("refused call socket", reason=reason, client=client[0] if client else None)
        await _refuse(scope, send, reason)
        return
    try:
        await send({"type": "websocket.accept"})
        node.metrics.calls_total.inc()
        session = CallSession(
            call_id,
            AsgiTransport(send),
            node.agent,
            node.store,
            node.options,
            node_id=node.node_id,
            observer=node.metrics,
            events=node.call_events,
        )
        node.attach(session)
        ended = False
        try:
            await session.start()
            while not session.closed:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    if text is not None:
                        await session.receive_text(text)
                    else:
                        session.receive_binary(len(message.get("bytes") or b""))
                elif kind == "websocket.disconnect":
                    ended = message.get("code") == 1000
                    break
        except Exception:
            # Returning would make the server close with 1000, which Retell treats as a
            # deliberate hangup. Dropping the socket lets Retell reconnect instead.
            _log.exception("call socket failed; dropping it", call_id=call_id)
            session.abort()
        finally:
            await session.close()
            node.detach(session)
            if ended:
                await node.call_ended(session)
    finally:
        node.release()
