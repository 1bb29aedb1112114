"""The pipeline under test: one the bench starts for itself, or one already running (`make up`).

Either way the bench needs the same things: the gateway's URL, the databases it reads event
latency from, the secret to sign its customers' tokens with, and the processes to measure. A
pipeline of its own is started as the end-to-end tests start theirs (orderflow_devstack.pipeline), with
rate limits off and logs as JSON; a running one is found through what `make up` wrote to its
state directory, and its processes by the ports they listen on."""

import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

from orderflow_bench.measured import listening_processes
from orderflow_contracts.identifiers import MAX_RESTOCK_UNITS
from orderflow_contracts.scopes import ADMIN_SCOPE, ORDERS_SCOPE
from orderflow_devstack.dev_secret import NoSecret, signing_secret
from orderflow_devstack.infra import ChildProcess, Infrastructure, ManagedServer, provide_infrastructure
from orderflow_devstack.pipeline import running_pipeline
from orderflow_kit.dev_tokens import mint_token
from orderflow_kit.settings import MAKE_UP_ENV_FILE, Settings

SKUS = tuple(f"BENCH-{number:03d}" for number in range(1, 101))
HOT_SKU = "BENCH-HOT"
PRICE_CENTS = 1000
# Stock each SKU is topped up to before the run: more than any run orders, so nothing runs out.
STOCK = {**dict.fromkeys(SKUS, 1_000_000), HOT_SKU: 10_000_000}
TOKEN_TTL = timedelta(hours=12)
RATE_LIMITS_OFF = {"ORDERFLOW_RATE_LIMITS_ENABLED": "false"}


class BenchError(Exception):
    """The pipeline cannot be benchmarked as it is; the message says what to do."""


@dataclass(frozen=True)
class Target:
    gateway_url: str
    postgres_url: str
    orders_database: str
    loyalty_database: str
    jwt_secret: str
    processes: dict[str, psutil.Process]
    # How the measured processes were found, for the report.
    found_by: str


def customer_tokens(secret: str, count: int) -> list[str]:
    """One bearer token per customer, `bench-c-001` and on."""
    return [mint_token(secret, f"bench-c-{number:03d}", [ORDERS_SCOPE], TOKEN_TTL) for number in range(1, count + 1)]


def admin_token(secret: str) -> str:
    return mint_token(secret, "bench-admin", [ORDERS_SCOPE, ADMIN_SCOPE], TOKEN_TTL)


def stock_up(gateway_url: str, secret: str) -> None:
    """Add the bench's products (a new SKU comes with its name and price) and top each one up to
    its STOCK, through the admin API, so a pipeline started by `make up` needs no catalog of ours.
    Also refuses a gateway that limits requests: the bench would measure its 429s."""
    with httpx.Client(base_url=gateway_url, timeout=30, trust_env=False) as client:
        listing = client.get("/v1/products")
        listing.raise_for_status()
        if "RateLimit-Policy" in listing.headers:
            raise BenchError(
                f"the gateway at {gateway_url} limits requests ({listing.headers['RateLimit-Policy']}): "
                "start it with ORDERFLOW_RATE_LIMITS_ENABLED=false (ORDERFLOW_RATE_LIMITS_ENABLED=false make up)"
            )
        available = {product["sku"]: product["available"] for product in listing.json()["products"]}
        lines = [
            {"sku": sku, "quantity": quantity, "name": f"Bench product {sku}", "price_cents": PRICE_CENTS}
            for sku, target in STOCK.items()
            for quantity in _chunks(target - available.get(sku, 0), MAX_RESTOCK_UNITS)
        ]
        if not lines:
            return
        answer = client.post(
            "/v1/admin/restock", json={"lines": lines}, headers={"Authorization": f"Bearer {admin_token(secret)}"}
        )
        if answer.status_code != 200:
            raise BenchError(f"restocking the bench's products failed: {answer.status_code} {answer.text}")


def _chunks(units: int, most: int) -> list[int]:
    """`units` as restock lines of at most `most` each (lines for one SKU add up); none for <= 0."""
    return [min(most, units - start) for start in range(0, max(units, 0), most)]


@contextmanager
def own_pipeline(infra: Infrastructure | None = None, env: Mapping[str, str] | None = None) -> Iterator[Target]:
    """The four services on free ports with databases of their own, on `infra`'s servers or on
    servers started for the run (from ORDERFLOW_*_URL, Docker or pip packages); all stopped at the end.
    `env` adds settings (OTEL_* for a traced run)."""
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="orderflow-bench-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        if infra is None:
            # As root, the embedded PostgreSQL runs as `nobody`, who must be able to enter it.
            work.chmod(0o755)
            infra = stack.enter_context(provide_infrastructure(work / "servers"))
        jwt_secret = secrets.token_urlsafe(32)
        pipeline = stack.enter_context(
            running_pipeline(
                infra, work, [], prefix="bench", jwt_secret=jwt_secret, env={**RATE_LIMITS_OFF, **(env or {})}
            )
        )
        processes = {name: psutil.Process(service.pid) for name, service in pipeline.services.items() if service.pid}
        servers = {"postgres": infra.postgres, "nats": infra.nats, "redis": infra.redis}
        urls = {"postgres": infra.postgres_url, "nats": infra.nats_url, "redis": infra.redis_url}
        processes |= {name: psutil.Process(pid) for name, server in servers.items() if (pid := _pid(server))}
        processes |= listening_processes({name: _port(urls[name]) for name in servers if name not in processes})
        yield Target(
            pipeline.gateway_url,
            infra.postgres_url,
            pipeline.databases["orders"],
            pipeline.databases["loyalty"],
            jwt_secret,
            processes,
            "started by the bench",
        )


def running_gateway(gateway_url: str, state_dir: Path) -> Target:
    """A pipeline started by `make up` (or alike): the servers' URLs from ORDERFLOW_*_URL or the
    file `make up` wrote to `state_dir`, the token secret from ORDERFLOW_JWT_SECRET or the state
    dir, and the processes found listening on the known ports (psutil)."""
    env_file = state_dir / MAKE_UP_ENV_FILE.name
    settings = Settings(_env_file=env_file if env_file.exists() else None)
    try:
        secret = signing_secret(state_dir)
    except NoSecret as error:
        raise BenchError(str(error)) from None
    ports = {
        "gateway": urlsplit(gateway_url).port or 80,
        "inventory": settings.inventory_port,
        "orders": settings.orders_port,
        "loyalty": settings.loyalty_port,
        "postgres": _port(settings.postgres_url),
        "nats": _port(settings.nats_url),
        "redis": _port(settings.redis_url),
    }
    processes = listening_processes(ports)
    missing = sorted(set(ports) - set(processes))
    found_by = "found listening on their ports with psutil: " + _ports_text(ports, processes)
    if missing:
        found_by += f"; not found, so not measured: {', '.join(missing)}"
    return Target(
        gateway_url.rstrip("/"),
        settings.postgres_url,
        settings.orders_database,
        settings.loyalty_database,
        secret,
        processes,
        found_by,
    )


def _ports_text(ports: Mapping[str, int], processes: Mapping[str, psutil.Process]) -> str:
    return ", ".join(f"{name} :{port} (pid {processes[name].pid})" for name, port in ports.items() if name in processes)


def _pid(server: ManagedServer | None) -> int | None:
    return server.pid if isinstance(server, ChildProcess) else None


def _port(url: str) -> int:
    port = urlsplit(url).port
    if port is None:
        raise BenchError(f"no port in {url.split('@')[-1]}")
    return port
