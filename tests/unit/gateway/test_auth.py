"""The gateway's token rules without a request: which configurations it starts with, what a
principal may read, challenges that stay valid header syntax whatever a token's error says, and
which tokens it remembers (only accepted ones, only until they expire)."""

from datetime import timedelta
from typing import Any

import pytest

from gateway.auth import LEEWAY_SECONDS, AuthNotConfigured, Principal, TokenVerifier, invalid_token
from gateway.problems import Problem
from gateway.settings import GatewaySettings
from orderflow_contracts.scopes import ORDERS_SCOPE
from tests.support.polling import eventually
from tests.support.tokens import claims, signed

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


async def test_an_accepted_token_is_remembered_and_a_refused_one_is_not() -> None:
    verifier = TokenVerifier.from_settings(settings(jwt_secret=SECRET))
    token_claims = claims("c-1")
    token = signed(token_claims, SECRET)
    forged = signed(claims("c-1"), "another-secret-of-at-least-32-bytes!!")
    # Accepted until `exp` plus the leeway for clock skew: what ends a live event stream.
    expires_at = token_claims["exp"].timestamp() // 1 + LEEWAY_SECONDS

    assert verifier.remembered(token) is None
    principal = await verifier.principal(token)
    with pytest.raises(Problem):
        await verifier.principal(forged)

    assert verifier.remembered(token) == principal == Principal("c-1", frozenset({ORDERS_SCOPE}), expires_at)
    assert verifier.remembered(forged) is None


async def test_a_remembered_token_is_refused_again_once_past_its_exp_and_the_leeway() -> None:
    verifier = TokenVerifier.from_settings(settings(jwt_secret=SECRET))
    # Accepted for clock skew, for about one more second.
    token = signed(claims("c-1", expires_in=-timedelta(seconds=LEEWAY_SECONDS - 1)), SECRET)
    await verifier.principal(token)

    await eventually(lambda: verifier.remembered(token) is None, within=5, what="the token forgotten")
    with pytest.raises(Problem) as refused:
        await verifier.principal(token)
    assert refused.value.code == "INVALID_TOKEN"
