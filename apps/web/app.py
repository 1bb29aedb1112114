"""The web app: storefront and operations console, server-rendered, a client of the gateway's
public API only (web.gateway_client). The session is a signed cookie (web.session); static
assets are vendored in web/static (no CDN, no build step)."""

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from web import console, storefront
from web.gateway_client import ApiProblem, Gateway
from web.pages import problem_page, sign_in_redirect
from web.session import CsrfRefused, SignInRequired
from web.settings import WebSettings
from web.stock_watch import Levels, StockWatch

SESSION_COOKIE = "orderflow_session"


def create_app(settings: WebSettings | None = None) -> FastAPI:
    settings = settings or WebSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = Gateway(settings.gateway_url, settings.web_gateway_timeout_seconds)

        async def live_stock() -> AsyncIterator[Levels]:
            async for event in gateway.events("/v1/products/events", token=None):
                if event.event == "stock":
                    yield {level["sku"]: int(level["available"]) for level in json.loads(event.data)["levels"]}

        app.state.gateway = gateway
        app.state.stock_watch = StockWatch(live_stock, settings.web_stock_retry_seconds)
        app.state.console_rates = console.Rates()
        try:
            yield
        finally:
            await app.state.stock_watch.close()
            await gateway.close()

    app = FastAPI(title="orderflow web", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    secret = settings.web_session_secret.get_secret_value() if settings.web_session_secret else secrets.token_hex(32)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=settings.web_session_max_age_seconds,
        same_site="lax",
        https_only=settings.web_secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    app.include_router(storefront.router)
    app.include_router(storefront.posting)
    app.include_router(console.router)
    app.include_router(console.posting)
    _install_error_pages(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    return app


def _install_error_pages(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, problem: ApiProblem) -> Response:
        return problem_page(request, problem)

    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, error: SignInRequired) -> Response:
        return sign_in_redirect(request, error)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _: CsrfRefused) -> Response:
        detail = "This form is out of date or did not come from this site. Reload the page and try again."
        return problem_page(request, ApiProblem(403, "CSRF_REFUSED", "Form refused", detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_form(request: Request, error: RequestValidationError) -> Response:
        errors = [
            {"field": ".".join(str(part) for part in item.get("loc", ())[1:]), "message": item.get("msg", "")}
            for item in error.errors()
        ]
        problem = ApiProblem(422, "VALIDATION_FAILED", "Form not valid", "Some fields are not valid.", errors=errors)
        return problem_page(request, problem)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        title = "Not found" if error.status_code == 404 else "Request refused"
        problem = ApiProblem(
            error.status_code, "NOT_FOUND" if error.status_code == 404 else "REFUSED", title, str(error.detail)
        )
        return problem_page(request, problem)
