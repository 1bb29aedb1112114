"""docs/errors.md's tables, rendered from the code: the gRPC status table from
gateway.grpc_problems and the "Codes" table from gateway.problem_codes. The prose around them is
written by hand; each table sits between two markers,

    <!-- BEGIN codes: generated from gateway.problem_codes by `make docs` -->
    ...
    <!-- END codes -->

and `make docs` (`python -m gateway.errors_document docs/errors.md`) rewrites what is between
them. A test fails when the committed page differs from its rendering, so a new code, or a
changed meaning, shows up in review as a change to the page."""

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

import grpc

from gateway.grpc_problems import DEPENDENCY_FAILED, GRPC_TO_HTTP
from gateway.problem_codes import PROBLEM_TYPES

_REGION: Final = re.compile(r"(<!-- BEGIN (?P<name>[\w-]+): [^\n]*-->\n).*?(<!-- END (?P=name) -->)", re.DOTALL)


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def grpc_status_table() -> str:
    unlisted = [status for status in grpc.StatusCode if status not in GRPC_TO_HTTP and status != grpc.StatusCode.OK]
    fallback_status, fallback_code = DEPENDENCY_FAILED
    others = "any other (" + ", ".join(f"`{status.name}`" for status in unlisted) + ")"
    rows = [
        *(
            _row(f"`{status.name}`", f"{http.value} {http.phrase}", f"`{code}`")
            for status, (http, code) in GRPC_TO_HTTP.items()
        ),
        _row(others, f"{fallback_status.value} {fallback_status.phrase}", f"`{fallback_code}`"),
    ]
    return "\n".join([_row("gRPC status", "HTTP status", "default code (no ErrorInfo)"), "|---|---|---|", *rows])


def codes_table() -> str:
    rows = (
        _row(f"`{code}`", " / ".join(map(str, kind.statuses)), kind.source, kind.meaning)
        for code, kind in PROBLEM_TYPES.items()
    )
    return "\n".join([_row("code", "HTTP", "from", "meaning"), "|---|---|---|---|", *rows])


TABLES: Final[Mapping[str, Callable[[], str]]] = MappingProxyType(
    {"grpc-statuses": grpc_status_table, "codes": codes_table}
)


def render(page: str) -> str:
    """`page` with every table between its markers rendered anew; every table must have its place."""
    found: list[str] = []

    def rendered(region: re.Match[str]) -> str:
        name = region["name"]
        if name not in TABLES:
            raise ValueError(f"no table is called {name!r} (known: {', '.join(TABLES)})")
        found.append(name)
        return f"{region[1]}{TABLES[name]()}\n{region[3]}"

    page = _REGION.sub(rendered, page)
    if missing := [name for name in TABLES if name not in found]:
        raise ValueError(f"no place marked for the tables {', '.join(missing)}")
    return page


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
