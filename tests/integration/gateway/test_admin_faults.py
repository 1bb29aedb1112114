"""GET/PUT /v1/admin/faults against the session's real NATS: an admin replaces the whole set of
fault flags in the bucket, a watcher (what every service runs) puts it in force, and anything the
flags cannot take is a 422 that writes nothing. Each test has a bucket of its own."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.fault_bucket import watch_fault_flags
from orderflow_kit.faults import Fault
from tests.integration.gateway.conftest import client_of
from tests.support.outages import Outage
from tests.support.polling import eventually
from tests.support.tokens import as_admin, as_customer

PATH = "/v1/admin/faults"


@pytest.fixture
def bucket() -> str:
    return f"faults-gateway-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def gateway(settings: GatewaySettings, infra: Infrastructure, bucket: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"nats_url": infra.nats_url, "faults_bucket": bucket}))
    async with client_of(app) as client:
        yield client


async def test_an_admin_replaces_the_set_a_watcher_puts_it_in_force_and_gets_it_back(
    gateway: httpx.AsyncClient, infra: Infrastructure, bucket: str
) -> None:
    received: list[str] = []
    watcher = asyncio.create_task(watch_fault_flags(infra.nats_url, service="test", bucket=bucket, use=received.append))
    try:
        before = await gateway.get(PATH, headers=as_admin())
        assert before.status_code == 200, before.text
        assert (before.json()["flags"], before.json()["revision"]) == ({}, None)
        assert [flag["name"] for flag in before.json()["known"]] == list(Fault)

        put = await gateway.put(
            PATH,
            json={"flags": {"inventory_delay_ms": 1500, "publish_twice": "", "relay_crash_after_publish": False}},
            headers=as_admin(),
        )

        assert put.status_code == 200, put.text
        flags = {"inventory_delay_ms": "1500", "publish_twice": "new_msg_id", "relay_crash_after_publish": "off"}
        assert put.json()["flags"] == flags
        assert put.json()["bucket"] == bucket
        await eventually(
            lambda: received[-1:],
            lambda last: last == ["inventory_delay_ms=1500\npublish_twice=new_msg_id\nrelay_crash_after_publish=off\n"],
            what="the watcher receiving the set",
        )
        got = (await gateway.get(PATH, headers=as_admin())).json()
        assert (got["flags"], got["revision"]) == (flags, put.json()["revision"])

        healed = await gateway.put(PATH, json={"flags": {}}, headers=as_admin())
        assert healed.json()["flags"] == {}
        await eventually(lambda: received[-1:], lambda last: last == [""], what="the watcher receiving no flags")
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_only_admins_read_or_set_fault_flags(gateway: httpx.AsyncClient, method: str) -> None:
    body = {"flags": {"inventory_delay_ms": 1}}

    anonymous = await gateway.request(method, PATH, json=body)
    customer = await gateway.request(method, PATH, json=body, headers=as_customer("customer-faults"))

    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "AUTHENTICATION_REQUIRED")
    assert (customer.status_code, customer.json()["code"]) == (403, "INSUFFICIENT_SCOPE")
    assert (await gateway.get(PATH, headers=as_admin())).json()["flags"] == {}


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"flags": {"relay_crash": "on"}}, ["body", "flags", "relay_crash", "[key]"]),
        ({"flags": {"inventory_delay_ms": "soon"}}, ["body", "flags", "inventory_delay_ms"]),
        ({"flags": {"inventory_delay_ms": -1}}, ["body", "flags", "inventory_delay_ms"]),
        ({"flags": {"inventory_delay_ms": 1.5}}, ["body", "flags", "inventory_delay_ms", "str"]),
        ({"flags": {"publish_twice": "twice"}}, ["body", "flags", "publish_twice"]),
        (
            {"flags": {"consumer_fail_first": "loyalty,relay_crash_after_publish:1"}},
            ["body", "flags", "consumer_fail_first"],
        ),
        ({"flags": {"orders_crash_before_commit": "maybe"}}, ["body", "flags", "orders_crash_before_commit"]),
        ({"flags": {"publish_twice": "same_msg_id"}, "also": 1}, ["body", "also"]),
        ({}, ["body", "flags"]),
    ],
)
async def test_an_unknown_flag_or_a_bad_value_is_a_422_that_writes_nothing(
    gateway: httpx.AsyncClient, body: dict[str, Any], location: list[str]
) -> None:
    before = await gateway.put(PATH, json={"flags": {"inventory_delay_ms": 10}}, headers=as_admin())

    refused = await gateway.put(PATH, json=body, headers=as_admin())

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "VALIDATION_FAILED"
    assert location in [error["location"] for error in refused.json()["errors"]], refused.json()
    after = (await gateway.get(PATH, headers=as_admin())).json()
    assert (after["flags"], after["revision"]) == (before.json()["flags"], before.json()["revision"])


async def test_a_body_that_is_not_json_is_a_415(gateway: httpx.AsyncClient) -> None:
    refused = await gateway.put(PATH, content=b"inventory_delay_ms=5", headers=as_admin())

    assert (refused.status_code, refused.json()["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")


async def test_without_nats_reading_or_setting_is_a_503_but_a_bad_set_still_a_422(
    settings: GatewaySettings, infra: Infrastructure, bucket: str
) -> None:
    outage, url = Outage.in_front_of(infra.nats_url, default_port=4222)
    app = create_app(
        settings.model_copy(update={"nats_url": url, "broker_timeout_seconds": 0.2, "faults_bucket": bucket})
    )
    try:
        async with client_of(app) as client:
            read = await client.get(PATH, headers=as_admin())
            write = await client.put(PATH, json={"flags": {"inventory_delay_ms": 5}}, headers=as_admin())
            bad = await client.put(PATH, json={"flags": {"inventory_delay_ms": "soon"}}, headers=as_admin())

            for response in (read, write):
                assert (response.status_code, response.json()["code"]) == (503, "DEPENDENCY_UNAVAILABLE")
            assert (bad.status_code, bad.json()["code"]) == (422, "VALIDATION_FAILED")
    finally:
        await outage.close()
