"""Page tokens carry the keyset cursor through the client unchanged; a token is accepted exactly
when it has the shape the OpenAPI document gives (PAGE_TOKEN_PATTERN)."""

import re
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderflow_contracts.identifiers import PAGE_TOKEN_PATTERN
from orders.page_tokens import Cursor, InvalidPageToken, decode, encode


def test_a_token_gives_back_its_cursor_to_the_microsecond() -> None:
    cursor = Cursor(datetime(2026, 11, 21, 4, 31, 9, 123456, tzinfo=UTC), uuid.uuid4())

    token = encode(cursor)

    assert decode(token) == cursor
    assert re.fullmatch(PAGE_TOKEN_PATTERN, token)


@given(st.from_regex(PAGE_TOKEN_PATTERN, fullmatch=True))
def test_every_string_of_the_documented_shape_is_a_token(token: str) -> None:
    assert encode(decode(token)) == token


ORDER_ID = "0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23"
GARBAGE = {
    "empty": "",
    "no dot": "1764748800123456" + ORDER_ID,
    "leading zero": f"01.{ORDER_ID}",
    "negative": f"-1.{ORDER_ID}",
    "17 digits": f"{10**16}.{ORDER_ID}",
    "upper-case id": f"1.{ORDER_ID.upper()}",
    "id without dashes": f"1.{uuid.UUID(ORDER_ID).hex}",
    "trailing newline": f"1.{ORDER_ID}\n",
    "the old base64 kind": "WyIyMDI2LTExLTIxVDA0OjMxOjA5KzAwOjAwIiwgIjBiN2U4ZjRjIl0",
    "non-ASCII digit": f"\u0661.{ORDER_ID}",
}


@pytest.mark.parametrize("token", GARBAGE.values(), ids=GARBAGE.keys())
def test_anything_else_is_invalid(token: str) -> None:
    with pytest.raises(InvalidPageToken):
        decode(token)
