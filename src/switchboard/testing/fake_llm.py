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

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

DEFAULT_REPLY = "Sure, I can help with that. What day and time would suit you best?"
_DIRECTIVE = re.compile(r"\[fake:([^\]]*)\]")
_TOKEN = re.compile(r"\s*[\w']+|\s*[^\w\s]+|\s+")
_WORD = re.compile(r"[a-z0-9]+")
_encode = msgspec.json.encode
_COMPLETIONS = "/v1/chat/completions"


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


class _Overrides(msgspec.Struct, forbid_unknown_fields=True):
    ttft_ms: float | None = None
    token_ms: float | None = None
    reply: str | None = None
    tokens: int | None = None
    error_status: int | None = None
    tool: str | None = None
    args: dict[str, Any] | None = None


class _Message(msgspec.Struct):
    role: str
    content: Any = None


class _ChatRequest(msgspec.Struct):
    messages: list[_Message]
    model: str = ""
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    stream_options: dict[str, Any] | None = None
    fake: _Overrides | None = None


_request_decoder = msgspec.json.Decoder(_ChatRequest)

Outcome = Literal["running", "completed", "closed_early", "error"]


class StreamRecord(msgspec.Struct, kw_only=True):
    """One chat completion request, as the server saw it."""

    id: int
    stream: bool
    model: str
    outcome: Outcome = "running"
    status: int = 200
    tokens_sent: int = 0
    tool_calls: list[str] = msgspec.field(default_factory=list)
    started_at: float = 0.0  # time.monotonic()
    ended_at: float | None = None


class FakeLLMStats:
    """Counters and recent records. Written by the server's loop, readable from any thread.

    ``wait_for`` lets a test (on its own loop or thread) wait for a condition, with a
    timeout, without polling: every change wakes the waiters.
    """

    def __init__(self, keep: int = 1000) -> None:
        self._keep = keep
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.started = 0
        self.completed = 0
        self.closed_early = 0
        self.errors = 0
        self.tokens_sent = 0
        self.active = 0
        self.peak_active = 0
        self.streams: collections.deque[StreamRecord] = collections.deque(maxlen=self._keep)
        self._bodies: collections.deque[bytes] = collections.deque(maxlen=100)
        self._ids = itertools.count(1)
        self.changed()

    @property
    def recent_requests(self) -> list[dict[str, Any]]:
        """The last 100 request bodies, decoded (oldest first)."""
        return [msgspec.json.decode(body) for body in list(self._bodies)]

    @property
    def last_request(self) -> dict[str, Any]:
        if not self._bodies:
            raise LookupError("no request recorded")
        body: dict[str, Any] = msgspec.json.decode(self._bodies[-1])
        return body

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "started": self.started,
            "completed": self.completed,
            "closed_early": self.closed_early,
            "errors": self.errors,
            "active": self.active,
            "peak_active": self.peak_active,
            "tokens_sent": self.tokens_sent,
            "streams": [msgspec.to_builtins(r) for r in list(self.streams)[-100:]],
        }

    def changed(self) -> None:
        """Wake everyone waiting on a condition (called by the server after each change)."""
        if self._waiters:
            for loop, event in list(self._waiters):
                loop.call_soon_threadsafe(event.set)
        with self._cond:
            self._cond.notify_all()

    async def wait_for(
        self, predicate: Callable[[FakeLLMStats], bool], within: float = 10.0
    ) -> None:
        """Return once ``predicate(stats)`` holds; ``TimeoutError`` after ``within`` seconds."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                while not predicate(self):
                    await waiter[1].wait()
                    waiter[1].clear()
        finally:
            self._waiters.remove(waiter)

    def wait_for_blocking(
        self, predicate: Callable[[FakeLLMStats], bool], within: float = 10.0
    ) -> None:
        """``wait_for`` for threads that are not the server's (never call it on its loop)."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), within):
                raise TimeoutError(f"fake LLM condition not met within {within} s")

    # Recording, called by the server.

    def _begin(self, body: bytes, stream: bool, model: str) -> StreamRecord:
        record = StreamRecord(
            id=next(self._ids), stream=stream, model=model, started_at=time.monotonic()
        )
        self.requests += 1
        self.started += 1
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        self.streams.append(record)
        self._bodies.append(body)
        self.changed()
        return record

    def _sent(self, record: StreamRecord, tokens: int) -> None:
        record.tokens_sent += tokens
        self.tokens_sent += tokens
        self.changed()

    def _end(self, record: StreamRecord, outcome: Outcome) -> None:
        if record.outcome != "running":
            return
        record.outcome = outcome
        record.ended_at = time.monotonic()
        self.active -= 1
        if outcome == "completed":
            self.completed += 1
        elif outcome == "closed_early":
            self.closed_early += 1
        else:
            self.errors += 1
        self.changed()

    def _rejected(self) -> None:
        self.requests += 1
        self.errors += 1
        self.changed()


