"""Configuration from `ORDERFLOW_*` environment variables; one place for the names every
service and tool shares. Services extend `Settings` with what only they need."""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow_kit.nats import DUPLICATE_WINDOW_SECONDS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    # The broker drops a re-published event (same Nats-Msg-Id) within this window; a copy that
    # arrives later (the relay retrying after a longer outage) is caught by the consumers' dedupe.
    nats_duplicate_window_seconds: float = Field(default=DUPLICATE_WINDOW_SECONDS, gt=0)
    # A server URL: each service uses its own database (database-per-service) on this server.
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Each service's own database on that server.
    inventory_database: str = "inventory"
    orders_database: str = "orders"
    loyalty_database: str = "loyalty"

    listen_host: str = "127.0.0.1"
    inventory_port: int = 50051
    orders_port: int = 50052
    loyalty_port: int = 50053
    gateway_port: int = 8000

    # gRPC targets; several replicas as `ipv4:host:port,host:port` or `dns:///name:port` (calls
    # are balanced round-robin over every address, and skip one that is down).
    inventory_addr: str = "127.0.0.1:50051"
    orders_addr: str = "127.0.0.1:50052"
    loyalty_addr: str = "127.0.0.1:50053"

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    # How long a SIGTERMed server lets in-flight calls finish.
    shutdown_grace_seconds: float = 10.0
