"""One shape across the API, on a copy of the demo region (Andorra) of this module's own:

- a point outside the served region: nearby answers 200 with a `note` (note_code OutsideRegion), every
  endpoint that cannot answer without the point (route, matrix, along-route GET and POST) a 422
  OutsideRegion naming it, all in the same words; the OSRM services keep OSRM's NoSegment, in those words;
- sort=eta from a point no road is near lists the nearest stations with a note (note_code NoRoadNear)
  instead of failing;
- numbers as JSON numbers and times with the region's offset (+08:00) in every answer, the manager
  views included, and in the OpenAPI schema of every response;
- messages in the client's words: parameters as sent (`prices[0].price_cny`, `sources[1]`), values in
  the unit sent (km/h), no pydantic internals.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.main import create_app
from config import Settings, load_region
from ingest._load_region import load_region_data
from tests._servers import TEST_ADMIN_KEY, fresh_rate_prefix

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

A, B = (42.5063, 1.5218), (42.5347, 1.5800)  # Andorra la Vella, Encamp
OUTSIDE = (43.2, 2.1)  # north of the region's box
NO_ROAD = (42.45, 1.35)  # in the region's box (Catalonia), no road of the Andorra extract within 1 km
ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
TOWN = "1.48,42.45,1.60,42.55"


@pytest.fixture(scope="module")
def c(module_db: str, shared_data: Path, demo_settings: Settings) -> Iterator[TestClient]:
    """The demo region in this module's own database: its writes leave the session's alone."""
    settings = demo_settings.model_copy(
        update={"database_url": module_db, "rate_limit_prefix": fresh_rate_prefix()}
    )
    extract = shared_data / "osm" / "andorra.osm.pbf"
    load_region_data(settings, region_name="andorra", extract=extract, demo=True, progress=False)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def outside_words(shared_data: Path) -> str:
    return load_region("andorra", Settings(shared_data_dir=shared_data)).outside_message(*OUTSIDE)


def q(p: tuple[float, float]) -> str:
    return f"{p[0]},{p[1]}"


def err(r: Any, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.text
    e: dict[str, Any] = r.json()["error"]
    return e


# ---- outside the region ------------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["distance", "eta", "total_cost"])
def test_nearby_outside_the_region_is_an_empty_list_with_a_typed_note(
    c: TestClient, outside_words: str, sort: str
) -> None:
    r = c.get(
        "/v1/stations/nearby", params={"lat": OUTSIDE[0], "lon": OUTSIDE[1], "sort": sort, "grade": "95"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 0 and body["results"] == []
    assert body["note_code"] == "OutsideRegion" and body["note"].startswith(outside_words)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "param"),
    [
        ("GET", "/v1/route", {"params": {"from": q(OUTSIDE), "to": q(B)}}, "from"),
        ("GET", "/v1/route", {"params": {"from": q(A), "to": q(OUTSIDE)}}, "to"),
        (
            "GET",
            "/v1/route",
            {"params": {"from": q(OUTSIDE), "to": q(B), "format": "wechat", "coord": "wgs84"}},
            "from",
        ),
        ("POST", "/v1/matrix", {"json": {"sources": [list(A), list(OUTSIDE)]}}, "sources[1]"),
        (
            "POST",
            "/v1/matrix",
            {"json": {"sources": [list(A)], "targets": [list(B), list(OUTSIDE)]}},
            "targets[1]",
        ),
        ("GET", "/v1/stations/along-route", {"params": {"from": q(A), "to": q(OUTSIDE)}}, "to"),
        (
            "GET",
            "/v1/stations/along-route",
            {"params": {"from": q(OUTSIDE), "to": q(B), "grade": "95"}},
            "from",
        ),
        ("POST", "/v1/stations/along-route", {"json": {"geometry": [list(A), list(OUTSIDE)]}}, "geometry"),
        (
            "POST",
            "/v1/stations/along-route",
            {
                "json": {
                    "geometry": [
                        {"latitude": OUTSIDE[0], "longitude": OUTSIDE[1]},
                        {"latitude": A[0], "longitude": A[1]},
                    ],
                    "coord": "wgs84",
                }
            },
            "geometry",
        ),
    ],
)
def test_endpoints_that_need_the_point_refuse_it_in_the_same_words(
    c: TestClient, outside_words: str, method: str, path: str, kwargs: dict[str, Any], param: str
) -> None:
    e = err(c.request(method, path, **kwargs))
    assert e["code"] == "OutsideRegion" and e["param"] == param
    assert outside_words in e["message"]


@pytest.mark.parametrize("service", ["route", "table", "nearest"])
def test_osrm_keeps_its_code_with_the_same_words(c: TestClient, outside_words: str, service: str) -> None:
    coords = (
        f"{OUTSIDE[1]},{OUTSIDE[0]}" if service == "nearest" else f"{A[1]},{A[0]};{OUTSIDE[1]},{OUTSIDE[0]}"
    )
    r = c.get(f"/{service}/v1/driving/{coords}")
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "NoSegment" and outside_words in r.json()["message"]


# ---- sort=eta from a point no road is near ---------------------------------------------------------


def test_eta_from_a_point_no_road_is_near_falls_back_to_distance(c: TestClient) -> None:
    params = {"lat": NO_ROAD[0], "lon": NO_ROAD[1], "radius_m": 50_000, "limit": 5}
    r = c.get("/v1/stations/nearby", params={**params, "sort": "eta"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["note_code"] == "NoRoadNear" and "straight-line distance" in body["note"]
    assert body["count"] == 5 and "search" not in body
    assert all("eta_s" not in x for x in body["results"])
    plain = c.get("/v1/stations/nearby", params=params).json()
    assert [x["id"] for x in body["results"]] == [x["id"] for x in plain["results"]]
    d = [x["distance_m"] for x in body["results"]]
    assert d == sorted(d)
    # the total cost needs the drive: still a 422 naming the point
    e = err(c.get("/v1/stations/nearby", params={**params, "sort": "total_cost", "grade": "95"}))
    assert e["code"] == "NoRoadNear" and e["param"] == "lat"


# ---- numbers and times -------------------------------------------------------------------------------

_DECIMAL_TEXT = re.compile(r"^-?[0-9]+\.[0-9]+$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
TEXT_KEYS = {"label", "content"}  # display text that shows a price on purpose ("8.45", "92# 8.45")


def walk(value: Any, where: str = "$") -> Iterator[tuple[str, Any]]:
    yield where, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{where}[{i}]")


def one_shape(body: Any) -> list[str]:
    """Every place in a body with a decimal as text, or a time without the region's +08:00 offset."""
    bad = []
    for where, v in walk(body):
        if not isinstance(v, str) or where.rsplit(".", 1)[-1] in TEXT_KEYS:
            continue
        if _DECIMAL_TEXT.match(v):
            bad.append(f"{where} = {v!r} (a number as text)")
        elif _DATE_TIME.match(v) and not v.endswith("+08:00"):
            bad.append(f"{where} = {v!r} (not +08:00)")
    return bad


