"""Inventory reserves, and its answer never reaches orders (a connection reset after the commit,
on every attempt the channel makes): orders answers INVENTORY_UNAVAILABLE, nothing was ordered,
and the stock inventory took for it comes back without waiting for the reservation's TTL. Against
the real inventory and PostgreSQL, through a proxy that loses inventory's answers."""

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.orders.v1 import orders_pb2_grpc
from orderflow_kit.grpc_client import ErrorDetail, channel
from orders.settings import OrdersSettings
from tests.integration.orders.helpers import available, create_request, new_customer
from tests.support.databases import scalar
from tests.support.outages import LostAnswers
from tests.support.polling import eventually
from tests.support.rpc_errors import rpc_error
from tests.support.services import serving_orders


@pytest.fixture
async def lost_answers(inventory_address: str) -> AsyncIterator[LostAnswers]:
    host, _, port = inventory_address.rpartition(":")
    proxy = LostAnswers(host, int(port))
    await proxy.start()
    yield proxy
    await proxy.close()


async def orders_written(engine: AsyncEngine) -> int:
    return int(await scalar(engine, "SELECT count(*) FROM orders") or 0)


async def test_a_reservation_whose_answer_is_lost_is_released(
    orders_settings: OrdersSettings, lost_answers: LostAnswers, inventory: Any, orders_engine: AsyncEngine
) -> None:
    through_the_proxy = orders_settings.model_copy(update={"inventory_addr": lost_answers.address})
    before = await available(inventory, "TEST-LAMP")
    lost_answers.losing = True

    async with serving_orders(through_the_proxy) as address, channel(address) as connection:
        refused = await rpc_error(
            orders_pb2_grpc.OrderServiceStub(connection).CreateOrder(
                create_request(new_customer(), {"TEST-LAMP": 3}), timeout=10
            )
        )
        lost = lost_answers.lost
        # The release is lost too while answers are; then inventory answers again.
        lost_answers.losing = False
        back = await eventually(lambda: available(inventory, "TEST-LAMP"), lambda units: units == before)

    assert (refused.code, refused.detail) == (grpc.StatusCode.UNAVAILABLE, ErrorDetail("INVENTORY_UNAVAILABLE", {}))
    assert lost >= 1, "inventory never answered: nothing shows that it reserved"
    assert back == before
    assert await orders_written(orders_engine) == 0
