"""JSON from outside (a message body, an NDJSON line, a header), parsed without surprises.

The standard library's `json.loads` raises RecursionError, not ValueError, for arrays or objects
nested deeper than Python's recursion limit (`[[[[...]]]]`, a few kilobytes): code that catches
ValueError for "not JSON" would let such an input crash it. `loads` raises NotJson, a ValueError,
for every input that is not JSON it can read."""

import json
from typing import Any


class NotJson(ValueError):
    """Not JSON that this parser can read."""


def loads(data: str | bytes) -> Any:
    """`json.loads`, with every failure, a nesting too deep to parse included, raised as NotJson."""
    try:
        return json.loads(data)
    except ValueError as error:
        raise NotJson(str(error)) from None
    except RecursionError:
        raise NotJson("nested deeper than this parser goes") from None
