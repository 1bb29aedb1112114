"""JetStream reuses an existing durable consumer as it is; the service brings it to its settings."""

from nats.js import JetStreamContext, api

from loyalty.settings import LoyaltySettings
from orderflow_kit.consumer_settings import ensure_consumer


async def test_an_existing_consumer_is_updated_to_changed_settings_and_keeps_its_deliver_policy(
    settings: LoyaltySettings, js: JetStreamContext
) -> None:
    created = await ensure_consumer(js, settings.order_events)
    changed = settings.order_events.model_copy(
        update={"max_deliver": 7, "ack_wait_seconds": 9.0, "deliver_policy": "all"}
    )

    updated = await ensure_consumer(js, changed)

    assert (created.config.max_deliver, created.config.ack_wait) == (3, 2.5)
    assert (updated.config.max_deliver, updated.config.ack_wait) == (7, 9.0)
    assert updated.config.ack_policy == api.AckPolicy.EXPLICIT
    assert updated.config.filter_subject == "orders.created"
    assert updated.config.deliver_policy == api.DeliverPolicy.NEW  # fixed when the consumer was created
