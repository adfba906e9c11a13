"""Filling up at a station from the web page (development and tests only): the demo login, nozzle tokens in a
station's pumps, and the page's whole flow in real Chromium against a real API, a real fake WeChat server,
a real link server and a real simulated site driven through its control interface."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests._fuelling import Stack, wait_for
from tests._servers import FakeWeChat, fresh_rate_prefix
from tests.test_web_browser import context, shot  # noqa: F401 - context: the map tests' Chromium fixture

pytestmark = pytest.mark.slow  # real processes: fake WeChat, link server, simulated site, API


@pytest.fixture(scope="module")
def wechat() -> Iterator[FakeWeChat]:
    w = FakeWeChat()
    try:
        yield w
    finally:
        w.close()


@pytest.fixture(scope="module")
def stack(module_db: str, wechat: FakeWeChat) -> Iterator[Stack]:
    s = Stack(module_db, pumps=2, flow_l_min=30.0, api_env=wechat.server_env())
    try:
        yield s
    finally:
        s.close()


def audit_rows(stack: Stack, user_id: int) -> list[tuple[Any, ...]]:
    return stack.sql(
        "SELECT action, new_value->>'via' FROM audit_log WHERE entity = 'user' AND entity_id = %s ORDER BY id",
        str(user_id),
    )


def test_demo_login_is_a_login_through_the_fake_wechat(stack: Stack) -> None:
    r = stack.http.post("/v1/auth/demo", json={"openid": "oDemoWeb01"})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["created"] is True and first["token_type"] == "Bearer"
    me = stack.http.get("/v1/me", headers={"Authorization": f"Bearer {first['token']}"})
    assert me.status_code == 200 and me.json()["id"] == first["user"]["id"]
    again = stack.http.post("/v1/auth/demo", json={"openid": "oDemoWeb01"}).json()
    assert again["created"] is False and again["user"]["id"] == first["user"]["id"]
    assert audit_rows(stack, first["user"]["id"]) == [("create", "demo"), ("login", "demo")]
    # no body: a new user each time
    a, b = (stack.http.post("/v1/auth/demo").json()["user"]["id"] for _ in range(2))
    assert a != b


@pytest.mark.parametrize(
    "body",
    [{"openid": ""}, {"openid": "a b"}, {"openid": "x" * 65}, {"openid": 5}, {"code": "abc"}, [1]],
)
def test_demo_login_refuses_bad_input(stack: Stack, body: object) -> None:
    r = stack.http.post("/v1/auth/demo", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"]


def test_demo_login_and_tokens_are_development_and_tests_only(stack: Stack) -> None:
    """A production app: the demo login is 404 before anything is asked, and no nozzle token is listed."""
    from fastapi.testclient import TestClient

    from api import _tokens
    from api.main import create_app
    from config import Settings
    from store._users import User

    for env, enabled in (("development", True), ("test", True), ("production", False)):
        assert Settings.model_construct(env=env).demo_enabled is enabled
    secret = secrets.token_urlsafe(40)
    settings = Settings(
        env="production",
        database_url=stack.url,
        secret_key=secret,
        admin_api_key=secrets.token_urlsafe(40),
        wechat_appid="wxprodapp",
        wechat_app_secret=secrets.token_hex(16),
        extract="/nonexistent/no-roads.osm.pbf",
        rate_limit_prefix=fresh_rate_prefix(),
    )
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/auth/demo", json={})
        assert r.status_code == 404, r.text
        assert "development" in r.json()["error"]["message"]
        # a user of this database (a token names a live account: api/_users.current_user checks it)
        uid = stack.sql("INSERT INTO users (openid) VALUES ('o-prod') RETURNING id")[0][0]
        token, _ = _tokens.issue(User(int(uid), "o-prod"), secret_key=secret, ttl_s=60)
        r = client.get(f"/v1/stations/{stack.station}/pumps", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        nozzles = [n for p in r.json()["pumps"] for n in p["nozzles"]]
        assert len(nozzles) == 6 and all(n["token"] is None for n in nozzles)


def test_pumps_list_each_nozzles_token_in_tests(stack: Stack) -> None:
    auth = stack.user()
    r = stack.http.get(f"/v1/stations/{stack.station}/pumps", headers=auth)
    assert r.status_code == 200, r.text
    got = {(p["pump_no"], n["nozzle_no"]): n["token"] for p in r.json()["pumps"] for n in p["nozzles"]}
    assert got == stack.tokens
    # what the QR code would hold: it names that nozzle
    nozzle = stack.http.get(f"/v1/nozzles/{got[(2, 3)]}", headers=auth).json()
    assert (nozzle["pump"]["pump_no"], nozzle["nozzle"]["nozzle_no"], nozzle["nozzle"]["grade"]) == (
        2,
        3,
        "0",
    )
    # a nozzle without an issued token is listed with none; nothing is issued by reading
    with psycopg.connect(stack.url) as conn:
        conn.execute(
            "UPDATE nozzle_tokens SET revoked_at = now() WHERE station_id = %s AND pump_no = 2 AND nozzle_no = 2",
            (stack.station,),
        )
    try:
        r = stack.http.get(f"/v1/stations/{stack.station}/pumps", headers=auth)
        tokens = {(p["pump_no"], n["nozzle_no"]): n["token"] for p in r.json()["pumps"] for n in p["nozzles"]}
        assert tokens[(2, 2)] is None and tokens[(1, 1)] == stack.tokens[(1, 1)]
        assert stack.sql(
            "SELECT count(*) FROM nozzle_tokens WHERE station_id = %s AND revoked_at IS NULL", stack.station
        ) == [(5,)]
    finally:
        with psycopg.connect(stack.url) as conn:
            conn.execute(
                "UPDATE nozzle_tokens SET revoked_at = NULL WHERE station_id = %s AND pump_no = 2 AND nozzle_no = 2",
                (stack.station,),
            )
    assert stack.http.get(f"/v1/stations/{stack.station}/pumps").status_code == 401


# ---- the page -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The map tests' Chromium profile (requests to anything but 127.0.0.1 aborted and recorded)."""
    ctx = request.getfixturevalue("context")
    yield ctx
    assert ctx.blocked == [], f"the page tried to reach outside 127.0.0.1: {ctx.blocked}"


