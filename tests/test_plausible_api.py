"""Plausible data and scoped reads on the station manager API (real HTTP through the ASGI app, real PostGIS).

Each test is an attack that today's service accepted: a back-dated 99.99 CNY/L price, an unbounded
98#, a 0.95 CNY/L typo, a 999,999 CNY/L discount, a price for a grade the station does not sell,
manager reads of other stations, and promotion keys that collide across stations.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config import PROJECT_ROOT, Settings
from geo._pricing import Promotion
from ingest._guidance import load_guidance_file
from ingest._stations import load_stations
from store._auth import create_api_key
from store._promotions import upsert_promotion
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY, fresh_rate_prefix

EXAMPLES = PROJECT_ROOT / "data" / "examples"
NO_EXTRACT = Path("/nonexistent/lijiang.osm.pbf")
ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
SINCE = datetime(2026, 10, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
PROMO = {
    "title": "周末92号每升优惠0.30元",
    "grades": ["92"],
    "kind": "cny_off_per_litre",
    "value": "0.30",
    "days_of_week": [6, 7],
    "valid_from": "2026-10-01T00:00:00+08:00",
}


@pytest.fixture(scope="module")
def env(module_db: str, shared_data: Path) -> Iterator[dict[str, Any]]:
    settings = Settings(
        database_url=module_db,
        extract=NO_EXTRACT,
        region="lijiang",  # the loaders check rows against Lijiang too
        shared_data_dir=shared_data,
        admin_api_key=TEST_ADMIN_KEY,
        secret_key=TEST_SECRET_KEY,
        rate_limit_prefix=fresh_rate_prefix(),
        env="test",
    )
    with psycopg.connect(module_db) as conn:
        conn.execute(
            "TRUNCATE stations, station_refs, prices, promotions, audit_log, api_keys RESTART IDENTITY CASCADE"
        )
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
    # stations 1..4: LJ-GC-001 sells 92/95/98/0, the others 92/95/0
    load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)
    with psycopg.connect(module_db) as conn:
        manager = create_api_key(conn, "gc001-manager", "manager", [1], secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings)) as client:
        yield {"client": client, "manager": {"X-API-Key": manager}, "db": module_db}


def etag(c: TestClient, sid: int) -> str:
    r = c.get(f"/v1/manage/stations/{sid}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return str(r.headers["ETag"])


def put_prices(c: TestClient, sid: int, prices: list[dict[str, str]]) -> Any:
    return c.put(f"/v1/stations/{sid}/prices", json=prices, headers={**ADMIN, "If-Match": etag(c, sid)})


def counts(db: str) -> tuple[int, int, int]:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM prices), (SELECT count(*) FROM promotions),"
            " (SELECT count(*) FROM audit_log)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def error(r: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    body: dict[str, Any] = r.json()["error"]
    return body


def test_back_dated_price_before_the_first_notice_is_rejected(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    before, version = counts(env["db"]), etag(c, 1)
    err = error(put_prices(c, 1, [{"grade": "92", "price_cny": "99.99", "effective_from": "2020-01-01"}]))
    assert err["param"] == "prices[0].effective_from" and err["rule"] == "price.before_first_notice"
    assert "2026-04-21" in err["message"]  # the first notice of the zone
    assert counts(env["db"]) == before and etag(c, 1) == version  # nothing written, nothing audited


def test_98_is_bounded_by_the_95_ceiling(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    err = error(put_prices(c, 1, [{"grade": "98", "price_cny": "99.99", "effective_from": "2026-10-20"}]))
    # 95# ceiling 9.63 from 2026-09-25: 98# within 9.63 x (1 - 0.25) .. 9.63 x (1 + 0.35)
    assert err["param"] == "prices[0].price_cny" and err["rule"] == "price.above_band"
    assert err["allowed"] == {"min": 7.23, "max": 13.0} and "99.99" in err["message"]
    r = put_prices(c, 1, [{"grade": "98", "price_cny": "10.40", "effective_from": "2026-10-20"}])
    assert r.status_code == 200, r.text


def test_a_typo_far_below_the_ceiling_is_rejected(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    before = counts(env["db"])
    err = error(put_prices(c, 2, [{"grade": "95", "price_cny": "0.95"}]))
    assert err["param"] == "prices[0].price_cny" and err["rule"] == "price.below_band"
    assert err["allowed"] == {"min": 7.23, "max": 9.63}
    assert "0.95" in err["message"] and "7.23" in err["message"] and "9.63" in err["message"]
    assert counts(env["db"]) == before


def test_only_grades_the_station_sells(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    err = error(put_prices(c, 2, [{"grade": "98", "price_cny": "10.40"}]))  # station 2: 92, 95, 0
    assert err["param"] == "prices[0].grade" and err["rule"] == "price.grade_not_sold"


def test_prices_dated_absurdly_far_ahead_are_rejected(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    err = error(put_prices(c, 3, [{"grade": "92", "price_cny": "8.80", "effective_from": "2031-01-01"}]))
    assert err["param"] == "prices[0].effective_from" and err["rule"] == "price.too_far_ahead"


@pytest.mark.parametrize(
    ("kind", "value", "allowed_max"),
    [
        ("cny_off_per_litre", "999999", 2.69),  # 30 % of the 92# ceiling 8.99
        ("percent_off", "50", 30),
        ("cny_off_per_order", "5000", 100),
        ("topup_bonus", "80", 20),
    ],
)
def test_promotion_values_are_capped_per_kind(
    env: dict[str, Any], kind: str, value: str, allowed_max: float
) -> None:
    c: TestClient = env["client"]
    before = counts(env["db"])
    body = {**PROMO, "kind": kind, "value": value}
    err = error(c.post("/v1/stations/1/promotions", json=body, headers=ADMIN))
    assert err["param"] == "value" and err["rule"] == f"promotion.{kind}"
    assert err["allowed"]["max"] == allowed_max
    assert counts(env["db"]) == before
    # an update cannot raise it either
    r = c.post("/v1/stations/1/promotions", json={**body, "value": "1"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    upd = c.put(
        f"/v1/promotions/{r.json()['id']}", json=body, headers={**ADMIN, "If-Match": r.headers["ETag"]}
    )
    assert error(upd)["rule"] == f"promotion.{kind}"


def test_manager_reads_are_scoped_to_their_stations(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    mgr = env["manager"]
    assert c.get("/v1/manage/stations/1", headers=mgr).status_code == 200
    r = c.get("/v1/manage/stations/2", headers=mgr)
    assert r.status_code == 403 and "station 2" in r.json()["error"]["message"]
    other = c.post("/v1/stations/2/promotions", json={**PROMO, "source_ref": "s2-own"}, headers=ADMIN)
    mine = c.post("/v1/stations/1/promotions", json={**PROMO, "source_ref": "s1-own"}, headers=mgr)
    assert other.status_code == 201 and mine.status_code == 201
    assert c.get(f"/v1/promotions/{other.json()['id']}", headers=mgr).status_code == 403
    assert c.get(f"/v1/promotions/{mine.json()['id']}", headers=mgr).status_code == 200
    assert c.get(f"/v1/promotions/{other.json()['id']}", headers=ADMIN).status_code == 200
    # brand promotions: readable by managers of a station of that brand (station 1 is Sinopec)
    with psycopg.connect(env["db"]) as conn:
        brand_ids = {
            brand: upsert_promotion(
                conn,
                Promotion(kind="percent_off", value=Decimal(3), scope="brand", brand=brand, valid_from=SINCE,
                          source="feed", source_ref=f"brand-{brand}"),
                actor="test-setup",
                zone="yunnan-4",
            )[0]
            for brand in ("sinopec", "petrochina")
        }  # fmt: skip
    assert c.get(f"/v1/promotions/{brand_ids['sinopec']}", headers=mgr).status_code == 200
    assert c.get(f"/v1/promotions/{brand_ids['petrochina']}", headers=mgr).status_code == 403


def test_promotion_source_ref_is_unique_per_station_not_globally(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    mgr = env["manager"]
    r2 = c.post(
        "/v1/stations/2/promotions", json={**PROMO, "value": "0.40", "source_ref": "weekend"}, headers=ADMIN
    )
    assert r2.status_code == 201, r2.text
    # the manager of station 1 uses the same ref: a promotion of its own, not a 409 about station 2's
    r1 = c.post("/v1/stations/1/promotions", json={**PROMO, "source_ref": "weekend"}, headers=mgr)
    assert r1.status_code == 201, r1.text
    assert r1.json()["id"] != r2.json()["id"] and r1.json()["station_id"] == 1
    # the same ref again on the same station is still the retried POST (200) or a conflict (409)
    assert (
        c.post("/v1/stations/1/promotions", json={**PROMO, "source_ref": "weekend"}, headers=mgr).status_code
        == 200
    )
    again = c.post(
        "/v1/stations/1/promotions", json={**PROMO, "value": "0.50", "source_ref": "weekend"}, headers=mgr
    )
    assert again.status_code == 409
