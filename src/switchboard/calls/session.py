"""``CallSession``: the runtime of one Retell socket, the I/O shell around the turn's
decisions (docs/architecture.md, "The turn").

What to send is decided elsewhere, without I/O: ``supersession.admit`` (which request
supersedes which, what is closed first, what is replayed), ``frames`` (which frames an
agent's output and actions become), ``completion`` (the fallback, the commit). This
class reads frames, runs one task per generation, saves, and sends. What may not change
(the invariants of docs/architecture.md):

* ``config`` is the first frame on every socket; the begin message (``response_id`` 0)
  follows, empty when the call was already greeted (a reconnect).
* ``ping_pong`` is answered inline by the reader, never queued behind a generation.
* Reading a newer request cancels the older generation's task (which closes the agent's
  upstream stream) *before* anything else is awaited, and every send checks that its
  generation is still current: no frame of a superseded id leaves after that point.
* Every generation still current when it ends sends ``content_complete: true`` from a
  ``finally`` path, with a spoken fallback if the agent raised or timed out.
* A completed turn is saved *before* its ``content_complete`` (``StateKeeper.persist``),
  so whatever instant a node dies at, a reconnect never greets again or asks again.
* A superseded turn leaves no trace: the agent works on a copy of ``state``.
* Closing the session cancels and awaits every task it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from switchboard import tracing
from switchboard.agents.base import Action, Agent, Interrupt, Turn, TurnKind
from switchboard.calls import frames, turn_trace
from switchboard.calls.call_events import NULL_CALL_EVENTS, CallEvents
from switchboard.calls.completion import closing_words, commit
from switchboard.calls.deadlines import TurnDeadlines, turn_deadlines
from switchboard.calls.generation import Generation
from switchboard.calls.keeper import StateKeeper, weakly
from switchboard.calls.observer import NULL_OBSERVER, SessionObserver
from switchboard.calls.options import SessionOptions
from switchboard.calls.rejections import Rejections
from switchboard.calls.supersession import admit
from switchboard.calls.transport import CLOSE_TOO_BIG, CallGone, SocketGone, Transport
from switchboard.calls.turn_input import dynamic_variables, under_way, working_copy
from switchboard.log import excerpt, get_logger
from switchboard.protocol.codec import FrameDecoder, undecodable_request
from switchboard.protocol.errors import FrameTooLarge, ProtocolError, UnknownInteraction
from switchboard.protocol.inbound import (
    CallDetails,
    PingPong,
    ReminderRequired,
    ResponseRequired,
    UpdateOnly,
    Utterance,
)
from switchboard.state.base import CallState, CallStore, LastReply

__all__ = ["CLOSE_TOO_BIG", "CallGone", "CallSession", "SessionOptions", "Transport"]


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
        self._span: Any = None  # the call's trace span, when tracing
        self._decoder = FrameDecoder(options.max_frame_bytes, options.check_updates_every)
        self._log = get_logger("switchboard.call", call_id=call_id)
        self._rejections = Rejections(self._log, observer)
        self._keeper = StateKeeper(call_id, store, node_id, self._log, weakly(self._fence))
        self._tasks: set[asyncio.Task[None]] = set()
        self._call_details_seen = asyncio.Event()
        self._interrupt_id = 0
        self._deadlines: TurnDeadlines | None = None
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
        if tracing.ENABLED:
            self._span = tracing.start_call(self.call_id)
        self._events.call_started(self._state)
        with contextlib.suppress(SocketGone):
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
            frames.config_frame(
                options.auto_reconnect, options.call_details, options.transcript_with_tool_calls
            )
        )
        if self._state.greeted:
            self._log.info("call resumed", epoch=self._state.epoch, turns=self._state.turns)
            await self._send(frames.empty_complete(0))
            return
        self._begin(0, TurnKind.GREETING, (), None)

    async def close(self) -> None:
        """Cancel and await everything this call owns. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._keeper.live = False
        self._rejections.close()
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
        if self._span is not None:
            turn_trace.end_call(self._span, self._state.turns, self.fenced)
        if self.current is not None:
            # A cancelled turn's task holds its CancelledError, whose traceback holds this
            # session: a cycle only a collection frees (``keeper.weakly``). Nothing awaits it.
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
        frame = frames.command_interrupt(self._interrupt_id, content, transfer_number, end_call)
        try:
            await self._send(frame)
        except SocketGone:
            raise CallGone(self.call_id) from None

    # ------------------------------------------------------------------ reader

    def leaves_unread(self, head: bytes, size: int) -> bool:
        """Whether a text frame of ``size`` bytes starting with ``head`` (its first
        ``UPDATE_HEAD_SIZE`` bytes) is an update this call does not read: the socket then
        drops it before unmasking the rest (``FrameDecoder.skips_head``). A frame it keeps
        goes to ``receive_text(data, judged=True)``."""
        return self._decoder.skips_head(head, size)

    def receive_text(self, data: str | bytes, *, judged: bool = False) -> None:
        """Handle one inbound text frame. Never raises for bad input, never waits: the
        server calls it straight from the socket's read callback, in frame order.
        ``judged``: ``leaves_unread`` was already asked about this frame (and said no)."""
        if not judged and self._decoder.skips_update(data):
            return  # an update_only frame, unread (see ``FrameDecoder.skips_update``)
        try:
            message = self._decoder.decode(data)
        except FrameTooLarge as err:
            self._log.warning("frame too large, closing", size=err.size, limit=err.limit)
            self._observer.frame_rejected("too_large")
            self._close_socket(CLOSE_TOO_BIG)
            return
        except UnknownInteraction as err:
            self._rejections.refuse(
                "unknown_interaction",
                "ignored unknown interaction_type",
                level="info",
                interaction_type=excerpt(err.interaction_type),
            )
            return
        except ProtocolError as err:
            request = undecodable_request(data)
            self._rejections.refuse(
                "malformed",
                "ignored malformed frame",
                reason=err.reason,
                field=err.field,
                size=len(data),
                excerpt=excerpt(data),
                response_id=request[1] if request else None,
            )
            if request is not None:
                # Retell waits for this id whatever its frame holds: answer it (fallback).
                kind = TurnKind.REMINDER if request[0] == "reminder_required" else TurnKind.RESPONSE
                self._begin(request[1], kind, (), None, undecodable=True)
            return
        if self._decoder.unknown_fields:
            self._rejections.unknown_fields(self._decoder.unknown_fields)
        if isinstance(message, (ResponseRequired, ReminderRequired)):
            kind = TurnKind.RESPONSE if isinstance(message, ResponseRequired) else TurnKind.REMINDER
            self._begin(
                message.response_id, kind, message.transcript, message.transcript_with_tool_calls
            )
        elif isinstance(message, UpdateOnly):
            return
        elif isinstance(message, PingPong):
            self._pong(message.timestamp)
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
        self._rejections.refuse("binary", "ignored binary frame", size=size)

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
        """Carry out what ``supersession.admit`` decides for the request just read.
        Synchronous on purpose: the old generation is no longer current before the reader
        awaits anything."""
        if self.closed:
            return
        previous = self.current
        admission = admit(
            previous, self._state.last_reply, response_id, kind, undecodable=undecodable
        )
        if not admission.start:
            self._log.info("request re-sent while it is being answered", response_id=response_id)
            return
        if admission.supersede and previous is not None:
            previous.cancel()
            self._observer.superseded()
            previous.superseded = True
            self._events.turn_ended(self.call_id, previous, None, time.perf_counter_ns())
            if admission.greeted:
                self._state.greeted = True  # the caller already engaged; never greet twice
            elif admission.close_first is not None:
                self._log.warning(
                    "response_id went backwards; closing the open one",
                    response_id=response_id,
                    open_response_id=previous.response_id,
                )
                previous.completed = True
        generation = Generation(response_id, kind, transcript=transcript)
        self.current = generation
        close_first = admission.close_first
        work = (
            self._replay(generation, admission.replay, close_first)
            if admission.replay is not None
            else self._run(generation, transcript, with_tools, close_first, undecodable)
        )
        if tracing.ENABLED:
            task = turn_trace.traced_task(generation, work, self._span)
        else:
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
        working = working_copy(self._state.state)
        failure: str | None = None
        try:
            if close_first is not None:
                await self._send(frames.empty_complete(close_first))
            if undecodable:
                failure = "undecodable_request"
                return
            if gen.kind is TurnKind.GREETING and not self._keeper.known:
                # The store could not say whether this call was greeted. One already under
                # way (a reconnect) is not greeted again: Retell's call details tell.
                # (A request read meanwhile supersedes this greeting: not greeted either.)
                await self._await_call_details()
                if under_way(self._state.call, self._options.started_call_s, time.time() * 1000):
                    self._log.warning("call state unknown and the call is under way; not greeting")
                    self._state.greeted = True
                    gen.completed = True
                    await self._send(frames.empty_complete(0))
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
                dynamic_variables=dynamic_variables(self._state.call),
                transcript_with_tool_calls=with_tools,
            )
            with tracing.child(None, "agent") if tracing.ENABLED else tracing.NO_SPAN:
                await self._stream(gen, self._agent.respond(turn))
        except asyncio.CancelledError:
            raise
        except SocketGone:
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
                await self._send(frames.empty_complete(close_first))
            frames.replay(gen, reply)
            if reply.content:
                await self._send_chunk(gen, reply.content)
            if self.current is gen and not self.closed:
                gen.completed = True
                await self._send(frames.final_frame(gen, ""))
        except SocketGone:
            return

    async def _stream(self, gen: Generation, items: AsyncIterator[str | Action]) -> None:
        """Send what the agent yields. No first chunk within ``first_chunk_timeout_s``, or
        no end within ``turn_timeout_s`` of it, raises ``TimeoutError`` (``TurnDeadlines``:
        the turn's task is cancelled, and that cancellation, if no other, becomes the
        timeout here)."""
        options = self._options
        task = cast("asyncio.Task[None]", asyncio.current_task())
        cancelling = task.cancelling()
        deadlines = self._deadlines
        if deadlines is None:
            deadlines = self._deadlines = turn_deadlines(asyncio.get_running_loop())
        deadline = deadlines.arm(task, options.first_chunk_timeout_s)
        try:
            async for item in items:
                if isinstance(item, str):
                    if not item:
                        continue
                    if not gen.spoken:
                        deadlines.move(deadline, options.turn_timeout_s)
                    await self._send_chunk(gen, item)
                else:
                    await self._apply(gen, item)
        except asyncio.CancelledError:
            if deadline.expired and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            deadlines.disarm(deadline)
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
        await self._send(frames.chunk_frame(gen, text))

    async def _apply(self, gen: Generation, action: Action) -> None:
        if not frames.record(gen, action):
            return
        if self.current is not gen:
            raise asyncio.CancelledError
        if isinstance(action, Interrupt):
            self._interrupt_id += 1
        await self._send(frames.side_frame(action, self._interrupt_id))

    async def _finish(self, gen: Generation, working: dict[str, Any], failure: str | None) -> None:
        """Commit the turn, make it durable, count it (so whoever reads ``content_complete``
        finds the turn on ``/metrics``), then send ``content_complete`` (with the fallback).

        The save comes first so that a node killed at any instant after Retell heard the
        turn end cannot lose it (a second greeting, a question asked again). It costs the
        turn one store round trip *after* its last chunk, never before its first; a store
        that does not answer delays ``content_complete`` by at most ``state_wait_s``.
        From here the generation is no longer cancellable: a request read during the save
        supersedes it, and its ``content_complete`` is then not sent (Retell no longer
        waits for that id), but the caller heard it, so it stays committed."""
        if failure is not None:
            self._observer.fallback(failure)
        content = closing_words(gen, failure, self._options.fallback_text)
        gen.completed = True
        ended_ns = time.perf_counter_ns()
        self._events.turn_ended(self.call_id, gen, failure, ended_ns)
        commit(self._state, gen, working, failure)
        durable = self._keeper.persist_now()
        if durable is None:
            durable = await asyncio.shield(self._keeper.persist(self._options.state_wait_s))
        self._observer.persisted(durable, time.perf_counter_ns() - ended_ns)
        if self.current is not gen or self.closed:
            return
        self._observer.turn_completed(gen.kind, time.perf_counter_ns() - gen.started_ns)
        with contextlib.suppress(SocketGone):
            await self._send(frames.final_frame(gen, content))

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
            raise SocketGone
        try:
            await self._transport.send_text(text)
        except Exception as err:
            self.closed = True
            raise SocketGone from err

    def _close_socket(self, code: int) -> None:
        """Close with ``code``; the session ends when the socket does (``close``)."""
        with contextlib.suppress(Exception):
            self._transport.close(code)
