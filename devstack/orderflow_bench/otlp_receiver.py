"""A small OTLP trace receiver that runs inside the bench or a test: it accepts exports over
HTTP/protobuf (`POST /v1/traces`) and over gRPC (TraceService/Export), as a collector or Jaeger
would, and keeps what it received, decoded, or only counts it (the bench: tracing's cost is the
services' CPU, not what a back end does with the spans).

Both listen on 127.0.0.1, on free ports; point a service at it with `environment(protocol)`.

The gRPC endpoint runs only when asked for (`serve_grpc=True`), and a process that runs it should start
no subprocess meanwhile: with gRPC's threads running, a fork can kill the child before its exec
(grpc/grpc#43055: the child's poller finds its epoll descriptor closed)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from orderflow_devstack.infra import free_port

TRACES_PATH = "/v1/traces"
# OTLP span kinds by number (opentelemetry.proto.trace.v1.Span.SpanKind).
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str  # hex, as back ends show it
    span_id: str
    parent_span_id: str | None
    links: tuple[tuple[str, str], ...]  # (trace_id, span_id) of each link
    attributes: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    def __str__(self) -> str:
        return f"{self.service}: {self.name} ({self.kind}) {self.trace_id}/{self.span_id} <- {self.parent_span_id}"


class OtlpReceiver:
    def __init__(self, *, keep: bool = True, serve_grpc: bool = False) -> None:
        self._keep = keep
        self._with_grpc = serve_grpc
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._count = 0
        self.http_port = free_port()
        self.grpc_port = free_port()
        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), _handler(self._received))
        self._http.daemon_threads = True
        self._grpc: grpc.Server | None = None

    def __enter__(self) -> OtlpReceiver:
        threading.Thread(target=self._http.serve_forever, name="otlp-http", daemon=True).start()
        if self._with_grpc:
            self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            service = _TraceService(self._received)
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, self._grpc)  # type: ignore[no-untyped-call]
            self._grpc.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
            self._grpc.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace=None)

    def environment(self, protocol: str = "http/protobuf") -> dict[str, str]:
        """OTEL_* variables that send a service's traces here, every span sampled, exported quickly."""
        port = self.grpc_port if protocol == "grpc" else self.http_port
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }

    @property
    def count(self) -> int:
        """Spans received so far."""
        with self._lock:
            return self._count

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def _received(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        spans = list(_decoded(request)) if self._keep else []
        count = len(spans) if self._keep else sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self._lock:
            self._count += count
            self._spans.extend(spans)


def _decoded(request: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", "?"))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield ReceivedSpan(
                    service=service,
                    name=span.name,
                    kind=KINDS.get(span.kind, str(span.kind)),
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None,
                    links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                    attributes=_attributes(span.attributes),
                    failed=span.status.code == Status.STATUS_CODE_ERROR,
                )


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _handler(received: Callable[[trace_service_pb2.ExportTraceServiceRequest], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != TRACES_PATH:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            received(request)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: no line per export
            pass

    return Handler


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Callable[[trace_service_pb2.ExportTraceServiceRequest], None]) -> None:
        self._received = received

    def Export(  # the generated servicer's name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._received(request)
        return trace_service_pb2.ExportTraceServiceResponse()
