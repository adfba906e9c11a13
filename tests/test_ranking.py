"""Ranking by drive time and by total fill-up cost (GET /v1/stations/nearby?sort=eta|total_cost) on the
demo region (Andorra), in a database of this module's own (no seeded demo prices): hand-built stations
on the road from Andorra la Vella to Encamp, with prices and promotions made for each case."""

from __future__ import annotations

import math
import os
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Settings
from geo._coords import EARTH_RADIUS_M
from geo._polyline import cumulative_m
from geo._pricing import Promotion
from geo._ranking import Purchase, fill_up_cost, litres_for, price_at, search_bound_s, worth_it
from store import create_database, drop_database, migrate
from store._prices import PriceIn, insert_prices
from store._promotions import upsert_promotion
from store._stations import StationIn, upsert_station
from tests._servers import TEST_SECRET_KEY, fresh_rate_prefix
from tests.conftest import BASE_URL

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TZ = ZoneInfo("Asia/Shanghai")
A = (42.5063, 1.5218)  # Andorra la Vella
B = (42.5347, 1.5800)  # Encamp
WED = datetime(2026, 11, 25, 10, 0, tzinfo=TZ)
SAT = datetime(2026, 11, 28, 10, 0, tzinfo=TZ)
SINCE = datetime(2026, 11, 1, tzinfo=TZ)
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0


# ---- fixtures (also used by tests/test_along_route.py) ----------------------------------------------
@pytest.fixture(scope="module")
def rank_db(shared_data: Path) -> Iterator[str]:
    """A fresh database with the Andorra roads and OSM stations, without seeded demo prices."""
    from psycopg.conninfo import make_conninfo

    from ingest._load_region import load_region_data

    url = make_conninfo(BASE_URL, dbname=f"fuel_rank_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    create_database(url)
    try:
        migrate(url)
        load_region_data(
            Settings(database_url=url, shared_data_dir=shared_data),
            region_name="andorra",
            extract=shared_data / "osm" / "andorra.osm.pbf",
            demo=False,
            progress=False,
        )
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="module")
def rank_client(rank_db: str, shared_data: Path) -> Iterator[TestClient]:
    from api.main import create_app

    s = Settings(
        database_url=rank_db,
        shared_data_dir=shared_data,
        env="test",
        secret_key=TEST_SECRET_KEY,
        rate_limit_prefix=fresh_rate_prefix(),
        rate_limit_per_minute=1_000_000,
    )
    with TestClient(create_app(s)) as c:
        yield c


