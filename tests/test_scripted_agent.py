"""The scripted agent, driven turn by turn through ``respond`` with the receptionist example."""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.agents.base import Action, Agent, EndCall, Transfer, Turn, TurnKind
from switchboard.agents.loader import load_agent
from switchboard.agents.scripted import FORM_KEY, ScriptedAgent, _Utterance, normalise
from switchboard.agents.templating import Template
from switchboard.config import builtin_example
from switchboard.protocol.inbound import Utterance

_json = msgspec.json


@functools.cache
def load_receptionist() -> ScriptedAgent:
    agent = load_agent(builtin_example("receptionist.yaml"))
    assert isinstance(agent, ScriptedAgent)
    return agent


@pytest.fixture
def receptionist() -> ScriptedAgent:
    return load_receptionist()


class Call:
    """One caller's side of a call: keeps the transcript and, like the session, persists
    ``state`` as JSON between turns (so non-serialisable state would fail here)."""

    def __init__(
        self,
        agent: Agent,
        *,
        dynamic_variables: dict[str, str] | None = None,
        call: dict[str, Any] | None = None,
    ) -> None:
        self.agent = agent
        self.dynamic_variables = dynamic_variables or {}
        self.call = call
        self.transcript: list[Utterance] = []
        self.saved = b"{}"
        self.response_id = 0

    @property
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = _json.decode(self.saved)
        return state

    async def turn(self, kind: TurnKind) -> list[str | Action]:
        state = self.state
        turn = Turn(
            call_id="call-1",
            kind=kind,
            response_id=self.response_id,
            transcript=list(self.transcript),
            state=state,
            call=self.call,
            dynamic_variables=self.dynamic_variables,
        )
        self.response_id += 1
        out = [item async for item in self.agent.respond(turn)]
        self.saved = _json.encode(state)
        spoken = " ".join(item for item in out if isinstance(item, str))
        if spoken:
            self.transcript.append(Utterance(role="agent", content=spoken))
        return out

    async def greet(self) -> list[str | Action]:
        return await self.turn(TurnKind.GREETING)

    async def say(self, text: str) -> list[str | Action]:
        self.transcript.append(Utterance(role="user", content=text))
        return await self.turn(TurnKind.RESPONSE)

    async def hear(self, text: str) -> str:
        """Say ``text`` and return the one spoken chunk of the answer (no actions allowed)."""
        out = await self.say(text)
        assert len(out) == 1, out
        assert isinstance(out[0], str)
        return out[0]


def scripted(**spec: Any) -> ScriptedAgent:
    base: dict[str, Any] = {"greeting": "", "reminder": "Still there?", "fallback": "Sorry?"}
    return ScriptedAgent.from_spec({**base, **spec})


async def test_greeting_uses_the_callers_name_from_dynamic_variables(
    receptionist: ScriptedAgent,
) -> None:
    out = await Call(receptionist, dynamic_variables={"customer_name": "Maria"}).greet()
    assert out == [
        "Hi Maria, thanks for calling Maple Street Clinic. This is Riley. How can I help you today?"
    ]


async def test_greeting_without_the_variable_speaks_its_fallback(
    receptionist: ScriptedAgent,
) -> None:
    out = await Call(receptionist).greet()
    assert isinstance(out[0], str)
    assert out[0].startswith("Hi there, thanks for calling")


def test_only_a_templated_greeting_waits_for_call_details(receptionist: ScriptedAgent) -> None:
    assert receptionist.needs_call_details
    assert not scripted(greeting="Maple Street Clinic, how can I help?").needs_call_details


async def test_empty_greeting_lets_the_caller_speak_first() -> None:
    assert await Call(scripted(greeting="")).greet() == []