def answers(c: TestClient) -> Iterator[tuple[str, Any]]:
    """A sample answer of every endpoint (public, operator and manager), with the writes that make one."""

    def get(path: str, **params: Any) -> Any:
        r = c.get(path, params=params, headers=ADMIN)
        assert r.status_code == 200, (path, r.text)
        return r.json()

    near = dict(lat=A[0], lon=A[1], radius_m=20_000)
    yield "nearby", get("/v1/stations/nearby", **near)
    yield "nearby price", get("/v1/stations/nearby", **near, sort="effective_price", grade="95")
    yield "nearby score", get("/v1/stations/nearby", **near, sort="score", grade="95")
    yield "nearby eta", get("/v1/stations/nearby", **near, sort="eta", grade="95", include_closed=True)
    yield "nearby total_cost", get("/v1/stations/nearby", **near, sort="total_cost", grade="95", at="2026-11-25T22:30:00")  # fmt: skip
    stations = get("/v1/stations", bbox="1.40,42.42,1.80,42.66")
    yield "stations", stations
    sid = stations["results"][0]["id"]
    yield "station", get(f"/v1/stations/{sid}")
    yield (
        "along-route",
        get("/v1/stations/along-route", **{"from": q(A), "to": q(B)}, grade="95", corridor_m=2000),
    )
    route = get("/v1/route", **{"from": q(A), "to": q(B)}, alternatives=1, geometries="all")
    yield "route", route
    yield "route wechat", get("/v1/route", **{"from": q(A), "to": q(B)}, format="wechat", coord="wgs84")
    r = c.post("/v1/stations/along-route", json={"polyline6": route["polyline6"], "grade": "95"})
    assert r.status_code == 200, r.text
    yield "along-route POST", r.json()
    r = c.post("/v1/matrix", json={"sources": [list(A), list(B)]})
    assert r.status_code == 200, r.text
    yield "matrix", r.json()
    yield "traffic", get("/v1/traffic", bbox=TOWN)
    yield "map cells", get("/v1/map/stations", bbox="1.40,42.42,1.80,42.66", zoom=10, grade="95")
    yield "map markers", get("/v1/map/stations", bbox=TOWN, zoom=14, grade="95")
    yield "map wechat", get("/v1/map/stations", bbox=TOWN, zoom=14, grade="95", format="wechat")
    yield "map roads", get("/v1/map/roads", bbox=TOWN, zoom=14)
    yield "region", get("/v1/map/region")
    # the manager views and writes
    view = c.get(f"/v1/manage/stations/{sid}", headers=ADMIN)
    assert view.status_code == 200, view.text
    yield "manage station", view.json()
    r = c.patch(f"/v1/stations/{sid}", json={"address": "CG-2 km 3"}, headers={**ADMIN, "If-Match": view.headers["ETag"]})  # fmt: skip
    assert r.status_code == 200, r.text
    yield "patch station", r.json()
    ceiling_day = (datetime.now(UTC) + timedelta(hours=1)).astimezone().isoformat()
    prices = {"prices": [{"grade": "95", "price_cny": "8.10", "effective_from": ceiling_day}]}
    r = c.put(f"/v1/stations/{sid}/prices", json=prices, headers={**ADMIN, "If-Match": r.headers["ETag"]})
    assert r.status_code == 200, r.text
    yield "put prices", r.json()
    promo = {
        "title": "周末95号每升优惠0.25元",
        "grades": ["95"],
        "kind": "cny_off_per_litre",
        "value": "0.25",
        "min_amount_cny": "100",
        "days_of_week": [6, 7],
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2026-12-31T15:59:59Z",
    }
    r = c.post(f"/v1/stations/{sid}/promotions", json=promo, headers=ADMIN)
    assert r.status_code == 201, r.text
    yield "post promotion", r.json()
    pid = r.json()["id"]
    r = c.get(f"/v1/promotions/{pid}", headers=ADMIN)
    assert r.status_code == 200, r.text
    yield "promotion", r.json()
    r = c.put(f"/v1/promotions/{pid}", json={**promo, "value": "0.30"}, headers={**ADMIN, "If-Match": r.headers["ETag"]})  # fmt: skip
    assert r.status_code == 200, r.text
    yield "put promotion", r.json()
    view = c.get(f"/v1/manage/stations/{sid}", headers=ADMIN)
    yield "manage station with promotions", view.json()
    r = c.put(f"/v1/stations/{sid}/prices", json={"prices": [{"grade": "95", "price_cny": "99"}], "version": view.json()["version"]}, headers=ADMIN)  # fmt: skip
    yield "an implausible price (422)", err(r)


