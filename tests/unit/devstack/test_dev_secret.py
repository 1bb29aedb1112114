"""The development secret `make up` keeps and `orderflow token` signs with, and how long a token lasts."""

import stat
from datetime import timedelta
from pathlib import Path

import pytest

from orderflow_devstack.cli import parse_ttl
from orderflow_devstack.dev_secret import SECRET_FILE, NoSecret, secret_for_make_up, signing_secret
from orderflow_kit.dev_tokens import JWKS_URL_ENV, MIN_SECRET_BYTES, SECRET_ENV

SECRET = "a-development-secret-of-at-least-32-bytes"


@pytest.fixture(autouse=True)
def no_jwt_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv(JWKS_URL_ENV, raising=False)


@pytest.mark.parametrize(
    ("text", "ttl"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
    ],
)
def test_a_lifetime_is_a_number_and_a_unit(text: str, ttl: timedelta) -> None:
    assert parse_ttl(text) == ttl


@pytest.mark.parametrize("text", ["", "1", "h", "0h", "-1h", "1.5h", "1y", "1 h"])
def test_anything_else_is_not_a_lifetime(text: str) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        parse_ttl(text)


def test_make_up_makes_a_secret_only_its_owner_can_read_and_keeps_it(tmp_path: Path) -> None:
    first = secret_for_make_up(tmp_path)
    again = secret_for_make_up(tmp_path)

    stored = tmp_path / SECRET_FILE
    assert first is not None
    assert len(first.encode()) >= MIN_SECRET_BYTES
    assert again == first
    assert stored.read_text().strip() == first
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


def test_make_up_replaces_a_stored_secret_that_is_too_short(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_text("short\n")

    secret = secret_for_make_up(tmp_path)

    assert secret is not None
    assert len(secret.encode()) >= MIN_SECRET_BYTES
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize("variable", [SECRET_ENV, JWKS_URL_ENV])
def test_make_up_leaves_configured_verification_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, SECRET)

    assert secret_for_make_up(tmp_path) is None
    assert not (tmp_path / SECRET_FILE).exists()


def test_the_cli_signs_with_the_environments_secret_before_the_stored_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = secret_for_make_up(tmp_path)
    assert signing_secret(tmp_path) == stored

    monkeypatch.setenv(SECRET_ENV, SECRET)

    assert signing_secret(tmp_path) == SECRET


def test_with_no_secret_anywhere_the_cli_has_nothing_to_sign_with(tmp_path: Path) -> None:
    with pytest.raises(NoSecret, match=SECRET_ENV):
        signing_secret(tmp_path)
