"""`orderflow dlq ...`: see what consumers gave up on, put fixed messages back, or drop them.

    orderflow dlq count [--consumer loyalty] [--json]
    orderflow dlq list [--consumer loyalty] [--json]
    orderflow dlq show SEQ
    orderflow dlq replay SEQ [--payload fixed.json]
    orderflow dlq replay --all [--consumer loyalty]
    orderflow dlq purge (SEQ | --consumer loyalty | --all) --yes

SEQ is the dead letter's sequence in the DEAD_LETTERS stream (the first column of `list`). Nothing
here ever prompts (CI has no terminal): `purge` refuses to run without --yes instead. The
mechanics (headers, Nats-Msg-Id on replay) are in orderflow_kit.dead_letters."""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import nats
import typer
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table

from orderflow_kit.dead_letters import (
    DeadLetterError,
    Replayed,
    count_dead_letters,
    dead_letter_filter,
    delete_dead_letter,
    get_dead_letter,
    page_of_dead_letters,
    purge_dead_letters,
    replay_dead_letter,
    replay_dead_letters,
)
from orderflow_kit.redaction import redact
from orderflow_kit.settings import MAKE_UP_ENV_FILE, Settings

T = TypeVar("T")

dlq_app = typer.Typer(
    name="dlq",
    help="Dead letters (stream DEAD_LETTERS): count, list, show, replay or purge what consumers gave up on.",
    no_args_is_help=True,
)

