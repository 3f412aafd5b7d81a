"""The messages of the command channel (pure: types and codec, no I/O).

A command names its call and a ``reply_to`` channel; the owning node answers with one
``Reply``. Every command is idempotent in effect per ``id``, across the whole cluster: the
node that acts records the id in Redis first (``CommandLedger``), and any node that gets
the same id again (a retry after a lost reply, maybe after the call moved) answers with
the recorded outcome instead of speaking twice.
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


#: The call is not served by this node (no session, or its session is fenced or closed).
NOT_HERE = "not_here"
#: The call's socket closed while the command was being carried out.
CALL_GONE = "call_gone"
#: Another attempt with the same id is acting (or its node died while acting).
IN_PROGRESS = "in_progress"
#: The node could not reach Redis to record the id, so it did not act.
UNAVAILABLE = "unavailable"
#: Errors after which the same id may be sent again, maybe to another node.
RETRIABLE_ERRORS = frozenset({NOT_HERE, CALL_GONE, IN_PROGRESS, UNAVAILABLE})


class Reply(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    ok: bool
    node: str
    #: why it failed: one of the constants above, or something final (``bad_command``)
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