@pytest.mark.parametrize(
    ("utterance", "expected"),
    [
        ("What are your opening hours?", "Monday to Friday from 8 AM"),
        ("ARE YOU OPEN ON SATURDAY??", "Saturday from 9 AM to 1 PM"),
        ("What's your address?", "214 Maple Street"),
        ("how do i get there", "214 Maple Street"),
        ("Where can I park?", "free patient parking"),
        ("Do you take insurance?", "most major insurance plans"),
        ("how much is a visit", "a standard visit is 120 dollars"),
        ("Thank you so much.", "anything else I can help you with"),
    ],
)
async def test_each_question_gets_its_answer(
    receptionist: ScriptedAgent, utterance: str, expected: str
) -> None:
    assert expected in await Call(receptionist).hear(utterance)


async def test_asking_for_a_person_speaks_then_transfers(receptionist: ScriptedAgent) -> None:
    out = await Call(receptionist).say("Can I talk to a real person, please?")
    assert out == [
        "Of course. I'll transfer you to our front desk now, please hold for a moment.",
        Transfer("+14155550100"),
    ]


async def test_goodbye_is_spoken_before_the_call_ends(receptionist: ScriptedAgent) -> None:
    out = await Call(receptionist).say("Okay, thanks. Bye!")
    assert out == ["Thank you for calling Maple Street Clinic. Take care, and goodbye!", EndCall()]


async def test_unrecognised_speech_gets_the_fallback(receptionist: ScriptedAgent) -> None:
    reply = await Call(receptionist).hear("The weather is lovely today.")
    assert reply.startswith("Sorry, I didn't quite get that.")


async def test_keywords_match_whole_words_only(receptionist: ScriptedAgent) -> None:
    # "parker" contains "park", "booked" contains "book": neither is the keyword.
    reply = await Call(receptionist).hear("Peter Parker booked nothing")
    assert reply.startswith("Sorry, I didn't quite get that.")


async def test_intents_are_tried_in_file_order(receptionist: ScriptedAgent) -> None:
    # "appointment" is a booking keyword, but changing one is listed first.
    call = Call(receptionist)
    assert await call.hear("I need to cancel my appointment") == (
        "What is the patient's full name?"
    )
    assert call.state[FORM_KEY]["intent"] == "change_appointment"


async def test_booking_collects_every_slot_across_turns_then_confirms(
    receptionist: ScriptedAgent,
) -> None:
    call = Call(receptionist)
    assert await call.hear("I'd like to book an appointment.") == (
        "What is the patient's full name?"
    )
    assert await call.hear("It's Maria Lopez.") == "What day and time would suit you best?"
    assert await call.hear("Next Tuesday at 3:30 PM, if possible.") == (
        "And what is the reason for the visit?"
    )
    confirmation = await call.hear("Um, for a flu shot.")
    assert confirmation.startswith(
        "Thank you, Maria Lopez. You're booked for Next Tuesday at 3:30 PM, for a flu shot."
    )
    state = call.state
    assert state["patient_name"] == "Maria Lopez"
    assert state["day_time"] == "Next Tuesday at 3:30 PM"  # as said, not as normalised
    assert state["reason"] == "a flu shot"
    assert FORM_KEY not in state


async def test_details_given_up_front_are_not_asked_for_again(
    receptionist: ScriptedAgent,
) -> None:
    call = Call(receptionist)
    reply = await call.hear("Hi, my name is Sam Okafor and I want to book for tomorrow at 10 am.")
    assert reply == "And what is the reason for the visit?"
    assert call.state["patient_name"] == "Sam Okafor"
    assert call.state["day_time"] == "tomorrow at 10 am"


async def test_an_unusable_answer_is_asked_for_again(receptionist: ScriptedAgent) -> None:
    call = Call(receptionist)
    await call.hear("Book an appointment, please")
    assert await call.hear("Sure.") == (
        "Sorry, I didn't catch the name. Could you tell me the patient's first and last name?"
    )
    await call.hear("Maria Lopez")
    assert (await call.hear("Whenever works.")).startswith("Sorry, I didn't catch a day.")
    assert "patient_name" in call.state
    assert "day_time" not in call.state


