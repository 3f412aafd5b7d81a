"""Retell's custom-LLM WebSocket wire format: typed messages, decode and encode.

Pure and I/O-free. The protocol, in our words, is ``docs/protocol.md``.
"""

from switchboard.protocol.codec import FrameDecoder, decode_inbound, encode, undecodable_request
from switchboard.protocol.errors import FrameTooLarge, ProtocolError, UnknownInteraction
from switchboard.protocol.inbound import (
    CallDetails,
    InboundMessage,
    PingPong,
    ReminderRequired,
    ResponseRequired,
    UpdateOnly,
    Utterance,
    Word,
)
from switchboard.protocol.outbound import (
    AgentConfig,
    AgentInterrupt,
    Config,
    ConfigOptions,
    Metadata,
    OutboundMessage,
    PingPongReply,
    Response,
    ToolCallInvocation,
    ToolCallResult,
    UpdateAgentConfig,
)
from switchboard.protocol.signature import check, sign, verify
from switchboard.protocol.webhook import InboundCall, WebhookEvent, parse_webhook

__all__ = [
    "AgentConfig",
    "AgentInterrupt",
    "CallDetails",
    "Config",
    "ConfigOptions",
    "FrameDecoder",
    "FrameTooLarge",
    "InboundCall",
    "InboundMessage",
    "Metadata",
    "OutboundMessage",
    "PingPong",
    "PingPongReply",
    "ProtocolError",
    "ReminderRequired",
    "Response",
    "ResponseRequired",
    "ToolCallInvocation",
    "ToolCallResult",
    "UnknownInteraction",
    "UpdateAgentConfig",
    "UpdateOnly",
    "Utterance",
    "WebhookEvent",
    "Word",
    "check",
    "decode_inbound",
    "encode",
    "parse_webhook",
    "sign",
    "undecodable_request",
    "verify",
]
