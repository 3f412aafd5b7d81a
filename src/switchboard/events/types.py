"""The events switchboard publishes, one typed, versioned struct per ``type``.

An event is an :class:`Event` envelope (CloudEvents-style attributes) around one of the
``data`` structs below. What may not change without a new ``VERSION``: removing or
renaming a field, or changing what a field means. Adding an optional field with a default
is compatible (consumers of the same version ignore what they do not know), so it keeps
the version. ``docs/events.md`` lists every type with an example.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import msgspec

#: Integers a consumer stores: signed 64-bit, as the node's frame decoder enforces for
#: ``response_id`` (a database refuses more; SQLite raises ``OverflowError``).
Int64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

_ids = itertools.count()
#: Random per process, so ids from two nodes (or from before a restart) never collide.
_ID_PREFIX = os.urandom(8).hex()


def new_event_id() -> str:
    """Unique per event. Consumers dedupe on it, so retries and replays stay harmless."""
    return f"{_ID_PREFIX}-{next(_ids):x}"


class EventData(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every ``data`` struct: ``TYPE`` and ``VERSION`` pick the decoder."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class CallStarted(EventData, frozen=True, kw_only=True):
    """A node took a socket for a call. ``resumed`` when the call was already greeted
    (a reconnect, possibly to another node)."""

    TYPE: ClassVar[str] = "call.started"

    node_id: str
    resumed: bool = False
    epoch: Int64 = 0


class TurnCompleted(EventData, frozen=True, kw_only=True):
    """One generation ended: completed (``content_complete`` sent) or superseded by a
    newer request. Times are from reading the request, in milliseconds; ``ttfb_ms`` is
    ``None`` when nothing was spoken."""

    TYPE: ClassVar[str] = "call.turn_completed"

    response_id: Int64
    kind: str  # greeting | response | reminder
    caller_line: str = ""
    reply: str = ""
    ttfb_ms: float | None = None
    ttc_ms: float | None = None
    cache_hit: bool = False
    fallback_reason: str | None = None
    superseded: bool = False
    end_call: bool = False
    transfer_number: str | None = None
    digits: str | None = None
    #: ``caller_line`` or ``reply`` was cut to the outbox's text limit (docs/outbox.md)
    truncated: bool = False


class CallEnded(EventData, frozen=True, kw_only=True):
    """A node stopped serving a call's socket.

    ``how``: ``agent_ended`` (end_call), ``transferred``, ``closed`` (Retell closed the
    socket), ``dropped`` (socket lost; Retell may reconnect, then a ``call.started``
    with ``resumed`` follows), ``handed_off`` (a newer socket took the call). Retell's
    own verdict arrives later as ``retell.call_ended`` with its ``disconnection_reason``.
    """

    TYPE: ClassVar[str] = "call.ended"

    node_id: str
    how: str
    reason: str | None = None
    turns: Int64 = 0
    duration_ms: float = 0.0
    #: from Retell's call details, when it sent them: what a replay of the call must send
    #: again (``switchboard replay``, ``archive export``)
    dynamic_variables: dict[str, str] | None = None
    metadata: Any = None

    @property
    def final(self) -> bool:
        """False when the call goes on on another socket (``dropped``, ``handed_off``)."""
        return self.how not in ("dropped", "handed_off")


class CallEscalated(EventData, frozen=True, kw_only=True):
    """The escalation service acted on a call (at most once per call)."""

    TYPE: ClassVar[str] = "call.escalated"

    rule: str
    action: str  # transfer | say | alert
    detail: str = ""
    transfer_number: str | None = None
    trigger_event_id: str | None = None


class RetellWebhook(EventData, frozen=True, kw_only=True):
    """A verified Retell webhook, re-published as ``retell.<event>``. ``call`` is Retell's
    call object as sent (``call_analysis`` holds the analysis of ``call_analyzed``),
    without the per-word transcripts (``transcript_object`` and the like)."""

    TYPE: ClassVar[str] = "retell.webhook"

    event: str
    call: dict[str, Any] = msgspec.field(default_factory=dict)
    #: ``call["transcript"]`` was cut to the outbox's text limit (docs/outbox.md)
    truncated: bool = False

    @property
    def analysis(self) -> dict[str, Any]:
        value = self.call.get("call_analysis")
        return value if isinstance(value, dict) else {}


#: Webhook events re-published, each as its own ``type``.
RETELL_TYPES = frozenset(
    f"retell.{name}"
    for name in (
        "call_started",
        "call_ended",
        "call_analyzed",
        "transfer_started",
        "transfer_bridged",
        "transfer_cancelled",
        "transfer_ended",
    )
)

#: (type, schema_version) -> data struct: what a consumer of this version can decode.
REGISTRY: dict[tuple[str, int], type[EventData]] = {
    (cls.TYPE, cls.VERSION): cls for cls in (CallStarted, TurnCompleted, CallEnded, CallEscalated)
}
REGISTRY.update({(name, RetellWebhook.VERSION): RetellWebhook for name in RETELL_TYPES})


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope. ``call_id`` is the partition key: one call's events stay in order."""

    id: str
    type: str
    source: str
    time: datetime
    call_id: str
    schema_version: int
    data: EventData


def make_event(data: EventData, *, call_id: str, source: str, type: str | None = None) -> Event:
    """Wrap ``data``; ``type`` is needed only for data shared by several types (webhooks)."""
    return Event(
        id=new_event_id(),
        type=type or data.TYPE,
        source=source,
        time=datetime.now(UTC),
        call_id=call_id,
        schema_version=data.VERSION,
        data=data,
    )
