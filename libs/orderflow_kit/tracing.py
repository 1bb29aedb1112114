"""OpenTelemetry tracing, configured by the standard `OTEL_*` variables, set up once per process
by the service's composition root (`orderflow_kit.telemetry` in each main), and the messaging spans
the kit and the services record (docs/observability.md, "Traces", shows the structure).

Off unless an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_TRACES_EXPORTER=console`): then no tracer provider
is installed, nothing is instrumented, and every helper here returns at its first test. When on:
- the exporter speaks what `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` says,
  `http/protobuf` (the default) or `grpc`; spans leave in batches (`OTEL_BSP_*`);
- sampling is the SDK's: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default
  parentbased_always_on: a trace that began sampled upstream stays sampled);
- every gRPC call is traced on both sides (unary and streaming; health checks and reflection are
  not), every SQL statement through the engines of `orderflow_kit.db` (SQLAlchemy's
  instrumentation: asyncpg's is NOT installed too, which would record each statement twice), and
  Redis commands; the gateway's HTTP requests by FastAPI's own telemetry, the consumers' messages
  by FastStream's (`NatsTelemetryMiddleware`).

Messages carry W3C `traceparent` in their headers, following the OpenTelemetry messaging
conventions: the context of a message's *create* span travels with it (in the outbox row, then
the NATS headers), each consumer's *process* span of that message is its child, and a span that
stands for many messages (a relay batch, a consumer batch) is a root of its own that links every
message it carries."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.util.types import Attributes
    from sqlalchemy.ext.asyncio import AsyncEngine

# Standard variable names (OpenTelemetry SDK configuration).
ENDPOINT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
PROTOCOLS: Final = ("http/protobuf", "grpc")
MESSAGING_SYSTEM: Final = "nats"

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()

# While a consumer batch is being handled: each message's processing context, by id(message).
_message_contexts: ContextVar[Mapping[int, Context] | None] = ContextVar("message_contexts", default=None)


class TracingMisconfigured(ValueError):
    """An OTEL_* variable asks for something this service cannot do; the message says what."""


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, or the console exporter, and
    neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return exporter == "console" or any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def enabled() -> bool:
    return _provider is not None


def tracer_provider() -> TracerProvider | None:
    """The process's provider when tracing is on (for FastAPI's and FastStream's telemetry)."""
    return _provider


