"""One simulated call: the caller's script, played on Retell's side of the connection.

The *script* is the caller: it speaks in ``update_only`` partials, asks with
``response_required``/``reminder_required`` and waits for the answer, barging in when its
script says so. The connection it plays on (sockets, reconnects, keepalive, server frames)
is ``call_line.CallLine``. A reconnect continues the same call: same ``call_id``, full
transcript, and a request the lost socket never answered is asked again under a new id.

Waits are bare futures on the loop: at thousands of calls each task step and ``asyncio``
helper (``sleep`` and ``timeout`` look the loop up, a syscall on this Python) is a visible
share of the simulator's core.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from switchboard.log import get_logger
from switchboard.sim.call_line import CallLine
from switchboard.sim.conversation import CallerTurn, CallRecord, TurnOutcome
from switchboard.sim.ledger import Request
from switchboard.sim.line_socket import (
    AGENT_HANGUP,
    CALL_TRANSFER,
    ERR_UNKNOWN,
    USER_HANGUP,
    CallOver,
    LineSocket,
)

log = get_logger("switchboard.sim")
_now = time.perf_counter

__all__ = ["CALL_TRANSFER", "SimulatedCall"]


class SimulatedCall(CallLine):
    """Plays one call; ``run`` returns how it ended. Every observation goes to ``metrics``."""

    async def run(self) -> CallRecord:
        m = self.metrics
        m.calls_started += 1
        m.calls_active += 1
        self._loop = asyncio.get_running_loop()
        self._started = _now()
        lifecycle = asyncio.create_task(self._lifecycle())
        try:
            await self._converse()
        except CallOver:
            pass
        except Exception:
            log.exception("simulated call crashed", call_id=self.call_id)
            self._finish(ERR_UNKNOWN, failed=True)
        finally:
            self._finish(USER_HANGUP, failed=False)
            await self._shut(lifecycle)
            m.call_ended(self.record.reason, self.record.failed)
        return self.record

    async def _converse(self) -> None:
        think = self.options.think_ms / 1000.0
        for turn in self.script:
            if self.stop is not None and self.stop.is_set():
                break
            if turn.pause_s is not None:
                if turn.pause_s > 0:
                    await self._sleep(turn.pause_s)
            elif think:
                await self._sleep(think * (0.5 + self.rng.random()))
            if turn.say is None:
                outcome = await self._reminder()
            else:
                outcome = await self._speak(turn)
            self.record.outcomes.append(outcome)
            if outcome.end_call:
                self._finish(AGENT_HANGUP, failed=False)
                return
            if outcome.transfer_number is not None:
                self._finish(CALL_TRANSFER, failed=False)
                return
            if turn.then_wait_s:
                await self._linger(turn.then_wait_s)
        await self._ready()  # a caller hangs up on a live call only
        self._finish(USER_HANGUP, failed=False)

    async def _linger(self, seconds: float) -> None:
        """Silence until the call ends (``CallOver``) or ``seconds`` pass."""
        deadline = _now() + seconds
        while not self.record.reason and (remaining := deadline - _now()) > 0:
            await self._wait(remaining)
        if self.record.reason:
            raise CallOver

    async def _reminder(self) -> TurnOutcome:
        req = await self._ask("reminder")
        return self._conclude(req)

    async def _speak(self, turn: CallerTurn) -> TurnOutcome:
        assert turn.say is not None
        words = turn.say.split()
        await self._say(words, gaps=turn.word_gaps_s)
        req = await self._ask("response", until_first_frame=turn.barge_in is not None)
        # Retell sets interruption sensitivity to 0 while such content plays.
        if turn.barge_in and not req.interrupted and not req.no_interruption:
            more = turn.barge_in.split()
            if req.completed:
                # The reply is being spoken: the caller talks over it.
                self._conclude(req)
                await self._say(more)
            else:
                # Retell asked too early: the caller kept talking, it asks again.
                await self._say(words + more, first=len(words))
            req = await self._ask("barge_in")
        return self._conclude(req)

    def _conclude(self, req: Request) -> TurnOutcome:
        """The turn is over: the caller's words and the agent's reply join the transcript."""
        self.transcript.commit_user()
        text = req.text
        if req.completed:
            self.transcript.add_agent(text)
        tools, self._tools = tuple(self._tools), []
        return TurnOutcome(
            reply=text,
            completed=req.completed,
            end_call=req.completed and req.end_call,
            transfer_number=req.transfer_number if req.completed and not req.end_call else None,
            interrupted=req.interrupted,
            digits=req.digits if req.completed else None,
            tool_calls=tools,
            ttfb_s=None if req.first_at is None else req.first_at - req.sent_at,
        )

    async def _say(self, words: list[str], first: int = 0, gaps: Sequence[float] = ()) -> None:
        """Stream the caller's utterance as ``update_only`` partials, one word at a time,
        ``word_ms`` apart, or ``gaps[i]`` after the partial of word ``i`` when given."""
        word_s = self.options.word_ms / 1000.0
        for n in range(first + 1, len(words) + 1):
            sock = await self._ready()
            self.transcript.user_says(words, n)
            await self._send(sock, self.transcript.update_only("user_turn" if n == 1 else None))
            if gaps:
                if n < len(words) and n - 1 < len(gaps) and gaps[n - 1] > 0:
                    await self._sleep(gaps[n - 1])
            elif word_s:
                await asyncio.sleep(word_s)

    async def _ask(self, kind: str, until_first_frame: bool = False) -> Request:
        """Send a request and wait for its ``content_complete`` (or only its first frame:
        the cue of a caller who barges in, unless the content may not be interrupted). A
        request lost with its socket is asked again on the next socket, under a new id."""
        sock = await self._ready()
        req = await self._request(sock, kind)
        deadline = req.sent_at + self.options.turn_timeout_s
        agent_turn_sent = False
        while True:
            if req.completed or req.interrupted:
                return req
            if until_first_frame and req.first_at is not None and not req.no_interruption:
                return req
            if self._sock is not sock:
                sock = await self._ready()
                req = await self._request(sock, kind)
                deadline = req.sent_at + self.options.turn_timeout_s
                agent_turn_sent = False
                continue
            if req.first_at is not None and not agent_turn_sent:
                agent_turn_sent = True
                await self._send(sock, self.transcript.update_only("agent_turn"))
                continue
            remaining = deadline - _now()
            if remaining <= 0:
                self.metrics.violation(
                    "missing_content_complete",
                    self.call_id,
                    f"no content_complete within {self.options.turn_timeout_s:g} s "
                    f"({len(req.parts)} chunks received)",
                    req.id,
                )
                return req
            await self._wait(remaining)

    async def _request(self, sock: LineSocket, kind: str) -> Request:
        req = self.ledger.request(kind, _now())
        interaction = "reminder_required" if kind == "reminder" else "response_required"
        await self._send(sock, self.transcript.request(interaction, req.id))
        return req

    async def _ready(self) -> LineSocket:
        """The live socket once its begin message has arrived (Retell waits for it)."""
        while True:
            if self.record.reason:
                raise CallOver
            sock = self._sock
            remaining: float | None = None
            if sock is not None:
                if sock.begun:
                    return sock
                remaining = sock.opened_at + self.options.begin_timeout_s - _now()
                if remaining <= 0:
                    self.metrics.violation(
                        "no_begin_message",
                        self.call_id,
                        f"no response_id 0 with content_complete within "
                        f"{self.options.begin_timeout_s:g} s of the socket opening",
                        0,
                    )
                    self._finish(USER_HANGUP, failed=False)
                    raise CallOver
            await self._wait(remaining)
