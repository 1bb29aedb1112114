"""schemathesis hooks for `st run` in tests/hostile/test_schemathesis_cli.py (loaded by st, not pytest).

An Idempotency-Key names one request: the same key with another body is 422 IDEMPOTENCY_KEY_REUSED,
an answer that depends on what was sent before, which no schema can state (the document says it in
the key's description and lists the code under 422). schemathesis sends the document's example
key, or one it generated, with many bodies; a client makes a key per request. So each valid key is
made its request's own: a digest of the body, then the key, in the form it came in. The same key
with the same body stays one request, and gets the first answer again. A key that breaks the
document's pattern is left as it is: it must still be refused.

The bulk import's body is NDJSON, which schemathesis cannot serialize by itself: a serializer here."""

import hashlib
import json
import re
from typing import Any

import schemathesis

from gateway.idempotency import KEY_HEADER, KEY_PATTERN, MAX_KEY_LENGTH, parse_key


def own_key(value: str, body: object) -> str:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=repr).encode()).hexdigest()[:16]
    key = (digest + parse_key(value))[:MAX_KEY_LENGTH]
    if value.startswith('"'):
        return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return key


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = case.headers or {}
    for name, value in headers.items():
        if name.lower() == KEY_HEADER.lower() and isinstance(value, str) and re.fullmatch(KEY_PATTERN, value):
            headers[name] = own_key(value, case.body)


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    """The bulk import's body: the generated value as one line (its schema is one line's)."""
    return (json.dumps(value) + "\n").encode()
