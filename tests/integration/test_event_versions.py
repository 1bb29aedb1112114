"""An OrderCreated of a version today's consumers do not read (v2, as from an orders deployed ahead of
them) is dead-lettered at once by inventory's and by loyalty's consumer, each dead letter saying
which version came and which one the consumer reads: the safety net of docs/events.md's rollout,
where consumers learn a new version before the producer sends it. Both services run as in
production (`<service>.main.run`), against real NATS and PostgreSQL."""

from collections.abc import AsyncIterator
from functools import partial

import pytest

import inventory.main
import loyalty.main
from inventory.settings import DEMO_CATALOG, InventoryConsumer, InventorySettings
from loyalty.settings import LoyaltyConsumer, LoyaltySettings
from orderflow_contracts.streams import DEAD_LETTER_STREAM
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_kit.dead_letters import DeadLetter, list_dead_letters
from tests.integration.loyalty.helpers import new_customer_id
from tests.support.databases import fresh_database
from tests.support.events import order_created, publish
from tests.support.jetstream import consumer_exists, delete_consumer, jetstream, new_consumer_name
from tests.support.polling import eventually
from tests.support.services import serving_inventory, serving_loyalty

NEXT_VERSION = "orderflow.orders.order_created.v2"


@pytest.fixture
async def consumers(infra: Infrastructure) -> AsyncIterator[tuple[str, str]]:
    """Inventory and loyalty serving, each with a durable consumer of its own that sees only new
    events and retries quickly (a message retried instead of dead-lettered at once would show as
    deliveries > 1); yields the two consumers' names."""
    inventory_consumer, loyalty_consumer = new_consumer_name("inventory"), new_consumer_name("loyalty")
    try:
        async with (
            fresh_database(infra.postgres_url, "inventory", inventory.main.MIGRATIONS) as inventory_database,
            fresh_database(infra.postgres_url, "loyalty", loyalty.main.MIGRATIONS) as loyalty_database,
            serving_inventory(
                InventorySettings(
                    nats_url=infra.nats_url,
                    postgres_url=infra.postgres_url,
                    inventory_database=inventory_database,
                    catalog=DEMO_CATALOG,
                    listen_host="127.0.0.1",
                    inventory_port=free_port(),
                    order_events=InventoryConsumer(
                        consumer=inventory_consumer, deliver_policy="new", max_deliver=3, retry_base_seconds=0.05
                    ),
                    shutdown_grace_seconds=1.0,
                )
            ),
            serving_loyalty(
                LoyaltySettings(
                    nats_url=infra.nats_url,
                    postgres_url=infra.postgres_url,
                    loyalty_database=loyalty_database,
                    listen_host="127.0.0.1",
                    loyalty_port=free_port(),
                    order_events=LoyaltyConsumer(
                        consumer=loyalty_consumer, deliver_policy="new", max_deliver=3, retry_base_seconds=0.05
                    ),
                    shutdown_grace_seconds=1.0,
                )
            ),
            jetstream(infra.nats_url) as js,
        ):
            for consumer in (inventory_consumer, loyalty_consumer):
                await eventually(partial(consumer_exists, js, consumer), what=consumer)
            yield inventory_consumer, loyalty_consumer
    finally:
        for consumer in (inventory_consumer, loyalty_consumer):
            await delete_consumer(infra.nats_url, consumer)


async def test_an_order_created_of_an_unknown_version_is_dead_lettered_by_each_consumer_saying_why(
    infra: Infrastructure, consumers: tuple[str, str]
) -> None:
    async with jetstream(infra.nats_url) as js:
        before = (await js.stream_info(DEAD_LETTER_STREAM)).state.last_seq
        newer = order_created(new_customer_id(), event_type=NEXT_VERSION)
        await publish(js, newer)

        async def dead_letters() -> dict[str, DeadLetter]:
            """The test's consumers' (other tests' services may run meanwhile, with consumers of their own)."""
            letters = await list_dead_letters(js, after=before)
            return {
                letter.consumer: letter
                for letter in letters
                if letter.event_id == newer.id and letter.consumer in consumers
            }

        letters = await eventually(dead_letters, lambda found: len(found) == len(consumers), what="both dead letters")

    for consumer in consumers:
        letter = letters[consumer]
        assert letter.subject == f"dlq.{consumer}.orders.created"
        assert (letter.reason, letter.deliveries, letter.error_class) == ("permanent", "1", "MalformedEvent")
        assert letter.error is not None
        assert "version v2 of orderflow.orders.order_created is unknown here" in letter.error
        assert "this consumer reads v1" in letter.error
        assert letter.body == newer.data
