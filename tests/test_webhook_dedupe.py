"""Webhook payloads and the dedupe policy (spec 3.1): no event id, retries up to 3 times."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from switchboard.protocol.errors import ProtocolError
from switchboard.protocol.webhook import InboundCall, WebhookEvent, parse_webhook
from switchboard.server.dedupe import Verdict, WebhookDedupe, transcript_progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(name: str, call: dict[str, Any] | None = None, **top: Any) -> WebhookEvent:
    body = msgspec.json.encode({"event": name, "call": call or {"call_id": "c1"}, **top})
    parsed = parse_webhook(body)
    assert isinstance(parsed, WebhookEvent)
    return parsed


def utterances(*contents: str) -> list[dict[str, Any]]:
    return [{"role": "agent" if i % 2 else "user", "content": c} for i, c in enumerate(contents)]


def transcript(call_id: str, *contents: str, status: str = "ongoing") -> WebhookEvent:
    call = {
        "call_id": call_id,
        "call_status": status,
        "transcript_with_tool_calls": utterances(*contents),
    }
    return event("transcript_updated", call)


# --- payload parsing ---------------------------------------------------------------


def test_chat_events_are_accepted_under_the_chat_key() -> None:
    event = parse_webhook(b'{"event":"chat_ended","chat":{"chat_id":"h1","agent_id":"a"}}')
    assert isinstance(event, WebhookEvent)
    assert (event.chat_id, event.call_id, event.agent_id, event.call) == ("h1", None, "a", {})


def test_chat_key_is_not_accepted_for_call_events() -> None:
    with pytest.raises(ProtocolError, match=r"\$\.call"):
        parse_webhook(b'{"event":"call_ended","chat":{"chat_id":"h1"}}')


def test_properties_do_not_lie_about_types() -> None:
    event = parse_webhook(
        b'{"event":"call_ended","call":{"call_id":7,"start_timestamp":"1","end_timestamp":true}}'
    )
    assert isinstance(event, WebhookEvent)
    assert (event.call_id, event.start_timestamp, event.end_timestamp) == (None, None, None)


def test_inbound_sms_answer_uses_its_own_key() -> None:
    inbound = parse_webhook(b'{"event":"chat_inbound","chat_inbound":{"from_number":"+1"}}')
    assert isinstance(inbound, InboundCall)
    assert inbound.answer({"reject": True}) == b'{"chat_inbound":{"reject":true}}'
    assert inbound.answer(None) == b"{}"


# --- dedupe -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["call_started", "call_ended", "call_analyzed", "chat_started", "chat_ended", "chat_analyzed"],
)
def test_lifecycle_event_retry_is_duplicate(name: str) -> None:
    dedupe = WebhookDedupe()
    assert dedupe.admit(event(name, {"call_id": "c1", "call_status": "ended"})) is Verdict.DELIVER
    # A retry may carry a re-fetched (different) call object: still the same event.
    retry = event(name, {"call_id": "c1", "call_status": "ended", "recording_url": "x"})
    assert dedupe.admit(retry) is Verdict.DUPLICATE


def test_lifecycle_events_differ_by_event_and_by_call() -> None:
    dedupe = WebhookDedupe()
    verdicts = [
        dedupe.admit(event(name, {"call_id": call_id}))
        for call_id in ("c1", "c2")
        for name in ("call_started", "call_ended", "call_analyzed")
    ]
    assert verdicts == [Verdict.DELIVER] * 6


def test_chat_events_dedupe_by_chat_id() -> None:
    dedupe = WebhookDedupe()

    def chat(chat_id: str) -> WebhookEvent:
        parsed = parse_webhook(
            msgspec.json.encode({"event": "chat_ended", "chat": {"chat_id": chat_id}})
        )
        assert isinstance(parsed, WebhookEvent)
        return parsed

    assert dedupe.admit(chat("h1")) is Verdict.DELIVER
    assert dedupe.admit(chat("h1")) is Verdict.DUPLICATE
    assert dedupe.admit(chat("h2")) is Verdict.DELIVER


def transfer(
    name: str, destination: Any, *contents: str, start: int = 1_700_000_000_000
) -> WebhookEvent:
    call = {
        "call_id": "c1",
        "start_timestamp": start,
        "transcript_object": utterances(*contents),
    }
    return event(name, call, transfer_destination=destination, transfer_option={"type": "warm"})


def test_transfer_retry_is_duplicate() -> None:
    dedupe = WebhookDedupe()
    dest = {"number": "+15550001111", "extension": "12"}
    assert dedupe.admit(transfer("transfer_started", dest, "hi")) is Verdict.DELIVER
    # Key order inside the destination object does not matter.
    reordered = {"extension": "12", "number": "+15550001111"}
    assert dedupe.admit(transfer("transfer_started", reordered, "hi")) is Verdict.DUPLICATE
    assert dedupe.admit(transfer("transfer_bridged", dest, "hi")) is Verdict.DELIVER


def test_transfers_to_other_destinations_are_distinct() -> None:
    dedupe = WebhookDedupe()
    assert dedupe.admit(transfer("transfer_started", {"number": "+1555"}, "hi")) is Verdict.DELIVER
    assert dedupe.admit(transfer("transfer_started", {"number": "+1666"}, "hi")) is Verdict.DELIVER


def test_second_transfer_to_same_destination_later_in_the_call_is_delivered() -> None:
    dedupe = WebhookDedupe()
    dest = {"number": "+1555"}
    assert dedupe.admit(transfer("transfer_cancelled", dest, "hi")) is Verdict.DELIVER
    later = transfer("transfer_cancelled", dest, "hi", "sorry, trying again")
    assert dedupe.admit(later) is Verdict.DELIVER
    assert dedupe.admit(later) is Verdict.DUPLICATE


def test_transfer_destination_from_call_object_when_not_top_level() -> None:
    dedupe = WebhookDedupe()
    a = event("transfer_ended", {"call_id": "c1", "transfer_destination": "+1555"})
    b = event("transfer_ended", {"call_id": "c1", "transfer_destination": "sip:x@y"})
    assert dedupe.admit(a) is Verdict.DELIVER
    assert dedupe.admit(b) is Verdict.DELIVER
    assert dedupe.admit(a) is Verdict.DUPLICATE


def test_transcript_updated_is_latest_wins() -> None:
    dedupe = WebhookDedupe()
    assert dedupe.admit(transcript("c1", "hello")) is Verdict.DELIVER
    assert dedupe.admit(transcript("c1", "hello", "hi there")) is Verdict.DELIVER
    # Arriving late (delivery is not blocking, retries overtake): older, so dropped.
    assert dedupe.admit(transcript("c1", "hello")) is Verdict.SUPERSEDED
    # The same update again (a retry) is a duplicate.
    assert dedupe.admit(transcript("c1", "hello", "hi there")) is Verdict.DUPLICATE
    # The last utterance grew: newer.
    assert dedupe.admit(transcript("c1", "hello", "hi there, how")) is Verdict.DELIVER
    # Other calls are independent.
    assert dedupe.admit(transcript("c2", "hello")) is Verdict.DELIVER


def test_final_transcript_update_at_call_end_gets_through() -> None:
    dedupe = WebhookDedupe()
    assert dedupe.admit(transcript("c1", "hello", "bye")) is Verdict.DELIVER
    final = transcript("c1", "hello", "bye", status="ended")
    assert dedupe.admit(final) is Verdict.DELIVER
    assert dedupe.admit(final) is Verdict.DUPLICATE


def test_transcript_progress_falls_back_to_transcript_object_then_text() -> None:
    assert transcript_progress({"transcript_object": utterances("a", "bcd")}) == (2, 3, False)
    assert transcript_progress({"transcript": "Agent: hi\nUser: yo"}) == (0, 18, False)
    assert transcript_progress({"call_status": "ended"}) == (0, 0, True)
    assert transcript_progress({"transcript_object": ["not", "dicts"]}) == (2, 0, False)


def test_unknown_event_is_duplicate_only_when_byte_identical() -> None:
    dedupe = WebhookDedupe()
    a = event("call_paused", {"call_id": "c1", "n": 1})
    b = event("call_paused", {"call_id": "c1", "n": 2})
    assert dedupe.admit(a) is Verdict.DELIVER
    assert dedupe.admit(b) is Verdict.DELIVER
    assert dedupe.admit(event("call_paused", {"call_id": "c1", "n": 1})) is Verdict.DUPLICATE


def test_event_without_call_id_dedupes_by_body() -> None:
    dedupe = WebhookDedupe()
    assert dedupe.admit(event("call_ended", {"x": 1})) is Verdict.DELIVER
    assert dedupe.admit(event("call_ended", {"x": 1})) is Verdict.DUPLICATE
    assert dedupe.admit(event("call_ended", {"x": 2})) is Verdict.DELIVER


def test_keys_expire_after_ttl() -> None:
    clock = FakeClock()
    dedupe = WebhookDedupe(ttl_s=60.0, clock=clock)
    assert dedupe.admit(event("call_ended")) is Verdict.DELIVER
    clock.now += 59.9
    assert dedupe.admit(event("call_ended")) is Verdict.DUPLICATE
    clock.now += 0.2
    assert dedupe.admit(event("call_ended")) is Verdict.DELIVER
    assert len(dedupe) == 1


def test_expiry_frees_memory_without_lookups_of_the_expired_keys() -> None:
    clock = FakeClock()
    dedupe = WebhookDedupe(ttl_s=10.0, clock=clock)
    for i in range(100):
        dedupe.admit(event("call_started", {"call_id": f"c{i}"}))
    assert len(dedupe) == 100
    clock.now += 11
    dedupe.admit(event("call_started", {"call_id": "fresh"}))
    assert len(dedupe) == 1


def test_memory_is_bounded_least_recent_first() -> None:
    dedupe = WebhookDedupe(max_keys=3)
    for call_id in ("c1", "c2", "c3", "c4"):
        assert dedupe.admit(event("call_ended", {"call_id": call_id})) is Verdict.DELIVER
    assert len(dedupe) == 3
    assert dedupe.admit(event("call_ended", {"call_id": "c4"})) is Verdict.DUPLICATE
    assert dedupe.admit(event("call_ended", {"call_id": "c2"})) is Verdict.DUPLICATE
    # c1 was evicted: forgetting errs towards redelivery, never towards loss.
    assert dedupe.admit(event("call_ended", {"call_id": "c1"})) is Verdict.DELIVER


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        WebhookDedupe(max_keys=0)
