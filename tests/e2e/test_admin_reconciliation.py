"""GET /v1/admin/reconciliation through the real gateway in front of the real pipeline: the
services' own counts follow an order from its database row to its award, the stock stays
conserved, and it is for admins only. (Other e2e tests publish OrderCreated events around the
outbox, so this shared pipeline's award check may well say so; the counts' moves are asserted.)"""

from typing import Any

import httpx
import pytest

from tests.e2e.support import new_customer, place, read
from tests.support.polling import eventually
from tests.support.tokens import as_admin, as_customer

pytestmark = pytest.mark.e2e


async def reconciliation(api: httpx.AsyncClient) -> dict[str, Any]:
    return await read(api, "/v1/admin/reconciliation", as_admin())


def checks(body: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["status"] for check in body["checks"]}


async def test_an_order_is_counted_stored_published_and_awarded_once_and_stock_stays_conserved(
    api: httpx.AsyncClient,
) -> None:
    before = await reconciliation(api)
    response = await place(api, new_customer(), ("E2E-MUG", 2))
    assert response.status_code == 201, response.text

    def settled(now: dict[str, Any]) -> bool:
        return bool(
            now["orders_awarded"] > before["orders_awarded"]
            and now["outbox_pending"] == 0
            and now["loyalty_backlog"] == 0
        )

    after = await eventually(lambda: reconciliation(api), settled, what="the order stored, published and awarded")
    assert after["orders_stored"] == before["orders_stored"] + 1
    assert after["awards"] - after["orders_awarded"] == 0, "an order awarded twice"
    assert checks(after)["stock_conserved"] == "ok"
    assert checks(after)["orders_published"] == "ok"
    mug = next(product for product in after["products"] if product["sku"] == "E2E-MUG")
    assert mug["conserved"]
    assert mug["available"] + mug["reserved"] + mug["confirmed"] == mug["received"]
    assert after["status"] in {"ok", "catching_up", "failed"}


async def test_the_reconciliation_is_for_admins_only(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/admin/reconciliation", headers=as_customer(new_customer()))).status_code == 403
    assert (await api.get("/v1/admin/reconciliation")).status_code == 401
