"""The simulator's pure parts: transcripts and frames it builds, frames it validates,
histograms it summarises, options it refuses, the live line it draws."""

from __future__ import annotations

import random

import msgspec
import pytest
from rich.console import Console

from switchboard.protocol import FrameDecoder, ResponseRequired, UpdateOnly
from switchboard.protocol.outbound import Config, PingPongReply, Response
from switchboard.sim.call_object import call_object, new_id
from switchboard.sim.conversation import PHRASES, random_script
from switchboard.sim.display import LiveView
from switchboard.sim.frames import InvalidFrame, decode_server_frame
from switchboard.sim.ledger import Ledger
from switchboard.sim.metrics import Histogram, RunMetrics
from switchboard.sim.options import SimOptions
from switchboard.sim.transcript import Transcript


def test_transcript_frames_are_what_the_server_decoder_expects() -> None:
    transcript = Transcript()
    transcript.add_agent("Hi there, how can I help?")
    transcript.user_says(["What", "are", "your", "hours?"], 2)
    decoder = FrameDecoder()

    partial = decoder.decode(transcript.update_only("user_turn"))
    assert isinstance(partial, UpdateOnly)
    assert partial.turntaking == "user_turn"

    transcript.user_says(["What", "are", "your", "hours?"])
    request = decoder.decode(transcript.request("response_required", 7))
    assert isinstance(request, ResponseRequired)
    assert request.response_id == 7
    assert [(u.role, u.content) for u in request.transcript] == [
        ("agent", "Hi there, how can I help?"),
        ("user", "What are your hours?"),
    ]
    words = request.transcript[1].word_timings()
    assert [w.word for w in words] == ["What", "are", "your", "hours?"]
    assert words[0].start > request.transcript[0].word_timings()[-1].end  # later in the call
    assert all(w.end > w.start for w in words)
    assert decoder.unknown_fields == []


def test_transcript_grows_and_never_forgets() -> None:
    transcript = Transcript()
    transcript.user_says(["hello"])
    transcript.commit_user()
    transcript.add_agent("")  # nothing heard: nothing added
    transcript.add_agent("Hi.")
    transcript.user_says(["bye"])
    frame = msgspec.json.decode(transcript.request("reminder_required", 2))
    assert [u["content"] for u in frame["transcript"]] == ["hello", "Hi.", "bye"]
    assert "transcript_with_tool_calls" not in frame
    assert transcript.utterances == 2  # the utterance in progress is not history yet


def test_tool_events_land_after_the_utterance_being_answered() -> None:
    transcript = Transcript()
    transcript.with_tool_calls = True
    transcript.user_says(["book", "me", "in"])
    transcript.add_tool_event({"role": "tool_call_invocation", "tool_call_id": "t1"})
    frame = msgspec.json.decode(transcript.update_only())
    assert [i["role"] for i in frame["transcript_with_tool_calls"]] == [
        "user",
        "tool_call_invocation",
    ]
    transcript.commit_user()
    transcript.add_agent("Done.")
    frame = msgspec.json.decode(transcript.update_only())
    assert [i["role"] for i in frame["transcript_with_tool_calls"]] == [
        "user",
        "tool_call_invocation",
        "agent",
    ]
    assert [u["role"] for u in frame["transcript"]] == ["user", "agent"]


def test_server_frames_are_validated_like_retell_does() -> None:
    ok = decode_server_frame(
        b'{"response_type":"response","response_id":3,"content":"hi","content_complete":true,'
        b'"end_call":true,"future_field":1}'
    )
    assert isinstance(ok, Response)
    assert ok.end_call is True
    legacy = decode_server_frame(b'{"response_id":3,"content":"hi","content_complete":false}')
    assert isinstance(legacy, Response)  # no response_type: a response
    assert isinstance(
        decode_server_frame('{"response_type":"config","config":{"call_details":true}}'), Config
    )
    assert isinstance(
        decode_server_frame('{"response_type":"ping_pong","timestamp":1}'), PingPongReply
    )
    bad = [
        b'{"response_type":"response","response_id":1,"content":"x","content_complete":"true"}',
        b'{"response_type":"response","response_id":1.5,"content":"x","content_complete":true}',
        b'{"response_type":"response","response_id":1,"content":7,"content_complete":true}',
        b'{"response_type":"response","response_id":1,"content":"x"}',
        b'{"response_id":1,"content":"x","content_complete":"no"}',
        b'{"response_type":"shout"}',
        b"[1, 2]",
        b"not json",
    ]
    for frame in bad:
        with pytest.raises(InvalidFrame):
            decode_server_frame(frame)


