"""The gRPC InventoryService: protobuf in, a catalog, reservations, restocking or stock watch
call, protobuf out.

Client errors are ServiceErrors raised by the domain; the kit's interceptor turns them into a
status with an ErrorInfo, so nothing here handles errors."""

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import asdict

from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import catalog, reservations, restocking, stock_conservation
from inventory.stock_watch import StockWatch
from orderflow_contracts.identifiers import MAX_RESTOCK_LINES
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_kit import faults
from orderflow_kit.errors import ServiceError
from orderflow_kit.grpc_server import Context, GrpcService

SERVICE_NAME = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name


class InventoryServicer:
    def __init__(self, engine: AsyncEngine, currency: str, stock_watch: StockWatch) -> None:
        self._engine = engine
        self._currency = currency
        self._stock_watch = stock_watch

    async def ListProducts(
        self, request: inventory_pb2.ListProductsRequest, context: Context
    ) -> inventory_pb2.ListProductsResponse:
        products = await catalog.list_products(self._engine)
        return inventory_pb2.ListProductsResponse(products=[self._product(product) for product in products])

    async def GetProduct(self, request: inventory_pb2.GetProductRequest, context: Context) -> inventory_pb2.Product:
        return self._product(await catalog.get_product(self._engine, request.sku))

    async def ReserveStock(
        self, request: inventory_pb2.ReserveStockRequest, context: Context
    ) -> inventory_pb2.Reservation:
        items = [reservations.StockLine(sku=item.sku, quantity=item.quantity) for item in request.items]
        lines = await reservations.reserve_stock(self._engine, request.order_id, items)
        # Fault flag (docs/fault-flags.md): reserved, but the answer comes late.
        await faults.inventory_delay(order_id=request.order_id)
        return inventory_pb2.Reservation(
            order_id=request.order_id,
            lines=[
                inventory_pb2.ReservedLine(sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents)
                for line in lines
            ],
            currency=self._currency,
        )

    async def ReleaseStock(
        self, request: inventory_pb2.ReleaseStockRequest, context: Context
    ) -> inventory_pb2.ReleaseStockResponse:
        released = await reservations.release_stock(self._engine, request.order_id)
        return inventory_pb2.ReleaseStockResponse(released=released)

    async def RestockStream(
        self, request_iterator: AsyncIterator[inventory_pb2.RestockRequest], context: Context
    ) -> inventory_pb2.RestockSummary:
        try:
            summary = await restocking.restock(self._engine, _restock_lines(request_iterator))
        except ServiceError:
            await _drain(request_iterator)
            raise
        return inventory_pb2.RestockSummary(
            messages=summary.messages,
            products=[inventory_pb2.RestockedProduct(**asdict(product)) for product in summary.products],
        )

    async def WatchStock(
        self, request: inventory_pb2.WatchStockRequest, context: Context
    ) -> AsyncIterator[inventory_pb2.WatchStockResponse]:
        async for levels in self._stock_watch.watch(request.skus):
            yield inventory_pb2.WatchStockResponse(
                levels=[inventory_pb2.StockLevel(sku=sku, available=levels[sku]) for sku in sorted(levels)]
            )

    async def CheckStockConservation(
        self, request: inventory_pb2.CheckStockConservationRequest, context: Context
    ) -> inventory_pb2.CheckStockConservationResponse:
        counts = await stock_conservation.count_stock(self._engine)
        return inventory_pb2.CheckStockConservationResponse(
            products=[inventory_pb2.StockCount(**asdict(count), conserved=count.conserved) for count in counts],
            conserved=all(count.conserved for count in counts),
        )

    def _product(self, product: catalog.CatalogProduct) -> inventory_pb2.Product:
        return inventory_pb2.Product(
            sku=product.sku,
            name=product.name,
            price_cents=product.price_cents,
            currency=self._currency,
            available=product.available,
        )


# How many more messages a refused stream is read for: one over the limit of a restock, and more.
_DRAIN_LIMIT = 2 * MAX_RESTOCK_LINES


async def _drain(requests: AsyncIterator[inventory_pb2.RestockRequest]) -> None:
    """Read (and drop) what the client is still sending before refusing: grpc-python's client
    reports a refusal that arrives while it is still writing as INTERNAL "Internal error from
    Core", not as the refusal. Bounded, so an endless stream cannot hold the call."""
    read = 0
    async for _ in requests:
        read += 1
        if read >= _DRAIN_LIMIT:
            return


async def _restock_lines(
    requests: AsyncIterator[inventory_pb2.RestockRequest],
) -> AsyncIterable[restocking.RestockLine]:
    async for request in requests:
        yield restocking.RestockLine(
            sku=request.sku,
            quantity=request.quantity,
            name=request.name if request.HasField("name") else None,
            price_cents=request.price_cents if request.HasField("price_cents") else None,
        )


def inventory_service(engine: AsyncEngine, currency: str, stock_watch: StockWatch) -> GrpcService:
    return GrpcService(
        SERVICE_NAME,
        InventoryServicer(engine, currency, stock_watch),
        inventory_pb2_grpc.add_InventoryServiceServicer_to_server,
    )