async def test_a_side_question_mid_booking_is_answered_then_the_booking_resumes(
    receptionist: ScriptedAgent,
) -> None:
    call = Call(receptionist)
    await call.hear("I want to schedule a checkup")
    reply = await call.hear("Wait, where do I park?")
    assert reply.startswith("We have free patient parking")
    assert reply.endswith("What is the patient's full name?")
    assert await call.hear("Maria Lopez") == "What day and time would suit you best?"


async def test_a_restated_value_replaces_the_old_one(receptionist: ScriptedAgent) -> None:
    call = Call(receptionist)
    await call.hear("Book me in for Monday please")
    await call.hear("Actually, make it Friday morning")
    assert call.state["day_time"] == "Friday morning"


async def test_asking_for_a_person_mid_booking_leaves_the_form(
    receptionist: ScriptedAgent,
) -> None:
    call = Call(receptionist)
    await call.hear("I'd like an appointment")
    out = await call.say("Just put me through to the front desk.")
    assert out[-1] == Transfer("+14155550100")
    assert FORM_KEY not in call.state


async def test_changing_an_appointment_reuses_the_name_already_given(
    receptionist: ScriptedAgent,
) -> None:
    call = Call(receptionist)
    await call.hear("My name is Maria Lopez, I need to book an appointment.")
    await call.hear("Wednesday afternoon")
    await call.hear("A sore throat")
    assert await call.hear("Sorry, can I reschedule that?") == (
        "Which day is the appointment you'd like to change?"
    )
    reply = await call.hear("It's the one on Wednesday afternoon.")
    assert reply.startswith(
        "Thank you, Maria Lopez. I've passed on your request to change your appointment"
        " on Wednesday afternoon,"
    )


async def test_booking_resumes_on_another_agent_instance(receptionist: ScriptedAgent) -> None:
    call = Call(receptionist)
    await call.hear("Can I book an appointment?")
    await call.hear("Maria Lopez")
    # A reconnect lands on another node: a fresh agent, the same stored state.
    call.agent = load_agent(builtin_example("receptionist.yaml"))
    assert await call.hear("Thursday at noon") == "And what is the reason for the visit?"


async def test_calls_sharing_one_agent_keep_separate_dialogues(
    receptionist: ScriptedAgent,
) -> None:
    first, second = Call(receptionist), Call(receptionist)
    await first.hear("I'd like to book an appointment")
    await second.hear("I'd like to book an appointment")
    await first.hear("Maria Lopez")
    assert await second.hear("Tom Baker") == "What day and time would suit you best?"
    assert first.state["patient_name"] == "Maria Lopez"
    assert second.state["patient_name"] == "Tom Baker"


async def test_reminder_nudges_the_silent_caller(receptionist: ScriptedAgent) -> None:
    call = Call(receptionist)
    await call.greet()
    assert await call.turn(TurnKind.REMINDER) == [
        "Are you still there? Take your time, I'm happy to help whenever you're ready."
    ]


async def test_reminder_mid_booking_repeats_the_pending_question(
    receptionist: ScriptedAgent,
) -> None:
    call = Call(receptionist)
    await call.hear("Book an appointment")
    await call.hear("Maria Lopez")
    [reminder] = await call.turn(TurnKind.REMINDER)
    assert isinstance(reminder, str)
    assert reminder.startswith("Are you still there?")
    assert reminder.endswith("What day and time would suit you best?")


async def test_a_request_after_the_agent_spoke_last_gets_the_fallback(
    receptionist: ScriptedAgent,
) -> None:
    call = Call(receptionist)
    await call.greet()
    [reply] = await call.turn(TurnKind.RESPONSE)
    assert isinstance(reply, str)
    assert reply.startswith("Sorry, I didn't quite get that.")


async def test_a_form_from_an_older_agent_file_is_dropped(receptionist: ScriptedAgent) -> None:
    call = Call(receptionist)
    call.saved = _json.encode({FORM_KEY: {"intent": "retired_intent", "asked": "x"}})
    assert "Monday to Friday" in await call.hear("what are your hours")
    assert FORM_KEY not in call.state