def route_line(client: TestClient, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """The (lat, lon) polyline of the fastest route a -> b at WED (WGS-84)."""
    r = client.get(
        "/v1/route", params={"from": f"{a[0]},{a[1]}", "to": f"{b[0]},{b[1]}", "depart_at": WED.isoformat()}
    )
    assert r.status_code == 200, r.text
    return np.array([(p[1], p[0]) for p in r.json()["geometry"]["coordinates"]])


def point_on(line: np.ndarray, frac: float, lateral_m: float = 0.0) -> tuple[float, float]:
    """The point at `frac` of the line's length, moved `lateral_m` to the left (negative: right)."""
    c = cumulative_m(line[:, 0], line[:, 1])
    d = frac * c[-1]
    lat = float(np.interp(d, c, line[:, 0]))
    lon = float(np.interp(d, c, line[:, 1]))
    if lateral_m:
        i = int(min(max(np.searchsorted(c, d) - 1, 0), len(c) - 2))
        kx = M_PER_DEG * math.cos(math.radians(lat))
        dx = (line[i + 1, 1] - line[i, 1]) * kx
        dy = (line[i + 1, 0] - line[i, 0]) * M_PER_DEG
        n = math.hypot(dx, dy)
        lon += -dy / n * lateral_m / kx
        lat += dx / n * lateral_m / M_PER_DEG
    return lat, lon


def add_station(conn: psycopg.Connection, ref: str, p: tuple[float, float], grades: tuple[str, ...]) -> int:
    return upsert_station(
        conn,
        StationIn(
            "demo",
            f"ranktest/{ref}",
            p[0],
            p[1],
            name=f"测试{ref}",
            name_en=f"Test {ref}",
            brand="other",
            grades=grades,
        ),
        actor="test-setup",
    )


# NEAR is about 330 m from A by road, FAR about 6 km (7-8 min) further towards Encamp.
# grade: (NEAR price, FAR price)
PRICES = {"92": ("8.90", "8.50"), "95": ("9.40", "9.40"), "98": ("9.90", "9.90"), "0": ("8.40", "8.40")}


@pytest.fixture(scope="module")
def ids(rank_db: str, rank_client: TestClient) -> dict[str, int]:
    line = route_line(rank_client, A, B)
    grades = ("92", "95", "98", "0")
    with psycopg.connect(rank_db, autocommit=True) as conn:
        out = {"NEAR": add_station(conn, "NEAR", point_on(line, 0.05), grades)}
        out["FAR"] = add_station(conn, "FAR", point_on(line, 0.9), grades)
        rows = [
            PriceIn(out[ref], g, Decimal(p[k]), SINCE)
            for g, p in PRICES.items()
            for k, ref in enumerate(("NEAR", "FAR"))
        ]
        # the official cut at 24:00 on Wednesday night: FAR's diesel 8.40 -> 7.60 from Thursday 00:00
        rows.append(PriceIn(out["FAR"], "0", Decimal("7.60"), datetime(2026, 11, 26, 0, 0, tzinfo=TZ)))
        insert_prices(conn, rows, zone="yunnan-4", actor="test-setup")
        common: dict[str, Any] = {"valid_from": SINCE, "source": "station", "scope": "station"}
        upsert_promotion(
            conn,
            Promotion(
                kind="cny_off_per_litre",
                value=Decimal("0.50"),
                station_id=out["FAR"],
                grades=("95",),
                days_of_week=(6,),
                title="周六95#每升优惠0.50元",
                source_ref="ranktest:sat-95",
                **common,
            ),
            actor="test-setup",
            zone="yunnan-4",
        )
        upsert_promotion(
            conn,
            Promotion(
                kind="cny_off_per_litre",
                value=Decimal("0.80"),
                station_id=out["FAR"],
                grades=("98",),
                time_from=time(18, 0),
                time_to=time(23, 0),
                title="晚间98#每升优惠0.80元",
                source_ref="ranktest:evening-98",
                **common,
            ),
            actor="test-setup",
            zone="yunnan-4",
        )
    return out


def nearby(client: TestClient, **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"lat": A[0], "lon": A[1], "radius_m": 8000, "at": WED.isoformat()}
    for k, v in params.items():
        if isinstance(v, datetime):
            params[k] = v.isoformat()
    r = client.get("/v1/stations/nearby", params={**base, **params})
    assert r.status_code == 200, r.text
    return r.json()


def mine(body: dict[str, Any], ids: dict[str, int]) -> dict[str, dict[str, Any]]:
    back = {v: k for k, v in ids.items()}
    return {back[r["id"]]: r for r in body["results"] if r["id"] in back}


def order(body: dict[str, Any], ids: dict[str, int]) -> list[str]:
    back = {v: k for k, v in ids.items()}
    return [back[r["id"]] for r in body["results"] if r["id"] in back]


def expected_total(r: dict[str, Any], litres: float, cons: float = 8.0, vot: float = 30.0) -> float:
    eff = r["cost"]["effective_price"]
    return eff * litres + r["road_distance_m"] / 1000 * cons / 100 * eff + r["eta_s"] / 3600 * vot


# ---- sort=eta -------------------------------------------------------------------------------------
def test_sort_eta_orders_by_drive_time(rank_client: TestClient, ids: dict[str, int]) -> None:
    body = nearby(rank_client, sort="eta", limit=200)
    res = body["results"]
    assert body["search"]["max_time_s"] == pytest.approx(search_bound_s(8000), abs=0.1)
    etas = [r["eta_s"] for r in res]
    reach = [e for e in etas if e is not None]
    assert reach == sorted(reach) and etas[: len(reach)] == reach  # unreachable (null) last
    m = mine(body, ids)
    assert order(body, ids) == ["NEAR", "FAR"]
    near, far = m["NEAR"], m["FAR"]
    assert 0 < near["eta_s"] < far["eta_s"]
    assert far["road_distance_m"] > far["distance_m"]  # road vs straight line (kept as distance_m)
    assert 5_000 < far["road_distance_m"] < 7_500
    arrive = datetime.fromisoformat(far["arrive_at"])
    assert (arrive - WED).total_seconds() == pytest.approx(far["eta_s"], abs=0.1)
    # the same drive time as a one-station route
    route = rank_client.get(
        "/v1/route",
        params={"from": f"{A[0]},{A[1]}", "to": f"{far['lat']},{far['lon']}", "depart_at": WED.isoformat()},
    ).json()
    assert far["eta_s"] == pytest.approx(route["duration_s"], abs=1.0)
    assert far["road_distance_m"] == pytest.approx(route["distance_m"], rel=0.01)


def test_eta_tight_bound_makes_far_stations_unreachable(rank_client: TestClient, ids: dict[str, int]) -> None:
    # radius 300 m: bound 600 + 180 s; FAR is outside the radius anyway, NEAR within and reachable
    body = nearby(rank_client, sort="eta", radius_m=400)
    assert "FAR" not in mine(body, ids) and mine(body, ids)["NEAR"]["eta_s"] is not None


def test_peak_traffic_changes_eta(rank_client: TestClient, ids: dict[str, int]) -> None:
    night = mine(nearby(rank_client, sort="eta", at=WED.replace(hour=3)), ids)["FAR"]["eta_s"]
    peak = mine(nearby(rank_client, sort="eta", at=WED.replace(hour=8, minute=15)), ids)["FAR"]["eta_s"]
    assert peak > night


# ---- sort=total_cost: hand-checked cases ---------------------------------------------------------
def test_cheap_far_station_loses_with_few_litres_and_wins_with_many(
    rank_client: TestClient, ids: dict[str, int]
) -> None:
    few = nearby(rank_client, sort="total_cost", grade="92", litres=10)
    m = mine(few, ids)
    near, far = m["NEAR"], m["FAR"]
    for r in (near, far):
        c = r["cost"]
        assert c["total"] == pytest.approx(expected_total(r, 10), abs=0.02)
        assert c["total"] == pytest.approx(c["fuel_cost"] + c["detour_fuel_cost"] + c["time_cost"], abs=0.02)
        assert c["fuel_cost"] == pytest.approx(c["effective_price"] * 10, abs=0.01)
        assert c["time_cost"] == pytest.approx(r["eta_s"] / 3600 * 30, abs=0.01)
    assert near["cost"]["list_price"] == 8.90 and far["cost"]["list_price"] == 8.50
    assert order(few, ids) == ["NEAR", "FAR"]
    assert few["nearest"]["id"] == ids["NEAR"]
    assert near["cost"]["worth_it"] is True and far["cost"]["worth_it"] is False
    # break-even litres: the drive to FAR costs (extra time + extra fuel) what 0.40 CNY/L saves
    extra_time = (far["eta_s"] - near["eta_s"]) / 3600 * 30
    extra_fuel = (far["road_distance_m"] * 8.50 - near["road_distance_m"] * 8.90) / 1000 * 8 / 100
    breakeven = (extra_time + extra_fuel) / 0.40
    assert 5 < breakeven < 60
    below = nearby(rank_client, sort="total_cost", grade="92", litres=math.floor(breakeven) - 1)
    above = nearby(rank_client, sort="total_cost", grade="92", litres=math.ceil(breakeven) + 1)
    assert order(below, ids) == ["NEAR", "FAR"]
    assert order(above, ids) == ["FAR", "NEAR"]
    fa = mine(above, ids)["FAR"]["cost"]
    assert fa["worth_it"] is True and fa["saving_vs_nearest"] > 0
    many = nearby(rank_client, sort="total_cost", grade="92", litres=60)
    assert order(many, ids) == ["FAR", "NEAR"]


def test_tank_and_amount_give_the_litres(rank_client: TestClient, ids: dict[str, int]) -> None:
    tank = nearby(rank_client, sort="total_cost", grade="92", tank_l=50, fill_level=0.2)
    assert tank["purchase"]["litres"] == 40.0 and tank["purchase"]["litres_from"] == "tank"
    amount = nearby(rank_client, sort="total_cost", grade="92", amount_cny=445)
    assert amount["purchase"]["litres_from"] == "amount_cny"
    assert amount["purchase"]["litres"] == 50.0  # 445 CNY at the nearest station's 8.90
    default = nearby(rank_client, sort="total_cost", grade="92")
    assert default["purchase"]["litres"] == 40.0 and default["purchase"]["litres_from"] == "default"
    costly = nearby(rank_client, sort="total_cost", grade="92", litres=10, value_of_time_cny_h=0)
    assert costly["purchase"]["value_of_time_cny_h"] == 0
    assert all(r["cost"]["time_cost"] == 0 for r in costly["results"] if r["cost"]["total"] is not None)


def test_saturday_promotion_changes_the_order_on_saturday_only(
    rank_client: TestClient, ids: dict[str, int]
) -> None:
    wed = nearby(rank_client, sort="total_cost", grade="95", litres=40, at=WED)
    assert order(wed, ids) == ["NEAR", "FAR"]
    assert mine(wed, ids)["FAR"]["cost"]["promotions_applied"] == []
    sat = nearby(rank_client, sort="total_cost", grade="95", litres=40, at=SAT)
    assert order(sat, ids) == ["FAR", "NEAR"]
    far = mine(sat, ids)["FAR"]["cost"]
    assert far["effective_price"] == 8.90 and far["promotions_applied"][0]["saving"] == 0.5
    assert far["worth_it"] is True


def test_evening_promotion_applies_when_the_eta_crosses_18(
    rank_client: TestClient, ids: dict[str, int]
) -> None:
    probe = mine(nearby(rank_client, sort="eta", at=WED.replace(hour=17, minute=50)), ids)
    gap = probe["FAR"]["eta_s"] - probe["NEAR"]["eta_s"]
    assert gap > 120
    depart = WED.replace(hour=18, minute=0) - timedelta(seconds=probe["NEAR"]["eta_s"] + gap / 2)
    body = nearby(rank_client, sort="total_cost", grade="98", litres=40, at=depart)
    m = mine(body, ids)
    six = WED.replace(hour=18)
    assert (
        datetime.fromisoformat(m["NEAR"]["arrive_at"]) < six < datetime.fromisoformat(m["FAR"]["arrive_at"])
    )
    far98 = m["FAR"]["grades"]["98"]
    assert far98["at_query_time"]["effective_price"] == 9.90  # not yet at departure (labelled extra)
    assert m["FAR"]["cost"]["effective_price"] == 9.10  # but at the arrival
    assert far98["effective_price"] == 9.10 and far98["promotions_applied"]  # one price: at arrival
    assert m["NEAR"]["cost"]["effective_price"] == 9.90
    assert order(body, ids) == ["FAR", "NEAR"]
    early = nearby(rank_client, sort="total_cost", grade="98", litres=40, at=WED.replace(hour=17, minute=0))
    assert order(early, ids) == ["NEAR", "FAR"]
    assert mine(early, ids)["FAR"]["cost"]["promotions_applied"] == []


def test_price_cut_at_midnight_applies_to_arrivals_after_midnight(
    rank_client: TestClient, ids: dict[str, int]
) -> None:
    probe = mine(nearby(rank_client, sort="eta", at=WED.replace(hour=23, minute=55)), ids)
    gap = probe["FAR"]["eta_s"] - probe["NEAR"]["eta_s"]
    midnight = datetime(2026, 11, 26, 0, 0, tzinfo=TZ)
    depart = midnight - timedelta(seconds=probe["NEAR"]["eta_s"] + gap / 2)
    body = nearby(rank_client, sort="total_cost", grade="0", litres=40, at=depart)
    m = mine(body, ids)
    assert datetime.fromisoformat(m["FAR"]["arrive_at"]) > midnight
    assert m["FAR"]["grades"]["0"]["at_query_time"]["list_price"] == 8.40  # at departure, labelled
    assert m["FAR"]["cost"]["list_price"] == 7.60  # at arrival
    assert m["FAR"]["grades"]["0"]["list_price"] == 7.60  # one price in the answer: at arrival
    assert m["FAR"]["cost"]["price_effective_from"].startswith("2026-11-26T00:00:00")
    assert order(body, ids) == ["FAR", "NEAR"]
    before = nearby(rank_client, sort="total_cost", grade="0", litres=40, at=WED.replace(hour=22))
    assert mine(before, ids)["FAR"]["cost"]["list_price"] == 8.40
    assert order(before, ids) == ["NEAR", "FAR"]


def test_members_only_and_payment_are_passed_through(rank_client: TestClient, ids: dict[str, int]) -> None:
    body = nearby(rank_client, sort="total_cost", grade="92", litres=20, member="true", payment="wechat")
    assert body["purchase"]["member"] is True and body["purchase"]["payment"] == "wechat"


def test_total_cost_order_is_consistent_with_totals(rank_client: TestClient, ids: dict[str, int]) -> None:
    for litres in (5, 30, 80):
        body = nearby(rank_client, sort="total_cost", grade="92", litres=litres, limit=200)
        totals = [r["cost"]["total"] for r in body["results"]]
        known = [t for t in totals if t is not None]
        assert known == sorted(known) and totals[: len(known)] == known
        for r in body["results"]:
            if r["cost"]["total"] is None:
                assert r["cost"]["reason"] in ("unreachable", "no_price")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"sort": "total_cost"}, "grade"),
        ({"sort": "fastest"}, "sort"),
        ({"sort": "total_cost", "grade": "92", "litres": 0}, "litres"),
        ({"sort": "total_cost", "grade": "92", "litres": 1001}, "litres"),
        ({"sort": "total_cost", "grade": "92", "litres": "lots"}, "litres"),
        ({"sort": "total_cost", "grade": "92", "amount_cny": -1}, "amount_cny"),
        ({"sort": "total_cost", "grade": "92", "litres": 10, "amount_cny": 100}, "amount_cny"),
        ({"sort": "total_cost", "grade": "92", "tank_l": 50}, "fill_level"),
        ({"sort": "total_cost", "grade": "92", "fill_level": 0.5}, "tank_l"),
        ({"sort": "total_cost", "grade": "92", "tank_l": 50, "fill_level": 1}, "fill_level"),
        ({"sort": "total_cost", "grade": "92", "tank_l": 50, "fill_level": 1.5}, "fill_level"),
        ({"sort": "total_cost", "grade": "92", "tank_l": 0, "fill_level": 0.5}, "tank_l"),
        ({"sort": "total_cost", "grade": "92", "consumption_l_100km": 1}, "consumption_l_100km"),
        ({"sort": "total_cost", "grade": "92", "consumption_l_100km": 41}, "consumption_l_100km"),
        ({"sort": "total_cost", "grade": "92", "consumption_l_100km": "nan"}, "consumption_l_100km"),
        ({"sort": "total_cost", "grade": "92", "value_of_time_cny_h": -1}, "value_of_time_cny_h"),
        ({"sort": "eta", "at": "tomorrow"}, "at"),
        # in the region but no road within 1 km: the total cost needs the drive (eta falls back to
        # distance with a note: tests/test_consistency.py)
        ({"sort": "total_cost", "grade": "92", "lat": 42.0, "lon": 1.2}, "lat"),
    ],
)
def test_bad_input_is_422_naming_the_param(
    rank_client: TestClient, params: dict[str, Any], param: str
) -> None:
    base = {"lat": A[0], "lon": A[1], "radius_m": 5000}
    r = rank_client.get("/v1/stations/nearby", params={**base, **params})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


