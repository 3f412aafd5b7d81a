"""Redis Streams bus: one stream, consumer groups, ``XAUTOCLAIM`` for dead members.

A send packs its messages, in order, into entries of up to ``entry_max`` messages
(field ``batch``: the msgpack list of bus messages): one ``XADD`` per entry rather than
per event, which is what keeps the node's cost per event to a few microseconds. Entries
written by other tools, one message each with fields ``key``, ``value`` and
``h:<name>`` per header, are read too. One stream keeps a total order, so one call's
events stay in order. Acks, pending entries and ``XAUTOCLAIM`` work per entry. A
member that restarts under the same name first re-reads its own pending entries (those
it fetched and never acked); entries pending on a member that stays silent for
``claim_idle_ms`` are taken over by whichever member of the group fetches next. The
stream is capped (approximately) at ``maxlen`` entries.

The client runs with no retries and a short per-command timeout: a dead link must turn
into ``BusUnavailable`` quickly (the outbox then spills), not into many seconds of
redis-py's default retrying.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from switchboard.events.bus import Batch, BusUnavailable, decode_messages
from switchboard.events.codec import BusMessage

_HEADER = b"h:"
_BATCH = b"batch"
_batch_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[BusMessage])


#: Longest blocking read; a consumer's socket timeout is this plus its command timeout.
MAX_BLOCK_S = 10.0


def _client(url: str, timeout_s: float, read_timeout_s: float | None = None) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        socket_timeout=read_timeout_s or timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )


def _messages(fields: dict[bytes, bytes]) -> list[BusMessage]:
    batch = fields.get(_BATCH)
    if batch is None:
        return [_message(fields)]
    try:
        return _batch_decoder.decode(batch)
    except msgspec.DecodeError:
        return [BusMessage(b"", (), batch)]  # counted as foreign, then skipped


def _message(fields: dict[bytes, bytes]) -> BusMessage:
    headers = tuple(
        (name[2:].decode(errors="replace"), value)
        for name, value in fields.items()
        if name.startswith(_HEADER)
    )
    return BusMessage(fields.get(b"key", b""), headers, fields.get(b"value", b""))


def _entries(reply: Any) -> list[tuple[bytes, Any]]:
    """The entries of a one-stream ``XREADGROUP`` reply (RESP2: ``[[stream, entries]]``)."""
    return list(reply[0][1]) if reply else []


class RedisStreamBus:
    def __init__(
        self,
        url: str,
        *,
        namespace: str = "switchboard:",
        stream: str = "events",
        maxlen: int = 100_000,
        entry_max: int = 100,
        timeout_s: float = 1.0,
        claim_idle_ms: int = 30_000,
    ) -> None:
        self.stream = f"{namespace}{stream}"
        self._url = url
        self._maxlen = maxlen
        self._entry_max = entry_max
        self._timeout_s = timeout_s
        self._claim_idle_ms = claim_idle_ms
        self.client = _client(url, timeout_s)

    async def send(self, messages: Sequence[BusMessage]) -> None:
        if not messages:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for start in range(0, len(messages), self._entry_max):
                    chunk = list(messages[start : start + self._entry_max])
                    fields = {_BATCH: _batch_encoder.encode(chunk)}
                    pipe.xadd(self.stream, fields, maxlen=self._maxlen, approximate=True)  # type: ignore[arg-type]
                await pipe.execute()
        except (RedisError, OSError) as err:
            raise BusUnavailable(f"redis: {err}") from err

    def consumer(self, group: str, name: str) -> RedisStreamConsumer:
        # A blocking read holds its connection, so each consumer has its own client.
        client = _client(self._url, self._timeout_s, self._timeout_s + MAX_BLOCK_S)
        return RedisStreamConsumer(client, self.stream, group, name, self._claim_idle_ms)

    async def close(self) -> None:
        await self.client.aclose()


class RedisStreamConsumer:
    def __init__(
        self, client: aioredis.Redis, stream: str, group: str, name: str, claim_idle_ms: int
    ) -> None:
        self._client = client
        self._stream = stream
        self._group = group
        self._name = name
        self._claim_idle_ms = claim_idle_ms
        self._ready = False
        self._own_pending: bytes | None = b"0"  # re-read our own pending entries first
        self._next_claim = 0.0

    async def _ensure_group(self) -> None:
        try:
            await self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise
        self._ready = True

    async def fetch(self, max_events: int = 500, timeout_s: float = 1.0) -> Batch:
        try:
            if not self._ready:
                await self._ensure_group()
            entries = await self._read(max(1, max_events // 50), timeout_s)
        except ResponseError as err:
            if "NOGROUP" in str(err):  # the server lost the stream (a restart without data)
                self._ready = False
                self._own_pending = b"0"
            raise BusUnavailable(f"redis: {err}") from err
        except (RedisError, OSError) as err:
            raise BusUnavailable(f"redis: {err}") from err
        ids = [entry_id for entry_id, _ in entries]
        messages = [m for _, fields in entries if fields for m in _messages(fields)]
        events, skipped = decode_messages(messages)
        return Batch(events, skipped, ids)

    async def _read(self, count: int, timeout_s: float) -> list[tuple[bytes, Any]]:
        if self._own_pending is not None:
            reply: Any = await self._client.xreadgroup(
                self._group, self._name, {self._stream: self._own_pending}, count=count
            )
            entries = _entries(reply)
            if entries:
                self._own_pending = entries[-1][0]
                return list(entries)
            self._own_pending = None
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self._claim_idle_ms / 2000
            claimed: Any = await self._client.xautoclaim(
                self._stream, self._group, self._name, self._claim_idle_ms, "0-0", count=count
            )
            entries = [entry for entry in claimed[1] if entry[1] is not None]
            if entries:
                self._next_claim = now  # there may be more to take over
                return entries
        reply = await self._client.xreadgroup(
            self._group,
            self._name,
            {self._stream: ">"},
            count=count,
            block=max(1, int(min(timeout_s, MAX_BLOCK_S) * 1000)),
        )
        return _entries(reply)

    async def ack(self, batch: Batch) -> None:
        ids = batch.token
        if not ids:
            return
        try:
            await self._client.xack(self._stream, self._group, *ids)
        except (RedisError, OSError) as err:
            raise BusUnavailable(f"redis: {err}") from err

    async def close(self) -> None:
        await self._client.aclose()
