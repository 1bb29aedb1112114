"""The operations console in a real browser: an admin watches the pipeline's figures while orders
flow, replays a dead letter from the list, restocks, and imports orders in bulk (twice: nothing
placed twice); a customer is kept out; the storefront works at 360 px wide."""

import asyncio
import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ConsoleErrors, open_page, screenshot
from tests.browser.support import available, new_customer, sign_in
from tests.e2e.support import publish
from tests.support.events import order_created
from tests.support.pipeline import Pipeline
from tests.support.tokens import as_customer

pytestmark = pytest.mark.browser


def place_orders(pipeline: Pipeline, count: int) -> None:
    customer = new_customer()
    with httpx.Client(base_url=pipeline.gateway_url, trust_env=False) as api:
        for _ in range(count):
            body = {"items": [{"sku": "WEB-TEE", "quantity": 1}]}
            assert api.post("/v1/orders", json=body, headers=as_customer(customer)).status_code == 201


def test_an_admin_watches_orders_flow_and_replays_a_dead_letter(page: Page, web_pipeline: Pipeline) -> None:
    broken = order_created(new_customer(), total_cents=1999)
    # Playwright's sync API runs an event loop in this thread: publish from another one.
    with ThreadPoolExecutor(1) as thread:
        body = b'{"order_id": "not even json'
        thread.submit(asyncio.run, publish(web_pipeline.nats_url, broken.to_headers(), body)).result()

    sign_in(page, "ops-web", admin=True)
    page.get_by_role("link", name="Console").click()
    published = page.locator("#orders-published")
    expect(published).to_have_text(re.compile(r"^\d+$"))
    before = int(published.inner_text())

    place_orders(web_pipeline, 5)
    expect(published).not_to_have_text(str(before), timeout=10_000)
    expect(page.locator("[data-check=consumers].ok")).to_be_visible(timeout=20_000)

    row = page.locator("table.dead-letters tbody tr").filter(has_text="loyalty").first
    expect(row).to_be_visible(timeout=20_000)
    sequence = row.locator("td").first.inner_text()
    screenshot(page, "console")
    row.get_by_role("button", name=f"Replay dead letter {sequence}").click()
    expect(page.locator("#notices")).to_contain_text(f"Dead letter #{sequence} replayed to orders.created")
    expect(page.locator(f"#dead-letter-{sequence}")).to_have_count(0)


def test_an_admin_restocks_and_the_catalog_shows_it(page: Page, web_pipeline: Pipeline) -> None:
    sign_in(page, "ops-restock", admin=True)
    page.goto("/")
    before = available(page, "WEB-PRINT")
    page.goto("/console")
    page.get_by_label("Product").select_option("WEB-PRINT")
    page.get_by_label("Units received").fill("7")
    page.get_by_role("button", name="Restock").click()
    expect(page.locator("#notices")).to_contain_text("Restocked 7 \N{MULTIPLICATION SIGN} WEB-PRINT")
    page.goto("/")
    expect(page.locator("#stock-WEB-PRINT data")).to_have_attribute("value", str(before + 7))


def test_an_admin_imports_orders_in_bulk_and_importing_again_places_nothing_twice(
    page: Page, web_pipeline: Pipeline
) -> None:
    customer, batch = new_customer(), uuid.uuid4().hex[:8]
    lines = [
        {"customer_id": customer, "items": [{"sku": "WEB-MUG", "quantity": 2}], "client_request_id": f"{batch}-1"},
        {"customer_id": customer, "items": [{"sku": "NO-SUCH", "quantity": 1}], "client_request_id": f"{batch}-2"},
        {"customer_id": customer, "items": [{"sku": "WEB-TEE", "quantity": 1}], "client_request_id": f"{batch}-3"},
    ]
    sign_in(page, "ops-import", admin=True)
    page.goto("/console")

    def run_import() -> list[str]:
        page.get_by_label("Orders, one JSON object a line").fill("\n".join(json.dumps(line) for line in lines))
        page.get_by_role("button", name="Import").click()
        expect(page.locator("#import-summary")).to_have_text("2 placed, 1 refused.")
        expect(page.locator("table.import-results tr[data-line='2']")).to_contain_text("404 UNKNOWN_SKU")
        return page.locator("table.import-results tr.placed a").all_inner_texts()

    first = run_import()
    screenshot(page, "console-import")
    page.locator("#import-results").evaluate("element => { element.innerHTML = '' }")
    assert run_import() == first, "the second import answered other orders"
    with httpx.Client(base_url=web_pipeline.gateway_url, trust_env=False) as api:
        listed = api.get("/v1/orders", params={"customer_id": customer}, headers=as_customer(customer))
    assert len(listed.json()["orders"]) == 2


def test_the_console_is_for_admins_and_the_shop_fits_a_phone(
    browser: Browser, web_pipeline: Pipeline, console_errors: ConsoleErrors
) -> None:
    phone = open_page(browser, web_pipeline, console_errors, viewport={"width": 360, "height": 740})
    sign_in(phone, new_customer())
    phone.goto("/console")
    expect(phone).to_have_url(re.compile(r"/signin\?next=/console&admin=1$"))
    phone.goto("/")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the catalog is {width} px wide at 360"
    screenshot(phone, "storefront-360")
    phone.context.close()
    assert console_errors == []
