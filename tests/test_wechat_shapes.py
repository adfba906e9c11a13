"""format=wechat against the WeChat mini-program `map` component's documentation (markers, callout,
polygons, polyline), through the real app on the demo region; the PNG marker icons the shapes point to
exist, are served and decode at the size asked for; along-route takes back the route's WeChat points
and polyline6."""

from __future__ import annotations

import io
import re
import warnings
from typing import Any
from urllib.parse import urlparse

import pytest
from PIL import Image

from api._map import CELL_ID_BASE
from api.main import STATIC_DIR, create_app
from config import Settings
from config._settings import UnsafeSettingsError
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

A = (42.5063, 1.5218)  # Andorra la Vella
B = (42.5347, 1.5800)  # Encamp
TOWN = "1.48,42.48,1.56,42.53"  # around Andorra la Vella: markers at zoom 14
COUNTRY = "1.40,42.42,1.80,42.66"
WED = "2026-11-25T10:00:00"
COLOUR = re.compile(r"#[0-9A-F]{8}")
ICONS = STATIC_DIR / "dist" / "icons"

# The documented fields and their types (WeChat `map` component); `kind` and `cell` are ours.
MARKER = {
    "id": int,
    "latitude": float,
    "longitude": float,
    "title": str,
    "zIndex": int,
    "iconPath": str,
    "width": int,
    "height": int,
    "anchor": dict,
    "callout": dict,
    "kind": str,
    "cell": str,
}
MARKER_REQUIRED = {"id", "latitude", "longitude", "title", "iconPath", "width", "height", "callout", "kind"}
CALLOUT = {
    "content": str,
    "color": str,
    "fontSize": int,
    "borderRadius": int,
    "borderWidth": int,
    "borderColor": str,
    "bgColor": str,
    "padding": int,
    "display": str,
    "textAlign": str,
}
POLYGON = {"points": list, "strokeWidth": int, "strokeColor": str, "fillColor": str, "zIndex": int}
POLYLINE = {
    "points": list,
    "color": str,
    "colorList": list,
    "width": int,
    "arrowLine": bool,
    "borderColor": str,
    "borderWidth": int,
    "level": str,
}
COLOUR_KEYS = {"color", "borderColor", "bgColor", "strokeColor", "fillColor"}

pytestmark = pytest.mark.skipif(
    not (ICONS / "other@3x.png").is_file(), reason="marker PNGs not built (run `make -C web build`)"
)


def check(obj: dict[str, Any], schema: dict[str, type], where: str) -> None:
    extra = set(obj) - set(schema)
    assert not extra, f"{where}: fields outside the documented schema: {extra}"
    for key, value in obj.items():
        want = schema[key]
        if want is float:
            assert isinstance(value, int | float) and not isinstance(value, bool), (where, key, value)
        else:
            assert isinstance(value, want) and not (want is int and isinstance(value, bool)), (
                where,
                key,
                value,
            )
        if key in COLOUR_KEYS:
            assert COLOUR.fullmatch(value), f"{where}.{key} is not #RRGGBBAA: {value!r}"


def check_point(p: dict[str, Any]) -> None:
    assert set(p) == {"latitude", "longitude"}
    assert -90 <= p["latitude"] <= 90 and -180 <= p["longitude"] <= 180


def check_marker(client: TestClient, m: dict[str, Any], icons: dict[str, tuple[int, int]]) -> None:
    check(m, MARKER, f"marker {m['id']}")
    assert set(m) >= MARKER_REQUIRED
    assert m["title"].strip(), f"marker {m['id']} has an empty title"
    assert 1 <= m["id"] <= 999_999_999  # WeChat: a number of at most 9 digits
    check(m["callout"], CALLOUT, f"marker {m['id']}.callout")
    assert m["callout"]["display"] in ("BYCLICK", "ALWAYS")
    assert m["callout"]["textAlign"] in ("left", "right", "center")
    url = urlparse(m["iconPath"])
    assert url.scheme in ("http", "https") and url.netloc, m["iconPath"]
    assert url.path.endswith("@3x.png")
    if url.path not in icons:
        r = client.get(url.path)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", (url.path, r.status_code)
        img = Image.open(io.BytesIO(r.content))
        img.load()
        assert img.format == "PNG"
        icons[url.path] = img.size
        two = client.get(url.path.replace("@3x", "@2x"))
        assert two.status_code == 200
        assert Image.open(io.BytesIO(two.content)).size == (m["width"] * 2, m["height"] * 2)
    assert icons[url.path] == (m["width"] * 3, m["height"] * 3)


def test_station_markers_follow_the_documented_schema(client: TestClient) -> None:
    body = client.get(
        "/v1/map/stations", params={"bbox": TOWN, "zoom": 14, "format": "wechat", "at": WED}
    ).json()
    assert body["mode"] == "markers" and len(body["markers"]) >= 3, body.get("count")
    icons: dict[str, tuple[int, int]] = {}
    for m in body["markers"]:
        check_marker(client, m, icons)
        assert m["kind"] == "station" and m["id"] < CELL_ID_BASE
    assert len({m["id"] for m in body["markers"]}) == len(body["markers"])


