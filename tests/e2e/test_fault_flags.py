"""Fault flags switched through the gateway (PUT /v1/admin/faults) reach every service of the
running pipeline through the bucket they all watch: a slow inventory turns orders into
504 INVENTORY_TIMEOUT until the flags are cleared, with no restart."""

import json
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import httpx
import pytest

from tests.e2e.support import new_customer, place
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually
from tests.support.tokens import as_admin

pytestmark = pytest.mark.e2e

PATH = "/v1/admin/faults"
# Above the orders service's inventory timeout (ORDERFLOW_INVENTORY_TIMEOUT_SECONDS, 2 s) and below
# the gateway's deadline (5 s), so that orders is the one that gives up.
DELAY_MS = 3000


def flags_announced(pipeline: Pipeline, service: str) -> list[dict[str, str]]:
    """Every set of fault flags `service` logged as coming into force, oldest first."""
    lines = [json.loads(line) for line in pipeline.services[service].tail(400) if line.startswith("{")]
    return [line["faults"] for line in lines if line.get("event") == "fault flags changed"]


async def in_force_everywhere(pipeline: Pipeline, flags: dict[str, str]) -> None:
    for service in ("orders", "inventory", "loyalty"):
        await eventually(partial(flags_announced, pipeline, service), _ends_with(flags), what=f"{service}: {flags}")


def _ends_with(flags: dict[str, str]) -> Callable[[list[dict[str, str]]], bool]:
    return lambda announced: announced[-1:] == [flags]


@pytest.fixture
async def healed(api: httpx.AsyncClient) -> AsyncIterator[None]:
    """Whatever happens in the test, the session's pipeline is left without faults."""
    yield
    await api.put(PATH, json={"flags": {}}, headers=as_admin())


@pytest.mark.usefixtures("healed")
async def test_a_slow_inventory_switched_on_through_the_api_times_orders_out_until_switched_off(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    customer = new_customer()

    slow = await api.put(PATH, json={"flags": {"inventory_delay_ms": DELAY_MS}}, headers=as_admin())
    assert slow.status_code == 200, slow.text
    await in_force_everywhere(pipeline, {"inventory_delay_ms": str(DELAY_MS)})
    timed_out = await place(api, customer, ("E2E-MUG", 1))

    assert timed_out.status_code == 504, timed_out.text
    assert timed_out.json()["code"] == "INVENTORY_TIMEOUT"

    cleared = await api.put(PATH, json={"flags": {}}, headers=as_admin())
    assert cleared.status_code == 200, cleared.text
    await in_force_everywhere(pipeline, {})
    placed = await place(api, customer, ("E2E-MUG", 1))

    assert placed.status_code == 201, placed.text
    listed: dict[str, Any] = (await api.get(PATH, headers=as_admin())).json()
    assert listed["flags"] == {}
