"""Page tokens carry the keyset cursor through the client unchanged, and garbage is recognised."""

import base64
import uuid
from datetime import UTC, datetime

import pytest

from orders.page_tokens import Cursor, InvalidPageToken, decode, encode


def test_a_token_gives_back_its_cursor_to_the_microsecond() -> None:
    cursor = Cursor(datetime(2026, 11, 21, 4, 31, 9, 123456, tzinfo=UTC), uuid.uuid4())

    token = encode(cursor)

    assert decode(token) == cursor
    assert token.isascii()
    assert "=" not in token


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


GARBAGE = {
    "not base64": "%%%",
    "base64 of text": b64(b"hello"),
    "not a pair": b64(b'["2026-11-21T04:31:09+00:00"]'),
    "not a list": b64(b'{"a": 1}'),
    "bad time": b64(f'["yesterday", "{uuid.uuid4()}"]'.encode()),
    "time without zone": b64(f'["2026-11-21T04:31:09", "{uuid.uuid4()}"]'.encode()),
    "bad order id": b64(b'["2026-11-21T04:31:09+00:00", "order-1"]'),
    "numbers": b64(b"[1, 2]"),
    "not utf-8": b64(b"\xff\xfe"),
    "order id not a string": b64(b'["2026-11-21T04:31:09+00:00", 5]'),
    "year 1 east of UTC": b64(f'["0001-01-01T00:00:00+14:00", "{uuid.uuid4()}"]'.encode()),
    "year 9999 west of UTC": b64(f'["9999-12-31T23:59:59-14:00", "{uuid.uuid4()}"]'.encode()),
    "nested deeper than the parser goes": b64(b"[" * 5000 + b"]" * 5000),
    "far too long": encode(Cursor(datetime(2026, 11, 21, tzinfo=UTC), uuid.uuid4())) * 3,
}


@pytest.mark.parametrize("token", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_garbled_token_is_invalid(token: str) -> None:
    with pytest.raises(InvalidPageToken):
        decode(token)
