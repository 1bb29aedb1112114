"""docs/errors.md's tables are the code's: regenerate them with `make docs`."""

import re
from pathlib import Path

import pytest

from gateway.errors_document import render
from gateway.problem_codes import PROBLEM_TYPES

COMMITTED = Path(__file__).parents[3] / "docs" / "errors.md"


def test_the_committed_tables_are_the_codes() -> None:
    page = COMMITTED.read_text(encoding="utf-8")
    assert page == render(page), "docs/errors.md's tables differ from the code: run `make docs`"


def documented_codes() -> dict[str, tuple[int, ...]]:
    """docs/errors.md's "Codes" table, read as a client would: each code and its HTTP statuses."""
    text = COMMITTED.read_text(encoding="utf-8")
    table = text.split("<!-- BEGIN codes:", 1)[1].split("<!-- END codes -->", 1)[0]
    rows = [line.split("|")[1:3] for line in table.splitlines()[3:]]
    return {code.strip().strip("`"): tuple(int(status) for status in re.findall(r"\d{3}", http)) for code, http in rows}


def test_the_code_table_is_the_one_docs_errors_md_documents() -> None:
    assert documented_codes() == {code: kind.statuses for code, kind in PROBLEM_TYPES.items()}


def test_a_page_without_a_place_for_each_table_is_refused() -> None:
    page = COMMITTED.read_text(encoding="utf-8")
    without_codes = re.sub(r"<!-- BEGIN codes:.*?<!-- END codes -->", "", page, flags=re.DOTALL)

    with pytest.raises(ValueError, match="codes"):
        render(without_codes)
