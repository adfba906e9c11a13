"""A 0# diesel search for a truck does not route under a 3 m bridge: the `vehicle` parameters of the
ranking endpoints (nearby by ETA and total cost, along-route GET and POST, matrix) on a hand-made
extract, the ladder of tests/osm_fixtures.py with its middle rung a 3 m bridge and a fuel station on
the north street; served as the region's own extract, in this module's own database."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from config import Settings
from store._prices import PriceIn, insert_prices
from tests._servers import TEST_SECRET_KEY, fresh_rate_prefix
from tests.osm_fixtures import ladder

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 25, 3, 0, tzinfo=TZ)  # a night: free-flowing roads
START = (26.870, 100.231)  # node 2 on the south street, at the foot of the bridge
STATION = (26.8721, 100.2312)  # beside the north street, just east of node 5 (the bridge's far end)
FAR = (26.872, 100.2315)  # on the north street, past the station
TRUCK = {"vehicle": "truck", "height_m": "4", "weight_t": "18", "width_m": "2.5", "length_m": "12"}
LOW_VAN = {"vehicle": "van", "height_m": "2.5"}


def _extract(tmp: Path) -> Path:
    xml = ladder('<tag k="bridge" v="yes"/><tag k="maxheight" v="3"/>')
    fuel = (
        f'  <node id="99" version="1" lat="{STATION[0]:.7f}" lon="{STATION[1]:.7f}">'
        '<tag k="amenity" v="fuel"/><tag k="name" v="桥北加油站"/><tag k="fuel:diesel" v="yes"/></node>\n'
    )
    p = tmp / "bridge.osm"
    p.write_text(xml.replace("</osm>", fuel + "</osm>"))
    return p


@pytest.fixture(scope="module")
def bridge(
    module_db: str, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    from api.main import create_app
    from ingest._load_region import load_region_data

    tmp = tmp_path_factory.mktemp("bridge")
    extract = _extract(tmp)
    base = Settings(
        database_url=module_db, shared_data_dir=shared_data, extract=extract, cache_dir=tmp / "cache"
    )
    load_region_data(base, region_name="lijiang", extract=extract, demo=False, progress=False)
    with psycopg.connect(module_db) as conn:
        sid = int(conn.execute("SELECT id FROM stations").fetchone()[0])  # type: ignore[index]
        rows = [PriceIn(sid, "0", Decimal("7.80"), datetime(2026, 11, 1, tzinfo=TZ), "station")]
        insert_prices(conn, rows, zone="yunnan-4", actor="test-setup")
    s = Settings(
        database_url=module_db,
        shared_data_dir=shared_data,
        extract=extract,
        cache_dir=tmp / "cache",
        env="test",
        secret_key=TEST_SECRET_KEY,
        rate_limit_prefix=fresh_rate_prefix(),
        rate_limit_per_minute=1_000_000,
    )
    with TestClient(create_app(s)) as c:
        yield c


def q(p: tuple[float, float]) -> str:
    return f"{p[0]},{p[1]}"


def nearby(c: TestClient, sort: str, **extra: str) -> dict[str, Any]:
    params = {
        "lat": START[0],
        "lon": START[1],
        "radius_m": 2000,
        "sort": sort,
        "grade": "0#",
        "at": AT.isoformat(),
    }
    r = c.get("/v1/stations/nearby", params=params | extra)
    assert r.status_code == 200, r.text
    (st,) = r.json()["results"]
    return st  # type: ignore[no-any-return]


def test_nearby_eta_and_total_cost_for_a_truck_go_round_the_low_bridge(bridge: TestClient) -> None:
    car = nearby(bridge, "eta")
    truck = nearby(bridge, "eta", **TRUCK)
    assert car["road_distance_m"] == pytest.approx(242, abs=10)  # over the bridge
    assert truck["road_distance_m"] == pytest.approx(401, abs=10)  # round by the east rung
    assert truck["eta_s"] > car["eta_s"] + 10
    assert nearby(bridge, "eta", **LOW_VAN)["road_distance_m"] == car["road_distance_m"]  # 2.5 m passes
    car_cost = nearby(bridge, "total_cost", litres="200")
    truck_cost = nearby(bridge, "total_cost", litres="200", **TRUCK)
    assert truck_cost["eta_s"] == pytest.approx(truck["eta_s"], abs=0.2)
    assert truck_cost["cost"]["total"] > car_cost["cost"]["total"]  # more driving to the same pump


def test_along_route_for_a_truck(bridge: TestClient) -> None:
    def along(**extra: str) -> dict[str, Any]:
        params = {"from": q(START), "to": q(FAR), "depart_at": AT.isoformat(), "corridor_m": "300"}
        r = bridge.get("/v1/stations/along-route", params=params | extra)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    car, truck = along(), along(**TRUCK)
    assert car["route"]["distance_m"] == pytest.approx(272, abs=10)
    assert truck["route"]["distance_m"] == pytest.approx(371, abs=10)
    (c_st,), (t_st,) = car["results"], truck["results"]
    assert t_st["road_distance_m"] > c_st["road_distance_m"] + 80
    # the same for a route the client already has (POST): the truck's drives to and from the station
    line = [list(START), [26.871, 100.231], [26.872, 100.231], list(FAR)]
    body = {"geometry": line, "depart_at": AT.isoformat(), "corridor_m": 300}
    posted = [
        bridge.post("/v1/stations/along-route", json=body | extra) for extra in ({}, {"vehicle": "truck"})
    ]
    assert [r.status_code for r in posted] == [200, 200], posted[1].text
    (pc,), (pt,) = (r.json()["results"] for r in posted)
    assert pt["road_distance_m"] > pc["road_distance_m"] + 80


def test_matrix_and_route_for_a_truck(bridge: TestClient) -> None:
    body: dict[str, Any] = {"sources": [list(START)], "targets": [list(FAR)], "depart_at": AT.isoformat()}
    car = bridge.post("/v1/matrix", json=body).json()["distances_m"][0][0]
    truck = bridge.post("/v1/matrix", json=body | {"vehicle": "truck", "height_m": 4}).json()["distances_m"][
        0
    ][0]
    assert car == pytest.approx(272, abs=10) and truck == pytest.approx(371, abs=10)
    params = {"from": q(START), "to": q(FAR), "depart_at": AT.isoformat()}
    route = bridge.get("/v1/route", params=params | TRUCK)
    assert route.status_code == 200 and route.json()["distance_m"] == pytest.approx(truck, abs=1)


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/stations/nearby", {"vehicle": "lorry"}, "vehicle"),
        ("/v1/stations/nearby", {"vehicle": "truck", "height_m": "40"}, "height_m"),
        ("/v1/stations/nearby", {"height_m": "4"}, "height_m"),  # dimensions need a van or truck
        ("/v1/stations/along-route", {"vehicle": "truck", "weight_t": "heavy"}, "weight_t"),
    ],
)
def test_bad_vehicle_is_422_naming_the_param(
    bridge: TestClient, path: str, params: dict[str, str], param: str
) -> None:
    base = {"lat": START[0], "lon": START[1], "sort": "eta", "from": q(START), "to": q(FAR)}
    r = bridge.get(path, params=base | params)
    assert r.status_code == 422, r.text
    assert param in r.text


def test_bad_vehicle_in_a_body_is_422(bridge: TestClient) -> None:
    body: dict[str, Any] = {"sources": [list(START)], "vehicle": "truck", "width_m": 9}
    r = bridge.post("/v1/matrix", json=body)
    assert r.status_code == 422 and "width_m" in r.text, r.text
