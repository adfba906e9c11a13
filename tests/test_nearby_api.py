"""GET /v1/stations/nearby, /v1/stations/{id} and /v1/stations?bbox through the real app and PostGIS."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from api.main import create_app
from config import PROJECT_ROOT, Settings
from geo import from_wgs84, haversine_m
from geo._pricing import Promotion
from ingest._guidance import load_guidance_file
from store._prices import PriceIn, insert_prices
from store._promotions import upsert_promotion
from store._stations import StationIn, upsert_station
from tests._servers import TEST_SECRET_KEY, fresh_rate_prefix
from tests.test_h3_prefilter import destination

with warnings.catch_warnings():
    # Starlette 1.x asks for `httpx2` under its TestClient; plain httpx still works (warnings are errors here).
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SH = ZoneInfo("Asia/Shanghai")
Q = (26.8721, 100.2297)  # Lijiang old town (WGS-84)
SATURDAY = "2026-11-28T10:00:00+08:00"
WEDNESDAY = "2026-11-25T10:00:00+08:00"

# ref: (bearing, distance m, brand, grades, {grade: price})
LAYOUT: dict[str, tuple[float, float, str, tuple[str, ...], dict[str, str]]] = {
    "A": (0.0, 500.0, "sinopec", ("92", "95"), {"92": "8.90", "95": "9.50"}),
    "B": (90.0, 1_000.0, "petrochina", ("92", "95", "0"), {"92": "8.60", "0": "8.50"}),
    "C": (180.0, 2_000.0, "shell", ("92",), {"92": "8.75"}),
    "D": (270.0, 3_000.0, "other", ("95",), {"95": "9.40"}),
    "E": (45.0, 4_000.0, "cnooc", ("92",), {}),
    "F": (0.0, 30_000.0, "sinopec", ("92",), {"92": "8.10"}),
}


@pytest.fixture(scope="module")
def regions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lijiang's config without an extract, so the tests never depend on one being on disk."""
    src = PROJECT_ROOT / "data" / "regions"
    out = tmp_path_factory.mktemp("regions")
    text = (src / "lijiang.toml").read_text(encoding="utf-8")
    text = text.split("[extract]")[0] + "\n[speeds_kmh]\n" + text.split("[speeds_kmh]")[1]
    (out / "lijiang.toml").write_text(text, encoding="utf-8")
    shutil.copy(src / "lijiang.boundary.geojson", out / "lijiang.boundary.geojson")
    return out


