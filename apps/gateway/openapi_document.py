"""The committed OpenAPI document, docs/openapi.json: what clients and reviewers read without
running the gateway. `make openapi` writes it from the app; a test fails when the two disagree,
so a change to the API shows up in review as a change to this file."""

import json
import secrets
import sys
from typing import Any

from gateway.app import create_app
from gateway.settings import GatewaySettings


def openapi_document() -> dict[str, Any]:
    """The app's document. The app wants a way to verify tokens; the document does not depend on it."""
    settings = GatewaySettings(jwt_secret=secrets.token_urlsafe(32), jwt_jwks_url=None)
    return create_app(settings).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(openapi_document()))
