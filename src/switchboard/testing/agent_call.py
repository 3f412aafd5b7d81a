"""An agent on a call in-process, with no socket: the harness of ``switchboard.testing``.

``AgentCall`` plays Retell's side against the real ``CallSession`` (the code that serves
every socket: greeting, supersede on barge-in, fallbacks, state saved per turn), through
an in-memory transport instead of a WebSocket. So a test of an agent exercises what a
call would, in milliseconds, and asserts on what the caller would hear and what Retell
would do::

    call = await start_call("examples/receptionist.yaml", dynamic_variables={"name": "Dana"})
    reply = await call.say("I'd like to book an appointment")
    assert "name" in reply.text
    assert call.state["patient_name"] == ...
    await call.hang_up()

``say`` waits for the reply's ``content_complete``; ``say(text, barge_in=more)`` keeps
talking once the first words of the reply arrive (the reply is superseded, its
generation cancelled, and the longer utterance answered); ``interrupt(more)`` talks over
the reply just given (the agent's utterance is cut to what had been said: its first
chunk); ``remind()`` is the caller staying silent (``reminder_required``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from switchboard.agents.base import (
    Action,
    Agent,
    EndCall,
    Interrupt,
    NoInterruption,
    PressDigit,
    SendMetadata,
    ToolCallFinished,
    ToolCallStarted,
    Transfer,
    UpdateAgent,
)
from switchboard.calls.session import CallSession, SessionOptions
from switchboard.protocol.outbound import (
    AgentInterrupt,
    Config,
    Metadata,
    OutboundMessage,
    Response,
    ToolCallInvocation,
    ToolCallResult,
    UpdateAgentConfig,
)
from switchboard.state.memory import MemoryCallStore
from switchboard.testing.memory_transport import MemoryTransport

#: seconds a reply may take before the test fails (a hung agent must not hang the suite)
DEFAULT_TIMEOUT_S = 10.0

_decode = msgspec.json.Decoder(OutboundMessage).decode
_encode = msgspec.json.encode


class CallOver(AssertionError):
    """The test spoke on a call that has ended (the agent hung up or transferred)."""


@dataclass(slots=True)
class Reply:
    """What the agent said and did in answer to one request."""

    response_id: int
    #: the spoken text, the chunks joined
    text: str = ""
    chunks: list[str] = field(default_factory=list)
    #: what Retell would act on, in order: ``EndCall``, ``Transfer``, ``PressDigit``,
    #: ``NoInterruption``, ``ToolCallStarted``/``ToolCallFinished``, ``UpdateAgent``,
    #: ``SendMetadata``, ``Interrupt``
    actions: list[Action] = field(default_factory=list)
    completed: bool = False

    @property
    def ended(self) -> bool:
        """The agent hangs up after this reply."""
        return any(isinstance(a, EndCall) for a in self.actions)

    @property
    def transfer_number(self) -> str | None:
        return next((a.number for a in self.actions if isinstance(a, Transfer)), None)

    @property
    def digits(self) -> str | None:
        return next((a.digits for a in self.actions if isinstance(a, PressDigit)), None)

    @property
    def tool_calls(self) -> list[ToolCallStarted]:
        return [a for a in self.actions if isinstance(a, ToolCallStarted)]


class AgentCall:
    """One call between a test (playing Retell and the caller) and an agent."""

    def __init__(
        self,
        agent: Agent,
        *,
        call_id: str = "test-call",
        dynamic_variables: Mapping[str, str] | None = None,
        metadata: Any = None,
        options: SessionOptions | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.agent = agent
        self.call_id = call_id
        self.dynamic_variables = dict(dynamic_variables or {})
        self.metadata = metadata
        self.timeout_s = timeout_s
        self.store = MemoryCallStore()
        self._transport = MemoryTransport(
            on_frame=lambda text: self._on_frame(_decode(text)), on_close=self._on_closed
        )
        self.session = CallSession(
            call_id, self._transport, agent, self.store, options or SessionOptions()
        )
        self.transcript: list[dict[str, Any]] = []
        self.replies: dict[int, Reply] = {}
        #: what the agent said on its own (``agent_interrupt``), in order
        self.interrupts: list[Reply] = []
        self.greeting: Reply | None = None
        self.ended = False
        self._next_id = 1
        self._changed = asyncio.Event()
        self._config: Config | None = None
        #: built from a file by ``start_call``: closed (``Agent.aclose``) at hang-up
        self.owns_agent = False

    # ------------------------------------------------------------------ the call

    async def start(self) -> Reply:
        """Connect: the session sends ``config``; ``call_details`` goes out if asked for;
        returns the greeting (``response_id`` 0)."""
        await self.session.start()
        if self._config is not None and self._config.config.call_details:
            call: dict[str, Any] = {
                "call_id": self.call_id,
                "call_type": "web_call",
                "agent_id": "test-agent",
                "call_status": "registered",
            }
            if self.dynamic_variables:
                call["retell_llm_dynamic_variables"] = self.dynamic_variables
            if self.metadata is not None:
                call["metadata"] = self.metadata
            self._send({"interaction_type": "call_details", "call": call})
        self.greeting = await self._wait(0)
        if self.greeting.text:
            self._heard("agent", self.greeting.text)
        return self.greeting

    async def say(self, text: str, *, barge_in: str | None = None) -> Reply:
        """The caller says ``text`` and waits for the complete reply. With ``barge_in``,
        the caller keeps talking as soon as the reply starts: that reply is superseded
        (its generation cancelled) and the whole utterance is answered."""
        self._check_live()
        self.transcript.append({"role": "user", "content": text, "words": []})
        rid = self._request("response_required")
        if barge_in is None:
            return await self._answer(rid)
        await self._until(lambda: bool(self.replies.get(rid, Reply(rid)).chunks) or self.ended)
        self.transcript[-1]["content"] = f"{text} {barge_in}"
        return await self._answer(self._request("response_required"))

    async def interrupt(self, text: str) -> Reply:
        """The caller talks over the reply just given: Retell keeps only what was spoken
        of it (here its first chunk) and the agent answers ``text``."""
        self._check_live()
        last = self.transcript[-1] if self.transcript else None
        if last is not None and last["role"] == "agent":
            reply = self.replies.get(self._next_id - 1) or self.greeting
            if reply is not None and reply.chunks:
                last["content"] = reply.chunks[0]
        return await self.say(text)

    async def remind(self) -> Reply:
        """The caller stays silent: Retell asks for a reminder."""
        self._check_live()
        return await self._answer(self._request("reminder_required"))

    async def hang_up(self) -> None:
        """The caller hangs up: Retell closes the socket; the session cleans up."""
        self.ended = True
        await self.session.close()
        if self.owns_agent:
            self.owns_agent = False
            await self.agent.aclose()

    @property
    def state(self) -> dict[str, Any]:
        """The call's saved state (``Turn.state``), as a reconnect would find it."""
        snapshot = self.session.snapshot()
        return {} if snapshot is None else snapshot.state

    # ------------------------------------------------------------------ plumbing

    def _check_live(self) -> None:
        if self.ended:
            raise CallOver("the call has ended; the agent hung up or transferred it")

    def _send(self, message: dict[str, Any]) -> None:
        self.session.receive_text(_encode(message).decode())

    def _request(self, kind: str) -> int:
        rid = self._next_id
        self._next_id += 1
        self.replies[rid] = Reply(rid)
        self._send({"interaction_type": kind, "response_id": rid, "transcript": self.transcript})
        return rid

    async def _answer(self, rid: int) -> Reply:
        reply = await self._wait(rid)
        if reply.text:
            self._heard("agent", reply.text)
        if reply.ended or reply.transfer_number is not None:
            self.ended = True
        return reply

    def _heard(self, role: str, text: str) -> None:
        self.transcript.append({"role": role, "content": text, "words": []})

    async def _until(self, condition: Any) -> None:
        async with asyncio.timeout(self.timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def _wait(self, rid: int) -> Reply:
        reply = self.replies.setdefault(rid, Reply(rid))
        try:
            await self._until(lambda: reply.completed or self._transport.closed)
        except TimeoutError:
            raise AssertionError(
                f"no complete reply to request {rid} within {self.timeout_s:g} s "
                f"(got {reply.text!r})"
            ) from None
        return reply

    def _on_closed(self) -> None:
        self.ended = True
        self._changed.set()

    def _on_frame(self, frame: OutboundMessage) -> None:
        self._changed.set()
        if isinstance(frame, Config):
            self._config = frame
        elif isinstance(frame, Response):
            reply = self.replies.setdefault(frame.response_id, Reply(frame.response_id))
            if reply.completed:
                return
            if frame.content:
                reply.chunks.append(frame.content)
                reply.text += frame.content
            if frame.no_interruption_allowed:
                _once(reply.actions, NoInterruption())
            if frame.content_complete:
                reply.completed = True
                if frame.end_call:
                    reply.actions.append(EndCall())
                elif frame.transfer_number is not None:
                    reply.actions.append(
                        Transfer(frame.transfer_number, bool(frame.show_transferee_as_caller))
                    )
                elif frame.digit_to_press is not None:
                    reply.actions.append(PressDigit(frame.digit_to_press))
        else:
            self._side(frame)

    def _side(self, frame: OutboundMessage) -> None:
        """A frame that is not part of a response: it belongs to the latest request."""
        current = self.replies.get(self._next_id - 1) or self.greeting or Reply(0)
        if isinstance(frame, ToolCallInvocation):
            current.actions.append(ToolCallStarted(frame.tool_call_id, frame.name, frame.arguments))
        elif isinstance(frame, ToolCallResult):
            current.actions.append(
                ToolCallFinished(frame.tool_call_id, frame.content, frame.successful)
            )
        elif isinstance(frame, UpdateAgentConfig):
            c = frame.agent_config
            current.actions.append(
                UpdateAgent(
                    c.responsiveness,
                    c.interruption_sensitivity,
                    c.reminder_trigger_ms,
                    c.reminder_max_count,
                )
            )
        elif isinstance(frame, Metadata):
            current.actions.append(SendMetadata(frame.metadata))
        elif isinstance(frame, AgentInterrupt):
            self._on_interrupt(frame)

    def _on_interrupt(self, frame: AgentInterrupt) -> None:
        if (
            not self.interrupts
            or self.interrupts[-1].response_id != frame.interrupt_id
            or (self.interrupts[-1].completed)
        ):
            self.interrupts.append(Reply(frame.interrupt_id))
        said = self.interrupts[-1]
        said.chunks.append(frame.content)
        said.text += frame.content
        if frame.content_complete:
            said.completed = True
            said.actions.append(
                Interrupt(
                    said.text,
                    bool(frame.no_interruption_allowed),
                    bool(frame.end_call),
                    frame.transfer_number,
                )
            )
            if frame.end_call or frame.transfer_number is not None:
                self.ended = True


def _once(actions: list[Action], action: Action) -> None:
    if action not in actions:
        actions.append(action)


async def start_call(
    agent: Agent | str | Path,
    *,
    dynamic_variables: Mapping[str, str] | None = None,
    metadata: Any = None,
    call_id: str = "test-call",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> AgentCall:
    """A started call (greeted) with ``agent``: an ``Agent``, or an agent file's path
    (YAML or TOML, with the response cache its file asks for, as ``serve`` builds it)."""
    owned = not isinstance(agent, Agent)
    if not isinstance(agent, Agent):
        agent = load(agent)
    call = AgentCall(
        agent,
        call_id=call_id,
        dynamic_variables=dynamic_variables,
        metadata=metadata,
        timeout_s=timeout_s,
    )
    call.owns_agent = owned
    await call.start()
    return call


def load(path: str | Path) -> Agent:
    """The agent an agent file describes, wrapped in the cache it asks for."""
    from switchboard.agents.loader import load_agent
    from switchboard.cache.build import with_cache
    from switchboard.config import Settings

    path = Path(path)
    return with_cache(load_agent(path), Settings(agent_file=path))
