"""A redis-py connection's socket, driven directly once redis-py has connected and greeted it.

redis-py's reply layer is built for request and reply: per reply a read deadline (a timer),
the retry wrapper, a stream reader, and for pub/sub a poll with a timeout. Two parts of a
node get far more replies than they send commands, on a path that is hot: the call store's
script batch (a save per turn) and the command listener (every claim in the cluster is
announced to every node). Parsing one pub/sub message through redis-py's ``PubSub`` cost
about 116,000 instructions; read here, about 6,400 (callgrind, 1,000 messages).

So both let redis-py open the connection (AUTH, SELECT, TLS, the protocol version), then
take its transport over with ``RawLink``: an ``asyncio.Protocol`` and a hiredis reader that
hand each reply to a callback in the read callback itself. Replies are parsed as redis-py's
own parser would (error replies as redis-py's exceptions, strings decoded if the client
decodes them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse

#: what the reader returns while a reply is incomplete
_NOT_YET = object()

OnReply = Callable[["RawLink", Any], None]
OnLost = Callable[["RawLink", Exception], None]


class RawLink(asyncio.Protocol):
    """Bytes in, replies out: ``on_reply(link, reply)`` for each reply, in order, and
    ``on_lost(link, error)`` once the socket closes or sends something that is not RESP
    (the link is then closed: nothing more on it can be trusted)."""

    __slots__ = ("_on_lost", "_on_reply", "_reader", "_stream", "transport")

    def __init__(
        self, reader: Any, transport: asyncio.Transport, on_reply: OnReply, on_lost: OnLost
    ) -> None:
        self._reader = reader
        self._on_reply = on_reply
        self._on_lost = on_lost
        self.transport = transport
        #: redis-py's stream protocol, told when the socket closes (its ``wait_closed``)
        self._stream = transport.get_protocol()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            reply = reader.gets()
            while reply is not _NOT_YET:
                self._on_reply(self, reply)
                reply = reader.gets()
        except InvalidResponse as exc:
            self._on_lost(self, RedisConnectionError(f"bad reply from Redis: {exc}"))
            self.transport.abort()

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream.connection_lost(exc)
        self._on_lost(self, RedisConnectionError("Connection closed by server."))


async def take_over(conn: AbstractConnection, on_reply: OnReply, on_lost: OnLost) -> RawLink:
    """Connect ``conn`` (redis-py greets the server) and drive its socket with a
    ``RawLink`` from then on. Raises what connecting raised."""
    await conn.connect()  # type: ignore[no-untyped-call]
    writer = conn._writer
    if writer is None:  # pragma: no cover - connect() returned, so it is set
        raise RedisConnectionError("the Redis socket did not open")
    transport = cast(asyncio.Transport, writer.transport)  # uvloop's is not a subclass
    options: dict[str, Any] = {
        "protocolError": InvalidResponse,
        "replyError": BaseParser.parse_error,
        "notEnoughData": _NOT_YET,
    }
    if conn.encoder.decode_responses:
        options["encoding"] = conn.encoder.encoding
        options["errors"] = conn.encoder.encoding_errors
    link = RawLink(hiredis.Reader(**options), transport, on_reply, on_lost)
    transport.set_protocol(link)
    return link


def pack(*args: str | bytes | int) -> bytes:
    """One command in RESP, for arguments that are str, bytes or int (all a caller of a
    ``RawLink`` sends), at a fraction of the cost of the client's general packer."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)
