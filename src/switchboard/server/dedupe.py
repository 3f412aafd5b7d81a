"""Which webhook deliveries are new: Retell retries (up to 3 times) and sends no event id.

Policy:

* lifecycle events (``call_started``, ``call_ended``, ``call_analyzed`` and the chat
  equivalents) happen at most once per call: key ``event + call_id``;
* transfer events can repeat within a call (several transfers): key ``event + call_id +
  start_timestamp + destination``, plus how far the transcript had got, so that a second
  transfer to the same destination later in the call is not mistaken for a retry;
* ``transcript_updated`` is latest-wins per call: one whose transcript is not further
  along than the last one delivered is dropped (equal = a retry, shorter = superseded);
  "further" is (items, length of the last item, call ended), so the final update sent at
  call end still gets through;
* anything else (unknown events, events without an id) is a duplicate only if its body
  is byte-identical to one already seen.

Pure: no I/O, injectable clock. Memory is bounded: each key lives ``ttl_s`` and the
least recently recorded keys are evicted beyond ``max_keys``. Forgetting only risks
delivering a duplicate; consumers are idempotent, so the bound errs on that side.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from enum import StrEnum
from typing import Any

import msgspec

from switchboard.protocol.webhook import (
    LIFECYCLE_EVENTS,
    TRANSCRIPT_UPDATED,
    TRANSFER_EVENTS,
    WebhookEvent,
)

Progress = tuple[int, int, bool]


class Verdict(StrEnum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"
    #: another delivery of it is under way and not yet durable: ask the sender to retry
    IN_FLIGHT = "in_flight"


def transcript_progress(call: dict[str, Any]) -> Progress:
    """How far a call's transcript has got; later updates compare greater."""
    items = call.get("transcript_with_tool_calls")
    if not isinstance(items, list) or not items:
        items = call.get("transcript_object")
    ended = call.get("call_status") == "ended"
    if isinstance(items, list) and items:
        last = items[-1]
        content = last.get("content") if isinstance(last, dict) else None
        return len(items), len(content) if isinstance(content, str) else 0, ended
    text = call.get("transcript")
    return 0, len(text) if isinstance(text, str) else 0, ended


def _destination(event: WebhookEvent) -> bytes:
    dest = event.transfer_destination
    if dest is None:
        dest = event.call.get("transfer_destination")
    return msgspec.json.encode(dest, order="sorted")


def _digest(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class WebhookDedupe:
    __slots__ = ("_clock", "_entries", "max_keys", "ttl_s")

    def __init__(
        self,
        *,
        max_keys: int = 100_000,
        ttl_s: float = 86_400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.ttl_s = ttl_s
        self._clock = clock
        # key -> (expires_at, progress); recording moves a key to the end, so expiry
        # times ascend from the front and expiry is a pop from the front.
        self._entries: OrderedDict[Hashable, tuple[float, Progress | None]] = OrderedDict()

    @classmethod
    def identity(cls, event: WebhookEvent) -> tuple[bytes, Progress | None]:
        """A stable key for ``event`` (the same in every process) and, for latest-wins
        events, its progress. The shared (Redis) dedupe keys its entries by this."""
        subject = event.call_id or event.chat_id
        if event.event == TRANSCRIPT_UPDATED and subject is not None:
            key: Hashable = (TRANSCRIPT_UPDATED, subject)
            progress: Progress | None = transcript_progress(event.call)
        else:
            key, progress = cls._key(event, subject), None
        return hashlib.blake2b(msgspec.json.encode(key), digest_size=16).digest(), progress

    def admit(self, event: WebhookEvent) -> Verdict:
        """Decide whether ``event`` is new; a delivered event is recorded."""
        now = self._clock()
        self._expire(now)
        subject = event.call_id or event.chat_id
        if event.event == TRANSCRIPT_UPDATED and subject is not None:
            key: Hashable = (TRANSCRIPT_UPDATED, subject)
            progress = transcript_progress(event.call)
            entry = self._entries.get(key)
            if entry is not None and entry[1] is not None and progress <= entry[1]:
                return Verdict.DUPLICATE if progress == entry[1] else Verdict.SUPERSEDED
            self._record(key, progress, now)
            return Verdict.DELIVER
        key = self._key(event, subject)
        if key in self._entries:
            return Verdict.DUPLICATE
        self._record(key, None, now)
        return Verdict.DELIVER

    def forget(self, event: WebhookEvent) -> None:
        """Undo the record of a once-only ``event`` whose delivery did not make it (or
        that another node holds in flight), so its retry is admitted again."""
        subject = event.call_id or event.chat_id
        if event.event == TRANSCRIPT_UPDATED and subject is not None:
            return  # latest-wins: a later update supersedes it anyway
        self._entries.pop(self._key(event, subject), None)

    @staticmethod
    def _key(event: WebhookEvent, subject: str | None) -> Hashable:
        if subject is None:
            return (event.event, None, _digest(event.raw))
        if event.event in LIFECYCLE_EVENTS:
            return (event.event, subject)
        if event.event in TRANSFER_EVENTS:
            reached = transcript_progress(event.call)[:2]
            return (event.event, subject, event.start_timestamp, _destination(event), reached)
        return (event.event, subject, _digest(event.raw))

    def _record(self, key: Hashable, progress: Progress | None, now: float) -> None:
        self._entries[key] = (now + self.ttl_s, progress)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (expires_at, _) = next(iter(entries.items()))
            if expires_at > now:
                return
            del entries[key]

    def __len__(self) -> int:
        return len(self._entries)