@pytest.fixture(scope="module")
def ids(module_db: str, shared_data: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with psycopg.connect(module_db, autocommit=True) as conn:
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
        for ref, (bearing, dist, brand, grades, _) in LAYOUT.items():
            lat, lon = destination(*Q, bearing, dist)
            out[ref] = upsert_station(
                conn,
                StationIn(
                    "demo",
                    f"apitest/{ref}",
                    lat,
                    lon,
                    name=f"站{ref}",
                    name_en=f"Station {ref}",
                    brand=brand,
                    brand_raw=brand.upper(),
                    grades=grades,
                    opening_hours="Mo-Su 07:00-22:00",
                ),
                actor="test-setup",
            )
        since = datetime(2026, 11, 1, tzinfo=SH)
        insert_prices(
            conn,
            [
                PriceIn(out[ref], g, Decimal(p), since, source="station")
                for ref, spec in LAYOUT.items()
                for g, p in spec[4].items()
            ],
            zone="yunnan-4",
            actor="test-setup",
        )
        common: dict[str, Any] = {"valid_from": since, "source": "feed"}
        upsert_promotion(
            conn,
            Promotion(
                kind="cny_off_per_litre",
                value=Decimal("0.30"),
                scope="brand",
                brand="shell",
                grades=("92",),
                days_of_week=(6,),
                title="周六优惠",
                source_ref="apitest:sat",
                **common,
            ),
            actor="test-setup",
            zone="yunnan-4",
        )
        upsert_promotion(
            conn,
            Promotion(
                kind="cny_off_per_litre",
                value=Decimal("0.50"),
                scope="station",
                station_id=out["A"],
                members_only=True,
                title="会员价",
                source_ref="apitest:member",
                **common,
            ),
            actor="test-setup",
            zone="yunnan-4",
        )
    return out


@pytest.fixture(scope="module")
def client(module_db: str, regions_dir: Path, ids: dict[str, int]) -> Iterator[TestClient]:
    settings = Settings(
        database_url=module_db,
        env="test",
        secret_key=TEST_SECRET_KEY,
        rate_limit_prefix=fresh_rate_prefix(),
        region="lijiang",
        regions_dir=regions_dir,
        rate_limit_per_minute=100_000,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def nearby(client: TestClient, **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"lat": Q[0], "lon": Q[1], "radius_m": 5000, "at": WEDNESDAY}
    r = client.get("/v1/stations/nearby", params={**base, **params})
    assert r.status_code == 200, r.text
    return r.json()


def refs(body: dict[str, Any], ids: dict[str, int]) -> list[str]:
    back = {v: k for k, v in ids.items()}
    return [back[r["id"]] for r in body["results"] if r["id"] in back]


def test_sort_distance(client: TestClient, ids: dict[str, int]) -> None:
    body = nearby(client)
    assert refs(body, ids) == ["A", "B", "C", "D", "E"]
    d = [r["distance_m"] for r in body["results"]]
    assert d == sorted(d) and abs(d[0] - 500) < 5 and abs(d[4] - 4000) < 20
    assert body["region"] == "lijiang" and body["coord"] == "wgs84" and "OpenStreetMap" in body["attribution"]
    assert body["at"] == WEDNESDAY
    a = body["results"][0]
    assert a["brand"] == "sinopec" and a["brand_raw"] == "SINOPEC" and a["name_en"] == "Station A"
    assert a["status"] == "open" and a["open_now"] is True
    g92 = a["grades"]["92"]
    assert g92["list_price"] == 8.90 and g92["effective_price"] == 8.90 and g92["source"] == "station"
    assert g92["price_age_s"] == int(
        (datetime.fromisoformat(WEDNESDAY) - datetime(2026, 11, 1, tzinfo=SH)).total_seconds()
    )
    assert a["grades"]["95"]["list_price"] == 9.50
    assert refs(nearby(client, limit=2), ids) == ["A", "B"]
    assert refs(nearby(client, radius_m=50_000), ids) == ["A", "B", "C", "D", "E", "F"]


def test_grade_filters_and_sort_price(client: TestClient, ids: dict[str, int]) -> None:
    assert refs(nearby(client, grade="92"), ids) == ["A", "B", "C", "E"]  # D has no 92#
    assert refs(nearby(client, grade="92#", sort="price"), ids) == ["B", "C", "A", "E"]  # E: no price, last
    assert refs(nearby(client, grade="95", sort="price"), ids) == ["D", "A", "B"]  # B offers 95#, no price


def test_sort_effective_price_saturday_promotion(client: TestClient, ids: dict[str, int]) -> None:
    wed = nearby(client, grade="92", sort="effective_price")
    assert refs(wed, ids) == ["B", "C", "A", "E"]
    sat = nearby(client, grade="92", sort="effective_price", at=SATURDAY)
    assert refs(sat, ids) == ["C", "B", "A", "E"]
    c = sat["results"][0]["grades"]["92"]
    assert c["list_price"] == 8.75 and c["effective_price"] == 8.45
    (applied,) = c["promotions_applied"]
    assert applied["title"] == "周六优惠" and applied["saving"] == 0.3 and applied["id"] > 0
    # Saturday 01:00 in Lijiang is Friday 17:00 UTC; naive `at` is local time
    for at in ("2026-11-27T17:00:00Z", "2026-11-28T01:00:00", "2026-11-28T01:00:00+08:00"):
        # every station keeps 07:00-22:00: at 01:00 none is open, so they are only listed on request
        assert nearby(client, grade="92", sort="effective_price", at=at)["results"] == []
        night = nearby(client, grade="92", sort="effective_price", at=at, include_closed="true")
        assert refs(night, ids)[0] == "C"
        assert {r["closed_reason"] for r in night["results"]} == {"outside_opening_hours"}
    friday_23 = nearby(
        client, grade="92", sort="effective_price", at="2026-11-27T15:00:00Z", include_closed="1"
    )
    assert refs(friday_23, ids)[0] == "B"


def test_member_promotion(client: TestClient, ids: dict[str, int]) -> None:
    body = nearby(client, grade="92", sort="effective_price", member="true")
    assert refs(body, ids)[0] == "A"  # 8.90 - 0.50 members
    assert body["results"][0]["grades"]["92"]["effective_price"] == 8.40


def test_sort_score_returns_parts(client: TestClient, ids: dict[str, int]) -> None:
    body = nearby(client, grade="92", sort="score")
    order = refs(body, ids)
    assert order[-1] == "E"  # no price
    for r in body["results"]:
        s = r["score"]
        if s["score"] is None:
            continue
        assert s["score"] == pytest.approx(0.7 * s["price_part"] + 0.3 * s["distance_part"], abs=1e-3)
    scores = [r["score"]["score"] for r in body["results"] if r["score"]["score"] is not None]
    assert scores == sorted(scores)
    # B: cheapest (price part 0) at 1 km of 5 km
    b = next(r for r in body["results"] if r["id"] == ids["B"])
    assert b["score"]["price_part"] == 0 and b["score"]["distance_part"] == pytest.approx(0.2, abs=1e-3)
    assert order[0] == "B"


def test_gcj02_input_and_output(client: TestClient, ids: dict[str, int]) -> None:
    g_lat, g_lon = from_wgs84(*Q, "gcj02")
    plain = nearby(client)
    gcj = nearby(client, lat=g_lat, lon=g_lon, coord="gcj02")
    assert gcj["coord"] == "gcj02"
    assert refs(gcj, ids) == refs(plain, ids)
    for a, b in zip(plain["results"], gcj["results"], strict=True):
        assert abs(a["distance_m"] - b["distance_m"]) < 1.0
        expect = from_wgs84(a["lat"], a["lon"], "gcj02")
        assert haversine_m(b["lat"], b["lon"], *expect) < 0.05
        assert haversine_m(a["lat"], a["lon"], b["lat"], b["lon"]) > 100  # really converted


def test_outside_region_note(client: TestClient) -> None:
    body = nearby(client, lat=42.5, lon=1.55)
    assert body["results"] == [] and body["count"] == 0
    assert "lijiang" in body["note"].lower() and "outside" in body["note"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"lat": 91}, "lat"),
        ({"lat": -90.5}, "lat"),
        ({"lat": "nan"}, "lat"),
        ({"lat": "abc"}, "lat"),
        ({"lat": ""}, "lat"),
        ({"lon": 181}, "lon"),
        ({"lon": "-inf"}, "lon"),
        ({"lon": "Infinity"}, "lon"),
        ({"radius_m": 0}, "radius_m"),
        ({"radius_m": -5}, "radius_m"),
        ({"radius_m": 50_001}, "radius_m"),
        ({"radius_m": "nan"}, "radius_m"),
        ({"grade": "93"}, "grade"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"at": "yesterday"}, "at"),
        ({"at": "2026-13-01T00:00:00"}, "at"),
        ({"at": "9999-12-31T23:59:59-12:00"}, "at"),
        ({"at": "0001-01-01T00:00:00+14:00"}, "at"),
        ({"coord": "mercator"}, "coord"),
        ({"sort": "cheapest"}, "sort"),
        ({"sort": "price"}, "grade"),
        ({"sort": "effective_price"}, "grade"),
        ({"sort": "score"}, "grade"),
        ({"member": "maybe"}, "member"),
        ({"litres": 0}, "litres"),
        ({"payment": "we chat!"}, "payment"),
    ],
)
def test_bad_input_is_422_naming_the_param(client: TestClient, params: dict[str, Any], param: str) -> None:
    base = {"lat": Q[0], "lon": Q[1], "radius_m": 5000}
    r = client.get("/v1/stations/nearby", params={**base, **params})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"]


