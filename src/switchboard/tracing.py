"""OpenTelemetry traces: a span per call, a span per turn, and child spans for what a turn
waits on (the agent, the LLM request, the cache lookup, the Redis save, the outbox put).

A slow turn in a histogram says *that* it was slow; its trace says where the time went.
Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, with the SDK's own environment variables
for everything else (headers, service name, sampler). Unset, nothing is imported and every
hook is one global read: ``ENABLED`` is checked before any span is made, so a node that
does not trace pays nothing on the turn path.

The OpenTelemetry packages are the ``otel`` extra (``pip install 'switchboard[otel]'``);
asking for tracing without them is one line naming that command.

Attribute names follow the OpenTelemetry semantic conventions where one exists: the LLM
span is a ``gen_ai`` client span (``gen_ai.operation.name``, ``gen_ai.system``,
``gen_ai.request.model``, ``gen_ai.usage.*``) with the time to first token as an event and
an attribute; the Redis save carries ``db.system.name = redis``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from switchboard.extras import install_command

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

#: Whether spans are made at all; read on every hook, set once by ``configure``.
ENABLED = False
#: The turn being answered, for spans opened deep in the agent (the LLM request, the
#: cache lookup) without passing it down: the session sets it in the turn's own task.
current: ContextVar[Span | None] = ContextVar("switchboard_turn_span", default=None)
_tracer: Tracer | None = None
_provider: TracerProvider | None = None

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
INSTALL_HINT = install_command("otel")
SERVICE_NAME = "switchboard"


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but the OpenTelemetry packages are not installed."""


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on when an OTLP endpoint is configured; return whether it is on."""
    env = os.environ if environ is None else environ
    if not any(env.get(name) for name in ENDPOINT_VARIABLES):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable(
            f"{ENDPOINT_VARIABLES[1]} is set but OpenTelemetry is not installed: {INSTALL_HINT}"
        ) from None
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_provider(provider)
    return True


def use_provider(provider: TracerProvider) -> None:
    """Trace into ``provider`` (tests give one with an in-memory exporter)."""
    global ENABLED, _tracer, _provider
    # The installed version, not ``switchboard.__version__``: importing the package's face
    # from here would tie this bottom module to the agent API it re-exports.
    from importlib.metadata import version

    _provider = provider
    _tracer = provider.get_tracer("switchboard", version("switchboard"))
    ENABLED = True


def shutdown() -> None:
    """Flush what is queued and stop tracing (at the end of a drain)."""
    global ENABLED, _tracer, _provider
    provider, _provider = _provider, None
    ENABLED = False
    _tracer = None
    if provider is not None:
        provider.shutdown()


def start_call(call_id: str, node_id: str | None = None) -> Span | None:
    """The call's span, open until its socket closes; ``None`` when not tracing. (A call
    that reconnects to another node is a new span there, with the same call id.)"""
    if _tracer is None:
        return None
    attributes = {"retell.call_id": call_id}
    if node_id:
        attributes["switchboard.node_id"] = node_id
    return _tracer.start_span("call", attributes=attributes)


def start_turn(call: Span | None, response_id: int, kind: str) -> Span | None:
    """A turn's span under its call's."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    context = trace.set_span_in_context(call) if call is not None else None
    return _tracer.start_span(
        f"turn {kind}",
        context=context,
        attributes={"retell.response_id": response_id, "switchboard.turn.kind": kind},
    )


#: What a hook uses instead of ``child`` when tracing is off: one shared object, no span.
NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def end(span: Span | None, **attributes: Any) -> None:
    """End ``span`` (if any) with ``attributes`` set first."""
    if span is None:
        return
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)
    span.end()


@contextlib.contextmanager
def child(parent: Span | None, name: str, **attributes: Any) -> Iterator[Span | None]:
    """A span under ``parent`` (by default the current turn's) for the ``with`` block;
    yields ``None`` when not tracing or without a parent (a child span never starts a
    trace of its own)."""
    if _tracer is None:
        yield None
        return
    parent = parent if parent is not None else current.get()
    if parent is None:
        yield None
        return
    from opentelemetry import trace

    span = _tracer.start_span(
        name,
        context=trace.set_span_in_context(parent),
        attributes={k: v for k, v in attributes.items() if v is not None},
    )
    try:
        yield span
    except (GeneratorExit, asyncio.CancelledError):
        # a barge-in or a hang-up: the turn was superseded, nothing failed
        span.set_attribute("switchboard.cancelled", True)
        raise
    except BaseException as err:
        span.record_exception(err)
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, type(err).__name__))
        raise
    finally:
        span.end()
