"""switchboard: a backend for Retell AI custom-LLM voice agents.

The same agent code runs on the ``single``, ``distributed`` and ``event-driven``
profiles; see ``docs/`` and the README.
"""

from switchboard.agents.base import (
    Action,
    Agent,
    EndCall,
    Interrupt,
    NoCache,
    NoInterruption,
    PressDigit,
    SendMetadata,
    ToolCallFinished,
    ToolCallStarted,
    Transfer,
    Turn,
    TurnKind,
    UpdateAgent,
)

__all__ = [
    "Action",
    "Agent",
    "EndCall",
    "Interrupt",
    "NoCache",
    "NoInterruption",
    "PressDigit",
    "SendMetadata",
    "ToolCallFinished",
    "ToolCallStarted",
    "Transfer",
    "Turn",
    "TurnKind",
    "UpdateAgent",
]

__version__ = "0.1.0"