def test_missing_lat_is_422(client: TestClient) -> None:
    r = client.get("/v1/stations/nearby", params={"lon": Q[1]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "lat"


def test_station_by_id(client: TestClient, ids: dict[str, int]) -> None:
    r = client.get(f"/v1/stations/{ids['C']}", params={"at": SATURDAY, "coord": "gcj02"})
    assert r.status_code == 200, r.text
    st = r.json()["station"]
    assert st["id"] == ids["C"] and st["grades"]["92"]["effective_price"] == 8.45 and "distance_m" not in st
    assert r.json()["coord"] == "gcj02"
    assert client.get("/v1/stations/999999999").status_code == 404
    assert client.get("/v1/stations/99999999999999999999999").status_code == 404
    bad = client.get("/v1/stations/abc")
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "station_id"  # as in the schema
    bad = client.get(f"/v1/stations/{ids['C']}", params={"coord": "xy"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "coord"


def test_bbox_stable_order_and_paging(client: TestClient, ids: dict[str, int]) -> None:
    box = "100.18,26.82,100.28,26.92"
    r = client.get("/v1/stations", params={"bbox": box})
    assert r.status_code == 200, r.text
    got = [x["id"] for x in r.json()["results"]]
    assert got == sorted(got) and {ids[k] for k in "ABCDE"} <= set(got) and ids["F"] not in got
    page1 = client.get("/v1/stations", params={"bbox": box, "limit": 2}).json()
    page2 = client.get("/v1/stations", params={"bbox": box, "limit": 2, "after": page1["next_after"]}).json()
    assert [x["id"] for x in page1["results"] + page2["results"]] == got[:4]
    g = client.get("/v1/stations", params={"bbox": box, "coord": "gcj02"}).json()
    assert {ids[k] for k in "ABCDE"} <= {x["id"] for x in g["results"]}
    a = next(x for x in g["results"] if x["id"] == ids["A"])
    assert haversine_m(a["lat"], a["lon"], *from_wgs84(*destination(*Q, 0.0, 500.0), "gcj02")) < 0.05
    for bad in ("1,2,3", "100.3,26.8,100.2,26.9", "100.2,26.9,100.3,26.8", "a,b,c,d", "100,26,200,27"):
        resp = client.get("/v1/stations", params={"bbox": bad})
        assert resp.status_code == 422 and resp.json()["error"]["param"] == "bbox"
    assert client.get("/v1/stations").json()["error"]["param"] == "bbox"
    assert client.get("/v1/stations", params={"bbox": box, "limit": 0}).json()["error"]["param"] == "limit"