def test_gcj02_input_gives_the_same_ranking(rank_client: TestClient, ids: dict[str, int]) -> None:
    from geo import from_wgs84

    g = from_wgs84(*A, "gcj02")  # identity outside China, the path is exercised anyway
    a = nearby(rank_client, sort="total_cost", grade="92", litres=30)
    b = nearby(rank_client, sort="total_cost", grade="92", litres=30, lat=g[0], lon=g[1], coord="gcj02")
    assert order(a, ids) == order(b, ids) and b["coord"] == "gcj02"


# ---- pure properties --------------------------------------------------------------------------------
_promo = st.builds(
    Promotion,
    kind=st.sampled_from(["percent_off", "cny_off_per_litre", "cny_off_per_order", "topup_bonus"]),
    value=st.decimals(min_value=Decimal("0.05"), max_value=Decimal("20"), places=2),
    id=st.integers(1, 1000),
    grades=st.sampled_from([(), ("92",), ("95",)]),
    days_of_week=st.sampled_from([(), (6,), (1, 2, 3, 4, 5)]),
    time_from=st.sampled_from([None, time(18, 0), time(7, 0)]),
    members_only=st.booleans(),
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    price=st.decimals(min_value=Decimal("6.00"), max_value=Decimal("9.99"), places=2),
    promos=st.lists(_promo, max_size=3),
    l1=st.decimals(min_value=Decimal("0.5"), max_value=Decimal("200"), places=2),
    l2=st.decimals(min_value=Decimal("0.5"), max_value=Decimal("200"), places=2),
    drive_s=st.floats(0, 7200),
    drive_m=st.floats(0, 100_000),
    hour=st.integers(0, 23),
    member=st.booleans(),
)
def test_total_cost_never_decreases_with_litres_without_thresholds(
    price: Decimal,
    promos: list[Promotion],
    l1: Decimal,
    l2: Decimal,
    drive_s: float,
    drive_m: float,
    hour: int,
    member: bool,
) -> None:
    lo, hi = sorted((l1, l2))
    at = SAT.replace(hour=hour)

    def total(litres: Decimal) -> float:
        p = Purchase("92", litres, member=member)
        return fill_up_cost(price, promos, at, p, drive_s=drive_s, drive_m=drive_m, tz=TZ).total

    assert total(lo) <= total(hi) + 1e-9


