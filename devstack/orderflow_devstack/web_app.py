"""The web app (apps/web) as a child process, beside the four services: for `make up` and the
pipelines the browser tests drive. It needs only the gateway's URL, and the gateway's development
secret for its sign-in (without it the web app serves the catalog and says sign-in is unavailable)."""

from collections.abc import Mapping
from functools import partial
from typing import Final

from orderflow_devstack.processes import ServiceSpec, documented_or_free
from orderflow_kit.dev_tokens import SECRET_ENV
from orderflow_kit.probe import http_ok

WEB_PORT: Final = 8080
_HOST: Final = "127.0.0.1"


def web_spec(
    gateway_url: str, port: int, *, jwt_secret: str | None, env: Mapping[str, str] | None = None
) -> ServiceSpec:
    """`python -m web` on `port`, calling the gateway at `gateway_url`."""
    own = {
        **(env or {}),
        "ORDERFLOW_LISTEN_HOST": _HOST,
        "ORDERFLOW_WEB_PORT": str(port),
        "ORDERFLOW_GATEWAY_URL": gateway_url,
    }
    if jwt_secret is not None:
        own[SECRET_ENV] = jwt_secret
    return ServiceSpec("web", "web", own, partial(http_ok, f"http://{_HOST}:{port}/healthz"))


def web_port_for_make_up() -> int:
    """8080 when nobody listens there, else a free port (the banner says which)."""
    return documented_or_free(WEB_PORT)
