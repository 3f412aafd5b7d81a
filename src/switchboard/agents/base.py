"""The interface users implement: an ``Agent`` turns a ``Turn`` into speech and actions.

Agents never see sockets, response ids on the wire, or the store. They yield text chunks
(spoken in order, as soon as they are yielded) and ``Action`` values. The session maps
both onto Retell frames, enforces cancellation on barge-in, and persists ``Turn.state``.

Cancellation contract: when the caller barges in, the task running ``respond`` is
cancelled, so ``CancelledError`` is raised at the agent's current ``await``. Agents that
hold upstream resources (an LLM stream) must release them in ``finally`` / ``async with``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from switchboard.protocol.inbound import Utterance


class TurnKind(StrEnum):
    """Why the agent is asked to speak."""

    GREETING = "greeting"  # response_id 0: the begin message ("" = wait for the caller)
    RESPONSE = "response"  # response_required: the caller finished a turn
    REMINDER = "reminder"  # reminder_required: the caller has been silent; nudge them


@dataclass(slots=True)
class Turn:
    """Everything an agent may use to answer one request.

    ``state`` is the per-call scratch dict: mutate it freely; it is saved with the call
    after every turn and survives reconnects (and, on shared stores, node changes).
    Values must be JSON-serialisable.
    """

    call_id: str
    kind: TurnKind
    response_id: int
    transcript: Sequence[Utterance]
    state: dict[str, Any]
    call: Mapping[str, Any] | None = None
    dynamic_variables: Mapping[str, str] = field(default_factory=dict)
    transcript_with_tool_calls: Sequence[Mapping[str, Any]] | None = None

    @property
    def last_user_text(self) -> str:
        """The caller's most recent utterance ("" if the agent spoke last or none yet).

        Any role other than ``agent`` counts as the caller: Retell's docs and demos show
        ``system`` and ``transfer_target`` too, and unknown roles must not be dropped.
        """
        if self.transcript:
            last = self.transcript[-1]
            if last.role != "agent":
                return last.content
        return ""


class Action:
    """Base of everything an agent yields that is not text."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class EndCall(Action):
    """Hang up once this response has been spoken (Retell discards it if the caller barges in)."""


@dataclass(frozen=True, slots=True)
class Transfer(Action):
    """Cold-transfer the call to ``number`` once this response has been spoken."""

    number: str
    show_transferee_as_caller: bool = False


@dataclass(frozen=True, slots=True)
class PressDigit(Action):
    """Send DTMF ``digits`` once this response has been spoken (IVR navigation)."""

    digits: str


@dataclass(frozen=True, slots=True)
class NoInterruption(Action):
    """The caller cannot barge in on this response's content (yield before the text)."""


@dataclass(frozen=True, slots=True)
class Interrupt(Action):
    """Speak ``content`` now via ``agent_interrupt``, cutting off whoever is talking."""

    content: str
    no_interruption_allowed: bool = True
    end_call: bool = False
    transfer_number: str | None = None


@dataclass(frozen=True, slots=True)
class UpdateAgent(Action):
    """Retune Retell's turn-taking mid-call; ``None`` leaves a setting unchanged."""

    responsiveness: float | None = None
    interruption_sensitivity: float | None = None
    reminder_trigger_ms: int | None = None
    reminder_max_count: int | None = None


@dataclass(frozen=True, slots=True)
class SendMetadata(Action):
    """Forward arbitrary JSON to a web-call frontend."""

    data: Any


@dataclass(frozen=True, slots=True)
class NoCache(Action):
    """Never store this turn's reply in the response cache (it depends on more than its words)."""


@dataclass(frozen=True, slots=True)
class FromCache(Action):
    """The reply that follows comes from the response cache (``tier``: exact, semantic,
    single_flight). Sends nothing; the turn's event records it as a cache hit."""

    tier: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted(Action):
    """Record a tool invocation in Retell's transcript (bookkeeping only)."""

    tool_call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallFinished(Action):
    """Record a tool result in Retell's transcript (bookkeeping only)."""

    tool_call_id: str
    content: str
    successful: bool | None = None


class Agent(abc.ABC):
    """Implement ``respond``; override the rest only when needed.

    One instance serves every call of a process, so per-call data belongs in
    ``Turn.state``, never on ``self``.
    """

    #: Wait for Retell's ``call_details`` before the greeting (to personalise it).
    needs_call_details: bool = False
    #: Dynamic variables this agent reads into its replies; a turn that has any of them set
    #: is never answered from the response cache (see ``switchboard.cache``).
    cache_variables: tuple[str, ...] = ()

    @abc.abstractmethod
    def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
        """Yield text chunks and actions for this turn (an ``async def`` with ``yield``)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, deliberately a no-op
        """Release process-wide resources (HTTP pools) at shutdown."""
