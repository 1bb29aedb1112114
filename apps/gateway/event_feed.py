"""What happens to orders, read live from JetStream for one client: the feed behind the gateway's
Server-Sent Events (gateway.live_events; docs/patterns/live-events.md).

Two streams feed it: ORDERS (`orders.created`, `orders.stock_confirmed`, `orders.points_awarded`) and
DEAD_LETTERS (`dlq.>`).
Each feed reads both with readers of its own (orderflow_kit.stream_reader: an ephemeral consumer
each, in stream order, each message once, made again from where it was after a broker restart or
an outage), and merges them in the order the broker stored the messages (see EventFeed). Closing
the feed deletes both consumers.

A feed has a Position: the last sequence of each stream it has gone past, whether the message
there was an event for this client or not (0: none yet). It is each event's SSE id,
`<ORDERS sequence>.<DEAD_LETTERS sequence>`; a feed opened at a position resumes right after it
in both streams. Without one, a feed of every order starts at the streams' ends (what comes
next), and a feed of one order starts by time, a little before the order was created, so it never
reads the streams from their beginning.

Copies of an ORDERS event (the same ce-id: a relay's retry after the duplicate window, a replay
that makes loyalty announce the points again) are passed on once per feed. Dead letters are each
an occurrence of their own (two consumers may give up on the same event) and are all passed on."""

import asyncio
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import nats.errors
import pydantic
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from orderflow_contracts.cloudevents import MalformedEvent
from orderflow_contracts.events import read_order_created, read_points_awarded, read_stock_confirmed
from orderflow_contracts.streams import (
    DEAD_LETTER_STREAM,
    ORDER_CREATED_SUBJECT,
    ORDERS_STREAM,
    POINTS_AWARDED_SUBJECT,
    STOCK_CONFIRMED_SUBJECT,
)
from orderflow_kit import untrusted_json
from orderflow_kit.dead_letters import ALL_DEAD_LETTERS, DeadLetter, delivered_dead_letter
from orderflow_kit.stream_reader import StreamReader

log = structlog.get_logger()

ORDER_CREATED: Final = "order.created"
STOCK_CONFIRMED: Final = "stock.confirmed"
POINTS_AWARDED: Final = "points.awarded"
ORDER_DEAD_LETTERED: Final = "order.dead_lettered"

# A sequence as an event id: decimal, no leading zero, at most 19 digits, so always below the
# largest JetStream sequence (2^64 - 1, 20 digits), which no stream comes near.
_SEQUENCE: Final = "(0|[1-9][0-9]{0,18})"
# Exactly the event ids Position.parse accepts, for the OpenAPI document's Last-Event-ID.
EVENT_ID_PATTERN: Final = rf"^{_SEQUENCE}\.{_SEQUENCE}$"
_POSITION: Final = re.compile(EVENT_ID_PATTERN)
# Messages read ahead of the client, per stream; beyond this a reader stops pulling.
READ_AHEAD: Final = 64
# ce-ids remembered per feed to pass each ORDERS event on once.
REMEMBERED_EVENTS: Final = 10_000
# Where in the consumer's description a feed says whose it is.
CONSUMER_DESCRIPTION: Final = "orderflow gateway live events, request {request_id}"


class InvalidPosition(ValueError):
    """Not a position this API gave as an event id."""


@dataclass(frozen=True)
class Position:
    """The last sequence of ORDERS and of DEAD_LETTERS a feed has gone past; 0: none yet."""

    orders: int = 0
    dead_letters: int = 0

    @classmethod
    def parse(cls, text: str) -> "Position":
        match = _POSITION.fullmatch(text)
        if match is None:
            raise InvalidPosition(
                "expected <ORDERS sequence>.<DEAD_LETTERS sequence>, two unsigned integers of at most 19 digits "
                "without leading zeros"
            )
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.orders}.{self.dead_letters}"


@dataclass(frozen=True)
class LiveEvent:
    name: str  # order.created, stock.confirmed, points.awarded, order.dead_lettered
    order_id: str | None
    data: dict[str, Any]
    # Copies with the same key are the same event (the CloudEvent's ce-id); None: never a copy.
    dedupe_key: str | None = None


@dataclass(frozen=True)
class FeedScope:
    """Which events a feed passes on, and where it starts without a position."""

    order_id: str | None  # canonical UUID text; None: every order's
    # Where a stream the position says nothing about (0) is read from; None: its end when the feed opens.
    since: datetime | None
    # Dead letters' error text is for operators: it may name internals.
    with_errors: bool

    def wants(self, event: LiveEvent) -> bool:
        return self.order_id is None or event.order_id == self.order_id


