"""The fake's ASGI app: chat completions streamed from pre-encoded byte templates, and the
control endpoints (``/stats``, ``/stats/reset``, ``/config``, ``/v1/models``, ``/healthz``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from switchboard.testing.fake_llm.reply import Plan, pieces, plan_reply, usage_of
from switchboard.testing.fake_llm.request import (
    ChatRequest,
    FakeLLMConfig,
    Overrides,
    last_directive,
    merge,
    request_decoder,
)
from switchboard.testing.fake_llm.stats import FakeLLMStats, StreamRecord

_encode = msgspec.json.encode
_COMPLETIONS = "/v1/chat/completions"


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
                changes = msgspec.json.decode(await request.body(), type=Overrides)
            except msgspec.DecodeError as exc:
                return _error(400, f"bad config: {exc}")
            self.config = merge(self.config, changes)
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
            request = request_decoder.decode(body)
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
        plan = plan_reply(request, config, record.id)
        record.tool_calls = [name for _, name, _ in plan.tool_calls]
        if request.stream:
            await self._stream(receive, send, request, config, plan, record)
        else:
            await self._whole(receive, send, config, plan, record)

    def _config_for(self, request: ChatRequest) -> FakeLLMConfig:
        config = self.config
        if request.fake is not None:
            config = merge(config, request.fake)
        directive = last_directive(request.messages)
        if directive is not None:
            config = merge(config, directive)
        return config

    async def _stream(
        self,
        receive: Receive,
        send: Send,
        request: ChatRequest,
        config: FakeLLMConfig,
        plan: Plan,
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
        plan: Plan,
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

    def events(self, plan: Plan) -> list[bytes]:
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
                for part in pieces(arguments, 3):
                    fragment = {"index": index, "function": {"arguments": part}}
                    frames.append(self._chunk(_encode({"tool_calls": [fragment]})))
            return frames
        frames = []
        for index, token in enumerate(plan.text_tokens):
            role = b'"role":"assistant",' if index == 0 else b""
            frames.append(self._chunk(b'{%s"content":%s}' % (role, _encode(token))))
        return frames or [self._chunk(b'{"role":"assistant","content":""}')]

    def tail(self, plan: Plan, usage: bool) -> bytes:
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
                _encode(usage_of(tokens)),
            )
        return out + b"data: [DONE]\n\n"

    def whole(self, plan: Plan) -> bytes:
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
                "usage": usage_of(len(plan.text_tokens) or len(plan.tool_calls)),
            }
        )


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
