"""`orderflow orders import FILE.jsonl`: a bulk order import through the gateway's
POST /v1/admin/orders:import, with a progress bar and a summary.

    orderflow orders import orders.jsonl [--gateway http://127.0.0.1:8000] [--token $TOKEN]

Each line of the file is one order, as the route takes it: {"customer_id", "items": [{"sku",
"quantity"}], "client_request_id"}. Every line gets an answer (its order, or why not), shown as it
arrives; refusals are printed with their line number in the file, and the summary counts orders
placed and refusals by code. Running the same file again places nothing twice (client_request_ids):
after an interruption, run it again.

The file goes in batches of --batch-lines lines, one request each, its answers read as they stream
back. Why batches: httpx, like most HTTP/1.1 clients, sends the whole request body before it reads
the response, while the gateway answers each line as it goes; with one request for a large file,
the answers would fill the connection's buffers and both sides would wait for each other.

The token: --token (or ORDERFLOW_TOKEN) with scope admin; without one, a development admin token is
minted with the secret `orderflow token` uses (ORDERFLOW_JWT_SECRET, or the one `make up` stored)."""

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orderflow_contracts.scopes import ADMIN_SCOPE, ORDERS_SCOPE
from orderflow_devstack.dev_secret import NoSecret, signing_secret
from orderflow_kit.dev_tokens import mint_token

IMPORT_PATH: Final = "/v1/admin/orders:import"
NDJSON: Final = "application/x-ndjson"
# Who a minted development token speaks for.
CLI_ADMIN: Final = "orderflow-cli"

orders_app = typer.Typer(name="orders", help="Orders: bulk import through the gateway.", no_args_is_help=True)


@dataclass
class ImportTally:
    """What an import's answers said, line by line of the file."""

    placed: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    lines: int = 0  # non-blank lines sent
    answered: int = 0

    @property
    def unanswered(self) -> int:
        return self.lines - self.answered


class ImportFailed(Exception):
    """The gateway refused a whole request (401, 403...) or could not be reached."""


def batches(path: Path, batch_lines: int) -> Iterator[tuple[int, list[str]]]:
    """(number of the batch's first line in the file, the batch's lines), blank lines included so
    that the gateway's line numbers map back onto the file's."""
    batch: list[str] = []
    first = 1
    with path.open(encoding="utf-8", errors="surrogateescape") as lines:
        for number, text in enumerate(lines, start=1):
            if not batch:
                first = number
            batch.append(text.rstrip("\n"))
            if len(batch) >= batch_lines:
                yield first, batch
                batch = []
    if batch:
        yield first, batch


def import_file(
    client: httpx.Client,
    path: Path,
    *,
    token: str,
    batch_lines: int,
    on_answer: Any = lambda file_line, answer: None,
) -> ImportTally:
    """Send `path` in batches and tally the answers; `on_answer(file_line, answer)` sees each."""
    tally = ImportTally()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": NDJSON}
    for first, batch in batches(path, batch_lines):
        body = "\n".join(batch).encode("utf-8", errors="surrogateescape") + b"\n"
        tally.lines += sum(1 for text in batch if text.strip())
        try:
            with client.stream("POST", IMPORT_PATH, content=body, headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    raise ImportFailed(_refusal(response))
                for text in response.iter_lines():
                    if not text.strip():
                        continue
                    answer = json.loads(text)
                    tally.answered += 1
                    if "order" in answer:
                        tally.placed += 1
                    else:
                        tally.refused[answer["problem"]["code"]] += 1
                    on_answer(first + answer["line"] - 1, answer)
        except httpx.HTTPError as error:
            raise ImportFailed(f"the gateway could not be reached or went away: {error}") from error
    return tally


def _refusal(response: httpx.Response) -> str:
    try:
        problem = response.json()
        return f"{response.status_code} {problem['code']}: {problem['detail']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"


def _token(given: str | None, state_dir: Path) -> str:
    if given:
        return given
    try:
        secret = signing_secret(state_dir)
    except NoSecret as error:
        raise typer.BadParameter(f"give --token (scope admin), or {error}", param_hint="--token") from None
    return mint_token(secret, CLI_ADMIN, [ORDERS_SCOPE, ADMIN_SCOPE], timedelta(hours=1))


def _count_lines(path: Path) -> int:
    with path.open(encoding="utf-8", errors="surrogateescape") as lines:
        return sum(1 for text in lines if text.strip())


@orders_app.command("import")
def import_orders(
    file: Annotated[
        Path, typer.Argument(help="JSON Lines: one order per line.", exists=True, dir_okay=False, readable=True)
    ],
    gateway: Annotated[
        str, typer.Option(envvar="ORDERFLOW_GATEWAY_URL", help="The gateway's base URL.")
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ORDERFLOW_TOKEN",
            help="A bearer token with scope admin. Without one, a development admin token "
            "(as `orderflow token --admin` mints).",
            show_default=False,
        ),
    ] = None,
    batch_lines: Annotated[int, typer.Option(min=1, max=10_000, help="Lines per request.")] = 500,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Where `make up` stored the development JWT secret.")
    ] = Path(".state"),
) -> None:
    """Place every order of FILE through the gateway, showing progress; print each refused line and a
    summary. Exit 0 when every line placed its order, 1 when some were refused, 2 when the import
    could not finish (run it again: nothing is placed twice)."""
    console = Console(stderr=True)
    bearer = _token(token, state_dir)
    total = _count_lines(file)
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        Progress(*columns, console=console, transient=False) as progress,
        httpx.Client(base_url=gateway, timeout=httpx.Timeout(30.0, read=None), trust_env=False) as client,
    ):
        task = progress.add_task("import", total=total)

        def on_answer(file_line: int, answer: dict[str, Any]) -> None:
            progress.advance(task)
            if "problem" in answer:
                problem = answer["problem"]
                progress.console.print(
                    f"line {file_line}: {problem['status']} {problem['code']}: {problem['detail']}", markup=False
                )

        try:
            tally = import_file(client, file, token=bearer, batch_lines=batch_lines, on_answer=on_answer)
        except ImportFailed as error:
            console.print(f"orderflow orders import: {error}", markup=False)
            console.print("Run it again: orders already placed are answered, not placed twice.")
            raise typer.Exit(2) from None
    console.print(_summary(tally))
    raise typer.Exit(0 if tally.placed == tally.lines else 1)


def _summary(tally: ImportTally) -> Table:
    table = Table(title="import summary", show_header=False)
    table.add_row("lines", str(tally.lines))
    table.add_row("orders placed (or placed before)", str(tally.placed))
    for code, count in sorted(tally.refused.items()):
        table.add_row(f"refused: {code}", str(count))
    if tally.unanswered:
        table.add_row("not answered", str(tally.unanswered))
    return table
