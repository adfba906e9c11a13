"""The user centre and the nozzles over real HTTP: a real uvicorn server (tests/_servers.py), the fake WeChat
server API in its own process (`python -m wechat fake`), a real PostgreSQL with the demo region loaded
(Andorra stations, demo prices, demo pumps). Login, session tokens (401/403), WeChat's errors, nozzle
tokens (forged, revoked, re-pointed, closed station) and live pump status."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api import _models as m
from api import _tokens
from config import Settings, UnsafeSettingsError
from store._nozzles import issue_tokens, revoke_token
from store._users import User
from tests._servers import (
    TEST_SECRET_KEY,
    FakeWeChat,
    Server,
    free_port,
    fresh_rate_prefix,
)
from tests._servers import (
    TEST_WECHAT_APP_SECRET as APP_SECRET,
)
from tests._servers import (
    TEST_WECHAT_APPID as APPID,
)
from tests.conftest import fresh_demo_database
from wechat import WeChatClient, WeChatUnavailable

CODE_TTL_S = 3.0


@dataclass
class Env:
    url: str
    wechat: FakeWeChat
    server: Server
    http: httpx.Client

    def login(self, openid: str | None = None, unionid: str | None = None) -> dict[str, Any]:
        r = self.http.post("/v1/auth/wechat", json={"code": self.wechat.code(openid, unionid)})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def auth(self, openid: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.login(openid)['token']}"}

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def server_env(wechat: FakeWeChat, **extra: str) -> dict[str, str]:
    return {**wechat.server_env(), "FUEL_RATE_LIMIT_PREFIX": fresh_rate_prefix(), **extra}


@pytest.fixture(scope="module")
def env(shared_data: Path) -> Iterator[Env]:
    with fresh_demo_database(shared_data, "fuel_users") as url:
        wechat = FakeWeChat(code_ttl_s=CODE_TTL_S)
        server = Server(url, **server_env(wechat))
        try:
            with httpx.Client(base_url=server.base, timeout=30) as http:
                yield Env(url, wechat, server, http)
        finally:
            server.close()
            wechat.close()


# ---- login -------------------------------------------------------------------------------------------


def test_login_creates_the_user_once_and_the_token_opens_the_account(env: Env) -> None:
    openid = "o" + uuid.uuid4().hex[:27]
    first = env.login(openid, unionid="u-" + openid)
    assert first["created"] is True and first["token_type"] == "Bearer"
    m.LoginPublic.model_validate(first)
    expires = datetime.fromisoformat(first["expires_at"])
    assert expires.utcoffset() is not None
    assert abs((expires - datetime.now(UTC)).total_seconds() - 86_400) < 60
    assert 86_300 < first["expires_in"] <= 86_400
    me = env.http.get("/v1/me", headers={"Authorization": f"Bearer {first['token']}"})
    assert me.status_code == 200, me.text
    assert me.json() == first["user"] and me.json()["unionid_known"] is True
    second = env.login(openid)  # no unionid this time: the one we know is kept
    assert second["created"] is False and second["user"]["id"] == first["user"]["id"]
    uid = first["user"]["id"]
    assert env.sql("SELECT openid, unionid FROM users WHERE id = %s", (uid,)) == [(openid, "u-" + openid)]
    audit = env.sql(
        "SELECT actor, action, new_value FROM audit_log WHERE entity = 'user' AND entity_id = %s ORDER BY id",
        (str(uid),),
    )
    assert [(a[0], a[1]) for a in audit] == [(f"user:{uid}", "create"), (f"user:{uid}", "login")]
    assert audit[0][2]["address"] == "127.0.0.1" and audit[1][2]["unionid"] is False
    # the session_key WeChat returned is kept nowhere
    columns = {
        r[0] for r in env.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")
    }
    assert "session_key" not in columns and "session_key" not in str(me.json())


def test_a_code_is_single_use_and_expires(env: Env) -> None:
    code = env.wechat.code()
    assert env.http.post("/v1/auth/wechat", json={"code": code}).status_code == 200
    again = env.http.post("/v1/auth/wechat", json={"code": code})
    assert again.status_code == 401 and again.json()["error"]["code"] == "InvalidLoginCode"
    assert "wx.login again" in again.json()["error"]["message"]
    unknown = env.http.post("/v1/auth/wechat", json={"code": "0" * 32})
    assert unknown.status_code == 401
    late = env.wechat.code()
    time.sleep(CODE_TTL_S + 0.5)
    assert env.http.post("/v1/auth/wechat", json={"code": late}).status_code == 401


@pytest.mark.parametrize(
    ("errcode", "status", "code"),
    [
        (-1, 503, "WeChatUnavailable"),
        (45011, 429, "WeChatRateLimited"),
        (40226, 403, "WeChatUserBlocked"),
        (40013, 503, "WeChatUnavailable"),
        (99999, 503, "WeChatUnavailable"),
    ],
)
def test_wechat_errors_are_clear_statuses(env: Env, errcode: int, status: int, code: str) -> None:
    users = env.sql("SELECT count(*) FROM users")
    env.wechat.fail_next(errcode)
    r = env.http.post("/v1/auth/wechat", json={"code": env.wechat.code()})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    if status in (429, 503):
        assert int(r.headers["Retry-After"]) >= 1
    assert env.sql("SELECT count(*) FROM users") == users  # nothing written


def test_bad_login_bodies_are_422(env: Env) -> None:
    for body in ({}, {"code": ""}, {"code": "a b"}, {"code": "x" * 129}, {"code": "abc", "openid": "o1"}):
        r = env.http.post("/v1/auth/wechat", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["param"] in ("code", "openid")


def test_wechat_unreachable_or_not_configured_is_unavailable() -> None:
    down = WeChatClient(f"http://127.0.0.1:{free_port()}", APPID, APP_SECRET, timeout_s=2)
    with pytest.raises(WeChatUnavailable, match="cannot be reached"):
        down.code_to_session("abc")
    with pytest.raises(WeChatUnavailable, match="not configured"):
        WeChatClient("http://127.0.0.1:1", "", "").code_to_session("abc")


def test_wechat_credentials_fail_closed_outside_development() -> None:
    test = Settings(env="test", secret_key=TEST_SECRET_KEY)
    assert test.wechat_appid == "" and test.wechat_app_secret == ""  # login off unless configured
    assert Settings(env="development").wechat_app_secret  # the fake's, on loopback
    with pytest.raises(UnsafeSettingsError, match="FUEL_WECHAT_APP_SECRET"):
        Settings(env="test", secret_key=TEST_SECRET_KEY, wechat_app_secret="dev-only-wechat-secret")
    with pytest.raises(UnsafeSettingsError, match="https"):
        Settings(
            env="production",
            secret_key="Zx9" + TEST_SECRET_KEY,
            wechat_appid=APPID,
            wechat_app_secret=APP_SECRET,
            wechat_api_base_url="http://api.weixin.qq.com",
        )


def test_logins_are_limited_per_address(env: Env) -> None:
    server = Server(env.url, **server_env(env.wechat, FUEL_LOGINS_PER_MINUTE="3"))
    try:
        statuses = [
            httpx.post(server.base + "/v1/auth/wechat", json={"code": env.wechat.code()}).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        r = httpx.post(server.base + "/v1/auth/wechat", json={"code": env.wechat.code()})
        assert (
            r.status_code == 429
            and "logins a minute" in r.json()["error"]["message"]
            and r.headers["Retry-After"]
        )
    finally:
        server.close()


def test_each_user_has_a_request_budget_of_its_own(env: Env) -> None:
    """Phones behind one carrier NAT address: the rate limit keys on the session token's user."""
    server = Server(env.url, **server_env(env.wechat, FUEL_RATE_LIMIT_PER_MINUTE="6"))
    try:
        tokens = []
        for _ in range(2):
            r = httpx.post(server.base + "/v1/auth/wechat", json={"code": env.wechat.code()})
            assert r.status_code == 200, r.text
            tokens.append({"Authorization": f"Bearer {r.json()['token']}"})
        a = [httpx.get(server.base + "/v1/me", headers=tokens[0]).status_code for _ in range(7)]
        assert a == [200] * 6 + [429]
        assert httpx.get(server.base + "/v1/me", headers=tokens[1]).status_code == 200
    finally:
        server.close()


