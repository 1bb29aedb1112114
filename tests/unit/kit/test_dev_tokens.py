"""Development tokens: what the web app and `orderflow token` sign."""

from datetime import UTC, datetime, timedelta

import jwt

from orderflow_kit.dev_tokens import mint_token

SECRET = "a-development-secret-of-at-least-32-bytes"


def test_a_token_names_the_customer_its_scopes_and_when_it_expires() -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    token = mint_token(SECRET, "c-1", ["orders", "admin"], timedelta(minutes=30), now=now)

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False}) == {
        "sub": "c-1",
        "scope": "orders admin",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=30)).timestamp()),
    }
