"""The storefront in a real browser: a customer signs in, fills a cart, checks out and watches the
order's journey reach "stock confirmed" and "points awarded", while another visitor's catalog
shows the stock drop; a double-clicked checkout places one order; the API's errors are pages of
their own."""

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ConsoleErrors, open_page, screenshot
from tests.browser.support import add_to_cart, available, new_customer, sign_in
from tests.support.pipeline import Pipeline
from tests.support.tokens import as_customer

pytestmark = pytest.mark.browser


def orders_of(pipeline: Pipeline, customer: str) -> list[dict[str, object]]:
    response = httpx.get(
        f"{pipeline.gateway_url}/v1/orders",
        params={"customer_id": customer},
        headers=as_customer(customer),
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    orders: list[dict[str, object]] = response.json()["orders"]
    return orders


def test_a_customer_checks_out_and_watches_the_journey_while_another_page_sees_the_stock_drop(
    page: Page, browser: Browser, web_pipeline: Pipeline, console_errors: ConsoleErrors
) -> None:
    watcher = open_page(browser, web_pipeline, console_errors)
    watcher.goto("/")
    before = available(watcher, "WEB-PRINT")

    customer = new_customer()
    sign_in(page, customer)
    add_to_cart(page, "WEB-PRINT", 2)
    screenshot(page, "storefront")
    page.goto("/cart")
    expect(page.locator("#cart-total")).to_contain_text("98.00")
    page.get_by_role("button", name="Place order").click()

    expect(page.locator("#order-id")).to_be_visible()
    journey = page.locator("#journey")
    expect(journey.locator("[data-step=awarded].done")).to_contain_text("Points awarded", timeout=20_000)
    expect(journey.locator("[data-step=published].done")).to_be_visible()
    expect(journey.locator("[data-step=stock_confirmed].done")).to_contain_text("Stock confirmed")
    expect(journey.locator("[data-step=stock_confirmed] .when")).to_contain_text("+")
    expect(journey.locator("[data-step=awarded] .when")).to_contain_text("+")
    expect(page.locator("#trace-id")).to_have_text(re.compile(r"^[0-9a-f]{32}$"))
    screenshot(page, "order-journey")

    # The other visitor's catalog, left open, shows the stock drop without a reload.
    expect(watcher.locator("#stock-WEB-PRINT data")).to_have_attribute("value", str(before - 2))
    watcher.context.close()

    page.get_by_role("link", name="My points").click()
    expect(page.locator("#points")).to_have_text("98")
    page.get_by_role("link", name="My orders").click()
    expect(page.locator("table.orders tbody tr")).to_have_count(1)


def test_a_double_clicked_checkout_places_one_order(page: Page, web_pipeline: Pipeline) -> None:
    customer = new_customer()
    sign_in(page, customer)
    add_to_cart(page, "WEB-MUG", 1)
    page.goto("/cart")
    page.get_by_role("button", name="Place order").dblclick()
    expect(page.locator("#order-id")).to_be_visible()
    assert len(orders_of(web_pipeline, customer)) == 1


def test_the_apis_problems_are_pages_and_a_form_without_its_csrf_token_is_refused(
    page: Page, web_pipeline: Pipeline, console_errors: ConsoleErrors
) -> None:
    sign_in(page, new_customer())
    page.goto("/orders/0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23")
    expect(page.locator(".problem")).to_have_attribute("data-code", "ORDER_NOT_FOUND")
    expect(page.get_by_role("heading", level=1)).to_have_text("Order not found")
    # The browser reports the page's own 404 status: that one is expected, nothing else.
    assert [error for error in console_errors if "404" not in error] == []
    console_errors.clear()
    assert web_pipeline.web_url is not None
    forged = page.request.post(f"{web_pipeline.web_url}/cart/add", form={"sku": "WEB-MUG", "quantity": "1"})
    assert forged.status == 403
