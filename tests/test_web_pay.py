"""The web page pays a fill-up (redeeming points when the driver turns them on) and asks for its e-invoice, in real Chromium, against real processes: the API,
the payments worker, the fake WeChat Pay gateway (it plays the phone's payment sheet), the fake WeChat
login server, the link server and a simulated site."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from store._nozzles import issue_tokens
from tests._forecourt import SimProcess
from tests._payments import wait_for
from tests._sale_pay import PayStack
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY, FakeWeChat
from tests.test_points_pay import give
from tests.test_web_browser import context, shot  # noqa: F401 - context: the map tests' Chromium fixture

pytestmark = pytest.mark.slow  # real processes and a browser

SELLER_TAX_ID = "91530700MA6N8XY21K"
BUYER_TAX_ID = "91530100MA6K7Q2W3E"


@pytest.fixture(scope="module")
def wechat() -> Iterator[FakeWeChat]:
    w = FakeWeChat()
    try:
        yield w
    finally:
        w.close()


@pytest.fixture(scope="module")
def stack(module_db: str, wechat: FakeWeChat, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayStack]:
    s = PayStack(module_db, tmp_path_factory.mktemp("wechatpay-keys"))
    try:
        s.env.update(wechat.server_env())  # the demo login asks the fake WeChat
        s.restart_api()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def site(stack: PayStack) -> SimProcess:
    sim = stack.site(pumps=2)
    with psycopg.connect(stack.db_url) as conn:
        issue_tokens(conn, sim.station, actor="test", secret_key=TEST_SECRET_KEY)
    assert stack.api is not None
    r = httpx.put(
        f"{stack.api.base}/v1/stations/{sim.station}/seller",
        json={"legal_name": "丽江古城石化销售有限公司", "taxpayer_id": SELLER_TAX_ID},
        headers={"X-API-Key": TEST_ADMIN_KEY},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return sim


@pytest.fixture()
def page(context: Any, stack: PayStack) -> Iterator[Any]:  # noqa: F811 - the imported fixture
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
    assert stack.api is not None
    pg.goto(stack.api.base + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    yield pg
    pg.close()
    assert context.blocked == [], f"the page tried to reach outside 127.0.0.1: {context.blocked}"
    assert errors == [], errors


def test_the_page_pays_the_fill_up_and_gets_its_e_invoice(
    page: Any, stack: PayStack, site: SimProcess
) -> None:
    pg = page
    pg.evaluate(f"window.fuelApp.openStation({site.station})")
    pg.locator("[data-test='fillup-start']").click()
    pg.locator("[data-test='fill-nozzle'][data-pump='1'][data-nozzle='1']").click()
    live = pg.locator("[data-test='fill-live']")
    live.wait_for()
    session_id = int(live.get_attribute("data-session") or 0)
    site.post("/pumps/1/lift", nozzle=1)
    site.post("/pumps/1/fuel", litres="5", wait="true")
    site.post("/pumps/1/hangup")
    pay = pg.locator("[data-test='fill-paybtn']")
    pay.wait_for(timeout=30_000)
    shown = pg.locator("[data-test='fill-pay']").inner_text()  # 应付 x.xx 元: the sale minus promotions
    due = round(float(shown.split()[1]) * 100)
    assert due > 0 and pay.inner_text() == f"微信支付 {due / 100:.2f} 元"
    shot(pg, "pay-1-completed.png")

    pay.click()  # the pay request, then the fake WeChat Pay confirms as the driver
    paid = pg.locator("[data-test='fill-paid']")
    paid.wait_for(timeout=30_000)
    assert pg.locator("[data-test='fill-state']").inner_text() == "已付款"
    no = stack.sql(
        "SELECT sp.out_trade_no FROM sale_payments sp JOIN fuelling_sessions f ON f.sale_id = sp.sale_id"
        " WHERE f.id = %s",
        session_id,
    )[0][0]
    assert paid.inner_text() == f"已支付 {due / 100:.2f} 元 · 订单 {no}"
    wait_for(lambda: stack.payment(no)["site_state"] == "cleared", timeout_s=30, what="the sale cleared")
    assert stack.payment(no)["state"] == "paid" and stack.payment(no)["paid_fen"] == due
    shot(pg, "pay-2-paid.png")

    # an organisation without its taxpayer id: the page says what is wrong, nothing is stored
    pg.locator("[data-test='inv-type']").select_option("ORGANIZATION")
    pg.locator("[data-test='inv-name']").fill("丽江古城运输有限公司")
    pg.locator("[data-test='inv-ask']").click()
    error = pg.locator("[data-test='fill-error']")
    error.wait_for()
    assert error.inner_text() == "无法申请发票: 单位须填写正确的纳税人识别号"
    # what the driver typed stays in the form
    assert pg.locator("[data-test='inv-name']").input_value() == "丽江古城运输有限公司"
    assert stack.sql("SELECT count(*) FROM payment_invoices WHERE out_trade_no = %s", no) == [(0,)]
    shot(pg, "pay-3-invoice-refused.png")

    assert pg.locator("[data-test='inv-type']").input_value() == "ORGANIZATION"
    pg.locator("[data-test='inv-tax']").fill(BUYER_TAX_ID)
    pg.locator("[data-test='inv-ask']").click()
    invoice = pg.locator("[data-test='fill-invoice']")
    invoice.wait_for()
    pg.wait_for_selector("[data-test='fill-invoice'][data-status='issued']", timeout=30_000)
    number = stack.sql(
        "SELECT detail->>'fapiao_number', buyer_taxpayer_id FROM payment_invoices WHERE out_trade_no = %s", no
    )[0]
    assert number[1] == BUYER_TAX_ID
    assert invoice.inner_text().splitlines() == ["电子发票：已开具", f"发票号码 {number[0]}"]
    shot(pg, "pay-4-invoice-issued.png")
    pg.locator("[data-test='lang-toggle']").click()
    assert invoice.inner_text().splitlines()[0] == "E-invoice: issued"
    shot(pg, "pay-5-invoice-issued-en.png")


def test_the_page_redeems_points_at_pay(page: Any, stack: PayStack, site: SimProcess) -> None:
    pg = page
    pg.evaluate(f"window.fuelApp.openStation({site.station})")
    pg.locator("[data-test='fillup-start']").click()
    pg.locator("[data-test='fill-nozzle'][data-pump='2'][data-nozzle='1']").click()
    live = pg.locator("[data-test='fill-live']")
    live.wait_for()
    session_id = int(live.get_attribute("data-session") or 0)
    user_id = int(stack.sql("SELECT user_id FROM fuelling_sessions WHERE id = %s", session_id)[0][0])
    give(stack, user_id, 2_500)  # the driver the page logged in has points
    site.post("/pumps/2/lift", nozzle=1)
    site.post("/pumps/2/fuel", litres="20", wait="true")
    site.post("/pumps/2/hangup")
    pay = pg.locator("[data-test='fill-paybtn']")
    pay.wait_for(timeout=30_000)
    toggle = pg.locator("[data-test='fill-redeem']")
    toggle.wait_for(timeout=10_000)
    due = round(float(pg.locator("[data-test='fill-pay']").inner_text().split()[1]) * 100)
    assert due > 2_000
    assert pg.locator("[data-test='fill-points-balance']").inner_text() == "积分 2500"
    assert pg.locator("[data-test='fill-redeem-label']").inner_text() == "用 2000 积分抵 20.00 元"
    assert not toggle.is_checked() and pay.inner_text() == f"微信支付 {due / 100:.2f} 元"
    shot(pg, "pay-6-points-offered.png")

    toggle.check()  # the amount shown follows the toggle
    assert pg.locator("[data-test='fill-pay']").inner_text() == f"应付 {(due - 2_000) / 100:.2f} 元"
    assert pay.inner_text() == f"微信支付 {(due - 2_000) / 100:.2f} 元"
    pg.locator("[data-test='fill-redeem']").uncheck()
    assert pg.locator("[data-test='fill-pay']").inner_text() == f"应付 {due / 100:.2f} 元"
    pg.locator("[data-test='lang-toggle']").click()
    assert pg.locator("[data-test='fill-redeem-label']").inner_text() == "Use 2000 points for 20.00 CNY off"
    pg.locator("[data-test='lang-toggle']").click()
    pg.locator("[data-test='fill-redeem']").check()
    assert pay.inner_text() == f"微信支付 {(due - 2_000) / 100:.2f} 元"
    shot(pg, "pay-7-points-used.png")

    pay.click()
    paid = pg.locator("[data-test='fill-paid']")
    paid.wait_for(timeout=30_000)
    no = stack.sql(
        "SELECT sp.out_trade_no FROM sale_payments sp JOIN fuelling_sessions f ON f.sale_id = sp.sale_id"
        " WHERE f.id = %s",
        session_id,
    )[0][0]
    assert paid.inner_text().splitlines() == [
        f"已支付 {(due - 2_000) / 100:.2f} 元 · 订单 {no}",
        "积分抵扣 2000 积分 · 减 20.00 元",
    ]
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=30, what="paid")
    assert stack.payment(no)["paid_fen"] == due - 2_000
    assert pg.locator("[data-test='fill-pay']").inner_text() == f"应付 {(due - 2_000) / 100:.2f} 元"
    assert stack.sql("SELECT state, points, fen_off FROM points_holds WHERE ref = %s", no) == [
        ("posted", 2_000, 2_000)
    ]
    shot(pg, "pay-8-paid-with-points.png")

    # the e-record in 我的 shows the redemption (the panel uses the page's login)
    pg.click("[data-test='me-open']")
    pg.wait_for_selector("[data-test='me-record']")
    pg.locator("[data-test='me-record']").first.click()
    pg.locator("[data-test='me-detail']").wait_for()
    assert pg.locator("[data-test='me-d-points-redeemed']").inner_text() == "2000 积分 · −¥20.00"
    assert pg.locator("[data-test='me-d-paid']").inner_text() == f"¥{(due - 2_000) / 100:.2f}"
    shot(pg, "pay-9-record-with-points.png")
