"""What a session reports about itself. The server plugs Prometheus metrics in here; tests
and embedders may plug anything. Calls are synchronous and must be cheap: they sit on
the per-turn path."""

from __future__ import annotations

from typing import Protocol

from switchboard.agents.base import TurnKind


class SessionObserver(Protocol):
    def first_chunk(self, kind: TurnKind, elapsed_ns: int) -> None:
        """Request read -> first content frame handed to the socket."""

    def turn_completed(self, kind: TurnKind, elapsed_ns: int) -> None:
        """Request read -> ``content_complete`` handed to the socket."""

    def superseded(self) -> None: ...

    def fallback(self, reason: str) -> None:
        """A fallback ended the turn: ``agent_error``, ``first_chunk_timeout``, ``turn_timeout``."""

    def frame_rejected(self, reason: str) -> None:
        """``malformed``, ``too_large``, ``binary``, ``unknown_interaction``."""

    def fenced(self) -> None: ...

    def replayed(self) -> None:
        """A completed request re-sent by Retell was answered from the saved reply."""

    def persisted(self, durable: bool, elapsed_ns: int) -> None:
        """A completed turn's save, before its ``content_complete``: how long it held the
        turn, and whether it made it (``False``: the store did not answer in time)."""


class _NullObserver:
    def first_chunk(self, kind: TurnKind, elapsed_ns: int) -> None:
        pass

    def turn_completed(self, kind: TurnKind, elapsed_ns: int) -> None:
        pass

    def superseded(self) -> None:
        pass

    def fallback(self, reason: str) -> None:
        pass

    def frame_rejected(self, reason: str) -> None:
        pass

    def fenced(self) -> None:
        pass

    def replayed(self) -> None:
        pass

    def persisted(self, durable: bool, elapsed_ns: int) -> None:
        pass


NULL_OBSERVER: SessionObserver = _NullObserver()
