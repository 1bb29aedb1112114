"""What the gateway stands in front of: one gRPC channel per service and a Redis client, opened
once per process in the lifespan. Routes call services through `Upstreams.call`, so every call
carries the request context and a deadline; /readyz asks each of them through `Upstreams.check`.
The NATS connection (gateway.broker) is made in the background and is not part of /readyz: the
gateway serves orders without it."""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, TypeVar

import grpc
from fastapi import Depends, Request
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.broker import Broker
from gateway.settings import GatewaySettings
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_contracts.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_kit.grpc_client import channel
from orderflow_kit.grpc_keepalive import Keepalive
from orderflow_kit.grpc_tls import channel_credentials
from orderflow_kit.request_context import outgoing_metadata

ResponseT = TypeVar("ResponseT")

OK = "ok"
# Redis's name among the checks.
REDIS = "redis"


@dataclass(frozen=True)
class GrpcUpstream:
    name: str
    # The full gRPC service name: what the standard health check is asked about.
    service: str
    channel: grpc.aio.Channel


@dataclass(frozen=True)
class Upstreams:
    orders: orders_pb2_grpc.OrderServiceStub
    inventory: inventory_pb2_grpc.InventoryServiceStub
    loyalty: loyalty_pb2_grpc.LoyaltyServiceStub
    redis: Redis
    broker: Broker
    grpc_upstreams: tuple[GrpcUpstream, ...]
    deadline_seconds: float
    check_timeout_seconds: float

    @classmethod
    def open(cls, settings: GatewaySettings) -> "Upstreams":
        """Call inside the running event loop: grpc.aio channels belong to the loop they were made in."""
        tls = channel_credentials(settings)
        keepalive = Keepalive.from_settings(settings)
        orders = _grpc_upstream("orders", orders_pb2.DESCRIPTOR, "OrderService", settings.orders_addr, tls, keepalive)
        inventory = _grpc_upstream(
            "inventory", inventory_pb2.DESCRIPTOR, "InventoryService", settings.inventory_addr, tls, keepalive
        )
        loyalty = _grpc_upstream(
            "loyalty", loyalty_pb2.DESCRIPTOR, "LoyaltyService", settings.loyalty_addr, tls, keepalive
        )
        timeout = settings.readiness_timeout_seconds
        return cls(
            orders=orders_pb2_grpc.OrderServiceStub(orders.channel),
            inventory=inventory_pb2_grpc.InventoryServiceStub(inventory.channel),
            loyalty=loyalty_pb2_grpc.LoyaltyServiceStub(loyalty.channel),
            redis=Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout),
            broker=Broker.start(settings.nats_url, settings.broker_timeout_seconds),
            grpc_upstreams=(orders, inventory, loyalty),
            deadline_seconds=settings.grpc_deadline_seconds,
            check_timeout_seconds=timeout,
        )

    async def close(self) -> None:
        channels = (upstream.channel.close(None) for upstream in self.grpc_upstreams)
        await asyncio.gather(*channels, self.redis.aclose(), self.broker.close())

    async def call(self, rpc: Callable[..., Awaitable[ResponseT]], request: Message | Iterable[Message]) -> ResponseT:
        """A slow service costs one deadline, never a hung request; its errors reach grpc_problems.py.
        A client-streaming rpc takes the messages to stream."""
        return await rpc(request, timeout=self.deadline_seconds, metadata=outgoing_metadata())

    async def check(self) -> dict[str, str]:
        """Each upstream's state, "ok" or why not; all are asked at once and none longer than the timeout."""
        names = [upstream.name for upstream in self.grpc_upstreams] + [REDIS]
        states = await asyncio.gather(*(self._check_grpc(upstream) for upstream in self.grpc_upstreams), self._ping())
        return dict(zip(names, states, strict=True))

    async def _check_grpc(self, upstream: GrpcUpstream) -> str:
        health = health_pb2_grpc.HealthStub(upstream.channel)
        request = health_pb2.HealthCheckRequest(service=upstream.service)
        try:
            response = await health.Check(request, timeout=self.check_timeout_seconds)
        except grpc.aio.AioRpcError as error:
            return str(error.code().name.lower())
        if response.status == health_pb2.HealthCheckResponse.SERVING:
            return OK
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status).lower())

    async def _ping(self) -> str:
        try:
            async with asyncio.timeout(self.check_timeout_seconds):
                await self.redis.ping()
        except TimeoutError:
            return "deadline_exceeded"
        except (RedisError, OSError):
            return "unavailable"
        return OK


def _grpc_upstream(
    name: str,
    contract: FileDescriptor,
    service: str,
    target: str,
    tls: grpc.ChannelCredentials | None,
    keepalive: Keepalive,
) -> GrpcUpstream:
    connection = channel(target, credentials=tls, keepalive=keepalive)
    return GrpcUpstream(name, contract.services_by_name[service].full_name, connection)


async def _upstreams(request: Request) -> Upstreams:
    upstreams: Upstreams = request.app.state.upstreams
    return upstreams


UpstreamsDep = Annotated[Upstreams, Depends(_upstreams)]
