"""``CallEventPublisher``: the session's ``CallEvents`` sink that turns what a call did
into events on the outbox, and re-publishes verified Retell webhooks.

Every method is synchronous and ends in ``Outbox.put``: building one event costs a few
microseconds and no I/O. The decisions (what counts as the caller's line, how a call
ended) are pure functions below, unit-tested on their own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from switchboard.calls.generation import Generation
from switchboard.events.outbox import Outbox
from switchboard.events.types import (
    RETELL_TYPES,
    CallEnded,
    CallStarted,
    RetellWebhook,
    TurnCompleted,
    make_event,
)
from switchboard.protocol.webhook import WebhookEvent
from switchboard.state.base import CallState

_NS_PER_MS = 1_000_000


def caller_line(transcript: Sequence[Any]) -> str:
    """The caller's last utterance: what this turn answers."""
    for utterance in reversed(transcript):
        if getattr(utterance, "role", None) == "user":
            content = getattr(utterance, "content", "")
            return content if isinstance(content, str) else ""
    return ""


def end_how(last: Generation | None, *, fenced: bool, aborted: bool) -> str:
    """How a node's socket for a call ended (see ``CallEnded``)."""
    if fenced:
        return "handed_off"
    if last is not None and last.completed:
        if last.end_call:
            return "agent_ended"
        if last.transfer_number:
            return "transferred"
    if aborted:
        return "dropped"
    return "closed"


class CallEventPublisher:
    def __init__(self, outbox: Outbox, node_id: str) -> None:
        self.outbox = outbox
        self._node_id = node_id
        self._source = f"node/{node_id}"
        self._started_ns: dict[str, int] = {}

    def call_started(self, state: CallState) -> None:
        self._started_ns[state.call_id] = time.perf_counter_ns()
        data = CallStarted(node_id=self._node_id, resumed=state.greeted, epoch=state.epoch)
        self.outbox.put(make_event(data, call_id=state.call_id, source=self._source))

    def turn_ended(self, call_id: str, gen: Generation, failure: str | None, done_ns: int) -> None:
        first = gen.first_chunk_ns
        data = TurnCompleted(
            response_id=gen.response_id,
            kind=gen.kind.value,
            caller_line=caller_line(gen.transcript),
            reply="".join(gen.reply),
            ttfb_ms=None if first is None else (first - gen.started_ns) / _NS_PER_MS,
            ttc_ms=None if gen.superseded else (done_ns - gen.started_ns) / _NS_PER_MS,
            cache_hit=gen.cache_hit,
            fallback_reason=failure,
            superseded=gen.superseded,
            end_call=gen.end_call,
            transfer_number=gen.transfer_number,
        )
        self.outbox.put(make_event(data, call_id=call_id, source=self._source))

    def call_ended(
        self, state: CallState, last: Generation | None, *, fenced: bool, aborted: bool
    ) -> None:
        started = self._started_ns.pop(state.call_id, None)
        duration = 0.0 if started is None else (time.perf_counter_ns() - started) / _NS_PER_MS
        data = CallEnded(
            node_id=self._node_id,
            how=end_how(last, fenced=fenced, aborted=aborted),
            turns=state.turns,
            duration_ms=duration,
        )
        self.outbox.put(make_event(data, call_id=state.call_id, source=self._source))

    def webhook(self, event: WebhookEvent) -> None:
        """A ``WebhookReceiver`` subscriber: lifecycle and transfer webhooks, re-published."""
        type_ = f"retell.{event.event}"
        call_id = event.call_id
        if type_ not in RETELL_TYPES or call_id is None:
            return
        data = RetellWebhook(event=event.event, call=event.call)
        self.outbox.put(make_event(data, call_id=call_id, source=self._source, type=type_))
