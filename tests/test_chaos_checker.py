"""The chaos checker on hand-made histories: each verdict reason can fail a run, and a
clean history passes. No cluster, no sockets: the checker is a pure function."""

from __future__ import annotations

from switchboard.chaos.checker import Limits, check, control_clean, is_question, recoveries
from switchboard.chaos.history import CallResult, FaultEvent, History, SocketEvent, TurnEvent

ASK_NAME = "What is the patient's full name?"
ASK_DAY = "What day and time would suit you best?"
HOURS = "We're open Monday to Friday from 8 AM to 6 PM."
T0 = 1_000.0


def call(number: int, replies: list[str], **kw: object) -> CallResult:
    fields: dict[str, object] = {
        "call": number,
        "call_id": f"c{number}",
        "reason": "user_hangup",
        "failed": False,
        "replies": replies,
        "completed": [True] * len(replies),
        "planned_turns": len(replies),
    }
    fields.update(kw)
    return CallResult(**fields)  # type: ignore[arg-type]


def history(calls: list[CallResult], **kw: object) -> History:
    return History(seed=1, started_at=T0, ended_at=T0 + 30, calls=calls, **kw)  # type: ignore[arg-type]


def control() -> History:
    return history([call(0, [ASK_NAME, ASK_DAY, HOURS]), call(1, [HOURS, HOURS])])


def test_a_history_equal_to_control_passes() -> None:
    findings = check(control(), control())
    assert findings.passed, findings.reasons
    assert findings.reasons == []
    assert findings.turns_answered == 5


def test_a_failed_call_is_a_lost_call() -> None:
    run = history(
        [
            call(0, [ASK_NAME], failed=True, reason="error_llm_websocket_lost_connection"),
            call(1, [HOURS, HOURS]),
        ]
    )
    findings = check(run, control())
    assert findings.calls_lost == 1
    assert not findings.passed
    assert "1 calls lost" in findings.reasons


def test_a_greeting_spoken_again_fails() -> None:
    run = history(
        [call(0, [ASK_NAME, ASK_DAY, HOURS], repeated_greetings=1), call(1, [HOURS, HOURS])]
    )
    findings = check(run, control())
    assert findings.second_greetings == 1
    assert "1 second greetings" in findings.reasons


def test_asking_again_for_a_name_already_given_is_a_repeated_question() -> None:
    run = history([call(0, [ASK_NAME, ASK_NAME, HOURS]), call(1, [HOURS, HOURS])])
    findings = check(run, control())
    assert findings.repeated_questions == 1
    assert findings.replies_differing == 1  # the same turn, seen as a differing reply too
    assert "1 repeated questions" in findings.reasons


def test_a_repeat_the_control_run_makes_too_is_not_a_repeated_question() -> None:
    same = history([call(0, [ASK_DAY, ASK_DAY])])
    findings = check(same, same)
    assert findings.repeated_questions == 0
    assert findings.passed


def test_a_repeated_statement_is_not_a_question() -> None:
    assert not is_question(HOURS)
    assert is_question(ASK_NAME + "  ")
    run = history([call(1, [HOURS, HOURS])])
    assert check(run, None).repeated_questions == 0


def test_a_reply_unlike_the_control_runs_fails() -> None:
    run = history([call(0, [ASK_NAME, HOURS, HOURS]), call(1, [HOURS, HOURS])])
    findings = check(run, control())
    assert findings.replies_differing == 1
    assert "1 replies differing from control" in findings.reasons
    assert any("call 0 turn 2" in s for s in findings.samples)


def test_a_turn_without_content_complete_is_unanswered() -> None:
    run = history(
        [
            call(0, [ASK_NAME, ASK_DAY, ""], completed=[True, True, False]),
            call(1, [HOURS, HOURS]),
        ]
    )
    findings = check(run, control())
    assert findings.unanswered_turns == 1
    assert "1 unanswered turns" in findings.reasons


def test_a_call_that_ends_early_without_failing_leaves_turns_unanswered() -> None:
    run = history([call(0, [ASK_NAME], reason="agent_hangup"), call(1, [HOURS, HOURS])])
    assert check(run, control()).unanswered_turns == 2


