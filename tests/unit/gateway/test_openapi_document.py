"""docs/openapi.json is the gateway's API exactly: regenerate it with `make openapi`."""

import json
from pathlib import Path

from gateway.openapi_document import openapi_document, render

COMMITTED = Path(__file__).parents[3] / "docs" / "openapi.json"


def test_the_committed_openapi_document_is_the_apps() -> None:
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == openapi_document(), "docs/openapi.json differs from the app: run `make openapi`"


def test_the_committed_document_is_rendered_as_make_openapi_renders_it() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(openapi_document())
