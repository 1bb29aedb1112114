"""Bearer tokens for tests, in one place: minted as `orderflow token` mints them
(orderflow_kit.dev_tokens), with the one development secret every gateway the tests start is
given (`GATEWAY_ENV`, `JWT_SECRET`); and any claims signed with any key (`signed`), for the tokens
a gateway must refuse and for RS256 ones."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt

from orderflow_contracts.scopes import ADMIN_SCOPE, ORDERS_SCOPE
from orderflow_kit.dev_tokens import SECRET_ENV, mint_token

JWT_SECRET: Final = "orderflow-tests-only-jwt-secret-not-for-anything-else"
GATEWAY_ENV: Final = {SECRET_ENV: JWT_SECRET}
ADMIN_ID: Final = "admin-tests"


def customer_token(customer_id: str, *, ttl: timedelta = timedelta(hours=1)) -> str:
    return mint_token(JWT_SECRET, customer_id, [ORDERS_SCOPE], ttl)


def admin_token(admin_id: str = ADMIN_ID) -> str:
    """Reads every customer's data (scopes orders and admin, as `orderflow token --admin`)."""
    return mint_token(JWT_SECRET, admin_id, [ORDERS_SCOPE, ADMIN_SCOPE], timedelta(hours=1))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def as_customer(customer_id: str) -> dict[str, str]:
    """Headers that act as `customer_id` (scope orders): its own orders and balance only."""
    return bearer(customer_token(customer_id))


def as_admin(admin_id: str = ADMIN_ID) -> dict[str, str]:
    return bearer(admin_token(admin_id))


def claims(
    customer_id: str, scope: str = ORDERS_SCOPE, *, expires_in: timedelta = timedelta(hours=1)
) -> dict[str, Any]:
    """The claims of a valid token, for a test to change or leave out one of them."""
    now = datetime.now(UTC)
    return {"sub": customer_id, "scope": scope, "iat": now, "exp": now + expires_in}


def signed(
    token_claims: Mapping[str, Any], key: Any = JWT_SECRET, *, algorithm: str = "HS256", kid: str | None = None
) -> str:
    """`token_claims` as a JWS: HS256 with the tests' secret unless told otherwise."""
    return jwt.encode(dict(token_claims), key, algorithm=algorithm, headers={"kid": kid} if kid else None)
