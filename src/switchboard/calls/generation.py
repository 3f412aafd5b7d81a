"""One answer to one request: a ``response_id``, the task producing it, and what it decided.

A generation is cancellable as a whole (the caller barged in, the socket closed). The
session compares identity (``gen is session.current``) before every send, so once a newer
request has been read no frame of an older generation can go out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from switchboard.agents.base import TurnKind


@dataclass(slots=True, eq=False)
class Generation:
    response_id: int
    kind: TurnKind
    started_ns: int = field(default_factory=time.perf_counter_ns)
    task: asyncio.Task[None] | None = None
    spoken: bool = False  # at least one non-empty content frame was sent
    completed: bool = False  # content_complete was sent
    no_interruption: bool = False
    end_call: bool = False
    transfer_number: str | None = None
    show_transferee_as_caller: bool = False
    digit_to_press: str | None = None
    first_chunk_ns: int | None = None
    #: the request's transcript, and the content sent so far (read by ``CallEvents``)
    transcript: Sequence[Any] = ()
    reply: list[str] = field(default_factory=list)
    superseded: bool = False
    cache_hit: bool = False
    #: the turn's trace span (``switchboard.tracing``), when tracing
    span: Any = None

    def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
