"""GET /v1/map/stations, /v1/map/roads and /v1/map/region through the real app and PostGIS.

The stations sit around Yongsheng (永胜, in Lijiang), far from the other API tests' stations, so the
expected cells, counts and prices are computed here from the layout alone.
"""

from __future__ import annotations

import shutil
import struct
import warnings
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import h3
import numpy as np
import psycopg
import pytest

from api._map import CELL_ID_BASE, bbox_area_km2, max_area_km2, resolution_for_zoom, traffic_level
from api.main import create_app
from config import PROJECT_ROOT, Settings
from geo import from_wgs84
from geo._pricing import Promotion
from ingest._guidance import load_guidance_file
from store._prices import PriceIn, insert_prices
from store._promotions import upsert_promotion
from store._stations import StationIn, upsert_station
from tests._servers import TEST_SECRET_KEY, fresh_rate_prefix
from tests.test_h3_prefilter import destination

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's TestClient asks for httpx2; plain httpx works
    from fastapi.testclient import TestClient

SH = ZoneInfo("Asia/Shanghai")
Y = (26.6860, 100.7510)  # Yongsheng county seat (WGS-84)
WEDNESDAY = "2026-11-25T10:00:00+08:00"
BBOX = (100.65, 26.60, 100.85, 26.78)  # all of LAYOUT and nothing else
SMALL = (100.735, 26.680, 100.765, 26.700)  # M1, M2, M3, M5 (about 7 km²)

# ref: (bearing, distance m, brand, status, grades, {grade: price})
LAYOUT: dict[str, tuple[float, float, str, str, tuple[str, ...], dict[str, str]]] = {
    "M1": (0.0, 0.0, "sinopec", "open", ("92", "95"), {"92": "8.70", "95": "9.30"}),
    "M2": (90.0, 300.0, "petrochina", "open", ("92",), {"92": "8.60"}),
    "M3": (0.0, 600.0, "shell", "open", ("92",), {"92": "8.80"}),  # 0.50 off: effective 8.30
    "M4": (180.0, 5_000.0, "other", "open", ("95",), {"95": "9.40"}),
    "M5": (270.0, 1_000.0, "cnooc", "closed", ("92",), {"92": "8.00"}),  # closed: no price shown
}
EFFECTIVE = {"M3": {"92": Decimal("8.30")}}


@pytest.fixture(scope="module")
def regions_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lijiang's config without an extract (no road graph needed)."""
    src = PROJECT_ROOT / "data" / "regions"
    out = tmp_path_factory.mktemp("regions")
    text = (src / "lijiang.toml").read_text(encoding="utf-8")
    text = text.split("[extract]")[0] + "\n[speeds_kmh]\n" + text.split("[speeds_kmh]")[1]
    (out / "lijiang.toml").write_text(text, encoding="utf-8")
    shutil.copy(src / "lijiang.boundary.geojson", out / "lijiang.boundary.geojson")
    return out


@pytest.fixture(scope="module")
def where() -> dict[str, tuple[float, float]]:
    return {ref: destination(*Y, spec[0], spec[1]) if spec[1] else Y for ref, spec in LAYOUT.items()}


@pytest.fixture(scope="module")
def ids(db_url: str, shared_data: Path, where: dict[str, tuple[float, float]]) -> dict[str, int]:
    out: dict[str, int] = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
        for ref, (_, _, brand, status, grades, _) in LAYOUT.items():
            lat, lon = where[ref]
            out[ref] = upsert_station(
                conn,
                StationIn(
                    "demo",
                    f"maptest/{ref}",
                    lat,
                    lon,
                    name=f"图{ref}",
                    name_en=f"Map {ref}",
                    brand=brand,
                    grades=grades,
                    status=status,
                ),
                actor="test-setup",
            )
        since = datetime(2026, 11, 1, tzinfo=SH)
        insert_prices(
            conn,
            [
                PriceIn(out[ref], g, Decimal(p), since, source="station")
                for ref, spec in LAYOUT.items()
                for g, p in spec[5].items()
            ],
            zone="yunnan-4",
            actor="test-setup",
        )
        upsert_promotion(
            conn,
            Promotion(
                kind="cny_off_per_litre",
                value=Decimal("0.50"),
                scope="station",
                station_id=out["M3"],
                grades=("92",),
                title="地图测试立减",
                title_en="Map test offer",
                valid_from=since,
                source="feed",
                source_ref="maptest:m3",
            ),
            actor="test-setup",
            zone="yunnan-4",
        )
    return out


