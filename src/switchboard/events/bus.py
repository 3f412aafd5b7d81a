"""The ``EventBus``: what the outbox sends to and what services consume from.

Small on purpose, so each backend (``buses.memory``, ``buses.redis``, ``buses.kafka``) is a
thin shell over its client; ``buses.open_bus`` picks one by URL. Delivery is at least once:
a batch a consumer fetched and did not ``ack`` is delivered again (to it after a restart, or
to another member of its group once it is gone). Consumers therefore dedupe by event id, and
``ack`` only after their own write is durable. Messages that do not decode (foreign, unknown
version, malformed, oversized) come back whole in ``Batch.rejected``, with where they were
and why, counted in ``Batch.skipped``: the consumer parks them as dead letters and acks them
with the batch, so one bad message never stalls a partition. Each event keeps its raw
message and position too (``Batch.raw``, ``Batch.where``), so an event the consumer's own
store refuses can be parked the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from switchboard.events.codec import BusMessage, EventDecodeError, decode
from switchboard.events.types import Event
from switchboard.log import get_logger

_log = get_logger("switchboard.events.bus")


class BusUnavailable(Exception):
    """The bus did not take the messages (down, timed out, refused). Nothing was lost:
    the sender keeps them and tries again."""


class MessagesRejected(Exception):
    """The bus took the batch except some messages it will never take (too large,
    invalid): ``rejected`` maps their index in the batch to a reason. Retrying them is
    pointless; the sender parks them and goes on."""

    def __init__(self, rejected: dict[int, str]) -> None:
        super().__init__(", ".join(f"#{i}: {why}" for i, why in sorted(rejected.items())))
        self.rejected = rejected


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that did not decode, kept whole so it can be parked and replayed."""

    message: BusMessage
    where: str  # the backend's position: "partition/offset", "entry-id/index"
    reason: str
    detail: str


@dataclass(slots=True)
class Batch:
    """What one ``fetch`` returned. ``token`` is the backend's ack handle; ``raw`` and
    ``where`` run parallel to ``events`` (empty for a batch built by hand); ``gaps``
    counts entries the group had not acked and the bus no longer holds (trimmed)."""

    events: list[Event]
    skipped: Counter[str] = field(default_factory=Counter)
    token: Any = None
    rejected: list[Rejected] = field(default_factory=list)
    raw: list[BusMessage] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    source: str = ""
    gaps: int = 0

    def __len__(self) -> int:
        return len(self.events)

    @property
    def empty(self) -> bool:
        return not self.events and not self.rejected and not self.gaps


class EventConsumer(Protocol):
    async def fetch(self, max_events: int = 500, timeout_s: float = 1.0) -> Batch:
        """Wait up to ``timeout_s`` for events; an empty batch when none came."""
        ...

    async def ack(self, batch: Batch) -> None:
        """The batch is processed for good: do not deliver it to this group again."""
        ...

    async def lag(self) -> int | None:
        """Entries (Redis) or messages (Kafka, memory) on the bus this group has not yet
        read; ``None`` when the backend cannot tell right now."""
        ...

    async def close(self) -> None: ...


class EventBus(Protocol):
    async def send(self, messages: Sequence[BusMessage]) -> None:
        """Return once every message is durable on the bus; else ``BusUnavailable``
        (retry later), or ``MessagesRejected`` naming the ones it will never take (the
        others are durable). Messages of one key keep their order."""
        ...

    def consumer(self, group: str, name: str) -> EventConsumer:
        """A member ``name`` of consumer group ``group``: each group sees every event;
        within a group each event goes to one member."""
        ...

    async def close(self) -> None: ...


def decode_batch(
    messages: Iterable[tuple[str, BusMessage]], *, source: str, token: Any, gaps: int = 0
) -> Batch:
    """Decode ``(position, message)`` pairs; what does not decode is logged and rejected."""
    batch = Batch([], token=token, source=source, gaps=gaps)
    for where, message in messages:
        try:
            batch.events.append(decode(message))
        except EventDecodeError as err:
            batch.skipped[err.reason] += 1
            batch.rejected.append(Rejected(message, where, err.reason, str(err)))
            _log.warning(
                "a message on the bus does not decode",
                reason=err.reason,
                detail=str(err),
                source=source,
                where=where,
            )
            continue
        batch.raw.append(message)
        batch.where.append(where)
    return batch
