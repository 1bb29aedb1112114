"""The Allow header of a 405: every method some route serves at the request's path. Starlette's
own names only the first route with the path, so it would say POST for /v1/orders, which GET
serves too."""

from typing import Final

from fastapi import Request
from starlette.routing import Match

# What a 405's Allow header may name.
_HTTP_METHODS: Final = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    )
