"""The ORDERFLOW_GRPC_TLS_* settings: plaintext unless set, and a half-made TLS set-up is refused
when the service starts rather than at its first call."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from orderflow_kit.grpc_tls import channel_credentials, server_credentials
from orderflow_kit.settings import Settings

PEM = Path("unused.pem")


def test_plaintext_by_default() -> None:
    settings = Settings()
    assert server_credentials(settings) is None
    assert channel_credentials(settings) is None


@pytest.mark.parametrize(
    ("tls", "complaint"),
    [
        ({"grpc_tls_cert": PEM}, "grpc_tls_cert and grpc_tls_key"),
        ({"grpc_tls_key": PEM}, "grpc_tls_cert and grpc_tls_key"),
        ({"grpc_tls_ca": PEM, "grpc_tls_client_cert": PEM}, "grpc_tls_client_cert and grpc_tls_client_key"),
        ({"grpc_tls_client_cert": PEM, "grpc_tls_client_key": PEM}, "needs grpc_tls_ca"),
        ({"grpc_tls_require_client_cert": True, "grpc_tls_ca": PEM}, "grpc_tls_require_client_cert needs"),
        ({"grpc_tls_require_client_cert": True, "grpc_tls_cert": PEM, "grpc_tls_key": PEM}, "needs grpc_tls_cert"),
    ],
)
def test_an_incomplete_tls_set_up_is_refused(tls: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings.model_validate(tls)


def test_tls_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_GRPC_TLS_CERT", "/certs/inventory.crt")
    monkeypatch.setenv("ORDERFLOW_GRPC_TLS_KEY", "/certs/inventory.key")
    monkeypatch.setenv("ORDERFLOW_GRPC_TLS_CA", "/certs/ca.crt")
    monkeypatch.setenv("ORDERFLOW_GRPC_TLS_REQUIRE_CLIENT_CERT", "true")
    settings = Settings()
    assert (settings.grpc_tls_cert, settings.grpc_tls_key, settings.grpc_tls_ca) == (
        Path("/certs/inventory.crt"),
        Path("/certs/inventory.key"),
        Path("/certs/ca.crt"),
    )
    assert settings.grpc_tls_require_client_cert
