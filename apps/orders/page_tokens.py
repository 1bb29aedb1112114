"""Keyset pagination cursors: a page token is the (created_at, order_id) of the last order a page
showed, so the next page starts strictly after it. Unlike OFFSET, a page stays correct and
cheap while new orders arrive. Tokens carry no secret; clients pass them back as given.

A token is `<microseconds from the Unix epoch to created_at>.<order id>`
(orderflow_contracts.identifiers.PAGE_TOKEN_PATTERN): every string of that shape is a cursor,
so the OpenAPI document's pattern says exactly which tokens are accepted, and one that names no
order still names a place in the list (the page after it)."""

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orderflow_contracts.identifiers import PAGE_TOKEN_PATTERN

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TOKEN = re.compile(PAGE_TOKEN_PATTERN)


class InvalidPageToken(ValueError):
    """The token is not of the shape `encode` gives."""


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    order_id: uuid.UUID


def encode(cursor: Cursor) -> str:
    """Exact to the microsecond, as PostgreSQL stores times; orders are never older than the epoch."""
    return f"{(cursor.created_at - _EPOCH) // timedelta(microseconds=1)}.{cursor.order_id}"


def decode(token: str) -> Cursor:
    """The cursor a token names; InvalidPageToken for anything not of the shape `encode` gives."""
    if _TOKEN.fullmatch(token) is None:
        raise InvalidPageToken(token[:80])
    micros, order_id = token.split(".")
    # 16 digits at most: before the year 2286, well inside what datetime and PostgreSQL hold.
    return Cursor(_EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(order_id))
