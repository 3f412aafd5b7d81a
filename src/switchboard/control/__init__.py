"""Acting on live calls from outside them: the live-call directory and the command channel.

Any process (the CLI, the escalation service) can ask the node that owns a call to speak
on it, transfer it or end it. Services never open Retell sockets themselves.
"""

from switchboard.control.client import CallControl, CommandFailed
from switchboard.control.commands import Command, EndCommand, Reply, SayCommand, TransferCommand
from switchboard.control.directory import Directory, LiveCall, NodeInfo

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