def configure_tracing(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install the tracer provider and the instrumentations when the environment asks for traces
    (see `wanted`); returns whether it did. Call once, first thing in the service's main, before
    any channel, server or engine is made. `shutdown_tracing` at exit sends what is buffered."""
    global _provider, _tracer
    if _provider is not None or not wanted(environ):
        return _provider is not None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The code's name wins over OTEL_SERVICE_NAME (one environment is often shared by all four
    # services); OTEL_RESOURCE_ATTRIBUTES adds to it.
    resource = Resource.create({"service.name": service, "service.namespace": "orderflow"})
    provider = TracerProvider(resource=resource)  # its sampler is OTEL_TRACES_SAMPLER(_ARG)'s
    provider.add_span_processor(BatchSpanProcessor(_exporter(environ)))
    trace.set_tracer_provider(provider)
    _provider, _tracer = provider, provider.get_tracer("orderflow")
    _instrument(provider)
    return True


class _ChildSpansOnly(trace.Tracer):
    """A tracer that records a span only inside a trace: a database statement or Redis command
    outside any (the relay's polls, housekeeping, readiness checks: every second, for nobody)
    starts no trace of its own."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Context | None = None, *args: Any, **kwargs: Any) -> Span:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        started = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        with trace.use_span(started, end_on_exit, record_exception, set_status_on_exception) as current:
            yield current


class _ChildSpansOnlyProvider(trace.TracerProvider):
    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _ChildSpansOnly(self._provider.get_tracer(*args, **kwargs))


def shutdown_tracing() -> None:
    """Export what is still buffered; at the end of a service's main."""
    if _provider is not None:
        _provider.shutdown()


def _exporter(environ: Mapping[str, str]) -> Any:
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = next(
        (environ[name].strip() for name in PROTOCOL_VARIABLES if environ.get(name, "").strip()), PROTOCOLS[0]
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise TracingMisconfigured(f"OTLP protocol {protocol!r} is not supported; use one of {', '.join(PROTOCOLS)}")


def _instrument(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer, filters
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # Probes and supervisors ask for health every second: noise, not requests.
    not_plumbing = filters.negate(filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection")))
    GrpcAioInstrumentorServer(filter_=not_plumbing).instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    GrpcAioInstrumentorClient(filter_=not_plumbing).instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument(tracer_provider=_ChildSpansOnlyProvider(provider))


def trace_engine(engine: AsyncEngine) -> None:
    """A span per SQL statement run through `engine`, when tracing is on (orderflow_kit.db)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__ as version
    from opentelemetry.metrics import NoOpMeter

    tracer = _ChildSpansOnly(_provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", version))
    usage = NoOpMeter("orderflow").create_up_down_counter("db.client.connections.usage")  # metrics: prometheus
    EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]


# --- W3C trace context in message headers ---


def current_traceparent() -> str | None:
    """The current span's context as a W3C traceparent, or None outside a valid span."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_of(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message's headers carry (its creation context), if any."""
    return _PROPAGATOR.extract(headers or {})


def span_context_of(headers: Mapping[str, str] | None) -> trace.SpanContext | None:
    found = trace.get_current_span(context_of(headers)).get_span_context()
    return found if found.is_valid else None


def inject(headers: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the current (or given) context into `headers` as traceparent (and tracestate)."""
    if _provider is not None:
        _PROPAGATOR.inject(headers, context)


def links_to(headers_of_each: Iterable[Mapping[str, str] | None]) -> list[Link]:
    """One link to each message's creation context (those without one are skipped)."""
    found = (span_context_of(headers) for headers in headers_of_each)
    return [Link(span_context) for span_context in found if span_context is not None]


# --- spans ---


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
    context: Context | None = None,
) -> Iterator[Span]:
    """A span made current for the block (with `context` as its parent context when given); an
    exception escaping it marks it failed. When tracing is off, the invalid span and no cost."""
    if _provider is None:
        yield trace.INVALID_SPAN
        return
    with _tracer.start_as_current_span(name, context, kind, attributes, links) as started:
        yield started


def start_span(
    name: str,
    *,
    context: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
) -> Span:
    """A span that is not made current, for the caller to end (ending the invalid span is free)."""
    if _provider is None:
        return trace.INVALID_SPAN
    return _tracer.start_span(name, context, kind, attributes, links)


def link_to(target: Span) -> list[Link]:
    """A link to `target`, when it is a real span."""
    span_context = target.get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def messaging_attributes(
    operation: str,
    destination: str,
    *,
    message_id: str | None = None,
    batch_size: int | None = None,
    operation_name: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The messaging.* attributes of the OpenTelemetry conventions for a NATS span: `operation` is
    the type (create, send, process, settle), `operation_name` orderflow's word for it (relay,
    dead_letter, replay, announce); `extra` adds orderflow.* attributes (order_id=...)."""
    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": operation,
        "messaging.destination.name": destination,
        **{f"orderflow.{name}": value for name, value in extra.items()},
    }
    if operation_name is not None:
        attributes["messaging.operation.name"] = operation_name
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    if batch_size is not None:
        attributes["messaging.batch.message_count"] = batch_size
    return attributes


def mark_failed(target: Span, error: BaseException | str) -> None:
    """Record that the work a span stands for failed (without ending it)."""
    if not target.is_recording():
        return
    if isinstance(error, BaseException):
        target.record_exception(error)
        target.set_attribute("error.type", type(error).__qualname__)
    target.set_status(Status(StatusCode.ERROR, str(error)))


# --- a consumer batch: which message is processed in which context ---


@contextmanager
def processing_messages(messages: Sequence[object], contexts: Sequence[Context]) -> Iterator[None]:
    """While a batch is handled: each message's own processing context, for `in_context_of`."""
    if _provider is None:
        yield
        return
    token = _message_contexts.set({id(message): found for message, found in zip(messages, contexts, strict=True)})
    try:
        yield
    finally:
        _message_contexts.reset(token)


@contextmanager
def in_context_of(message: object) -> Iterator[None]:
    """Make `message`'s processing span current for the block: what is done for that one message
    in a batch (its announcement, its dead letter, its log line) belongs to its trace."""
    contexts = _message_contexts.get()
    found = contexts.get(id(message)) if contexts is not None else None
    if found is None:
        yield
        return
    token = otel_context.attach(found)
    try:
        yield
    finally:
        otel_context.detach(token)
