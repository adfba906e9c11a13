"""The station console page in real Chromium against a real API, link server and simulated site: the prices
view warns (Chinese first, English toggle) when the official ceilings are stale and not when they are
current; fill-ups and pump status arrive over the push channel with no reload and no polling, and when the
channel drops the page polls, then reconnects. Screenshots go to reports/screenshots/console-*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from playwright.sync_api import BrowserContext, Request, WebSocketRoute, expect

from tests._console import create_staff, fuel
from tests._fuelling import Stack
from tests._servers import TEST_ADMIN_KEY
from tests.test_console_browser import login, tab
from tests.test_console_live import TZ, notice
from tests.test_web_browser import context, shot  # noqa: F401 - context: the map tests' Chromium fixture

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def stack(module_db: str) -> Iterator[Stack]:
    s = Stack(module_db, pumps=2, flow_l_min=600.0)
    try:
        yield s
    finally:
        s.close()


def test_the_stale_ceiling_banner_and_live_fill_ups(stack: Stack, context: BrowserContext) -> None:  # noqa: F811
    base = stack.api.base
    today = datetime.now(TZ).date()
    old = today - timedelta(days=40)
    notice(stack.url, old)
    last = httpx.get(f"{base}/v1/manage/ceilings", headers={"X-API-Key": TEST_ADMIN_KEY}, timeout=30).json()[
        "last_adjustment_window"
    ]
    user = create_staff(base, stack.station, "attendant")

    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    polls: list[str] = []

    def count_polls(req: Request) -> None:
        if re.search(r"/v1/console/(pumps|fill-ups)", req.url):
            polls.append(req.url)

    pg.on("request", count_polls)
    routes: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:  # the real server behind; kept so the test can drop it
        ws.connect_to_server()
        routes.append(ws)

    pg.route_web_socket(re.compile(r".*/v1/console/stations/\d+/live$"), through)
    try:
        login(pg, base, user)
        tab(pg, "prices")
        banner = pg.locator('[data-test="ceiling-banner"]')
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("最高零售价可能已过期")
        expect(banner).to_contain_text(old.isoformat())
        expect(banner).to_contain_text(last)
        shot(pg, "console-ceilings-stale.png")
        pg.click("#lang")
        expect(banner).to_contain_text("The official price ceilings may be stale")
        expect(banner).to_contain_text(old.isoformat())
        shot(pg, "console-ceilings-stale-en.png")
        pg.click("#lang")

        notice(stack.url, datetime.fromisoformat(last).date(), "8.10")  # the newer notice is loaded
        pg.reload()
        expect(pg.locator("#app")).to_be_visible()
        tab(pg, "prices")
        expect(pg.locator('[data-test="prices"] tbody tr', has_text="92#")).to_be_visible()
        expect(banner).to_be_hidden()
        shot(pg, "console-ceilings-current.png")

        # live fill-ups: pushed, with no reload and no polling while the channel is up
        tab(pg, "fillups")
        expect(pg.locator('[data-test="live"]')).to_have_attribute("data-mode", "push", timeout=10_000)
        expect(pg.locator('[data-test="live"]')).to_have_text("实时推送")
        rows = pg.locator('[data-test="fillups"] tbody tr')
        expect(rows).to_have_count(0)
        polls.clear()
        fuel(stack, 1, "10", nozzle=1)
        expect(rows).to_have_count(1, timeout=10_000)
        expect(rows.first).to_contain_text("10.00")
        tab(pg, "pumps")
        stack.sim.post("/pumps/2/lift", nozzle=1)
        expect(pg.locator('[data-test="pump-2"] .status')).not_to_have_text("空闲", timeout=10_000)
        shot(pg, "console-live-pumps.png")
        stack.sim.post("/pumps/2/hangup")
        expect(pg.locator('[data-test="pump-2"] .status')).to_have_text("空闲", timeout=10_000)
        assert polls == []  # everything came over the push channel

        # the channel drops: the page polls (a fill-up still shows up), then reconnects and stops polling
        routes[-1].close(code=1012, reason="restart")
        expect(pg.locator('[data-test="live"]')).to_have_attribute("data-mode", "poll", timeout=5_000)
        expect(pg.locator('[data-test="live"]')).to_have_text("轮询刷新")
        tab(pg, "fillups")
        fuel(stack, 2, "5", nozzle=1)
        expect(rows).to_have_count(2, timeout=10_000)
        assert polls  # the fallback fetched
        expect(pg.locator('[data-test="live"]')).to_have_attribute("data-mode", "push", timeout=10_000)
        assert len(routes) >= 2  # a new connection
        shot(pg, "console-live-fillups.png")
        polls.clear()
        fuel(stack, 1, "7", nozzle=1)
        expect(rows).to_have_count(3, timeout=10_000)
        assert polls == []  # pushed again
        assert errors == []
    finally:
        pg.close()
