"""Development bearer tokens: HS256 JWTs signed with ORDERFLOW_JWT_SECRET, the kind the gateway
verifies when no JWKS is configured and the web app mints for its sign-in. Real deployments get
RS256 tokens from their identity provider; nothing here is for them.

Where a developer's secret comes from (`make up` stores one) is the dev stack's business:
orderflow_devstack.dev_secret."""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

import jwt

SECRET_ENV: Final = "ORDERFLOW_JWT_SECRET"
JWKS_URL_ENV: Final = "ORDERFLOW_JWT_JWKS_URL"
ALGORITHM: Final = "HS256"
# RFC 7518 3.2: an HS256 key is at least as long as the hash, 32 bytes; the gateway refuses shorter.
MIN_SECRET_BYTES: Final = 32


def mint_token(
    secret: str, customer_id: str, scopes: Iterable[str], ttl: timedelta, *, now: datetime | None = None
) -> str:
    """A token for `customer_id` (its `sub`) with these scopes, valid for `ttl` from `now`."""
    issued = now or datetime.now(UTC)
    claims = {"sub": customer_id, "scope": " ".join(scopes), "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
