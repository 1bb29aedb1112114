"""The consumer machinery every service shares (orderflow_kit.jetstream_consumer), with a
handler of the test's own: what it does when NATS is away at start, and with a PermanentFailure."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from datetime import UTC, datetime

import pytest
from nats.js import JetStreamContext

from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.batches import Received, Result
from orderflow_kit.consumer_settings import ConsumerSettings, ensure_consumer
from orderflow_kit.dead_letters import list_dead_letters
from orderflow_kit.failures import PermanentFailure
from orderflow_kit.faults import FAULTS_ENV
from orderflow_kit.jetstream_consumer import DurableConsumer, Receiver, consume
from orderflow_kit.settings import Settings
from tests.support.jetstream import consumer_exists, impatient, jetstream
from tests.support.outages import Outage
from tests.support.polling import eventually


class KitConsumer(ConsumerSettings):
    """A consumer of orders.created for the kit's tests; its events are anything with a ce-id."""

    stream = ORDERS_STREAM
    subject = ORDER_CREATED_SUBJECT


@pytest.fixture
def spec() -> KitConsumer:
    return impatient(KitConsumer, "kit")


@pytest.fixture
async def js(infra: Infrastructure, spec: KitConsumer) -> AsyncIterator[JetStreamContext]:
    async with jetstream(infra.nats_url, removing=spec.consumer) as connected:
        yield connected


def ce_id(headers: dict[str, str] | None, body: bytes) -> str:
    """The kit test's reader: a message's event is its ce-id."""
    return (headers or {})["ce-id"]


class Recorder:
    """A batch handler that records the ce-ids it handled, and refuses those in `refused` for good.
    A message in `poison` fails its whole batch, as one that aborts the batch's transaction would."""

    def __init__(self, refused: frozenset[str] = frozenset(), poison: frozenset[str] = frozenset()) -> None:
        self.handled: list[str] = []
        self.batches: list[list[str]] = []
        self._refused = refused
        self._poison = poison

    async def __call__(self, batch: Sequence[Received[str]]) -> list[Result]:
        event_ids = [received.event for received in batch]
        self.batches.append(event_ids)
        if self._poison.intersection(event_ids):
            raise RuntimeError("the batch's transaction was aborted")
        results: list[Result] = []
        for event_id in event_ids:
            if event_id in self._refused:
                results.append(PermanentFailure(f"event {event_id} can never be handled here"))
            else:
                self.handled.append(event_id)
                results.append("recorded")
        return results


def event() -> CloudEvent:
    return CloudEvent(id=str(uuid.uuid4()), type="tests.kit.v1", source="tests/kit", time=datetime.now(UTC), data=b"{}")


async def publish(js: JetStreamContext, published: CloudEvent) -> None:
    await js.publish(ORDER_CREATED_SUBJECT, published.data, headers=published.to_headers(), stream=ORDERS_STREAM)


def consuming(spec: KitConsumer, recorder: Recorder, nats_url: str) -> "asyncio.Task[None]":
    """The consumer, with `recorder` as its handler, run in this event loop until the task is cancelled."""
    consumer = DurableConsumer(spec, ce_id, lambda _: recorder)
    return asyncio.create_task(consume(consumer, Settings(nats_url=nats_url, shutdown_grace_seconds=1)))


async def test_a_consumer_started_while_nats_is_unreachable_waits_and_then_consumes(
    infra: Infrastructure, spec: KitConsumer, js: JetStreamContext
) -> None:
    """It must not fail (serve() would stop the whole service with it): inventory keeps serving
    reservations while NATS is away."""
    outage, through_outage = Outage.in_front_of(infra.nats_url, default_port=4222)
    recorder = Recorder()
    task = consuming(spec, recorder, through_outage)
    try:
        done, _ = await asyncio.wait({task}, timeout=1.5)
        assert not done, "the consumer gave up while NATS was unreachable"
        await outage.end()
        await eventually(lambda: consumer_exists(js, spec.consumer))
        sent = event()
        await publish(js, sent)
        await eventually(lambda: recorder.handled == [sent.id], what="the event handled")
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await outage.close()