def test_heatmap_cells_never_share_a_station_id(client: TestClient) -> None:
    cells = client.get(
        "/v1/map/stations", params={"bbox": COUNTRY, "zoom": 9, "format": "wechat", "at": WED}
    ).json()
    assert cells["mode"] == "cells" and cells["markers"] and len(cells["polygons"]) == len(cells["markers"])
    icons: dict[str, tuple[int, int]] = {}
    for m in cells["markers"]:
        check_marker(client, m, icons)
        assert m["kind"] == "cell" and m["id"] > CELL_ID_BASE
    for pg in cells["polygons"]:
        check(pg, POLYGON, "polygon")
        for p in pg["points"]:
            check_point(p)
    stations = client.get(
        "/v1/map/stations", params={"bbox": TOWN, "zoom": 13, "format": "wechat", "at": WED}
    ).json()
    assert not {m["id"] for m in stations["markers"]} & {m["id"] for m in cells["markers"]}


def test_icon_urls_use_the_public_base_url(demo_settings: Settings) -> None:
    settings = demo_settings.model_copy(update={"public_base_url": "https://fuel.example.cn"})
    with TestClient(create_app(settings)) as c:
        body = c.get("/v1/map/stations", params={"bbox": TOWN, "zoom": 14, "format": "wechat"}).json()
    assert body["markers"]
    assert all(
        m["iconPath"].startswith("https://fuel.example.cn/static/dist/icons/") for m in body["markers"]
    )


def test_production_wants_an_https_public_base_url() -> None:
    secrets = {"secret_key": TEST_SECRET_KEY, "admin_api_key": TEST_ADMIN_KEY}
    with pytest.raises(UnsafeSettingsError, match="https"):
        Settings(env="production", public_base_url="http://fuel.example.cn", **secrets)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="FUEL_PUBLIC_BASE_URL"):
        Settings(env="test", public_base_url="fuel.example.cn", **secrets)  # type: ignore[arg-type]


def check_route(route: dict[str, Any], alternative: bool) -> None:
    for key in ("distance_m", "duration_s", "duration_free_flow_s", "delay_s"):
        assert isinstance(route[key], int | float)
    assert route["steps"] and route["steps"][-1]["maneuver"] == "arrive"
    assert len(route["polyline"]) == 1
    line = route["polyline"][0]
    check(line, POLYLINE, "polyline")
    assert line["level"] in ("abovelabels", "abovebuildings", "aboveroads")
    assert len(line["points"]) >= 2
    for p in line["points"]:
        check_point(p)
    if alternative:
        assert "colorList" not in line
    else:  # one colour per stretch between two points
        assert len(line["colorList"]) == len(line["points"]) - 1
        assert all(COLOUR.fullmatch(c) for c in line["colorList"])


def test_route_and_alternatives_in_wechat_shape(client: TestClient) -> None:
    params = {
        "from": f"{A[0]},{A[1]}",
        "to": f"{B[0]},{B[1]}",
        "format": "wechat",
        "alternatives": 1,
        "depart_at": WED,
    }
    d = client.get("/v1/route", params=params).json()
    assert d["coord"] == "gcj02"
    check_route(d, alternative=False)
    assert d["alternatives"], "the demo route A -> B has an alternative"
    main_keys = set(d) - {"alternatives", "coord", "attribution"}
    for alt in d["alternatives"]:
        check_route(alt, alternative=True)
        assert main_keys <= set(alt)  # every field of the main route
        assert alt["polyline"][0]["color"] not in d["polyline"][0]["colorList"]  # grey, apart


def test_along_route_takes_back_wechat_points_and_polyline6(client: TestClient) -> None:
    base = {"from": f"{A[0]},{A[1]}", "to": f"{B[0]},{B[1]}", "depart_at": WED}
    wechat = client.get("/v1/route", params=base | {"format": "wechat"}).json()
    plain = client.get("/v1/route", params=base | {"geometries": "geojson,polyline6"}).json()
    ref = client.post(
        "/v1/stations/along-route", json={"geometry": plain["geometry"], "depart_at": WED, "grade": "92"}
    )
    assert ref.status_code == 200, ref.text
    want = [s["id"] for s in ref.json()["results"]]
    for body in (
        {"geometry": wechat["polyline"][0]["points"]},  # GCJ-02, as the WeChat route returned it
        {"polyline6": plain["polyline6"]},
    ):
        r = client.post("/v1/stations/along-route", json=body | {"depart_at": WED, "grade": "92"})
        assert r.status_code == 200, r.text[:500]
        assert [s["id"] for s in r.json()["results"]] == want
    for bad, param in (
        ({"polyline6": "not a polyline ~~~"}, "polyline6"),
        (
            {"geometry": [{"latitude": 95, "longitude": 1.5}, {"latitude": 42.5, "longitude": 1.6}]},
            "geometry",
        ),
        ({"geometry": [{"lat": 42.5, "lng": 1.5}]}, "geometry"),
        ({}, "geometry"),
        ({"polyline6": plain["polyline6"], "geometry": plain["geometry"]}, "geometry"),
    ):
        r = client.post("/v1/stations/along-route", json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["param"] == param
        assert len(r.content) < 2_000
