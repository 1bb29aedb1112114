"""Every service notices when PostgreSQL, NATS or Redis goes away, says so through its health check
(or /readyz), and works again once the server is back, without a restart (the gateway serves
while Redis is away, without rate limits). The session's real
servers are stopped and started again (same port, same data)."""

import uuid
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from inventory.servicer import SERVICE_NAME as INVENTORY_SERVICE
from loyalty.awarding_points import points_for
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_contracts.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_devstack.infra import Infrastructure
from orders.main import SERVICE_NAME as ORDERS_SERVICE
from tests.integration.gateway.conftest import client_of
from tests.integration.supervision.conftest import Backends, stopped
from tests.support.grpc_servers import SERVING, health_status
from tests.support.polling import eventually
from tests.support.tokens import JWT_SECRET

NOT_SERVING = 2  # grpc.health.v1.HealthCheckResponse.NOT_SERVING
LOYALTY_SERVICE = loyalty_pb2.DESCRIPTOR.services_by_name["LoyaltyService"].full_name


async def statuses(backends: Backends) -> dict[str, int]:
    """The health of each server as a whole and of its service."""
    return {
        "inventory": await health_status(backends.inventory),
        "inventory service": await health_status(backends.inventory, INVENTORY_SERVICE),
        "orders": await health_status(backends.orders),
        "orders service": await health_status(backends.orders, ORDERS_SERVICE),
        "loyalty": await health_status(backends.loyalty),
        "loyalty service": await health_status(backends.loyalty, LOYALTY_SERVICE),
    }


def all_(status: int) -> dict[str, int]:
    return dict.fromkeys(
        ["inventory", "inventory service", "orders", "orders service", "loyalty", "loyalty service"], status
    )


async def place_order(backends: Backends, customer_id: str) -> orders_pb2.Order:
    async with grpc.aio.insecure_channel(backends.inventory) as connection:
        products = await inventory_pb2_grpc.InventoryServiceStub(connection).ListProducts(
            inventory_pb2.ListProductsRequest(), timeout=5.0
        )
    sku = next(product.sku for product in products.products if product.available > 0)
    async with grpc.aio.insecure_channel(backends.orders) as connection:
        item = orders_pb2.OrderItem(sku=sku, quantity=1)
        request = orders_pb2.CreateOrderRequest(customer_id=customer_id, items=[item])
        order: orders_pb2.Order = await orders_pb2_grpc.OrderServiceStub(connection).CreateOrder(request, timeout=5.0)
    return order


async def balance(backends: Backends, customer_id: str) -> loyalty_pb2.Balance:
    async with grpc.aio.insecure_channel(backends.loyalty) as connection:
        stub = loyalty_pb2_grpc.LoyaltyServiceStub(connection)
        answer: loyalty_pb2.Balance = await stub.GetBalance(
            loyalty_pb2.GetBalanceRequest(customer_id=customer_id), timeout=5.0
        )
    return answer


def new_customer() -> str:
    return f"c-supervision-{uuid.uuid4().hex[:10]}"


async def test_every_grpc_service_is_not_serving_while_postgres_is_down_and_answers_again_after(
    backends: Backends, infra: Infrastructure
) -> None:
    async with stopped(infra.postgres, "PostgreSQL"):
        await eventually(lambda: statuses(backends), lambda seen: seen == all_(NOT_SERVING), what="all NOT_SERVING")
        for address in (backends.inventory, backends.orders, backends.loyalty):
            assert await health_status(address, "dependency/postgres") == NOT_SERVING
            assert await health_status(address, "dependency/nats") == SERVING

    await eventually(lambda: statuses(backends), lambda seen: seen == all_(SERVING), what="all SERVING again")
    customer = new_customer()
    order = await place_order(backends, customer)  # orders -> inventory -> both databases
    awarded = await eventually(lambda: balance(backends, customer), lambda answer: answer.orders_awarded == 1)
    assert awarded.points == points_for(order.total_cents)


