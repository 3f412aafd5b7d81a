"""``CallEventPublisher``: the session's ``CallEvents`` sink that turns what a call did
into events on the outbox, and re-publishes verified Retell webhooks.

Every call method is synchronous and ends in ``Outbox.put``: building one event costs a
few microseconds and no I/O. The decisions (what counts as the caller's line, how a call
ended, how an event is kept small) are pure functions below, unit-tested on their own.

Size caps keep every event far below what a bus takes (Kafka's 1 MiB by default), so
one long utterance never reaches the outbox's parking path: ``caller_line`` and
``reply`` are cut at ``MAX_TEXT_CHARS`` and a webhook's ``transcript`` at
``MAX_TRANSCRIPT_CHARS``, with ``truncated`` set on the event; webhooks are re-published
without the per-word transcripts (``STRIPPED_CALL_FIELDS``), which no consumer reads.
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

#: caller line and reply, each; JSON-escaped worst case ~100 KB
MAX_TEXT_CHARS = 16_384
#: a webhook call object's ``transcript``; JSON-escaped worst case ~200 KB
MAX_TRANSCRIPT_CHARS = 32_768
#: per-word transcripts (with word timings) left out of re-published webhooks
STRIPPED_CALL_FIELDS = frozenset(
    {
        "transcript_object",
        "transcript_with_tool_calls",
        "scrubbed_transcript_object",
        "scrubbed_transcript_with_tool_calls",
    }
)
#: how long a webhook waits for its event to be durable before its delivery counts as failed
WEBHOOK_DURABLE_TIMEOUT_S = 8.0


class EventNotDurable(RuntimeError):
    """The outbox dropped the event (or did not make it safe in time)."""


def capped(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was."""
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def slim_call(call: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Retell's call object without the per-word transcripts and with ``transcript``
    capped; True when the transcript was cut."""
    slim = {k: v for k, v in call.items() if k not in STRIPPED_CALL_FIELDS}
    transcript = slim.get("transcript")
    cut = False
    if isinstance(transcript, str):
        slim["transcript"], cut = capped(transcript, MAX_TRANSCRIPT_CHARS)
    return slim, cut


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
        line = caller_line(gen.transcript)
        reply = "".join(gen.reply)
        truncated = False
        if len(line) > MAX_TEXT_CHARS or len(reply) > MAX_TEXT_CHARS:
            line, cut_line = capped(line, MAX_TEXT_CHARS)
            reply, cut_reply = capped(reply, MAX_TEXT_CHARS)
            truncated = cut_line or cut_reply
        data = TurnCompleted(
            response_id=gen.response_id,
            kind=gen.kind.value,
            caller_line=line,
            reply=reply,
            ttfb_ms=None if first is None else (first - gen.started_ns) / _NS_PER_MS,
            ttc_ms=None if gen.superseded else (done_ns - gen.started_ns) / _NS_PER_MS,
            cache_hit=gen.cache_hit,
            fallback_reason=failure,
            superseded=gen.superseded,
            end_call=gen.end_call,
            transfer_number=gen.transfer_number,
            digits=gen.digit_to_press,
            truncated=truncated,
        )
        self.outbox.put(make_event(data, call_id=call_id, source=self._source))

    def call_ended(
        self, state: CallState, last: Generation | None, *, fenced: bool, aborted: bool
    ) -> None:
        started = self._started_ns.pop(state.call_id, None)
        duration = 0.0 if started is None else (time.perf_counter_ns() - started) / _NS_PER_MS
        call = state.call or {}
        variables = call.get("retell_llm_dynamic_variables")
        data = CallEnded(
            node_id=self._node_id,
            how=end_how(last, fenced=fenced, aborted=aborted),
            turns=state.turns,
            duration_ms=duration,
            dynamic_variables=(
                {str(k): str(v) for k, v in variables.items()}
                if isinstance(variables, dict)
                else None
            ),
            metadata=call.get("metadata") or None,
        )
        self.outbox.put(make_event(data, call_id=state.call_id, source=self._source))

    async def webhook(self, event: WebhookEvent) -> None:
        """A ``WebhookReceiver`` subscriber: lifecycle and transfer webhooks, re-published.
        Returns once the event is durable, so the receiver may confirm its dedupe claim;
        raises ``EventNotDurable`` otherwise (the claim is released for Retell's retry)."""
        type_ = f"retell.{event.event}"
        call_id = event.call_id
        if type_ not in RETELL_TYPES or call_id is None:
            return
        call, truncated = slim_call(event.call)
        data = RetellWebhook(event=event.event, call=call, truncated=truncated)
        made = make_event(data, call_id=call_id, source=self._source, type=type_)
        if not await self.outbox.put_durable(made, WEBHOOK_DURABLE_TIMEOUT_S):
            raise EventNotDurable(f"{type_} for {call_id} was not made durable")
