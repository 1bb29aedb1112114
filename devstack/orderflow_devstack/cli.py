"""The `orderflow` command: `orderflow up` runs the whole pipeline locally (`make up`),
`orderflow token` mints a development bearer token for the gateway, `orderflow dlq ...`
inspects and replays dead letters, `orderflow orders import` imports orders in bulk, and
`orderflow bench-protocols` compares the protocols alone."""

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final

import typer

from orderflow_contracts.identifiers import is_customer_id
from orderflow_contracts.scopes import ADMIN_SCOPE, ORDERS_SCOPE
from orderflow_devstack.dev_secret import NoSecret, signing_secret
from orderflow_devstack.dlq_cli import dlq_app
from orderflow_devstack.orders_cli import orders_app
from orderflow_devstack.runner import run_topology
from orderflow_kit.dev_tokens import mint_token

app = typer.Typer(help="orderflow: run the pipeline locally, and operate it.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(orders_app, name="orders")


StateDir = Annotated[
    Path, typer.Option("--state-dir", help="Where `up` keeps the servers' data, logs and the development JWT secret.")
]


@app.command()
def up(state_dir: StateDir = Path(".state")) -> None:
    """Start the infrastructure and the four services; Ctrl-C stops everything."""
    raise typer.Exit(run_topology(state_dir))


_TTL: Final = re.compile(r"([1-9][0-9]*)([smhd])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_ttl(text: str) -> timedelta:
    """'90s', '30m', '1h', '7d' -> a timedelta; anything else is a ValueError."""
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a lifetime like 90s, 30m, 1h or 7d")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _customer_id(value: str) -> str:
    if not is_customer_id(value):
        raise typer.BadParameter(f"{value!r} is not a customer id (letters, digits, '._:-', at most 64)")
    return value


@app.command()
def token(
    customer: Annotated[
        str, typer.Option("--customer", help="The customer the token speaks for (its sub).", callback=_customer_id)
    ],
    admin: Annotated[bool, typer.Option("--admin", help="Also grant scope admin: read every customer's data.")] = False,
    ttl: Annotated[
        timedelta, typer.Option("--ttl", help="How long it is valid: 90s, 30m, 1h, 7d.", parser=parse_ttl)
    ] = "1h",  # type: ignore[assignment]  # click parses the default like any value
    state_dir: StateDir = Path(".state"),
) -> None:
    """Print a development bearer token (HS256) signed with ORDERFLOW_JWT_SECRET, or with the
    secret `orderflow up` stored: TOKEN=$(orderflow token --customer c-1)."""
    scopes = [ORDERS_SCOPE, ADMIN_SCOPE] if admin else [ORDERS_SCOPE]
    try:
        secret = signing_secret(state_dir)
    except NoSecret as error:
        typer.echo(f"orderflow token: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(mint_token(secret, customer, scopes, ttl))


@app.command("bench-protocols")
def bench_protocols(
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds each protocol is measured, after a warm-up. Default 8, or 1 with --smoke.", min=0.1),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Operations in flight, the same for every protocol. Default 32, or 4 with --smoke.", min=1),
    ] = None,
    payload_bytes: Annotated[int | None, typer.Option(help="Bytes in every message. Default 1024.", min=1)] = None,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Every row for a second at low concurrency: a check that all run.")
    ] = False,
    output_dir: Annotated[
        Path, typer.Option(help="Where <date>-protocols.json and .md are written (-protocols-smoke with --smoke).")
    ] = Path("docs/benchmarks"),
) -> None:
    """Compare gRPC, HTTP/1.1 JSON, NATS and JetStream alone, in Python on this machine: ops/s, p50,
    p99 and CPU per operation, beside the seed article's Go figures (make bench-protocols)."""
    # Imported here: the benchmark's servers and clients are no business of the services or of `orderflow up`.
    from orderflow_bench.protocols.run import run_from_command_line

    code = run_from_command_line(
        smoke=smoke, duration=duration, concurrency=concurrency, payload_bytes=payload_bytes, output_dir=output_dir
    )
    raise typer.Exit(code)


@app.command()
def bench(
    duration: Annotated[float, typer.Option(min=0.5, help="Seconds of load in each scenario.")] = 30.0,
    connections: Annotated[int, typer.Option(min=1, help="Closed loop: requests in flight at once.")] = 32,
    rate: Annotated[
        list[float] | None,
        typer.Option(
            "--rate",
            min=0.1,
            help="Open loop: orders offered per second; repeat for several.",
            show_default="50 200 400",
        ),
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            help="closed (N connections, 100 SKUs), hot (one SKU), idempotent (Idempotency-Key), open (each rate); "
            "repeat for several.",
            show_default="all",
        ),
    ] = None,
    warmup: Annotated[float, typer.Option(min=0, help="Seconds of unmeasured load first.")] = 5.0,
    lone_orders: Annotated[int, typer.Option(min=0, help="Single orders at idle, for their event latency.")] = 10,
    gateway: Annotated[
        str | None,
        typer.Option(help="Bench the pipeline running at this URL (make up, rate limits off) instead of starting one."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where the JSON, Markdown and PNG go.", show_default="docs/benchmarks; with --smoke a temp dir"
        ),
    ] = None,
    smoke: Annotated[
        bool,
        typer.Option("--smoke", help="Every scenario for 2 s at a low rate: does it work? (ignores the figures above)"),
    ] = False,
    tracing: Annotated[
        bool,
        typer.Option(
            "--tracing",
            help="Run every scenario again on a pipeline that traces every order (OTLP to a receiver in the bench) "
            "and report what it costs.",
        ),
    ] = False,
    state_dir: StateDir = Path(".state"),
) -> None:
    """Measure the pipeline under load (make bench): orders/s, latency, event latency, drain, CPU per
    order per process, memory; a table here, and JSON, Markdown and a PNG plot in --out."""
    # Imported here: the services share this package, and none of them should load the bench.
    from orderflow_bench.run import BenchOptions, run_bench, smoke_out_dir
    from orderflow_bench.scenarios import Kind
    from orderflow_bench.target import BenchError

    try:
        kinds = tuple(Kind(name) for name in scenario) if scenario else tuple(Kind)
    except ValueError:
        raise typer.BadParameter(f"choose among {', '.join(Kind)}", param_hint="--scenario") from None
    options = BenchOptions(
        duration=duration,
        connections=connections,
        rates=tuple(rate) if rate else BenchOptions.rates,
        kinds=kinds,
        warmup=warmup,
        lone_orders=lone_orders,
        gateway_url=gateway,
        state_dir=state_dir,
        tracing=tracing,
    )
    if smoke:
        options = options.smoke()
    options = replace(options, out_dir=out or (smoke_out_dir() if smoke else options.out_dir))
    try:
        run_bench(options)
    except BenchError as error:
        typer.echo(f"orderflow bench: {error}", err=True)
        raise typer.Exit(1) from None