def _ewkb_line(coords: list[tuple[float, float]]) -> bytes:
    return (
        struct.pack("<BII", 1, 0x20000002, 4326)
        + struct.pack("<I", len(coords))
        + np.asarray(coords, "<f8").tobytes()
    )


# edge id: (highway, [(lon, lat), ...]); ids far above any real graph's
ROADS: dict[int, tuple[str, list[tuple[float, float]]]] = {
    990001: ("primary", [(100.74 + i * 0.0004, 26.69 + (0.0001 if i % 2 else 0.0)) for i in range(60)]),
    990002: ("residential", [(100.75, 26.68), (100.752, 26.684)]),
    990003: ("service", [(100.756, 26.690), (100.757, 26.691)]),
    990004: ("motorway", [(100.70, 26.65), (100.80, 26.75)]),
}
FACTORS = {990001: 0.9, 990002: 0.6, 990003: 0.3, 990004: 0.0}


@pytest.fixture(scope="module")
def roads(db_url: str) -> Iterator[None]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for eid, (hw, coords) in ROADS.items():
            conn.execute(
                "INSERT INTO road_edges (region, id, way_id, u_osm, v_osm, source, target, highway, name,"
                " name_en, length_m, cost_s, geom)"
                " VALUES ('lijiang', %s, %s, 1, 2, 0, 1, %s, %s, %s, 100, 10, ST_GeomFromEWKB(%s))"
                " ON CONFLICT DO NOTHING",
                (eid, eid, hw, f"路{eid}", f"Road {eid}", _ewkb_line(coords)),
            )
    yield
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM road_edges WHERE region = 'lijiang' AND id = ANY(%s)", (list(ROADS),))


