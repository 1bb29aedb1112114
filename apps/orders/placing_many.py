"""Placing many orders from one stream (PlaceOrders, a bulk import; docs/patterns/streaming.md).

Each request is placed exactly as CreateOrder places one (`Orders.place`, placing_orders.py), with
its client_request_id, which the import must give: running an import again answers the orders it
placed the first time and places none twice.

Answers come in request order, each as soon as it and every request before it are answered, while
later requests are still arriving. At most `concurrency` placements run at once, and at most
`window` requests are read ahead of the answer the client is waiting for: past that, no request is
read until the oldest is answered, so HTTP/2 flow control slows a client that sends faster than
orders can be placed, and memory holds `window` requests at most, however long the import.

One request's refusal (a validation error, an unknown SKU, no stock left) is its answer; the
stream goes on. A client that goes away (cancels) ends the stream: a request not started is never
placed, and a placement already started runs to its end (Orders.place shields it), so no stock
is left reserved for an order that was not recorded."""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from orderflow_kit.errors import ServiceError, invalid_argument
from orders.placing_orders import Orders, PlacedOrder, RequestedItem

log = structlog.get_logger()

DEFAULT_CONCURRENCY: Final = 4
DEFAULT_WINDOW: Final = 16


@dataclass(frozen=True)
class OrderRequest:
    customer_id: str
    items: Sequence[RequestedItem]
    client_request_id: str


@dataclass(frozen=True)
class Refusal:
    """What CreateOrder would have failed with: the status kind and the stable code."""

    kind: str
    code: str
    detail: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class Answer:
    index: int
    client_request_id: str
    order: PlacedOrder | None = None
    refusal: Refusal | None = None


_END: Final = object()


async def place_many(
    orders: Orders,
    requests: AsyncIterable[OrderRequest],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    window: int = DEFAULT_WINDOW,
    time_remaining: Callable[[], float | None] = lambda: None,
) -> AsyncGenerator[Answer, None]:
    """One Answer per request, in request order (see the module doc). `time_remaining`: the
    caller's deadline, asked as each placement starts (None: it has none)."""
    running = asyncio.Semaphore(concurrency)
    read_ahead = asyncio.Semaphore(window)
    # Placements in request order, then _END or the error that broke the request stream. Never
    # longer than the window: a request is read only once `read_ahead` lets it.
    placements: asyncio.Queue[asyncio.Task[Answer] | BaseException | object] = asyncio.Queue()

    async def place(index: int, request: OrderRequest) -> Answer:
        async with running:
            try:
                if not request.client_request_id:
                    raise invalid_argument(
                        "client_request_id is required in a bulk import: it keeps an import run again from "
                        "placing an order twice",
                        field="client_request_id",
                    )
                placed = await orders.place(
                    request.customer_id,
                    request.items,
                    client_request_id=request.client_request_id,
                    caller_time_remaining=time_remaining(),
                )
            except ServiceError as error:
                refusal = Refusal(error.kind.value, error.code, error.detail, dict(error.metadata))
                return Answer(index, request.client_request_id, refusal=refusal)
            return Answer(index, request.client_request_id, order=placed)

    async def read_requests() -> None:
        try:
            index = 0
            iterator = aiter(requests)
            while True:
                await read_ahead.acquire()  # before reading: the window bounds what is read, not only what runs
                try:
                    request = await anext(iterator)
                except StopAsyncIteration:
                    break
                placements.put_nowait(asyncio.create_task(place(index, request)))
                index += 1
        except Exception as error:  # the client's stream broke, or sent what cannot be read
            placements.put_nowait(error)
        else:
            placements.put_nowait(_END)

    reader = asyncio.create_task(read_requests())
    try:
        while (placement := await placements.get()) is not _END:
            if isinstance(placement, BaseException):
                raise placement
            assert isinstance(placement, asyncio.Task)
            answer = await placement
            read_ahead.release()
            yield answer
    finally:
        reader.cancel()
        while not placements.empty():
            left = placements.get_nowait()
            if isinstance(left, asyncio.Task):
                left.cancel()  # not started: never placed; past its reservation: runs on, shielded
        await asyncio.gather(reader, return_exceptions=True)
