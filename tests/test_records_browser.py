"""The 我的 (me) panel of the map page in real Chromium against the real API and payment stack: the points
(balance, pending, expiring soon, history), the monthly summary, the records list and a record's detail with
its receipt fields and points, and the CSV download."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from store import _ledger
from tests._sale_pay import PayStack
from tests.test_records_api import paid_fillup
from tests.test_web_browser import context, shot  # noqa: F401 - context: the map tests' Chromium fixture

pytestmark = pytest.mark.slow  # real processes and a browser


@pytest.fixture(scope="module")
def driver(stack: PayStack) -> dict[str, Any]:
    site = stack.site()
    user, token = stack.user()
    stack.sql(
        "INSERT INTO prices (station_id, grade, price_cny, effective_from, source) VALUES"
        " (%s, '92', 7.90, now() - interval '1 day', 'station'), (%s, '95', 8.40, now() - interval '1 day', 'station')"
        " RETURNING 1",
        site.station,
        site.station,
    )
    records = [
        paid_fillup(stack, site, 1, "18", token, nozzle=1),
        paid_fillup(stack, site, 2, "22.5", token, nozzle=2),
    ]
    with psycopg.connect(
        stack.db_url
    ) as conn:  # 2,000 points earned almost a year ago: they expire in 10 days
        _ledger.earn(
            conn, user_id=user.id, out_trade_no=f"seed-{uuid.uuid4().hex}", points=2_000,
            earned_at=datetime.now().astimezone() - timedelta(days=355), expiry_months=12, actor="test",
        )  # fmt: skip
    # an order redeeming 1,000 of them, not paid yet: a pending hold (the oldest points first)
    open_order = stack.pay(
        stack.fuel(site, 1, "10"), token, str(uuid.uuid4()), params={"redeem_points": 1_000}
    )
    assert open_order.status_code == 200, open_order.text
    return {"user": user, "token": token, "records": records, "station": site.station}


@pytest.fixture
def page(context: Any, stack: PayStack, driver: dict[str, Any]) -> Iterator[Any]:  # noqa: F811
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    # the page's user session (what a login leaves in sessionStorage)
    pg.add_init_script(f"sessionStorage.setItem('fuel.user_token', {json.dumps(driver['token'])});")
    assert stack.api is not None
    pg.goto(stack.api.base + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    yield pg
    pg.close()
    assert errors == [], errors
    assert context.blocked == [], f"the page tried to reach outside 127.0.0.1: {context.blocked}"


def test_me_panel_lists_records_with_summary_and_detail(
    page: Any, stack: PayStack, driver: dict[str, Any]
) -> None:
    pg = page
    pg.click("[data-test='me-open']")
    pg.wait_for_selector("[data-test='me-record']")
    items = pg.locator("[data-test='me-record']")
    assert items.count() == 2
    newest, oldest = driver["records"][::-1]
    assert [int(items.nth(i).get_attribute("data-id") or 0) for i in range(2)] == [newest, oldest]
    paid = {
        r[0]: r[1]
        for r in stack.sql("SELECT id, paid_fen FROM payments WHERE id = ANY(%s)", driver["records"])
    }
    assert f"¥{paid[newest] / 100:.2f}" in items.first.inner_text()
    summary = pg.locator("[data-test='me-summary']")
    assert pg.locator("[data-test='me-litres']").inner_text() == "40.50"
    assert pg.locator("[data-test='me-spend']").inner_text() == f"¥{sum(paid.values()) / 100:.2f}"
    assert pg.locator("[data-test='me-avg-nearby']").inner_text().endswith("/L")
    assert summary.is_visible()
    shot(pg, "records-1-list.png")
    items.first.click()
    detail = pg.locator("[data-test='me-detail']")
    detail.wait_for()
    assert int(detail.get_attribute("data-id") or 0) == newest
    tx, trace = stack.sql(
        "SELECT p.transaction_id, f.site_tx_id FROM payments p JOIN sale_payments sp USING (out_trade_no)"
        " JOIN fcc_sales f ON f.id = sp.sale_id WHERE p.id = %s",
        newest,
    )[0]
    assert pg.locator("[data-test='me-d-transaction']").inner_text() == tx
    assert pg.locator("[data-test='me-d-trace']").inner_text() == trace
    assert pg.locator("[data-test='me-d-litres']").inner_text() == "22.500 L"
    shot(pg, "records-2-detail.png")
    pg.click("[data-test='me-back']")
    pg.wait_for_selector("[data-test='me-record']")


def test_me_panel_downloads_the_csv(page: Any, driver: dict[str, Any]) -> None:
    pg = page
    pg.click("[data-test='me-open']")
    pg.wait_for_selector("[data-test='me-csv']")
    with pg.expect_download() as info:
        pg.click("[data-test='me-csv']")
    download = info.value
    assert download.suggested_filename.startswith("fuel-records-") and download.suggested_filename.endswith(
        ".csv"
    )
    data = Path(download.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = data.decode("utf-8-sig").strip().splitlines()
    assert lines[0].startswith("记录号 record,") and len(lines) == 3
    assert {int(line.split(",")[0]) for line in lines[1:]} == set(driver["records"])


def test_me_panel_shows_points_balance_pending_expiring_and_history(
    page: Any, stack: PayStack, driver: dict[str, Any]
) -> None:
    pg = page
    earned = [
        int(stack.sql("SELECT amount FROM ledger_transfers t JOIN payments p USING (out_trade_no) WHERE p.id = %s"
                      " AND t.kind = 'earn'", rid)[0][0])
        for rid in driver["records"]
    ]  # fmt: skip
    assert all(n > 0 for n in earned)
    pg.click("[data-test='me-open']")
    pg.wait_for_selector("[data-test='me-points']")
    balance = sum(earned) + 2_000 - 1_000  # the fill-ups, the old points, less the held 1,000
    assert pg.locator("[data-test='me-pts-balance']").inner_text() == str(balance)
    assert pg.locator("[data-test='me-pts-redeemable']").inner_text() == str(balance)
    assert pg.locator("[data-test='me-pts-pending']").inner_text() == "1000"
    assert pg.locator("[data-test='me-pts-expiring']").inner_text() == "1000"  # what the hold left of them
    soon = (datetime.now().astimezone() + timedelta(days=10)).date()
    assert pg.locator("[data-test='me-pts-soon']").inner_text().split()[0] in (
        str(soon),
        str(soon - timedelta(days=1)),
        str(soon + timedelta(days=1)),
    )  # Lijiang's calendar day
    entries = pg.locator("[data-test='me-pts-entry']")
    kinds = [entries.nth(i).get_attribute("data-kind") for i in range(entries.count())]
    assert kinds == ["hold", "earn", "earn", "earn"]  # newest first
    assert entries.first.inner_text().split()[:2] == ["支付抵扣", "redeemed"]
    assert entries.first.inner_text().endswith("-1000")
    assert entries.nth(2).inner_text().endswith(f"+{earned[1]}")
    shot(pg, "records-3-points.png")
    pg.locator("[data-test='me-record']").first.click()
    pg.locator("[data-test='me-detail']").wait_for()
    assert pg.locator("[data-test='me-d-points-earned']").inner_text() == f"{earned[1]} 积分"
    assert pg.locator("[data-test='me-d-points-redeemed']").count() == 0  # this fill-up redeemed nothing
