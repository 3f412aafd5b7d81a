"""Agents: the interface users implement, and the built-in scripted and OpenAI agents."""

from switchboard.agents.base import (
    Action,
    Agent,
    EndCall,
    Interrupt,
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
