"""``CallSession``: the runtime of one Retell socket.

What may not change (the invariants of ``docs/design.md``):

* ``config`` is the first frame on every socket; the begin message (``response_id`` 0)
  follows, empty when the call was already greeted (a reconnect).
* ``ping_pong`` is answered inline by the reader, never queued behind a generation.
* At most one generation per call. Reading a newer ``response_required`` or
  ``reminder_required`` cancels the older generation's task (which closes the agent's
  upstream stream) *before* anything else is awaited, and every send checks that its
  generation is still current, so no frame of a superseded id leaves after that point.
* Every generation that is still current when it ends sends ``content_complete: true``
  from a ``finally`` path, with a spoken fallback if the agent raised or produced no
  first chunk in time. Silence is the worst failure in voice.
* A completed turn is saved *before* its ``content_complete`` (``StateKeeper.persist``),
  so whatever instant a node dies at, a reconnect never greets again or asks again; a
  request Retell re-sends after a reconnect is answered from the saved reply
  (``LastReply``), never generated twice.
* A superseded turn leaves no trace: the agent works on a copy of ``state`` that is
  committed only when its turn completes.
* Closing the session cancels and awaits every task it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import msgspec

from switchboard.agents.base import (
    Action,
    Agent,
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
    Turn,
    TurnKind,
    UpdateAgent,
)
from switchboard.calls.call_events import NULL_CALL_EVENTS, CallEvents
from switchboard.calls.generation import Generation
from switchboard.calls.keeper import StateKeeper
from switchboard.calls.observer import NULL_OBSERVER, SessionObserver
from switchboard.log import LogThrottle, excerpt, get_logger
from switchboard.protocol.codec import FrameDecoder, encode, undecodable_request
from switchboard.protocol.errors import FrameTooLarge, ProtocolError, UnknownInteraction
from switchboard.protocol.inbound import (
    CallDetails,
    PingPong,
    ReminderRequired,
    ResponseRequired,
    UpdateOnly,
    Utterance,
)
from switchboard.protocol.outbound import (
    AgentConfig,
    AgentInterrupt,
    Config,
    ConfigOptions,
    Metadata,
    Response,
    ToolCallInvocation,
    ToolCallResult,
    UpdateAgentConfig,
)
from switchboard.state.base import CallState, CallStore, LastReply

#: WebSocket close code for a frame above the size limit ("message too big").
CLOSE_TOO_BIG = 1009

_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(dict[str, Any])
_unknown_logged: set[str] = set()


class Transport(Protocol):
    """The socket as the session sees it (``server.llm_socket.CallSocket``)."""

    def send_now(self, text: str) -> None:
        """Write one text frame without waiting; raises once the socket is closing."""
        ...

    async def send_text(self, text: str) -> None:
        """``send_now``, then wait while the peer is slow to read (backpressure)."""
        ...

    def close(self, code: int) -> None:
        """Start the closing handshake; the server ends the session when it completes."""
        ...

    def abort(self) -> None:
        """Drop the connection without a close frame (Retell sees 1006 and reconnects)."""
        ...


class SessionOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The per-call knobs, taken from ``Settings`` once per process."""

    auto_reconnect: bool = True
    call_details: bool = True
    transcript_with_tool_calls: bool = False
    first_chunk_timeout_s: float = 2.5
    turn_timeout_s: float = 60.0
    call_details_timeout_s: float = 2.0
    fallback_text: str = "Sorry, I'm having a little trouble. Could you say that again?"
    max_frame_bytes: int = 1 << 20
    close_grace_s: float = 5.0
    #: how long a claim or a save waits for an unreachable store (``StateKeeper``)
    state_wait_s: float = 1.5
    #: how long a claim that found nothing just after the store lost its data waits for
    #: the call's last node to hand its state back (``StateKeeper.claim``)
    lost_wait_s: float = 2.5
    #: a call whose state is unknown (store down, or lost by it) and whose
    #: ``call_details`` say it started longer ago than this is a reconnect: it is not
    #: greeted again (Retell opens a call's first socket within a second or two)
    started_call_s: float = 5.0


class _SocketGone(Exception):
    """The transport failed under a send: stop the generation quietly."""


class CallGone(RuntimeError):
    """A command for a call whose socket here is closed, or was taken by a newer claim."""


