"""The ``CallStore`` interface: per-call state that survives reconnects.

A reconnect of a call may land on any node, so the session that serves a socket first
*claims* the call: the store mints a fresh owner ``token`` for that claim, bumps the
call's ``epoch`` (informational: what logs and the directory show) and returns the state.
Ownership is the token, not the epoch: every later ``save`` and ``release`` carries it,
and the store refuses a token that is not the one it holds (``FencedOut``). Tokens are
random, so ownership stays single even when the stored call is lost and its epoch
restarts (Redis restarted empty, an eviction, a flush): a save that finds the call
missing is refused with ``StateLost`` and never recreates it silently; the owner then
``reclaim``\\ s it explicitly, which succeeds only if nobody claimed it meanwhile.

A save over a version it did not see is refused with ``StaleWrite``. The memory backend
and the Redis backend implement the same contract and pass the same test suite.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec


class LastReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the call's last completed request was answered with, so that a request Retell
    re-sends after a reconnect is answered from here, never generated twice."""

    response_id: int
    content: str = ""
    end_call: bool = False
    transfer_number: str | None = None
    show_transferee_as_caller: bool = False
    digit_to_press: str | None = None
    no_interruption: bool = False


class CallState(msgspec.Struct, kw_only=True):
    """What a call needs to resume on a new socket. Stored as JSON; keep it small.

    ``epoch``, ``version`` and ``token`` describe this socket's claim; the store keeps its
    own copy of each beside the data and trusts only that one.
    """

    call_id: str
    epoch: int = 0
    version: int = 0
    token: str = ""
    greeted: bool = False
    turns: int = 0
    last_response_id: int = -1
    last_reply: LastReply | None = None
    call: dict[str, Any] | None = None
    state: dict[str, Any] = msgspec.field(default_factory=dict)
    #: set by a claim that found nothing while the store had recently lost its data:
    #: the call may be under way, its state gone (never saved: the keeper clears it)
    lost: bool = False


class FencedOut(RuntimeError):
    """Another claim owns the call; this session must stop writing."""


class StaleWrite(RuntimeError):
    """The stored version moved on since this state was loaded."""


class StateLost(RuntimeError):
    """The call is no longer in the store (expired, evicted, or the store restarted empty).

    Nothing was written: the owner decides, with ``reclaim``, to write it back.
    """


class StoreUnavailable(RuntimeError):
    """The backend cannot be reached right now; ``wait_available`` returns when it can.

    Nothing was written. Callers keep their state and retry after the outage (a live
    call is never dropped because its state could not be saved).
    """


@runtime_checkable
class InlineSaves(Protocol):
    """A store whose ``save`` never waits (process memory): ``save_now`` is that save,
    synchronous, with the same checks and errors, and ``save`` must be exactly it. The
    session then saves a completed turn without a task (``StateKeeper.persist_now``)."""

    def save_now(self, state: CallState) -> None: ...


class CallStore(Protocol):
    async def claim(self, call_id: str, owner: str) -> CallState:
        """Take ownership (a new token, the next epoch) and return the current state,
        creating it if absent. A newer claim always wins: it is Retell's newest socket."""
        ...

    async def save(self, state: CallState) -> None:
        """Persist ``state`` and bump ``state.version``; refresh the TTL.

        Raises ``FencedOut`` if the stored token is not ``state.token``, ``StaleWrite`` if
        the stored version differs from ``state.version`` and ``StateLost`` if the call
        is not stored at all.
        """
        ...

    async def restore(self, state: CallState) -> bool:
        """Write back the state of a call whose socket here has closed, if the store lost
        it: data only, no owner and no live-call entry (no node holds the call now). If a
        socket elsewhere claimed the call since and found nothing (``CallState.lost``),
        the data goes under that claim, for it to resume from. ``False`` if the call is
        stored (nothing to do)."""
        ...

    async def reclaim(self, state: CallState, owner: str) -> bool:
        """Write back a call the store lost, keeping ``state.token``: owner, live-call
        entry and data restored, ``state.version`` bumped. ``False`` if the call is
        stored under another token (someone claimed it meanwhile): this session is fenced.
        """
        ...

    async def load(self, call_id: str) -> CallState | None:
        """Read without claiming (dashboards, services)."""
        ...

    async def latest_claim(self, call_id: str) -> str | None:
        """The token of the call's latest claim, whether it holds the call now or its
        socket released it since (``None``: not stored). Checked before a live socket is
        dropped on another node's word: a token other than the socket's own means another
        socket claimed the call after it, however briefly."""
        ...

    async def release(self, call_id: str, token: str) -> None:
        """The call ended on the socket that holds ``token``: it is no longer live.

        The state stays until its TTL (services may still read it); only the live-call
        directory forgets the call, and only if no other claim took it meanwhile.
        """
        ...

    async def wait_available(self) -> None:
        """Return once the backend answers again (at once for in-process backends)."""
        ...

    async def delete(self, call_id: str) -> None: ...

    async def close(self) -> None: ...
