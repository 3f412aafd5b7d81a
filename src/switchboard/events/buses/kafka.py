"""Kafka bus (``aiokafka``): key = ``call_id``, ``acks=all``, offsets committed on ``ack``.

One topic (``partitions`` partitions, created on first use); the key keeps one call's
events on one partition, so in order. The producer is not idempotent (tansu, our test
broker, does not support it, and a retried batch can be written twice anyway): consumers
dedupe by event id. A consumer group member that dies is replaced once the broker's
session timeout expires (about 1.7x ``session_timeout_ms`` on tansu); its uncommitted
batch is then delivered to the survivor. Nothing here reads ``end_offsets``, which tansu
reports wrongly after batched writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)

from switchboard.events.bus import Batch, BusUnavailable, MessagesRejected, decode_batch
from switchboard.events.codec import BusMessage
from switchboard.log import get_logger

_log = get_logger("switchboard.events.kafka")

_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
#: errors about one message that no retry can fix; every other error is the link's
_REFUSED = (*_TOO_LARGE, InvalidMessageError, CorruptRecordException, InvalidTimestampError)


def _refusal(err: BaseException) -> str:
    return "too_large" if isinstance(err, _TOO_LARGE) else "invalid"


class KafkaBus:
    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str = "switchboard.events",
        partitions: int = 8,
        timeout_s: float = 5.0,
        session_timeout_ms: int = 10_000,
        linger_ms: int = 2,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._partitions = partitions
        self._timeout_s = timeout_s
        self._session_timeout_ms = session_timeout_ms
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._topic_ready = False

    async def ensure_topic(self) -> None:
        if self._topic_ready:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=int(self._timeout_s * 1000)
        )
        try:
            await admin.start()
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(self.topic, self._partitions, 1)])
        finally:
            await admin.close()
        self._topic_ready = True

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            await self.ensure_topic()
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=False,
                linger_ms=self._linger_ms,
                request_timeout_ms=int(self._timeout_s * 1000),
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def send(self, messages: Sequence[BusMessage]) -> None:
        """Send a batch. A message the client or broker refuses for good (too large,
        invalid) is reported in ``MessagesRejected`` after the rest are durable, and
        keeps the producer: only link errors (``BusUnavailable``) rebuild it."""
        if not messages:
            return
        rejected: dict[int, str] = {}
        try:
            async with asyncio.timeout(self._timeout_s):
                producer = await self._started_producer()
                pending: list[tuple[int, asyncio.Future[object]]] = []
                for index, m in enumerate(messages):
                    try:
                        future = await producer.send(
                            self.topic, m.value, key=m.key, headers=list(m.headers)
                        )
                    except _REFUSED as err:
                        rejected[index] = _refusal(err)
                        continue
                    pending.append((index, future))
                results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
                for (index, _), result in zip(pending, results, strict=True):
                    if isinstance(result, _REFUSED):
                        rejected[index] = _refusal(result)
                    elif isinstance(result, BaseException):
                        raise result
        except (KafkaError, OSError, TimeoutError) as err:
            await self._drop_producer()
            raise BusUnavailable(f"kafka: {type(err).__name__}: {err}") from err
        if rejected:
            raise MessagesRejected(rejected)

    async def _drop_producer(self) -> None:
        """A producer that failed may hold half-sent batches; start afresh next time."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self._timeout_s)
            except Exception:
                _log.debug("producer stop failed", exc_info=True)

    def consumer(self, group: str, name: str) -> KafkaConsumer:
        return KafkaConsumer(self, group, name)

    async def close(self) -> None:
        await self._drop_producer()


class KafkaConsumer:
    def __init__(self, bus: KafkaBus, group: str, name: str) -> None:
        self._bus = bus
        self._group = group
        self._name = name
        self._consumer: AIOKafkaConsumer | None = None

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            bus = self._bus
            await bus.ensure_topic()
            consumer = AIOKafkaConsumer(
                bus.topic,
                bootstrap_servers=bus.bootstrap,
                group_id=self._group,
                client_id=self._name,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=bus._session_timeout_ms,
                heartbeat_interval_ms=max(100, bus._session_timeout_ms // 4),
                request_timeout_ms=max(bus._session_timeout_ms + 5_000, 15_000),
            )
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer

    async def fetch(self, max_events: int = 500, timeout_s: float = 1.0) -> Batch:
        try:
            consumer = await self._started()
            records = await consumer.getmany(
                timeout_ms=int(timeout_s * 1000), max_records=max_events
            )
        except (KafkaError, OSError) as err:
            raise BusUnavailable(f"kafka: {type(err).__name__}: {err}") from err
        offsets: dict[TopicPartition, int] = {}
        messages = []
        for partition, batch in records.items():
            for record in batch:
                message = BusMessage(record.key or b"", tuple(record.headers), record.value or b"")
                messages.append((f"{partition.partition}/{record.offset}", message))
            if batch:
                offsets[partition] = batch[-1].offset + 1
        return decode_batch(messages, source=self._bus.topic, token=offsets)

    async def ack(self, batch: Batch) -> None:
        if not batch.token or self._consumer is None:
            return
        try:
            await self._consumer.commit(batch.token)
        except (KafkaError, OSError) as err:
            raise BusUnavailable(f"kafka: {type(err).__name__}: {err}") from err

    async def lag(self) -> int | None:
        """High-water mark minus position over this member's partitions, as of its last
        fetch (``end_offsets``, which tansu gets wrong, is not used)."""
        consumer = self._consumer
        if consumer is None:
            return None
        total = 0
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            try:
                position = await consumer.position(partition)
            except (KafkaError, OSError):
                return None
            total += max(0, highwater - position)
        return total

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
