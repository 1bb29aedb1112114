"""How every orderflow gRPC server runs: health and reflection services, one log line per call
with the request id and its duration measured (by method and status code), ServiceError turned
into a rich status, a graceful stop on SIGTERM, and TLS when configured (orderflow_kit.grpc_tls)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
import structlog
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import Histogram

from orderflow_kit.errors import ServiceError, invalid_argument
from orderflow_kit.grpc_keepalive import DEFAULT_KEEPALIVE, Keepalive
from orderflow_kit.metrics import DURATION_BUCKETS, observe_seconds
from orderflow_kit.readiness import Dependency, Readiness
from orderflow_kit.request_context import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    new_request_id,
    request_id_var,
    traceparent_var,
)

ERROR_DOMAIN = "orderflow"
log = structlog.get_logger()
Context = grpc.aio.ServicerContext[Any, Any]

# Its _count is the number of calls: by method (/package.Service/Method) and status code (OK, NOT_FOUND...).
GRPC_SERVER_HANDLING = Histogram(
    "orderflow_grpc_server_handling_seconds",
    "Time a gRPC server took to answer a call, by method and status code",
    ["method", "code"],
    buckets=DURATION_BUCKETS,
)


@dataclass(frozen=True)
class GrpcService:
    """A servicer and what registers it: `add(servicer, server)` is the generated add_*_to_server."""

    name: str
    servicer: object
    add: Callable[[Any, grpc.aio.Server], None]


def to_rpc_status(error: ServiceError) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=error.code, domain=ERROR_DOMAIN, metadata=error.metadata)
    status = status_pb2.Status(code=getattr(code_pb2, error.kind.value), message=error.detail)
    status.details.add().Pack(info)
    return status


class _CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Binds the caller's request id, logs one line per call, and maps ServiceError to a status,
    for all four call types: unary, client streaming, server streaming and bidirectional (a
    streaming method's line comes when its stream ends, with the whole call's duration; a
    ServiceError raised after responses were sent still ends the call with its status).

    It also decodes the requests itself: grpc would answer bytes that are not the method's message
    (corrupt, or a string that is not UTF-8) with UNKNOWN and the parser's exception text; a
    client's mistake is INVALID_ARGUMENT. In a stream, each message is decoded as the servicer
    reads it.

    A method's wrapped handler is made at its first call and kept: the services are registered
    before the server starts, so every later call of the method gets the same handler, and a call
    pays for neither the lookup nor new closures."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            handler = await continuation(handler_call_details)
            if handler is None:  # no such method: nothing to keep, grpc answers UNIMPLEMENTED
                return handler
            handler = self._handlers[method] = handler if method.startswith("/grpc.") else _observed(method, handler)
        return handler


def _observed(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with its requests decoded here and each call run by `_observe`."""
    deserialize = handler.request_deserializer

    def decoded(raw: bytes) -> Any:
        if deserialize is None:
            return raw
        try:
            return deserialize(raw)
        except DecodeError:
            raise invalid_argument(f"the request body is not a valid message for {method}") from None

    async def decoded_each(raw_messages: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        async for raw in raw_messages:
            yield decoded(raw)

    # grpc-stubs types handlers as synchronous; on a grpc.aio server they are coroutines.
    if handler.unary_unary is not None:
        unary = cast("Callable[[Any, Context], Awaitable[Any]]", handler.unary_unary)

        async def unary_call(raw: bytes, context: Context) -> Any:
            return await _observe(method, lambda: unary(decoded(raw), context), context)

        return grpc.unary_unary_rpc_method_handler(unary_call, response_serializer=handler.response_serializer)
    if handler.stream_unary is not None:
        streaming = cast("Callable[[AsyncIterator[Any], Context], Awaitable[Any]]", handler.stream_unary)

        async def stream_call(raw_messages: AsyncIterator[bytes], context: Context) -> Any:
            return await _observe(method, lambda: streaming(decoded_each(raw_messages), context), context)

        return grpc.stream_unary_rpc_method_handler(stream_call, response_serializer=handler.response_serializer)
    if handler.unary_stream is not None:
        responding = cast("Callable[[Any, Context], AsyncIterator[Any]]", handler.unary_stream)

        # grpc.aio serves a streaming method only if it is an async generator function itself.
        async def unary_stream_call(raw: bytes, context: Context) -> AsyncIterator[Any]:
            async for response in _observe_stream(method, lambda: responding(decoded(raw), context), context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream_call, response_serializer=handler.response_serializer)
    if handler.stream_stream is not None:
        both = cast("Callable[[AsyncIterator[Any], Context], AsyncIterator[Any]]", handler.stream_stream)

        async def stream_stream_call(raw_messages: AsyncIterator[bytes], context: Context) -> AsyncIterator[Any]:
            async for response in _observe_stream(method, lambda: both(decoded_each(raw_messages), context), context):
                yield response

        return grpc.stream_stream_rpc_method_handler(
            stream_stream_call, response_serializer=handler.response_serializer
        )
    return handler


async def _observe(method: str, call: Callable[[], Awaitable[Any]], context: Context) -> Any:
    """Run one call as `_observed_call` says."""
    async with _observed_call(method, context):
        return await call()


async def _observe_stream(method: str, call: Callable[[], AsyncIterator[Any]], context: Context) -> AsyncIterator[Any]:
    """`_observe` for a method that streams its responses: each is passed on as the servicer
    yields it (grpc.aio writes it, waiting while the client's flow-control window is full)."""
    async with _observed_call(method, context):
        async for response in call():
            yield response


@contextlib.asynccontextmanager
async def _observed_call(method: str, context: Context) -> AsyncIterator[None]:
    """One call with the caller's request id and trace context bound; its duration measured and
    one log line; a rich status on a ServiceError. grpc.aio serves each call in a task of its own,
    on a copy of the context: whatever the call binds (these variables, structlog's) ends with it,
    unreset."""
    _bind_caller(context)
    started = time.perf_counter()
    outcome = "OK"
    error_code: str | None = None
    try:
        yield
    except ServiceError as error:
        outcome, error_code = error.kind.value, error.code
        status = rpc_status.to_status(to_rpc_status(error))
        await context.abort(status.code, status.details, status.trailing_metadata)
    except (asyncio.CancelledError, GeneratorExit):
        outcome = "CANCELLED"
        raise
    except Exception:
        outcome = "INTERNAL"
        log.exception("rpc failed", method=method)
        raise
    finally:
        elapsed = time.perf_counter() - started
        observe_seconds(GRPC_SERVER_HANDLING, elapsed, method, outcome)
        elapsed_ms = round(elapsed * 1000, 1)
        if error_code is None:
            log.info("rpc", method=method, code=outcome, ms=elapsed_ms)
        else:
            log.info("rpc", method=method, code=outcome, ms=elapsed_ms, error_code=error_code)


def _bind_caller(context: Context) -> None:
    incoming = dict(context.invocation_metadata() or ())
    request_id_var.set(str(incoming.get(REQUEST_ID_HEADER) or new_request_id()))
    traceparent_var.set(incoming.get(TRACEPARENT_HEADER))


async def serve(
    *,
    host: str,
    port: int,
    services: Sequence[GrpcService],
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    dependencies: Sequence[Dependency] = (),
    grace_seconds: float = 10.0,
    stop: asyncio.Event | None = None,
    credentials: grpc.ServerCredentials | None = None,
    keepalive: Keepalive = DEFAULT_KEEPALIVE,
    on_stopping: Sequence[Callable[[], None]] = (),
) -> None:
    """Serve until SIGTERM/SIGINT, then stop taking calls, let in-flight ones finish and return.

    `background` coroutines (an outbox relay, a consumer) run beside the server; if one of them
    fails the process stops with that error, so a supervisor can restart it. `dependencies` are
    watched (orderflow_kit.readiness): the health status is NOT_SERVING while a required one is
    down. Setting `stop` ends it like a signal does: how a test stops a server it runs in-process.
    With `credentials` (orderflow_kit.grpc_tls.server_credentials) the port serves TLS only;
    `keepalive` (orderflow_kit.grpc_keepalive) pings and ages out its connections. `on_stopping`
    callbacks run when stopping begins, before the grace: what ends long-lived response streams
    (a watch), which would otherwise hold the stop for the whole grace."""
    server = grpc.aio.server(interceptors=[_CallInterceptor()], options=keepalive.server_options())
    for service in services:
        service.add(service.servicer, server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [service.name for service in services]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    if credentials is None:
        server.add_insecure_port(f"{host}:{port}")
    else:
        server.add_secure_port(f"{host}:{port}", credentials)
    readiness = Readiness(health_servicer, ["", *names], dependencies)
    await readiness.check()  # the first answer to a health check is already the true one
    await server.start()

    stopping = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    watchers = [readiness.watch_dependencies] if dependencies else []
    tasks = [asyncio.create_task(run(), name=_task_name(run)) for run in [*background, *watchers]]
    log.info("serving", port=port, services=names, tls=credentials is not None)

    stop_waiter = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    failed = next((task for task in done if task is not stop_waiter), None)
    log.info("stopping", reason="signal" if failed is None else f"{failed.get_name()} ended")
    await health_servicer.enter_graceful_shutdown()
    for stopping_callback in on_stopping:
        stopping_callback()
    await server.stop(grace_seconds)
    stop_waiter.cancel()
    for task in tasks:
        task.cancel()
    # A library that swallows a cancellation must not hang the shutdown forever.
    if tasks:
        _, stuck = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in stuck:
            log.warning("background task did not stop in time", task=task.get_name())
    if failed is not None:
        failed.result()
        raise RuntimeError(f"background task {failed.get_name()} ended unexpectedly")
    log.info("stopped")


def _task_name(run: Callable[[], Coroutine[Any, Any, None]]) -> str:
    """The name a log line gives a background task: its function's, also through a partial."""
    function = run.func if isinstance(run, functools.partial) else run
    return getattr(function, "__name__", "background")
