"""A fake OpenAI-compatible chat completions server, for tests, the simulator and benchmarks.

``POST /v1/chat/completions`` answers like OpenAI: with ``stream: true``, server-sent events
(``data: {chunk}\\n\\n`` ... ``data: [DONE]\\n\\n``) whose chunks carry
``choices[0].delta.content`` or ``delta.tool_calls`` and a final ``finish_reason``; without
it, one ``chat.completion`` object. Timing and content come from ``FakeLLMConfig`` and may
be overridden per request, either by an ``extra_body`` field ``fake`` (an object with the
same keys) or by a directive in the last user message, e.g.
``[fake: ttft_ms=300 token_ms=20 tokens=80 error_status=503 tool=book_appointment]``.

Tool calls: when the request offers ``tools``, the last message is the caller's, and the
caller either names a tool (``tool=NAME`` in a directive, or every word of its name, e.g.
"book ... appointment" for ``book_appointment``) the reply is a streamed ``tool_calls``
delta with arguments filled from the tool's schema (or ``args=JSON``). The follow-up
request, ending with the tool result, gets a text reply that quotes the result.

Every request is recorded in ``FakeLLMStats`` (in process, and ``GET /stats``): started,
tokens sent, and whether it completed or was **closed early by the client**, which is how
tests prove that a cancelled turn really closed its upstream stream. A client disconnect
is noticed at once, even during a long time-to-first-token wait.

Cheap enough for 300 concurrent streams: chunks are spliced from pre-encoded byte
templates, and with zero delays the whole reply goes out in one write, with no sleeps and
no extra task.
"""

from switchboard.testing.fake_llm.app import FakeLLM
from switchboard.testing.fake_llm.request import DEFAULT_REPLY, FakeLLMConfig
from switchboard.testing.fake_llm.server import FakeLLMServer, uvicorn_config
from switchboard.testing.fake_llm.stats import FakeLLMStats, StreamRecord

__all__ = [
    "DEFAULT_REPLY",
    "FakeLLM",
    "FakeLLMConfig",
    "FakeLLMServer",
    "FakeLLMStats",
    "StreamRecord",
    "uvicorn_config",
]
