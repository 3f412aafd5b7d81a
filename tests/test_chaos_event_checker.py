"""The event pipeline's checker on hand-made evidence: each way the pipeline can lose,
double or hide something fails the verdict with its reason; clean evidence passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.chaos.event_checker import (
    CAPPED_CHARS,
    ArchivedTurn,
    DeadLetterTally,
    EscalationRow,
    EventEvidence,
    TurnKey,
    check_events,
    percentile,
)

GROUPS = ("archive", "analytics", "escalation")


def turns(call_id: str, count: int) -> list[TurnKey]:
    return [TurnKey(call_id, rid) for rid in range(1, count + 1)]


def rows(keys: list[TurnKey], latency_s: float = 0.01) -> list[ArchivedTurn]:
    return [
        ArchivedTurn(
            call_id=k.call_id, response_id=k.response_id, at=100.0, applied_at=100.0 + latency_s
        )
        for k in keys
    ]


def letters(poison: str = "", extra: int = 0) -> list[DeadLetterTally]:
    keys = [poison] if poison else []
    keys += [f"other-{i}" for i in range(extra)]
    return [
        DeadLetterTally(group=g, listed=len(keys), counted=len(keys), keys=keys) for g in GROUPS
    ]


def clean() -> EventEvidence:
    answered = turns("a", 4) + turns("b", 2)
    return EventEvidence(
        answered=answered,
        archived=rows(answered),
        escalations=[
            EscalationRow(call_id="b", rule="asks_for_human", action="transfer", status="done")
        ],
        handoffs={"a": 0, "b": 1},
        escalating_calls=["b"],
        dead_letters=letters("p1"),
        poison_keys=["p1"],
    )


def test_clean_evidence_passes_with_its_figures() -> None:
    f = check_events(clean())
    assert f.passed, f.reasons
    assert (f.answered_turns, f.archived_once, f.not_archived, f.archived_twice) == (6, 6, 0, 0)
    assert (f.escalations_decided, f.escalations_done, f.handoffs_heard) == (1, 1, 1)
    assert f.poison_parked == {"archive": 1, "analytics": 1, "escalation": 1}
    assert (f.dead_letters_listed, f.dead_letters_counted) == (3, 3)
    assert f.latency_p50_ms == f.latency_p99_ms == 10.0


def test_an_answered_turn_missing_from_the_archive_fails() -> None:
    e = clean()
    e.archived = e.archived[1:]
    f = check_events(e)
    assert f.not_archived == 1
    assert "1 answered turns not archived" in f.reasons
    assert "turn 1 of a: answered, not archived" in f.samples


def test_a_turn_archived_twice_fails_but_a_superseded_row_does_not_count() -> None:
    e = clean()
    dup = e.archived[0]
    e.archived.append(ArchivedTurn(call_id=dup.call_id, response_id=dup.response_id))
    assert check_events(e).archived_twice == 1
    e = clean()
    e.archived.append(ArchivedTurn(call_id="a", response_id=1, superseded=True))
    assert check_events(e).passed


def test_archived_turns_the_callers_never_saw_completed_are_counted_not_failed() -> None:
    e = clean()
    e.archived += rows([TurnKey("a", 9)])
    f = check_events(e)
    assert f.archived_unanswered == 1
    assert f.passed, f.reasons


def test_escalations_must_be_heard_exactly_once_and_never_stay_pending() -> None:
    e = clean()
    e.handoffs["b"] = 2
    assert "1 calls handed over more than once" in check_events(e).reasons
    e = clean()
    e.handoffs["b"] = 0
    assert "1 escalations recorded done that no caller heard" in check_events(e).reasons
    e = clean()
    e.escalations = [EscalationRow(call_id="b", rule="r", action="transfer", status="pending")]
    e.handoffs["b"] = 0
    assert "1 escalations never carried out (still pending)" in check_events(e).reasons
    e = clean()
    e.handoffs["a"] = 1
    assert "1 handoffs no done escalation explains" in check_events(e).reasons


def test_an_escalation_that_failed_because_the_call_was_over_is_counted_not_failed() -> None:
    e = clean()
    e.escalations = [
        EscalationRow(call_id="b", rule="r", action="transfer", status="failed", detail="not live")
    ]
    e.handoffs["b"] = 0
    f = check_events(e)
    assert f.escalations_failed == 1
    assert f.passed, f.reasons
    e.escalations = []
    f = check_events(e)
    assert f.escalations_not_decided == 1
    assert f.passed, f.reasons


def test_every_dead_letter_must_be_counted_and_the_poison_parked_once_per_service() -> None:
    e = clean()
    e.dead_letters[1].counted = 0
    assert "analytics: 1 dead letters listed, 0 counted" in check_events(e).reasons
    e = clean()
    e.dead_letters[2].counted = None
    assert "escalation: its /metrics could not be read" in check_events(e).reasons
    e = clean()
    e.dead_letters[0] = DeadLetterTally(group="archive", listed=0, counted=0, keys=[])
    assert "archive: 0 poison messages parked, 1 written" in check_events(e).reasons
    e = clean()
    e.dead_letters[0] = DeadLetterTally(group="archive", listed=2, counted=2, keys=["p1", "p1"])
    assert "archive: 2 poison messages parked, 1 written" in check_events(e).reasons


def test_gaps_and_dropped_events_are_losses() -> None:
    e = clean()
    e.dead_letters[0].gaps = 3
    e.node_dropped = 2
    reasons = check_events(e).reasons
    assert "3 bus entries lost before a service read them (gaps)" in reasons
    assert "2 events dropped by a node's outbox" in reasons


def test_an_oversized_turn_must_be_archived_once_cut_to_the_cap() -> None:
    e = clean()
    big = TurnKey("big", 1)
    e.answered.append(big)
    e.oversized = [big]
    e.archived.append(
        ArchivedTurn(
            call_id="big", response_id=1, at=1.0, applied_at=1.1, caller_chars=CAPPED_CHARS
        )
    )
    f = check_events(e)
    assert f.oversized_capped == 1
    assert f.passed, f.reasons
    e.archived[-1] = ArchivedTurn(call_id="big", response_id=1, caller_chars=600_000)
    assert "1 oversized turns not archived once, cut to the cap" in check_events(e).reasons


def test_services_that_never_caught_up_fail_the_run() -> None:
    e = clean()
    e.caught_up = False
    e.settle_s = 120.0
    assert "the services had not caught up 120 s after the calls ended" in check_events(e).reasons


def test_latency_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None
    e = clean()
    e.archived = rows(e.answered[:5], 0.01) + rows(e.answered[5:], 2.0)
    f = check_events(e)
    assert (f.latency_p50_ms, f.latency_p99_ms, f.latency_max_ms) == (10.0, 2000.0, 2000.0)


def test_the_poison_message_is_ours_by_its_headers_and_never_decodes() -> None:
    from switchboard.chaos.nemesis import poison_message
    from switchboard.events.codec import MalformedEvent, decode

    message = poison_message("chaos-poison-1")
    assert message.key == b"chaos-poison-1"
    with pytest.raises(MalformedEvent) as caught:
        decode(message)
    assert caught.value.reason == "malformed"


def test_the_evidence_is_read_where_the_services_argv_says(tmp_path: Path) -> None:
    from switchboard.chaos.event_evidence import EvidenceError, pipeline_parts
    from switchboard.chaos.processes import ClusterProcess
    from switchboard.cluster.plan import ClusterState, NodeInfo, ProcessInfo

    def proc(name: str, *argv: str) -> ClusterProcess:
        return ClusterProcess(
            name=name, pid=1, argv=["switchboard", *argv], env={}, cwd=str(tmp_path)
        )

    state = ClusterState(
        url="ws://127.0.0.1:1/llm-websocket",
        webhook_url="http://127.0.0.1:1/webhook",
        redis_url=None,
        profile="event-driven",
        nodes=[NodeInfo(pid=1, port=9001, node_id="node-1")],
        haproxy=ProcessInfo(pid=1, port=1),
        service_metrics={"analytics": "http://127.0.0.1:8090/metrics"},
    )
    processes = {
        "archive": proc(
            "archive", "service", "archive", "--db", "a/archive.db", "--metrics-port", "9101"
        ),
        "analytics": proc("analytics", "service", "analytics", "--db", "/abs/analytics.db"),
        "escalation": proc(
            "escalation", "service", "escalation", "--db", "e.db", "--dead-letters", "/dl/esc.db"
        ),
    }
    parts = pipeline_parts(state, processes)
    assert parts.archive_db == tmp_path / "a" / "archive.db"
    assert parts.escalation_db == tmp_path / "e.db"
    assert parts.dead_letters == {
        "archive": tmp_path / "a" / "archive-dead-letters.db",
        "analytics": Path("/abs/analytics-dead-letters.db"),
        "escalation": Path("/dl/esc.db"),
    }
    assert parts.service_metrics == {
        "archive": "http://127.0.0.1:9101/metrics",
        "analytics": "http://127.0.0.1:8090/metrics",
    }
    assert parts.node_metrics == ["http://127.0.0.1:9001/metrics"]
    processes["archive"] = proc("archive", "service", "archive", "--db", "postgresql://db/x")
    with pytest.raises(EvidenceError, match="SQLite archive"):
        pipeline_parts(state, processes)