async def test_replies_fill_variables_from_state_dynamic_variables_and_call() -> None:
    agent = scripted(
        intents=[
            {
                "name": "who",
                "keywords": ["who"],
                "reply": "{{ slot }} {{ tier }} {{ from_number }} {{ call_id }} {{ visits }}",
            }
        ]
    )
    call = Call(agent, dynamic_variables={"tier": "gold"}, call={"from_number": "+15551234567"})
    call.saved = _json.encode({"slot": "from-state", "visits": 3})
    assert await call.hear("who am i") == "from-state gold +15551234567 call-1 3"


async def test_state_takes_precedence_over_dynamic_variables() -> None:
    agent = scripted(intents=[{"name": "n", "keywords": ["name"], "reply": "{{ name }}"}])
    call = Call(agent, dynamic_variables={"name": "From Retell"})
    call.saved = _json.encode({"name": "Said On The Call"})
    assert await call.hear("name") == "Said On The Call"


async def test_missing_variables_never_speak_braces() -> None:
    agent = scripted(
        missing_variable="friend",
        intents=[
            {"name": "hi", "keywords": ["hi"], "reply": "Hi {{ name }}, meet {{ other | nobody }}."}
        ],
    )
    call = Call(agent)
    call.saved = _json.encode({"name": {"structured": True}})  # never read aloud as JSON
    assert await call.hear("hi") == "Hi friend, meet nobody."


def test_an_empty_variable_leaves_no_stray_spaces_or_commas() -> None:
    template = Template("Hi {{ name }}, welcome back.")
    assert template.render([{}]) == "Hi, welcome back."
    assert template.render([{"name": "Ada"}]) == "Hi Ada, welcome back."
    assert Template("{{ name }}, welcome.").render([{"name": "  "}]) == "welcome."


def test_variable_values_are_spoken_as_given_not_expanded() -> None:
    template = Template("You said {{ text }}")
    assert template.render([{"text": "{{ secret }}"}]) == "You said {{ secret }}"


def test_normalisation_drops_case_punctuation_and_apostrophes() -> None:
    assert normalise("  What's your ADDRESS?!  It's 3:30 p.m.") == (
        "whats your address its 3 30 p m"
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_utterance_gets_a_spoken_answer_without_braces(text: str) -> None:
    agent = load_receptionist()
    for state in ({}, {FORM_KEY: {"intent": "book", "asked": "patient_name"}}):
        turn = Turn(
            call_id="c",
            kind=TurnKind.RESPONSE,
            response_id=1,
            transcript=[Utterance(role="user", content=text)],
            state=state,
        )
        spoken, _ = agent.reply(turn)
        assert spoken.strip()
        assert "{{" not in spoken
        _json.encode(state)


@given(st.text(max_size=60), st.integers(0, 60), st.integers(0, 60))
def test_captured_words_come_from_what_the_caller_said(text: str, a: int, b: int) -> None:
    said = _Utterance(text)
    assert said.norm == normalise(text)
    start, end = sorted((min(a, len(said.norm)), min(b, len(said.norm))))
    assert said.original(start, end) in text


def _original_by_hand(text: str, start: int, end: int) -> str:
    """The caller's words overlapping ``norm[start:end]``, found word by word."""
    tokens = list(re.finditer(r"[^\W_]+(?:['\u2019][^\W_]+)*", text))
    found = []
    position = 0
    for token in tokens:
        word = token.group().lower().replace("'", "").replace("\u2019", "")
        if position < end and start < position + len(word):
            found.append(token.span())
        position += len(word) + 1
    return text[found[0][0] : found[-1][1]] if found else ""


@given(
    st.text(alphabet=st.sampled_from("ab İß'\u2019_-.,7éΣ"), max_size=40),
    st.integers(0, 60),
    st.integers(0, 60),
)
def test_captured_words_are_exactly_the_words_overlapping_the_match(
    text: str, a: int, b: int
) -> None:
    said = _Utterance(text)
    start, end = sorted((min(a, len(said.norm)), min(b, len(said.norm))))
    assert said.original(start, end) == _original_by_hand(text, start, end)
