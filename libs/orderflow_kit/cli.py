"""The `orderflow` command: `orderflow up` runs the whole pipeline locally (`make up`), and
`orderflow dlq ...` inspects and replays dead letters."""

from pathlib import Path
from typing import Annotated

import typer

from orderflow_kit.dlq_cli import dlq_app
from orderflow_kit.runner import run_topology

app = typer.Typer(help="orderflow: run the pipeline locally, and operate it.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@app.command()
def up(
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Where the embedded servers keep their data and logs.")
    ] = Path(".state"),
) -> None:
    """Start the infrastructure and the four services; Ctrl-C stops everything."""
    raise typer.Exit(run_topology(state_dir))
