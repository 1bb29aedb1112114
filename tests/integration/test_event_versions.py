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
from tests.support.jetstream import consumer_exists, delete_consumer, impatient, jetstream
from tests.support.polling import eventually
from tests.support.services import serving_inventory, serving_loyalty, session_settings

NEXT_VERSION = "orderflow.orders.order_created.v2"


@pytest.fixture
async def consumers(infra: Infrastructure) -> AsyncIterator[tuple[str, str]]:
    """Inventory and loyalty serving, each with a durable consumer of its own that sees only new
    events and retries quickly (a message retried instead of dead-lettered at once would show as
    deliveries > 1); yields the two consumers' names."""
    inventory_events, loyalty_events = impatient(InventoryConsumer, "inventory"), impatient(LoyaltyConsumer, "loyalty")
    names = inventory_events.consumer, loyalty_events.consumer
    try:
        async with (
            fresh_database(infra.postgres_url, "inventory", inventory.main.MIGRATIONS) as inventory_database,
            fresh_database(infra.postgres_url, "loyalty", loyalty.main.MIGRATIONS) as loyalty_database,
            serving_inventory(
                InventorySettings(
                    **session_settings(infra),
                    inventory_database=inventory_database,
                    catalog=DEMO_CATALOG,
                    inventory_port=free_port(),
                    order_events=inventory_events,
                )
            ),
            serving_loyalty(
                LoyaltySettings(
                    **session_settings(infra),
                    loyalty_database=loyalty_database,
                    loyalty_port=free_port(),
                    order_events=loyalty_events,
                )
            ),
            jetstream(infra.nats_url) as js,
        ):
            for consumer in names:
                await eventually(partial(consumer_exists, js, consumer), what=consumer)
            yield names
    finally:
        for consumer in names:
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
