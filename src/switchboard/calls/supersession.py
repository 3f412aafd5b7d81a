"""The supersession gate: what a newly read request does to the one being answered.

Pure: no I/O, no clock, no task. ``CallSession`` asks ``admit`` before it starts a
generation and carries the answer out; everything that decides is here, so every case
is a unit test (``tests/test_turn_decisions.py``).

What may not change (docs/architecture.md, invariants 2 and 4):

* One live generation per call. A request read while another is open supersedes it:
  the open one is cancelled before the reader awaits anything, and it sends nothing more.
* The same request re-sent while it is being answered (same id, same kind) changes
  nothing: Retell waits for the answer already under way.
* A request re-sent after it was completed (Retell re-sends the last one after a
  reconnect) is answered from the saved ``LastReply``: the agent is not called twice.
  A frame that could not be decoded is never replayed, whatever its id.
* Ids only grow. A request whose id is lower than the open one is served like a newer
  one, but the open id is first closed with an empty ``content_complete``, so whichever
  of the two Retell listens to ends properly (docs/decisions.md).
* A superseded greeting still counts as said: the caller already engaged, so the call
  is never greeted again.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.agents.base import TurnKind
from switchboard.calls.generation import Generation
from switchboard.state.base import LastReply


@dataclass(frozen=True, slots=True)
class Admission:
    """What to do with a request just read."""

    #: start a generation for it (``False``: it is already being answered; drop it)
    start: bool = True
    #: the saved answer to send instead of calling the agent (a completed request re-sent)
    replay: LastReply | None = None
    #: the open generation is cancelled and reported superseded
    supersede: bool = False
    #: the open generation was the greeting: the call counts as greeted
    greeted: bool = False
    #: the open id, closed with an empty ``content_complete`` before any frame of the new
    #: one (the new id is lower: Retell went backwards)
    close_first: int | None = None


#: The common cases, shared so that a turn allocates no decision of its own.
START = Admission()
DROP = Admission(start=False)
SUPERSEDE = Admission(supersede=True)
SUPERSEDE_GREETING = Admission(supersede=True, greeted=True)


def admit(
    open_gen: Generation | None,
    last_reply: LastReply | None,
    response_id: int,
    kind: TurnKind,
    *,
    undecodable: bool = False,
) -> Admission:
    """Decide what reading request ``response_id`` of ``kind`` does, given the generation
    still open (``None`` or completed: nothing open) and the call's last saved reply."""
    current = open_gen if open_gen is not None and not open_gen.completed else None
    if (
        current is not None
        and current.response_id == response_id
        and current.kind is kind
        and not undecodable
    ):
        return DROP
    replay = (
        last_reply
        if last_reply is not None and last_reply.response_id == response_id and not undecodable
        else None
    )
    if current is None:
        return START if replay is None else Admission(replay=replay)
    greeted = current.kind is TurnKind.GREETING
    close_first = current.response_id if not greeted and response_id < current.response_id else None
    if replay is None and close_first is None:
        return SUPERSEDE_GREETING if greeted else SUPERSEDE
    return Admission(replay=replay, supersede=True, greeted=greeted, close_first=close_first)
