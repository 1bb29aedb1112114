"""Orders' settings beyond the shared ones: how long it waits for inventory, how its outbox relay
paces itself, how long published events are kept, and how a bulk import is paced. All can be set as `ORDERFLOW_<NAME>`
environment variables."""

from pydantic import Field

from orderflow_kit.settings import Settings


class OrdersSettings(Settings):
    # The longest a ReserveStock call may take; a caller with less time left passes its own deadline on.
    inventory_timeout_seconds: float = 2.0
    # How long a placement with a client_request_id holds it: until then a repeat is answered
    # CLIENT_REQUEST_IN_FLIGHT, after it the repeat takes over (a placement that dies leaves its claim).
    # Safety does not depend on it (a taken-over placement cannot record its order), only how long
    # a repeat waits after a crash. Keep it above inventory_timeout_seconds.
    placement_lease_seconds: float = Field(default=30.0, gt=0)
    # How long orders keeps trying to give back stock held for an order it did not record (inventory
    # away or failing). Keep it above inventory's reservation TTL plus a sweep (300 + 10 s by
    # default): by then the sweeper has given the stock back anyway.
    inventory_release_within_seconds: float = Field(default=600.0, gt=0)
    # Events the relay takes (and locks) per transaction.
    outbox_batch_size: int = 100
    # How often the relay looks for pending events when no NOTIFY woke it (notifications get lost).
    outbox_poll_seconds: float = 1.0
    # How long the relay lingers after a NOTIFY before it takes its batch, so that the orders
    # committed meanwhile go in the same batch (Kafka's linger.ms): fewer round trips per event under
    # load, at most this much later at idle. 0 takes each batch at once.
    outbox_linger_seconds: float = Field(default=0.005, ge=0, le=1)
    # How long the relay waits for the broker's PubAck before treating the publish as failed.
    outbox_publish_timeout_seconds: float = 2.0
    # The longest pause between the relay's retries while NATS or PostgreSQL is away.
    outbox_retry_max_seconds: float = 5.0
    # Housekeeping: published events are kept this long (for audit), then purged; pending ones never.
    outbox_retention_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    # How often the purge runs (in batches, each its own short transaction).
    outbox_purge_interval_seconds: float = Field(default=3600.0, gt=0)
    # Bulk import (PlaceOrders, orders.placing_many): placements one stream runs at once, and how
    # many requests it reads ahead of the answer its client waits for (flow control beyond that).
    import_concurrency: int = Field(default=4, ge=1, le=64)
    import_window: int = Field(default=16, ge=1, le=1024)