def test_min_litres_threshold_can_make_more_litres_cheaper() -> None:
    promo = Promotion(kind="cny_off_per_litre", value=Decimal("0.50"), id=1, min_litres=Decimal(30))

    def total(litres: str) -> float:
        return fill_up_cost(
            Decimal("8.90"), [promo], SAT, Purchase("92", Decimal(litres)), drive_s=0, drive_m=0
        ).total

    assert total("29.99") > total("30")  # documented: the discount starts at 30 L


def test_pure_helpers() -> None:
    class Row:
        def __init__(self, t: datetime) -> None:
            self.effective_from = t

    rows = [Row(SINCE), Row(SINCE + timedelta(days=3))]
    assert price_at(rows, SINCE - timedelta(seconds=1)) is None
    assert price_at(rows, SINCE) is rows[0]
    assert price_at(rows, SINCE + timedelta(days=3)) is rows[1]
    assert worth_it([10.0, 9.0, None, 11.0], 0) == [True, True, None, False]
    assert worth_it([None, 1.0], None) == [None, None]
    d = Decimal(40)
    kw: dict[str, Any] = {"reference_price": Decimal("8.00"), "default": d}
    assert litres_for(litres=None, amount_cny=None, tank_l=60, fill_level=0.25, **kw) == (
        Decimal("45.00"),
        "tank",
    )
    assert litres_for(litres=None, amount_cny=200, tank_l=None, fill_level=None, **kw) == (
        Decimal("25.00"),
        "amount_cny",
    )
    assert litres_for(litres=None, amount_cny=None, tank_l=None, fill_level=None, **kw) == (d, "default")
    c = fill_up_cost(
        Decimal("8.00"),
        [],
        SAT,
        Purchase("92", Decimal(10), value_of_time_cny_h=36),
        drive_s=600,
        drive_m=5000,
    )
    assert c.fuel_cost == pytest.approx(80.0)
    assert c.detour_fuel_cost == pytest.approx(5 * 0.08 * 8.0)
    assert c.time_cost == pytest.approx(6.0)
    assert c.total == pytest.approx(80 + 3.2 + 6)


