"""What the browser tests do often: sign in, put something in the cart, read a SKU's availability."""

import uuid

from playwright.sync_api import Page, expect


def new_customer() -> str:
    return f"web-{uuid.uuid4().hex[:10]}"


def sign_in(page: Page, customer_id: str, *, admin: bool = False) -> None:
    page.goto("/signin")
    page.get_by_label("Customer id").fill(customer_id)
    if admin:
        page.get_by_label("Admin", exact=False).check()
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text(customer_id)


def add_to_cart(page: Page, sku: str, quantity: int) -> None:
    """From the catalog, with htmx: the cart's count in the header goes up."""
    page.goto("/")
    before = int(page.locator("#cart-count").inner_text())
    product = page.locator(f"#product-{sku}")
    product.get_by_label("Quantity").fill(str(quantity))
    product.get_by_role("button", name="Add").click()
    expect(page.locator("#cart-count")).to_have_text(str(before + quantity))


def available(page: Page, sku: str) -> int:
    value = page.locator(f"#stock-{sku} data").get_attribute("value")
    assert value is not None
    return int(value)
