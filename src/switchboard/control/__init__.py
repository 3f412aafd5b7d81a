"""Acting on live calls from outside them: the live-call directory and the command channel.

Any process (the CLI, the escalation service) can ask the node that owns a call to speak
on it, transfer it or end it. Services never open Retell sockets themselves.

The names below load on first use: the package needs Redis (the ``distributed`` extra),
and ``switchboard calls``, which lives here, must not load it before it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard.control.client import CallControl, CommandFailed
    from switchboard.control.commands import (
        Command,
        EndCommand,
        Reply,
        SayCommand,
        TransferCommand,
    )
    from switchboard.control.directory import Directory, LiveCall, NodeInfo

_HOME = {
    "CallControl": "client",
    "CommandFailed": "client",
    "Command": "commands",
    "EndCommand": "commands",
    "Reply": "commands",
    "SayCommand": "commands",
    "TransferCommand": "commands",
    "Directory": "directory",
    "LiveCall": "directory",
    "NodeInfo": "directory",
}

__all__ = [
    "CallControl",
    "Command",
    "CommandFailed",
    "Directory",
    "EndCommand",
    "LiveCall",
    "NodeInfo",
    "Reply",
    "SayCommand",
    "TransferCommand",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