# ---- one price per station and "can I fill up there at arrival" ----------------------------------
def test_grades_and_cost_agree_when_a_promotion_ends_before_arrival(
    rank_client: TestClient, ids: dict[str, int]
) -> None:
    # FAR's 98 promotion runs 18:00-23:00: leave so as to arrive at about 23:01
    probe = mine(nearby(rank_client, sort="eta", at=WED.replace(hour=22, minute=50)), ids)["FAR"]
    depart = WED.replace(hour=23, minute=1) - timedelta(seconds=probe["eta_s"])
    for sort in ("total_cost", "eta"):
        body = nearby(rank_client, sort=sort, grade="98", litres=40, at=depart)
        far = mine(body, ids)["FAR"]
        assert datetime.fromisoformat(far["arrive_at"]) > WED.replace(hour=23)
        g = far["grades"]["98"]
        assert g["effective_price"] == 9.90 and g["promotions_applied"] == []
        assert g["priced_at"] == far["arrive_at"]
        assert g["at_query_time"]["effective_price"] == 9.10  # the promotion at departure, labelled
        if sort == "total_cost":
            assert far["cost"]["effective_price"] == g["effective_price"]


@pytest.fixture(scope="module")
def closed_ids(rank_db: str, rank_client: TestClient, ids: dict[str, int]) -> dict[str, int]:
    """SHUT: temporarily closed, next to the start, the cheapest. LATE: FAR's neighbour, open until 23:00."""
    line = route_line(rank_client, A, B)
    grades = ("92",)
    with psycopg.connect(rank_db, autocommit=True) as conn:
        out = {"SHUT": add_station(conn, "SHUT", point_on(line, 0.06), grades)}
        out["LATE"] = add_station(conn, "LATE", point_on(line, 0.88), grades)
        conn.execute("UPDATE stations SET status = 'temporarily_closed' WHERE id = %s", (out["SHUT"],))
        conn.execute("UPDATE stations SET opening_hours = 'Mo-Su 06:00-23:00' WHERE id = %s", (out["LATE"],))
        rows = [
            PriceIn(out["SHUT"], "92", Decimal("7.00"), SINCE),
            PriceIn(out["LATE"], "92", Decimal("7.10"), SINCE),
        ]
        insert_prices(conn, rows, zone="yunnan-4", actor="test-setup")
    return out


