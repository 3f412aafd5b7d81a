"""What a session reads out of the call to build a turn, and whether a call is under way.

Pure: the clock is an argument. Unit-tested in ``tests/test_turn_decisions.py``.
"""

from __future__ import annotations

from typing import Any

import msgspec

_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(dict[str, Any])


def working_copy(state: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of the agent's custom state: the agent works on it, and it replaces the
    call's state only when the turn completes (a superseded turn leaves no trace)."""
    if not state:
        return {}
    return _state_decoder.decode(_state_encoder.encode(state))


def dynamic_variables(call: dict[str, Any] | None) -> dict[str, str]:
    """Retell's ``retell_llm_dynamic_variables`` of the call, or none."""
    if not call:
        return {}
    variables = call.get("retell_llm_dynamic_variables")
    return variables if isinstance(variables, dict) else {}


def under_way(call: dict[str, Any] | None, started_s: float, now_ms: float) -> bool:
    """Whether Retell's call object says the call began more than ``started_s`` before
    ``now_ms`` or has been talked in: then a socket for it is a reconnect, not the call's
    first, and it is not greeted again."""
    if not call:
        return False
    if call.get("transcript") or call.get("transcript_object"):
        return True
    started = call.get("start_timestamp")
    if isinstance(started, int | float) and not isinstance(started, bool) and started > 0:
        return now_ms - started > started_s * 1000
    return False
