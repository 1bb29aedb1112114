"""Keyset pagination cursors: a page token is the (created_at, order_id) of the last order a page
showed, so the next page starts strictly after it. Unlike OFFSET, a page stays correct and
cheap while new orders arrive. Tokens are opaque to clients (base64 of JSON) and carry no secret."""

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import datetime


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
    try:
        created_at, order_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = Cursor(datetime.fromisoformat(created_at), uuid.UUID(order_id))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as error:
        raise InvalidPageToken(token) from error
    if cursor.created_at.tzinfo is None:
        raise InvalidPageToken(token)
    return cursor
