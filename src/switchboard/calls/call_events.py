"""What a session tells the outside world about its call: started, each turn, ended.

A sink, passed to the session like its ``SessionObserver``. The null default costs a
method call; the event-driven profile plugs in ``publisher.CallEventPublisher``,
which turns these into events on the outbox. Calls are synchronous and must be cheap:
they sit on the turn path, after the frames they describe have been handed to the socket.
"""

from __future__ import annotations

from typing import Protocol

from switchboard.calls.generation import Generation
from switchboard.state.base import CallState


class CallEvents(Protocol):
    def call_started(self, state: CallState) -> None:
        """The session claimed the call (``state.greeted``: a resumed call)."""

    def turn_ended(self, call_id: str, gen: Generation, failure: str | None, done_ns: int) -> None:
        """``content_complete`` was sent for ``gen`` at ``done_ns`` (``perf_counter_ns``),
        or, when ``gen.superseded``, a newer request cancelled it then."""

    def call_ended(
        self, state: CallState, last: Generation | None, *, fenced: bool, aborted: bool
    ) -> None:
        """The session closed; ``aborted``: dropped without a close frame (drain, a newer
        socket, a failure); ``state.call`` may carry Retell's call details."""


class _NullCallEvents:
    def call_started(self, state: CallState) -> None:
        pass

    def turn_ended(self, call_id: str, gen: Generation, failure: str | None, done_ns: int) -> None:
        pass

    def call_ended(
        self, state: CallState, last: Generation | None, *, fenced: bool, aborted: bool
    ) -> None:
        pass


NULL_CALL_EVENTS: CallEvents = _NullCallEvents()
