"""The words of a call's connection: how a call ends (Retell's disconnection reasons), how a
socket ended as far as reconnecting is concerned, and what one socket of the call holds
(a reconnect makes a new one).
"""

from __future__ import annotations

import asyncio

from switchboard.sim.client_socket import ClientSocket
from switchboard.sim.results import ReconnectEvent

# How a socket ended, as far as reconnecting is concerned.
ABNORMAL = "abnormal"


KEEPALIVE = "keepalive"


LOCAL = "local"


USER_HANGUP = "user_hangup"


AGENT_HANGUP = "agent_hangup"


CALL_TRANSFER = "call_transfer"


ERR_OPEN = "error_llm_websocket_open"


ERR_LOST = "error_llm_websocket_lost_connection"


ERR_RUNTIME = "error_llm_websocket_runtime"


ERR_CORRUPT = "error_llm_websocket_corrupt_payload"


ERR_UNKNOWN = "error_unknown"


class CallOver(Exception):
    """The call ended while the caller was waiting for something."""


class LineSocket:
    """One WebSocket of the call (a reconnect makes a new one)."""

    __slots__ = (
        "begin_first_at",
        "begin_parts",
        "begun",
        "interrupt_id",
        "interrupt_parts",
        "keepalive",
        "keepalive_on",
        "last_ping_at",
        "last_ping_ts",
        "last_pong_at",
        "local_reason",
        "next_ping_at",
        "opened_at",
        "pongs",
        "reconnect",
        "ws",
    )

    def __init__(
        self, ws: ClientSocket, opened_at: float, reconnect: ReconnectEvent | None
    ) -> None:
        self.ws = ws
        self.opened_at = opened_at
        #: set on a socket that replaces a lost one: what happened to the call since
        self.reconnect = reconnect
        self.begun = False
        self.begin_first_at: float | None = None
        self.begin_parts: list[str] = []
        #: the keepalive's next tick, while it runs
        self.keepalive: asyncio.Handle | None = None
        self.keepalive_on = False
        self.next_ping_at = 0.0
        self.last_ping_ts = 0
        self.last_ping_at = 0.0
        self.last_pong_at = 0.0
        self.pongs = 0
        self.local_reason: str | None = None
        self.interrupt_id: int | None = None
        self.interrupt_parts: list[str] = []
