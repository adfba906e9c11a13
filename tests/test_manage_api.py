"""Station manager API over real HTTP (ASGI) and a real PostGIS: keys, roles, versions, audit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config import PROJECT_ROOT, Settings
from ingest._guidance import load_guidance_file
from ingest._stations import load_stations
from store._auth import create_api_key
from tests._servers import fresh_rate_prefix

EXAMPLES = PROJECT_ROOT / "data" / "examples"
NO_EXTRACT = Path("/nonexistent/lijiang.osm.pbf")
ADMIN = "test-admin-key-0123456789"
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
        admin_api_key=ADMIN,
        secret_key="test-secret-0123456789abcdef",
        rate_limit_prefix=fresh_rate_prefix(),
    )
    with psycopg.connect(module_db) as conn:
        conn.execute(
            "TRUNCATE stations, station_refs, prices, promotions, audit_log, api_keys RESTART IDENTITY CASCADE"
        )
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
    load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)  # stations 1..4
    with psycopg.connect(module_db) as conn:
        keys = {
            "operator": create_api_key(conn, "ops-desk", "operator", secret_key=settings.secret_key),
            "manager": create_api_key(conn, "fuhui-manager", "manager", [1], secret_key=settings.secret_key),
        }
    with TestClient(create_app(settings)) as client:
        yield {"client": client, "keys": keys, "module_db": module_db}


def version_of(client: TestClient, key: str, path: str) -> str:
    r = client.get(path, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    return r.headers["ETag"]


def audit_count(module_db: str) -> int:
    with psycopg.connect(module_db) as conn:
        return int(conn.execute("SELECT count(*) FROM audit_log").fetchone()[0])  # type: ignore[index]


def make_promotion(env: dict[str, Any], station: int) -> tuple[int, str]:
    r = env["client"].post(f"/v1/stations/{station}/promotions", json=PROMO, headers={"X-API-Key": ADMIN})
    assert r.status_code == 201, r.text
    return int(r.json()["id"]), r.headers["ETag"]


# each write: (method, path for station 1 / station 2, body) -> request builder
def writes(env: dict[str, Any]) -> dict[str, Callable[[int, dict[str, str]], Any]]:
    c: TestClient = env["client"]

    def patch(sid: int, h: dict[str, str]) -> Any:
        etag = version_of(c, ADMIN, f"/v1/manage/stations/{sid}")
        return c.patch(
            f"/v1/stations/{sid}",
            json={"opening_hours": "Mo-Su 06:00-23:30"},
            headers={**h, "If-Match": etag},
        )

    def prices(sid: int, h: dict[str, str]) -> Any:
        etag = version_of(c, ADMIN, f"/v1/manage/stations/{sid}")
        body = [{"grade": "92", "price_cny": "8.70", "effective_from": f"2026-10-2{sid}T00:00:00"}]
        return c.put(f"/v1/stations/{sid}/prices", json=body, headers={**h, "If-Match": etag})

    def post(sid: int, h: dict[str, str]) -> Any:
        return c.post(f"/v1/stations/{sid}/promotions", json=PROMO, headers=h)

    def put(sid: int, h: dict[str, str]) -> Any:
        pid, etag = make_promotion(env, sid)
        return c.put(
            f"/v1/promotions/{pid}", json={**PROMO, "value": "0.40"}, headers={**h, "If-Match": etag}
        )

    def delete(sid: int, h: dict[str, str]) -> Any:
        pid, etag = make_promotion(env, sid)
        return c.delete(f"/v1/promotions/{pid}", headers={**h, "If-Match": etag})

    return {
        "PATCH station": patch,
        "PUT prices": prices,
        "POST promotion": post,
        "PUT promotion": put,
        "DELETE promotion": delete,
    }


@pytest.mark.parametrize(
    "endpoint", ["PATCH station", "PUT prices", "POST promotion", "PUT promotion", "DELETE promotion"]
)
def test_authorization_matrix(env: dict[str, Any], endpoint: str) -> None:
    call = writes(env)[endpoint]
    keys = env["keys"]
    r = call(1, {})
    assert r.status_code == 401 and "X-API-Key" in r.headers["WWW-Authenticate"]
    assert call(1, {"X-API-Key": "lfk_not-a-key"}).status_code == 401
    assert call(1, {"X-API-Key": keys["manager"]}).status_code in (200, 201, 204)  # own station
    assert call(2, {"X-API-Key": keys["manager"]}).status_code == 403  # another station
    assert call(2, {"X-API-Key": keys["operator"]}).status_code in (200, 201, 204)
    assert call(3, {"X-API-Key": ADMIN}).status_code in (200, 201, 204)


def test_preconditions_etag_and_stale_version(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    h = {"X-API-Key": ADMIN}
    r = c.patch("/v1/stations/4", json={"address": "黄山镇民主路1号"}, headers=h)
    assert r.status_code == 428
    etag = version_of(c, ADMIN, "/v1/manage/stations/4")
    r = c.patch("/v1/stations/4", json={"address": "黄山镇民主路1号"}, headers={**h, "If-Match": etag})
    assert r.status_code == 200 and r.headers["ETag"] == f'"{int(etag.strip(chr(34))) + 1}"'
    r = c.patch("/v1/stations/4", json={"address": "别的地址"}, headers={**h, "If-Match": etag})
    assert r.status_code == 409 and r.json()["error"]["current_version"] == int(etag.strip('"')) + 1
    # the body's version works too; the same content again changes nothing (no bump, no audit)
    v = int(r.headers["ETag"].strip('"'))
    before = audit_count(env["module_db"])
    r = c.patch("/v1/stations/4", json={"address": "黄山镇民主路1号", "version": v}, headers=h)
    assert r.status_code == 200 and r.headers["ETag"] == f'"{v}"' and audit_count(env["module_db"]) == before
    assert c.get("/v1/manage/stations/999999", headers=h).status_code == 404


def test_bad_input_names_the_field(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    etag = version_of(c, ADMIN, "/v1/manage/stations/2")
    h = {"X-API-Key": ADMIN, "If-Match": etag}
    r = c.put(
        "/v1/stations/2/prices",
        json=[{"grade": "92", "price_cny": "9.50", "effective_from": "2026-10-02T00:00:00"}],
        headers=h,
    )
    assert r.status_code == 422
    msg = r.json()["error"]["message"]
    assert "92" in msg and "9.50" in msg and "8.99" in msg
    r = c.put("/v1/stations/2/prices", json=[{"grade": "93", "price_cny": "8.00"}], headers=h)
    assert r.status_code == 422 and "grade" in r.json()["error"]["param"]
    r = c.patch("/v1/stations/2", json={"opening_hours": "每天早上"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["param"] == "opening_hours"
    r = c.patch("/v1/stations/2", json={"status": "demolished"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["param"] == "status"
    r = c.post("/v1/stations/2/promotions", json={**PROMO, "kind": "free_fuel"}, headers={"X-API-Key": ADMIN})
    assert r.status_code == 422 and r.json()["error"]["param"] == "kind"
    assert version_of(c, ADMIN, "/v1/manage/stations/2") == etag  # nothing changed


def test_prices_history_and_audit(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    etag = version_of(c, ADMIN, "/v1/manage/stations/3")
    body = [
        {"grade": "95", "price_cny": "9.40", "effective_from": "2026-10-15T00:00:00"},
        {"grade": "95", "price_cny": "9.45", "effective_from": "2027-01-01T00:00:00"},
    ]  # future-dated
    r = c.put("/v1/stations/3/prices", json=body, headers={"X-API-Key": ADMIN, "If-Match": etag})
    assert r.status_code == 200 and [p["action"] for p in r.json()["prices"]] == ["new", "new"]
    r2 = c.put(
        "/v1/stations/3/prices",
        json={"prices": body, "version": r.json()["version"]},
        headers={"X-API-Key": ADMIN},
    )
    assert r2.status_code == 200 and [p["action"] for p in r2.json()["prices"]] == ["unchanged", "unchanged"]
    assert r2.json()["version"] == r.json()["version"]
    with psycopg.connect(env["module_db"]) as conn:
        rows = conn.execute(
            "SELECT actor, action, new_value->>'price_cny' FROM audit_log WHERE entity = 'price'"
            " AND new_value->>'station_id' = '3' AND new_value->>'grade' = '95' AND actor = 'admin' ORDER BY id"
        ).fetchall()
    assert rows == [("admin", "create", "9.40"), ("admin", "create", "9.45")]


def test_promotion_lifecycle_and_brand_scope(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    mgr = {"X-API-Key": env["keys"]["manager"]}
    body = {**PROMO, "source_ref": "fuhui-weekend-1"}
    r = c.post("/v1/stations/1/promotions", json=body, headers=mgr)
    assert r.status_code == 201 and r.headers["ETag"] == '"1"'
    pid = r.json()["id"]
    assert c.post("/v1/stations/1/promotions", json=body, headers=mgr).status_code == 200  # retried POST
    assert c.post("/v1/stations/1/promotions", json={**body, "value": "0.5"}, headers=mgr).status_code == 409
    r = c.put(f"/v1/promotions/{pid}", json={**PROMO, "value": "0.50"}, headers={**mgr, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["value"] == 0.5 and r.headers["ETag"] == '"2"'
    assert c.delete(f"/v1/promotions/{pid}", headers={**mgr, "If-Match": '"1"'}).status_code == 409
    assert c.delete(f"/v1/promotions/{pid}", headers=mgr).status_code == 428
    assert c.delete(f"/v1/promotions/{pid}", headers={**mgr, "If-Match": '"2"'}).status_code == 204
    assert c.get(f"/v1/promotions/{pid}", headers=mgr).status_code == 404
    with psycopg.connect(env["module_db"]) as conn:
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit_log WHERE entity = 'promotion' AND entity_id = %s ORDER BY id",
                (str(pid),),
            )
        ]
        conn.execute(
            "INSERT INTO promotions (scope, brand, kind, value, valid_from, source, source_ref)"
            " VALUES ('brand', 'sinopec', 'percent_off', 3, now(), 'feed', 'brand-1')"
        )
        brand_id = conn.execute("SELECT id FROM promotions WHERE source_ref = 'brand-1'").fetchone()[0]  # type: ignore[index]
    assert actions == ["create", "update", "delete"]
    assert (
        c.put(f"/v1/promotions/{brand_id}", json=PROMO, headers={**mgr, "If-Match": '"1"'}).status_code == 403
    )
    r = c.put(f"/v1/promotions/{brand_id}", json=PROMO, headers={"X-API-Key": ADMIN, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["scope"] == "brand"


def test_a_member_tier_promotion_names_a_known_tier(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    mgr = {"X-API-Key": env["keys"]["manager"]}
    r = c.post(
        "/v1/stations/1/promotions", json={**PROMO, "source_ref": "gold-1", "min_tier": "gold"}, headers=mgr
    )
    assert r.status_code == 201, r.text
    assert r.json()["min_tier"] == "gold"
    assert c.get(f"/v1/promotions/{r.json()['id']}", headers=mgr).json()["min_tier"] == "gold"
    bad = c.post(
        "/v1/stations/1/promotions", json={**PROMO, "source_ref": "x-1", "min_tier": "diamond"}, headers=mgr
    )
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "min_tier", bad.text
    odd = c.post(
        "/v1/stations/1/promotions", json={**PROMO, "source_ref": "x-2", "min_tier": "Gold!"}, headers=mgr
    )
    assert odd.status_code == 422


@pytest.mark.parametrize("endpoint", ["PATCH", "PUT prices"])
def test_concurrent_writers_exactly_one_wins(env: dict[str, Any], endpoint: str) -> None:
    c: TestClient = env["client"]
    etag = version_of(c, ADMIN, "/v1/manage/stations/2")
    barrier = threading.Barrier(2)
    results: list[int] = []

    def write(i: int) -> None:
        barrier.wait()
        h = {"X-API-Key": ADMIN, "If-Match": etag}
        if endpoint == "PATCH":
            r = c.patch("/v1/stations/2", json={"name": f"并发写入{i}-{etag}"}, headers=h)
        else:
            r = c.put(
                "/v1/stations/2/prices",
                json=[{"grade": "0", "price_cny": f"8.{10 + i}", "effective_from": f"2026-11-0{i + 1}"}],
                headers=h,
            )
        results.append(r.status_code)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]


@pytest.mark.parametrize(
    "hours",
    [
        "Mo-Sa 07:00-20:00; Su closed",
        "24/7",
        "PH off",
        "Apr-Oct 07:00-22:00; Nov-Mar 08:00-20:00",
        'Mo-Su 07:00-22:00 "cash only at night"',
        'Mo-Fr 08:00-18:00 || "by appointment"',
        "06:00+",
    ],
)
def test_patch_accepts_osm_opening_hours(env: dict[str, Any], hours: str) -> None:
    c: TestClient = env["client"]
    etag = version_of(c, ADMIN, "/v1/manage/stations/4")
    r = c.patch(
        "/v1/stations/4", json={"opening_hours": hours}, headers={"X-API-Key": ADMIN, "If-Match": etag}
    )
    assert r.status_code == 200, r.text
    assert c.get("/v1/manage/stations/4", headers={"X-API-Key": ADMIN}).json()["opening_hours"] == hours


def test_patch_rejects_garbage_hours_clearly(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    etag = version_of(c, ADMIN, "/v1/manage/stations/4")
    r = c.patch(
        "/v1/stations/4",
        json={"opening_hours": "Mo-Xx 25:00"},
        headers={"X-API-Key": ADMIN, "If-Match": etag},
    )
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["param"] == "opening_hours" and "not valid OSM opening_hours" in err["message"]
    assert version_of(c, ADMIN, "/v1/manage/stations/4") == etag
