"""What the web app needs: where the gateway is, how it signs its session cookie, and the
development secret it signs bearer tokens with (the gateway's ORDERFLOW_JWT_SECRET; without it,
sign-in is unavailable and the web app is a catalog only)."""

from pydantic import Field, SecretStr

from orderflow_kit.settings import Settings


class WebSettings(Settings):
    web_port: int = 8080
    # The gateway's public API: the only thing the web app talks to.
    gateway_url: str = "http://127.0.0.1:8000"
    # A call to the gateway waits at most this long (a live feed waits forever between events).
    web_gateway_timeout_seconds: float = Field(default=10.0, gt=0)

    # The same value as the gateway's: the web app mints a customer's (or an admin's) token with it
    # for each call. Development only: with an identity provider (JWKS) there is no dev sign-in.
    jwt_secret: SecretStr | None = None
    # How long each minted token lives: a request's worth, plus a live feed's reconnects.
    web_token_ttl_seconds: int = Field(default=15 * 60, ge=60)

    # Signs the session cookie. Unset: a random one per process (sessions end when it restarts,
    # and replicas cannot share them: set it when running more than one).
    web_session_secret: SecretStr | None = None
    # The cookie is sent over HTTPS only: set it when the web app is served over HTTPS.
    web_secure_cookies: bool = False
    web_session_max_age_seconds: int = Field(default=8 * 60 * 60, ge=60)

    # The catalog's live availability follows the gateway's GET /v1/products/events (one stream per
    # process, whatever the number of browsers); when that stream ends or fails, it is followed
    # again after this long.
    web_stock_retry_seconds: float = Field(default=1.0, gt=0)
