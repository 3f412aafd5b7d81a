"""``POST /webhook``: Retell's call-event webhooks, verified, deduplicated, acknowledged fast.

Retell waits at most 10 s for a 2xx and then retries (up to 3 times), so the request
path does only cheap work: bounded body read, signature check on the raw bytes, parse,
dedupe, enqueue, 204. Subscribers run later, one event at a time in arrival order, on a
background task that ``start()`` / ``stop()`` manage (the app's lifespan calls them).
A subscriber that raises is logged and counted; it affects neither the others nor the
response Retell already has. The cluster-wide claim (``SharedDedupe``) becomes permanent
only once every subscriber succeeded (the event publisher succeeds once the event is
durable); until then a retry gets 503, and a failed delivery releases the claim.

Without an API key nothing can be verified, so every request is refused with 401 (and a
warning is logged at start): accepting unsigned webhooks would let anyone forge call
events. The inbound-call webhook is answered inline, ``{}`` by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from pydantic import SecretStr
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from switchboard.log import LogThrottle, get_logger
from switchboard.protocol.errors import ProtocolError
from switchboard.protocol.signature import DEFAULT_TOLERANCE_MS, SIGNATURE_HEADER, check
from switchboard.protocol.webhook import InboundCall, WebhookEvent, parse_webhook
from switchboard.server.dedupe import Verdict, WebhookDedupe

if TYPE_CHECKING:
    from switchboard.server.cluster_dedupe import SharedDedupe

Subscriber = Callable[[WebhookEvent], Awaitable[None] | None]
#: Returns the overrides for an inbound call (``override_agent_id``, ``dynamic_variables``
#: ...), or ``None`` to route it as configured in Retell.
InboundAnswer = Callable[[InboundCall], Awaitable[Mapping[str, Any] | None]]

DEFAULT_MAX_BODY_BYTES = 1 << 20

_log = get_logger("switchboard.webhook")


def _epoch_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class WebhookCounters:
    """Monotonic counts since the receiver was created (exported by the server's metrics)."""

    received: int = 0
    delivered: int = 0
    duplicates: int = 0
    superseded: int = 0
    inbound: int = 0
    subscriber_errors: int = 0
    dropped: int = 0
    #: retries refused with 503 because another delivery of the event was not yet durable
    in_flight: int = 0
    #: cluster-wide claims made permanent after every subscriber succeeded
    confirmed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class WebhookReceiver:
    """Receives call-event webhooks and hands each new one to every subscriber.

    Mount ``endpoint`` as ``Route("/webhook", receiver.endpoint, methods=["POST"])`` and
    call ``start()`` / ``stop()`` from the application's lifespan.
    """

    def __init__(
        self,
        api_key: str | SecretStr | None,
        *,
        tolerance_ms: int = DEFAULT_TOLERANCE_MS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], int] = _epoch_ms,
        dedupe: WebhookDedupe | None = None,
        max_queue: int = 10_000,
        drain_timeout_s: float = 10.0,
        answer_inbound: InboundAnswer | None = None,
        inbound_timeout_s: float = 5.0,
        shared: SharedDedupe | None = None,
        body_timeout_s: float = 10.0,
        max_pending_bodies: int = 64,
    ) -> None:
        if isinstance(api_key, SecretStr):
            api_key = api_key.get_secret_value()
        self._api_key = api_key or None  # an empty key would let anyone sign
        self.tolerance_ms = tolerance_ms
        self.max_body_bytes = max_body_bytes
        self.drain_timeout_s = drain_timeout_s
        self.inbound_timeout_s = inbound_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_pending_bodies = max_pending_bodies
        self._pending_bodies = 0
        self._throttle = LogThrottle(burst=10)
        self.counters = WebhookCounters()
        self._clock = clock
        self._dedupe = dedupe if dedupe is not None else WebhookDedupe()
        self._answer_inbound = answer_inbound
        self._shared = shared
        self._reserved = 0  # queue slots held by requests awaiting the shared dedupe
        self._max_queue = max_queue
        self._subscribers: list[Subscriber] = []
        self._queue: asyncio.Queue[WebhookEvent] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self._current: WebhookEvent | None = None

    @property
    def configured(self) -> bool:
        """Whether an API key is set (without one every request gets 401)."""
        return self._api_key is not None

    @property
    def running(self) -> bool:
        return self._task is not None

    @property
    def pending(self) -> int:
        """Events accepted but not yet handed to every subscriber."""
        return self._queue.qsize() + (self._current is not None)

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback`` with every new event; it may be a plain or an async function."""
        self._subscribers.append(callback)

    async def start(self) -> None:
        """Start the delivery task; until then webhooks are refused with 503."""
        if self._task is not None:
            return
        if self._api_key is None:
            _log.warning(
                "webhook API key not configured: every webhook will be refused with 401",
                setting="SWITCHBOARD_RETELL_API_KEY",
            )
        self._task = asyncio.create_task(self._drain(), name="webhook-delivery")

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop accepting, deliver what is queued (up to the timeout), then stop the task."""
        task, self._task = self._task, None
        if task is None:
            return
        timeout = self.drain_timeout_s if timeout_s is None else timeout_s
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
        finally:
            task.cancel()
        await asyncio.wait({task})  # unlike ``await task``, never swallows our own cancel
        dropped = self._queue.qsize() + (self._current is not None)
        self._current = None
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        if dropped:
            self.counters.dropped += dropped
            _log.warning("webhook events not delivered before shutdown", dropped=dropped)

    async def endpoint(self, request: Request) -> Response:
        """The Starlette endpoint: 204 accepted (or duplicate), 200 inbound-call answer,
        400 bad payload, 401 bad or missing signature, 408 body too slow, 413 too large,
        503 not running, queue full, too many bodies in flight, or the same event in
        flight on another node and not yet durable."""
        self.counters.received += 1
        if self._api_key is None:
            return self._refuse(request, 401, "no_api_key")
        signatures = request.headers.getlist(SIGNATURE_HEADER)
        if not signatures:
            return self._refuse(request, 401, "missing_signature")
        if len(signatures) > 1:
            return self._refuse(request, 401, "malformed_signature")
        if self._pending_bodies >= self.max_pending_bodies:
            # Unverified bodies cost memory and a socket each: bound how many are in flight.
            return self._refuse(request, 503, "too_many_pending", "too many requests in flight")
        self._pending_bodies += 1
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await self._read_body(request)
        except TimeoutError:
            return self._refuse(
                request, 408, "body_timeout", f"body not received within {self.body_timeout_s:g} s"
            )
        except ClientDisconnect:
            return self._refuse(request, 400, "client_disconnected", "disconnected mid-body")
        finally:
            self._pending_bodies -= 1
        if body is None:
            return self._refuse(
                request, 413, "too_large", f"body exceeds {self.max_body_bytes} bytes"
            )
        rejection = check(
            body,
            self._api_key,
            signatures[0],
            now_ms=self._clock(),
            tolerance_ms=self.tolerance_ms,
        )
        if rejection is not None:
            return self._refuse(request, 401, rejection.value)
        try:
            payload = parse_webhook(body)
        except ProtocolError as err:
            return self._refuse(request, 400, "bad_payload", f"invalid webhook payload: {err}")
        if isinstance(payload, InboundCall):
            return await self._answer(payload)
        return await self._accept(request, payload)

    async def _accept(self, request: Request, event: WebhookEvent) -> Response:
        if not event.is_known or event.extra:
            _log.debug(
                "webhook with unknown parts passed on",
                webhook_event=event.event,
                unknown_fields=sorted(event.extra),
                call_id=event.call_id,
            )
        if self._task is None:
            # Not acknowledged, so Retell retries (possibly on another node).
            return self._refuse(request, 503, "not_running", "not accepting webhooks")
        if self._queue.qsize() + self._reserved >= self._max_queue:
            return self._refuse(request, 503, "overloaded", "webhook queue full")
        verdict = self._dedupe.admit(event)
        if verdict is Verdict.DELIVER and self._shared is not None:
            self._reserved += 1
            try:
                verdict = await self._shared.admit(event)
            finally:
                self._reserved -= 1
        if verdict is Verdict.IN_FLIGHT:
            # Another node holds it, not yet durable: if that node died, the claim expires
            # and Retell's next retry is delivered. Not ours to remember meanwhile.
            self._dedupe.forget(event)
            self.counters.in_flight += 1
            return self._refuse(request, 503, "in_flight", "delivery in progress; retry")
        if verdict is Verdict.DELIVER:
            self._queue.put_nowait(event)
        else:
            if verdict is Verdict.DUPLICATE:
                self.counters.duplicates += 1
            else:
                self.counters.superseded += 1
            _log.debug(
                "webhook not delivered",
                verdict=verdict.value,
                webhook_event=event.event,
                call_id=event.call_id,
            )
        return Response(status_code=204)

    async def _read_body(self, request: Request) -> bytes | None:
        """The raw body, or ``None`` as soon as it is known to exceed the limit."""
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _answer(self, inbound: InboundCall) -> Response:
        self.counters.inbound += 1
        overrides: Mapping[str, Any] | None = None
        if self._answer_inbound is not None:
            try:
                overrides = await asyncio.wait_for(
                    self._answer_inbound(inbound), self.inbound_timeout_s
                )
            except Exception:
                _log.exception("inbound-call answer failed; routing as configured")
        try:
            body = inbound.answer(overrides)
        except (TypeError, msgspec.EncodeError):
            _log.exception("inbound-call overrides not serialisable; routing as configured")
            body = b"{}"
        return Response(body, status_code=200, media_type="application/json")

    def _refuse(self, request: Request, status: int, reason: str, detail: str = "") -> Response:
        rejected = self.counters.rejected
        rejected[reason] = rejected.get(reason, 0) + 1
        suppressed = self._throttle.allow(reason)
        if suppressed is not None:
            client = request.client.host if request.client is not None else None
            _log.warning(
                "webhook refused",
                status=status,
                reason=reason,
                client=client,
                **({"suppressed": suppressed} if suppressed else {}),
            )
        return PlainTextResponse(detail or "unauthorized", status_code=status)

    async def _drain(self) -> None:
        queue = self._queue
        while True:
            event = await queue.get()
            self._current = event
            try:
                await self._deliver(event)
            finally:
                queue.task_done()
            self._current = None

    async def _deliver(self, event: WebhookEvent) -> None:
        """Every subscriber, then the claims: confirmed once all of them succeeded (an
        event publisher returns only once the event is durable), else released, so
        that a retry of an event that did not make it is delivered again."""
        ok = True
        for callback in self._subscribers:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                ok = False
                self.counters.subscriber_errors += 1
                _log.exception(
                    "webhook subscriber failed",
                    subscriber=getattr(callback, "__qualname__", repr(callback)),
                    webhook_event=event.event,
                    call_id=event.call_id,
                )
        self.counters.delivered += 1
        if ok:
            if self._shared is not None and await self._shared.confirm(event):
                self.counters.confirmed += 1
            return
        self._dedupe.forget(event)
        if self._shared is not None:
            await self._shared.release(event)
