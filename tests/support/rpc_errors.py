"""What a gRPC call that must fail answered: the status code, the ErrorInfo our services attach,
and the message."""

from collections.abc import Awaitable
from typing import NamedTuple

import grpc

from orderflow_kit.grpc_client import ErrorDetail, error_detail


class Refusal(NamedTuple):
    code: grpc.StatusCode
    detail: ErrorDetail
    message: str


async def rpc_error(call: Awaitable[object]) -> Refusal:
    """Await `call`, which must fail, and say how it failed."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return Refusal(error.code(), error_detail(error), error.details() or "")
    raise AssertionError("the call succeeded")
