"""The OpenAI agent against the fake server: real SDK, real sockets, real cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import openai
import pytest
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction

from switchboard.agents.agent_file import AgentFileError
from switchboard.agents.base import (
    Action,
    ToolCallFinished,
    ToolCallStarted,
    Transfer,
    Turn,
    TurnKind,
)
from switchboard.agents.chat_messages import accumulate
from switchboard.agents.loader import load_agent
from switchboard.agents.openai_agent import (
    DEFAULT_REMINDER,
    TOOL_TEMPERATURE,
    OpenAIAgent,
    OpenAIAgentError,
)
from switchboard.agents.receptionist_tools import bookings
from switchboard.agents.tools import (
    Tool,
    ToolContext,
    ToolError,
    idempotency_key,
    load_tool,
    tool,
)
from switchboard.config import builtin_example
from switchboard.protocol.inbound import Utterance
from switchboard.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.fixtures.ports import free_port
from tests.fixtures.server import retell, spoken

TIMEOUT = 10.0
REPLY = "Thanks for calling. Dr. Patel is in at 9:30 on Tuesday. Would that suit you?"

# Tools the tests declare, recording what they saw.
seen: list[ToolContext] = []


@tool(say="One moment.")
async def look_up(context: ToolContext, topic: Annotated[str, "What to look up."]) -> str:
    """Look something up for the caller."""
    seen.append(context)
    context.state["looked_up"] = [*context.state.get("looked_up", []), topic]
    return f"Found {topic}."


@tool
def broken(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"backend down ({reason})")


@tool
async def hand_over() -> Transfer:
    """Transfer the caller."""
    return Transfer("+14155550100")


def turn(
    *user_lines: str,
    kind: TurnKind = TurnKind.RESPONSE,
    call_id: str = "call-1",
    state: dict[str, Any] | None = None,
    **extra: Any,
) -> Turn:
    transcript = [Utterance("agent", "Maple Street Clinic, how can I help?")]
    transcript += [Utterance("user", line) for line in user_lines]
    return Turn(
        call_id=call_id,
        kind=kind,
        response_id=1,
        transcript=transcript,
        state={} if state is None else state,
        **extra,
    )


@pytest.fixture(autouse=True)
def _forget_seen_tool_calls() -> None:
    seen.clear()


@pytest.fixture
async def agent(fake_llm: FakeLLMServer) -> AsyncIterator[OpenAIAgent]:
    made = OpenAIAgent(
        model="fake-model",
        system_prompt="You are Riley at {{ clinic | the clinic }}.",
        greeting="Hi {{ customer_name | there }}, this is Riley.",
        tools=[look_up, broken, hand_over],
        max_retries=0,
    )
    yield made
    await made.aclose()


async def collect(agent: OpenAIAgent, a_turn: Turn) -> list[str | Action]:
    async with contextlib.aclosing(agent.respond(a_turn)) as items:
        return [item async for item in items]


def texts(items: list[str | Action]) -> list[str]:
    return [item for item in items if isinstance(item, str)]


# Streaming text


async def test_reply_is_streamed_in_sentences(agent: OpenAIAgent, fake_llm: FakeLLMServer) -> None:
    fake_llm.config = FakeLLMConfig(reply=REPLY)
    items = await collect(agent, turn("Can I see a doctor?"))
    assert items == [
        "Thanks for calling. ",
        "Dr. Patel is in at 9:30 on Tuesday. ",
        "Would that suit you?",
    ]
    assert fake_llm.stats.completed == 1


async def test_first_sentence_is_yielded_while_the_model_is_still_generating(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    fake_llm.config = FakeLLMConfig(reply=REPLY, token_ms=20, tokens=400)
    async with contextlib.aclosing(agent.respond(turn("Hello?"))) as items:
        first = await anext(items)
        assert first == "Thanks for calling. "
        assert fake_llm.stats.completed == 0  # hundreds of tokens still to come
    # Closing the generator early closes the upstream stream.
    await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)


async def test_request_carries_prompt_date_transcript_and_model(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    a_turn = turn("I need an appointment.", dynamic_variables={"clinic": "Maple Street"})
    a_turn.transcript = [*a_turn.transcript, Utterance("transfer_target", "Hello, front desk.")]
    await collect(agent, a_turn)
    request = fake_llm.stats.last_request
    assert request["model"] == "fake-model"
    assert request["stream"] is True
    system = request["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are Riley at Maple Street.\n\nCurrent date and time: ")
    assert system["content"].endswith("(UTC).")
    assert request["messages"][1:] == [
        {"role": "assistant", "content": "Maple Street Clinic, how can I help?"},
        {"role": "user", "content": "I need an appointment."},
        {"role": "user", "content": "Hello, front desk."},
    ]
    assert request["temperature"] == TOOL_TEMPERATURE  # tools offered: low temperature
    assert [t["function"]["name"] for t in request["tools"]] == ["look_up", "broken", "hand_over"]


async def test_without_tools_no_tools_and_no_temperature_are_sent(fake_llm: FakeLLMServer) -> None:
    plain = OpenAIAgent(model="m", system_prompt="Be brief.", timezone="America/New_York")
    try:
        assert texts(await collect(plain, turn("hi"))) == [
            "Sure, I can help with that. ",
            "What day and time would suit you best?",
        ]
    finally:
        await plain.aclose()
    request = fake_llm.stats.last_request
    assert "tools" not in request
    assert "temperature" not in request
    assert request["messages"][0]["content"].endswith("(America/New_York).")


async def test_one_client_is_shared_by_every_call_and_closed_by_aclose(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    client = agent.client()
    await asyncio.gather(*(collect(agent, turn("hi", call_id=f"c{n}")) for n in range(20)))
    assert agent.client() is client
    assert fake_llm.stats.completed == 20
    await agent.aclose()
    assert client.is_closed()


# Greeting and reminder


async def test_greeting_is_templated_and_never_calls_the_model(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    greeting = turn(kind=TurnKind.GREETING, dynamic_variables={"customer_name": "Maria"})
    assert await collect(agent, greeting) == ["Hi Maria, this is Riley."]
    assert await collect(agent, turn(kind=TurnKind.GREETING)) == ["Hi there, this is Riley."]
    assert agent.needs_call_details  # the greeting uses a variable
    assert fake_llm.stats.requests == 0


async def test_empty_greeting_lets_the_caller_speak_first(fake_llm: FakeLLMServer) -> None:
    silent = OpenAIAgent(model="m", system_prompt="Be brief.")
    assert await collect(silent, turn(kind=TurnKind.GREETING)) == []
    assert not silent.needs_call_details
    assert fake_llm.stats.requests == 0


async def test_reminder_asks_the_model_for_a_nudge_without_tools(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    fake_llm.config = FakeLLMConfig(reply="Are you still there?")
    items = await collect(agent, turn("book an appointment", kind=TurnKind.REMINDER))
    assert items == ["Are you still there?"]
    request = fake_llm.stats.last_request
    assert request["messages"][-1] == {"role": "system", "content": DEFAULT_REMINDER}
    assert "tools" not in request


# Tools


async def test_tool_call_round_trip(agent: OpenAIAgent, fake_llm: FakeLLMServer) -> None:
    state: dict[str, Any] = {"caller": "known"}
    directive = """Tell me about parking [fake: tool=look_up args='{"topic": "parking"}']"""
    items = await collect(agent, turn(directive, call_id="call-7", state=state))
    started, holding, finished, *spoken = items
    assert isinstance(started, ToolCallStarted)
    assert (started.name, started.arguments) == ("look_up", '{"topic":"parking"}')
    assert holding == "One moment. "
    assert finished == ToolCallFinished(started.tool_call_id, "Found parking.", True)
    assert "".join(texts(spoken)) == "All done. Found parking."
    # The tool saw the call, its state and a key that identifies the request.
    (context,) = seen
    assert context.call_id == "call-7"
    assert context.tool_call_id == started.tool_call_id
    assert context.state is state
    assert state == {"caller": "known", "looked_up": ["parking"]}
    assert context.idempotency_key == idempotency_key("call-7", "look_up", '{ "topic":"parking"}')
    # The follow-up request carries the call and its result, in the order the API requires.
    follow_up = fake_llm.stats.last_request["messages"]
    assert follow_up[-2]["role"] == "assistant"
    assert follow_up[-2]["tool_calls"][0]["id"] == started.tool_call_id
    assert follow_up[-2]["tool_calls"][0]["function"] == {
        "name": "look_up",
        "arguments": '{"topic":"parking"}',
    }
    assert follow_up[-1] == {
        "role": "tool",
        "tool_call_id": started.tool_call_id,
        "content": "Found parking.",
    }
    assert fake_llm.stats.completed == 2


async def test_parallel_tool_calls_all_run_and_all_results_go_back(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    items = await collect(agent, turn("[fake: tool=look_up,broken]"))
    actions = [i for i in items if not isinstance(i, str)]
    assert [type(a) for a in actions] == [
        ToolCallStarted,
        ToolCallFinished,
        ToolCallStarted,
        ToolCallFinished,
    ]
    started = [a for a in actions if isinstance(a, ToolCallStarted)]
    finished = [a for a in actions if isinstance(a, ToolCallFinished)]
    assert [f.tool_call_id for f in finished] == [s.tool_call_id for s in started]
    assert [(f.content, f.successful) for f in finished] == [
        ("Found test.", True),
        ("error: broken failed: backend down (test)", False),
    ]
    messages = fake_llm.stats.last_request["messages"]
    assert [m["role"] for m in messages[-3:]] == ["assistant", "tool", "tool"]
    assert [c["id"] for c in messages[-3]["tool_calls"]] == [s.tool_call_id for s in started]


async def test_failing_tool_is_reported_to_the_model_not_raised(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    items = await collect(agent, turn("""[fake: tool=broken args='{"reason": "maintenance"}']"""))
    finished = next(i for i in items if isinstance(i, ToolCallFinished))
    assert finished.successful is False
    assert finished.content == "error: broken failed: backend down (maintenance)"
    assert fake_llm.stats.last_request["messages"][-1]["content"] == finished.content
    assert "".join(texts(items)).startswith("All done. error: broken failed")


async def test_bad_tool_arguments_are_reported_to_the_model(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    items = await collect(agent, turn("""[fake: tool=look_up args='{"subject": "x"}']"""))
    finished = next(i for i in items if isinstance(i, ToolCallFinished))
    assert finished.successful is False
    assert finished.content.startswith("error: invalid arguments for look_up:")
    assert seen == []


async def test_tool_may_hand_the_call_over_with_an_action(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    items = await collect(agent, turn("[fake: tool=hand_over]"))
    assert Transfer("+14155550100") in items
    finished = next(i for i in items if isinstance(i, ToolCallFinished))
    assert (finished.content, finished.successful) == ("done: Transfer", True)
    assert items.index(finished) < items.index(Transfer("+14155550100"))


async def test_tool_rounds_are_bounded(fake_llm: FakeLLMServer) -> None:
    no_rounds = OpenAIAgent(
        model="m", system_prompt="Be brief.", tools=[look_up], max_tool_rounds=0
    )
    try:
        items = await collect(no_rounds, turn("[fake: tool=look_up]"))
    finally:
        await no_rounds.aclose()
    assert texts(items) == [
        "Sure, I can help with that. ",
        "What day and time would suit you best?",
    ]
    assert fake_llm.stats.last_request["tool_choice"] == "none"
    assert seen == []


async def test_booking_rerun_after_barge_in_books_once(fake_llm: FakeLLMServer) -> None:
    receptionist = load_agent(builtin_example("openai-receptionist.yaml"))
    assert isinstance(receptionist, OpenAIAgent)
    before = len(bookings())
    args = '{"patient_name": "Maria Lopez", "day_time": "Tuesday at 3 PM", "reason": "checkup"}'
    state: dict[str, Any] = {}
    try:
        first = await collect(
            receptionist, turn(f"[fake: tool=book_appointment args='{args}']", state=state)
        )
        again = await collect(
            receptionist, turn(f"[fake: tool=book_appointment args='{args}']", state=state)
        )
    finally:
        await receptionist.aclose()
    done = [next(i for i in r if isinstance(i, ToolCallFinished)) for r in (first, again)]
    assert done[0].successful
    assert done[1].successful
    assert "Confirmation number" in done[0].content
    assert done[1].content.startswith("This was already booked earlier in the call.")
    assert len(bookings()) == before + 1
    assert [a["patient_name"] for a in state["appointments"]] == ["Maria Lopez"]


# Cancellation and errors


async def test_barge_in_cancellation_closes_the_upstream_stream(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    fake_llm.config = FakeLLMConfig(reply=REPLY, token_ms=20, tokens=1000)
    first_piece = asyncio.Event()

    async def generation() -> None:
        async for _ in agent.respond(turn("Hello?")):
            first_piece.set()

    task = asyncio.create_task(generation())
    await asyncio.wait_for(first_piece.wait(), TIMEOUT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)
    assert fake_llm.stats.completed == 0
    assert fake_llm.stats.streams[-1].tokens_sent < 1000


async def test_cancellation_before_the_first_token_closes_the_stream(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    fake_llm.config = FakeLLMConfig(ttft_ms=600_000)
    task = asyncio.create_task(collect(agent, turn("Hello?")))
    await fake_llm.stats.wait_for(lambda s: s.started == 1, TIMEOUT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)
    assert fake_llm.stats.streams[-1].tokens_sent == 0


async def test_httpx_transport_streams_and_closes_on_cancel_too(fake_llm: FakeLLMServer) -> None:
    made = OpenAIAgent(model="m", system_prompt="Be brief.", max_retries=0, transport="httpx")
    try:
        fake_llm.config = FakeLLMConfig(reply=REPLY)
        assert "".join(texts(await collect(made, turn("Hi?")))) == REPLY
        fake_llm.config = FakeLLMConfig(ttft_ms=600_000)
        task = asyncio.create_task(collect(made, turn("Hello?")))
        await fake_llm.stats.wait_for(lambda s: s.started == 2, TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)
    finally:
        await made.aclose()


async def test_provider_error_propagates(agent: OpenAIAgent, fake_llm: FakeLLMServer) -> None:
    with pytest.raises(openai.InternalServerError):
        await collect(agent, turn("[fake: error_status=503]"))
    with pytest.raises(openai.RateLimitError):
        await collect(agent, turn("[fake: error_status=429]"))
    assert fake_llm.stats.errors == 2


async def test_retries_follow_the_configuration(fake_llm: FakeLLMServer) -> None:
    retrying = OpenAIAgent(model="m", system_prompt="Be brief.", max_retries=1)
    try:
        with pytest.raises(openai.InternalServerError):
            await collect(retrying, turn("[fake: error_status=500]"))
    finally:
        await retrying.aclose()
    assert fake_llm.stats.requests == 2


async def test_provider_timeout_propagates_and_closes_the_stream(fake_llm: FakeLLMServer) -> None:
    impatient = OpenAIAgent(model="m", system_prompt="Be brief.", timeout_s=0.3, max_retries=0)
    fake_llm.config = FakeLLMConfig(ttft_ms=600_000)
    try:
        with pytest.raises(openai.APITimeoutError):
            await collect(impatient, turn("Hello?"))
    finally:
        await impatient.aclose()
    await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)


@pytest.mark.integration
async def test_connection_refused_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    nowhere = OpenAIAgent(
        model="m",
        system_prompt="Be brief.",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        max_retries=0,
    )
    try:
        with pytest.raises(openai.APIConnectionError):
            await collect(nowhere, turn("Hello?"))
    finally:
        await nowhere.aclose()


async def test_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    keyless = OpenAIAgent(model="m", system_prompt="Be brief.", api_key_env="GROQ_API_KEY")
    with pytest.raises(OpenAIAgentError, match="GROQ_API_KEY is not set"):
        await collect(keyless, turn("Hello?"))


# Through the real server, as Retell sees it


async def test_barge_in_through_the_server_closes_the_llm_stream(
    serve: Any, fake_llm: FakeLLMServer
) -> None:
    agent = OpenAIAgent(model="m", system_prompt="Be brief.", greeting="Hello.", max_retries=0)
    fake_llm.config = FakeLLMConfig(reply=REPLY, token_ms=20, tokens=1000)
    async with serve(agent, call_details=False) as srv, retell(srv.ws_url, "llm-1") as peer:
        assert spoken(await peer.complete(0), 0) == "Hello."
        await peer.request(1, "Hello?")
        await peer.recv_until(lambda f: f.get("response_id") == 1 and bool(f.get("content")))
        await peer.request(2, "Sorry, what are your hours? [fake: tokens=4 token_ms=0]")
        frames = await peer.complete(2)
        assert spoken(frames, 2) == "Thanks for calling."
        await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)
        assert [r.outcome for r in fake_llm.stats.streams] == ["closed_early", "completed"]


async def test_provider_error_through_the_server_is_a_spoken_fallback(
    serve: Any, fake_llm: FakeLLMServer
) -> None:
    agent = OpenAIAgent(model="m", system_prompt="Be brief.", max_retries=0)
    async with serve(agent, call_details=False) as srv, retell(srv.ws_url, "llm-2") as peer:
        await peer.complete(0)
        await peer.request(1, "Hello? [fake: error_status=502]")
        frames = await peer.complete(1)
        assert spoken(frames, 1) == srv.app.node.settings.fallback_text
    assert fake_llm.stats.errors == 1


# Conversation history with tool calls


def test_transcript_with_tool_calls_becomes_paired_messages() -> None:
    agent = OpenAIAgent(model="m", system_prompt="Be brief.")
    items = [
        {"role": "user", "content": "Book me in."},
        {"role": "tool_call_invocation", "tool_call_id": "a", "name": "book", "arguments": "{}"},
        {"role": "agent", "content": "One moment."},
        {"role": "tool_call_result", "tool_call_id": "a", "content": "Booked."},
        {"role": "tool_call_invocation", "tool_call_id": "b", "name": "book", "arguments": "{}"},
        {"role": "node_transition", "new_node_id": "x"},
        {"role": "agent", "content": "You're booked."},
    ]
    messages = agent.messages(turn(transcript_with_tool_calls=items))[1:]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "assistant"]
    call = messages[1]
    assert call["role"] == "assistant"
    assert call.get("tool_calls") == [
        {"id": "a", "type": "function", "function": {"name": "book", "arguments": "{}"}}
    ]
    assert messages[2] == {"role": "tool", "tool_call_id": "a", "content": "Booked."}
    assert messages[3] == {"role": "assistant", "content": "One moment."}


def test_tool_call_fragments_merge_however_the_server_streams_them() -> None:
    def fragment(
        index: int | None, call_id: str | None, name: str | None, args: str | None
    ) -> ChoiceDeltaToolCall:
        function = ChoiceDeltaToolCallFunction.model_construct(name=name, arguments=args)
        return ChoiceDeltaToolCall.model_construct(index=index, id=call_id, function=function)

    openai_style: dict[int, Any] = {}
    for delta in [
        fragment(0, "a", "book", ""),
        fragment(0, None, None, '{"day":'),
        fragment(1, "b", "hours", "{}"),
        fragment(0, None, None, '"mon"}'),
    ]:
        accumulate(openai_style, [delta])
    assert [(c.id, c.name, c.arguments) for c in openai_style.values()] == [
        ("a", "book", '{"day":"mon"}'),
        ("b", "hours", "{}"),
    ]
    whole_calls: dict[int, Any] = {}  # whole calls, every one at index 0, or with no index
    accumulate(whole_calls, [fragment(0, "x", "book", "{}"), fragment(0, "y", "hours", "{}")])
    accumulate(whole_calls, [fragment(None, None, "end", "")])
    calls = list(whole_calls.values())
    assert [(c.id, c.name) for c in calls[:2]] == [("x", "book"), ("y", "hours")]
    assert calls[2].name == "end"
    assert calls[2].id.startswith("call_")  # an id is made up when the server sends none


# Declaring tools


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_schema_comes_from_type_hints_and_docstring() -> None:
    @tool
    def search(
        context: ToolContext,
        query: Annotated[str, "Words to look for."],
        limit: int = 5,
        exact: bool = False,
        kind: Literal["doctor", "nurse"] = "doctor",
        colours: list[Colour] | None = None,
        score: float | None = None,
    ) -> str:
        """Search the directory.

        Use it for names.
        """
        return query

    assert search.name == "search"
    assert search.description == "Search the directory.\nUse it for names."
    assert search.context_param == "context"
    assert search.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Words to look for."},
            "limit": {"type": "integer"},
            "exact": {"type": "boolean"},
            "kind": {"type": "string", "enum": ["doctor", "nurse"]},
            "colours": {"type": "array", "items": {"type": "string", "enum": ["red", "blue"]}},
            "score": {"type": "number"},
        },
        "required": ["query"],
    }
    assert search.schema()["function"]["name"] == "search"


def test_explicit_schema_name_and_description_win() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

    @tool(name="count-things", description="Count.", parameters=schema, say="Counting.")
    def anything(**kwargs: Any) -> int:
        return len(kwargs)

    assert (anything.name, anything.description, anything.say) == (
        "count-things",
        "Count.",
        "Counting.",
    )
    assert anything.parameters == schema


async def test_sync_tools_and_plain_values_are_supported() -> None:
    @tool
    def add(a: int, b: int) -> dict[str, int]:
        """Add."""
        return {"sum": a + b}

    context = ToolContext("c", "t", "k", {}, {})
    assert (await add.run('{"a": 2, "b": 3}', context)).content == '{"sum":5}'
    assert (await add.run("[1]", context)).successful is False
    assert "not valid JSON" in (await add.run("{", context)).content
    assert "missing a required argument: 'b'" in (await add.run('{"a": 1}', context)).content


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda: tool(lambda x: x), "name '<lambda>'"),
        (lambda: tool(_untyped), "needs a type hint"),
        (lambda: tool(_unsupported), "unsupported type"),
        (lambda: tool(parameters={"type": "array"})(_untyped), "JSON object schema"),
    ],
)
def test_bad_declarations_fail_at_import_time(declare: Any, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        declare()


def _untyped(x):  # type: ignore[no-untyped-def]
    return x


def _unsupported(x: complex) -> None:
    return None


def test_tools_load_from_import_strings() -> None:
    loaded = load_tool("switchboard.agents.receptionist_tools:book_appointment")
    assert isinstance(loaded, Tool)
    assert loaded.name == "book_appointment"
    plain = load_tool("tests.test_openai_agent:_unsupported_free")
    assert plain.name == "_unsupported_free"
    for reference, message in [
        ("no_colon", "expected 'package.module:function'"),
        ("no.such.module:x", "cannot import"),
        ("switchboard.agents.tools:nope", "has no 'nope'"),
        ("switchboard.agents.tools:MAX_RESULT_CHARS", "neither a tool nor a function"),
    ]:
        with pytest.raises(ToolError, match=message):
            load_tool(reference)


def _unsupported_free(text: str) -> str:
    """A plain function, made a tool on import."""
    return text


def test_idempotency_key_ignores_argument_order_and_spacing() -> None:
    key = idempotency_key("call", "book", '{"a": 1, "b": "x"}')
    assert key == idempotency_key("call", "book", '{"b":"x","a":1}')
    assert key != idempotency_key("call", "book", '{"a": 2, "b": "x"}')
    assert key != idempotency_key("other-call", "book", '{"a": 1, "b": "x"}')
    assert key != idempotency_key("call", "cancel", '{"a": 1, "b": "x"}')


# The agent file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_loads_with_its_tools() -> None:
    agent = load_agent(builtin_example("openai-receptionist.yaml"))
    assert isinstance(agent, OpenAIAgent)
    assert [t.name for t in agent.tools] == [
        "book_appointment",
        "transfer_to_front_desk",
        "end_call",
    ]
    assert agent.needs_call_details
    assert "Maple Street Clinic" in agent.system_prompt.source


def test_model_env_var_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "agent: openai\nmodel: from-file\nsystem_prompt: Hi.\n")
    monkeypatch.delenv("SWITCHBOARD_OPENAI_MODEL", raising=False)
    assert isinstance(agent := load_agent(path), OpenAIAgent)
    assert agent.model == "from-file"
    monkeypatch.setenv("SWITCHBOARD_OPENAI_MODEL", "from-env")
    assert isinstance(agent := load_agent(path), OpenAIAgent)
    assert agent.model == "from-env"


def test_system_prompt_file_is_read_relative_to_the_agent_file(tmp_path: Path) -> None:
    (tmp_path / "prompt.md").write_text("You are Riley.\n", encoding="utf-8")
    path = write(tmp_path, "agent: openai\nmodel: m\nsystem_prompt_file: prompt.md\n")
    agent = load_agent(path)
    assert isinstance(agent, OpenAIAgent)
    assert agent.system_prompt.source == "You are Riley.\n"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ("model: m\nsystem_prompt: x\nmodle: y\n", "modle", "unknown field"),
        ("model: m\nsystem_prompt: x\ntemperature: hot\n", "temperature", "Expected `float"),
        ("model: m\nsystem_prompt: x\ntemperature: 3\n", "temperature", "<= 2"),
        ("model: m\nsystem_prompt: x\nmax_retries: 9\n", "max_retries", "<= 5"),
        ("model: m\n", "system_prompt", "exactly one"),
        ("model: m\nsystem_prompt: '  '\n", "system_prompt", "empty"),
        ("model: m\nsystem_prompt_file: missing.md\n", "system_prompt_file", "cannot read"),
        ("system_prompt: x\n", "model", "missing"),
        ("model: m\nsystem_prompt: x\ntools: [nowhere:thing]\n", "tools[0]", "cannot import"),
        ("model: m\nsystem_prompt: x\ntimezone: Mars/Base\n", "timezone", "unknown time zone"),
        ("model: m\nsystem_prompt: x\nbase_url: ftp://x\n", "base_url", "http"),
        ("model: m\nsystem_prompt: x\napi_key_env: not a name\n", "api_key_env", "variable"),
        ("model: m\nsystem_prompt: x\ngreeting: 'Hi {{ name'\n", "greeting", "unbalanced"),
    ],
)
def test_agent_file_errors_name_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, field: str, reason: str
) -> None:
    monkeypatch.delenv("SWITCHBOARD_OPENAI_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    path = write(tmp_path, "agent: openai\n" + body)
    with pytest.raises(AgentFileError) as raised:
        load_agent(path)
    assert raised.value.field == field
    assert reason in raised.value.reason


# Tracing


async def test_the_llm_request_is_a_gen_ai_span_under_the_turn_with_its_first_token(
    agent: OpenAIAgent, fake_llm: FakeLLMServer
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from switchboard import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        fake_llm.config = FakeLLMConfig(reply=REPLY)
        turn_span = tracing.start_turn(None, 1, "response")
        token = tracing.current.set(turn_span)
        try:
            await collect(agent, turn("Can I see a doctor?"))
        finally:
            tracing.current.reset(token)
        tracing.end(turn_span)
    finally:
        tracing.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    llm = spans["chat fake-model"]
    assert llm.parent is not None
    assert llm.parent.span_id == spans["turn response"].context.span_id
    assert llm.attributes is not None
    assert llm.attributes["gen_ai.operation.name"] == "chat"
    assert llm.attributes["gen_ai.request.model"] == "fake-model"
    assert llm.attributes["gen_ai.server.time_to_first_token"] > 0
    assert [e.name for e in llm.events] == ["gen_ai.first_token"]
