"""Browser tests: real headless Chromium (Debian's `chromium`, driven by Playwright for Python
through `executable_path`: Playwright's own browser download cannot work offline) against the four
services and the web app as processes. Chromium is installed with apt-get when it is missing and
this process may; otherwise the set-up fails saying how to install it."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from orderflow_devstack.infra import Infrastructure
from tests.support.pipeline import Pipeline, pytest_runtest_makereport, running_pipeline

__all__ = ["browser", "page", "pytest_runtest_makereport", "web_pipeline"]

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
# The README's screenshots are rewritten by `make screenshots` (which names docs/screenshots here);
# any other run saves them in a temporary folder, so running the tests leaves the checkout as it was.
SCREENSHOTS: Final = Path(
    os.environ.get("ORDERFLOW_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "orderflow-screenshots"
)

CATALOG = [
    {"sku": "WEB-MUG", "name": "Enamel mug", "price_cents": 1250, "stock": 1_000_000},
    {"sku": "WEB-TEE", "name": "Organic tee", "price_cents": 2599, "stock": 1_000_000},
    {"sku": "WEB-PRINT", "name": "Limited edition print", "price_cents": 4900, "stock": 500},
]


def _chromium() -> Path:
    """Debian's chromium, installed now when missing and this process can (root with apt-get)."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: install it with `sudo apt-get install -y chromium` "
            "(Debian, Ubuntu), then run them again",
            pytrace=False,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "-q", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run([apt_get, "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not CHROMIUM.exists():
            pytest.fail(
                f"could not install Chromium with `apt-get install -y chromium`:\n{done.stderr[-2000:]}", pytrace=False
            )
    return CHROMIUM


@pytest.fixture(scope="package")
def web_pipeline(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    work = tmp_path_factory.mktemp("browser")
    with running_pipeline(infra, work, CATALOG, prefix="web", web=True) as running:
        yield running


# Playwright's sync API runs an event loop in this thread for as long as it is open: package scope
# closes it after the last browser test, before any asyncio test of the same session runs.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=str(_chromium()), args=CHROMIUM_ARGS, headless=True)
    yield chromium
    chromium.close()


class ConsoleErrors(list[str]):
    """What the page logged as an error, and any uncaught exception: a test ends with none."""


@pytest.fixture
def console_errors() -> ConsoleErrors:
    return ConsoleErrors()


def open_page(browser: Browser, web_pipeline: Pipeline, errors: ConsoleErrors, **context: object) -> Page:
    """A page in a context of its own (its own cookies: another visitor), recording console errors."""
    assert web_pipeline.web_url is not None
    browser_context = browser.new_context(base_url=web_pipeline.web_url, **context)  # type: ignore[arg-type]
    browser_context.set_default_timeout(15_000)
    page = browser_context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    return page


@pytest.fixture
def page(browser: Browser, web_pipeline: Pipeline, console_errors: ConsoleErrors) -> Iterator[Page]:
    page = open_page(browser, web_pipeline, console_errors)
    yield page
    page.context.close()
    assert console_errors == [], "the browser console logged errors"


def screenshot(page: Page, name: str) -> None:
    """Saved in SCREENSHOTS: docs/screenshots, for the README, with `make screenshots`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
