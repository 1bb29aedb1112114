"""The gateway's token rules without a request: which configurations it starts with, what a
principal may read, and challenges that stay valid header syntax whatever a token's error says."""

from typing import Any

import pytest

from gateway.auth import AuthNotConfigured, Principal, TokenVerifier, invalid_token
from gateway.settings import GatewaySettings

SECRET = "a-development-secret-of-at-least-32-bytes"
JWKS = {"jwt_jwks_url": "https://id.example.test/jwks.json"}
PROVIDER = {**JWKS, "jwt_issuer": "https://id.example.test/", "jwt_audience": "orderflow"}


def settings(**values: Any) -> GatewaySettings:
    """Only what the test says: nothing from this process's environment."""
    return GatewaySettings.model_validate(
        {"jwt_secret": None, "jwt_jwks_url": None, "jwt_issuer": None, "jwt_audience": None, **values}
    )


def test_a_development_secret_verifies_hs256() -> None:
    verifier = TokenVerifier.from_settings(settings(jwt_secret=SECRET))

    assert (verifier.algorithm, verifier.secret, verifier.jwks) == ("HS256", SECRET, None)


def test_an_identity_providers_jwks_verifies_rs256_for_its_issuer_and_audience() -> None:
    verifier = TokenVerifier.from_settings(settings(**PROVIDER))

    assert (verifier.algorithm, verifier.secret) == ("RS256", None)
    assert (verifier.issuer, verifier.audience) == ("https://id.example.test/", "orderflow")


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({}, "No way to verify bearer tokens"),
        ({"jwt_secret": ""}, "No way to verify bearer tokens"),
        ({"jwt_secret": "x" * 31}, "too short"),
        (JWKS, "ORDERFLOW_JWT_AUDIENCE"),
        ({**JWKS, "jwt_issuer": "https://id.example.test/"}, "ORDERFLOW_JWT_AUDIENCE"),
        ({**PROVIDER, "jwt_secret": SECRET}, "both set"),
    ],
    ids=["nothing", "empty secret", "short secret", "jwks alone", "jwks without audience", "secret and jwks"],
)
def test_the_gateway_does_not_start_without_a_sound_way_to_verify_tokens(values: dict[str, Any], says: str) -> None:
    with pytest.raises(AuthNotConfigured, match=says):
        TokenVerifier.from_settings(settings(**values))


@pytest.mark.parametrize(
    ("scopes", "own", "other"),
    [
        ({"orders"}, True, False),
        ({"admin"}, True, True),
        ({"orders", "admin"}, True, True),
        (set(), False, False),
        ({"profile"}, False, False),
    ],
)
def test_a_principal_reads_its_own_data_with_orders_and_everyones_with_admin(
    scopes: set[str], own: bool, other: bool
) -> None:
    principal = Principal("c-1", frozenset(scopes))

    assert (principal.may_read("c-1"), principal.may_read("c-2")) == (own, other)


def test_a_challenge_never_carries_a_quote_a_backslash_or_a_control_character() -> None:
    problem = invalid_token('Token is missing the "exp" claim\\\r\n\u00e9')

    assert problem.headers == {
        "WWW-Authenticate": (
            'Bearer realm="orderflow", error="invalid_token", error_description="Token is missing the \'exp\' claim"'
        )
    }
    assert problem.detail == 'The bearer token was refused: Token is missing the "exp" claim\\\r\n\u00e9.'
