"""Raw call sockets for the checks the simulator's callers do not make on purpose: holding
a node at its cap, and a caller's own reconnect. Each probe speaks Retell's side as the
spec says: ``call_details`` first, then requests by id, pings answered by the server."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from switchboard.protocol.outbound import PingPongReply, Response
from switchboard.sim.call_object import call_object, new_id
from switchboard.sim.frames import InvalidFrame, decode_server_frame

#: Seconds a probe waits for any one answer; generous, a deadline not a timing.
ANSWER_TIMEOUT_S = 15.0


class ProbeError(RuntimeError):
    """The server did not answer a probe as the protocol says it must."""


@dataclass(slots=True)
class ProbeCall:
    call_id: str
    ws: ClientConnection
    greeting: str = ""


def _enc(obj: dict[str, object]) -> str:
    """A text frame: Retell never sends binary ones, and servers ignore them."""
    return msgspec.json.encode(obj).decode()


async def open_call(base_url: str, call_id: str | None = None) -> ProbeCall:
    """Open a call socket, send ``call_details`` and wait for the begin message."""
    call_id = call_id or new_id()
    ws = await connect(
        f"{base_url.rstrip('/')}/{call_id}",
        compression=None,
        open_timeout=ANSWER_TIMEOUT_S,
        ping_interval=None,
        proxy=None,
    )
    call = ProbeCall(call_id=call_id, ws=ws)
    try:
        details = call_object(call_id, new_id(), random.Random(call_id), None)
        await ws.send(_enc({"interaction_type": "call_details", "call": details}))
        call.greeting = await read_response(ws, 0)
    except BaseException:
        await ws.close()
        raise
    return call


async def read_response(ws: ClientConnection, response_id: int) -> str:
    """The full content of ``response_id``, once its ``content_complete`` arrives."""
    parts: list[str] = []
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        while True:
            data = await ws.recv()
            try:
                frame = decode_server_frame(data)
            except InvalidFrame as exc:
                raise ProbeError(f"invalid frame: {exc}") from None
            if isinstance(frame, Response) and frame.response_id == response_id:
                parts.append(frame.content)
                if frame.content_complete:
                    return "".join(parts)


async def ask(call: ProbeCall, response_id: int, text: str) -> str:
    transcript = [{"role": "user", "content": text}]
    if call.greeting:
        transcript.insert(0, {"role": "agent", "content": call.greeting})
    await call.ws.send(
        _enc(
            {
                "interaction_type": "response_required",
                "response_id": response_id,
                "transcript": transcript,
            }
        )
    )
    return await read_response(call.ws, response_id)


async def ping(call: ProbeCall) -> bool:
    """A ``ping_pong`` answered: the call is alive."""
    stamp = int(time.time() * 1000)
    await call.ws.send(_enc({"interaction_type": "ping_pong", "timestamp": stamp}))
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        while True:
            frame = decode_server_frame(await call.ws.recv())
            if isinstance(frame, PingPongReply) and frame.timestamp == stamp:
                return True


def drop(call: ProbeCall) -> None:
    """Lose the socket without a close frame, as a network failure would (the server sees 1006)."""
    transport = call.ws.transport
    transport.abort()


@dataclass(frozen=True, slots=True)
class CapacityResult:
    held: int
    alive: int
    refused_status: int | None
    error: str = ""


async def hold_to_capacity(base_url: str, capacity: int, extra: int = 2) -> CapacityResult:
    """Open ``capacity`` calls, then ``extra`` more that must be refused with a 503; then
    check every held call still answers a ping."""
    held: list[ProbeCall] = []
    try:
        for _ in range(capacity):
            try:
                held.append(await open_call(base_url))
            except (OSError, WebSocketException, ProbeError, TimeoutError) as exc:
                return CapacityResult(
                    held=len(held),
                    alive=0,
                    refused_status=None,
                    error=f"call {len(held) + 1}: {exc!r}",
                )
        status: int | None = None
        for _ in range(extra):
            try:
                surplus = await open_call(base_url)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status != 503:
                    break
                continue
            except (OSError, WebSocketException, ProbeError, TimeoutError) as exc:
                return CapacityResult(
                    held=len(held), alive=0, refused_status=None, error=f"past the cap: {exc!r}"
                )
            await surplus.ws.close()
            return CapacityResult(
                held=len(held),
                alive=0,
                refused_status=None,
                error="a call past the cap was accepted",
            )
        alive = 0
        for call in held:
            with contextlib.suppress(Exception):
                alive += await ping(call)
        return CapacityResult(held=len(held), alive=alive, refused_status=status)
    finally:
        await asyncio.gather(*(c.ws.close() for c in held), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class ReconnectResult:
    first_greeting: str
    answer: str
    resumed_greeting: str
    answer_after: str


async def reconnect_once(base_url: str) -> ReconnectResult:
    """A turn, a lost socket, the same call id again: it must resume without a greeting."""
    call = await open_call(base_url)
    try:
        answer = await ask(call, 1, "What are your opening hours?")
        first = call.greeting
    finally:
        drop(call)
    again = await open_call(base_url, call.call_id)
    try:
        resumed, again.greeting = again.greeting, first
        after = await ask(again, 2, "Thanks. And where are you?")
        return ReconnectResult(
            first_greeting=first, answer=answer, resumed_greeting=resumed, answer_after=after
        )
    finally:
        await again.ws.close()
