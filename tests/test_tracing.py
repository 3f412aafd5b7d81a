"""``switchboard.tracing``: nothing made when no endpoint is set; spans nest call > turn >
child; a real OTLP/HTTP receiver on loopback gets them; a missing extra is one line."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard import tracing


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    tracing.shutdown()
    yield
    tracing.shutdown()


@pytest.fixture
def memory() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    return exporter


def test_without_an_endpoint_nothing_is_made() -> None:
    assert tracing.configure({}) is False
    assert tracing.ENABLED is False
    call = tracing.start_call("c1", "node-1")
    assert call is None
    assert tracing.start_turn(call, 1, "response") is None
    with tracing.child(call, "agent") as span:
        assert span is None


def test_a_turn_nests_under_its_call_and_children_under_the_turn(
    memory: InMemorySpanExporter,
) -> None:
    call = tracing.start_call("c1", "node-1")
    turn = tracing.start_turn(call, 3, "response")
    token = tracing.current.set(turn)
    try:
        with tracing.child(None, "llm", **{"gen_ai.request.model": "m"}):
            pass
        with pytest.raises(ValueError, match="boom"), tracing.child(None, "redis.save"):
            raise ValueError("boom")
    finally:
        tracing.current.reset(token)
    tracing.end(turn, **{"switchboard.ttfb_ms": 12.5, "ignored": None})
    tracing.end(call)
    spans = {s.name: s for s in memory.get_finished_spans()}
    assert set(spans) == {"call", "turn response", "llm", "redis.save"}
    trace_ids = {s.context.trace_id for s in spans.values()}
    assert len(trace_ids) == 1
    assert spans["turn response"].parent.span_id == spans["call"].context.span_id
    assert spans["llm"].parent.span_id == spans["turn response"].context.span_id
    assert spans["turn response"].attributes["retell.response_id"] == 3
    assert spans["turn response"].attributes["switchboard.ttfb_ms"] == 12.5
    assert "ignored" not in spans["turn response"].attributes
    assert spans["redis.save"].status.status_code.name == "ERROR"
    assert spans["call"].attributes["retell.call_id"] == "c1"


def test_a_child_without_a_turn_starts_no_trace(memory: InMemorySpanExporter) -> None:
    with tracing.child(None, "cache.lookup") as span:
        assert span is None
    assert memory.get_finished_spans() == ()


class _Receiver(BaseHTTPRequestHandler):
    requests: list[ExportTraceServiceRequest] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).requests.append(request)
        type(self).arrived.set()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_spans_reach_an_otlp_http_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "switchboard-test")
        assert tracing.configure() is True
        call = tracing.start_call("c9", "node-2")
        tracing.end(tracing.start_turn(call, 1, "response"))
        tracing.end(call)
        tracing.shutdown()  # flushes the batch
        assert _Receiver.arrived.wait(30)
    finally:
        server.shutdown()
    (request,) = _Receiver.requests
    (resource_spans,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "switchboard-test"
    names = {s.name for scope in resource_spans.scope_spans for s in scope.spans}
    assert names == {"call", "turn response"}


def test_an_endpoint_without_the_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(tracing.TracingUnavailable, match=r"pip install 'switchboard\[otel\]'"):
        tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
    assert tracing.ENABLED is False
