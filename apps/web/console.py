"""The operations console (scope admin): the pipeline's live figures, the reconciliation of the
services' counts, dead letters with show and replay, restock, and the fault flags as switches;
every figure and action is a call to the gateway's admin API, made with the signed-in admin's
token. Rates (orders/s) come from two readings of the figures."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from orderflow_contracts.identifiers import MAX_RESTOCK_UNITS
from web.gateway_client import ApiProblem
from web.pages import api, gateway_of, is_htmx, render, signed_in, token_for
from web.session import check_csrf

router = APIRouter(prefix="/console")
posting = APIRouter(prefix="/console", dependencies=[Depends(check_csrf)])

DEAD_LETTERS_SHOWN: Final = 20
Sequence = Annotated[int, Path(ge=1)]
FlagName = Annotated[str, Path(pattern=r"^[a-z_]{1,64}$")]
# What a switch turns a flag on with when its field is left empty; flags that take only on or off have no field.
SWITCH_ON_VALUES: Final = {"publish_twice": "new_msg_id", "consumer_fail_first": "1", "inventory_delay_ms": "1000"}
OFF_VALUES: Final = frozenset({"", "off", "0", "false", "no"})
# The import form: a paste of NDJSON, bounded (bigger imports: `orderflow orders import FILE.jsonl`).
IMPORT_MAX_CHARS: Final = 200_000
IMPORT_MAX_LINES: Final = 1_000
NDJSON: Final = "application/x-ndjson"


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


@router.get("/reconciliation")
async def reconciliation(request: Request) -> Response:
    checked = await api(request, "GET", "/v1/admin/reconciliation", admin=True)
    return render(request, "_reconciliation.html", {"rec": checked})


@dataclass(frozen=True)
class Switch:
    """One fault flag as the console shows it."""

    name: str
    description: str
    values: str
    on: bool
    value: str
    takes_value: bool


def switches(faults: dict[str, Any]) -> list[Switch]:
    """Every flag there is, in the API's order, with what the bucket holds for it."""
    held: dict[str, str] = faults["flags"]
    shown = []
    for known in faults["known"]:
        name = known["name"]
        value = held.get(name, "")
        on = value.lower() not in OFF_VALUES
        takes_value = known["values"] != "on or off"
        shown.append(
            Switch(
                name=name,
                description=known["description"],
                values=known["values"],
                on=on,
                value=value if on and takes_value else SWITCH_ON_VALUES.get(name, ""),
                takes_value=takes_value,
            )
        )
    return shown


@router.get("/faults")
async def faults(request: Request) -> Response:
    current = await api(request, "GET", "/v1/admin/faults", admin=True)
    return render(request, "_faults.html", {"faults": current, "switches": switches(current)})


@posting.post("/faults/{name}")
async def switch_fault(
    request: Request,
    name: FlagName,
    state: Annotated[Literal["on", "off"], Form()],
    value: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Switch one flag on (with its value) or off, keeping the others: the API replaces the whole
    set, so the set is read first (two admins switching at the same moment: the last write wins)."""
    current = await api(request, "GET", "/v1/admin/faults", admin=True)
    flags: dict[str, str] = dict(current["flags"])
    if state == "on":
        flags[name] = value.strip() or SWITCH_ON_VALUES.get(name, "on")
    else:
        flags.pop(name, None)
    written = await api(request, "PUT", "/v1/admin/faults", admin=True, json={"flags": flags})
    if not is_htmx(request):
        return RedirectResponse("/console#faults-title", status_code=303)
    shown = f"{name}={flags[name]}" if state == "on" else name
    notice = f"Fault flag {shown} switched {state} (revision {written['revision']})."
    return render(request, "_faults.html", {"faults": written, "switches": switches(written), "notice": notice})


@posting.post("/import")
async def import_orders(
    request: Request, orders: Annotated[str, Form(min_length=1, max_length=IMPORT_MAX_CHARS)]
) -> Response:
    """Bulk import through `POST /v1/admin/orders:import`: each line one order with its
    client_request_id, so importing the same lines again places nothing twice."""
    who = signed_in(request, admin=True)
    lines = orders.replace("\r\n", "\n").strip("\n").split("\n")
    if len(lines) > IMPORT_MAX_LINES:
        detail = f"At most {IMPORT_MAX_LINES} lines from this form; use `orderflow orders import FILE.jsonl` for more."
        raise ApiProblem(413, "IMPORT_TOO_LARGE", "Import too large", detail)
    answers = await gateway_of(request).json_lines(
        "/v1/admin/orders:import",
        token=token_for(request, who),
        content=("\n".join(lines) + "\n").encode(),
        content_type=NDJSON,
        max_lines=IMPORT_MAX_LINES,
    )
    placed = sum(1 for answer in answers if "order" in answer)
    notice = (
        f"Import: {placed} of {len(answers)} line{'s' if len(answers) != 1 else ''} placed (or found placed before)."
    )
    page = "_import.html" if is_htmx(request) else "import_done.html"
    return render(request, page, {"answers": answers, "placed": placed, "notice": notice})
