"""Messages we send Retell, discriminated by ``response_type`` (spec 1.7).

Optional fields are omitted when unset, never sent as ``null``. Required fields have no
default, so msgspec always encodes them with their declared type: a ``response`` frame
can only ever carry a ``str`` content, a ``bool`` content_complete and an ``int`` id.
"""

from __future__ import annotations

from typing import Any

import msgspec


class ConfigOptions(msgspec.Struct, frozen=True):
    auto_reconnect: bool = False
    call_details: bool = False
    transcript_with_tool_calls: bool = False


class Config(msgspec.Struct, tag="config", tag_field="response_type"):
    config: ConfigOptions


class PingPongReply(msgspec.Struct, tag="ping_pong", tag_field="response_type"):
    timestamp: int


class Response(msgspec.Struct, tag="response", tag_field="response_type", omit_defaults=True):
    response_id: int
    content: str
    content_complete: bool
    no_interruption_allowed: bool | None = None
    end_call: bool | None = None
    transfer_number: str | None = None
    show_transferee_as_caller: bool | None = None
    digit_to_press: str | None = None


class AgentInterrupt(
    msgspec.Struct, tag="agent_interrupt", tag_field="response_type", omit_defaults=True
):
    interrupt_id: int
    content: str
    content_complete: bool
    no_interruption_allowed: bool | None = None
    end_call: bool | None = None
    transfer_number: str | None = None
    digit_to_press: str | None = None


class AgentConfig(msgspec.Struct, frozen=True, omit_defaults=True):
    responsiveness: float | None = None
    interruption_sensitivity: float | None = None
    reminder_trigger_ms: int | None = None
    reminder_max_count: int | None = None


class UpdateAgentConfig(msgspec.Struct, tag="update_agent", tag_field="response_type"):
    agent_config: AgentConfig


class ToolCallInvocation(msgspec.Struct, tag="tool_call_invocation", tag_field="response_type"):
    tool_call_id: str
    name: str
    arguments: str


class ToolCallResult(
    msgspec.Struct, tag="tool_call_result", tag_field="response_type", omit_defaults=True
):
    tool_call_id: str
    content: str
    successful: bool | None = None


class Metadata(msgspec.Struct, tag="metadata", tag_field="response_type"):
    metadata: Any


OutboundMessage = (
    Config
    | PingPongReply
    | Response
    | AgentInterrupt
    | UpdateAgentConfig
    | ToolCallInvocation
    | ToolCallResult
    | Metadata
)
