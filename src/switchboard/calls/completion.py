"""How a turn ends: what its last frame says, and what it leaves in the call's state.

Pure: ``CallSession._finish`` calls these, then saves, then sends ``content_complete``
(in that order: the save first, so a node killed at any instant after Retell heard the
turn end cannot lose it). Unit-tested in ``tests/test_turn_decisions.py``.

What may not change (docs/architecture.md, invariants 3 and 4):

* A turn that failed (the agent raised or timed out) before saying anything ends with
  the spoken fallback, never in silence; one that failed after speaking ends as it is.
* A failed turn's custom state is dropped (the agent may have left it half-written); a
  completed one's replaces the call's. Either way the turn counts: a greeting marks the
  call greeted, any other turn adds one, and its reply is saved for a re-sent request.
"""

from __future__ import annotations

from typing import Any

from switchboard.agents.base import TurnKind
from switchboard.calls import frames
from switchboard.calls.generation import Generation
from switchboard.state.base import CallState


def closing_words(gen: Generation, failure: str | None, fallback_text: str) -> str:
    """The content of ``gen``'s final frame: the fallback if it failed before speaking
    (it then counts as what was said), else nothing."""
    if failure is None or gen.spoken:
        return ""
    gen.reply.append(fallback_text)
    return fallback_text


def commit(state: CallState, gen: Generation, working: dict[str, Any], failure: str | None) -> None:
    """Record the ended turn ``gen`` in ``state``; ``working`` is the agent's copy of the
    custom state."""
    if failure is None:
        state.state = working
    if gen.kind is TurnKind.GREETING:
        state.greeted = True
    else:
        state.turns += 1
    state.last_response_id = gen.response_id
    state.last_reply = frames.last_reply(gen)
