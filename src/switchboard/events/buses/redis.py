"""Redis Streams bus: one stream, consumer groups, ``XAUTOCLAIM`` for dead members.

A send packs its messages, in order, into entries of up to ``entry_max`` messages
(field ``batch``: the msgpack list of bus messages): one ``XADD`` per entry rather than
per event, which is what keeps the node's cost per event to a few microseconds. Entries
written by other tools, one message each with fields ``key``, ``value`` and
``h:<name>`` per header, are read too. One stream keeps a total order, so one call's
events stay in order. Acks, pending entries and ``XAUTOCLAIM`` work per entry. A
member that restarts under the same name first re-reads its own pending entries (those
it fetched and never acked); entries pending on a member that stays silent for
``claim_idle_ms`` are taken over by whichever member of the group fetches next.

Trimming never drops what a group has not acked. Once the stream holds more than
``maxlen`` entries (the ``bus_max_len`` setting), the sender trims by ``MINID`` below the
slowest group's floor: its oldest pending entry, or just past its last-delivered one.
A lagging group therefore makes the stream grow past the cap (``held_back`` counts by
how much; the services export their group lag and the blueprint alerts on it) instead of
losing its events. Should an entry a group still needed vanish anyway (``XDEL``, a
group created after a trim), the consumer counts it in ``Batch.gaps`` and logs an error.

The client runs with no retries and a short per-command timeout: a dead link must turn
into ``BusUnavailable`` quickly (the outbox then spills), not into many seconds of
redis-py's default retrying.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from switchboard.connections import redis_client
from switchboard.events.bus import Batch, BusUnavailable, decode_batch
from switchboard.events.codec import BusMessage
from switchboard.log import get_logger

_log = get_logger("switchboard.events.redis")

_HEADER = b"h:"
_BATCH = b"batch"
_batch_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[BusMessage])


#: Longest blocking read; a consumer's socket timeout is this plus its command timeout.
MAX_BLOCK_S = 10.0


def _client(url: str, timeout_s: float, read_timeout_s: float | None = None) -> Redis:
    read_ms = None if read_timeout_s is None else read_timeout_s * 1000
    return redis_client(url, timeout_ms=timeout_s * 1000, read_timeout_ms=read_ms, retries=0)


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


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _field(info: dict[Any, Any], name: str) -> Any:
    """A field of an ``XINFO``/``XPENDING`` reply, whichever way the client typed its keys."""
    return info.get(name, info.get(name.encode()))


def trim_floor(groups: Sequence[tuple[bytes | str, bytes | str | None]]) -> str | None:
    """The ``MINID`` that keeps every entry some group has not acked.

    ``groups``: per group, its last-delivered id and its oldest pending id (``None`` when
    nothing is pending). Below a group's oldest pending entry everything is acked; with
    nothing pending, everything up to its last-delivered one is. ``None``: no group, no
    floor. Pure, so the rule is tested without a server.
    """
    floor: tuple[int, int] | None = None
    for last_delivered, oldest_pending in groups:
        if oldest_pending is not None:
            keep = _stream_id(oldest_pending)
        else:
            ms, seq = _stream_id(last_delivered)
            keep = (ms, seq + 1)
        floor = keep if floor is None else min(floor, keep)
    return None if floor is None else f"{floor[0]}-{floor[1]}"


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
        #: Entries over ``maxlen`` the last trim had to keep for a group that lags.
        self.held_back = 0
        self._sent_since_trim = 0
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
                    pipe.xadd(self.stream, fields)  # type: ignore[arg-type]
                    self._sent_since_trim += 1
                await pipe.execute()
        except (RedisError, OSError) as err:
            raise BusUnavailable(f"redis: {err}") from err
        if self._sent_since_trim >= max(1, self._maxlen // 10):
            self._sent_since_trim = 0
            try:
                await self.trim()
            except (RedisError, OSError) as err:  # the events are sent; trim next time
                _log.warning("trimming the stream failed", error=str(err))

    async def trim(self) -> int:
        """Over ``maxlen`` entries, remove those every group has acked; return how many."""
        length = await self.client.xlen(self.stream)
        if length <= self._maxlen:
            self.held_back = 0
            return 0
        floor = await self._floor()
        if floor is None:  # no consumer group yet: plain cap
            removed = await self.client.xtrim(self.stream, maxlen=self._maxlen, approximate=False)
        else:
            removed = await self.client.xtrim(self.stream, minid=floor, approximate=False)
        self.held_back = max(0, length - int(removed) - self._maxlen)
        if self.held_back:
            _log.warning(
                "stream over its cap: a consumer group lags; keeping its unread entries",
                stream=self.stream,
                entries=length - int(removed),
                max_len=self._maxlen,
            )
        return int(removed)

    async def _floor(self) -> str | None:
        groups: Any = await self.client.xinfo_groups(self.stream)
        marks = []
        for group in groups:
            oldest = None
            if _field(group, "pending"):
                summary: Any = await self.client.xpending(self.stream, _field(group, "name"))
                oldest = _field(summary, "min")
            marks.append((_field(group, "last-delivered-id"), oldest))
        return trim_floor(marks)

    def consumer(self, group: str, name: str) -> RedisStreamConsumer:
        # A blocking read holds its connection, so each consumer has its own client.
        client = _client(self._url, self._timeout_s, self._timeout_s + MAX_BLOCK_S)
        return RedisStreamConsumer(client, self.stream, group, name, self._claim_idle_ms)

    async def close(self) -> None:
        await self.client.aclose()


class RedisStreamConsumer:
    def __init__(
        self, client: Redis, stream: str, group: str, name: str, claim_idle_ms: int
    ) -> None:
        self._client = client
        self._stream = stream
        self._group = group
        self._name = name
        self._claim_idle_ms = claim_idle_ms
        self._ready = False
        self._own_pending: bytes | None = b"0"  # re-read our own pending entries first
        self._next_claim = 0.0
        self._claim_gaps = 0

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
        gaps = self._claim_gaps + sum(1 for _, fields in entries if not fields)
        self._claim_gaps = 0
        if gaps:
            _log.error(
                "entries this group had not acked are gone from the stream",
                stream=self._stream,
                group=self._group,
                lost_entries=gaps,
            )
        pairs: list[tuple[str, BusMessage]] = []
        for entry_id, fields in entries:
            if fields:
                entry = entry_id.decode()
                pairs.extend((f"{entry}/{i}", m) for i, m in enumerate(_messages(fields)))
        return decode_batch(pairs, source=self._stream, token=ids, gaps=gaps)

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
            # Redis 7 drops deleted entries from the pending list and names them here.
            self._claim_gaps += len(claimed[2]) if len(claimed) > 2 else 0
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

    async def lag(self) -> int | None:
        try:
            groups: Any = await self._client.xinfo_groups(self._stream)
        except (RedisError, OSError):
            return None
        for group in groups:
            name = _field(group, "name")
            if (name.decode() if isinstance(name, bytes) else name) == self._group:
                lag = _field(group, "lag")
                return None if lag is None else int(lag)
        return None

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
