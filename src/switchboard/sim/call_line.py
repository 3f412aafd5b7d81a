"""Retell's side of one call's connection: the sockets, the keepalive and every server frame.

A call has one live socket at a time. ``CallLine`` opens it (3 attempts, 7 s open timeout,
3 s apart), reads every frame, answers ``config`` (``call_details``, keepalive pings), and
after a socket ends decides, as Retell does, whether to reconnect (after 1006 up to 4
times; after 5 s without a pong up to 2 times) or to end the call with a disconnection
reason. Each frame is handled synchronously in the step that read it, so its timestamp is
taken the moment it is read; ``Ledger`` judges each response frame as Retell would (spec
1.8). The caller's script (``caller.SimulatedCall``) builds on this and waits on it with
``_wait``/``_ready``, woken by ``_progress``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Sequence
from typing import Final

import msgspec

from switchboard.log import get_logger
from switchboard.protocol.outbound import (
    AgentInterrupt,
    Config,
    Metadata,
    PingPongReply,
    Response,
    ToolCallInvocation,
    ToolCallResult,
    UpdateAgentConfig,
)
from switchboard.sim.client_socket import Message, open_socket
from switchboard.sim.conversation import CallerTurn, CallRecord, TurnOutcome
from switchboard.sim.frames import InvalidFrame, decode_server_frame
from switchboard.sim.ledger import Ledger
from switchboard.sim.line_socket import (
    ABNORMAL,
    AGENT_HANGUP,
    CALL_TRANSFER,
    ERR_CORRUPT,
    ERR_LOST,
    ERR_OPEN,
    ERR_RUNTIME,
    KEEPALIVE,
    LOCAL,
    LineSocket,
)
from switchboard.sim.metrics import RunMetrics
from switchboard.sim.options import SimOptions
from switchboard.sim.results import ReconnectEvent
from switchboard.sim.transcript import Transcript

log = get_logger("switchboard.sim")

_STOP: Final = object()
_now = time.perf_counter
_encoder = msgspec.json.Encoder()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class CallLine:
    """The connection of one simulated call and what it observed; ``SimulatedCall`` plays
    the caller on it. Every observation goes to ``metrics``."""

    def __init__(
        self,
        options: SimOptions,
        metrics: RunMetrics,
        call_id: str,
        call: dict[str, object],
        script: Sequence[CallerTurn],
        rng: random.Random,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.call_id = call_id
        self.url = f"{options.base_url}/{call_id}"
        self.script = script
        self.rng = rng
        self.stop = stop
        self.record = CallRecord(call_id=call_id)
        self.transcript = Transcript()
        self._call_details = _encoder.encode({"interaction_type": "call_details", "call": call})
        self.ledger = Ledger(call_id, metrics, options.stale_grace_ms / 1000.0)
        self._sock: LineSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: what the script awaits in ``_wait``; ``_progress`` wakes it
        self._waiter: asyncio.Future[None] | None = None
        self._hanging_up = False  # the caller (Retell) is closing on purpose
        self._ever_ponged = False
        self._no_pong_reported = False
        self._started = 0.0
        self._reconnected = False
        self._resumed = False
        #: tools reported since the last turn was concluded (``TurnOutcome.tool_calls``)
        self._tools: list[str] = []
        #: wall clock = perf counter + this (event times are reported in Unix seconds)
        self._wall_offset = time.time() - _now()

    async def _shut(self, lifecycle: asyncio.Task[None]) -> None:
        """Retell closes the socket (1000) when the call ends, then the lifecycle is over."""
        if not lifecycle.done():
            await self._close(1000)
            await asyncio.wait({lifecycle}, timeout=self.options.close_timeout_s + 1.0)
        if not lifecycle.done():
            lifecycle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lifecycle

    def _finish(self, reason: str, failed: bool) -> None:
        """Record how the call ended; the first reason wins."""
        if self.record.reason:
            return
        self.record.reason = reason
        self.record.failed = failed
        self._progress()

    async def _close(self, code: int) -> None:
        self._hanging_up = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(Exception):
                await sock.ws.close(code)

    async def _wait(self, seconds: float | None) -> None:
        """Until ``_progress`` is called or ``seconds`` pass (``None``: no limit)."""
        loop = self._loop
        assert loop is not None
        waiter = loop.create_future()
        self._waiter = waiter
        timer = None if seconds is None else loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _progress(self) -> None:
        """Something the script may be waiting for happened: wake it if it waits."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        """``asyncio.sleep`` on the loop already at hand."""
        loop = self._loop
        assert loop is not None
        waiter = loop.create_future()
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

    async def _send(self, sock: LineSocket, frame: bytes) -> None:
        """Send one text frame, at the pace the server reads. On a socket that is closing
        this waits until it has closed, so the caller goes on on the next socket; the
        lifecycle notices the loss and reconnects or ends the call."""
        ws = sock.ws
        if not ws.write_text(frame):
            await ws.wait_closed()
            return
        if ws.paused and not await ws.drain():
            return
        self.metrics.frames_sent += 1

    async def _lifecycle(self) -> None:
        abnormal = keepalive = 0
        lost: ReconnectEvent | None = None
        m = self.metrics
        try:
            while True:
                sock = await self._open(lost)
                if sock is None:
                    self._finish(ERR_LOST if lost else ERR_OPEN, failed=True)
                    return
                if lost is not None:
                    lost.reopened_at = self._wall(sock.opened_at)
                    m.reconnects += 1
                    m.reconnects_by_cause[lost.cause] += 1
                    if not self._reconnected:
                        self._reconnected = True
                        m.calls_reconnected += 1
                ending = await self._serve(sock)
                if ending == LOCAL:
                    return
                if ending in (ABNORMAL, KEEPALIVE):
                    lost = ReconnectEvent(
                        call_id=self.call_id, cause=ending, lost_at=self._wall(_now())
                    )
                    m.socket_lost(lost)
                if ending == ABNORMAL:
                    abnormal += 1
                    if abnormal > self.options.max_abnormal_reconnects:
                        self._finish(ERR_RUNTIME, failed=True)
                        return
                elif ending == KEEPALIVE:
                    keepalive += 1
                    if keepalive > self.options.max_keepalive_reconnects:
                        self._finish(ERR_LOST, failed=True)
                        return
                else:
                    self._finish(ending, failed=ending.startswith("error_"))
                    return
        finally:
            self._sock = None
            self._progress()

    async def _open(self, lost: ReconnectEvent | None) -> LineSocket | None:
        o = self.options
        for attempt in range(1, o.connect_attempts + 1):
            if self._hanging_up or self.record.reason:
                return None
            started = _now()
            try:
                ws = await open_socket(
                    self.url,
                    open_timeout=o.open_timeout_s,
                    close_timeout=o.close_timeout_s,
                    max_size=o.max_frame_bytes,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug(
                    "LLM Ws init attempt failed",
                    call_id=self.call_id,
                    attempt=attempt,
                    error=repr(exc),
                )
                if attempt < o.connect_attempts:
                    await asyncio.sleep(o.connect_retry_delay_s)
                continue
            opened = _now()
            self.metrics.connect.record(opened - started)
            if self._hanging_up or self.record.reason:
                with contextlib.suppress(Exception):
                    await ws.close(1000)
                return None
            return LineSocket(ws, opened, lost)
        return None

    async def _serve(self, sock: LineSocket) -> str:
        """Read one socket until it ends; say how it ended."""
        ws = sock.ws
        self._sock = sock
        self._progress()
        try:
            ws.deliver_to(functools.partial(self._on_message, sock))
            await ws.ended()
        finally:
            if sock.keepalive is not None:
                sock.keepalive.cancel()
                sock.keepalive = None
            if self._sock is sock:
                self._sock = None
            self._progress()
        if sock.local_reason == ERR_CORRUPT:
            with contextlib.suppress(Exception):
                await ws.close(1007, "binary frame")
            return ERR_CORRUPT
        if self._hanging_up:
            return LOCAL
        if sock.local_reason is not None:
            return sock.local_reason
        received = ws.close_rcvd
        if received is None:
            return ABNORMAL
        if received.code == 1000:
            return AGENT_HANGUP
        if received.code == 1005:
            return ERR_OPEN
        return ERR_RUNTIME

    def _on_message(self, sock: LineSocket, data: Message) -> None:
        """Every message of ``sock``, handled in the step that read it."""
        self.metrics.frames_received += 1
        result = self._on_frame(sock, data)
        if result is None:
            return
        if result is _STOP:
            sock.ws.stop_delivery()  # _serve closes the socket
            return
        assert isinstance(result, Config)
        self._configure(sock, result)

    def _configure(self, sock: LineSocket, frame: Config) -> None:
        config = frame.config
        self.transcript.with_tool_calls = config.transcript_with_tool_calls
        if config.call_details and sock.ws.write_text(self._call_details):
            self.metrics.frames_sent += 1
        if config.auto_reconnect and not sock.keepalive_on and sock.ws.open:
            sock.keepalive_on = True
            sock.last_pong_at = sock.next_ping_at = _now()
            assert self._loop is not None
            sock.keepalive = self._loop.call_soon(self._keepalive, sock)

    def _keepalive(self, sock: LineSocket) -> None:
        """Ping every 2 s; 5 s without any pong closes the socket for a reconnect. One
        tick per ping or deadline, rescheduled until the socket ends (``_serve`` cancels
        it) or is closing."""
        sock.keepalive = None
        o = self.options
        now = _now()
        if now - sock.last_pong_at >= o.pong_timeout_s:
            self._keepalive_lost(sock)
            return
        if now >= sock.next_ping_at:
            ts = int(time.time() * 1000)
            if ts <= sock.last_ping_ts:
                ts = sock.last_ping_ts + 1
            sock.last_ping_ts = ts
            sock.last_ping_at = now
            if not sock.ws.write_text(b'{"interaction_type":"ping_pong","timestamp":%d}' % ts):
                return  # closing: the lifecycle notices when it has closed
            self.metrics.frames_sent += 1
            sock.next_ping_at = now + o.ping_interval_s
        delay = max(0.0, min(sock.next_ping_at, sock.last_pong_at + o.pong_timeout_s) - now)
        assert self._loop is not None
        sock.keepalive = self._loop.call_later(delay, self._keepalive, sock)

    def _keepalive_lost(self, sock: LineSocket) -> None:
        o = self.options
        if not self._ever_ponged and not self._no_pong_reported:
            self._no_pong_reported = True
            self.metrics.violation(
                "no_pong",
                self.call_id,
                f"no ping_pong reply within {o.pong_timeout_s:g} s (auto_reconnect was requested)",
            )
        sock.local_reason = KEEPALIVE
        sock.ws.start_close(1001, "keepalive timeout")

    def _on_frame(self, sock: LineSocket, data: Message) -> object:
        now = _now()
        m = self.metrics
        if isinstance(data, bytes):
            m.violation("binary_frame", self.call_id, f"binary frame of {len(data)} bytes")
            m.frames_dropped += 1
            sock.local_reason = ERR_CORRUPT
            return _STOP
        try:
            frame = decode_server_frame(data)
        except InvalidFrame as err:
            m.violation("invalid_frame", self.call_id, f"{err}: {data[:120]!r}")
            m.frames_dropped += 1
            return None
        if isinstance(frame, Response):
            self._on_response(sock, frame, now)
        elif isinstance(frame, PingPongReply):
            self._on_pong(sock, now, frame.timestamp)
        elif isinstance(frame, Config):
            m.server_messages["config"] += 1
            return frame
        elif isinstance(frame, AgentInterrupt):
            self._on_interrupt(sock, frame)
        elif isinstance(frame, ToolCallInvocation | ToolCallResult):
            item = msgspec.structs.asdict(frame)
            role = (
                "tool_call_invocation"
                if isinstance(frame, ToolCallInvocation)
                else "tool_call_result"
            )
            item["role"] = role
            if item.get("successful", 0) is None:
                del item["successful"]
            if isinstance(frame, ToolCallInvocation):
                self._tools.append(frame.name)
            self.transcript.add_tool_event(item)
            m.server_messages[role] += 1
        elif isinstance(frame, UpdateAgentConfig):
            m.server_messages["update_agent"] += 1
        elif isinstance(frame, Metadata):
            m.server_messages["metadata"] += 1
        return None

    def _on_pong(self, sock: LineSocket, now: float, timestamp: int) -> None:
        self.metrics.server_messages["ping_pong"] += 1
        if not sock.keepalive_on or sock.last_ping_ts == 0:
            return  # a pong nobody asked for: harmless
        if timestamp >= sock.last_ping_ts:  # an echo of the latest ping, or the server's time
            self.metrics.pong_rtt.record(now - sock.last_ping_at)
        sock.last_pong_at = now
        sock.pongs += 1
        self._ever_ponged = True

    def _on_response(self, sock: LineSocket, r: Response, now: float) -> None:
        if r.response_id == 0:
            self._on_begin(sock, r, now)
        elif self.ledger.on_response(r, now):
            if sock.reconnect is not None and sock.reconnect.answered_at is None:
                self._after_reconnect(sock, sock.reconnect, r.response_id, now)
            self._progress()

    def _after_reconnect(
        self, sock: LineSocket, event: ReconnectEvent, response_id: int, now: float
    ) -> None:
        """The first turn answered on a socket that replaced a lost one: the call went on,
        and it was resumed if that socket did not greet again."""
        req = self.ledger.requests[response_id - 1]
        if not req.completed or req.sent_at < sock.opened_at:
            return
        event.answered_at = self._wall(now)
        m = self.metrics
        m.loss_to_answer.record(event.answered_at - event.lost_at)
        # A call lost before its greeting had nothing to resume: going on is enough.
        if event.begin_empty is not False and not self._resumed:
            self._resumed = True
            m.calls_resumed += 1

    def _wall(self, perf: float) -> float:
        return round(perf + self._wall_offset, 6)

    def _on_begin(self, sock: LineSocket, r: Response, now: float) -> None:
        m = self.metrics
        if sock.begun:
            m.violation(
                "content_after_complete",
                self.call_id,
                f"frame for response_id 0 after the begin message completed: {r.content[:60]!r}",
                0,
            )
            m.frames_dropped += 1
            return
        times = m.per_kind["greeting"]
        if sock.begin_first_at is None:
            sock.begin_first_at = now
            times.ttfb.record(now - sock.opened_at)
        sock.begin_parts.append(r.content)
        if not r.content_complete:
            return
        sock.begun = True
        times.ttc.record(now - sock.opened_at)
        greeting = "".join(sock.begin_parts)
        if sock.reconnect is not None and self.record.greeting is not None:
            sock.reconnect.begin_empty = not greeting.strip()
        if self.record.greeting is None:
            self.record.greeting = greeting
            m.greeting.record(now - self._started)
            self.transcript.add_agent(greeting)
        elif greeting.strip():
            m.violation(
                "repeated_greeting",
                self.call_id,
                f"greeting spoken again after a reconnect: {greeting[:60]!r}",
                0,
            )
        if r.end_call:
            self._finish(AGENT_HANGUP, failed=False)
        elif r.transfer_number is not None:
            self._finish(CALL_TRANSFER, failed=False)
        self._progress()

    def _on_interrupt(self, sock: LineSocket, frame: AgentInterrupt) -> None:
        """The agent speaks now: the response in flight is cancelled (spec 1.7)."""
        self.metrics.server_messages["agent_interrupt"] += 1
        if frame.interrupt_id != sock.interrupt_id:
            sock.interrupt_id = frame.interrupt_id
            sock.interrupt_parts = []
        sock.interrupt_parts.append(frame.content)
        if self.ledger.interrupt():
            self._progress()
        if not frame.content_complete:
            return
        self.transcript.commit_user()
        said = "".join(sock.interrupt_parts)
        self.transcript.add_agent(said)
        sock.interrupt_parts = []
        self.record.interrupts.append(
            TurnOutcome(
                reply=said,
                completed=True,
                end_call=bool(frame.end_call),
                transfer_number=frame.transfer_number,
            )
        )
        if frame.end_call:
            self._finish(AGENT_HANGUP, failed=False)
        elif frame.transfer_number is not None:
            self._finish(CALL_TRANSFER, failed=False)
