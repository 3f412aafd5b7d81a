"""From what an agent yields to the frames Retell receives, and in which order.

Pure: no I/O. ``CallSession`` sends what these functions return; the precedence rules
live here and are unit-tested (``tests/test_turn_decisions.py``).

What may not change (Retell's protocol; docs/architecture.md, invariant 1):

* Text goes out as it comes, one ``response`` frame per chunk (``content_complete:
  false``), flagged ``no_interruption_allowed`` once the agent asked for it.
* End call, transfer and digits are not frames of their own: they are remembered on the
  generation and ride on its final frame (``content_complete: true``). Retell runs at most
  one of them, so only one is sent, in this precedence: end call, then transfer, then
  digits (``chosen_action``).
* Tool calls, interrupts, agent config updates and metadata are side frames, sent at
  once, in the order the agent yielded them, between the chunks around them.
* A completed turn is saved as the ``LastReply`` it was answered with, so a re-sent
  request is answered with the very same frames (``replay``).
"""

from __future__ import annotations

import functools

from switchboard.agents.base import (
    Action,
    EndCall,
    FromCache,
    Interrupt,
    NoCache,
    NoInterruption,
    PressDigit,
    SendMetadata,
    ToolCallFinished,
    ToolCallStarted,
    Transfer,
    UpdateAgent,
)
from switchboard.calls.generation import Generation
from switchboard.protocol.codec import encode
from switchboard.protocol.outbound import (
    AgentConfig,
    AgentInterrupt,
    Config,
    ConfigOptions,
    Metadata,
    Response,
    ToolCallInvocation,
    ToolCallResult,
    UpdateAgentConfig,
)
from switchboard.state.base import LastReply


@functools.cache
def config_frame(auto_reconnect: bool, call_details: bool, with_tools: bool) -> str:
    """The first frame on every socket (the same for every call of a process)."""
    options = ConfigOptions(
        auto_reconnect=auto_reconnect,
        call_details=call_details,
        transcript_with_tool_calls=with_tools,
    )
    return encode(Config(config=options))


def empty_complete(response_id: int) -> str:
    """Close ``response_id`` with nothing said (a resumed call's begin message, an id
    closed before a lower one is served)."""
    return encode(Response(response_id=response_id, content="", content_complete=True))


def chunk_frame(gen: Generation, text: str) -> str:
    return encode(
        Response(
            response_id=gen.response_id,
            content=text,
            content_complete=False,
            no_interruption_allowed=True if gen.no_interruption else None,
        )
    )


def record(gen: Generation, action: Action) -> bool:
    """Note ``action`` on ``gen``; ``True`` if it is a side frame to send now
    (``side_frame``), ``False`` if it rides on the final frame or sends nothing."""
    if isinstance(action, EndCall):
        gen.end_call = True
    elif isinstance(action, Transfer):
        gen.transfer_number = action.number
        gen.show_transferee_as_caller = action.show_transferee_as_caller
    elif isinstance(action, PressDigit):
        gen.digit_to_press = action.digits
    elif isinstance(action, NoInterruption):
        gen.no_interruption = True
    elif isinstance(action, FromCache):
        gen.cache_hit = True
    elif not isinstance(action, NoCache):  # NoCache is for the response cache only
        return True
    return False


def side_frame(action: Action, interrupt_id: int) -> str:
    """The frame of a side action; an ``Interrupt`` takes ``interrupt_id`` (the caller
    counts them per call). Raises ``TypeError`` for anything an agent may not yield."""
    if isinstance(action, ToolCallStarted):
        return encode(
            ToolCallInvocation(
                tool_call_id=action.tool_call_id, name=action.name, arguments=action.arguments
            )
        )
    if isinstance(action, ToolCallFinished):
        return encode(
            ToolCallResult(
                tool_call_id=action.tool_call_id,
                content=action.content,
                successful=action.successful,
            )
        )
    if isinstance(action, Interrupt):
        return encode(
            AgentInterrupt(
                interrupt_id=interrupt_id,
                content=action.content,
                content_complete=True,
                no_interruption_allowed=action.no_interruption_allowed or None,
                end_call=action.end_call or None,
                transfer_number=action.transfer_number,
            )
        )
    if isinstance(action, UpdateAgent):
        return encode(
            UpdateAgentConfig(
                agent_config=AgentConfig(
                    responsiveness=action.responsiveness,
                    interruption_sensitivity=action.interruption_sensitivity,
                    reminder_trigger_ms=action.reminder_trigger_ms,
                    reminder_max_count=action.reminder_max_count,
                )
            )
        )
    if isinstance(action, SendMetadata):
        return encode(Metadata(metadata=action.data))
    raise TypeError(f"agent yielded an unsupported value: {action!r}")


def command_interrupt(
    interrupt_id: int, content: str, transfer_number: str | None, end_call: bool
) -> str:
    """An ``agent_interrupt`` for a command from outside the call; ending the call wins
    over a transfer."""
    return encode(
        AgentInterrupt(
            interrupt_id=interrupt_id,
            content=content,
            content_complete=True,
            end_call=True if end_call else None,
            transfer_number=None if end_call else transfer_number,
        )
    )


def chosen_action(gen: Generation) -> tuple[bool | None, str | None, str | None]:
    """(end_call, transfer_number, digit_to_press): Retell runs at most one of these;
    send only the one it would run."""
    end_call = gen.end_call or None
    transfer = None if end_call else gen.transfer_number
    digits = None if end_call or transfer else gen.digit_to_press
    return end_call, transfer, digits


def final_frame(gen: Generation, content: str) -> str:
    """The ``content_complete`` frame, carrying the chosen action."""
    end_call, transfer, digits = chosen_action(gen)
    return encode(
        Response(
            response_id=gen.response_id,
            content=content,
            content_complete=True,
            no_interruption_allowed=True if gen.no_interruption else None,
            end_call=end_call,
            transfer_number=transfer,
            show_transferee_as_caller=True if transfer and gen.show_transferee_as_caller else None,
            digit_to_press=digits,
        )
    )


def last_reply(gen: Generation) -> LastReply:
    """What ``gen`` was answered with, as saved for a re-sent request."""
    end_call, transfer, digits = chosen_action(gen)
    return LastReply(
        response_id=gen.response_id,
        content="".join(gen.reply),
        end_call=bool(end_call),
        transfer_number=transfer,
        show_transferee_as_caller=bool(transfer and gen.show_transferee_as_caller),
        digit_to_press=digits,
        no_interruption=gen.no_interruption,
    )


def replay(gen: Generation, reply: LastReply) -> None:
    """Give ``gen`` the flags and actions ``reply`` ended with, so its frames match."""
    gen.no_interruption = reply.no_interruption
    gen.end_call = reply.end_call
    gen.transfer_number = reply.transfer_number
    gen.show_transferee_as_caller = reply.show_transferee_as_caller
    gen.digit_to_press = reply.digit_to_press