def test_histogram_summary_in_milliseconds() -> None:
    histogram = Histogram()
    for ms in range(1, 1001):
        histogram.record(ms / 1000)
    summary = histogram.summary()
    assert summary.count == 1000
    assert summary.min_ms == pytest.approx(1.0, rel=0.01)
    assert summary.max_ms == pytest.approx(1000.0, rel=0.01)
    assert summary.mean_ms == pytest.approx(500.5, rel=0.001)
    assert summary.p50_ms == pytest.approx(500.0, rel=0.01)
    assert summary.p99_ms == pytest.approx(990.0, rel=0.01)
    assert summary.p999_ms == pytest.approx(999.0, rel=0.01)
    fractions = [f for _, f in summary.cdf]
    assert fractions == sorted(fractions)
    assert fractions[0] == 0.0
    assert fractions[-1] == 1.0
    assert sum(count for _, count in summary.buckets) == 1000
    assert Histogram().summary().count == 0


def test_histogram_clamps_instead_of_dropping() -> None:
    histogram = Histogram()
    histogram.record(-1.0)
    histogram.record(10_000.0)
    assert histogram.count == 2


def test_violation_samples_are_capped_per_kind() -> None:
    metrics = RunMetrics(violation_samples=2)
    for i in range(5):
        metrics.violation("stale_frame", f"call{i}", "late")
    metrics.violation("invalid_frame", "call9", "bad")
    assert metrics.violations == {"stale_frame": 5, "invalid_frame": 1}
    assert [v.call_id for v in metrics.violation_samples] == ["call0", "call1", "call9"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "localhost:8080"}, "url must be"),
        ({"profile": "cloud"}, "profile must be one of"),
        ({"barge_in_rate": 1.5}, "barge_in_rate"),
        ({"reminder_rate": -0.1}, "reminder_rate"),
        ({"calls": -1}, "calls"),
        ({"duration_s": 0}, "duration"),
        ({"think_ms": -5}, "think_ms"),
        ({"connect_attempts": 0}, "connect_attempts"),
    ],
)
def test_options_refuse_nonsense(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"url": "ws://127.0.0.1:1/llm-websocket", **overrides}
    with pytest.raises(ValueError, match=message):
        SimOptions(**values)  # type: ignore[arg-type]


def test_url_and_budget_as_retell_and_profiles_define_them() -> None:
    assert SimOptions(url="https://h/llm-websocket/").base_url == "wss://h/llm-websocket"
    assert SimOptions(url="http://h/x").base_url == "ws://h/x"
    assert SimOptions(url="ws://h/x").effective_budget_ms == 800
    assert SimOptions(url="ws://h/x", profile="event-driven").effective_budget_ms == 300
    assert SimOptions(url="ws://h/x", profile="distributed", budget_ms=42).effective_budget_ms == 42


def test_call_ids_look_like_retells_and_do_not_repeat() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and i.isalnum() for i in ids)
    call = call_object("abc", "agent", random.Random(1), {})
    assert "retell_llm_dynamic_variables" not in call  # none given, none sent
    call = call_object("abc", "agent", random.Random(1))
    assert set(call["retell_llm_dynamic_variables"]) == {"customer_name"}


def test_random_scripts_follow_the_rates() -> None:
    rng = random.Random(4)
    plain = random_script(rng, 50, 0.0, 0.0)
    assert len(plain) == 50
    assert all(t.say in PHRASES and t.barge_in is None for t in plain)
    busy = random_script(rng, 50, 1.0, 1.0)
    assert len(busy) == 100  # a silence before every utterance
    assert all(t.say is None for t in busy[::2])
    assert all(t.barge_in for t in busy[1::2])


def test_live_view_renders_the_run_so_far() -> None:
    metrics = RunMetrics()
    metrics.calls_started = metrics.calls_active = 3
    metrics.turns = 12
    metrics.per_kind["response"].ttfb.record(0.004)
    metrics.violation("stale_frame", "c", "late")
    console = Console(record=True, width=200)
    console.print(LiveView(metrics, "3", console).render())
    text = console.export_text()
    assert "calls 3 active, 0 done of 3" in text
    assert "turns 12" in text
    assert "TTFB p50 4.0 ms" in text
    assert "violations 1" in text


