"""Keyset pagination cursors: a page token is the (created_at, order_id) of the last order a page
showed, so the next page starts strictly after it. Unlike OFFSET, a page stays correct and
cheap while new orders arrive. Tokens are opaque to clients (base64 of JSON) and carry no secret."""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

# `encode` makes tokens of about 110 characters.
MAX_TOKEN_CHARS = 256


class InvalidPageToken(ValueError):
    """The token was not produced by `encode` (garbled, truncated, or from another API)."""


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    order_id: uuid.UUID


def encode(cursor: Cursor) -> str:
    raw = json.dumps([cursor.created_at.isoformat(), str(cursor.order_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> Cursor:
    """The cursor in a token `encode` made; InvalidPageToken for anything else, whatever it holds."""
    try:
        return _decode(token)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, OverflowError) as error:
        raise InvalidPageToken(token[:80]) from error


def _decode(token: str) -> Cursor:
    # Checked first: a long token could hold JSON nested deeper than the parser's recursion limit.
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"longer than {MAX_TOKEN_CHARS} characters")
    created_at, order_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    if not isinstance(created_at, str) or not isinstance(order_id, str):
        raise TypeError("a cursor is a time and an order id, both strings")
    at = datetime.fromisoformat(created_at)
    if at.tzinfo is None:
        raise ValueError("a cursor's time has a UTC offset")
    # In UTC, as the database compares it; OverflowError for a time at the edge of the calendar
    # (year 1 east of UTC, year 9999 west of it), which the database driver could not encode.
    return Cursor(at.astimezone(UTC), uuid.UUID(order_id))
