"""The conversation as chat-completion messages, and tool calls assembled from a stream.

Pure, no I/O: what the OpenAI agent sends (Retell's transcript, tool calls included, as
messages) and how it reads streamed tool-call fragments back into whole calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openai.types.chat import ChatCompletionMessageParam
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall


@dataclass(slots=True)
class PendingCall:
    """A tool call being assembled from streamed fragments."""

    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)

    @property
    def arguments(self) -> str:
        return "".join(self.parts)


def accumulate(calls: dict[int, PendingCall], deltas: Iterable[ChoiceDeltaToolCall]) -> None:
    """Merge streamed tool-call fragments: ``index`` says which call a fragment extends.

    Servers differ: OpenAI streams the name once and the arguments in pieces; others send
    whole calls at once, sometimes without an index or reusing one with a new id.
    """
    for delta in deltas:
        index = delta.index if isinstance(delta.index, int) else len(calls)
        call = calls.get(index)
        if call is None or (delta.id and call.id and delta.id != call.id):
            index = index if call is None else max(calls) + 1
            call = calls[index] = PendingCall()
        if delta.id:
            call.id = delta.id
        function = delta.function
        if function is not None:
            if function.name:
                call.name += function.name
            if function.arguments:
                call.parts.append(function.arguments)
    for call in calls.values():
        if not call.id:
            call.id = f"call_{uuid.uuid4().hex[:24]}"


def assistant_message(text: str, calls: Sequence[PendingCall]) -> ChatCompletionMessageParam:
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for call in calls
        ],
    }


def history_with_tools(items: Sequence[Mapping[str, Any]]) -> list[ChatCompletionMessageParam]:
    """Retell's ``transcript_with_tool_calls`` as chat messages, tool calls included.

    Each invocation is followed at once by its result, as the API requires (Retell may
    place speech between them), and an invocation without a result (cancelled by a
    barge-in) is left out: the API rejects an unanswered tool call.
    """
    results = {
        item.get("tool_call_id"): item.get("content")
        for item in items
        if item.get("role") == "tool_call_result"
    }
    messages: list[ChatCompletionMessageParam] = []
    for item in items:
        role = item.get("role")
        content = item.get("content")
        if role == "agent" or role in ("user", "transfer_target"):
            if isinstance(content, str) and content:
                if role == "agent":
                    messages.append({"role": "assistant", "content": content})
                else:
                    messages.append({"role": "user", "content": content})
        elif role == "tool_call_invocation":
            call_id = item.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in results:
                continue
            arguments = item.get("arguments")
            call = PendingCall(call_id, str(item.get("name", "")), [str(arguments or "")])
            messages.append(assistant_message("", [call]))
            result = results[call_id]
            messages.append({"role": "tool", "tool_call_id": call_id, "content": str(result or "")})
    return messages
