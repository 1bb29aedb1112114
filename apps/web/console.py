"""The operations console (scope admin): the pipeline's live figures, dead letters with show and
replay, and restock; every figure and action is one call to the gateway's admin API, made with the
signed-in admin's token. Rates (orders/s) come from two readings of the figures."""

import json
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response

from orderflow_contracts.identifiers import MAX_RESTOCK_UNITS
from web.pages import api, render, signed_in
from web.session import check_csrf

router = APIRouter(prefix="/console")
posting = APIRouter(prefix="/console", dependencies=[Depends(check_csrf)])

DEAD_LETTERS_SHOWN: Final = 20
Sequence = Annotated[int, Path(ge=1)]


@router.get("")
async def console(request: Request) -> Response:
    signed_in(request, admin=True)
    products = (await api(request, "GET", "/v1/products", admin=True))["products"]
    return render(request, "console.html", {"products": products})


@router.get("/figures")
async def figures(request: Request) -> Response:
    now = await api(request, "GET", "/v1/admin/pipeline", admin=True)
    rates: Rates = request.app.state.console_rates
    return render(request, "_figures.html", {"figures": now, "orders_per_second": rates.orders_per_second(now)})


class Rates:
    """Orders/s from this reading and the previous one this process made (any admin's)."""

    def __init__(self) -> None:
        self._last: tuple[datetime, int] | None = None

    def orders_per_second(self, figures: dict[str, Any]) -> float | None:
        at, published = datetime.fromisoformat(figures["read_at"]), int(figures["orders_published"])
        last, self._last = self._last, (at, published)
        if last is None or at <= last[0] or published < last[1]:
            return None
        return (published - last[1]) / (at - last[0]).total_seconds()


@router.get("/dead-letters")
async def dead_letters(request: Request) -> Response:
    page = await api(request, "GET", "/v1/admin/dead-letters", admin=True, params={"page_size": DEAD_LETTERS_SHOWN})
    return render(request, "_dead_letters.html", {"page": page})


@router.get("/dead-letters/{sequence}")
async def dead_letter(request: Request, sequence: Sequence) -> Response:
    letter = await api(request, "GET", f"/v1/admin/dead-letters/{sequence}", admin=True)
    body = letter.get("body")
    shown = json.dumps(body, indent=2) if body is not None else letter.get("body_text") or letter.get("body_base64")
    return render(request, "dead_letter.html", {"letter": letter, "body": shown})


@posting.post("/dead-letters/{sequence}/replay")
async def replay(request: Request, sequence: Sequence) -> Response:
    replayed = await api(request, "POST", f"/v1/admin/dead-letters/{sequence}/replay", admin=True)
    page = await api(request, "GET", "/v1/admin/dead-letters", admin=True, params={"page_size": DEAD_LETTERS_SHOWN})
    notice = (
        f"Dead letter #{sequence} replayed to {replayed['subject']} (stream sequence {replayed['stream_sequence']})."
    )
    return render(request, "_dead_letters.html", {"page": page, "notice": notice})


@posting.post("/restock")
async def restock(
    request: Request,
    sku: Annotated[str, Form(max_length=64)],
    quantity: Annotated[int, Form(ge=1, le=MAX_RESTOCK_UNITS)],
) -> Response:
    body: dict[str, Any] = {"lines": [{"sku": sku, "quantity": quantity}]}
    summary = await api(request, "POST", "/v1/admin/restock", admin=True, json=body)
    product = summary["products"][0]
    added = f"{product['units_added']} \N{MULTIPLICATION SIGN} {product['sku']}"
    notice = f"Restocked {added}: {product['available']} available now."
    return render(request, "_notice.html", {"notice": notice})
