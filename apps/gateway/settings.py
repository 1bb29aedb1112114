"""What only the gateway needs on top of the shared settings: how long it waits for others, and
how it verifies bearer tokens (gateway.auth), how large a request body it takes, how it streams
live events (gateway.live_events)."""

from pydantic import Field, SecretStr

from orderflow_kit.settings import Settings


class GatewaySettings(Settings):
    # Every gRPC call carries this deadline, so a stuck dependency costs one timeout, never a hung request.
    grpc_deadline_seconds: float = 5.0
    # /readyz answers within about this long even when a dependency hangs.
    readiness_timeout_seconds: float = 1.0

    # Bearer tokens: either a shared secret (development, HS256; `make up` sets one) or an identity
    # provider's JWKS URL (RS256), which needs the issuer and audience its tokens carry for us.
    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # A larger request body is refused with 413 BODY_TOO_LARGE while it streams in (gateway.body_limit).
    max_request_body_bytes: int = Field(default=64 * 1024, ge=1)

    # Each JetStream request (opening a live event feed, reading or replaying a dead letter) waits at most this long.
    broker_timeout_seconds: float = Field(default=5.0, gt=0)
    # Live event feeds (gateway.live_events): a comment line this often, so that proxies keep an idle
    # connection open and clients notice a dead one; the `retry:` hint (milliseconds)
    # a client waits before it reconnects; and how long before an order's creation its feed starts to
    # read the streams (room for clock skew between the orders service and NATS).
    live_events_heartbeat_seconds: float = Field(default=15.0, gt=0)
    live_events_retry_ms: int = Field(default=3000, ge=0)
    live_events_lookback_seconds: float = Field(default=30.0, ge=0)