def _response(rid: int, content: str = "x", complete: bool = False) -> Response:
    return Response(response_id=rid, content=content, content_complete=complete)


def test_ledger_plays_only_the_latest_id_until_it_completes() -> None:
    metrics = RunMetrics()
    ledger = Ledger("call", metrics, stale_grace_s=0.025)
    first = ledger.request("response", now=10.0)
    assert ledger.on_response(_response(1, "Hel"), now=10.1)  # first frame: wake up
    assert not ledger.on_response(_response(1, "lo"), now=10.2)
    assert ledger.on_response(_response(1, "!", complete=True), now=10.3)
    assert first.text == "Hello!"
    assert first.completed
    assert metrics.per_kind["response"].ttfb.count == 1
    assert metrics.per_kind["response"].ttc.count == 1
    assert metrics.turns == 1

    ledger.on_response(_response(1, "more"), now=10.4)
    ledger.on_response(_response(7), now=10.5)
    ledger.on_response(_response(-1), now=10.5)
    assert metrics.violations == {"content_after_complete": 1, "unknown_response_id": 2}
    assert metrics.frames_dropped == 3


def test_ledger_superseded_frames_in_flight_or_stale() -> None:
    metrics = RunMetrics()
    ledger = Ledger("call", metrics, stale_grace_s=0.025)
    old = ledger.request("response", now=1.0)
    ledger.on_response(_response(1, "Let me"), now=1.01)
    newer = ledger.request("barge_in", now=2.0)
    assert old.superseded_at == 2.0
    assert newer.id == 2

    ledger.on_response(_response(1, " see"), now=2.02)  # within the grace: in flight
    assert metrics.stale_in_grace == 1
    assert metrics.violations == {}
    ledger.on_response(_response(1, " now"), now=2.03)  # later than the grace
    assert metrics.violations == {"stale_frame": 1}

    ledger.on_response(_response(2, "Sure"), now=2.002)
    ledger.on_response(_response(1, "!"), now=2.004)  # early, but after the newer answer
    assert metrics.violations == {"stale_frame": 2}
    assert "already answered a newer request" in metrics.violation_samples[-1].detail
    assert old.text == "Let me"  # nothing stale was played
    assert metrics.frames_dropped == 3


def test_ledger_interrupt_cancels_the_response_in_flight() -> None:
    metrics = RunMetrics()
    ledger = Ledger("call", metrics, stale_grace_s=0.025)
    assert not ledger.interrupt()  # nothing in flight
    req = ledger.request("response", now=0.0)
    assert ledger.interrupt()
    assert not ledger.on_response(_response(1, "late", complete=True), now=0.1)
    assert req.interrupted
    assert not req.completed
    assert metrics.violations == {}
    assert metrics.frames_dropped == 1
    # A completed request is not superseded by the next one: its late frames are after-complete.
    ledger.request("response", now=1.0)
    ledger.on_response(_response(2, "ok", complete=True), now=1.1)
    ledger.request("response", now=2.0)
    ledger.on_response(_response(2, "again"), now=2.1)
    assert metrics.violations == {"content_after_complete": 1}


def test_partials_are_the_bytes_of_encoding_the_utterance_whole() -> None:
    """A partial is assembled from words encoded one by one: the same bytes as encoding
    the utterance, for every prefix, quotes, escapes and non-ASCII included."""
    transcript = Transcript()
    transcript.add_agent("Hello, how can I help?")
    transcript.commit_user()
    words = ['Say "hi"', "back\\slash", "naïve", "tab\there", "x" * 40, "end."]
    start = transcript.audio_s
    for n in range(1, len(words) + 1):
        transcript.user_says(words, n)
        frame = msgspec.json.decode(transcript.update_only())
        t = int(start * 1000)
        expected = {
            "role": "user",
            "content": " ".join(words[:n]),
            "words": [
                {"word": w, "start": (t + 320 * i) / 1000, "end": (t + 320 * i + 280) / 1000}
                for i, w in enumerate(words[:n])
            ],
        }
        assert frame["transcript"][-1] == expected
        assert transcript.update_only().endswith(b"," + msgspec.json.encode(expected) + b"]}")
