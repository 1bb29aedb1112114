"""A URL's password never reaches a log line, a banner or an error message in clear
(orderflow_kit.redaction), and the embedded NATS server's login (orderflow_devstack.infra.NatsLogin)."""

import logging
import stat
from pathlib import Path

import pytest

from orderflow_devstack.infra import Infrastructure, NatsLogin, StartupError
from orderflow_devstack.processes import TopologyPorts
from orderflow_devstack.runner import banner, write_env_file
from orderflow_kit.logging import RedactCredentials, redact_credentials
from orderflow_kit.redaction import redact

PASSWORD = "s3cret-Pa55word"
INFRA = Infrastructure(
    nats_url=f"nats://orderflow:{PASSWORD}@127.0.0.1:4222",
    postgres_url=f"postgresql://orderflow:{PASSWORD}@127.0.0.1:5432/postgres",
    redis_url=f"redis://:{PASSWORD}@127.0.0.1:6379/0",
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nats://orderflow:s3cret@127.0.0.1:4222", "nats://orderflow:***@127.0.0.1:4222"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("NATS at nats://a:b@h:1 and postgresql://c:d@h/db", "NATS at nats://a:***@h:1 and postgresql://c:***@h/db"),
        ("nats://token@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),  # NATS reads a lone user as a token
        ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/postgres"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("no url here: a:b@c", "no url here: a:b@c"),
    ],
)
def test_redact_masks_passwords_and_tokens_only(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_log_lines_mask_passwords_in_every_value() -> None:
    event = {"event": f"connecting to {INFRA.nats_url}", "error": INFRA.redis_url, "attempt": 3}
    masked = redact_credentials(None, "info", event)
    assert masked == {
        "event": "connecting to nats://orderflow:***@127.0.0.1:4222",
        "error": "redis://:***@127.0.0.1:6379/0",
        "attempt": 3,
    }


def test_standard_logging_lines_mask_passwords() -> None:
    record = logging.LogRecord("faststream", logging.WARNING, __file__, 1, "cannot reach %s", (INFRA.nats_url,), None)
    assert RedactCredentials().filter(record)
    assert record.getMessage() == "cannot reach nats://orderflow:***@127.0.0.1:4222"


def test_the_banner_shows_no_password_and_the_env_file_keeps_them_private(tmp_path: Path) -> None:
    env_file = write_env_file(INFRA, tmp_path)
    text = banner(INFRA, TopologyPorts(), env_file, "MUG-001")
    assert PASSWORD not in text
    assert "nats://orderflow:***@127.0.0.1:4222" in text
    assert str(env_file.resolve()) in text
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert env_file.read_text().splitlines() == [
        f"ORDERFLOW_NATS_URL={INFRA.nats_url}",
        f"ORDERFLOW_POSTGRES_URL={INFRA.postgres_url}",
        f"ORDERFLOW_REDIS_URL={INFRA.redis_url}",
    ]


def test_nats_login_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_USER", "ops")
    monkeypatch.setenv("NATS_PASSWORD", PASSWORD)
    login = NatsLogin.from_environment()
    assert login.url("127.0.0.1", 4222) == f"nats://ops:{PASSWORD}@127.0.0.1:4222"
    assert PASSWORD not in repr(login)


def test_without_a_password_in_the_environment_each_login_gets_a_new_random_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NATS_USER", raising=False)
    monkeypatch.delenv("NATS_PASSWORD", raising=False)
    first, second = NatsLogin.from_environment(), NatsLogin.from_environment()
    assert first.user == second.user == "orderflow"
    assert first.password != second.password
    assert len(first.password) >= 32


@pytest.mark.parametrize("password", ["pass word", "p@ss", "a:b", "100%"])
def test_a_password_that_cannot_go_into_a_url_as_it_is_is_refused(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    monkeypatch.setenv("NATS_PASSWORD", password)
    with pytest.raises(StartupError, match="NATS_PASSWORD may hold only"):
        NatsLogin.from_environment()
