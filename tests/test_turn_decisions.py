"""The turn's decisions, pure: the supersession gate, the action-to-frame mapping and the
inputs of a turn. No socket, no task, no store; each test names the incident it prevents."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from switchboard.agents.base import (
    EndCall,
    FromCache,
    Interrupt,
    NoCache,
    NoInterruption,
    PressDigit,
    SendMetadata,
    ToolCallFinished,
    ToolCallStarted,
    Transfer,
    TurnKind,
    UpdateAgent,
)
from switchboard.calls import frames
from switchboard.calls.completion import closing_words, commit
from switchboard.calls.generation import Generation
from switchboard.calls.supersession import DROP, START, admit
from switchboard.calls.turn_input import dynamic_variables, under_way, working_copy
from switchboard.state.base import CallState, LastReply

RESPONSE = TurnKind.RESPONSE
REMINDER = TurnKind.REMINDER
GREETING = TurnKind.GREETING


def gen(response_id: int, kind: TurnKind = RESPONSE, *, completed: bool = False) -> Generation:
    g = Generation(response_id, kind)
    g.completed = completed
    return g


def decode(frame: str) -> dict[str, object]:
    decoded: dict[str, object] = msgspec.json.decode(frame)
    return decoded


# ---------------------------------------------------------------- the supersession gate


def test_a_first_request_starts_without_superseding_anything() -> None:
    assert admit(None, None, 1, RESPONSE) is START


def test_a_request_after_a_completed_turn_supersedes_nothing() -> None:
    assert admit(gen(1, completed=True), None, 2, RESPONSE) is START


def test_a_newer_request_supersedes_the_open_one() -> None:
    decision = admit(gen(1), None, 2, RESPONSE)
    assert decision.start
    assert decision.supersede
    assert not decision.greeted
    assert decision.close_first is None
    assert decision.replay is None


def test_a_request_resent_while_it_is_answered_is_dropped_not_answered_twice() -> None:
    assert admit(gen(3), None, 3, RESPONSE) is DROP


def test_a_reminder_with_the_id_of_the_open_response_supersedes_it() -> None:
    decision = admit(gen(3, RESPONSE), None, 3, REMINDER)
    assert decision.start
    assert decision.supersede


def test_an_undecodable_frame_with_the_open_id_is_answered_again() -> None:
    decision = admit(gen(3), None, 3, RESPONSE, undecodable=True)
    assert decision.start
    assert decision.supersede


def test_a_barge_in_on_the_greeting_still_counts_the_call_as_greeted() -> None:
    decision = admit(gen(0, GREETING), None, 1, RESPONSE)
    assert decision.supersede
    assert decision.greeted
    assert decision.close_first is None


def test_an_id_that_went_backwards_closes_the_open_one_first() -> None:
    decision = admit(gen(5), None, 4, RESPONSE)
    assert decision.supersede
    assert decision.close_first == 5


def test_a_completed_request_resent_after_a_reconnect_is_replayed_from_the_saved_reply() -> None:
    saved = LastReply(response_id=2, content="See you Tuesday.", end_call=True)
    decision = admit(None, saved, 2, RESPONSE)
    assert decision.start
    assert decision.replay is saved
    assert not decision.supersede


def test_a_request_with_another_id_than_the_saved_reply_is_generated() -> None:
    saved = LastReply(response_id=2, content="See you Tuesday.")
    assert admit(None, saved, 3, RESPONSE) is START


def test_an_undecodable_frame_is_never_replayed() -> None:
    saved = LastReply(response_id=2, content="See you Tuesday.")
    assert admit(None, saved, 2, RESPONSE, undecodable=True) is START


def test_a_replay_that_supersedes_an_open_turn_says_both() -> None:
    saved = LastReply(response_id=2, content="See you Tuesday.")
    decision = admit(gen(3), saved, 2, RESPONSE)
    assert decision.supersede
    assert decision.replay is saved
    assert decision.close_first == 3


# ---------------------------------------------------------------- actions to frames


def test_end_call_wins_over_transfer_and_digits() -> None:
    g = gen(1)
    for action in (PressDigit("9"), Transfer("+14155550100", True), EndCall()):
        assert frames.record(g, action) is False
    assert frames.chosen_action(g) == (True, None, None)
    final = decode(frames.final_frame(g, ""))
    assert final["end_call"] is True
    assert "transfer_number" not in final
    assert "digit_to_press" not in final


def test_transfer_wins_over_digits_and_carries_its_caller_id_flag() -> None:
    g = gen(1)
    frames.record(g, PressDigit("9"))
    frames.record(g, Transfer("+14155550100", show_transferee_as_caller=True))
    final = decode(frames.final_frame(g, ""))
    assert final["transfer_number"] == "+14155550100"
    assert final["show_transferee_as_caller"] is True
    assert "digit_to_press" not in final
    assert "end_call" not in final


def test_digits_alone_ride_on_the_final_frame() -> None:
    g = gen(1)
    frames.record(g, PressDigit("1"))
    final = decode(frames.final_frame(g, ""))
    assert final == {
        "response_type": "response",
        "response_id": 1,
        "content": "",
        "content_complete": True,
        "digit_to_press": "1",
    }


def test_no_interruption_flags_every_later_chunk_and_the_final_frame() -> None:
    g = gen(1)
    assert decode(frames.chunk_frame(g, "a")).get("no_interruption_allowed") is None
    frames.record(g, NoInterruption())
    assert decode(frames.chunk_frame(g, "b"))["no_interruption_allowed"] is True
    assert decode(frames.final_frame(g, ""))["no_interruption_allowed"] is True


def test_cache_markers_send_nothing() -> None:
    g = gen(1)
    assert frames.record(g, NoCache()) is False
    assert frames.record(g, FromCache("exact")) is False
    assert g.cache_hit


@pytest.mark.parametrize(
    ("action", "response_type"),
    [
        (ToolCallStarted("t1", "lookup", "{}"), "tool_call_invocation"),
        (ToolCallFinished("t1", "found", True), "tool_call_result"),
        (Interrupt("One moment."), "agent_interrupt"),
        (UpdateAgent(responsiveness=0.5), "update_agent"),
        (SendMetadata({"screen": "booking"}), "metadata"),
    ],
)
def test_side_actions_are_frames_of_their_own(action: object, response_type: str) -> None:
    g = gen(1)
    assert frames.record(g, action) is True  # type: ignore[arg-type]
    assert decode(frames.side_frame(action, 7))["response_type"] == response_type  # type: ignore[arg-type]


def test_an_interrupt_takes_the_id_it_is_given() -> None:
    frame = decode(frames.side_frame(Interrupt("Hold on.", end_call=True), 3))
    assert frame["interrupt_id"] == 3
    assert frame["end_call"] is True


def test_a_value_an_agent_may_not_yield_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        frames.side_frame(42, 1)  # type: ignore[arg-type]


def test_a_command_interrupt_that_ends_the_call_drops_the_transfer() -> None:
    frame = decode(frames.command_interrupt(2, "Goodbye.", "+14155550100", True))
    assert frame["end_call"] is True
    assert "transfer_number" not in frame


def test_the_saved_reply_replays_to_the_same_final_frame() -> None:
    g = gen(4)
    g.reply.extend(["Transferring ", "you."])
    frames.record(g, NoInterruption())
    frames.record(g, PressDigit("2"))
    frames.record(g, Transfer("+14155550100", True))
    saved = frames.last_reply(g)
    assert saved.content == "Transferring you."
    assert saved.digit_to_press is None  # only the action Retell would run is kept
    again = gen(4)
    frames.replay(again, saved)
    assert frames.final_frame(again, "") == frames.final_frame(g, "")
    assert frames.chunk_frame(again, "x") == frames.chunk_frame(g, "x")


# ---------------------------------------------------------------- how a turn ends


def test_a_turn_that_failed_before_speaking_ends_with_the_fallback_not_silence() -> None:
    g = gen(1)
    assert closing_words(g, "agent_error", "Sorry?") == "Sorry?"
    assert g.reply == ["Sorry?"]  # saved as what was said


def test_a_turn_that_failed_after_speaking_ends_as_it_is() -> None:
    g = gen(1)
    g.spoken = True
    assert closing_words(g, "turn_timeout", "Sorry?") == ""
    assert closing_words(gen(2), None, "Sorry?") == ""


def test_a_failed_turn_counts_but_leaves_the_custom_state_untouched() -> None:
    state = CallState(call_id="c", state={"step": 1})
    g = gen(3)
    g.reply.append("Sorry?")
    commit(state, g, {"step": 2, "poisoned": True}, "agent_error")
    assert state.state == {"step": 1}
    assert state.turns == 1
    assert state.last_response_id == 3
    assert state.last_reply is not None
    assert state.last_reply.content == "Sorry?"


def test_a_completed_greeting_marks_the_call_greeted_without_counting_a_turn() -> None:
    state = CallState(call_id="c")
    commit(state, gen(0, GREETING), {"name": "Priya"}, None)
    assert state.greeted
    assert state.turns == 0
    assert state.state == {"name": "Priya"}


# ---------------------------------------------------------------- the inputs of a turn


def test_the_working_copy_shares_nothing_with_the_call_state() -> None:
    state: dict[str, Any] = {"slots": {"name": "Priya"}, "count": 1}
    copy = working_copy(state)
    copy["slots"]["name"] = "changed"
    assert state["slots"]["name"] == "Priya"


def test_dynamic_variables_of_a_call_without_them_are_empty() -> None:
    assert dynamic_variables(None) == {}
    assert dynamic_variables({"retell_llm_dynamic_variables": "junk"}) == {}
    assert dynamic_variables({"retell_llm_dynamic_variables": {"a": "b"}}) == {"a": "b"}


def test_a_call_started_long_ago_or_talked_in_is_under_way() -> None:
    now_ms = 1_000_000.0
    assert not under_way(None, 5.0, now_ms)
    assert under_way({"transcript": "hi"}, 5.0, now_ms)
    assert under_way({"start_timestamp": now_ms - 6_000}, 5.0, now_ms)
    assert not under_way({"start_timestamp": now_ms - 1_000}, 5.0, now_ms)
    assert not under_way({"start_timestamp": True}, 5.0, now_ms)