def test_every_answer_has_numbers_as_numbers_and_times_at_plus_0800(c: TestClient) -> None:
    seen = {}
    for name, body in answers(c):
        seen[name] = body
        assert one_shape(body) == [], name
    view = seen["manage station with promotions"]
    assert isinstance(view["prices"]["95"], float) and view["updated_at"].endswith("+08:00")
    assert view["promotions"][0]["value"] == 0.3 and view["promotions"][0]["min_amount_cny"] == 100
    assert view["promotions"][0]["valid_from"] == "2026-01-01T08:00:00+08:00"
    assert seen["put prices"]["prices"][0]["price_cny"] == 8.1
    limits = seen["an implausible price (422)"]["allowed"]
    assert isinstance(limits["min"], float) and isinstance(limits["max"], float)


def _resolve(spec: dict[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _response_schemas(spec: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, resp in op.get("responses", {}).items():
                for content in resp.get("content", {}).values():
                    if "schema" in content:
                        yield f"{method.upper()} {path} {status}", content["schema"]


MONEY = re.compile(r"price|cny|value|amount|saving|total|cost|litres")
# times, provenance, seconds, a price zone's name, hashes
NOT_MONEY = re.compile(r"(_at|_from|_to|source|_s|_zone|_hash)$")


def _types(spec: dict[str, Any], schema: Any) -> set[str]:
    """The JSON types a schema allows (through $ref and anyOf/oneOf)."""
    s = _resolve(spec, schema)
    if not isinstance(s, dict):
        return set()
    plain = "type" in s and not {"format", "enum", "const"} & set(s)  # a date-time or a choice is text
    out = {str(s["type"])} if plain else set()
    for sub in s.get("anyOf", []) + s.get("oneOf", []):
        out |= _types(spec, sub)
    return out


def test_the_schema_of_every_response_declares_amounts_as_numbers(c: TestClient) -> None:
    """A price or an amount in a response is a number in the schema: never a string alone (as a Decimal
    of pydantic is written), nor a map of strings."""
    spec = c.get("/openapi.json").json()
    bad, checked = [], 0
    for where, top in _response_schemas(spec):
        stack, seen = [(top, where)], set()
        while stack:
            s, at = stack.pop()
            if isinstance(s, dict) and "$ref" in s:
                if s["$ref"] in seen:
                    continue
                seen.add(s["$ref"])
                s = _resolve(spec, s)
            if not isinstance(s, dict):
                continue
            for name, sub in (s.get("properties") or {}).items():
                if MONEY.search(name) and not NOT_MONEY.search(name):
                    checked += 1
                    types = _types(spec, sub)
                    extra = (
                        _resolve(spec, sub).get("additionalProperties")
                        if isinstance(_resolve(spec, sub), dict)
                        else None
                    )
                    if isinstance(extra, dict):
                        types = (types - {"object"}) | _types(spec, extra)
                    if "string" in types and not types & {"number", "integer"}:
                        bad.append(f"{at}.{name}")
                stack.append((sub, f"{at}.{name}"))
            for key in ("items", "additionalProperties"):
                if isinstance(s.get(key), dict):
                    stack.append((s[key], f"{at}[]"))
            for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
                for sub in s.get(key) or []:
                    stack.append((sub, at))
    assert checked > 50 and bad == [], bad


# ---- messages in the client's words -------------------------------------------------------------------

INTERNALS = re.compile(r"list\[|Input should|function-|PriceCreate|PricesPut|\.\d+\.|\d\.\d{7,}")


@pytest.mark.parametrize(
    ("method", "path", "body", "param", "words"),
    [
        (
            "PUT",
            "/v1/stations/1/prices",
            [{"grade": "95", "price_cny": "8.1x"}],
            "prices[0].price_cny",
            "must be a decimal number",
        ),
        (
            "PUT",
            "/v1/stations/1/prices",
            [{"grade": "95", "price_cny": "8.10"}, {"grade": "95", "price_cny": "-1"}],
            "prices[1].price_cny",
            "must be more than 0 and at most 100, got -1",
        ),
        (
            "PUT",
            "/v1/stations/1/prices",
            {"prices": [{"grade": "95", "price_cny": "101"}], "version": 1},
            "prices[0].price_cny",
            "at most 100",
        ),
        (
            "PUT",
            "/v1/stations/1/prices",
            {"prices": [{"grade": "96", "price_cny": "8"}], "version": 1},
            "prices[0].grade",
            "must be one of",
        ),
        (
            "PATCH",
            "/v1/stations/1",
            {"amenities": ["shop", "spa"], "version": 1},
            "amenities[1]",
            "must be one of",
        ),
        (
            "POST",
            "/v1/stations/1/promotions",
            {"kind": "percent_off", "value": "5", "valid_from": "2026-01-01", "days_of_week": [1, 9]},
            "days_of_week[1]",
            "at most 7",
        ),
        ("POST", "/v1/matrix", {"sources": [[42.5, 1.5], [91, 1.5]]}, "sources[1]", "between -90 and 90"),
    ],
)
def test_validation_messages_name_the_parameter_as_sent(
    c: TestClient, method: str, path: str, body: Any, param: str, words: str
) -> None:
    e = err(c.request(method, path, json=body, headers=ADMIN))
    assert e["param"] == param, e
    assert [p["param"] for p in e["errors"]] == [param], e  # one shape of the body, one error
    assert words in e["message"] and not INTERNALS.search(e["message"]), e["message"]


def test_traffic_messages_are_in_the_unit_sent(c: TestClient) -> None:
    now = datetime.now(UTC).isoformat()
    batch = [
        {"edge_id": 1, "speed_kmh": -5, "observed_at": now},
        {"edge_id": 2, "speed_kmh": 900, "observed_at": now},
        {"edge_id": 4, "factor": 3, "observed_at": now},
    ]
    e = err(c.post("/v1/traffic", json={"updates": batch}, headers=ADMIN))
    msg = e["message"]
    assert "updates[0]: speed_kmh must be positive, got -5" in msg
    assert re.search(r"updates\[1\]: speed_kmh must be at most 1\.5 x the road's free-flow speed \(\d+ km/h\), got 900", msg)  # fmt: skip
    assert "updates[2]: factor must be above 0 and at most 1.5, got 3" in msg
    assert "1.3888" not in msg and not INTERNALS.search(msg), msg


def test_stored_station_writes_keep_the_bracket_paths(c: TestClient, module_db: str) -> None:
    with psycopg.connect(module_db) as conn:
        row = conn.execute("SELECT id, version FROM stations ORDER BY id LIMIT 1").fetchone()
    assert row is not None
    body = {"prices": [{"grade": "95", "price_cny": "8.10"}, {"grade": "95", "price_cny": "99.00", "effective_from": "2026-12-01T00:00:00"}], "version": row[1]}  # fmt: skip
    e = err(c.put(f"/v1/stations/{row[0]}/prices", json=body, headers=ADMIN))
    assert e["param"] == "prices[1].price_cny" and e["code"] == "PriceAboveCeiling", e
