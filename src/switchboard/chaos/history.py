"""What a chaos run recorded: every turn asked and answered, every socket lost and
reopened, every fault with its times. Plain, JSON-serialisable data and nothing else.

All times are wall-clock Unix seconds, taken on the machine that runs the simulator and
the nemesis, so a fault and the turns around it line up without a shared cluster clock.
The checker (``checker.py``) judges a history after the run; tests build histories by
hand to prove each of its verdicts.
"""

from __future__ import annotations

import msgspec

HISTORY_SCHEMA_VERSION = 1


class FaultEvent(msgspec.Struct, kw_only=True):
    """One fault as the nemesis carried it out."""

    kind: str
    target: str
    param: float | None = None
    #: when the fault began (the kill, the stop, the hang-up)
    started_at: float
    #: when it was over: the process back and ready, the pause lifted (``None``: never)
    ended_at: float | None = None
    #: the nemesis did what it meant to; ``False`` with ``detail`` saying what failed
    ok: bool = True
    detail: str = ""
    #: turns in flight (asked, not yet complete) at the instant the fault began
    turns_in_flight: int = 0
    #: what the fault measured as it ran (a stream's length, a spill file's size ...)
    figures: dict[str, float] = msgspec.field(default_factory=dict)
    #: a call the nemesis placed itself (the ``oversized`` caller) and its answered turns
    call_id: str = ""
    answered: list[int] = msgspec.field(default_factory=list)


class TurnEvent(msgspec.Struct, kw_only=True):
    """One request (``response_required``/``reminder_required``) of one call."""

    call: int  # the call's index in the run (the same call in the control run)
    response_id: int
    kind: str
    asked_at: float
    first_at: float | None = None
    answered_at: float | None = None  # its content_complete
    #: superseded by a newer request (a re-ask after a lost socket, a barge-in)
    superseded: bool = False


class SocketEvent(msgspec.Struct, kw_only=True):
    """One socket of a call lost; when its replacement opened and answered a turn."""

    call: int
    cause: str
    lost_at: float
    reopened_at: float | None = None
    answered_at: float | None = None
    #: the replacement socket's begin message was empty: no second greeting
    begin_empty: bool | None = None


class CallResult(msgspec.Struct, kw_only=True):
    """One call as it ended: its replies, one per caller turn, in order."""

    call: int
    call_id: str
    reason: str
    failed: bool
    #: replies of the caller turns it got through; ``completed[i]`` says turn i was answered
    replies: list[str] = msgspec.field(default_factory=list)
    completed: list[bool] = msgspec.field(default_factory=list)
    #: caller turns in its script
    planned_turns: int = 0
    #: greetings spoken again on a replacement socket
    repeated_greetings: int = 0
    #: the nemesis hung this call up (a ``hangup`` fault): fewer turns are expected
    hung_up: bool = False
    #: the call was handed over (a transfer, by the agent or by a service): fewer turns
    #: are expected, and the turn in flight at the handover is not owed an answer
    transferred: bool = False
    #: handoffs the caller heard from a service: complete ``agent_interrupt`` frames
    #: carrying a transfer (the escalation service's action)
    handoffs: int = 0


class History(msgspec.Struct, kw_only=True):
    schema_version: int = HISTORY_SCHEMA_VERSION
    seed: int
    started_at: float
    ended_at: float
    calls: list[CallResult] = msgspec.field(default_factory=list)
    turns: list[TurnEvent] = msgspec.field(default_factory=list)
    sockets: list[SocketEvent] = msgspec.field(default_factory=list)
    faults: list[FaultEvent] = msgspec.field(default_factory=list)
    #: protocol violations the simulator saw, by kind (second greetings and turns
    #: without content_complete are counted by the checker itself)
    violations: dict[str, int] = msgspec.field(default_factory=dict)