def test_closed_stations_never_rank_first(rank_client: TestClient, closed_ids: dict[str, int]) -> None:
    probe = mine(nearby(rank_client, sort="eta", at=WED.replace(hour=22, minute=40)), closed_ids)["LATE"]
    depart = WED.replace(hour=23, minute=1) - timedelta(seconds=probe["eta_s"])  # LATE closes before arrival
    for sort in ("price", "effective_price", "score", "distance", "eta", "total_cost"):
        body = nearby(rank_client, sort=sort, grade="92", litres=60, at=depart)
        assert body["results"] and body["results"][0]["can_fill_up"] is not False, sort
        got = mine(body, closed_ids)
        assert "SHUT" not in got, sort
        if sort in ("eta", "total_cost"):  # judged at the arrival time
            assert "LATE" not in got, sort
        assert body["closed_left_out"] >= 1
        every = nearby(
            rank_client, sort=sort, grade="92", litres=60, at=depart, include_closed="true", limit=200
        )
        flags = [r["can_fill_up"] is False for r in every["results"]]
        assert flags == sorted(flags), sort  # closed ones last
        shut = mine(every, closed_ids)["SHUT"]
        assert shut["closed_reason"] == "temporarily_closed" and shut["can_fill_up"] is False
        if sort in ("eta", "total_cost"):
            late = mine(every, closed_ids)["LATE"]
            assert late["closed_reason"] == "outside_opening_hours"
            assert late["checked_at"] == late["arrive_at"]
        if sort == "total_cost":
            assert shut["cost"]["total"] is None and shut["cost"]["reason"] == "temporarily_closed"
            assert every["nearest"]["id"] not in closed_ids.values()


