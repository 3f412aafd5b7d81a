"""An agent backed by any OpenAI-compatible chat completions API, streamed, with Python tools.

What a turn costs and why it is shaped this way:

- One ``AsyncOpenAI`` client per agent, so per process (the server builds one agent):
  created on first use and shared by every call, so connections and TLS sessions are reused.
  ``aclose()`` closes it. A client per call is the classic leak (a pool and a TLS context
  each, never closed).
- The reply is streamed and cut at sentence and clause boundaries (``chunking``): Retell
  starts speaking at the first complete sentence, so it must not wait for the whole reply.
- Cancellation is real: when the caller barges in, the task iterating ``respond`` is
  cancelled and the upstream HTTP stream is closed by ``async with`` on the way out, so the
  provider stops generating tokens nobody will hear.
- Provider errors (timeouts, 5xx, refused connections) propagate unchanged; the session
  turns them into a spoken fallback. Timeouts and retries are kept low for voice.
- Tools: streamed tool-call deltas are accumulated, each tool runs with a ``ToolContext``,
  its invocation and result are reported as ``ToolCallStarted`` / ``ToolCallFinished``,
  and the follow-up completion streams the answer. Rounds are bounded; the last allowed
  round forbids tools so the caller always hears something.

Configuration comes from the agent file (``agent: openai``, see ``docs/openai-agent.md``)
and the environment: ``OPENAI_API_KEY`` (or the variable named by ``api_key_env``),
``OPENAI_BASE_URL`` and ``SWITCHBOARD_OPENAI_MODEL`` override the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx2
import msgspec
from openai import (
    APIConnectionError,
    APITimeoutError,
    AsyncOpenAI,
    DefaultAioHttpClient,
    Timeout,
)
from openai.types.chat import (
    ChatCompletionMessageParam,
    ChatCompletionToolUnionParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from switchboard import tracing
from switchboard.agents import sse
from switchboard.agents.agent_file import AgentFileError
from switchboard.agents.base import (
    Action,
    Agent,
    ToolCallFinished,
    ToolCallStarted,
    Turn,
    TurnKind,
)
from switchboard.agents.chat_messages import (
    PendingCall,
    accumulate,
    assistant_message,
    history_with_tools,
)
from switchboard.agents.chunking import SentenceChunker
from switchboard.agents.templating import Template, TemplateError
from switchboard.agents.tools import (
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    idempotency_key,
    load_tool,
)
from switchboard.log import get_logger

MODEL_ENV = "SWITCHBOARD_OPENAI_MODEL"
BASE_URL_ENV = "OPENAI_BASE_URL"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_REMINDER = (
    "The caller has been silent for a while. Say one short, friendly sentence to check "
    "whether they are still there or need anything else. Do not repeat your last message."
)
#: Temperature used when tools are offered and the file does not set one.
TOOL_TEMPERATURE = 0.2

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_log = get_logger("switchboard.openai_agent")


class OpenAIAgentError(RuntimeError):
    """The agent cannot reach a model as configured (for example, no API key)."""


class OpenAIAgent(Agent):
    """Answers each turn with a streamed chat completion; see the module docstring."""

    def __init__(
        self,
        *,
        model: str,
        system_prompt: str,
        greeting: str = "",
        tools: Sequence[Tool] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 1,
        max_tool_rounds: int = 3,
        reminder_prompt: str = DEFAULT_REMINDER,
        timezone: str = "UTC",
        base_url: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        transport: Literal["aiohttp", "httpx"] = "aiohttp",
        client: AsyncOpenAI | None = None,
    ) -> None:
        """Build an agent in Python. ``client``: share an existing client (not closed by us).

        Without ``base_url`` the SDK reads ``OPENAI_BASE_URL`` (default: api.openai.com).
        ``transport``: the SDK's aiohttp transport by default. httpx's connection pool checks
        every idle connection on every request, which at a hundred concurrent calls costs
        more CPU than the rest of the turn; ``httpx`` remains available.
        """
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique, got {names}")
        if max_tool_rounds < 0 or max_retries < 0 or timeout_s <= 0:
            raise ValueError("max_tool_rounds and max_retries must be >= 0, timeout_s > 0")
        self.model = model
        self.greeting = Template(greeting)
        self.system_prompt = Template(system_prompt)
        self.tools = tuple(tools)
        self.temperature = temperature if temperature is not None or not tools else TOOL_TEMPERATURE
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_tool_rounds = max_tool_rounds
        self.reminder_prompt = reminder_prompt
        self.timezone = ZoneInfo(timezone)
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.transport = transport
        self._clock_minute = -1
        self._clock_line = ""
        # Personalised greetings need the call's dynamic variables before response 0.
        self.needs_call_details = bool(self.greeting.variables)
        # A prompt that reads dynamic variables answers each caller differently: never cached.
        self.cache_variables = self.system_prompt.variables
        self._tools_by_name = {t.name: t for t in self.tools}
        self._tool_schemas = cast(
            list[ChatCompletionToolUnionParam], [t.schema() for t in self.tools]
        )
        self._client = client
        self._owns_client = client is None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], source: Path) -> OpenAIAgent:
        """Build from a parsed agent file (``agent: openai``); errors name the bad field."""
        try:
            parsed = msgspec.convert(dict(spec), _Spec)
        except msgspec.ValidationError as exc:
            raise AgentFileError.from_validation(source, exc) from None
        model = os.environ.get(MODEL_ENV) or parsed.model
        if not model:
            raise AgentFileError(source, "model", f"missing (or set {MODEL_ENV})")
        prompt = _system_prompt(parsed, source)
        tools = []
        for index, reference in enumerate(parsed.tools):
            try:
                tools.append(load_tool(reference))
            except ToolError as exc:
                raise AgentFileError(source, f"tools[{index}]", str(exc)) from None
        try:
            ZoneInfo(parsed.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise AgentFileError(
                source, "timezone", f"unknown time zone {parsed.timezone!r}"
            ) from None
        base_url = os.environ.get(BASE_URL_ENV) or parsed.base_url
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise AgentFileError(source, "base_url", "must start with http:// or https://")
        if _ENV_NAME.fullmatch(parsed.api_key_env) is None:
            raise AgentFileError(source, "api_key_env", "must be an environment variable name")
        try:
            return cls(
                model=model,
                system_prompt=prompt,
                greeting=parsed.greeting,
                tools=tools,
                temperature=parsed.temperature,
                max_tokens=parsed.max_tokens,
                timeout_s=parsed.timeout_s,
                max_retries=parsed.max_retries,
                max_tool_rounds=parsed.max_tool_rounds,
                reminder_prompt=parsed.reminder_prompt,
                timezone=parsed.timezone,
                base_url=base_url,
                api_key_env=parsed.api_key_env,
                transport=parsed.transport,
            )
        except TemplateError as exc:
            field_name = "greeting" if _bad_template(parsed.greeting) else "system_prompt"
            raise AgentFileError(source, field_name, str(exc)) from None
        except ValueError as exc:
            raise AgentFileError(source, "tools", str(exc)) from None

    def client(self) -> AsyncOpenAI:
        """The shared client, created on first use."""
        if self._client is None:
            api_key = os.environ.get(self.api_key_env, "")
            if not api_key:
                raise OpenAIAgentError(
                    f"environment variable {self.api_key_env} is not set "
                    "(for a local server without authentication, set it to any value)"
                )
            self._client = AsyncOpenAI(
                api_key=api_key,
                base_url=self.base_url,
                timeout=Timeout(self.timeout_s, connect=min(2.0, self.timeout_s)),
                max_retries=self.max_retries,
                http_client=DefaultAioHttpClient() if self.transport == "aiohttp" else None,
            )
            self._owns_client = True
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.close()

    def messages(self, turn: Turn) -> list[ChatCompletionMessageParam]:
        """System prompt (with the current date and time), the conversation, any nudge."""
        system = self.system_prompt.render([turn.dynamic_variables])
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": f"{system}\n\n{self._now()}"}
        ]
        if turn.transcript_with_tool_calls:
            messages.extend(history_with_tools(turn.transcript_with_tool_calls))
        else:
            for utterance in turn.transcript:
                if utterance.content:
                    if utterance.role == "agent":
                        messages.append({"role": "assistant", "content": utterance.content})
                    else:
                        messages.append({"role": "user", "content": utterance.content})
        if turn.kind is TurnKind.REMINDER:
            messages.append({"role": "system", "content": self.reminder_prompt})
        return messages

    async def respond(self, turn: Turn) -> AsyncGenerator[str | Action, None]:
        if turn.kind is TurnKind.GREETING:
            greeting = self.greeting.render([turn.dynamic_variables])
            if greeting:
                yield greeting
            return
        client = self.client()
        messages = self.messages(turn)
        offer_tools = bool(self.tools) and turn.kind is TurnKind.RESPONSE
        chunker = SentenceChunker()
        rounds = 0
        held: set[str] = set()
        while True:
            last_round = not offer_tools or rounds >= self.max_tool_rounds
            said: list[str] = []
            calls: dict[int, PendingCall] = {}
            body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
            if self.temperature is not None:
                body["temperature"] = self.temperature
            if self.max_tokens is not None:
                body["max_tokens"] = self.max_tokens
            if offer_tools:
                body["tools"] = self._tool_schemas
                if last_round:
                    body["tool_choice"] = "none"
            # The SDK's own transport, auth, retries and typed stream, but without
            # ``chat.completions.create``'s parameter transform: it re-walks the whole
            # conversation on every turn (~40% of a turn's CPU) to rewrite nothing in
            # plain JSON dicts like ours.
            # The SDK sends the request (transport, auth, retries, status errors) and hands
            # back the unread response; ``sse.chunks`` decodes the stream (see there why).
            with self._llm_span(rounds) if tracing.ENABLED else tracing.NO_SPAN as span:
                sent = time.perf_counter()
                response = await client.post(
                    "/chat/completions", body=body, cast_to=httpx2.Response, stream=True
                )
                try:
                    async for chunk in sse.chunks(response.aiter_bytes()):
                        if not chunk.choices:
                            continue
                        delta = chunk.choices[0].delta
                        if delta.content:
                            if span is not None and not said:
                                _first_token(span, time.perf_counter() - sent)
                            said.append(delta.content)
                            for piece in chunker.feed(delta.content):
                                yield piece
                        if delta.tool_calls:
                            typed = [
                                ChoiceDeltaToolCall.model_validate(f) for f in delta.tool_calls
                            ]
                            accumulate(calls, typed)
                except httpx2.TimeoutException as err:
                    # The SDK maps transport errors while it owns the response; the body is
                    # read here, so map them the same way.
                    raise APITimeoutError(request=response.request) from err
                except httpx2.TransportError as err:
                    raise APIConnectionError(request=response.request) from err
                finally:
                    await response.aclose()
                if span is not None and calls:
                    span.set_attribute("gen_ai.response.finish_reasons", ["tool_calls"])
            rest = chunker.flush()
            if not calls or last_round:
                if rest.strip():
                    yield rest
                if calls:
                    _log.warning("tool_calls_ignored", call_id=turn.call_id, rounds=rounds)
                return
            if rest.strip():
                # The next round's text follows this one in the same spoken response.
                yield rest if rest[-1].isspace() else rest + " "
            rounds += 1
            pending = list(calls.values())
            messages.append(assistant_message("".join(said), pending))
            for call in pending:
                yield ToolCallStarted(call.id, call.name, call.arguments)
                tool = self._tools_by_name.get(call.name)
                if tool is None:
                    result = ToolResult(f"error: there is no tool named {call.name!r}", False)
                else:
                    if tool.say and tool.name not in held:
                        held.add(tool.name)
                        yield tool.say if tool.say[-1].isspace() else tool.say + " "
                    result = await tool.run(call.arguments, self._context(turn, call))
                yield ToolCallFinished(call.id, result.content, result.successful)
                if result.action is not None:
                    yield result.action
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": result.content}
                )

    def _llm_span(self, rounds: int) -> contextlib.AbstractContextManager[Any]:
        """A ``gen_ai`` client span for one streamed request (semantic conventions)."""
        return tracing.child(
            None,
            f"chat {self.model}",
            **{
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": self.model,
                "gen_ai.request.temperature": self.temperature,
                "gen_ai.request.max_tokens": self.max_tokens,
                "switchboard.llm.tool_round": rounds,
            },
        )

    def _context(self, turn: Turn, call: PendingCall) -> ToolContext:
        return ToolContext(
            call_id=turn.call_id,
            tool_call_id=call.id,
            idempotency_key=idempotency_key(turn.call_id, call.name, call.arguments),
            state=turn.state,
            dynamic_variables=turn.dynamic_variables,
        )

    def _now(self) -> str:
        """The prompt's clock line; it reads to the minute, so it is built once a minute."""
        minute = int(time.time() // 60)
        if minute != self._clock_minute:
            now = datetime.now(self.timezone)
            hour = now.hour % 12 or 12
            self._clock_line = (
                f"Current date and time: {now:%A}, {now:%B} {now.day}, {now.year}, "
                f"{hour}:{now:%M} {'AM' if now.hour < 12 else 'PM'} ({self.timezone.key})."
            )
            self._clock_minute = minute
        return self._clock_line


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The agent file, as this agent reads it. Unknown keys are errors (typos stop startup)."""

    agent: Literal["openai"]
    name: str = ""
    description: str = ""
    model: str = ""
    system_prompt: str | None = None
    system_prompt_file: str | None = None
    greeting: str = ""
    tools: list[str] = msgspec.field(default_factory=list)
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(gt=0)] | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 10.0
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    max_tool_rounds: Annotated[int, msgspec.Meta(ge=0, le=10)] = 3
    reminder_prompt: str = DEFAULT_REMINDER
    timezone: str = "UTC"
    base_url: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    transport: Literal["aiohttp", "httpx"] = "aiohttp"


def _system_prompt(parsed: _Spec, source: Path) -> str:
    if (parsed.system_prompt is None) == (parsed.system_prompt_file is None):
        raise AgentFileError(
            source, "system_prompt", "give exactly one of system_prompt or system_prompt_file"
        )
    if parsed.system_prompt is not None:
        prompt = parsed.system_prompt
        where = "system_prompt"
    else:
        path = source.parent / str(parsed.system_prompt_file)
        where = "system_prompt_file"
        try:
            prompt = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AgentFileError(source, where, f"cannot read {path}: {exc}") from None
    if not prompt.strip():
        raise AgentFileError(source, where, "the system prompt is empty")
    return prompt


def _bad_template(text: str) -> bool:
    try:
        Template(text)
    except TemplateError:
        return True
    return False


def _first_token(span: Any, seconds: float) -> None:
    """The LLM span's time to first token: an event where it came, and the duration."""
    span.add_event("gen_ai.first_token")
    span.set_attribute("gen_ai.server.time_to_first_token", seconds)