class _Plan(msgspec.Struct):
    """What one response will contain, decided before anything is sent."""

    ttft: float
    gap: float
    text_tokens: list[str]
    tool_calls: list[tuple[str, str, str]]  # (id, name, arguments)


class FakeLLM:
    """The ASGI app. ``config`` may be replaced at any time; ``stats`` records every request."""

    def __init__(self, config: FakeLLMConfig | None = None) -> None:
        self.config = config or FakeLLMConfig()
        self.stats = FakeLLMStats()
        self._app = Starlette(
            routes=[
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/stats", self._stats, methods=["GET"]),
                Route("/stats/reset", self._reset, methods=["POST"]),
                Route("/config", self._configure, methods=["GET", "POST"]),
                Route("/healthz", self._health, methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot endpoint skips the router: raw ASGI streams cheaply and sees disconnects.
        if scope["type"] == "http" and scope["path"] == _COMPLETIONS and scope["method"] == "POST":
            await self._complete(receive, send)
            return
        await self._app(scope, receive, send)

    # Control endpoints.

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.snapshot())

    async def _reset(self, request: Request) -> Response:
        self.stats.reset()
        return JSONResponse(self.stats.snapshot())

    async def _configure(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = msgspec.json.decode(await request.body(), type=_Overrides)
            except msgspec.DecodeError as exc:
                return _error(400, f"bad config: {exc}")
            self.config = _merge(self.config, changes)
        return Response(_encode(self.config), media_type="application/json")

    async def _models(self, request: Request) -> Response:
        model = {"id": self.config.model, "object": "model", "created": 0, "owned_by": "fake"}
        return JSONResponse({"object": "list", "data": [model]})

    async def _health(self, request: Request) -> Response:
        return Response(b"ok", media_type="text/plain")

    # Chat completions.

    async def _complete(self, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        try:
            request = _request_decoder.decode(body)
        except msgspec.DecodeError as exc:
            self.stats._rejected()
            await _send_error(send, 400, f"invalid request: {exc}")
            return
        if not request.messages:
            self.stats._rejected()
            await _send_error(send, 400, "messages must not be empty")
            return
        try:
            config = self._config_for(request)
        except ValueError as exc:
            self.stats._rejected()
            await _send_error(send, 400, str(exc))
            return
        record = self.stats._begin(body, request.stream, request.model)
        if config.error_status is not None:
            record.status = config.error_status
            self.stats._end(record, "error")
            await _send_error(send, config.error_status, "fake upstream error")
            return
        plan = _plan(request, config, record.id)
        record.tool_calls = [name for _, name, _ in plan.tool_calls]
        if request.stream:
            await self._stream(receive, send, request, config, plan, record)
        else:
            await self._whole(receive, send, config, plan, record)

    def _config_for(self, request: _ChatRequest) -> FakeLLMConfig:
        config = self.config
        if request.fake is not None:
            config = _merge(config, request.fake)
        directive = _last_directive(request.messages)
        if directive is not None:
            config = _merge(config, directive)
        return config

    async def _stream(
        self,
        receive: Receive,
        send: Send,
        request: _ChatRequest,
        config: FakeLLMConfig,
        plan: _Plan,
        record: StreamRecord,
    ) -> None:
        frames = _Frames(config.model, record.id)
        events = frames.events(plan)
        tail = frames.tail(plan, bool((request.stream_options or {}).get("include_usage")))
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        if plan.ttft <= 0 and plan.gap <= 0:
            self.stats._sent(record, len(events))
            self.stats._end(record, "completed")
            await send({"type": "http.response.body", "body": b"".join([*events, tail])})
            return
        gone = asyncio.Event()
        watcher = asyncio.create_task(self._watch(receive, gone, record))
        try:
            if await _pause(gone, plan.ttft):
                return
            for index, event in enumerate(events):
                if index and await _pause(gone, plan.gap):
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
                self.stats._sent(record, 1)
            self.stats._end(record, "completed")
            await send({"type": "http.response.body", "body": tail})
        finally:
            watcher.cancel()

    async def _watch(self, receive: Receive, gone: asyncio.Event, record: StreamRecord) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.stats._end(record, "closed_early")
                gone.set()
                return

    async def _whole(
        self,
        receive: Receive,
        send: Send,
        config: FakeLLMConfig,
        plan: _Plan,
        record: StreamRecord,
    ) -> None:
        wait = plan.ttft + plan.gap * max(0, len(plan.text_tokens) - 1)
        if wait > 0:
            gone = asyncio.Event()
            watcher = asyncio.create_task(self._watch(receive, gone, record))
            try:
                if await _pause(gone, wait):
                    return
            finally:
                watcher.cancel()
        body = _Frames(config.model, record.id).whole(plan)
        self.stats._sent(record, len(plan.text_tokens) or len(plan.tool_calls))
        self.stats._end(record, "completed")
        await send({"type": "http.response.start", "status": 200, "headers": _json_headers(body)})
        await send({"type": "http.response.body", "body": body})


_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]


class _Frames:
    """SSE frames for one response, spliced from byte templates (no per-token dict)."""

    __slots__ = ("_head", "_id", "_model")

    def __init__(self, model: str, seq: int) -> None:
        self._id = f"chatcmpl-fake{seq}"
        self._model = model
        self._head = (
            b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
            b'"system_fingerprint":null,"choices":[{"index":0,"delta":'
            % (self._id.encode(), int(time.time()), _encode(model))
        )

    def _chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        return b'%s%s,"logprobs":null,"finish_reason":%s}]}\n\n' % (self._head, delta, finish)

    def events(self, plan: _Plan) -> list[bytes]:
        """One frame per token (or tool-call fragment); the role rides on the first."""
        if plan.tool_calls:
            frames = []
            for index, (call_id, name, arguments) in enumerate(plan.tool_calls):
                opening = {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                head: dict[str, Any] = {"tool_calls": [opening]}
                if index == 0:
                    head = {"role": "assistant", "content": None, **head}
                frames.append(self._chunk(_encode(head)))
                for part in _pieces(arguments, 3):
                    fragment = {"index": index, "function": {"arguments": part}}
                    frames.append(self._chunk(_encode({"tool_calls": [fragment]})))
            return frames
        frames = []
        for index, token in enumerate(plan.text_tokens):
            role = b'"role":"assistant",' if index == 0 else b""
            frames.append(self._chunk(b'{%s"content":%s}' % (role, _encode(token))))
        return frames or [self._chunk(b'{"role":"assistant","content":""}')]

    def tail(self, plan: _Plan, usage: bool) -> bytes:
        finish = b'"tool_calls"' if plan.tool_calls else b'"stop"'
        out = self._chunk(b"{}", finish)
        if usage:
            tokens = len(plan.text_tokens) or len(plan.tool_calls)
            out += b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,' % (
                self._id.encode(),
                int(time.time()),
            )
            out += b'"model":%s,"choices":[],"usage":%s}\n\n' % (
                _encode(self._model),
                _encode(_usage(tokens)),
            )
        return out + b"data: [DONE]\n\n"

    def whole(self, plan: _Plan) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if plan.tool_calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in plan.tool_calls
            ]
        else:
            message["content"] = "".join(plan.text_tokens)
        finish = "tool_calls" if plan.tool_calls else "stop"
        return _encode(
            {
                "id": self._id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self._model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": _usage(len(plan.text_tokens) or len(plan.tool_calls)),
            }
        )


def _usage(completion: int) -> dict[str, int]:
    return {"prompt_tokens": 1, "completion_tokens": completion, "total_tokens": completion + 1}


def _plan(request: _ChatRequest, config: FakeLLMConfig, seq: int) -> _Plan:
    ttft, gap = max(0.0, config.ttft_ms) / 1000, max(0.0, config.token_ms) / 1000
    last = request.messages[-1]
    if request.tools and last.role == "user" and request.tool_choice != "none":
        calls = _tool_calls(request, config, seq)
        if calls:
            return _Plan(ttft=ttft, gap=gap, text_tokens=[], tool_calls=calls)
    reply = config.reply
    if last.role == "tool":
        result = _text(last.content)
        reply = f"All done. {result}" if len(result) <= 300 else "All done."
    return _Plan(ttft=ttft, gap=gap, text_tokens=_tokens(reply, config.tokens), tool_calls=[])


def _tool_calls(
    request: _ChatRequest, config: FakeLLMConfig, seq: int
) -> list[tuple[str, str, str]]:
    offered = {}
    for entry in request.tools or ():
        function = entry.get("function") or {}
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            offered[function["name"]] = function.get("parameters") or {}
    if config.tool:
        names = [n.strip() for n in config.tool.split(",") if n.strip() in offered]
    else:
        words = set(_WORD.findall(_text(request.messages[-1].content).lower()))
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


def _pieces(text: str, parts: int) -> Iterable[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _last_directive(messages: list[_Message]) -> _Overrides | None:
    for message in reversed(messages):
        if message.role != "user":
            continue
        match = _DIRECTIVE.search(_text(message.content))
        return None if match is None else _parse_directive(match.group(1))
    return None


def _parse_directive(text: str) -> _Overrides:
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
        return msgspec.convert(values, _Overrides, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"bad [fake: ...] directive: {exc}") from None


def _merge(config: FakeLLMConfig, overrides: _Overrides) -> FakeLLMConfig:
    changes = {
        field: value
        for field in overrides.__struct_fields__
        if (value := getattr(overrides, field)) is not None
    }
    return msgspec.structs.replace(config, **changes) if changes else config


async def _pause(gone: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``; True (stop sending) if the client went away meanwhile."""
    if gone.is_set():
        return True
    if seconds <= 0:
        return False
    try:
        async with asyncio.timeout(seconds):
            await gone.wait()
    except TimeoutError:
        return False
    return True


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _error(status: int, message: str) -> Response:
    return Response(_error_body(status, message), status, media_type="application/json")


def _error_body(status: int, message: str) -> bytes:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return _encode({"error": {"message": message, "type": kind, "param": None, "code": None}})


async def _send_error(send: Send, status: int, message: str) -> None:
    body = _error_body(status, message)
    await send({"type": "http.response.start", "status": status, "headers": _json_headers(body)})
    await send({"type": "http.response.body", "body": body})


class FakeLLMServer:
    """A ``FakeLLM`` served by uvicorn on a loopback port, in a background thread.

    The socket is bound and listening before ``start`` returns, so clients can connect at
    once (the kernel queues them until uvicorn accepts): no start-up race, no polling.
    """

    def __init__(
        self, config: FakeLLMConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app = FakeLLM(config)
        self._sock = _listen(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be set to."""
        return f"{self.root_url}/v1"

    @property
    def root_url(self) -> str:
        """Where ``/stats``, ``/stats/reset`` and ``/config`` live."""
        return f"http://{self.host}:{self.port}"

    @property
    def stats(self) -> FakeLLMStats:
        return self.app.stats

    @property
    def config(self) -> FakeLLMConfig:
        return self.app.config

    @config.setter
    def config(self, value: FakeLLMConfig) -> None:
        self.app.config = value

    def start(self) -> FakeLLMServer:
        self._server = uvicorn.Server(uvicorn_config(self.app))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.name = f"fake-llm-{self.port}"
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("fake LLM server did not stop")
        self._sock.close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def uvicorn_config(app: FakeLLM, loop: str = "asyncio") -> uvicorn.Config:
    """Quiet uvicorn settings: no access log, no logging reconfiguration, quick shutdown."""
    return uvicorn.Config(
        app,
        loop=loop,
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=2,
        backlog=2048,
    )


def _listen(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when it
    # sees TCP there. With proto 0, Nagle holds the body behind the headers until the
    # client's delayed ACK, adding ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m switchboard.testing.fake_llm",
        description="Serve a fake OpenAI-compatible chat completions API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--token-ms", type=float, default=0.0)
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--model", default="fake-llm")
    options = parser.parse_args(argv)
    config = FakeLLMConfig(
        ttft_ms=options.ttft_ms,
        token_ms=options.token_ms,
        reply=options.reply,
        tokens=options.tokens,
        model=options.model,
    )
    app = FakeLLM(config)
    sock = _listen(options.host, options.port)
    host, port = sock.getsockname()[:2]
    print(f"fake-llm ready base_url=http://{host}:{port}/v1", flush=True)
    try:
        uvicorn.Server(uvicorn_config(app, loop="auto")).run(sockets=[sock])
    finally:
        sock.close()


if __name__ == "__main__":
    main()
