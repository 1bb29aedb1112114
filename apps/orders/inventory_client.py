"""Orders' view of the inventory service: reserve an order's stock within a deadline, release it.

A failed ReserveStock means one of three things, and the domain decides differently on each:
- inventory refused the order (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION): a ServiceError
  with inventory's own code and metadata (UNKNOWN_SKU, OUT_OF_STOCK...) for our caller;
- inventory could not be reached, or failed: `InventoryUnavailable`. Perhaps nothing was
  reserved, perhaps inventory committed and its answer was lost (killed, cancelled at shutdown, a
  reset connection on every attempt the channel made): the caller releases, to be sure;
- no answer in time: `ReservationOutcomeUnknown`, the stock may have been reserved all the same.

`release` is idempotent on inventory's side (and leaves a tombstone for an order it never saw, so
a reservation arriving late is refused): it is retried on any failure but a refusal, for as long
as `release_within` allows."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import grpc
import stamina

from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_kit.errors import ErrorKind, ServiceError
from orderflow_kit.grpc_client import error_detail
from orderflow_kit.request_context import outgoing_metadata

_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT: ErrorKind.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: ErrorKind.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: ErrorKind.FAILED_PRECONDITION,
}


class InventoryUnavailable(Exception):
    """Inventory could not be reached or failed. From ReserveStock: it may have reserved nothing,
    or reserved and lost its answer. From ReleaseStock (after every retry): nothing was released."""


class ReservationOutcomeUnknown(Exception):
    """ReserveStock ran out of time: inventory may have reserved the stock, or may still do so."""


class PricedLine(NamedTuple):
    """A line of an order as inventory reserved it."""

    sku: str
    quantity: int
    # Inventory's catalog price at reservation time: the price the order is charged.
    unit_price_cents: int


@dataclass(frozen=True)
class Reservation:
    currency: str
    lines: tuple[PricedLine, ...]


class InventoryClient:
    def __init__(
        self, channel: grpc.aio.Channel, *, release_timeout: float = 2.0, release_within: float = 600.0
    ) -> None:
        self._stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        self._release_timeout = release_timeout
        self._release_within = release_within

    async def reserve(self, order_id: uuid.UUID, quantities: Mapping[str, int], *, time_limit: float) -> Reservation:
        """Reserve every line or none (inventory is idempotent per order id, so retries are safe)."""
        request = inventory_pb2.ReserveStockRequest(
            order_id=str(order_id),
            items=[inventory_pb2.StockLine(sku=sku, quantity=quantity) for sku, quantity in quantities.items()],
        )
        try:
            reply = await self._stub.ReserveStock(request, timeout=time_limit, metadata=outgoing_metadata())
        except grpc.aio.AioRpcError as error:
            raise _reservation_failure(error) from error
        return Reservation(
            currency=reply.currency,
            lines=tuple(PricedLine(line.sku, line.quantity, line.unit_price_cents) for line in reply.lines),
        )

    async def release(self, order_id: uuid.UUID) -> None:
        """Give the order's stock back, retrying (with backoff, up to 5 s apart) on any failure but a
        refusal: inventory away, slow, restarting, or failing (a deadlock it could not resolve
        answers UNKNOWN). ReleaseStock is idempotent, so a retry after a lost answer is harmless.

        Raises InventoryUnavailable when inventory did not confirm within `release_within` seconds."""
        request = inventory_pb2.ReleaseStockRequest(order_id=str(order_id))
        try:
            async for attempt in stamina.retry_context(
                on=_worth_another_release, attempts=None, timeout=self._release_within
            ):
                with attempt:
                    await self._stub.ReleaseStock(request, timeout=self._release_timeout, metadata=outgoing_metadata())
        except grpc.aio.AioRpcError as error:
            raise InventoryUnavailable(f"ReleaseStock failed: {error.code().name} {error.details()}") from error


def _reservation_failure(error: grpc.aio.AioRpcError) -> Exception:
    code = error.code()
    if code in _REFUSALS:
        detail = error_detail(error)
        return ServiceError(_REFUSALS[code], detail.code or "INVENTORY_REFUSED", error.details() or "", detail.metadata)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ReservationOutcomeUnknown("ReserveStock did not answer in time")
    return InventoryUnavailable(f"ReserveStock failed: {code.name} {error.details()}")


def _worth_another_release(error: Exception) -> bool:
    """Anything but inventory's refusal (a confirmed reservation, say) may go away."""
    return isinstance(error, grpc.aio.AioRpcError) and error.code() not in _REFUSALS