NatsUrl = Annotated[
    str | None,
    typer.Option(
        "--nats-url",
        help="NATS server URL, nats://user:password@host:port [default: ORDERFLOW_NATS_URL, else the one "
        "`make up` wrote to .state/orderflow.env; both keep the password off the command line]",
        show_default=False,
    ),
]
SEQUENCE_HELP = "The dead letter's sequence in DEAD_LETTERS (see `list`)."
Sequence = Annotated[int, typer.Argument(help=SEQUENCE_HELP, min=1)]
OptionalSequence = Annotated[int | None, typer.Argument(help=SEQUENCE_HELP, min=1)]
Consumer = Annotated[str | None, typer.Option(help="Only this consumer's dead letters.")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of text.")]


@dlq_app.command()
def count(consumer: Consumer = None, as_json: AsJson = False, nats_url: NatsUrl = None) -> None:
    """How many dead letters there are, per consumer and original subject, and in total."""
    subject = _subject(consumer)
    counts = _run(nats_url, lambda js: count_dead_letters(js, subject=subject))
    if as_json:
        typer.echo(json.dumps({"total": sum(counts.values()), "subjects": counts}))
        return
    for subject, letters in counts.items():
        typer.echo(f"{subject} {letters}")
    typer.echo(_how_many(sum(counts.values()), consumer))


@dlq_app.command("list")
def list_command(
    consumer: Consumer = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, oldest first.")] = 100,
    after: Annotated[int, typer.Option(min=0, help="Only sequences after this one (to page on).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """List dead letters, oldest first, after a line saying how many there are."""
    subject = _subject(consumer)
    page = _run(nats_url, lambda js: page_of_dead_letters(js, subject=subject, after=after, limit=limit))
    if as_json:
        for letter in page.letters:
            typer.echo(json.dumps(letter.summary()))
        return
    typer.echo(f"{_how_many(page.total, consumer)}; showing {len(page.letters)}")
    if not page.letters:
        return
    table = Table(
        "seq", "subject", "reason", "deliveries", "ce-id", "first failure", "dead-lettered at", "error class", "error"
    )
    for letter in page.letters:
        summary = letter.summary()
        table.add_row(*(str(summary[column] or "") for column in _TABLE_COLUMNS))
    _console().print(table)


@dlq_app.command()
def show(sequence: Sequence, nats_url: NatsUrl = None) -> None:
    """Show one dead letter as JSON: its headers and its body."""
    letter = _run(nats_url, lambda js: get_dead_letter(js, sequence))
    typer.echo(json.dumps(letter.details(), indent=2, ensure_ascii=False))


@dlq_app.command()
def replay(
    sequence: OptionalSequence = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Replay every dead letter (with --consumer: every one of that consumer's).")
    ] = False,
    consumer: Annotated[str | None, typer.Option(help="With --all: only this consumer's dead letters.")] = None,
    payload: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, readable=True, help="Replay with this file's content as the body (a fix)."
        ),
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Publish dead letters back to their original subject (same ce-id, new Nats-Msg-Id), then delete them.

    --all replays the dead letters there are when it starts; one that fails again meanwhile is
    dead-lettered anew and stays for the next run."""
    if replay_all:
        if sequence is not None or payload is not None:
            _usage_error("--all replays stored bodies; it takes neither SEQ nor --payload")
        subject = _subject(consumer)
        bulk = _run(nats_url, lambda js: replay_dead_letters(js, subject=subject))
        for replayed in bulk.replayed:
            typer.echo(_replayed_line(replayed))
        for skipped, why in bulk.skipped:
            typer.echo(f"error: dead letter {skipped} not replayed: {why}", err=True)
        typer.echo(f"replayed {len(bulk.replayed)} dead letter(s), {len(bulk.skipped)} not replayable")
        if bulk.skipped:
            raise typer.Exit(1)
        return
    if sequence is None:
        _usage_error("name the dead letter to replay (SEQ), or pass --all")
    if consumer is not None:
        _usage_error("--consumer goes with --all")
    body = payload.read_bytes() if payload is not None else None
    replayed = _run(nats_url, lambda js: replay_dead_letter(js, sequence, payload=body))
    typer.echo(_replayed_line(replayed))


@dlq_app.command()
def purge(
    sequence: OptionalSequence = None,
    purge_all: Annotated[bool, typer.Option("--all", help="Delete every dead letter of every consumer.")] = False,
    consumer: Annotated[str | None, typer.Option(help="Delete every dead letter of this consumer.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Required: purging cannot be undone.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Delete dead letters for good: one (SEQ), one consumer's (--consumer), or all (--all). Needs --yes."""
    if sum((sequence is not None, consumer is not None, purge_all)) != 1:
        _usage_error("say what to purge: SEQ, --consumer NAME or --all (exactly one)")
    if not yes:
        _usage_error("purging cannot be undone; add --yes to go ahead")
    if sequence is not None:
        deleted = _run(nats_url, lambda js: delete_dead_letter(js, sequence))
        typer.echo(f"purged dead letter {sequence} (ce-id {deleted.event_id}, {deleted.subject})")
        return
    subject = _subject(consumer)
    purged = _run(nats_url, lambda js: purge_dead_letters(js, subject=subject))
    typer.echo(f"purged {purged} dead letter(s){_scope(consumer)}")


_TABLE_COLUMNS = (
    "sequence",
    "subject",
    "reason",
    "deliveries",
    "ce_id",
    "first_failure_at",
    "dead_lettered_at",
    "error_class",
    "error",
)


def _subject(consumer: str | None) -> str:
    """A --consumer that is not a consumer's name is a usage error, found before connecting."""
    try:
        return dead_letter_filter(consumer)
    except DeadLetterError as error:
        _usage_error(str(error))


def _scope(consumer: str | None) -> str:
    return f" of consumer {consumer}" if consumer else ""


def _how_many(total: int, consumer: str | None) -> str:
    return f"{total} dead letter(s){_scope(consumer)}"


def _replayed_line(replayed: Replayed) -> str:
    return (
        f"replayed dead letter {replayed.dead_letter.sequence} to {replayed.subject} "
        f"(stream {replayed.stream} sequence {replayed.sequence}, ce-id {replayed.dead_letter.event_id}, "
        f"Nats-Msg-Id {replayed.msg_id})"
    )


def _console() -> Console:
    # Piped output (a file, a test) gets wide lines instead of a table squeezed to 80 columns.
    return Console(width=None if sys.stdout.isatty() else 240)


def _run(nats_url: str | None, action: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run one JetStream action; turn the errors an operator can cause into a message and exit 1."""
    # The environment first, then what `make up` wrote for the tools (the URL with its password).
    url = nats_url or Settings(_env_file=MAKE_UP_ENV_FILE).nats_url
    try:
        return asyncio.run(_with_jetstream(url, action))
    except DeadLetterError as error:
        _fail(str(error))
    except (NatsError, OSError, TimeoutError) as error:
        _fail(redact(f"NATS at {url}: {type(error).__name__}: {error}"))


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


def _usage_error(message: str) -> NoReturn:
    """A command line that does not say what to do: exit 2, as for any other usage error."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
