"""What a chat completions request asks of the fake: the request body, the configuration,
and the per-request overrides (an ``extra_body`` field ``fake``, or a ``[fake: ...]`` directive
in the last user message).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import msgspec

DEFAULT_REPLY = "Sure, I can help with that. What day and time would suit you best?"


_DIRECTIVE = re.compile(r"\[fake:([^\]]*)\]")


class FakeLLMConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How the fake answers. Every field may be overridden per request."""

    ttft_ms: float = 0.0  # wait before the first token
    token_ms: float = 0.0  # wait between tokens
    reply: str = DEFAULT_REPLY
    tokens: int | None = None  # reply length in tokens (the reply's words, repeated or cut)
    error_status: int | None = None  # answer with this HTTP status instead
    tool: str | None = None  # call this tool (comma-separated: several, in parallel)
    args: dict[str, Any] | None = None  # arguments for ``tool`` (default: from its schema)
    model: str = "fake-llm"


class Overrides(msgspec.Struct, forbid_unknown_fields=True):
    ttft_ms: float | None = None
    token_ms: float | None = None
    reply: str | None = None
    tokens: int | None = None
    error_status: int | None = None
    tool: str | None = None
    args: dict[str, Any] | None = None


class Message(msgspec.Struct):
    role: str
    content: Any = None


class ChatRequest(msgspec.Struct):
    messages: list[Message]
    model: str = ""
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    stream_options: dict[str, Any] | None = None
    fake: Overrides | None = None


request_decoder = msgspec.json.Decoder(ChatRequest)


def text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def last_directive(messages: list[Message]) -> Overrides | None:
    for message in reversed(messages):
        if message.role != "user":
            continue
        match = _DIRECTIVE.search(text_of(message.content))
        return None if match is None else _parse_directive(match.group(1))
    return None


def _parse_directive(text: str) -> Overrides:
    values: dict[str, Any] = {}
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"bad [fake: ...] directive: {exc}") from None
    for word in words:
        key, equals, value = word.partition("=")
        if not equals:
            raise ValueError(f"bad [fake: ...] directive: {word!r} is not key=value")
        values[key] = msgspec.json.decode(value) if key == "args" else value
    try:
        return msgspec.convert(values, Overrides, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"bad [fake: ...] directive: {exc}") from None


def merge(config: FakeLLMConfig, overrides: Overrides) -> FakeLLMConfig:
    changes = {
        field: value
        for field in overrides.__struct_fields__
        if (value := getattr(overrides, field)) is not None
    }
    return msgspec.structs.replace(config, **changes) if changes else config
