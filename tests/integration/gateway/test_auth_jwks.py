"""Real deployments: RS256 tokens from an identity provider, verified with the keys its JWKS URL
serves (here a tiny HTTP server in the test, keys generated at test time), and only when they
were issued by that provider for this gateway (issuer and audience)."""

import functools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway.app import create_app
from gateway.settings import GatewaySettings
from orderflow_devstack.infra import free_port
from tests.integration.gateway.conftest import client_of
from tests.integration.gateway.fakes import Fakes
from tests.integration.gateway.test_errors import assert_problem
from tests.support.tokens import bearer, claims, customer_token, signed

ISSUER = "https://id.example.test/"
AUDIENCE = "orderflow-gateway"
KID = "key-1"


class JwksServer:
    """Serves `keys` as a JWK Set at `url` from a thread, as an identity provider would."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test says what went wrong."""

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/.well-known/jwks.json"
        # A short poll interval: shutdown() waits for the serving loop to notice it.
        serve = functools.partial(self._http.serve_forever, poll_interval=0.02)
        self._thread = threading.Thread(target=serve, name="jwks", daemon=True)

    def __enter__(self) -> "JwksServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return new_rsa_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return new_rsa_key()


@pytest.fixture
def jwks(signing_key: rsa.RSAPrivateKey) -> Iterator[JwksServer]:
    with JwksServer() as server:
        server.keys.append(public_jwk(signing_key, KID))
        yield server


def with_jwks(settings: GatewaySettings, url: str) -> GatewaySettings:
    return settings.model_copy(
        update={"jwt_secret": None, "jwt_jwks_url": url, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    )


@pytest.fixture
async def gateway(settings: GatewaySettings, jwks: JwksServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(create_app(with_jwks(settings, jwks.url))) as client:
        yield client


def provider_claims(customer_id: str, **changes: Any) -> dict[str, Any]:
    return {**claims(customer_id), "iss": ISSUER, "aud": AUDIENCE, **changes}


def without(token_claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in token_claims.items() if key != name}


async def test_a_token_signed_with_a_key_from_the_jwks_is_accepted(
    gateway: httpx.AsyncClient, signing_key: rsa.RSAPrivateKey
) -> None:
    token = rs256(provider_claims("c-idp"), signing_key)

    response = await gateway.post(
        "/v1/orders", json={"items": [{"sku": "SKU-1", "quantity": 1}]}, headers=bearer(token)
    )

    assert response.status_code == 201, response.text
    assert response.json()["customer_id"] == "c-idp"


def rs256(token_claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str = KID) -> str:
    return signed(token_claims, key, algorithm="RS256", kid=kid)


# What is wrong with the token: its claims, whether the JWKS key signed it, the kid it names.
REFUSED = {
    "wrong audience": (provider_claims("c-1", aud="another-app"), True, KID),
    "no audience": (without(provider_claims("c-1"), "aud"), True, KID),
    "wrong issuer": (provider_claims("c-1", iss="https://evil.example.test/"), True, KID),
    "no issuer": (without(provider_claims("c-1"), "iss"), True, KID),
    "expired": ({**claims("c-1", expires_in=-timedelta(hours=1)), "iss": ISSUER, "aud": AUDIENCE}, True, KID),
    "no exp": (without(provider_claims("c-1"), "exp"), True, KID),
    "a key the JWKS does not have": (provider_claims("c-1"), False, "key-unknown"),
    "another key under the JWKS key's kid": (provider_claims("c-1"), False, KID),
}


@pytest.mark.parametrize(("token_claims", "by_jwks_key", "kid"), REFUSED.values(), ids=REFUSED.keys())
async def test_a_token_not_issued_by_the_provider_for_this_gateway_is_a_401(
    gateway: httpx.AsyncClient,
    fakes: Fakes,
    signing_key: rsa.RSAPrivateKey,
    other_key: rsa.RSAPrivateKey,
    token_claims: dict[str, Any],
    by_jwks_key: bool,
    kid: str,
) -> None:
    token = rs256(token_claims, signing_key if by_jwks_key else other_key, kid)

    response = await gateway.get("/v1/customers/c-1/loyalty", headers=bearer(token))

    assert_problem(response, 401, "INVALID_TOKEN")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert fakes.loyalty.behaviour.calls == []


async def test_a_development_hs256_token_is_refused_where_the_jwks_decides(
    gateway: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await gateway.get("/v1/customers/c-1/loyalty", headers=bearer(customer_token("c-1")))

    assert_problem(response, 401, "INVALID_TOKEN")
    assert fakes.loyalty.behaviour.calls == []


async def test_a_jwks_that_cannot_be_fetched_is_a_503_not_the_clients_fault(
    settings: GatewaySettings, fakes: Fakes, signing_key: rsa.RSAPrivateKey
) -> None:
    unreachable = with_jwks(settings, f"http://127.0.0.1:{free_port()}/.well-known/jwks.json")
    token = rs256(provider_claims("c-1"), signing_key)

    async with client_of(create_app(unreachable)) as gateway:
        response = await gateway.get("/v1/customers/c-1/loyalty", headers=bearer(token))

    assert_problem(response, 503, "DEPENDENCY_UNAVAILABLE")
    assert fakes.loyalty.behaviour.calls == []
