"""gRPC LoyaltyService: protobuf in, domain call, protobuf out."""

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.awarding_points import count_awards, get_balance
from orderflow_contracts.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from orderflow_kit.grpc_server import GrpcService

SERVICE_NAME = loyalty_pb2.DESCRIPTOR.services_by_name["LoyaltyService"].full_name


class LoyaltyServicer(loyalty_pb2_grpc.LoyaltyServiceServicer):  # type: ignore[misc]
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def GetBalance(
        self, request: loyalty_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> loyalty_pb2.Balance:
        balance = await get_balance(self._engine, request.customer_id)
        return loyalty_pb2.Balance(
            customer_id=balance.customer_id, points=balance.points, orders_awarded=balance.orders_awarded
        )

    async def CountAwards(
        self, request: loyalty_pb2.CountAwardsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> loyalty_pb2.CountAwardsResponse:
        counts = await count_awards(self._engine)
        return loyalty_pb2.CountAwardsResponse(
            awards=counts.awards, orders_awarded=counts.orders_awarded, points=counts.points
        )


def loyalty_service(engine: AsyncEngine) -> GrpcService:
    return GrpcService(SERVICE_NAME, LoyaltyServicer(engine), loyalty_pb2_grpc.add_LoyaltyServiceServicer_to_server)