# the polling fallback: a browser where the WebSocket cannot be opened
NO_WEBSOCKET = "window.WebSocket = function () { throw new Error('WebSocket unavailable'); };"


@pytest.fixture(params=["ws", "poll"])
def page(request: pytest.FixtureRequest, browser: Any, stack: Stack) -> Iterator[Any]:
    pg = browser.new_page()
    if request.param == "poll":
        pg.add_init_script(NO_WEBSOCKET)
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
    pg.goto(stack.api.base + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    pg.transport = request.param
    yield pg
    pg.close()
    assert errors == [], errors


def figure(pg: Any, name: str) -> float:
    return float(pg.locator(f"[data-test='fill-{name}']").inner_text())


def test_the_page_fills_up_at_a_station_live(page: Any, stack: Stack) -> None:
    pg, transport = page, page.transport
    pump = 1 if transport == "ws" else 2
    pg.evaluate(f"window.fuelApp.openStation({stack.station})")
    start = pg.locator("[data-test='fillup-start']")
    start.wait_for()
    assert start.inner_text() == "在此加油"
    start.click()
    pg.wait_for_selector("[data-test='fill-nozzle']")
    shot(pg, f"fillup-{transport}-1-pick.png")
    pumps = pg.locator("[data-test='fill-pump']")
    assert pumps.count() == 2
    assert "油机 P1" in pumps.first.inner_text() and "92#" in pumps.first.inner_text()
    pg.locator(f"[data-test='fill-nozzle'][data-pump='{pump}'][data-nozzle='1']").click()
    live = pg.locator("[data-test='fill-live']")
    live.wait_for()
    session_id = int(live.get_attribute("data-session") or 0)
    assert pg.locator("[data-test='fill-state']").inner_text() == "已绑定：请提起油枪"
    # live over the WebSocket (the CSP lets the page open it), else polling
    pg.wait_for_selector(f"[data-test='fill-via']:text('{'实时' if transport == 'ws' else '轮询'}')")

    stack.sim.post(f"/pumps/{pump}/lift", nozzle=1)
    # 30 L/min: 10 s of flow, followed on the page while the nozzle dispenses
    flowing = threading.Thread(
        target=stack.sim.post, args=(f"/pumps/{pump}/fuel",), kwargs={"litres": "5", "wait": "true"}
    )
    flowing.start()
    seen = []
    wait_for(
        lambda: (seen.append(figure(pg, "litres")) or seen[-1]) > 0.5,
        timeout_s=20,
        what="litres rising on the page",
    )
    assert pg.locator("[data-test='fill-state']").inner_text() == "加油中…"
    shot(pg, f"fillup-{transport}-2-fuelling.png")
    flowing.join(timeout=60)
    assert not flowing.is_alive()
    assert seen == sorted(seen), f"litres went down on the page: {seen}"
    stack.sim.post(f"/pumps/{pump}/hangup")
    pay = pg.locator("[data-test='fill-pay']")
    pay.wait_for(timeout=20_000)
    shot(pg, f"fillup-{transport}-3-completed.png")

    rows = stack.sql("SELECT state, volume_ml, amount_fen FROM fuelling_sessions WHERE id = %s", session_id)
    state, volume_ml, amount_fen = rows[0]
    assert volume_ml == 5000 and amount_fen > 0
    assert live.get_attribute("data-state") == state
    assert figure(pg, "litres") == 5.0
    assert figure(pg, "amount") == amount_fen / 100
    assert re.fullmatch(r"应付 \d+\.\d\d 元", pay.inner_text())
    assert pay.inner_text() == f"应付 {amount_fen / 100:.2f} 元"
    # English through the existing toggle
    pg.locator("[data-test='lang-toggle']").click()
    assert pay.inner_text() == f"To pay {amount_fen / 100:.2f} CNY"
    shot(pg, f"fillup-{transport}-4-completed-en.png")
    pg.locator("[data-test='lang-toggle']").click()
    assert httpx.get(stack.api.base + "/health").status_code == 200