# ---- session tokens: 401 and 403 -------------------------------------------------------------------------


def test_no_token_or_a_bad_one_is_401(env: Env) -> None:
    good = env.login()
    uid, openid = good["user"]["id"], "whoever"
    expired, _ = _tokens.issue(
        User(uid, openid), secret_key=TEST_SECRET_KEY, ttl_s=60, now=datetime.now(UTC) - timedelta(hours=1)
    )
    other_key, _ = _tokens.issue(
        User(uid, openid), secret_key="another-secret-0123456789abcdefghijk", ttl_s=600
    )
    tampered = good["token"][:-3] + ("AAA" if not good["token"].endswith("AAA") else "BBB")
    token = issue_token_for(env, 1)[0]
    for path in ("/v1/me", f"/v1/users/{uid}", "/v1/stations/1/pumps", f"/v1/nozzles/{token}"):
        for headers in (
            {},
            {"Authorization": "Bearer"},
            {"Authorization": f"Basic {good['token']}"},
            {"Authorization": f"Bearer {expired}"},
            {"Authorization": f"Bearer {other_key}"},
            {"Authorization": f"Bearer {tampered}"},
            {"Authorization": "Bearer " + "x" * 3_000},
        ):
            r = env.http.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert (
                r.headers["WWW-Authenticate"] == "Bearer" and r.json()["error"]["code"] == "UserUnauthorized"
            )
        assert env.http.get(path, headers={"Authorization": f"Bearer {good['token']}"}).status_code == 200


