"""What one response will contain, decided before anything is sent: the text tokens or the
tool calls (arguments sampled from the tool's schema), and the waits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from switchboard.testing.fake_llm.request import ChatRequest, FakeLLMConfig, text_of

_encode = msgspec.json.encode
_TOKEN = re.compile(r"\s*[\w']+|\s*[^\w\s]+|\s+")


_WORD = re.compile(r"[a-z0-9]+")


class Plan(msgspec.Struct):
    """What one response will contain, decided before anything is sent."""

    ttft: float
    gap: float
    text_tokens: list[str]
    tool_calls: list[tuple[str, str, str]]  # (id, name, arguments)


def usage_of(completion: int) -> dict[str, int]:
    return {"prompt_tokens": 1, "completion_tokens": completion, "total_tokens": completion + 1}


def plan_reply(request: ChatRequest, config: FakeLLMConfig, seq: int) -> Plan:
    ttft, gap = max(0.0, config.ttft_ms) / 1000, max(0.0, config.token_ms) / 1000
    last = request.messages[-1]
    if request.tools and last.role == "user" and request.tool_choice != "none":
        calls = _tool_calls(request, config, seq)
        if calls:
            return Plan(ttft=ttft, gap=gap, text_tokens=[], tool_calls=calls)
    reply = config.reply
    if last.role == "tool":
        result = text_of(last.content)
        reply = f"All done. {result}" if len(result) <= 300 else "All done."
    return Plan(ttft=ttft, gap=gap, text_tokens=_tokens(reply, config.tokens), tool_calls=[])


def _tool_calls(
    request: ChatRequest, config: FakeLLMConfig, seq: int
) -> list[tuple[str, str, str]]:
    offered = {}
    for entry in request.tools or ():
        function = entry.get("function") or {}
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            offered[function["name"]] = function.get("parameters") or {}
    if config.tool:
        names = [n.strip() for n in config.tool.split(",") if n.strip() in offered]
    else:
        words = set(_WORD.findall(text_of(request.messages[-1].content).lower()))
        names = [n for n in offered if set(_WORD.findall(n.lower())) <= words][:1]
    calls = []
    for index, name in enumerate(names):
        args = config.args if config.args is not None else _sample_args(offered[name])
        calls.append((f"call_fake{seq}_{index}", name, _encode(args).decode()))
    return calls


def _sample_args(schema: Any) -> dict[str, Any]:
    """Plausible arguments for a JSON object schema: required properties only."""
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    return {name: _sample_value(properties.get(name) or {}) for name in required}


def _sample_value(schema: dict[str, Any]) -> Any:
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("examples"):
        return schema["examples"][0]
    kind = schema.get("type")
    samples = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}
    if isinstance(kind, str) and kind in samples:
        return samples[kind]
    return "test"


def _tokens(reply: str, count: int | None) -> list[str]:
    tokens = _TOKEN.findall(reply) or ["ok"]
    if count is None:
        return tokens
    if count <= 0:
        return []
    out: list[str] = []
    cycle = 0
    while len(out) < count:
        for index, token in enumerate(tokens):
            if len(out) == count:
                break
            out.append(" " + token.lstrip() if cycle and index == 0 else token)
        cycle += 1
    return out


def pieces(text: str, parts: int) -> Iterable[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
