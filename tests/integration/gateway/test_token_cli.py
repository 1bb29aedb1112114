"""`orderflow token` as a developer runs it: the token it prints opens the gateway, signed with
ORDERFLOW_JWT_SECRET from the environment or with the secret `make up` stored in its state dir."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
from pydantic import SecretStr

from gateway.app import create_app
from gateway.settings import GatewaySettings
from orderflow_devstack.dev_secret import secret_for_make_up
from orderflow_kit.dev_tokens import JWKS_URL_ENV, SECRET_ENV
from tests.integration.gateway.conftest import client_of
from tests.support.tokens import GATEWAY_ENV, bearer

AN_ORDER = {"items": [{"sku": "SKU-1", "quantity": 1}]}


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without any ORDERFLOW_JWT_*, plus `settings`."""
    return {**{name: value for name, value in os.environ.items() if not name.startswith("ORDERFLOW_JWT_")}, **settings}


def run_token_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("orderflow")), "token", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


async def orderflow_token(*args: str, env: dict[str, str]) -> str:
    """The token `orderflow token ARGS` prints."""
    result = await asyncio.to_thread(run_token_cli, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def test_tokens_minted_with_the_cli_place_and_read_orders(gateway: httpx.AsyncClient) -> None:
    customer = await orderflow_token("--customer", "c-cli", env=environment(**GATEWAY_ENV))
    admin = await orderflow_token("--customer", "ops-cli", "--admin", "--ttl", "5m", env=environment(**GATEWAY_ENV))

    created = await gateway.post("/v1/orders", json=AN_ORDER, headers=bearer(customer))
    not_theirs = await gateway.get("/v1/customers/c-other/loyalty", headers=bearer(customer))
    read_by_admin = await gateway.get(created.headers["location"], headers=bearer(admin))

    assert created.status_code == 201, created.text
    assert created.json()["customer_id"] == "c-cli"
    assert not_theirs.status_code == 403
    assert read_by_admin.json() == created.json()
    lifetime = jwt.decode(admin, options={"verify_signature": False})
    assert lifetime["exp"] - lifetime["iat"] == 300


async def test_the_cli_signs_with_the_secret_make_up_stored(
    settings: GatewaySettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv(JWKS_URL_ENV, raising=False)
    secret = secret_for_make_up(tmp_path)
    assert secret is not None

    token = await orderflow_token("--customer", "c-up", "--state-dir", str(tmp_path), env=environment())
    async with client_of(create_app(settings.model_copy(update={"jwt_secret": SecretStr(secret)}))) as gateway:
        response = await gateway.get("/v1/customers/c-up/loyalty", headers=bearer(token))

    assert response.status_code == 200, response.text


def test_without_a_secret_the_cli_says_where_it_looked(tmp_path: Path) -> None:
    result = run_token_cli("--customer", "c-1", "--state-dir", str(tmp_path), env=environment())

    assert result.returncode == 1
    assert result.stdout == ""
    assert SECRET_ENV in result.stderr
    assert str(tmp_path / "jwt-secret") in result.stderr