async def test_loyalty_is_not_serving_while_nats_is_down_and_awards_points_again_after(
    backends: Backends, infra: Infrastructure
) -> None:
    async with stopped(infra.nats, "NATS"):
        await eventually(lambda: health_status(backends.loyalty), lambda status: status == NOT_SERVING)
        assert await health_status(backends.loyalty, LOYALTY_SERVICE) == NOT_SERVING
        assert await health_status(backends.loyalty, "dependency/nats") == NOT_SERVING

    await eventually(lambda: health_status(backends.loyalty), lambda status: status == SERVING)
    customer = new_customer()
    order = await place_order(backends, customer)
    awarded = await eventually(lambda: balance(backends, customer), lambda answer: answer.orders_awarded == 1)
    assert awarded.points == points_for(order.total_cents)


async def test_orders_takes_orders_while_nats_is_down_and_reports_it_in_its_health_detail(
    backends: Backends, infra: Infrastructure
) -> None:
    """The outbox keeps the event, so orders stays SERVING; `dependency/nats` says what is missing,
    and the order's points arrive once the relay and the consumer are connected again."""
    customer = new_customer()
    async with stopped(infra.nats, "NATS"):
        await eventually(lambda: health_status(backends.orders, "dependency/nats"), lambda seen: seen == NOT_SERVING)
        assert await health_status(backends.orders) == SERVING
        assert await health_status(backends.orders, ORDERS_SERVICE) == SERVING
        assert await health_status(backends.inventory) == SERVING  # its consumer waits; reservations do not
        order = await place_order(backends, customer)

    await eventually(lambda: health_status(backends.orders, "dependency/nats"), lambda status: status == SERVING)
    awarded = await eventually(lambda: balance(backends, customer), lambda answer: answer.orders_awarded == 1)
    assert awarded.points == points_for(order.total_cents)


@pytest.fixture
async def gateway(backends: Backends, infra: Infrastructure) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app in-process, in front of the real services and the session's Redis."""
    settings = GatewaySettings(
        orders_addr=backends.orders,
        inventory_addr=backends.inventory,
        loyalty_addr=backends.loyalty,
        redis_url=infra.redis_url,
        jwt_secret=JWT_SECRET,
    )
    async with client_of(create_app(settings)) as client:
        yield client


async def readyz(gateway: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    response = await gateway.get("/readyz")
    checks: dict[str, str] = response.json()["checks"]
    return response.status_code, checks


async def test_readyz_is_503_naming_every_service_while_postgres_is_down_and_200_after(
    gateway: httpx.AsyncClient, infra: Infrastructure
) -> None:
    async with stopped(infra.postgres, "PostgreSQL"):
        down = {"orders": "not_serving", "inventory": "not_serving", "loyalty": "not_serving", "redis": "ok"}
        await eventually(lambda: readyz(gateway), lambda answer: answer == (503, down))

    ready = {"orders": "ok", "inventory": "ok", "loyalty": "ok", "redis": "ok"}
    await eventually(lambda: readyz(gateway), lambda answer: answer == (200, ready))


async def test_while_redis_is_down_the_gateway_serves_unlimited_and_readyz_says_so_and_limits_come_back_after(
    gateway: httpx.AsyncClient, infra: Infrastructure
) -> None:
    async with stopped(infra.redis, "Redis"):
        down = {
            "orders": "ok",
            "inventory": "ok",
            "loyalty": "ok",
            "redis": "unavailable (rate limits off, idempotency keys refused)",
        }
        await eventually(lambda: readyz(gateway), lambda answer: answer == (200, down))
        unlimited = await gateway.get("/v1/products")
        assert unlimited.status_code == 200
        assert "ratelimit" not in unlimited.headers

    ready = {"orders": "ok", "inventory": "ok", "loyalty": "ok", "redis": "ok"}
    await eventually(lambda: readyz(gateway), lambda answer: answer == (200, ready))
    limited = await eventually(lambda: gateway.get("/v1/products"), lambda answer: "ratelimit" in answer.headers)
    assert limited.status_code == 200
