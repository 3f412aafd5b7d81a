"""What the archive writes for a batch of (already deduplicated) events: rows per
statement. Pure, so the mapping is tested without a database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from switchboard.events.types import (
    CallEnded,
    CallEscalated,
    CallStarted,
    Event,
    RetellWebhook,
    TurnCompleted,
)

Row = tuple[Any, ...]
_json = msgspec.json.Encoder()


@dataclass(slots=True)
class Plan:
    turns: list[Row] = field(default_factory=list)
    started: list[Row] = field(default_factory=list)
    ended: list[Row] = field(default_factory=list)
    retell_ended: list[Row] = field(default_factory=list)
    analyzed: list[Row] = field(default_factory=list)
    escalated: list[Row] = field(default_factory=list)


def _json_text(value: Any) -> str:
    return _json.encode(value).decode()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def plan(events: Sequence[Event]) -> Plan:
    out = Plan()
    for event in events:
        data = event.data
        at = event.time.isoformat()
        if isinstance(data, TurnCompleted):
            out.turns.append(
                (
                    event.id,
                    event.call_id,
                    data.response_id,
                    data.kind,
                    data.caller_line,
                    data.reply,
                    data.ttfb_ms,
                    data.ttc_ms,
                    int(data.cache_hit),
                    data.fallback_reason,
                    int(data.superseded),
                    at,
                    int(data.end_call),
                    data.transfer_number,
                    data.digits,
                )
            )
        elif isinstance(data, CallStarted):
            out.started.append((event.call_id, at, data.node_id))
        elif isinstance(data, CallEnded):
            out.ended.append(
                (
                    event.call_id,
                    at,
                    data.how,
                    None if data.dynamic_variables is None else _json_text(data.dynamic_variables),
                    None if data.metadata is None else _json_text(data.metadata),
                )
            )
        elif isinstance(data, CallEscalated):
            out.escalated.append((event.call_id, data.rule, data.action))
        elif isinstance(data, RetellWebhook):
            if data.event == "call_ended":
                reason = _text(data.call.get("disconnection_reason"))
                out.retell_ended.append((event.call_id, reason))
            elif data.event == "call_analyzed":
                analysis = data.analysis
                successful = analysis.get("call_successful")
                out.analyzed.append(
                    (
                        event.call_id,
                        _text(analysis.get("user_sentiment")),
                        None if not isinstance(successful, bool) else int(successful),
                        _text(analysis.get("call_summary")),
                        _json.encode(analysis).decode(),
                    )
                )
    return out
