"""The messages of the command channel (pure: types and codec, no I/O).

A command names its call and a ``reply_to`` channel; the owning node answers with one
``Reply``. Every command is idempotent in effect per ``id``: a node that receives the
same id twice (a retry after a lost reply) answers from memory instead of speaking twice.
"""

from __future__ import annotations

import msgspec


class Command(msgspec.Struct, tag_field="op", kw_only=True, frozen=True):
    id: str
    call_id: str
    reply_to: str


class SayCommand(Command, tag="say", frozen=True):
    """Speak ``text`` on the call now (an ``agent_interrupt``)."""

    text: str


class TransferCommand(Command, tag="transfer", frozen=True):
    """Transfer the call to ``number``, after saying ``text`` if given."""

    number: str
    text: str = ""


class EndCommand(Command, tag="end", frozen=True):
    """End the call, after saying ``text`` if given."""

    text: str = ""


AnyCommand = SayCommand | TransferCommand | EndCommand


class Reply(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    ok: bool
    node: str
    #: why it failed: ``not_here`` (the call is not on this node), ``call_gone`` (its socket
    #: closed), ``bad_command``
    error: str = ""
    detail: str = ""


_command_decoder = msgspec.json.Decoder(AnyCommand)
_reply_decoder = msgspec.json.Decoder(Reply)


def encode(message: Command | Reply) -> bytes:
    return msgspec.json.encode(message)


def decode_command(data: bytes | str) -> AnyCommand:
    """Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` for anything else."""
    command: AnyCommand = _command_decoder.decode(data)
    return command


def decode_reply(data: bytes | str) -> Reply:
    reply: Reply = _reply_decoder.decode(data)
    return reply
