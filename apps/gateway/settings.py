"""What only the gateway needs on top of the shared settings: how long it waits for others."""

from orderflow_kit.settings import Settings


class GatewaySettings(Settings):
    # Every gRPC call carries this deadline, so a stuck dependency costs one timeout, never a hung request.
    grpc_deadline_seconds: float = 5.0
    # /readyz answers within about this long even when a dependency hangs.
    readiness_timeout_seconds: float = 1.0
