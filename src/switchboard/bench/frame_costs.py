"""``switchboard bench --frames``: the server's CPU cost per inbound frame kind, in process.

A real ``CallSession`` (the embedded scripted receptionist, the in-memory store) is fed
frames built by the simulator's own ``Transcript``, so they are byte for byte what Retell
sends; its transport discards what it is given. Each kind is timed with
``time.process_time`` over many frames, so the figures are CPU time, which holds on a
busy machine far better than wall time does. What it leaves out is the WebSocket layer
(uvicorn's frame parsing and writes): the end-to-end bench measures that.

Kinds: ``ping_pong`` (decode + the echo), ``update_only`` at transcript sizes (decode only:
nothing else reads it), ``response_required`` at the same sizes (decode, the agent's turn,
every chunk sent, the state saved), a socket's open and close (``connection``), the
WebSocket protocol's share of a frame in and a frame out, and one
full garbage collection with thousands of idle calls open (the pause every call on the
node waits through; ``serve``'s GC thresholds make it rare).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import msgspec

from switchboard.agents.base import Agent
from switchboard.agents.loader import load_agent
from switchboard.calls.session import CallSession, SessionOptions
from switchboard.config import builtin_example
from switchboard.protocol.codec import FrameDecoder
from switchboard.sim.transcript import Transcript
from switchboard.state.memory import MemoryCallStore

#: Transcript sizes (utterances) the transcript-carrying kinds are measured at.
SIZES = (10, 40)
_CALLER = [
    "hi",
    "I",
    "would",
    "like",
    "to",
    "book",
    "an",
    "appointment",
    "for",
    "next",
    "week",
    "please",
]


class FrameCost(msgspec.Struct, kw_only=True):
    kind: str
    #: utterances in the frame's transcript (0: none)
    utterances: int = 0
    frame_bytes: int = 0
    frames: int
    cpu_us_per_frame: float


class _Sink:
    """A transport that keeps nothing but a count of completed turns."""

    __slots__ = ("completed", "event")

    def __init__(self) -> None:
        self.completed = 0
        self.event = asyncio.Event()

    def send_now(self, text: str) -> None:
        if '"content_complete":true' in text:
            self.completed += 1
            self.event.set()

    async def send_text(self, text: str) -> None:
        self.send_now(text)

    def close(self, code: int) -> None:
        return None

    def abort(self) -> None:
        return None


def transcript_of(utterances: int) -> Transcript:
    """A call transcript of ``utterances`` entries, the caller speaking last (in progress)."""
    t = Transcript()
    for i in range(utterances - 1):
        if i % 2 == 0:
            t.add_agent("thanks for calling the clinic how can I help you today")
        else:
            t.user_says(_CALLER)
            t.commit_user()
    t.user_says(_CALLER)
    return t


async def _session(agent: Agent, store: MemoryCallStore, call_id: str) -> tuple[CallSession, _Sink]:
    sink = _Sink()
    options = SessionOptions(call_details=False)
    session = CallSession(call_id, sink, agent, store, options)
    await session.start()
    await _completed(sink, 1)
    return session, sink


async def _completed(sink: _Sink, count: int) -> None:
    while sink.completed < count:
        sink.event.clear()
        await sink.event.wait()


def _cpu(run: Callable[[], Coroutine[Any, Any, int]]) -> Callable[[], Coroutine[Any, Any, float]]:
    async def timed() -> float:
        gc.collect()
        before = time.process_time()
        await run()
        return time.process_time() - before

    return timed


async def measure(
    frames: int = 2000, agent_file: Path | None = None, idle_sessions: int = 5000
) -> list[FrameCost]:
    """CPU µs per frame of each kind, over ``frames`` frames (requests: a tenth of that),
    then one full garbage collection with ``idle_sessions`` greeted calls open."""
    agent = load_agent(agent_file or builtin_example("receptionist.yaml"))
    store = MemoryCallStore()
    session, sink = await _session(agent, store, "frame-costs")
    decoder = FrameDecoder()
    costs: list[FrameCost] = []

    ping = b'{"interaction_type":"ping_pong","timestamp":1700000000000}'

    async def pings() -> int:
        for _ in range(frames):
            session.receive_text(ping)
        return frames

    costs.append(_cost("ping_pong", 0, ping, frames, await _cpu(pings)()))

    for size in SIZES:
        t = transcript_of(size)
        update = t.update_only("user_turn")

        async def updates(update: bytes = update) -> int:
            for _ in range(frames):
                session.receive_text(update)
            return frames

        costs.append(_cost("update_only", size, update, frames, await _cpu(updates)()))

        async def decodes(update: bytes = update) -> int:
            for _ in range(frames):
                decoder.decode(update)
            return frames

        costs.append(_cost("update_only (decode)", size, update, frames, await _cpu(decodes)()))

    turns = max(frames // 10, 1)
    for size in SIZES:
        t = transcript_of(size)
        first = sink.completed

        async def requests(t: Transcript = t, first: int = first) -> int:
            for i in range(turns):
                session.receive_text(t.request("response_required", first + i))
                await _completed(sink, first + i + 1)
            return turns

        request = t.request("response_required", 1)
        costs.append(_cost("response_required", size, request, turns, await _cpu(requests)()))
    await session.close()

    async def connections() -> int:
        for i in range(turns):
            s, _ = await _session(agent, store, f"frame-costs-{i}")
            await s.close()
        return turns

    costs.append(_cost("connection (session open+close)", 0, b"", turns, await _cpu(connections)()))

    costs += _websocket_costs(frames, ping, transcript_of(SIZES[-1]).update_only("user_turn"))

    idle = [(await _session(agent, store, f"idle-{i}"))[0] for i in range(idle_sessions)]
    frozen = gc.get_freeze_count()
    before = time.process_time()
    gc.collect()
    full_gc_s = time.process_time() - before
    tracked = len(gc.get_objects()) + frozen
    costs.append(
        _cost(f"full GC, {idle_sessions} idle calls, {tracked} objects", 0, b"", 1, full_gc_s)
    )
    for s in idle:
        await s.close()
    return costs


def _websocket_costs(frames: int, *payloads: bytes) -> list[FrameCost]:
    """The call socket's framing share (``server.websocket``): reading and unmasking a
    caller frame, framing a reply. The socket around it (``CallSocket``: one synchronous
    call into the session, one transport write) is only in the end-to-end case."""
    from websockets.frames import Frame, Opcode

    from switchboard.protocol.codec import UPDATE_HEAD_SIZE
    from switchboard.server.websocket import TEXT, FrameReader, server_frame

    reader = FrameReader(1 << 26)
    out = []

    def ignore(_a: object, _b: bytes) -> None:
        return None

    for payload in payloads:
        wire = Frame(Opcode.TEXT, payload).serialize(mask=True, extensions=[])
        before = time.process_time()
        for _ in range(frames):
            reader.feed(wire, ignore, ignore)
        out.append(
            _cost("websocket: parse + unmask", 0, wire, frames, time.process_time() - before)
        )
    # An update the session leaves unread: dropped by its head, the rest never unmasked.
    skipping = FrameReader(1 << 26, lambda head, size: True, UPDATE_HEAD_SIZE)
    wire = Frame(Opcode.TEXT, payloads[-1]).serialize(mask=True, extensions=[])
    before = time.process_time()
    for _ in range(frames):
        skipping.feed(wire, ignore, ignore)
    out.append(
        _cost("websocket: parse, skip by head", 0, wire, frames, time.process_time() - before)
    )
    pong = '{"response_type":"ping_pong","timestamp":1700000000000}'
    before = time.process_time()
    for _ in range(frames):
        server_frame(TEXT, pong.encode())
    out.append(
        _cost("websocket: frame a reply", 0, pong.encode(), frames, time.process_time() - before)
    )
    return out


def _cost(kind: str, size: int, frame: bytes, frames: int, cpu_s: float) -> FrameCost:
    return FrameCost(
        kind=kind,
        utterances=size,
        frame_bytes=len(frame),
        frames=frames,
        cpu_us_per_frame=round(cpu_s * 1e6 / frames, 2),
    )


def frame_costs(frames: int = 2000, agent_file: Path | None = None) -> list[FrameCost]:
    """``measure`` in a fresh event loop (uvloop when installed, as ``serve`` runs), the
    start-up objects frozen out of the collector as ``serve`` does."""
    from switchboard.sim.runner import _loop_factory

    gc.collect()
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(measure(frames, agent_file))
    finally:
        gc.unfreeze()


def markdown_table(costs: Sequence[FrameCost]) -> str:
    """The costs as a Markdown table (for docs/benchmarks.md)."""
    lines = [
        "| frame kind | utterances | bytes | CPU µs/frame |",
        "|---|---:|---:|---:|",
    ]
    for c in costs:
        size = str(c.utterances) if c.utterances else "-"
        length = str(c.frame_bytes) if c.frame_bytes else "-"
        lines.append(f"| {c.kind} | {size} | {length} | {c.cpu_us_per_frame:.1f} |")
    return "\n".join(lines)
