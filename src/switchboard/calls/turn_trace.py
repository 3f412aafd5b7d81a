"""A call's and its turns' trace spans (``switchboard.tracing``), kept out of the session:
the session calls in here only when tracing is on, so a node that does not trace runs
none of it."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

from switchboard import tracing
from switchboard.calls.generation import Generation


def traced_task(
    gen: Generation, work: Coroutine[Any, Any, None], call_span: Any
) -> asyncio.Task[None]:
    """The turn's task, run under its span: the agent's, the cache's, the LLM's and the
    save's spans find it through ``tracing.current``. The span ends with the task."""
    gen.span = tracing.start_turn(call_span, gen.response_id, gen.kind.value)
    context = contextvars.copy_context()
    context.run(tracing.current.set, gen.span)
    task = asyncio.get_running_loop().create_task(
        work, name=f"turn-{gen.response_id}", context=context
    )
    task.add_done_callback(lambda _: end_turn(gen))
    return task


def end_turn(gen: Generation) -> None:
    """What the turn came to, on its span: time to first chunk, and whether it was
    completed, superseded or answered from the cache."""
    ttfb_ms = (gen.first_chunk_ns - gen.started_ns) / 1e6 if gen.first_chunk_ns else None
    tracing.end(
        gen.span,
        **{
            "switchboard.ttfb_ms": ttfb_ms,
            "switchboard.turn.completed": gen.completed,
            "switchboard.turn.superseded": gen.superseded,
            "switchboard.cache.hit": gen.cache_hit,
        },
    )
    gen.span = None


def end_call(span: Any, turns: int, fenced: bool) -> None:
    tracing.end(span, **{"switchboard.turns": turns, "switchboard.fenced": fenced})
