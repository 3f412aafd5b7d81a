"""The ``CallStore`` interface: per-call state that survives reconnects.

A reconnect of a call may land on any node, so the session that serves a socket first
*claims* the call: the store bumps the call's fencing ``epoch`` and returns the state.
Every later ``save`` carries that epoch and the ``version`` it last saw. A save from an
older claim (a half-dead socket on another node) is refused with ``FencedOut``; a save
over a version it did not see is refused with ``StaleWrite``. The memory backend and a
Redis backend implement the same contract and pass the same test suite.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec


class CallState(msgspec.Struct, kw_only=True):
    """What a call needs to resume on a new socket. Stored as JSON; keep it small."""

    call_id: str
    epoch: int = 0
    version: int = 0
    greeted: bool = False
    turns: int = 0
    last_response_id: int = -1
    call: dict[str, Any] | None = None
    state: dict[str, Any] = msgspec.field(default_factory=dict)


class FencedOut(RuntimeError):
    """A newer claim owns the call; this session must stop writing."""


class StaleWrite(RuntimeError):
    """The stored version moved on since this state was loaded."""


class StoreUnavailable(RuntimeError):
    """The backend cannot be reached right now; ``wait_available`` returns when it can.

    Nothing was written. Callers keep their state and retry after the outage (a live
    call is never dropped because its state could not be saved).
    """


class CallStore(Protocol):
    async def claim(self, call_id: str, owner: str) -> CallState:
        """Take ownership (new epoch) and return the current state, creating it if absent."""
        ...

    async def save(self, state: CallState) -> None:
        """Persist ``state`` and bump ``state.version``; refresh the TTL.

        Raises ``FencedOut`` if a newer claim exists and ``StaleWrite`` if the stored
        version differs from ``state.version``.
        """
        ...

    async def load(self, call_id: str) -> CallState | None:
        """Read without claiming (dashboards, services)."""
        ...

    async def release(self, call_id: str, epoch: int) -> None:
        """The call ended on the socket that claimed ``epoch``: it is no longer live.

        The state stays until its TTL (services may still read it); only the live-call
        directory forgets the call, and only if no newer claim took it meanwhile.
        """
        ...

    async def wait_available(self) -> None:
        """Return once the backend answers again (at once for in-process backends)."""
        ...

    async def delete(self, call_id: str) -> None: ...

    async def close(self) -> None: ...
