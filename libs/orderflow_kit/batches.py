"""One pull, one batch, one transaction, with the semantics of one message at a time.

FastStream hands the messages of one pull (`PullSub(batch_size=...)`: whatever the stream holds, up
to batch_size, as soon as it holds any) over one by one, each in a task of its own,
all started together. `PullBatches` gathers them: the first to arrive lets the event loop turn until
a turn brings no sibling (they all run the same steps to get here), then runs them as one batch, and
each message's task gets its own result back. Nothing ever waits for a batch to fill.

(FastStream's own `PullSub(batch=True)` keeps pulling until the batch is full or its timeout has
passed: a lone message would wait for the whole timeout, and with a short one, nats-py 2.16 loses
deliveries to redelivery after ack_wait.)

`BatchRunner` runs the service's handler on a batch, bounded by handler_timeout_seconds. The
handler does the whole batch in one transaction and returns one result per message: its outcome,
or the exception that message failed with. When the handler raises instead, the whole batch
failed. A dependency outage (the database is away) is every message's failure: each is retried as
it would have been alone. Anything else may be one message's fault (a poison message aborting the
transaction, or hanging it): each message is then handled again alone, so a poison message fails
alone and its neighbours go through.

Traced, when on: the batch gets a span of its own that links every message, and each message's
process span (FastStream's) links back to it; while the handler runs, `tracing.in_context_of(one)`
makes one message's process span current (for what the handler does for that message alone)."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, NamedTuple, TypeVar

from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind
from prometheus_client import Histogram

from orderflow_kit import tracing
from orderflow_kit.consumer_settings import ConsumerSettings
from orderflow_kit.failures import Failure, classify
from orderflow_kit.metrics import DURATION_BUCKETS, observe_seconds

T = TypeVar("T")
Item = TypeVar("Item")
R = TypeVar("R")

HANDLER_DURATION = Histogram(
    "orderflow_consumer_handler_duration_seconds",
    "Time the handler took for one batch (one transaction), by consumer",
    ["consumer"],
    buckets=DURATION_BUCKETS,
)

# One message's result: its outcome for the log line ("awarded", "duplicate", ...), or the
# exception it failed with.
Result = str | Exception


class Received(NamedTuple, Generic[T]):
    """A message as the handler gets it: its event, read, and the headers it came with (its
    request id and trace context go on to what the handler publishes about it)."""

    event: T
    headers: Mapping[str, str]


# Handles a batch (in stream order) and returns one result per message, in the same order.
# Raising fails the whole batch: see BatchRunner.
BatchHandler = Callable[[Sequence[Received[T]]], Awaitable[Sequence[Result]]]


class Delivery(NamedTuple, Generic[T]):
    """One message of a batch: what the handler gets, the broker's message, and (tracing on) the
    message's processing context, its process span."""

    received: Received[T]
    message: Msg
    context: Context | None


class PullBatches(Generic[Item, R]):
    """Runs the items added while the event loop turns as one batch (see the module docstring)."""

    def __init__(self, run: Callable[[list[Item]], Awaitable[list[R]]]) -> None:
        self._run = run
        self._joining: list[Item] | None = None
        self._results: asyncio.Future[list[R] | None] | None = None

    async def add(self, item: Item) -> R | None:
        """`item`'s result once its batch has run; None if it never ran (the consumer stopped)."""
        if self._joining is not None and self._results is not None:
            index = len(self._joining)
            self._joining.append(item)
            results = await asyncio.shield(self._results)
            return None if results is None else results[index]
        self._joining = batch = [item]
        self._results = future = asyncio.get_running_loop().create_future()
        try:
            joined = 0
            while joined < len(batch):  # the other messages of the same pull join meanwhile
                joined = len(batch)
                await asyncio.sleep(0)
            self._joining = self._results = None
            results = await self._run(batch)
        except BaseException:
            if self._results is future:
                self._joining = self._results = None
            future.set_result(None)
            raise
        future.set_result(results)
        return results[0]


class BatchRunner(Generic[T]):
    """Runs the handler on a batch: one result per message (see the module docstring)."""

    def __init__(self, settings: ConsumerSettings, handler: BatchHandler[T]) -> None:
        self._settings = settings
        self._handler = handler

    async def handle(self, batch: list[Delivery[T]]) -> list[Result]:
        contexts = [one.context for one in batch if one.context is not None]
        with (
            self._batch_span(batch) as batch_span,
            tracing.processing_messages([one.received for one in batch if one.context is not None], contexts),
        ):
            for context in contexts:
                trace.get_current_span(context).add_link(batch_span.get_span_context())
            return await self._run(batch)

    def _batch_span(self, batch: list[Delivery[T]]) -> AbstractContextManager[Span]:
        """The batch's span: a root of its own (the batch's transaction serves many orders and
        belongs to none of their traces) that links every message it carries."""
        if not tracing.enabled():
            return nullcontext(trace.INVALID_SPAN)
        return tracing.span(
            f"process {self._settings.subject}",
            kind=SpanKind.CONSUMER,
            context=Context(),
            links=tracing.links_to(one.message.headers for one in batch),
            attributes=tracing.messaging_attributes(
                "process",
                self._settings.subject,
                batch_size=len(batch),
                consumer=self._settings.consumer,
            ),
        )

    async def _run(self, batch: list[Delivery[T]]) -> list[Result]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.handler_timeout_seconds):
                results = list(await self._handler([one.received for one in batch]))
        except Exception as error:
            if len(batch) == 1:
                return [error]
            if classify(error) is Failure.DEPENDENCY and not isinstance(error, TimeoutError):
                return [error] * len(batch)
            return await self._run_alone(batch)
        observe_seconds(HANDLER_DURATION, time.perf_counter() - started, self._settings.consumer)
        if len(results) != len(batch):
            raise RuntimeError(f"the handler answered {len(results)} results for {len(batch)} messages")
        return results

    async def _run_alone(self, batch: list[Delivery[T]]) -> list[Result]:
        """Find the message that failed its batch: handle each alone, telling the broker the others
        are still in progress, so that handling them one by one never outlasts their ack_wait."""
        results: list[Result] = []
        for index, one in enumerate(batch):
            await asyncio.gather(*(waiting.message.in_progress() for waiting in batch[index:]))
            results.extend(await self._run([one]))
        return results
