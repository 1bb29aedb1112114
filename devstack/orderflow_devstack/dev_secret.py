"""The development secret behind `make up`'s tokens (orderflow_kit.dev_tokens signs them).

`make up` needs no committed secret: when ORDERFLOW_JWT_SECRET is not set it makes a random one,
gives it to the gateway and keeps it in the state dir (mode 0600), where `orderflow token`, run
from another terminal, finds it."""

import os
import secrets
from pathlib import Path
from typing import Final

from orderflow_kit.dev_tokens import JWKS_URL_ENV, MIN_SECRET_BYTES, SECRET_ENV

SECRET_FILE: Final = "jwt-secret"


class NoSecret(Exception):
    """Neither ORDERFLOW_JWT_SECRET nor a secret stored by `make up` is there to sign with."""


def signing_secret(state_dir: Path) -> str:
    """ORDERFLOW_JWT_SECRET when set, else the secret `make up` stored under `state_dir`."""
    secret = os.environ.get(SECRET_ENV) or _stored(state_dir)
    if not secret:
        raise NoSecret(
            f"no secret to sign with: set {SECRET_ENV} to the gateway's, or start the pipeline with "
            f"`make up` first (it stores one in {state_dir / SECRET_FILE})"
        )
    return secret


def secret_for_make_up(state_dir: Path) -> str | None:
    """The secret `make up` gives the gateway, or None when the environment configures token
    verification already (ORDERFLOW_JWT_SECRET or a JWKS URL, which the services inherit).
    The stored one is reused, so tokens minted before a restart keep working."""
    if os.environ.get(SECRET_ENV) or os.environ.get(JWKS_URL_ENV):
        return None
    path = state_dir / SECRET_FILE
    secret = _stored(state_dir)
    if secret is None or len(secret.encode()) < MIN_SECRET_BYTES:
        secret = secrets.token_urlsafe(MIN_SECRET_BYTES)
        state_dir.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        # Created 0600 from the start: the secret is never readable by others, not even briefly.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secret + "\n")
    path.chmod(0o600)
    return secret


def _stored(state_dir: Path) -> str | None:
    try:
        return (state_dir / SECRET_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None