def test_someone_elses_account_is_403(env: Env) -> None:
    a, b = env.login(), env.login()
    ha = {"Authorization": f"Bearer {a['token']}"}
    assert env.http.get(f"/v1/users/{a['user']['id']}", headers=ha).status_code == 200
    r = env.http.get(f"/v1/users/{b['user']['id']}", headers=ha)
    assert r.status_code == 403 and r.json()["error"]["code"] == "Forbidden"
    assert env.http.get("/v1/users/0", headers=ha).status_code == 422


# ---- nozzles ---------------------------------------------------------------------------------------------


def issue_token_for(env: Env, station_id: int) -> list[str]:
    with psycopg.connect(env.url) as conn, conn.transaction():
        return [t.token for t in issue_tokens(conn, station_id, actor="test", secret_key=TEST_SECRET_KEY)]


def test_a_nozzle_token_names_its_station_pump_grade_and_price(env: Env) -> None:
    headers = env.auth()
    tokens = issue_token_for(env, 1)
    assert tokens == issue_token_for(env, 1)  # issuing again keeps the tokens
    r = env.http.get(f"/v1/nozzles/{tokens[0]}", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    m.NozzlePublic.model_validate(body)
    pump_no, nozzle_no, grade, label = env.sql(
        "SELECT n.pump_no, n.nozzle_no, n.grade, p.label FROM nozzles n JOIN pumps p USING (station_id, pump_no)"
        " WHERE n.station_id = 1 AND n.active ORDER BY 1, 2 LIMIT 1"
    )[0]
    assert body["station"]["id"] == 1 and body["station"]["display_name"]
    assert body["pump"] == {"pump_no": pump_no, "label": label}
    assert body["nozzle"] == {"nozzle_no": nozzle_no, "grade": grade}
    (price,) = env.sql(
        "SELECT price_cny FROM prices WHERE station_id = 1 AND grade = %s AND effective_from <= now()"
        " ORDER BY effective_from DESC LIMIT 1",
        (grade,),
    )[0]
    assert body["price"]["list_price_fen"] == int(price * 100) and body["price"]["list_price"] == float(price)
    assert body["price"]["effective_price_fen"] <= body["price"]["list_price_fen"]
    assert body["currency"] == "CNY" or body["currency"]


def test_forged_revoked_repointed_and_closed(env: Env) -> None:
    headers = env.auth()
    t2 = issue_token_for(env, 2)
    good = t2[0]
    # forged: the MAC part changed; a well-formed token we never issued; malformed
    forged = good[:12] + ("A" if good[12] != "A" else "B") + good[13:]
    # the same 20 bytes spelled another way: 27 base64url characters carry 162 bits, the last two unused;
    # only the one spelling we issued is a token (a sticker's code is one string, not a family of them)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = good[:-1] + alphabet[alphabet.index(good[-1]) ^ 1]
    for bad in (forged, "A" * 27, respelled):
        r = env.http.get(f"/v1/nozzles/{bad}", headers=headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "NozzleTokenInvalid", r.text
    assert env.http.get("/v1/nozzles/short", headers=headers).status_code == 422
    assert env.http.get(f"/v1/nozzles/{good[:-1]}!", headers=headers).status_code == 422
    # re-pointed behind our back (the row now names station 3's nozzle): the MAC no longer matches
    (tid,) = env.sql(
        "SELECT id FROM nozzle_tokens WHERE station_id = 2 AND revoked_at IS NULL ORDER BY pump_no, nozzle_no LIMIT 1"
    )[0]
    env.sql("UPDATE nozzle_tokens SET station_id = 3, pump_no = 1, nozzle_no = 1 WHERE id = %s", (tid,))
    assert env.http.get(f"/v1/nozzles/{good}", headers=headers).status_code == 404
    env.sql("UPDATE nozzle_tokens SET station_id = 2, pump_no = 1, nozzle_no = 1 WHERE id = %s", (tid,))
    assert env.http.get(f"/v1/nozzles/{good}", headers=headers).status_code == 200
    # revoked: 410 with a clear message
    with psycopg.connect(env.url) as conn, conn.transaction():
        assert revoke_token(conn, t2[1], actor="test", secret_key=TEST_SECRET_KEY)
    r = env.http.get(f"/v1/nozzles/{t2[1]}", headers=headers)
    assert r.status_code == 410 and r.json()["error"]["code"] == "NozzleTokenRevoked"
    assert "revoked" in r.json()["error"]["message"]
    # a nozzle out of service: 410
    env.sql("UPDATE nozzles SET active = false WHERE station_id = 2 AND pump_no = 1 AND nozzle_no = 1")
    r = env.http.get(f"/v1/nozzles/{good}", headers=headers)
    assert r.status_code == 410 and r.json()["error"]["code"] == "NozzleInactive"
    env.sql("UPDATE nozzles SET active = true WHERE station_id = 2 AND pump_no = 1 AND nozzle_no = 1")
    # a closed station, and one outside its opening hours: 409 naming why
    env.sql("UPDATE stations SET status = 'temporarily_closed' WHERE id = 2")
    r = env.http.get(f"/v1/nozzles/{good}", headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "StationClosed"
    assert "station 2 is temporarily closed" in r.json()["error"]["message"]
    env.sql("UPDATE stations SET status = 'open', opening_hours = 'Mo-Su 00:00-00:01; PH off' WHERE id = 2")
    r = env.http.get(f"/v1/nozzles/{good}", headers=headers)
    assert r.status_code == 409 and "outside its opening hours" in r.json()["error"]["message"]
    env.sql("UPDATE stations SET opening_hours = NULL WHERE id = 2")
    assert env.http.get(f"/v1/nozzles/{good}", headers=headers).status_code == 200


# ---- pumps and their live status --------------------------------------------------------------------


def test_pumps_with_live_status_unknown_when_stale_or_missing(env: Env) -> None:
    headers = env.auth()
    r = env.http.get("/v1/stations/4/pumps", headers=headers)
    assert r.status_code == 200, r.text
    m.StationPumpsPublic.model_validate(r.json())
    pumps = r.json()["pumps"]
    (count,) = env.sql("SELECT count(*) FROM pumps WHERE station_id = 4")[0]
    assert 2 <= len(pumps) == count <= 4 and [p["pump_no"] for p in pumps] == list(range(1, count + 1))
    assert all(p["status"] == "unknown" and p["nozzles"] for p in pumps)
    now = datetime.now(UTC)
    env.sql(
        "INSERT INTO pump_status (station_id, pump_no, status, fp_state, reported_at, valid_until) VALUES"
        " (4, 1, 'in-use', 4, %s, %s), (4, 2, 'free', 3, %s, %s)",
        (now, now + timedelta(seconds=30), now, now - timedelta(seconds=1)),
    )
    live = {p["pump_no"]: p for p in env.http.get("/v1/stations/4/pumps", headers=headers).json()["pumps"]}
    assert (live[1]["status"], live[1]["fp_state"]) == ("in-use", 4)
    assert (
        live[2]["status"] == "unknown" and live[2]["fp_state"] is None and live[2]["reported_at"]
    )  # past its TTL
    env.sql(
        "UPDATE pump_status SET valid_until = NULL, received_at = now() - interval '5 minutes' WHERE station_id = 4 AND pump_no = 1"
    )
    assert env.http.get("/v1/stations/4/pumps", headers=headers).json()["pumps"][0]["status"] == "unknown"
    r = env.http.get("/v1/stations/999999/pumps", headers=headers)
    assert r.status_code == 404 and "station 999999" in r.json()["error"]["message"]


def test_the_demo_region_has_pumps_for_every_station(env: Env) -> None:
    per_station = env.sql(
        "SELECT s.id, count(DISTINCT p.pump_no), count(n.*) FROM stations s LEFT JOIN pumps p ON p.station_id = s.id"
        " LEFT JOIN nozzles n ON (n.station_id, n.pump_no) = (p.station_id, p.pump_no) GROUP BY s.id"
    )
    assert per_station and all(2 <= pumps <= 4 and nozzles >= pumps for _, pumps, nozzles in per_station)
    nozzle_grades = env.sql(
        "SELECT bool_and(n.grade = ANY(s.grades)) FROM nozzles n JOIN stations s ON s.id = n.station_id"
    )
    assert nozzle_grades == [(True,)]