def test_a_call_the_nemesis_hung_up_owes_no_more_turns() -> None:
    run = history([call(0, [ASK_NAME], hung_up=True), call(1, [HOURS, HOURS])])
    findings = check(run, control())
    assert findings.unanswered_turns == 0
    assert findings.passed, findings.reasons


def test_protocol_violations_fail_but_greetings_are_counted_once() -> None:
    run = history(control().calls, violations={"stale_frame": 2, "repeated_greeting": 1})
    findings = check(run, control())
    assert findings.violations == {"stale_frame": 2}
    assert "protocol violations: stale_frame 2" in findings.reasons


def test_a_fault_not_carried_out_fails() -> None:
    fault = FaultEvent(
        kind="redis-restart", target="redis", started_at=T0 + 5, ok=False, detail="no binary"
    )
    run = history(control().calls, faults=[fault])
    findings = check(run, control())
    assert findings.reasons == ["fault redis-restart on redis was not carried out: no binary"]


def test_an_unclean_control_run_fails_the_run() -> None:
    bad = history([call(0, [ASK_NAME], failed=True, reason="error_llm_websocket_open")])
    findings = check(history([call(0, [ASK_NAME])]), bad)
    assert not findings.passed
    assert "control run was not clean" in findings.reasons[0]


def kill_at(at: float, ended: float | None = None) -> FaultEvent:
    return FaultEvent(kind="kill", target="node-1", started_at=at, ended_at=ended)


def lost(number: int, at: float, reopened: float | None, greeted: bool = False) -> SocketEvent:
    return SocketEvent(
        call=number, cause="abnormal", lost_at=at, reopened_at=reopened, begin_empty=not greeted
    )


def asked(number: int, at: float, answered: float | None, rid: int = 2) -> TurnEvent:
    return TurnEvent(
        call=number, response_id=rid, kind="response", asked_at=at, answered_at=answered
    )


def test_recovery_runs_from_the_kill_until_the_new_socket_serves_a_turn_pauses_left_out() -> None:
    run = history(
        control().calls,
        faults=[kill_at(T0 + 10, T0 + 13)],
        sockets=[lost(0, T0 + 10.1, T0 + 10.3), lost(1, T0 + 10.1, T0 + 11.2)],
        turns=[
            # re-asked at once on the new socket
            asked(0, T0 + 10.3, T0 + 10.6),
            # the caller was thinking: asked 3 s after its socket was back, answered in 0.3 s
            asked(1, T0 + 14.2, T0 + 14.5),
        ],
    )
    [r] = recoveries(run)
    assert r.touched_calls == 2
    assert r.recovery_s == 1.5  # reopened at 11.2, then 0.3 s to answer
    assert check(run, control()).passed


def test_a_slow_recovery_fails() -> None:
    run = history(
        control().calls,
        faults=[kill_at(T0 + 10)],
        sockets=[lost(0, T0 + 10.1, T0 + 21.8)],
        turns=[asked(0, T0 + 21.8, T0 + 22)],
    )
    findings = check(run, control(), Limits(max_recovery_s=5.0))
    assert findings.reasons == ["after kill on node-1: recovered in 12.0 s > 5 s"]


def test_a_pause_is_allowed_its_own_length_before_it_counts_as_slow() -> None:
    pause = FaultEvent(
        kind="redis-pause", target="redis", param=4.0, started_at=T0 + 10, ended_at=T0 + 14
    )
    turn = TurnEvent(call=0, response_id=2, kind="response", asked_at=T0 + 11, answered_at=T0 + 17)
    run = history(control().calls, faults=[pause], turns=[turn])
    [r] = recoveries(run)
    assert r.recovery_s == 6.0  # held from its asking (1 s into the pause) to its answer
    assert check(run, control(), Limits(max_recovery_s=5.0)).passed
    assert not check(run, control(), Limits(max_recovery_s=1.0)).passed


