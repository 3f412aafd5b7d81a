"""The event envelope <-> bus message codec: round trips, and what it refuses."""

from __future__ import annotations

import msgspec
import pytest

from switchboard.events.codec import (
    BusMessage,
    ForeignMessage,
    MalformedEvent,
    UnknownEvent,
    decode,
    encode,
)
from switchboard.events.types import (
    CallEnded,
    CallEscalated,
    CallStarted,
    EventData,
    RetellWebhook,
    TurnCompleted,
    make_event,
)

SAMPLES: list[tuple[EventData, str | None]] = [
    (CallStarted(node_id="n1", resumed=True, epoch=3), None),
    (
        TurnCompleted(
            response_id=4,
            kind="response",
            caller_line="Can I book a table?",
            reply="Sure, for how many?",
            ttfb_ms=12.5,
            ttc_ms=80.25,
            cache_hit=True,
            fallback_reason=None,
            superseded=False,
        ),
        None,
    ),
    (CallEnded(node_id="n1", how="agent_ended", turns=5, duration_ms=1234.5), None),
    (CallEscalated(rule="asks_for_human", action="transfer", transfer_number="+15550100"), None),
    (
        RetellWebhook(
            event="call_analyzed", call={"call_analysis": {"user_sentiment": "Positive"}}
        ),
        "retell.call_analyzed",
    ),
]


@pytest.mark.parametrize(("data", "type_"), SAMPLES)
def test_every_event_type_round_trips(data: EventData, type_: str | None) -> None:
    event = make_event(data, call_id="call_1", source="node/n1", type=type_)
    message = encode(event)
    assert message.key == b"call_1"
    assert dict(message.headers)["ce_type"] == event.type.encode()
    assert decode(message) == event


def test_key_is_call_id_and_value_is_data_json() -> None:
    event = make_event(CallStarted(node_id="n1"), call_id="abc", source="node/n1")
    message = encode(event)
    assert msgspec.json.decode(message.value) == {"node_id": "n1", "resumed": False, "epoch": 0}
    assert dict(message.headers)["ce_id"] == event.id.encode()


def test_event_ids_are_unique() -> None:
    ids = {make_event(CallStarted(node_id="n"), call_id="c", source="s").id for _ in range(1000)}
    assert len(ids) == 1000


def test_webhook_analysis_is_read_from_the_call_object() -> None:
    data = RetellWebhook(
        event="call_analyzed", call={"call_analysis": {"user_sentiment": "Negative"}}
    )
    assert data.analysis == {"user_sentiment": "Negative"}
    assert RetellWebhook(event="call_ended").analysis == {}


def _headers(**override: bytes) -> tuple[tuple[str, bytes], ...]:
    base = dict(encode(make_event(CallStarted(node_id="n"), call_id="c", source="s")).headers)
    base.update(override)
    return tuple(base.items())


def test_message_without_cloudevents_headers_is_foreign() -> None:
    with pytest.raises(ForeignMessage):
        decode(BusMessage(b"c", (), b"{}"))
    with pytest.raises(ForeignMessage):
        decode(BusMessage(b"c", (("ce_specversion", b"0.3"),), b"{}"))


def test_unknown_type_or_version_is_refused_as_unknown() -> None:
    with pytest.raises(UnknownEvent):
        decode(BusMessage(b"c", _headers(ce_type=b"call.teleported"), b"{}"))
    with pytest.raises(UnknownEvent):
        decode(BusMessage(b"c", _headers(ce_schemaversion=b"99"), b'{"node_id":"n"}'))


@pytest.mark.parametrize(
    "message",
    [
        BusMessage(b"c", _headers(), b"not json"),
        BusMessage(b"c", _headers(), b'{"resumed": true}'),  # node_id missing
        BusMessage(b"c", _headers(ce_schemaversion=b"one"), b'{"node_id":"n"}'),
        BusMessage(b"c", _headers(ce_time=b"yesterday"), b'{"node_id":"n"}'),
        BusMessage(b"\xff", _headers(), b'{"node_id":"n"}'),
    ],
)
def test_broken_message_is_malformed(message: BusMessage) -> None:
    with pytest.raises(MalformedEvent):
        decode(message)


def test_newer_optional_fields_are_ignored_by_this_version() -> None:
    message = BusMessage(b"c", _headers(), b'{"node_id":"n","added_later":1}')
    event = decode(message)
    assert event.data == CallStarted(node_id="n")
