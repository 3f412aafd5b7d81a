"""Dedupe by event id, as every service's store does it: the store records a batch's ids
(``ON CONFLICT DO NOTHING RETURNING``) and writes only the events whose ids came back."""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.events.types import Event


def fresh_events(events: Sequence[Event], new_ids: set[str]) -> list[Event]:
    """The events whose ids were new, each once (a batch may repeat an id)."""
    out = []
    for event in events:
        if event.id in new_ids:
            new_ids.discard(event.id)
            out.append(event)
    return out
