"""switchboard: a backend for Retell AI custom-LLM voice agents.

The same agent code runs on the ``single``, ``distributed`` and ``event-driven``
profiles; see ``docs/`` and the README.

``__version__`` is read from the installed package's metadata, so ``pyproject.toml`` is
the one place the version is written (the Makefile's image tag reads it there too).
"""

from importlib.metadata import version as _package_version

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

__version__: str = _package_version("switchboard")
