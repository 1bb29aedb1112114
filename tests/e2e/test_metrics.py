"""Metrics of the running pipeline (four services as processes): what the endpoints serve agrees
with the databases and the broker, a poison message shows in the dead-letter counter and gauge, and
every metric a dashboard panel or an alert rule queries is one the services really export.

The pipeline is the session's: other tests' orders and dead letters are in it too. The counters
live as long as the processes, which the session's pipeline never restarts, so a counter and the
database's total over the same pipeline must agree exactly."""

from collections.abc import Mapping

import httpx
import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from orderflow_kit.dead_letters import count_dead_letters, dead_letter_filter
from tests.e2e.support import loyalty, new_customer, place, publish
from tests.support.databases import database_engine
from tests.support.events import order_created
from tests.support.observability import SYNTHETIC, exported_names, queried_metrics
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

# (metric name, its labels as sorted pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
ORDERS = 5


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def samples(exposition: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """The sample's value; missing means not exported, which fails the test with what there is."""
    key = (name, tuple(sorted(labels.items())))
    assert key in found, f"{name}{labels} not exported; exported: {sorted({n for n, _ in found})}"
    return found[key]


async def scrape_all(pipeline: Pipeline) -> dict[str, Samples]:
    return {name: samples(await scrape(url)) for name, url in pipeline.metrics_urls.items()}


async def database_totals(pipeline: Pipeline) -> Mapping[str, float]:
    totals: dict[str, float] = {}
    queries = {
        "orders": {
            "orders": "SELECT count(*) FROM orders",
            "published": "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL",
            "pending": "SELECT count(*) FROM outbox WHERE published_at IS NULL",
        },
        "loyalty": {"points": "SELECT coalesce(sum(points), 0) FROM ledger", "awards": "SELECT count(*) FROM ledger"},
        "inventory": {"held": "SELECT count(*) FROM reservations WHERE status = 'RESERVED'"},
    }
    for service, named in queries.items():
        async with (
            database_engine(pipeline.infra.postgres_url, pipeline.databases[service]) as engine,
            engine.connect() as connection,
        ):
            for name, query in named.items():
                totals[name] = float((await connection.execute(text(query))).scalar_one())
    return totals


async def stored_dead_letters(pipeline: Pipeline, consumer: str) -> int:
    connection = await nats.connect(pipeline.nats_url)
    try:
        return sum((await count_dead_letters(connection.jetstream(), subject=dead_letter_filter(consumer))).values())
    finally:
        await connection.close()


async def metrics_and_database(pipeline: Pipeline) -> tuple[dict[str, float], Mapping[str, float]]:
    """What the endpoints say next to what the databases and the broker hold, read together."""
    scraped = await scrape_all(pipeline)
    orders, inventory, loyalty_ = scraped["orders"], scraped["inventory"], scraped["loyalty"]
    said = {
        "orders": value(orders, "orderflow_orders_created_total"),
        "published": value(orders, "orderflow_outbox_published_total"),
        "pending": value(orders, "orderflow_outbox_pending_events"),
        "points": value(loyalty_, "orderflow_loyalty_points_awarded_total"),
        "awards": value(loyalty_, "orderflow_consumer_events_total", consumer=pipeline.consumer, outcome="processed"),
        "held": value(inventory, "orderflow_inventory_reservations_held"),
        "loyalty dead letters": value(loyalty_, "orderflow_dead_letters", consumer=pipeline.consumer),
        "inventory dead letters": value(inventory, "orderflow_dead_letters", consumer=pipeline.inventory_consumer),
    }
    held = {
        **await database_totals(pipeline),
        "loyalty dead letters": float(await stored_dead_letters(pipeline, pipeline.consumer)),
        "inventory dead letters": float(await stored_dead_letters(pipeline, pipeline.inventory_consumer)),
    }
    return said, held


def dead_lettered(scraped: dict[str, Samples], pipeline: Pipeline) -> dict[str, float]:
    return {
        consumer: value(scraped[service], "orderflow_consumer_events_total", consumer=consumer, outcome="dead_lettered")
        for service, consumer in (("loyalty", pipeline.consumer), ("inventory", pipeline.inventory_consumer))
    }


async def test_after_orders_the_counters_agree_with_the_databases(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    before = dead_lettered(await scrape_all(pipeline), pipeline)
    customer = new_customer()
    for _ in range(ORDERS):
        placed = await place(api, customer, ("E2E-MUG", 2), ("E2E-TEE", 1))
        assert placed.status_code == 201, placed.text
    await eventually(lambda: loyalty(api, customer), lambda b: b["orders_awarded"] == ORDERS, what="points awarded")

    said, held = await eventually(
        lambda: metrics_and_database(pipeline),
        lambda both: both[0] == both[1] and both[0]["pending"] == 0,
        what="the metrics agreeing with the databases, nothing pending",
    )

    assert said == held
    assert said["orders"] >= ORDERS
    assert said["points"] >= ORDERS * 50  # 2 x 12.50 + 25.99 = 50 points an order
    after = dead_lettered(await scrape_all(pipeline), pipeline)
    assert after == before  # these orders dead-lettered nothing
    gauges = await scrape_all(pipeline)
    assert value(gauges["orders"], "orderflow_outbox_oldest_pending_age_seconds") == 0


async def test_a_poison_message_shows_in_the_dead_letter_counter_and_depth(pipeline: Pipeline) -> None:
    def depth(scraped: dict[str, Samples]) -> dict[str, float]:
        return {
            consumer: value(scraped[service], "orderflow_dead_letters", consumer=consumer)
            for service, consumer in (("loyalty", pipeline.consumer), ("inventory", pipeline.inventory_consumer))
        }

    before = await scrape_all(pipeline)
    counted_before, depth_before = dead_lettered(before, pipeline), depth(before)
    event = order_created(new_customer(), total_cents=700)
    await publish(pipeline.nats_url, event.to_headers(), b"this is not an order")

    after = await eventually(
        lambda: scrape_all(pipeline),
        lambda scraped: depth(scraped) == {consumer: n + 1 for consumer, n in depth_before.items()},
        what="both consumers' dead letters one deeper",
    )

    # Each consumer gave up on it at once (a permanent error) and stored one dead letter.
    assert dead_lettered(after, pipeline) == {consumer: n + 1 for consumer, n in counted_before.items()}
    for consumer, stored in depth(after).items():
        assert stored == await stored_dead_letters(pipeline, consumer)


async def test_every_metric_a_dashboard_or_alert_queries_is_exported(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    customer = new_customer()
    placed = await place(api, customer, ("E2E-MUG", 1))
    assert placed.status_code == 201, placed.text
    await eventually(lambda: loyalty(api, customer), lambda b: b["orders_awarded"] == 1, what="points awarded")

    exported: set[str] = set()
    for url in pipeline.metrics_urls.values():
        exported |= exported_names(await scrape(url))

    queried = queried_metrics()
    assert queried, "the dashboards and alert rules query nothing"
    missing = {name: where for name, where in queried.items() if name not in exported and name not in SYNTHETIC}
    assert not missing, f"queried but exported by no service: {missing}"
