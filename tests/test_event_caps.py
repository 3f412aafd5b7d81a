"""Events are capped in size, so one long utterance or a webhook near Retell's 1 MiB body
never makes an event a bus refuses: texts are cut with a flag, webhooks travel without
their per-word transcripts. Proven through a real Kafka broker (tansu), whose client
refuses 1 MiB."""

from __future__ import annotations

from pathlib import Path

import msgspec

from switchboard.agents.base import TurnKind
from switchboard.calls.generation import Generation
from switchboard.calls.publisher import (
    MAX_TEXT_CHARS,
    MAX_TRANSCRIPT_CHARS,
    CallEventPublisher,
    capped,
    slim_call,
)
from switchboard.events.buses.kafka import KafkaBus
from switchboard.events.outbox import Outbox, OutboxOptions
from switchboard.events.types import RetellWebhook, TurnCompleted
from switchboard.protocol.inbound import Utterance
from switchboard.protocol.webhook import WebhookEvent, parse_webhook
from tests.fixtures.buses import collect
from tests.fixtures.conditions import eventually


def test_capped_cuts_only_what_is_over_the_limit() -> None:
    assert capped("abc", 3) == ("abc", False)
    assert capped("abcd", 3) == ("abc", True)


def test_slim_call_drops_word_timings_and_caps_the_transcript() -> None:
    call = {
        "call_id": "c",
        "transcript": "y" * (MAX_TRANSCRIPT_CHARS + 1),
        "transcript_object": [{"role": "user", "content": "hi", "words": [{"word": "hi"}]}],
        "transcript_with_tool_calls": [],
        "call_analysis": {"call_summary": "ok"},
    }
    slim, cut = slim_call(call)
    assert cut
    assert set(slim) == {"call_id", "transcript", "call_analysis"}
    assert len(slim["transcript"]) == MAX_TRANSCRIPT_CHARS
    assert slim_call({"call_id": "c", "transcript": "short"}) == (
        {"call_id": "c", "transcript": "short"},
        False,
    )


def _huge_analyzed() -> WebhookEvent:
    """A ``call_analyzed`` just under Retell's 1 MiB body: word timings make the bulk."""
    words = [{"word": "hello", "start": i * 0.1, "end": i * 0.1 + 0.05} for i in range(11_500)]
    call = {
        "call_id": "call-long",
        "transcript": "User: hello " * 20_000,
        "transcript_object": [{"role": "user", "content": "hello " * 11_500, "words": words}],
        "call_analysis": {"user_sentiment": "Positive"},
    }
    body = msgspec.json.encode({"event": "call_analyzed", "call": call})
    assert 900_000 < len(body) < 1 << 20
    event = parse_webhook(body)
    assert isinstance(event, WebhookEvent)
    return event


async def test_a_1_mib_caller_line_and_a_huge_webhook_reach_kafka_cut_and_flagged(
    kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    bus = KafkaBus(kafka_bootstrap, topic=kafka_topic, partitions=1)
    # no limit of the outbox's own in the way: what reaches Kafka must fit by itself
    outbox = Outbox(bus, OutboxOptions(spill_dir=tmp_path, max_event_bytes=64 << 20))
    publisher = CallEventPublisher(outbox, "n1")
    outbox.start()
    gen = Generation(7, TurnKind.RESPONSE, completed=True)
    gen.transcript = [Utterance(role="user", content="x" * (1 << 20))]
    gen.reply.append("fine")
    publisher.turn_ended("call-long", gen, None, gen.started_ns + 1)
    await publisher.webhook(_huge_analyzed())
    after = Generation(8, TurnKind.RESPONSE, completed=True)
    publisher.turn_ended("call-long", after, None, after.started_ns + 1)
    await eventually(lambda: outbox.stats.sent == 3, timeout=30)
    consumer = bus.consumer("check", "c1")
    got, _ = await collect(consumer, 3)
    await consumer.close()
    await outbox.close()
    await bus.close()
    assert outbox.stats.parked == 0
    turn, webhook, nxt = (e.data for e in got)
    assert isinstance(turn, TurnCompleted)
    assert turn.truncated
    assert len(turn.caller_line) == MAX_TEXT_CHARS
    assert turn.reply == "fine"
    assert isinstance(webhook, RetellWebhook)
    assert webhook.truncated
    assert "transcript_object" not in webhook.call
    assert webhook.analysis == {"user_sentiment": "Positive"}
    assert isinstance(nxt, TurnCompleted)
    assert not nxt.truncated