@pytest.fixture(scope="module")
def client(db_url: str, regions_dir: Path, ids: dict[str, int], roads: None) -> Iterator[TestClient]:
    settings = Settings(
        database_url=db_url,
        env="test",
        secret_key=TEST_SECRET_KEY,
        rate_limit_prefix=fresh_rate_prefix(),
        region="lijiang",
        regions_dir=regions_dir,
        rate_limit_per_minute=100_000,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def get(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def stations(client: TestClient, bbox: tuple[float, ...] = BBOX, **params: Any) -> dict[str, Any]:
    return get(client, "/v1/map/stations", bbox=",".join(map(str, bbox)), at=WEDNESDAY, **params)


def expected_cells(where: dict[str, tuple[float, float]], res: int, grade: str) -> dict[str, tuple[int, Any]]:
    """cell -> (count, lowest effective price of `grade` among open priced stations). Below r7 a
    station counts in the parent of its r7 cell (the documented rule)."""
    out: dict[str, list[Any]] = {}
    for ref, (lat, lon) in where.items():
        cell = h3.latlng_to_cell(lat, lon, max(res, 7))
        if res < 7:
            cell = h3.cell_to_parent(cell, res)
        c = out.setdefault(cell, [0, None])
        c[0] += 1
        spec = LAYOUT[ref]
        if spec[3] != "open" or grade not in spec[5]:
            continue
        price = EFFECTIVE.get(ref, {}).get(grade, Decimal(spec[5][grade]))
        c[1] = price if c[1] is None else min(c[1], price)
    return {k: (v[0], None if v[1] is None else float(v[1])) for k, v in out.items()}


def db_count(db_url: str, bbox: tuple[float, ...]) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM stations WHERE geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)", bbox
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(("zoom", "res"), [(3, 4), (8, 5), (9, 6), (10, 7), (11, 7), (12, 8)])
def test_low_zoom_cells(
    client: TestClient, where: dict[str, tuple[float, float]], db_url: str, zoom: int, res: int
) -> None:
    body = stations(client, zoom=zoom)
    assert body["type"] == "FeatureCollection" and body["mode"] == "cells" and body["h3_res"] == res
    assert body["grade"] == "92" and body["attribution"] == "© OpenStreetMap contributors (ODbL)"
    got = {f["properties"]["cell"]: f for f in body["features"]}
    want = expected_cells(where, res, "92")
    assert {k: (f["properties"]["count"], f["properties"]["min_price"]) for k, f in got.items()} == want
    assert (
        sum(f["properties"]["count"] for f in body["features"])
        == body["count"]
        == db_count(db_url, BBOX)
        == 5
    )
    for f in body["features"]:
        ring = f["geometry"]["coordinates"][0]
        assert f["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) >= 6
        assert h3.get_resolution(f["properties"]["cell"]) == res
        assert f["properties"]["fill"].startswith("#") and len(f["properties"]["fill"]) == 7
    assert body["price_range"] == {"min": 8.30, "max": max(p for _, p in want.values() if p is not None)}


def test_cells_lowest_price_and_grade(client: TestClient, where: dict[str, tuple[float, float]]) -> None:
    (one,) = stations(client, zoom=4)["features"]  # one r4 cell holds them all
    p = one["properties"]
    assert p["count"] == 5 and p["priced"] == 3  # M4 has no 92#, M5 is closed
    assert p["min_price"] == 8.30 and p["min_list_price"] == 8.60  # M3's offer beats M2's list price
    (c95,) = stations(client, zoom=4, grade="95#")["features"]
    assert c95["properties"]["min_price"] == 9.30 and c95["properties"]["priced"] == 2
    m4_cell = h3.latlng_to_cell(*where["M4"], 7)  # zoom 10: r7
    by_cell = {
        f["properties"]["cell"]: f["properties"] for f in stations(client, zoom=10, grade="95")["features"]
    }
    assert by_cell[m4_cell]["min_price"] == 9.40
    # an empty box: no cells
    assert stations(client, bbox=(99.5, 26.0, 99.6, 26.1), zoom=10)["features"] == []


def test_high_zoom_markers(
    client: TestClient, ids: dict[str, int], where: dict[str, tuple[float, float]]
) -> None:
    body = stations(client, bbox=SMALL, zoom=14)
    assert body["mode"] == "markers" and body["h3_res"] is None and body["truncated"] is False
    by_id = {f["id"]: f for f in body["features"]}
    assert set(by_id) == {ids[r] for r in ("M1", "M2", "M3", "M5")}
    m3 = by_id[ids["M3"]]["properties"]
    assert m3["label"] == "8.30" and m3["list_price"] == 8.80 and m3["effective_price"] == 8.30
    assert m3["promotion"]["title"] == "地图测试立减" and m3["icon"] == "/static/icons/shell.svg"
    assert by_id[ids["M5"]]["properties"]["label"] is None  # closed
    assert by_id[ids["M1"]]["properties"]["label"] == "8.70"
    lon, lat = by_id[ids["M1"]]["geometry"]["coordinates"]
    assert (lat, lon) == pytest.approx(where["M1"], abs=1e-6)
    cheap = stations(client, bbox=SMALL, zoom=14, sort="effective_price")["features"]
    assert [f["id"] for f in cheap] == [ids["M3"], ids["M2"], ids["M1"], ids["M5"]]
    assert [
        f["properties"]["label"]
        for f in stations(client, bbox=SMALL, zoom=14, grade="95")["features"]
        if f["id"] == ids["M1"]
    ] == ["9.30"]


def test_wechat_markers_gcj02(
    client: TestClient, ids: dict[str, int], where: dict[str, tuple[float, float]]
) -> None:
    sw = from_wgs84(SMALL[1], SMALL[0], "gcj02")
    ne = from_wgs84(SMALL[3], SMALL[2], "gcj02")
    body = get(
        client,
        "/v1/map/stations",
        bbox=f"{sw[1]},{sw[0]},{ne[1]},{ne[0]}",
        zoom=15,
        format="wechat",
        at=WEDNESDAY,
    )
    assert body["coord"] == "gcj02" and body["mode"] == "markers" and body["polygons"] == []
    by_id = {m["id"]: m for m in body["markers"]}
    assert set(by_id) == {ids[r] for r in ("M1", "M2", "M3", "M5")}
    for ref in ("M1", "M2", "M3", "M5"):
        m = by_id[ids[ref]]
        assert isinstance(m["id"], int)
        lat, lon = from_wgs84(*where[ref], "gcj02")
        assert (m["latitude"], m["longitude"]) == pytest.approx((lat, lon), abs=2e-7)
        assert abs(m["longitude"] - where[ref][1]) > 1e-3  # GCJ-02 is hundreds of metres off WGS-84 here
        assert m["iconPath"] == f"http://testserver/static/dist/icons/{LAYOUT[ref][2]}@3x.png"
        assert m["width"] > 0 and m["height"] > 0 and m["kind"] == "station" and m["title"]
        assert m["callout"]["display"] == "ALWAYS"
    # the callout names the station (its display name, as the title) above the price
    assert by_id[ids["M3"]]["callout"]["content"] == by_id[ids["M3"]]["title"] + "\n92# 8.30"
    assert by_id[ids["M5"]]["callout"]["content"] == by_id[ids["M5"]]["title"] + "\n92# --"
    low = get(
        client, "/v1/map/stations", bbox=",".join(map(str, BBOX)), zoom=8, format="wechat", at=WEDNESDAY
    )
    assert low["mode"] == "cells" and len(low["polygons"]) == len(low["markers"]) >= 1
    assert all({"latitude", "longitude"} <= set(pt) for pg in low["polygons"] for pt in pg["points"])
    n = len(low["markers"])  # cell ids lie above every station id
    assert [m["id"] for m in low["markers"]] == list(range(CELL_ID_BASE + 1, CELL_ID_BASE + n + 1))
    assert {m["kind"] for m in low["markers"]} == {"cell"}


def test_bbox_in_gcj02(client: TestClient, ids: dict[str, int]) -> None:
    sw = from_wgs84(SMALL[1], SMALL[0], "gcj02")
    ne = from_wgs84(SMALL[3], SMALL[2], "gcj02")
    gcj = get(client, "/v1/map/stations", bbox=f"{sw[1]},{sw[0]},{ne[1]},{ne[0]}", zoom=14, coord="gcj02")
    wgs = stations(client, bbox=SMALL, zoom=14)
    assert {f["id"] for f in gcj["features"]} == {f["id"] for f in wgs["features"]}
    assert gcj["coord"] == "gcj02"


BAD_STATIONS: list[tuple[dict[str, str], str]] = [
    ({"zoom": "10"}, "bbox"),
    ({"bbox": "100.6,26.6,100.8", "zoom": "10"}, "bbox"),
    ({"bbox": "100.8,26.6,100.6,26.7", "zoom": "10"}, "bbox"),  # west > east
    ({"bbox": "100.6,26.7,100.8,26.6", "zoom": "10"}, "bbox"),  # south > north
    ({"bbox": "100.6,26.6,100.6,26.7", "zoom": "10"}, "bbox"),  # empty
    ({"bbox": "100.6,-95,100.8,26.7", "zoom": "10"}, "bbox"),
    ({"bbox": "190,26.6,191,26.7", "zoom": "10"}, "bbox"),
    ({"bbox": "a,b,c,d", "zoom": "10"}, "bbox"),
    ({"bbox": "nan,26.6,100.8,26.7", "zoom": "10"}, "bbox"),
    ({"bbox": "100,26,101,27", "zoom": "13"}, "bbox"),  # ~11,000 km² at zoom 13
    ({"bbox": "100.6,26.6,100.7,26.7", "zoom": "16"}, "bbox"),  # ~110 km² at zoom 16 (limit 39)
    ({"bbox": "100.6,26.6,100.8,26.7"}, "zoom"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "abc"}, "zoom"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "12.5"}, "zoom"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "-1"}, "zoom"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "23"}, "zoom"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "10", "grade": "91"}, "grade"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "10", "sort": "eta"}, "sort"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "10", "format": "kml"}, "format"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "10", "coord": "mars"}, "coord"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "10", "format": "wechat", "coord": "wgs84"}, "coord"),
    ({"bbox": "100.6,26.6,100.8,26.7", "zoom": "10", "at": "yesterday"}, "at"),
]


