"""/docs (Swagger UI) and /redoc in real Chromium (Debian's /usr/bin/chromium driven by Playwright) against a
real uvicorn server on 127.0.0.1: they render every operation from this server's own assets and
/openapi.json, and Swagger UI's "Try it out" runs a request, with no request leaving 127.0.0.1 (every other
request is aborted and reported). Screenshots go to reports/screenshots/ (git-ignored)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from api._docs import DIST, REDOC_JS, SWAGGER_JS
from config import PROJECT_ROOT
from tests._servers import Server

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("FUEL_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = PROJECT_ROOT / "reports" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

try:
    from playwright.sync_api import BrowserContext, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None or not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
    pytest.skip(
        f"browser tests skipped: needs the playwright package and an executable Chromium at {CHROMIUM}",
        allow_module_level=True,
    )
if not (DIST / SWAGGER_JS).is_file() or not (DIST / REDOC_JS).is_file():
    pytest.skip(
        "browser tests skipped: the docs assets are not built (`make -C web build`)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def server(demo_db: str) -> Iterator[str]:
    s = Server(demo_db)
    try:
        yield s.base
    finally:
        s.close()


@pytest.fixture(scope="module")
def context() -> Iterator[BrowserContext]:
    """A fresh Chromium profile; requests to anything but 127.0.0.1 are aborted and recorded."""
    user_data = tempfile.mkdtemp(prefix="fuel-chromium-docs-")
    pw = sync_playwright().start()
    try:
        try:
            ctx = pw.chromium.launch_persistent_context(
                user_data,
                executable_path=str(CHROMIUM),
                headless=True,
                args=ARGS,
                viewport={"width": 1280, "height": 1000},
                service_workers="block",
            )
        except Exception as exc:
            pytest.skip(f"browser tests skipped: Chromium could not start: {str(exc).splitlines()[0]}")
        blocked: list[str] = []

        def guard(route: Any) -> None:
            url = route.request.url
            if url.startswith(("data:", "blob:")) or urlparse(url).hostname == "127.0.0.1":
                route.continue_()
            else:
                blocked.append(url)
                route.abort()

        ctx.route("**/*", guard)
        ctx.blocked = blocked  # type: ignore[attr-defined]
        yield ctx
        ctx.close()
    finally:
        pw.stop()
        shutil.rmtree(user_data, ignore_errors=True)


@pytest.fixture()
def page(context: BrowserContext) -> Iterator[Page]:
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    # a load the page's Content-Security-Policy refused never left the browser (Redoc's logo on
    # cdn.redoc.ly): that is the policy working; any other console error fails the test
    pg.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text}")
            if msg.type == "error" and "violates the following Content Security Policy" not in msg.text
            else None
        ),
    )
    yield pg
    pg.close()
    assert errors == [], errors
    blocked: list[str] = context.blocked  # type: ignore[attr-defined]
    assert blocked == [], f"the docs tried to reach outside 127.0.0.1: {blocked}"


def shot(pg: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOTS / name), full_page=False)


def test_swagger_ui_renders_every_operation_and_runs_one_offline(page: Page, server: str) -> None:
    spec_ops = sum(len(ops) for ops in page.request.get(server + "/openapi.json").json()["paths"].values())
    page.goto(server + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() == spec_ops
    assert page.locator("button.authorize").count() == 1  # the X-API-Key scheme
    shot(page, "docs-swagger-ui.png")
    nearby = page.locator("#operations-stations-nearby")
    nearby.locator(".opblock-summary").click()
    nearby.locator("button.try-out__btn").click()
    nearby.locator("input[placeholder='lat']").fill("42.5063")
    nearby.locator("input[placeholder='lon']").fill("1.5218")
    nearby.locator("button.execute").click()
    status = nearby.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip().startswith("200")
    assert "results" in nearby.locator(".live-responses-table .microlight").first.inner_text()
    nearby.scroll_into_view_if_needed()
    shot(page, "docs-swagger-ui-nearby.png")


def test_redoc_renders_every_operation_offline(page: Page, server: str) -> None:
    spec = page.request.get(server + "/openapi.json").json()
    page.goto(server + "/redoc")
    page.wait_for_selector("[data-section-id^='tag/']", timeout=30_000)
    ops = page.locator("[data-section-id*='/operation/']")
    ops.first.wait_for(timeout=30_000)
    assert ops.count() == sum(len(x) for x in spec["paths"].values())
    shot(page, "docs-redoc.png")
