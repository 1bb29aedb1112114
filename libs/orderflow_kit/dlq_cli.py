"""`orderflow dlq ...`: see what consumers gave up on, and put fixed messages back.

    orderflow dlq list [--consumer loyalty] [--json]
    orderflow dlq show SEQ
    orderflow dlq replay SEQ [--payload fixed.json]

SEQ is the dead letter's sequence in the DEAD_LETTERS stream (the first column of `list`). The
mechanics (headers, Nats-Msg-Id on replay) are in orderflow_kit.dead_letters."""

import asyncio
import base64
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import nats
import typer
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table

from orderflow_kit.dead_letters import (
    ALL_DEAD_LETTERS,
    DELIVERIES,
    DeadLetter,
    DeadLetterError,
    get_dead_letter,
    list_dead_letters,
    replay_dead_letter,
)
from orderflow_kit.settings import Settings

T = TypeVar("T")

dlq_app = typer.Typer(
    name="dlq",
    help="Dead letters (stream DEAD_LETTERS): list, show, and replay what consumers gave up on.",
    no_args_is_help=True,
)

NatsUrl = Annotated[
    str | None, typer.Option("--nats-url", help="NATS server URL [default: ORDERFLOW_NATS_URL]", show_default=False)
]
Sequence = Annotated[int, typer.Argument(help="The dead letter's sequence in DEAD_LETTERS (see `list`).", min=1)]


@dlq_app.command("list")
def list_command(
    consumer: Annotated[str | None, typer.Option(help="Only this consumer's dead letters.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
    after: Annotated[int, typer.Option(min=0, help="Only sequences after this one (to page on).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """List dead letters: sequence, subject, reason, deliveries, ce-id, time, error."""
    subject = f"dlq.{consumer}.>" if consumer else ALL_DEAD_LETTERS
    letters = _run(nats_url, lambda js: list_dead_letters(js, subject=subject, after=after, limit=limit))
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(_summary(letter)))
        return
    table = Table("seq", "subject", "reason", "deliveries", "ce-id", "dead-lettered at", "error")
    for letter in letters:
        summary = _summary(letter)
        table.add_row(*(str(value) if value is not None else "" for value in summary.values()))
    _console().print(table if letters else "no dead letters")


@dlq_app.command()
def show(sequence: Sequence, nats_url: NatsUrl = None) -> None:
    """Show one dead letter as JSON: its headers and its body."""
    letter = _run(nats_url, lambda js: get_dead_letter(js, sequence))
    shown: dict[str, Any] = {
        "sequence": letter.sequence,
        "subject": letter.subject,
        "stored_at": letter.stored_at.isoformat() if letter.stored_at else None,
        "headers": letter.headers,
        **_body(letter.body),
    }
    typer.echo(json.dumps(shown, indent=2, ensure_ascii=False))


@dlq_app.command()
def replay(
    sequence: Sequence,
    payload: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, readable=True, help="Replay with this file's content as the body (a fix)."
        ),
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Publish a dead letter back to its original subject (same ce-id, new Nats-Msg-Id), then delete it."""
    body = payload.read_bytes() if payload is not None else None
    replayed = _run(nats_url, lambda js: replay_dead_letter(js, sequence, payload=body))
    typer.echo(
        f"replayed dead letter {sequence} to {replayed.subject} "
        f"(stream {replayed.stream} sequence {replayed.sequence}, ce-id {replayed.dead_letter.event_id}, "
        f"Nats-Msg-Id {replayed.msg_id})"
    )


def _summary(letter: DeadLetter) -> dict[str, str | int | None]:
    return {
        "sequence": letter.sequence,
        "subject": letter.subject,
        "reason": letter.reason,
        "deliveries": letter.headers.get(DELIVERIES),
        "ce_id": letter.event_id,
        "dead_lettered_at": letter.dead_lettered_at,
        "error": letter.error,
    }


def _body(body: bytes) -> dict[str, Any]:
    """JSON bodies as JSON, other text as text, anything else as base64."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode("ascii")}
    try:
        return {"body": json.loads(text)}
    except ValueError:
        return {"body_text": text}


def _console() -> Console:
    # Piped output (a file, a test) gets wide lines instead of a table squeezed to 80 columns.
    return Console(width=None if sys.stdout.isatty() else 240)


def _run(nats_url: str | None, action: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run one JetStream action; turn the errors an operator can cause into a message and exit 1."""
    url = nats_url or Settings().nats_url
    try:
        return asyncio.run(_with_jetstream(url, action))
    except DeadLetterError as error:
        _fail(str(error))
    except (NatsError, OSError, TimeoutError) as error:
        _fail(f"NATS at {url}: {type(error).__name__}: {error}")


async def _with_jetstream(url: str, action: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    async def quiet(_error: Exception) -> None:
        """A CLI reports a failed connection once, as its own error, not through nats-py's logger."""

    # Fail fast: nats-py's defaults retry the first connection for two minutes.
    connection = await nats.connect(
        url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.5, error_cb=quiet
    )
    try:
        return await action(connection.jetstream())
    finally:
        await connection.close()


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)
