"""The kit's JetStream fetch (orderflow_kit.pull_requests) against a real nats-server: a message is
handed over as soon as it is stored, even when a request of an earlier fetch is still on the server,
and each fetch sends one `no_wait` request and no other kind."""

import asyncio
import uuid
from asyncio import Task
from collections.abc import AsyncIterator
from functools import partial

import nats
import nats.errors
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from orderflow_devstack.infra import Infrastructure
from orderflow_kit.pull_requests import Fetch, fetch_as_soon_as_stored
from tests.support.polling import eventually

# Far longer than a delivery takes: a fetch that returns within it did not wait for its batch to fill.
PATIENT_SECONDS = 30.0


@pytest.fixture
async def connection(infra: Infrastructure) -> AsyncIterator[Client]:
    connected = await nats.connect(infra.nats_url)
    yield connected
    await connected.close()


@pytest.fixture
async def stream(connection: Client) -> AsyncIterator[tuple[JetStreamContext, str, str]]:
    """A stream and a durable pull consumer of the test's own: (js, subject, consumer)."""
    js = connection.jetstream()
    name = f"PULLTEST_{uuid.uuid4().hex[:10]}"
    subject = f"pulltest.{name}"
    await js.add_stream(StreamConfig(name=name, subjects=[subject], storage=StorageType.MEMORY))
    await js.add_consumer(name, ConsumerConfig(durable_name="puller", ack_policy=AckPolicy.EXPLICIT))
    yield js, subject, name
    await js.delete_stream(name)


@pytest.fixture
async def fetch(stream: tuple[JetStreamContext, str, str]) -> Fetch:
    js, _, name = stream
    subscription = await js.pull_subscribe_bind("puller", stream=name)
    return fetch_as_soon_as_stored(subscription)


async def waiting_requests(js: JetStreamContext, stream_name: str) -> int:
    return (await js.consumer_info(stream_name, "puller")).num_waiting or 0


def bodies(messages: list[Msg]) -> list[bytes]:
    return [message.data for message in messages]


async def waiting_fetch(
    fetch: Fetch, js: JetStreamContext, stream_name: str, requests_on_server: int = 1
) -> Task[list[Msg]]:
    """A patient fetch, started, once the server holds `requests_on_server` pull requests."""
    fetching = asyncio.create_task(fetch(batch=100, timeout=PATIENT_SECONDS))
    await eventually(
        lambda: waiting_requests(js, stream_name),
        lambda waiting: waiting >= requests_on_server,
        what=f"{requests_on_server} pull request(s) on the server",
    )
    return fetching


async def handed_over(fetching: Task[list[Msg]]) -> list[bytes]:
    """What `fetching` returned, well before its own time was up."""
    return bodies(await asyncio.wait_for(fetching, PATIENT_SECONDS / 3))


@pytest.mark.parametrize("abandoned_fetches", [0, 1], ids=["alone", "after-an-abandoned-fetch"])
async def test_a_message_stored_while_a_fetch_waits_is_handed_over_without_waiting_for_the_batch(
    stream: tuple[JetStreamContext, str, str], fetch: Fetch, abandoned_fetches: int
) -> None:
    """Also when an abandoned fetch's request is still on the server: the oldest, it takes the message."""
    js, subject, name = stream
    for _ in range(abandoned_fetches):
        (await waiting_fetch(fetch, js, name)).cancel()
    fetching = await waiting_fetch(fetch, js, name, requests_on_server=abandoned_fetches + 1)

    await js.publish(subject, b"lone")

    assert await handed_over(fetching) == [b"lone"]


async def test_stored_messages_come_a_batch_at_a_time_each_once(
    stream: tuple[JetStreamContext, str, str], fetch: Fetch
) -> None:
    js, subject, _ = stream
    for number in range(5):
        await js.publish(subject, b"%d" % number)

    first = await fetch(batch=2, timeout=PATIENT_SECONDS)
    rest = await handed_over(asyncio.create_task(fetch(batch=100, timeout=PATIENT_SECONDS)))

    assert bodies(first) == [b"0", b"1"]
    assert rest == [b"2", b"3", b"4"]


async def test_a_fetch_with_nothing_to_deliver_times_out_as_nats_py_does(fetch: Fetch) -> None:
    with pytest.raises(nats.errors.TimeoutError):
        await fetch(batch=100, timeout=0.5)


async def test_every_fetch_sends_one_no_wait_request_and_no_lingering_one(
    connection: Client, stream: tuple[JetStreamContext, str, str], fetch: Fetch
) -> None:
    js, subject, name = stream
    requests: list[dict[str, object]] = []
    watching = await connection.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{name}.puller", cb=partial(_record, requests))
    await connection.flush()

    for _ in range(3):
        with pytest.raises(nats.errors.TimeoutError):
            await fetch(batch=100, timeout=0.5)
    await js.publish(subject, b"one")
    assert bodies(await fetch(batch=100, timeout=PATIENT_SECONDS)) == [b"one"]
    await connection.flush()
    await watching.unsubscribe()

    assert len(requests) == 4
    assert all(request["no_wait"] is True and request["batch"] == 100 for request in requests)


async def _record(requests: list[dict[str, object]], message: Msg) -> None:
    requests.append(orjson.loads(message.data))
