"""The station console page in real Chromium against a real API, link server and simulated site: an
attendant logs in, watches the pumps and the day's fill-ups as they happen, sees the prices with the
official ceiling and its notice date, runs a shift handover with a price change and a cash shortfall and
hands over to the next attendant; the manager reads the reports (canvas chart, English toggle) and exports
CSV and .xlsx, read back with openpyxl. Screenshots go to reports/screenshots/console-*.png."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import psycopg
import pytest
from openpyxl import load_workbook
from playwright.sync_api import BrowserContext, Page, expect

from store._ceilings import Ceiling, upsert_ceilings
from store._prices import PriceIn, insert_prices
from tests._console import PASSWORD, create_staff, fuel
from tests._fuelling import Stack
from tests.test_web_browser import context, shot  # noqa: F401 - context: the map tests' Chromium fixture

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def stack(module_db: str) -> Iterator[Stack]:
    s = Stack(module_db, pumps=2, flow_l_min=600.0)
    try:
        yield s
    finally:
        s.close()


def login(pg: Page, base: str, user: str) -> None:
    pg.goto(f"{base}/console/")
    pg.fill("#login input[name=username]", user)
    pg.fill("#login input[name=password]", PASSWORD)
    pg.click("#login button[type=submit]")
    expect(pg.locator("#app")).to_be_visible()


def tab(pg: Page, name: str) -> None:
    pg.click(f'#tabs button[data-tab="{name}"]')


def test_the_console_from_login_to_handover_and_reports(stack: Stack, context: BrowserContext) -> None:  # noqa: F811
    base = stack.api.base
    station = stack.station
    with psycopg.connect(stack.url) as conn:
        upsert_ceilings(
            conn,
            [
                Ceiling("yunnan-4", g, Decimal(p), datetime(2026, 11, 11, 16, tzinfo=UTC), date(2026, 11, 11))
                for g, p in (("92", "8.20"), ("95", "8.80"), ("0", "7.90"))
            ],
            actor="test",
        )
        insert_prices(
            conn,
            [PriceIn(station, "92", Decimal("7.66"), datetime(2026, 11, 12, tzinfo=UTC))],
            zone="yunnan-4",
            actor="test",
        )
    r = httpx.post(
        f"{base}/v1/console/staff",
        json={
            "station_id": station,
            "username": "x",
            "display_name": "x",
            "role": "manager",
            "password": PASSWORD,
        },
    )
    assert r.status_code in (401, 422)  # no credentials (or a short username): nothing created
    manager = create_staff(base, station, "manager", name=f"mgr-{station}")
    with httpx.Client(base_url=base, timeout=30) as m:
        assert (
            m.post("/v1/console/login", json={"username": manager, "password": PASSWORD}).status_code == 200
        )
        out_name = create_staff(base, station, "attendant", by=m, name=f"liu-{station}")
        in_name = create_staff(base, station, "attendant", by=m, name=f"chen-{station}")

    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        pg.goto(f"{base}/console/")
        expect(pg.locator("#login")).to_be_visible()
        assert "站务控制台" in pg.title()
        pg.fill("#login input[name=username]", out_name)
        pg.fill("#login input[name=password]", "wrong-password!")
        pg.click("#login button[type=submit]")
        expect(pg.locator("#login-error")).to_contain_text("wrong username or password")
        shot(pg, "console-login.png")
        login(pg, base, out_name)
        expect(pg.locator('[data-test="pump-1"]')).to_be_visible()
        expect(pg.locator('[data-test="pump-1"] .status')).to_have_text("空闲", timeout=10_000)

        tab(pg, "handover")
        expect(pg.locator("#shift-head")).to_contain_text("当前没有班次")
        pg.click("#open-shift")
        expect(pg.locator("#shift-head")).to_contain_text("当班中")

        tab(pg, "fillups")
        first = fuel(stack, 1, "10", nozzle=1)
        expect(pg.locator('[data-test="fillups"] tbody tr')).to_have_count(1, timeout=10_000)
        old = stack.sql("SELECT unit_price_fen FROM fcc_sales WHERE id = %s", first)[0][0]
        stack.sim.post("/prices/92", price=f"{(old + 25) / 100:.2f}")  # the price board changes mid-shift
        fuel(stack, 1, "20", nozzle=1)
        fuel(stack, 2, "30", nozzle=2)
        expect(pg.locator('[data-test="fillups"] tbody tr')).to_have_count(3, timeout=10_000)
        shot(pg, "console-fillups.png")
        amounts = {
            r[0]: r[1]
            for r in stack.sql("SELECT id, amount_fen FROM fcc_sales WHERE station_id = %s", station)
        }
        total = sum(amounts.values())

        tab(pg, "prices")
        row92 = pg.locator('[data-test="prices"] tbody tr', has_text="92#")
        expect(row92).to_contain_text("7.66")
        expect(row92).to_contain_text("8.20")
        expect(row92).to_contain_text("2026-11-11")
        shot(pg, "console-prices.png")

        tab(pg, "pumps")
        expect(pg.locator('[data-test="pump-1"] .status')).to_have_text("空闲", timeout=10_000)
        stack.sim.post("/pumps/2/lift", nozzle=1)  # a driver lifts a nozzle: the card follows the link
        expect(pg.locator('[data-test="pump-2"] .status')).not_to_have_text("空闲", timeout=10_000)
        shot(pg, "console-pumps.png")
        stack.sim.post("/pumps/2/hangup")
        expect(pg.locator('[data-test="pump-2"] .status')).to_have_text("空闲", timeout=10_000)

        tab(pg, "handover")
        pg.click("#close-shift")
        expect(pg.locator("#shift-head")).to_contain_text("清点中")
        expect(pg.locator('[data-test="readings"] tbody tr', has_text="1-1")).to_contain_text(
            f"{(old / 100):.2f} / {((old + 25) / 100):.2f}"
        )
        pg.fill("#tenders input[name=cash]", f"{total / 100:.2f}")
        pg.fill("#tenders input[name=card]", "0")
        pg.fill("#tenders input[name=counted]", f"{(total - 5_000) / 100:.2f}")  # 50 yuan missing
        pg.click("#tenders button[type=submit]")
        expect(pg.locator('[data-test="recon-status"]')).to_have_text("短款")
        expect(pg.locator('[data-test="recon"]')).to_contain_text("-50.00")
        shot(pg, "console-handover-short.png")
        pg.click("#sign-out")
        expect(pg.locator("#shift-head")).to_contain_text("待接班签字")
        pg.fill("#sign-in input[name=username]", in_name)
        pg.fill("#sign-in input[name=password]", PASSWORD)
        pg.click("#sign-in button[type=submit]")
        expect(pg.locator("#shift-head")).to_contain_text("当班中")
        signed = stack.sql(
            "SELECT state, summary->>'status', summary->>'cash_difference_fen' FROM shifts WHERE station_id = %s"
            " ORDER BY id",
            station,
        )
        assert signed[0] == ("signed", "short", "-5000") and signed[1][0] == "open"
        shot(pg, "console-handover-next.png")
        assert not pg.locator('#tabs button[data-tab="reports"]').is_visible()  # attendants: no reports
        pg.click("#logout")
        expect(pg.locator("#login")).to_be_visible()

        login(pg, base, manager)
        tab(pg, "reports")
        expect(pg.locator('[data-test="report"] tbody tr')).to_have_count(2)  # 92# and 95#, by grade
        pg.select_option("#report-form select[name=by]", "attendant")
        pg.click("#report-form button[type=submit]")
        expect(pg.locator('[data-test="report"] tbody tr')).to_have_count(1)
        expect(pg.locator('[data-test="report"] tbody')).to_contain_text("attendant")  # display name
        inked = pg.evaluate(
            "() => { const c = document.getElementById('chart'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
            " for (let i = 0; i < d.length; i += 4) if (d[i + 3] && d[i + 2] > 150 && d[i] < 40) n++; return n; }"
        )
        assert inked > 500  # the bars are drawn
        pg.click("#lang")
        expect(pg.locator("h1")).to_have_text("Station console")
        expect(pg.locator('#tabs button[data-tab="reports"]')).to_have_text("Reports")
        shot(pg, "console-reports-en.png")

        pg.select_option("#report-form select[name=by]", "grade")
        pg.click("#report-form button[type=submit]")
        expect(pg.locator("#xlsx")).to_have_attribute("href", re.compile("by=grade"))
        xlsx = pg.request.get(base + (pg.locator("#xlsx").get_attribute("href") or ""))
        assert xlsx.ok and "spreadsheetml" in xlsx.headers["content-type"]
        ws = load_workbook(io.BytesIO(xlsx.body())).active
        assert ws is not None
        rows = list(ws.iter_rows(values_only=True))
        assert rows[0][0].startswith("item") and len(rows) == 3
        assert round(sum(r[3] for r in rows[1:]) * 100) == total
        assert len(ws._charts) == 1
        got = pg.request.get(
            base + (pg.locator("#csv").get_attribute("href") or "").replace("lang=en", "lang=zh")
        )
        text = got.body().decode("utf-8")
        assert text.startswith("\ufeff项目") and "\r\n" in text
        table = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
        assert {r[0] for r in table[1:]} == {"92", "95"}
        assert sum(Decimal(r[3]) for r in table[1:]) * 100 == total
        assert errors == []
    finally:
        pg.close()