def order_event(
    subject: str, headers: dict[str, str] | None, body: bytes, published_at: datetime | None = None
) -> LiveEvent | None:
    """The live event for an ORDERS message; None for a subject no feed shows, or an event that
    cannot be read (its consumers dead-letter it, which the feed shows). An order.created says
    when the broker stored it (`published_at`), when known: the order's step into the pipeline."""
    try:
        if subject == ORDER_CREATED_SUBJECT:
            created = read_order_created(headers, body)
            data = {"event_id": created.event_id, **created.order.model_dump(mode="json")}
            if published_at is not None:
                data["published_at"] = published_at.isoformat()
            return LiveEvent(ORDER_CREATED, str(created.order.order_id), data, created.event_id)
        if subject == STOCK_CONFIRMED_SUBJECT:
            confirmed = read_stock_confirmed(headers, body)
            data = {"event_id": confirmed.event_id, **confirmed.confirmation.model_dump(mode="json")}
            return LiveEvent(STOCK_CONFIRMED, str(confirmed.confirmation.order_id), data, confirmed.event_id)
        if subject == POINTS_AWARDED_SUBJECT:
            awarded = read_points_awarded(headers, body)
            data = {"event_id": awarded.event_id, **awarded.award.model_dump(mode="json")}
            return LiveEvent(POINTS_AWARDED, str(awarded.award.order_id), data, awarded.event_id)
    except (MalformedEvent, pydantic.ValidationError) as error:
        log.debug("unreadable event skipped", subject=subject, error=str(error))
    return None


