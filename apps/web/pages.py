"""What every page shares: the templates and their context (who is signed in, the CSRF token, the
cart's size), the call to the gateway with the signed-in identity's token, and how errors become
pages: a problem+json from the API is shown as it is (status, title, detail, request id)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from web import session
from web.gateway_client import ApiProblem, Gateway
from web.session import Identity, SignInRequired
from web.settings import WebSettings

TEMPLATES: Final = Jinja2Templates(directory=Path(__file__).with_name("templates"))


def money(cents: int, currency: str = "EUR") -> str:
    return f"{cents / 100:,.2f} {currency}"


TEMPLATES.env.filters["money"] = money


def settings_of(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def signed_in(request: Request, *, admin: bool = False) -> Identity:
    """The signed-in identity, or SignInRequired (an admin one when `admin`)."""
    who = session.identity(request)
    if who is None or (admin and not who.admin):
        raise SignInRequired(admin)
    return who


def token_for(request: Request, who: Identity) -> str:
    settings = settings_of(request)
    if settings.jwt_secret is None:
        raise SignInRequired()
    return who.token(settings.jwt_secret.get_secret_value(), settings.web_token_ttl_seconds)


async def api(request: Request, method: str, path: str, *, admin: bool = False, **kwargs: Any) -> Any:
    """The gateway, called as the signed-in customer (or admin)."""
    who = signed_in(request, admin=admin)
    return await gateway_of(request).call(method, path, token=token_for(request, who), **kwargs)


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    settings = settings_of(request)
    base = {
        "me": session.identity(request),
        "csrf_token": session.csrf_token(request),
        "cart_count": sum(session.cart_of(request).values()),
        "sign_in_available": settings.jwt_secret is not None,
    }
    return TEMPLATES.TemplateResponse(request, template, {**base, **(context or {})}, status_code=status)


def fragment(request: Request, template: str, context: Mapping[str, Any] | None = None) -> str:
    """A template's HTML on its own (for a Server-Sent Event)."""
    return TEMPLATES.get_template(template).render({"request": request, **(context or {})})


def problem_page(request: Request, problem: ApiProblem) -> Response:
    """The API's problem as a page, or, for htmx, as the message in the page's alert area."""
    context = {"problem": problem}
    if is_htmx(request):
        response = render(request, "_problem.html", context, status=200)
        response.headers["HX-Retarget"] = "#alerts"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "error.html", context, status=problem.status)


def sign_in_redirect(request: Request, error: SignInRequired) -> Response:
    target = f"/signin?next={request.url.path}" + ("&admin=1" if error.admin else "")
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