async def test_a_permanent_failure_is_dead_lettered_at_once_with_its_class_and_the_next_event_is_handled(
    infra: Infrastructure, spec: KitConsumer, js: JetStreamContext
) -> None:
    refused, accepted = event(), event()
    recorder = Recorder(refused=frozenset({refused.id}))
    task = consuming(spec, recorder, infra.nats_url)
    try:
        await eventually(lambda: consumer_exists(js, spec.consumer))
        await publish(js, refused)
        await publish(js, accepted)
        await eventually(lambda: recorder.handled == [accepted.id], what="the next event handled")
        [letter] = await eventually(
            lambda: list_dead_letters(js, subject=f"dlq.{spec.consumer}.>"), lambda letters: len(letters) == 1
        )
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    assert (letter.event_id, letter.reason, letter.deliveries) == (refused.id, "permanent", "1")
    assert letter.error_class == "PermanentFailure"
    assert letter.error == f"PermanentFailure: event {refused.id} can never be handled here"


async def test_the_consumer_fail_first_flag_fails_the_first_deliveries_then_the_event_is_handled_once(
    infra: Infrastructure, spec: KitConsumer, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULTS_ENV, f"consumer_fail_first={spec.consumer}:{spec.max_deliver - 1}")
    recorder = Recorder()
    task = consuming(spec, recorder, infra.nats_url)
    try:
        await eventually(lambda: consumer_exists(js, spec.consumer))
        sent = event()
        await publish(js, sent)
        await eventually(lambda: recorder.handled == [sent.id], what="the event handled on its last delivery")
        info = await eventually(
            lambda: js.consumer_info(ORDERS_STREAM, spec.consumer), lambda info: info.num_ack_pending == 0
        )
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    assert info.delivered.consumer_seq == spec.max_deliver  # two failed deliveries, then the one handled
    assert await list_dead_letters(js, subject=f"dlq.{spec.consumer}.>") == []


@pytest.mark.parametrize("after_seconds", [0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2])
async def test_a_consumer_stopped_while_it_starts_stops_at_once(
    infra: Infrastructure, spec: KitConsumer, js: JetStreamContext, after_seconds: float
) -> None:
    """A SIGTERM can come while the consumer is still connecting and subscribing; nats-py swallows
    a cancellation in places, and the consumer must stop all the same, not wait forever. Which
    point of the start-up each delay hits depends on the machine: several are tried."""
    task = consuming(spec, Recorder(), infra.nats_url)
    await asyncio.sleep(after_seconds)
    task.cancel()

    done, _ = await asyncio.wait({task}, timeout=5)

    assert done, "the consumer did not stop"
    assert task.cancelled()


async def test_a_message_that_fails_its_whole_batch_is_found_and_fails_alone(
    spec: KitConsumer, js: JetStreamContext
) -> None:
    """One pull of five real messages is one batch; one of them aborts the batch (an unforeseen
    error), so each is handled again alone: the others are handled and acked, and only the poison
    one is left to be retried."""
    sent = [event() for _ in range(5)]
    poison = sent[2]
    recorder = Recorder(poison=frozenset({poison.id}))
    await ensure_consumer(js, spec)
    for published in sent:
        await publish(js, published)
    pull = await js.pull_subscribe_bind(consumer=spec.consumer, stream=ORDERS_STREAM)
    batch = await pull.fetch(len(sent), timeout=5)
    receiver = Receiver(spec, recorder, js)

    # As FastStream hands over the messages of one pull: each in a task of its own, all started together.
    await asyncio.gather(*(receiver.receive(ce_id(message.headers, message.data), message) for message in batch))

    assert recorder.batches[0] == [published.id for published in sent]
    assert recorder.batches[1:] == [[published.id] for published in sent]
    assert recorder.handled == [published.id for published in sent if published is not poison]
    # The others acked; the poison one NAKed, to come back after its delay. (The server applies
    # acks in the background: its count catches up within moments.)
    await eventually(lambda: js.consumer_info(ORDERS_STREAM, spec.consumer), lambda info: info.num_ack_pending == 1)
    assert await list_dead_letters(js, subject=f"dlq.{spec.consumer}.>") == []