class CallSession:
    """Serves one socket of one call. The server feeds it frames; it owns its tasks."""

    def __init__(
        self,
        call_id: str,
        transport: Transport,
        agent: Agent,
        store: CallStore,
        options: SessionOptions,
        *,
        node_id: str = "local",
        observer: SessionObserver = NULL_OBSERVER,
        events: CallEvents = NULL_CALL_EVENTS,
    ) -> None:
        self.call_id = call_id
        self._transport = transport
        self._agent = agent
        self._store = store
        self._options = options
        self._node_id = node_id
        self._observer = observer
        self._events = events
        self._aborted = False
        self._decoder = FrameDecoder(options.max_frame_bytes)
        self._log = get_logger("switchboard.call", call_id=call_id)
        self._throttle = LogThrottle()
        self._keeper = StateKeeper(call_id, store, node_id, self._log, _weakly(self._fence))
        self._tasks: set[asyncio.Task[None]] = set()
        self._call_details_seen = asyncio.Event()
        self._interrupt_id = 0
        self.current: Generation | None = None
        self.closed = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def _state(self) -> CallState:
        return self._keeper.state

    @property
    def epoch(self) -> int:
        """The fencing epoch of this socket's claim (0 until it is claimed)."""
        return self._keeper.epoch

    @property
    def token(self) -> str:
        """The owner token of this socket's claim ("" if it holds none)."""
        return self._keeper.token

    @property
    def fenced(self) -> bool:
        """A newer claim owns the call: this socket no longer writes and is dropped."""
        return self._keeper.fenced

    def unsaved(self) -> list[asyncio.Task[bool]]:
        """Writes of this call still under way: a save in flight, or a claim or save held
        for the store to come back (see ``StateKeeper``). They outlive the socket."""
        return self._keeper.unfinished()

    def snapshot(self) -> CallState | None:
        """The call's state as this socket holds it, if it owns the call."""
        return self._keeper.snapshot()

    async def reassert(self) -> None:
        """Write the call back to a store that lost it (see ``StateKeeper.reassert``)."""
        if not self.closed:
            await self._keeper.reassert()

    async def start(self) -> None:
        """Claim the call, send ``config`` then the begin message (or schedule the greeting).

        If the store cannot be reached the claim waits ``state_wait_s`` for it, then the
        call is served anyway without its state: a caller must never hear silence
        because Redis is down (``StateKeeper``).
        """
        if not await self._keeper.claim(self._options.state_wait_s, self._options.lost_wait_s):
            return
        self._events.call_started(self._state)
        with contextlib.suppress(_SocketGone):
            await self._open()

    def claimed_elsewhere(self, epoch: int) -> None:
        """Another node claimed this call at ``epoch``: if that is newer, stop writing and
        drop this socket (Retell already reconnected the call there)."""
        if not self.closed:
            self._keeper.claimed_elsewhere(epoch)

    def _fence(self, why: str) -> None:
        self._log.warning("call taken over; dropping this socket", reason=why)
        self._observer.fenced()
        self.abort()

    async def _open(self) -> None:
        options = self._options
        await self._send(
            encode(
                Config(
                    config=ConfigOptions(
                        auto_reconnect=options.auto_reconnect,
                        call_details=options.call_details,
                        transcript_with_tool_calls=options.transcript_with_tool_calls,
                    )
                )
            )
        )
        if self._state.greeted:
            self._log.info("call resumed", epoch=self._state.epoch, turns=self._state.turns)
            await self._send(encode(Response(response_id=0, content="", content_complete=True)))
            return
        self._begin(0, TurnKind.GREETING, (), None)

    async def close(self) -> None:
        """Cancel and await everything this call owns. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._keeper.live = False
        for kind, count in self._throttle.suppressed().items():
            self._log.warning("suppressed repeated log lines", kind=kind, count=count)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._options.close_grace_s)
            for task in pending:
                self._log.error("task ignored cancellation at close", task=task.get_name())
        self._events.call_ended(
            self._state, self.current, fenced=self.fenced, aborted=self._aborted
        )
        if self.current is not None:
            # A cancelled turn's task holds its CancelledError, whose traceback holds the
            # frames that hold this session: a cycle only a garbage collection would free
            # (see ``_weakly``). The call is over; nothing awaits that task any more.
            self.current.task = None

    def abort(self) -> None:
        """Drop the socket without a close frame (draining, or a newer socket took the call)."""
        self._aborted = True
        self._transport.abort()

    async def interrupt(
        self, content: str, *, transfer_number: str | None = None, end_call: bool = False
    ) -> None:
        """Speak ``content`` now (``agent_interrupt``), for commands from outside the call.

        Retell cancels the response in flight when it gets an interrupt, so the current
        generation is cancelled and sends nothing more. Raises ``CallGone`` if this socket
        no longer serves the call.
        """
        if self.closed or self.fenced:
            raise CallGone(self.call_id)
        current = self.current
        if current is not None and not current.completed:
            current.cancel()
            self.current = None
        self._interrupt_id += 1
        frame = AgentInterrupt(
            interrupt_id=self._interrupt_id,
            content=content,
            content_complete=True,
            end_call=True if end_call else None,
            transfer_number=None if end_call else transfer_number,
        )
        try:
            await self._send(encode(frame))
        except _SocketGone:
            raise CallGone(self.call_id) from None

    # ------------------------------------------------------------------ reader

    def receive_text(self, data: str | bytes) -> None:
        """Handle one inbound text frame. Never raises for bad input, never waits: the
        server calls it straight from the socket's read callback, in frame order."""
        try:
            message = self._decoder.decode(data)
        except FrameTooLarge as err:
            self._log.warning("frame too large, closing", size=err.size, limit=err.limit)
            self._observer.frame_rejected("too_large")
            self._close_socket(CLOSE_TOO_BIG)
            return
        except UnknownInteraction as err:
            self._observer.frame_rejected("unknown_interaction")
            suppressed = self._throttle.allow("unknown_interaction")
            if suppressed is not None:
                self._log.info(
                    "ignored unknown interaction_type",
                    interaction_type=excerpt(err.interaction_type),
                    **({"suppressed": suppressed} if suppressed else {}),
                )
            return
        except ProtocolError as err:
            self._observer.frame_rejected("malformed")
            request = undecodable_request(data)
            suppressed = self._throttle.allow("malformed")
            if suppressed is not None:
                self._log.warning(
                    "ignored malformed frame",
                    reason=err.reason,
                    field=err.field,
                    size=len(data),
                    excerpt=excerpt(data),
                    response_id=request[1] if request else None,
                    **({"suppressed": suppressed} if suppressed else {}),
                )
            if request is not None:
                # Retell waits for this id whatever its frame holds: answer it (fallback).
                kind = TurnKind.REMINDER if request[0] == "reminder_required" else TurnKind.RESPONSE
                self._begin(request[1], kind, (), None, undecodable=True)
            return
        if self._decoder.unknown_fields:
            self._note_unknown_fields()
        if isinstance(message, ResponseRequired):
            self._begin(
                message.response_id,
                TurnKind.RESPONSE,
                message.transcript,
                message.transcript_with_tool_calls,
            )
        elif isinstance(message, UpdateOnly):
            return
        elif isinstance(message, PingPong):
            self._pong(message.timestamp)
        elif isinstance(message, ReminderRequired):
            self._begin(
                message.response_id,
                TurnKind.REMINDER,
                message.transcript,
                message.transcript_with_tool_calls,
            )
        elif isinstance(message, CallDetails):
            self._state.call = message.call
            self._call_details_seen.set()

    def _pong(self, timestamp: int) -> None:
        """Echo a ping. One that crossed the caller's close frame finds the socket closing:
        the disconnect queued behind it ends the call (as a hangup, releasing its claim),
        so the failed echo is not a socket failure."""
        if self.closed:
            return
        with contextlib.suppress(Exception):
            self._transport.send_now(f'{{"response_type":"ping_pong","timestamp":{timestamp}}}')

    def receive_binary(self, size: int) -> None:
        """Retell never sends binary; ignore it rather than guess what it means."""
        self._observer.frame_rejected("binary")
        suppressed = self._throttle.allow("binary")
        if suppressed is not None:
            self._log.warning(
                "ignored binary frame",
                size=size,
                **({"suppressed": suppressed} if suppressed else {}),
            )

    def _note_unknown_fields(self) -> None:
        for path in self._decoder.unknown_fields:
            if path not in _unknown_logged:
                _unknown_logged.add(path)
                self._log.info("tolerated unknown field (logged once per process)", field=path)
        self._decoder.unknown_fields.clear()

    # ------------------------------------------------------------------ generations

    def _begin(
        self,
        response_id: int,
        kind: TurnKind,
        transcript: Sequence[Utterance],
        with_tools: Sequence[dict[str, Any]] | None,
        *,
        undecodable: bool = False,
    ) -> None:
        """Supersede the current generation and start a new one. Synchronous on purpose:
        the old generation is no longer current before the reader awaits anything.

        A request whose id is *lower* than the open one (ids only grow, so Retell should
        never send it) is served like any newer request, but the open id is first closed
        with an empty ``content_complete``: whichever of the two Retell listens to ends
        properly, and the other's frames are dropped silently (docs/decisions.md)."""
        if self.closed:
            return
        previous = self.current
        if (
            previous is not None
            and not previous.completed
            and previous.response_id == response_id
            and previous.kind is kind
            and not undecodable
        ):
            self._log.info("request re-sent while it is being answered", response_id=response_id)
            return
        replay = self._state.last_reply
        if replay is not None and (replay.response_id != response_id or undecodable):
            replay = None
        close_first: int | None = None
        if previous is not None and not previous.completed:
            previous.cancel()
            self._observer.superseded()
            previous.superseded = True
            self._events.turn_ended(self.call_id, previous, None, time.perf_counter_ns())
            if previous.kind is TurnKind.GREETING:
                self._state.greeted = True  # the caller already engaged; never greet twice
            elif response_id < previous.response_id:
                self._log.warning(
                    "response_id went backwards; closing the open one",
                    response_id=response_id,
                    open_response_id=previous.response_id,
                )
                previous.completed = True
                close_first = previous.response_id
        generation = Generation(response_id, kind, transcript=transcript)
        self.current = generation
        work = (
            self._replay(generation, replay, close_first)
            if replay is not None
            else self._run(generation, transcript, with_tools, close_first, undecodable)
        )
        task = asyncio.get_running_loop().create_task(work, name=f"turn-{response_id}")
        generation.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        gen: Generation,
        transcript: Sequence[Utterance],
        with_tools: Sequence[dict[str, Any]] | None,
        close_first: int | None = None,
        undecodable: bool = False,
    ) -> None:
        working = _clone(self._state.state)
        failure: str | None = None
        try:
            if close_first is not None:
                await self._send(
                    encode(Response(response_id=close_first, content="", content_complete=True))
                )
            if undecodable:
                failure = "undecodable_request"
                return
            if gen.kind is TurnKind.GREETING and not self._keeper.known:
                # The store could not say whether this call was greeted. One already under
                # way (a reconnect) is not greeted again: Retell's call details tell.
                # (A request read meanwhile supersedes this greeting: not greeted either.)
                await self._await_call_details()
                if _under_way(self._state.call, self._options.started_call_s):
                    self._log.warning("call state unknown and the call is under way; not greeting")
                    self._state.greeted = True
                    gen.completed = True
                    await self._send(
                        encode(Response(response_id=0, content="", content_complete=True))
                    )
                    return
            if gen.kind is TurnKind.GREETING and self._agent.needs_call_details:
                await self._await_call_details()
            turn = Turn(
                call_id=self.call_id,
                kind=gen.kind,
                response_id=gen.response_id,
                transcript=transcript,
                state=working,
                call=self._state.call,
                dynamic_variables=_dynamic_variables(self._state.call),
                transcript_with_tool_calls=with_tools,
            )
            await self._stream(gen, self._agent.respond(turn))
        except asyncio.CancelledError:
            raise
        except _SocketGone:
            return
        except TimeoutError:
            failure = "first_chunk_timeout" if not gen.spoken else "turn_timeout"
            self._log.warning("agent timed out", response_id=gen.response_id, reason=failure)
        except Exception:
            failure = "agent_error"
            self._log.exception("agent raised", response_id=gen.response_id)
        finally:
            if self.current is gen and not self.closed and not gen.completed:
                await self._finish(gen, working, failure)

    async def _replay(self, gen: Generation, reply: LastReply, close_first: int | None) -> None:
        """Answer a request that was already completed (Retell re-sent it after a
        reconnect) with what it was answered with: the agent is not called again and the
        call's state does not move."""
        self._log.info("completed request re-sent; answering it from the saved reply")
        self._observer.replayed()
        try:
            if close_first is not None:
                await self._send(
                    encode(Response(response_id=close_first, content="", content_complete=True))
                )
            gen.no_interruption = reply.no_interruption
            if reply.content:
                await self._send_chunk(gen, reply.content)
            gen.end_call = reply.end_call
            gen.transfer_number = reply.transfer_number
            gen.show_transferee_as_caller = reply.show_transferee_as_caller
            gen.digit_to_press = reply.digit_to_press
            if self.current is gen and not self.closed:
                gen.completed = True
                await self._send(self._final_frame(gen, ""))
        except _SocketGone:
            return

    async def _stream(self, gen: Generation, items: AsyncIterator[str | Action]) -> None:
        options = self._options
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(options.first_chunk_timeout_s) as deadline:
                async for item in items:
                    if isinstance(item, str):
                        if not item:
                            continue
                        if not gen.spoken:
                            deadline.reschedule(loop.time() + options.turn_timeout_s)
                        await self._send_chunk(gen, item)
                    else:
                        await self._apply(gen, item)
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _send_chunk(self, gen: Generation, text: str) -> None:
        if self.current is not gen:
            raise asyncio.CancelledError  # superseded between the agent's yield and here
        if not gen.spoken:
            gen.spoken = True
            gen.first_chunk_ns = time.perf_counter_ns()
            self._observer.first_chunk(gen.kind, gen.first_chunk_ns - gen.started_ns)
        gen.reply.append(text)
        await self._send(
            encode(
                Response(
                    response_id=gen.response_id,
                    content=text,
                    content_complete=False,
                    no_interruption_allowed=True if gen.no_interruption else None,
                )
            )
        )

    async def _apply(self, gen: Generation, action: Action) -> None:
        if isinstance(action, EndCall):
            gen.end_call = True
        elif isinstance(action, Transfer):
            gen.transfer_number = action.number
            gen.show_transferee_as_caller = action.show_transferee_as_caller
        elif isinstance(action, PressDigit):
            gen.digit_to_press = action.digits
        elif isinstance(action, NoInterruption):
            gen.no_interruption = True
        elif isinstance(action, NoCache):
            pass  # for the response cache; nothing to send
        elif isinstance(action, FromCache):
            gen.cache_hit = True
        else:
            if self.current is not gen:
                raise asyncio.CancelledError
            await self._send(self._side_frame(action))

    def _side_frame(self, action: Action) -> str:
        if isinstance(action, ToolCallStarted):
            return encode(
                ToolCallInvocation(
                    tool_call_id=action.tool_call_id, name=action.name, arguments=action.arguments
                )
            )
        if isinstance(action, ToolCallFinished):
            return encode(
                ToolCallResult(
                    tool_call_id=action.tool_call_id,
                    content=action.content,
                    successful=action.successful,
                )
            )
        if isinstance(action, Interrupt):
            self._interrupt_id += 1
            return encode(
                AgentInterrupt(
                    interrupt_id=self._interrupt_id,
                    content=action.content,
                    content_complete=True,
                    no_interruption_allowed=action.no_interruption_allowed or None,
                    end_call=action.end_call or None,
                    transfer_number=action.transfer_number,
                )
            )
        if isinstance(action, UpdateAgent):
            return encode(
                UpdateAgentConfig(
                    agent_config=AgentConfig(
                        responsiveness=action.responsiveness,
                        interruption_sensitivity=action.interruption_sensitivity,
                        reminder_trigger_ms=action.reminder_trigger_ms,
                        reminder_max_count=action.reminder_max_count,
                    )
                )
            )
        if isinstance(action, SendMetadata):
            return encode(Metadata(metadata=action.data))
        raise TypeError(f"agent yielded an unsupported value: {action!r}")

    async def _finish(self, gen: Generation, working: dict[str, Any], failure: str | None) -> None:
        """Commit the turn, make it durable, then send ``content_complete`` (with the
        fallback if nothing was said).

        The save comes first so that a node killed at any instant after Retell heard the
        turn end cannot lose it (a second greeting, a question asked again). It costs the
        turn one store round trip *after* its last chunk, never before its first; a store
        that does not answer delays ``content_complete`` by at most ``state_wait_s``.
        From here the generation is no longer cancellable: a request read during the save
        supersedes it, and its ``content_complete`` is then not sent (Retell no longer
        waits for that id), but the caller heard it, so it stays committed."""
        content = ""
        if failure is not None:
            self._observer.fallback(failure)
            if not gen.spoken:
                content = self._options.fallback_text
                gen.reply.append(content)
        gen.completed = True
        self._events.turn_ended(self.call_id, gen, failure, time.perf_counter_ns())
        state = self._state
        if failure is None:
            state.state = working
        if gen.kind is TurnKind.GREETING:
            state.greeted = True
        else:
            state.turns += 1
        state.last_response_id = gen.response_id
        end_call, transfer, digits = _chosen_action(gen)
        state.last_reply = LastReply(
            response_id=gen.response_id,
            content="".join(gen.reply),
            end_call=bool(end_call),
            transfer_number=transfer,
            show_transferee_as_caller=bool(transfer and gen.show_transferee_as_caller),
            digit_to_press=digits,
            no_interruption=gen.no_interruption,
        )
        if not await asyncio.shield(self._keeper.persist(self._options.state_wait_s)):
            self._observer.not_durable()
        if self.current is not gen or self.closed:
            return
        with contextlib.suppress(_SocketGone):
            await self._send(self._final_frame(gen, content))
            self._observer.turn_completed(gen.kind, time.perf_counter_ns() - gen.started_ns)

    def _final_frame(self, gen: Generation, content: str) -> str:
        end_call, transfer, digits = _chosen_action(gen)
        return encode(
            Response(
                response_id=gen.response_id,
                content=content,
                content_complete=True,
                no_interruption_allowed=True if gen.no_interruption else None,
                end_call=end_call,
                transfer_number=transfer,
                show_transferee_as_caller=(
                    True if transfer and gen.show_transferee_as_caller else None
                ),
                digit_to_press=digits,
            )
        )

    async def _await_call_details(self) -> None:
        if not self._options.call_details or self._state.call is not None:
            return
        try:
            await asyncio.wait_for(
                self._call_details_seen.wait(), self._options.call_details_timeout_s
            )
        except TimeoutError:
            self._log.warning("no call_details in time; greeting without call data")

    # ------------------------------------------------------------------ I/O helpers

    async def _send(self, text: str) -> None:
        if self.closed:
            raise _SocketGone
        try:
            await self._transport.send_text(text)
        except Exception as err:
            self.closed = True
            raise _SocketGone from err

    def _close_socket(self, code: int) -> None:
        """Close with ``code``; the session ends when the socket does (``close``)."""
        with contextlib.suppress(Exception):
            self._transport.close(code)