@pytest.mark.parametrize(("params", "param"), BAD_STATIONS)
def test_bad_station_params_422(client: TestClient, params: dict[str, str], param: str) -> None:
    r = client.get("/v1/map/stations", params=params)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"]


@pytest.mark.parametrize(
    ("params", "param"),
    [p for p in BAD_STATIONS if p[1] in ("bbox", "zoom", "coord") and "format" not in p[0]],
)
def test_bad_road_params_422(client: TestClient, params: dict[str, str], param: str) -> None:
    r = client.get("/v1/map/roads", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


def test_bbox_rule() -> None:
    assert max_area_km2(12) is None and max_area_km2(13) == 2500 and max_area_km2(15) == 2500 / 16
    assert bbox_area_km2(0, 0, 1, 1) == pytest.approx(12_364, rel=0.01)  # 1° x 1° at the equator
    assert resolution_for_zoom(13) is None and resolution_for_zoom(0) == (4, 7)
    assert [traffic_level(x) for x in (None, 0.0, 0.3, 0.5, 0.79, 0.8, 1.0)] == [
        "unknown",
        "closed",
        "congested",
        "slow",
        "slow",
        "free",
        "free",
    ]
    # a large box is fine at low zoom (heatmap)
    assert max_area_km2(5) is None


class _FakeLive:
    def __init__(self) -> None:
        self.calls: list[tuple[list[int], datetime]] = []

    def congestion(self, edge_ids: Any, t: datetime) -> np.ndarray:
        ids = [int(e) for e in edge_ids]
        self.calls.append((ids, t))
        return np.array([FACTORS.get(e, 1.0) for e in ids])


def roads_get(
    client: TestClient, zoom: int, bbox: tuple[float, ...] = (100.69, 26.64, 100.81, 26.76), **params: Any
) -> dict[str, Any]:
    return get(client, "/v1/map/roads", bbox=",".join(map(str, bbox)), zoom=zoom, **params)


def test_roads_levels_classes_and_simplification(client: TestClient) -> None:
    state = client.app.state.fuel  # type: ignore[attr-defined]
    assert state.router is None
    body = roads_get(client, 12)
    assert body["type"] == "FeatureCollection" and body["traffic"] is False
    assert {f["properties"]["level"] for f in body["features"]} == {"unknown"}
    live = _FakeLive()
    state.router = SimpleNamespace(live=live, g=SimpleNamespace(n_road_edges=10**6))
    try:
        full = roads_get(client, 16, bbox=(100.74, 26.679, 100.76, 26.695))
        by_id = {f["properties"]["edge_id"]: f for f in full["features"]}
        assert set(by_id) == {990001, 990002, 990003, 990004}
        assert {e: by_id[e]["properties"]["level"] for e in by_id} == {
            990001: "free",
            990002: "slow",
            990003: "congested",
            990004: "closed",
        }
        assert (
            by_id[990003]["properties"]["factor"] == 0.3
            and by_id[990001]["properties"]["highway"] == "primary"
        )
        assert by_id[990002]["properties"]["name"] == "路990002"
        assert live.calls and live.calls[-1][1].tzinfo is not None
        # major roads first
        assert [f["properties"]["highway"] for f in full["features"]][:2] == ["motorway", "primary"]
        low = roads_get(client, 10)
        assert {f["properties"]["edge_id"] for f in low["features"]} == {990001, 990004}  # no minor roads
        primary_low = next(f for f in low["features"] if f["id"] == 990001)["geometry"]["coordinates"]
        primary_high = by_id[990001]["geometry"]["coordinates"]
        assert len(primary_low) < len(primary_high) and primary_low[0] == primary_high[0]
        gcj = roads_get(client, 16, bbox=(100.74, 26.679, 100.76, 26.695), coord="gcj02")
        g2 = next(f for f in gcj["features"] if f["id"] == 990002)["geometry"]["coordinates"][0]
        lat, lon = from_wgs84(26.68, 100.75, "gcj02")
        assert g2 == pytest.approx([lon, lat], abs=2e-7)
    finally:
        state.router = None


def test_region(client: TestClient) -> None:
    body = get(client, "/v1/map/region")
    assert body["name"] == "lijiang" and body["display_name"] == "丽江市 Lijiang"
    assert body["attribution"] == "© OpenStreetMap contributors (ODbL)"
    assert body["bbox"] == [99.382, 25.988, 101.513, 27.928] and body["default_zoom"] == 13
    outline = body["outline"]
    assert outline["type"] == "Feature" and outline["properties"]["source"] == "boundary"
    assert outline["geometry"]["type"] in ("Polygon", "MultiPolygon")
    ring = outline["geometry"]["coordinates"][0]
    ring = ring if outline["geometry"]["type"] == "Polygon" else ring[0]
    assert ring[0] == ring[-1] and len(ring) > 50
    w, s, e, n = body["bbox"]
    c = body["centre"]
    assert c["source"] == "stations" and s <= c["lat"] <= n and w <= c["lon"] <= e
    gcj = get(client, "/v1/map/region", coord="gcj02")
    g0 = gcj["outline"]["geometry"]["coordinates"][0]
    g0 = g0 if gcj["outline"]["geometry"]["type"] == "Polygon" else g0[0]
    lat, lon = from_wgs84(ring[0][1], ring[0][0], "gcj02")
    assert g0[0] == pytest.approx([lon, lat], abs=2e-7)
    r = client.get("/v1/map/region", params={"coord": "mars"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "coord"


def test_page_and_static_served(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "丽江加油" in r.text and "/static/dist/leaflet.js" in r.text
    for path in ("/static/app.js", "/static/app.css", "/static/icons/sinopec.svg", "/static/icons/other.svg"):
        assert client.get(path).status_code == 200, path
