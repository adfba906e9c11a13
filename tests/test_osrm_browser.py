"""Leaflet Routing Machine (npm, its own OSRM v1 client and line drawing) in real Chromium against a real
uvicorn server: the line it draws from our step geometries stays on our road geometry. The browser
reaches nothing but 127.0.0.1."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import shapely

from config import PROJECT_ROOT
from tests._servers import Server

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("FUEL_CHROMIUM", "/usr/bin/chromium"))
DIST = PROJECT_ROOT / "api" / "static" / "dist"
A = (1.5218, 42.5063)  # lon, lat: Andorra la Vella
B = (1.5800, 42.5347)  # Encamp
C = (1.5148, 42.5447)  # La Massana

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None or not CHROMIUM.is_file():
    pytest.skip(
        f"browser tests skipped: needs playwright and Chromium at {CHROMIUM}", allow_module_level=True
    )
if not (DIST / "leaflet-routing-machine.js").is_file():
    pytest.skip(
        "browser tests skipped: run `make -C web build` (Leaflet Routing Machine)", allow_module_level=True
    )

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/static/dist/leaflet.css">
<script src="/static/dist/leaflet.js"></script>
<script src="/static/dist/leaflet-routing-machine.js"></script>
</head><body><div id="map" style="width:800px;height:600px"></div><script>
window.map = L.map('map').setView([42.52, 1.55], 12);
window.drawRoute = function (points) {
  return new Promise(function (resolve) {
    var router = L.Routing.osrmv1({serviceUrl: location.origin + '/route/v1', profile: 'driving'});
    var wps = points.map(function (p) { return L.Routing.waypoint(L.latLng(p[1], p[0])); });
    router.route(wps, function (err, routes) {
      if (err) { resolve({error: JSON.stringify(err)}); return; }
      var line = L.Routing.line(routes[0]).addTo(window.map);
      var drawn = [];
      line.eachLayer(function (layer) {
        if (layer.getLatLngs) {
          var ll = layer.getLatLngs();
          if (ll.length > drawn.length) { drawn = ll.map(function (p) { return [p.lng, p.lat]; }); }
        }
      });
      resolve({drawn: drawn, paths: document.querySelectorAll('path.leaflet-interactive').length,
               texts: routes[0].instructions.map(function (i) { return i.text; }),
               waypointIndices: routes[0].waypointIndices || []});
    });
  });
};
</script></body></html>"""


@pytest.fixture(scope="module")
def server(demo_db: str) -> Iterator[str]:
    s = Server(demo_db, FUEL_REGION="andorra")
    try:
        yield s.base
    finally:
        s.close()


@pytest.fixture()
def page(server: str) -> Iterator[Page]:
    outside: list[str] = []
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
        except Exception as exc:  # a Chromium that cannot start is an environment problem
            pytest.skip(f"browser tests skipped: Chromium could not start: {str(exc).splitlines()[0]}")
        pg = browser.new_page()

        def guard(route: Any) -> None:
            url = route.request.url
            if url == server + "/lrm-test":
                route.fulfill(status=200, content_type="text/html", body=PAGE)
            elif urlparse(url).hostname == "127.0.0.1" or url.startswith("data:"):
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        pg.route("**/*", guard)
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(server + "/lrm-test")
        yield pg
        browser.close()
    assert errors == [] and outside == [], (errors, outside)


def _projected(coords: list[list[float]]) -> Any:
    lat0 = math.radians(coords[0][1])
    k = 111_195.0
    return shapely.LineString([(lon * k * math.cos(lat0), lat * k) for lon, lat in coords])


def test_leaflet_routing_machine_draws_our_roads(page: Page, server: str) -> None:
    points = [list(A), list(C), list(B)]
    got = page.evaluate("pts => window.drawRoute(pts)", points)
    assert "error" not in got, got
    coords = ";".join(f"{x},{y}" for x, y in points)
    ours = httpx.get(
        f"{server}/route/v1/driving/{coords}",
        params={"overview": "full", "geometries": "geojson"},
        timeout=30,
    ).json()["routes"][0]["geometry"]["coordinates"]
    drawn = got["drawn"]
    assert len(drawn) >= len(ours)  # every vertex of the road is drawn (steps repeat their joints)
    road, line = _projected(ours), _projected(drawn)
    lat0 = math.radians(ours[0][1])
    off = [
        road.distance(shapely.Point(lon * 111_195.0 * math.cos(lat0), lat * 111_195.0)) for lon, lat in drawn
    ]
    assert max(off) < 1.0, max(off)  # the drawn line never leaves our geometry
    assert shapely.hausdorff_distance(road, line) < 1.0
    assert got["paths"] >= 1
    assert len(got["waypointIndices"]) == 3  # depart, via arrival, destination
    assert got["texts"] and all(t and "undefined" not in t for t in got["texts"])
