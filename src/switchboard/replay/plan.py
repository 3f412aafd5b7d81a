"""A recorded call as a caller script: the same lines, the same silences, faster.

The recorded gaps (the silence before each turn, the time between words) are divided by
``speed``. The simulated caller streams each line as ``update_only`` partials at the
recorded word gaps and asks for the reply after the last word; a silent turn waits the
recorded silence and then sends ``reminder_required``. The call object sent in
``call_details`` carries the recorded ``retell_llm_dynamic_variables`` and ``metadata``
under a fresh call id: a recorded id would resume the old call's saved state.
"""

from __future__ import annotations

from typing import Any

from switchboard.replay.model import RecordedCall
from switchboard.sim.conversation import CallerTurn


def script(call: RecordedCall, speed: float) -> list[CallerTurn]:
    """The caller turns of ``call``, timed by its recording scaled by ``speed``."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    return [
        CallerTurn(
            say=turn.caller if turn.caller and turn.caller.split() else None,
            pause_s=turn.pause_s / speed,
            word_gaps_s=tuple(gap / speed for gap in turn.word_gaps_s),
        )
        for turn in call.turns
    ]


def call_details(call: RecordedCall, call_id: str) -> dict[str, Any]:
    """``call_details.call`` for the replayed call: registered, as at socket open."""
    out: dict[str, Any] = {
        "call_type": "phone_call",
        "call_id": call_id,
        "agent_id": call.agent_id or "replay",
        "agent_version": 1,
        "call_status": "registered",
        "from_number": "+14155550000",
        "to_number": "+14155550142",
        "direction": "inbound",
        "data_storage_setting": "everything",
        "opt_out_sensitive_data_storage": False,
    }
    if call.metadata is not None:
        out["metadata"] = call.metadata
    if call.dynamic_variables is not None:
        out["retell_llm_dynamic_variables"] = dict(call.dynamic_variables)
    return out