def test_map_agrees_on_closed_stations(rank_client: TestClient, closed_ids: dict[str, int]) -> None:
    at = WED.replace(hour=23, minute=30).isoformat()
    bbox = f"{A[1] - 0.02},{A[0] - 0.02},{B[1] + 0.02},{B[0] + 0.02}"
    r = rank_client.get("/v1/map/stations", params={"bbox": bbox, "zoom": 13, "grade": "92", "at": at})
    assert r.status_code == 200, r.text
    props = {f["properties"]["id"]: f["properties"] for f in r.json()["features"]}
    for ref, reason in (("SHUT", "temporarily_closed"), ("LATE", "outside_opening_hours")):
        p = props[closed_ids[ref]]
        assert p["can_fill_up"] is False and p["closed_reason"] == reason and p["effective_price"] is None
    cells = rank_client.get(
        "/v1/map/stations", params={"bbox": bbox, "zoom": 11, "grade": "92", "at": at}
    ).json()
    mins = [
        f["properties"]["min_price"] for f in cells["features"] if f["properties"]["min_price"] is not None
    ]
    assert mins and min(mins) > 7.10  # neither closed station's price shows in the heatmap
    morning = rank_client.get(
        "/v1/map/stations", params={"bbox": bbox, "zoom": 11, "grade": "92", "at": WED.isoformat()}
    ).json()
    assert (
        min(f["properties"]["min_price"] for f in morning["features"] if f["properties"]["min_price"]) == 7.10
    )
