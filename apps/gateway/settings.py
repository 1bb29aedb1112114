"""What only the gateway needs on top of the shared settings: how long it waits for others, and
how it verifies bearer tokens (gateway.auth), how large a request body it takes, how many
requests a client may send (gateway.rate_limits), how it streams live events (gateway.live_events)."""

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
    # How long an Idempotency-Key's answer is replayed (gateway.idempotency): 24 h by default.
    idempotency_key_ttl_seconds: int = Field(default=24 * 60 * 60, ge=1)

    # Rate limits (gateway.rate_limits): a client IP on every /v1 request, and a customer (the
    # token's sub) on every authenticated one, may send `burst` requests at once and earns them
    # back at `per_second` (0.5: 30 a minute). Kept in Redis; off while Redis does not answer.
    rate_limits_enabled: bool = True
    rate_limit_ip_per_second: float = Field(default=25.0, gt=0)
    rate_limit_ip_burst: int = Field(default=50, ge=1)
    rate_limit_customer_per_second: float = Field(default=10.0, gt=0)
    rate_limit_customer_burst: int = Field(default=20, ge=1)
    # A limit check waits at most this long for Redis, then lets the request pass.
    rate_limit_redis_timeout_seconds: float = Field(default=0.25, gt=0)

    # Each JetStream request (opening a live event feed, reading or replaying a dead letter) waits at most this long.
    broker_timeout_seconds: float = Field(default=5.0, gt=0)
    # Live event feeds (gateway.live_events): a comment line this often, so that proxies keep an idle
    # connection open and clients notice a dead one; the `retry:` hint (milliseconds)
    # a client waits before it reconnects; and how long before an order's creation its feed starts to
    # read the streams (room for clock skew between the orders service and NATS).
    live_events_heartbeat_seconds: float = Field(default=15.0, gt=0)
    live_events_retry_ms: int = Field(default=3000, ge=0)
    live_events_lookback_seconds: float = Field(default=30.0, ge=0)
    # Live event streams one customer (or admin) may hold open at once in one gateway process.
    live_events_max_per_customer: int = Field(default=5, ge=1)
    # Live stock streams (gateway.stock_events) one gateway process holds open at once, each a
    # WatchStock call to inventory; beyond this a new one is a 429.
    stock_events_max_open: int = Field(default=1000, ge=1)

    # The durable consumers of ORDERS whose backlog GET /v1/admin/pipeline shows (gateway.admin_pipeline):
    # the same settings loyalty and inventory name theirs with.
    loyalty_consumer: str = "loyalty"
    inventory_consumer: str = "inventory"
    # GET /v1/admin/reconciliation (gateway.reconciliation): how long an order's event may wait in
    # the outbox before the check calls it late.
    reconciliation_lag_seconds: float = Field(default=10.0, gt=0)
