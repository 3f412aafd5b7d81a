"""Side tasks of the cache: started beside a turn, possibly never awaited, cancelled cleanly.

Shared by ``CachedAgent`` and its semantic tier; kept apart from the tier so the exact
tier loads without the embedding model's packages (the ``semantic-cache`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


def side_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """A task whose result may never be awaited (a lookup that lost the race)."""
    task = asyncio.get_running_loop().create_task(coro)
    task.add_done_callback(_retrieve)
    return task


def _retrieve(task: asyncio.Task[Any]) -> None:
    # Side tasks whose result nobody awaits must not log "exception was never
    # retrieved"; their errors are counted where they happen.
    if not task.cancelled():
        task.exception()


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to unwind (so the generator it drives is free)."""
    if task.done():
        return
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