def test_a_call_that_never_answers_again_after_a_fault_is_unrecovered() -> None:
    run = history(
        [call(0, [ASK_NAME], failed=True, reason="error_llm_websocket_lost_connection")],
        faults=[kill_at(T0 + 10)],
        sockets=[SocketEvent(call=0, cause="abnormal", lost_at=T0 + 10.1)],
    )
    [r] = recoveries(run)
    assert r.unrecovered_calls == 1
    assert r.recovery_s is None
    assert (
        "after kill on node-1: 1 calls never had a turn answered again" in check(run, None).reasons
    )


def test_a_call_lost_after_its_last_turn_has_nothing_to_recover() -> None:
    run = history(
        [call(0, [ASK_NAME])],
        faults=[kill_at(T0 + 10)],
        turns=[
            TurnEvent(call=0, response_id=1, kind="response", asked_at=T0 + 2, answered_at=T0 + 3)
        ],
        sockets=[SocketEvent(call=0, cause="abnormal", lost_at=T0 + 10.1)],
    )
    [r] = recoveries(run)
    assert r.touched_calls == 0
    assert r.unrecovered_calls == 0


def test_a_turn_in_flight_at_the_kill_recovers_when_it_is_answered() -> None:
    run = history(
        control().calls,
        faults=[kill_at(T0 + 10, T0 + 14)],
        turns=[
            TurnEvent(
                call=1, response_id=1, kind="response", asked_at=T0 + 9.9, answered_at=T0 + 10.4
            ),
            # asked while the node restarted, on another node: not touched by the kill
            TurnEvent(
                call=0, response_id=1, kind="response", asked_at=T0 + 12, answered_at=T0 + 12.1
            ),
        ],
    )
    [r] = recoveries(run)
    assert r.touched_calls == 1
    assert r.recovery_s == 0.4


def test_a_second_greeting_is_put_down_to_the_fault_that_lost_its_socket() -> None:
    run = history(
        [call(0, [ASK_NAME, ASK_DAY, HOURS], repeated_greetings=1), call(1, [HOURS, HOURS])],
        faults=[
            kill_at(T0 + 10),
            FaultEvent(kind="redis-restart", target="redis", started_at=T0 + 20),
        ],
        sockets=[
            SocketEvent(
                call=0, cause="abnormal", lost_at=T0 + 21, answered_at=T0 + 21.5, begin_empty=False
            ),
            SocketEvent(
                call=1, cause="abnormal", lost_at=T0 + 10.2, answered_at=T0 + 10.5, begin_empty=True
            ),
        ],
    )
    kill, restart = recoveries(run)
    assert (kill.second_greetings, restart.second_greetings) == (0, 1)


def test_a_call_handed_over_owes_no_more_turns_nor_the_one_in_flight() -> None:
    """The escalation service transfers a call while its third turn is in flight: that
    turn and the rest of the script are not owed, in the chaos run or in the control."""
    handed = call(0, ["A?", "B."], transferred=True, handoffs=1)
    handed.replies.append("")
    handed.completed.append(False)
    full = history([call(0, ["A?", "B.", "C.", "D."])])
    findings = check(history([handed]), full)
    assert findings.unanswered_turns == 0, findings.samples
    assert findings.passed, findings.reasons
    twin = call(0, ["A?", ""], transferred=True)
    twin.completed[-1] = False
    assert control_clean(history([twin]))
    # an unanswered turn before the handover still counts
    early = call(0, ["A?", "", "C."], transferred=True)
    early.completed[1] = False
    assert check(history([early]), full).unanswered_turns == 1


def test_a_repeat_past_the_turn_where_the_control_call_was_handed_over_is_not_judged() -> None:
    """The escalation service handed the control call over after its second turn; the
    chaos call, handed over later, repeats the agent's fallback question at turn 4. The
    control run cannot say whether the agent repeats itself there."""
    fallback = "Sorry, I didn't quite get that. What would you like to do?"
    chaos_call = call(0, [fallback, fallback, HOURS, fallback], transferred=True)
    twin = call(0, [fallback, fallback], transferred=True)
    findings = check(history([chaos_call]), history([twin]))
    assert findings.repeated_questions == 0, findings.samples
    assert findings.passed, findings.reasons
    # a control call that was not handed over still judges the turns it never reached
    short = call(0, [fallback, fallback])
    assert check(history([chaos_call]), history([short])).repeated_questions == 1
