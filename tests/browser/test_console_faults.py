"""The fault flags as switches and the reconciliation panel, in a real browser: an admin switches
`publish_twice` on while orders keep flowing (the broker stores every event twice: the copies are
seen in the stream), then off, and the reconciliation panel never turns red: stock conserved,
every stored order published and awarded once, catching up at most while events travel."""

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.support import new_customer, sign_in
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually
from tests.support.tokens import as_admin, as_customer

pytestmark = pytest.mark.browser

# Every status the panel shows, in the page, from the moment this runs: the test reads it at the end.
WATCH_STATUSES = """
() => {
  window.reconciliationStatuses = [];
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target.id !== "reconciliation") return;
    const status = document.querySelector("#reconciliation-status");
    const checks = document.querySelector("#reconciliation-checks");
    window.reconciliationStatuses.push([status ? status.dataset.status : "missing", checks ? checks.innerText : ""]);
  });
}
"""


@contextmanager
def orders_flowing(pipeline: Pipeline) -> Iterator[list[int]]:
    """Orders placed one after another from another thread until the block ends; yields the
    count placed so far (a one-item list the thread updates)."""
    placed = [0]
    stop = threading.Event()

    def place() -> None:
        customer = new_customer()
        with httpx.Client(base_url=pipeline.gateway_url, trust_env=False, timeout=10) as api:
            while not stop.is_set():
                body = {"items": [{"sku": "WEB-TEE", "quantity": 1}]}
                response = api.post("/v1/orders", json=body, headers=as_customer(customer))
                assert response.status_code == 201, response.text
                placed[0] += 1
                stop.wait(0.05)  # pacing, not waiting for anything

    with ThreadPoolExecutor(1) as thread:
        flowing = thread.submit(place)
        try:
            yield placed
        finally:
            stop.set()
            flowing.result()


def stream_copies(pipeline: Pipeline) -> int:
    """OrderCreated events the stream holds beyond one per stored order. The broker's figure is
    read first: every event it counts is for an order stored by the time orders counts."""
    with httpx.Client(base_url=pipeline.gateway_url, trust_env=False, headers=as_admin()) as api:
        published = api.get("/v1/admin/pipeline").json()["orders_published"]
        stored = api.get("/v1/admin/reconciliation").json()["orders_stored"]
    return int(published) - int(stored)


def wait_until(probe: Any, accept: Any, what: str) -> Any:
    """tests.support.polling.eventually from another thread: Playwright's sync API runs a loop in this one."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, eventually(probe, accept, what=what)).result()


def test_an_admin_switches_a_fault_on_and_off_while_orders_flow_and_reconciliation_stays_green(
    page: Page, web_pipeline: Pipeline
) -> None:
    sign_in(page, "ops-faults", admin=True)
    page.goto("/console")
    verdict = page.locator("#reconciliation-status")
    expect(verdict).to_have_attribute("data-status", "ok", timeout=20_000)
    expect(page.locator("[data-check=stock_conserved].ok")).to_be_visible()
    page.evaluate(WATCH_STATUSES)
    switch = page.get_by_role("switch", name="publish_twice")
    expect(switch).to_have_attribute("aria-checked", "false")
    settled_copies = stream_copies(web_pipeline)  # settled: the panel is green

    with orders_flowing(web_pipeline) as placed:
        wait_until(lambda: placed[0], lambda count: count >= 3, "orders flowing")
        switch.click()
        expect(page.locator("#notices")).to_contain_text("Fault flag publish_twice=new_msg_id switched on")
        expect(page.get_by_role("switch", name="publish_twice")).to_have_attribute("aria-checked", "true")
        wait_until(
            lambda: stream_copies(web_pipeline),
            lambda copies: copies > settled_copies,
            "the relay publishing events twice",
        )
        screenshot(page, "console-faults")
        page.get_by_role("switch", name="publish_twice").click()
        expect(page.locator("#notices")).to_contain_text("Fault flag publish_twice switched off")
        expect(page.get_by_role("switch", name="publish_twice")).to_have_attribute("aria-checked", "false")
        at_switch_off = placed[0]
        wait_until(lambda: placed[0], lambda count: count >= at_switch_off + 3, "orders flowing after the switch")
        # The panel refreshes every second: seen at least twice while orders flow, however fast the above went.
        page.wait_for_function("() => window.reconciliationStatuses.length >= 2", timeout=15_000)

    expect(verdict).to_have_attribute("data-status", "ok", timeout=30_000)
    expect(page.locator("[data-check=orders_awarded_once].ok")).to_be_visible()
    seen: list[list[str]] = page.evaluate("window.reconciliationStatuses")
    assert len(seen) >= 2, "the panel was not refreshed while orders flowed"
    assert [checks for status, checks in seen if status == "failed"] == []
    with httpx.Client(base_url=web_pipeline.gateway_url, trust_env=False, headers=as_admin()) as api:
        assert api.get("/v1/admin/faults").json()["flags"] == {}