def _weakly(method: Callable[[str], None]) -> Callable[[str], None]:
    """``method``, without keeping its object alive. The keeper lives inside the session:
    a strong bound method would make every session a reference cycle, freed only by a
    garbage collection, and at thousands of calls those collections are the node's
    longest pauses. Without the cycle, refcounting frees a session when its socket ends."""
    ref = weakref.WeakMethod(method)

    def call(arg: str) -> None:
        bound = ref()
        if bound is not None:
            bound(arg)

    return call


def _chosen_action(gen: Generation) -> tuple[bool | None, str | None, str | None]:
    """Retell runs at most one of these; send only the one it would run."""
    end_call = gen.end_call or None
    transfer = None if end_call else gen.transfer_number
    digits = None if end_call or transfer else gen.digit_to_press
    return end_call, transfer, digits


def _under_way(call: dict[str, Any] | None, started_s: float) -> bool:
    """Whether Retell's call object says the call began a while ago or has been talked
    in: then a socket for it is a reconnect, not the call's first."""
    if not call:
        return False
    if call.get("transcript") or call.get("transcript_object"):
        return True
    started = call.get("start_timestamp")
    if isinstance(started, int | float) and not isinstance(started, bool) and started > 0:
        return time.time() * 1000 - started > started_s * 1000
    return False


def _clone(state: dict[str, Any]) -> dict[str, Any]:
    if not state:
        return {}
    return _state_decoder.decode(_state_encoder.encode(state))


def _dynamic_variables(call: dict[str, Any] | None) -> dict[str, str]:
    if not call:
        return {}
    variables = call.get("retell_llm_dynamic_variables")
    return variables if isinstance(variables, dict) else {}