def dead_letter_event(letter: DeadLetter, *, with_errors: bool) -> LiveEvent:
    """A dead letter keeps the original's headers and body: the order id is its `ce-subject` (the
    producers set it to the order id), else the body's `order_id` when the body is readable."""
    payload = _json_object(letter.body)
    order_id = _uuid(letter.headers.get("ce-subject")) or _uuid(payload.get("order_id"))
    customer_id = payload.get("customer_id")
    data: dict[str, Any] = {
        "event_id": letter.event_id,
        "event_type": letter.headers.get("ce-type"),
        "order_id": order_id,
        "customer_id": customer_id if isinstance(customer_id, str) else None,
        "consumer": letter.consumer,
        "original_subject": letter.original_subject,
        "reason": letter.reason,
        "dead_letter_sequence": letter.sequence,
        "dead_lettered_at": letter.dead_lettered_at,
    }
    if with_errors:
        data |= {"error_class": letter.error_class, "error": letter.error}
    return LiveEvent(ORDER_DEAD_LETTERED, order_id, data)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = untrusted_json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _uuid(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class _Source:
    stream: str
    subjects: tuple[str, ...]


_ORDERS: Final = _Source(ORDERS_STREAM, (ORDER_CREATED_SUBJECT, STOCK_CONFIRMED_SUBJECT, POINTS_AWARDED_SUBJECT))
_DEAD_LETTERS: Final = _Source(DEAD_LETTER_STREAM, (ALL_DEAD_LETTERS,))


class _CaughtUp:
    """Put after a reader's messages when it has given out all the stream held."""


_CAUGHT_UP: Final = _CaughtUp()
_Arrival = Msg | _CaughtUp | Exception


class EventFeed:
    """One client's feed. Open it, iterate `events()`, close it (always: it owns two consumers).

    Each stream's reader runs in a task of its own, READ_AHEAD messages ahead at most. `events`
    merges them: of the two streams' next messages, the one the broker stored first; and when one
    stream has no next message, the other's only once that one has caught up (it may still be
    reading older messages). So a feed that resumes from far back gives both streams' messages in
    the order they were stored, and a dead letter normally comes after the event it is about (not
    while a reader is replacing its consumer: then the order is best effort; each stream's position,
    and so resuming, is exact either way)."""

    def __init__(self, scope: FeedScope, position: Position, readers: dict[_Source, StreamReader]) -> None:
        self._scope = scope
        self.position = position
        self._readers = readers
        self._arrivals: dict[_Source, asyncio.Queue[_Arrival]] = {
            source: asyncio.Queue(READ_AHEAD) for source in readers
        }
        self._arrived = asyncio.Event()
        self._reading: list[asyncio.Task[None]] = []
        self._seen: OrderedDict[str, None] = OrderedDict()

    @classmethod
    async def open(
        cls, js: JetStreamContext, scope: FeedScope, position: Position | None, *, request_id: str
    ) -> "EventFeed":
        """Read both streams from `position` (see the module docstring for where a feed starts
        without one). Raises the broker's errors; nothing is left behind when it does."""
        if position is None:
            position = Position() if scope.since is not None else await _stream_ends(js)
        description = CONSUMER_DESCRIPTION.format(request_id=request_id)
        feed = cls(
            scope,
            position,
            {
                source: StreamReader(
                    js,
                    source.stream,
                    list(source.subjects),
                    after=after,
                    since=scope.since if after == 0 else None,
                    description=description,
                )
                for source, after in ((_ORDERS, position.orders), (_DEAD_LETTERS, position.dead_letters))
            },
        )
        try:
            for reader in feed._readers.values():
                await reader.open()
        except BaseException:
            await feed.close()
            raise
        feed._reading = [asyncio.create_task(feed._read(source, reader)) for source, reader in feed._readers.items()]
        return feed

    async def events(self) -> AsyncIterator[tuple[LiveEvent, Position]]:
        """This scope's events, each with the position right after it; ends when the broker
        connection closes for good (the gateway is stopping)."""
        heads: dict[_Source, Msg | None] = dict.fromkeys(self._readers)
        caught_up = dict.fromkeys(self._readers, False)
        while True:
            self._arrived.clear()
            for source, arrivals in self._arrivals.items():
                while heads[source] is None and not arrivals.empty():
                    arrival = arrivals.get_nowait()
                    if isinstance(arrival, nats.errors.ConnectionClosedError):
                        log.info("live event feed ended: the broker connection closed")
                        return
                    if isinstance(arrival, Exception):
                        raise arrival
                    caught_up[source] = arrival is _CAUGHT_UP
                    heads[source] = None if isinstance(arrival, _CaughtUp) else arrival
            ready = {source: head for source, head in heads.items() if head is not None}
            if not ready or any(heads[source] is None and not caught_up[source] for source in heads):
                await self._arrived.wait()
                continue
            source = min(ready, key=lambda source: ready[source].metadata.timestamp)
            heads[source] = None
            event = self._event(source, ready[source])
            if event is not None and self._scope.wants(event) and self._first_time(event):
                yield event, self.position

    async def close(self) -> None:
        """Stop reading and delete the consumers."""
        for reading in self._reading:
            reading.cancel()
        await asyncio.gather(*self._reading, return_exceptions=True)
        await asyncio.gather(*(reader.close() for reader in self._readers.values()))

    async def _read(self, source: _Source, reader: StreamReader) -> None:
        """Pass on what arrives, and when the reader has caught up; a failure too, for `events` to end with."""
        said_caught_up = False
        try:
            if reader.caught_up:
                await self._arrive(source, _CAUGHT_UP)
                said_caught_up = True
            async for batch in reader.batches():
                for message in batch:
                    await self._arrive(source, message)
                    said_caught_up = False
                if reader.caught_up and not said_caught_up:
                    await self._arrive(source, _CAUGHT_UP)
                    said_caught_up = True
        except Exception as error:
            await self._arrive(source, error)

    async def _arrive(self, source: _Source, arrival: _Arrival) -> None:
        await self._arrivals[source].put(arrival)
        self._arrived.set()

    def _event(self, source: _Source, message: Msg) -> LiveEvent | None:
        sequence = message.metadata.sequence.stream
        if source is _ORDERS:
            self.position = Position(sequence, self.position.dead_letters)
            return order_event(message.subject, message.headers, message.data, message.metadata.timestamp)
        self.position = Position(self.position.orders, sequence)
        return dead_letter_event(delivered_dead_letter(message), with_errors=self._scope.with_errors)

    def _first_time(self, event: LiveEvent) -> bool:
        key = event.dedupe_key
        if key is None:
            return True
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > REMEMBERED_EVENTS:
            self._seen.popitem(last=False)
        return True


async def _stream_ends(js: JetStreamContext) -> Position:
    orders, dead_letters = await asyncio.gather(js.stream_info(ORDERS_STREAM), js.stream_info(DEAD_LETTER_STREAM))
    return Position(orders.state.last_seq, dead_letters.state.last_seq)
