"""Configuration from `ORDERFLOW_*` environment variables; one place for the names every
service and tool shares. Services extend `Settings` with what only they need."""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow_kit.fault_bucket import BUCKET as FAULTS_BUCKET
from orderflow_kit.fault_bucket import BUCKET_NAME_PATTERN
from orderflow_kit.grpc_keepalive import DEFAULT_KEEPALIVE
from orderflow_kit.nats import DUPLICATE_WINDOW_SECONDS

# Where `make up` writes the servers' URLs, passwords included, for the tools run beside it.
MAKE_UP_ENV_FILE = Path(".state") / "orderflow.env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    # The broker drops a re-published event (same Nats-Msg-Id) within this window; a copy that
    # arrives later (the relay retrying after a longer outage) is caught by the consumers' dedupe.
    nats_duplicate_window_seconds: float = Field(default=DUPLICATE_WINDOW_SECONDS, gt=0)
    # The JetStream key-value bucket of the fault flags (orderflow_kit.fault_bucket,
    # docs/fault-flags.md): every service watches it, the gateway reads and writes it.
    faults_bucket: str = Field(default=FAULTS_BUCKET, pattern=BUCKET_NAME_PATTERN)
    # A server URL: each service uses its own database (database-per-service) on this server.
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Each service's own database on that server.
    inventory_database: str = "inventory"
    orders_database: str = "orders"
    loyalty_database: str = "loyalty"
    # Connections each service keeps open to its database, all opened at start.
    database_pool_size: int = Field(default=10, ge=1)

    listen_host: str = "127.0.0.1"
    inventory_port: int = 50051
    orders_port: int = 50052
    loyalty_port: int = 50053
    gateway_port: int = 8000
    # Each gRPC service's Prometheus metrics, at http://<listen_host>:<port>/metrics (the gateway
    # serves its own at /metrics on gateway_port); 0 picks a free port, which the log's `metrics` line names.
    inventory_metrics_port: int = Field(default=9151, ge=0)
    orders_metrics_port: int = Field(default=9152, ge=0)
    loyalty_metrics_port: int = Field(default=9153, ge=0)

    # gRPC targets; several replicas as `ipv4:host:port,host:port` or `dns:///name:port` (calls
    # are balanced round-robin over every address, and skip one that is down).
    inventory_addr: str = "127.0.0.1:50051"
    orders_addr: str = "127.0.0.1:50052"
    loyalty_addr: str = "127.0.0.1:50053"

    # gRPC between services over TLS (orderflow_kit.grpc_tls, docs/security.md); plaintext when unset.
    # PEM files. A server serves TLS with its certificate (chain) and key.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    # The CA that signed the certificates: a client dials over TLS and trusts servers it signed;
    # a server that requires client certificates accepts only those it signed.
    grpc_tls_ca: Path | None = None
    # Mutual TLS: a server refuses clients without a certificate from grpc_tls_ca, and a client
    # presents this certificate and key.
    grpc_tls_require_client_cert: bool = False
    grpc_tls_client_cert: Path | None = None
    grpc_tls_client_key: Path | None = None

    # gRPC keepalive (orderflow_kit.grpc_keepalive, docs/operations.md#grpc-keepalive): clients ping
    # every connection this often, idle or not, and drop it when a ping is unanswered this long;
    # servers close each connection after its max age (GOAWAY, then a grace for calls in flight).
    grpc_keepalive_seconds: float = Field(default=DEFAULT_KEEPALIVE.time_seconds, gt=0)
    grpc_keepalive_timeout_seconds: float = Field(default=DEFAULT_KEEPALIVE.timeout_seconds, gt=0)
    grpc_max_connection_age_seconds: float = Field(default=DEFAULT_KEEPALIVE.max_connection_age_seconds, gt=0)
    grpc_max_connection_age_grace_seconds: float = Field(
        default=DEFAULT_KEEPALIVE.max_connection_age_grace_seconds, ge=0
    )

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    # How long a SIGTERMed server lets in-flight calls finish.
    shutdown_grace_seconds: float = 10.0

    @model_validator(mode="after")
    def _grpc_tls_is_complete(self) -> Self:
        """Refuse at start-up a TLS set-up that would only fail at the first call."""
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise ValueError("set both grpc_tls_cert and grpc_tls_key, or neither")
        if (self.grpc_tls_client_cert is None) != (self.grpc_tls_client_key is None):
            raise ValueError("set both grpc_tls_client_cert and grpc_tls_client_key, or neither")
        if self.grpc_tls_client_cert is not None and self.grpc_tls_ca is None:
            raise ValueError("a client certificate needs grpc_tls_ca: clients use TLS only with a CA to trust")
        if self.grpc_tls_require_client_cert and (self.grpc_tls_cert is None or self.grpc_tls_ca is None):
            raise ValueError("grpc_tls_require_client_cert needs grpc_tls_cert, grpc_tls_key and grpc_tls_ca")
        return self
