"""The map page in real Chromium (Debian's /usr/bin/chromium driven by Playwright) against a real uvicorn
server on 127.0.0.1 and a throwaway database loaded with the demo region (Andorra, real OSM roads and
stations, seeded demo prices). The browser makes no outside connection: every request not to
127.0.0.1 is aborted and reported. Screenshots go to reports/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from config import PROJECT_ROOT, Settings
from tests._servers import TEST_ADMIN_KEY, TEST_RATE_PREFIX, TEST_SECRET_KEY

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("FUEL_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = PROJECT_ROOT / "reports" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-quic",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--no-default-browser-check",
    "--metrics-recording-only",
]

try:
    from playwright.sync_api import BrowserContext, Page, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None or not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
    pytest.skip(
        f"browser tests skipped: needs the playwright package and an executable Chromium at {CHROMIUM}",
        allow_module_level=True,
    )
if not (PROJECT_ROOT / "api" / "static" / "dist" / "leaflet.js").is_file():
    pytest.skip(
        "browser tests skipped: Leaflet is not built (run `make -C web build`)", allow_module_level=True
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo_db(db_url: str, shared_data: Path) -> str:
    from ingest._load_region import load_region_data

    settings = Settings(
        database_url=db_url,
        env="test",
        region="andorra",
        secret_key=TEST_SECRET_KEY,
        admin_api_key=TEST_ADMIN_KEY,
    )
    load_region_data(
        settings,
        region_name="andorra",
        extract=shared_data / "osm" / "andorra.osm.pbf",
        demo=True,
        progress=False,
    )
    return db_url


@pytest.fixture(scope="module")
def server(demo_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """uvicorn serving api.main:app on a free 127.0.0.1 port, in a subprocess; yields the base URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "uvicorn.log"
    env = {
        **os.environ,
        "DATABASE_URL": demo_db,
        "FUEL_ENV": "test",
        "FUEL_SECRET_KEY": TEST_SECRET_KEY,
        "FUEL_ADMIN_API_KEY": TEST_ADMIN_KEY,
        "FUEL_RATE_LIMIT_PREFIX": TEST_RATE_PREFIX,
        "FUEL_REGION": "andorra",
        "FUEL_RATE_LIMIT_PER_MINUTE": "100000",
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"uvicorn exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"uvicorn did not answer in 120 s:\n{log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def context() -> Iterator[BrowserContext]:
    """A fresh Chromium profile; requests to anything but 127.0.0.1 are aborted and recorded."""
    user_data = tempfile.mkdtemp(prefix="fuel-chromium-")
    pw = sync_playwright().start()
    try:
        try:
            ctx = pw.chromium.launch_persistent_context(
                user_data,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
                locale="zh-CN",
                timezone_id="Asia/Shanghai",
                service_workers="block",
            )
        except Exception as exc:
            pytest.skip(
                f"browser tests skipped: Chromium at {CHROMIUM} could not start: {str(exc).splitlines()[0]}"
            )
        blocked: list[str] = []

        def guard(route: Any) -> None:
            url = route.request.url
            host = urlparse(url).hostname
            if url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                route.continue_()
            else:
                blocked.append(url)
                route.abort()

        ctx.route("**/*", guard)
        ctx.blocked = blocked  # type: ignore[attr-defined]
        yield ctx
        ctx.close()
    finally:
        pw.stop()
        shutil.rmtree(user_data, ignore_errors=True)


PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
HERE = {"latitude": 42.5063, "longitude": 1.5218}  # Andorra la Vella, where the demo stations are


def open_page(context: BrowserContext, server: str, viewport: dict[str, int], located: bool) -> Page:
    if located:
        context.grant_permissions(["geolocation"], origin=server)
        context.set_geolocation(HERE)
    else:
        context.clear_permissions()
    pg = context.new_page()
    pg.set_viewport_size(viewport)  # type: ignore[arg-type]
    return pg


@pytest.fixture()
def page(context: BrowserContext, server: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    marker = request.node.get_closest_marker("viewport")
    viewport = marker.args[0] if marker else PHONE
    located = not request.node.get_closest_marker("no_location")
    pg = open_page(context, server, viewport, located)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text}")
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    pg.goto(server + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
    yield pg
    pg.close()
    assert errors == [], errors
    blocked: list[str] = context.blocked  # type: ignore[attr-defined]
    assert blocked == [], f"the page tried to reach outside 127.0.0.1: {blocked}"


def shot(pg: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    pg.screenshot(path=str(path))
    return path


def labels(pg: Page) -> dict[int, str]:
    out: dict[int, str] = pg.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('.station-marker')].map("
        "m => [m.dataset.stationId, m.querySelector('.price-label').textContent]))"
    )
    return {int(k): v for k, v in out.items()}


def clickable_marker(pg: Page) -> int:
    """The id of a station marker whose centre is on screen and not covered (by the list, another marker);
    zooms in (splitting clusters) until there is one."""
    for _ in range(3):
        sid = _uncovered_marker(pg)
        if sid is not None:
            return sid
        pg.click(".leaflet-control-zoom-in")
        pg.wait_for_timeout(800)
        wait_markers(pg)
    sid = _uncovered_marker(pg)
    assert sid is not None, "no uncovered station marker on screen"
    return int(sid)


def _uncovered_marker(pg: Page) -> int | None:
    sid = pg.evaluate(
        """() => {
          for (const m of document.querySelectorAll('.station-marker')) {
            const r = m.getBoundingClientRect();
            const el = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
            if (el && m.parentElement.contains(el)) return Number(m.dataset.stationId);
          }
          return null;
        }"""
    )
    return None if sid is None else int(sid)


def wait_markers(pg: Page) -> None:
    pg.wait_for_selector("#map[data-mode='markers'] .station-marker", timeout=20_000)


def test_page_shows_markers_roads_and_list(page: Page) -> None:
    wait_markers(page)
    page.wait_for_selector("#map[data-roads]")
    assert int(page.get_attribute("#map", "data-roads") or 0) > 50
    found = labels(page)
    assert found, "no station markers"
    assert all(re.fullmatch(r"\d+\.\d\d|--", v) for v in found.values()), found
    assert any(v != "--" for v in found.values())
    page.wait_for_selector(".station-item")
    assert page.locator(".station-item").count() >= 1
    assert "OpenStreetMap" in page.inner_text(".leaflet-control-attribution")
    assert page.inner_text("#app-title") == "丽江加油"
    assert page.locator(".leaflet-tile").count() == 0  # no tile server: our own roads only
    box = page.locator("#phone").bounding_box()
    assert box is not None and box["width"] == PHONE["width"] and box["height"] == PHONE["height"]
    shot(page, "01_markers.png")


def test_grade_change_relabels_markers(page: Page, server: str) -> None:
    wait_markers(page)
    before = labels(page)
    page.select_option("#grade-select", "95")
    page.wait_for_selector("#map[data-grade='95'] .station-marker")
    after = labels(page)
    common = sorted(set(before) & set(after))
    assert common
    assert any(before[i] != after[i] for i in common), (before, after)
    for sid in common[:5]:  # each label is the station's effective 95# price
        st = httpx.get(f"{server}/v1/stations/{sid}", timeout=10).json()["station"]
        eff = st["grades"].get("95", {}).get("effective_price")
        assert after[sid] == (f"{eff:.2f}" if eff is not None else "--")
    shot(page, "02_grade95.png")


def test_tap_station_draws_route_with_eta(page: Page) -> None:
    wait_markers(page)
    sid = clickable_marker(page)
    page.locator(f".station-marker[data-station-id='{sid}']").click()
    page.wait_for_selector("#station-sheet:not([hidden]) .grade-row", timeout=15_000)
    page.wait_for_function(
        "() => document.querySelector('#route-eta').dataset.minutes"
        " || !document.querySelector('#route-error').hidden",
        timeout=30_000,
    )
    assert page.locator("#route-error").is_hidden(), page.inner_text("#route-error")
    assert page.get_attribute("#station-sheet", "data-station-id") == str(sid)
    minutes = int(page.get_attribute("#route-eta", "data-minutes") or 0)
    assert minutes >= 1
    assert "分钟" in page.inner_text("#route-eta")
    assert re.search(r"\d+\.\d 公里", page.inner_text("#route-distance"))
    assert page.locator("path.route-segment").count() >= 1
    shot(page, "03_route.png")
    # the list opens the same sheet
    page.click("#sheet-close")
    page.locator(".station-item").first.click()
    page.wait_for_function("() => document.querySelector('#route-eta').dataset.minutes", timeout=30_000)
    assert page.locator("#station-sheet").is_visible()


def test_zoom_out_shows_heatmap(page: Page) -> None:
    wait_markers(page)
    for _ in range(3):
        page.click(".leaflet-control-zoom-out")
        page.wait_for_timeout(400)
    page.wait_for_selector("#map[data-mode='cells'] path.heatmap-cell", timeout=20_000)
    counts = page.eval_on_selector_all("path.heatmap-cell", "els => els.map(e => Number(e.dataset.count))")
    assert counts and all(c >= 1 for c in counts)
    assert page.locator(".station-marker").count() == 0
    assert page.locator("#legend").is_visible()
    assert re.fullmatch(r"\d+\.\d\d", page.inner_text("#legend-min"))
    shot(page, "04_heatmap.png")


def test_sort_fallback_and_english(page: Page) -> None:
    page.wait_for_selector(".station-item")
    page.select_option("#sort-select", "eta")
    # eta may not be implemented by the API yet: then a visible message and a fall back to distance
    page.wait_for_function(
        "() => !document.querySelector('#message').hidden || document.querySelector('#sort-select').value === 'eta'",
        timeout=10_000,
    )
    if page.input_value("#sort-select") != "eta":
        assert page.locator("#message").is_visible()
        assert "距离" in page.inner_text("#message")
        assert page.input_value("#sort-select") == "distance"
    page.select_option("#sort-select", "price")
    page.wait_for_timeout(800)
    prices = [
        float(x)
        for x in page.eval_on_selector_all(".item-price", "els => els.map(e => e.textContent)")
        if re.fullmatch(r"\d+\.\d\d", x)
    ]
    assert prices == sorted(prices) and prices
    page.click("#lang-toggle")
    assert page.inner_text("#app-title") == "Lijiang Fuel"
    assert page.inner_text("#lang-toggle") == "中文"
    assert "Grade" in page.inner_text("#controls")
    shot(page, "05_english.png")
    page.click("#lang-toggle")
    assert page.inner_text("#app-title") == "丽江加油"


def no_overlap(pg: Page) -> list[tuple[str, str]]:
    """Pairs of price callouts drawn over each other."""
    return [
        tuple(x)
        for x in pg.evaluate(
            """() => {
          const boxes = [...document.querySelectorAll('.station-marker .price-label, .station-cluster')]
            .map(e => [e.closest('[data-station-id], [data-station-ids]').dataset.stationId
                       || e.closest('[data-station-ids]').dataset.stationIds, e.getBoundingClientRect()]);
          const out = [];
          for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
            const a = boxes[i][1], b = boxes[j][1];
            if (a.left < b.right - 2 && b.left < a.right - 2 && a.top < b.bottom - 2 && b.top < a.bottom - 2)
              out.push([boxes[i][0], boxes[j][0]]);
          }
          return out;
        }"""
        )
    ]


def open_first_station(pg: Page) -> int:
    wait_markers(pg)
    sid = clickable_marker(pg)
    pg.locator(f".station-marker[data-station-id='{sid}']").click()
    pg.wait_for_selector("#station-sheet:not([hidden]) .grade-row", timeout=15_000)
    pg.wait_for_function("() => document.querySelector('#route-eta').dataset.minutes", timeout=30_000)
    return sid


@pytest.mark.no_location
def test_location_unknown_is_said_and_a_tap_sets_it(page: Page) -> None:
    page.wait_for_selector("#location-state:not([hidden])")
    assert "位置" in page.inner_text("#location-state")
    assert page.locator("[data-test='list-location-unknown']").is_visible()
    assert page.locator(".station-item").count() == 0  # no distances from a made-up position
    assert page.locator(".my-position").count() == 0
    shot(page, "06_location_unknown.png")
    page.click("#lang-toggle")
    assert "location" in page.inner_text("#location-state").lower()
    page.click("#lang-toggle")
    box = page.locator("#map").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 30, box["y"] + box["height"] - 30)  # a corner, away from the markers
    page.wait_for_selector(".station-item", timeout=15_000)
    assert page.locator("#location-state").is_hidden()
    assert page.locator(".my-position").count() == 1


def test_route_by_traffic_destination_pin_kept_and_selected_in_front(page: Page) -> None:
    sid = open_first_station(page)
    levels = page.get_attribute("#map", "data-route-levels") or ""
    assert levels and set(levels.split(",")) <= {"free", "slow", "congested", "closed"}
    colours = page.eval_on_selector_all(
        "path.route-segment", "els => els.map(e => [e.getAttribute('class'), e.getAttribute('stroke')])"
    )
    want = {"free": "#34c759", "slow": "#f29a1f", "congested": "#e03b35", "closed": "#7a1f1f"}
    for cls, stroke in colours:
        level = next(lv for lv in want if f"route-{lv}" in cls)
        assert stroke == want[level]
    front = page.evaluate(
        """(sid) => {
          const z = [...document.querySelectorAll('.leaflet-marker-pane .station-marker-wrap')]
            .map(w => [w.querySelector('[data-station-id]')?.dataset.stationId, Number(w.style.zIndex)]);
          const mine = z.find(x => x[0] === String(sid));
          return mine && z.every(x => x[1] <= mine[1]);
        }""",
        sid,
    )
    assert front, "the selected marker is not drawn in front"
    assert page.locator("[data-test='destination-pin']").is_visible()
    # the driver zooms out once the route is framed (the map ignores a zoom while it is still moving)
    page.wait_for_selector("#map[data-route-framed]", state="attached", timeout=10_000)
    page.evaluate("() => { window.fuelApp.map.setZoom(11); }")  # down to the heatmap: the pin stays
    page.wait_for_selector("#map[data-mode='cells']", state="attached", timeout=20_000)
    assert page.locator("[data-test='destination-pin']").is_visible()
    shot(page, "07_destination_at_low_zoom.png")


def test_sorts_show_minutes_and_cost_price_age_and_navigate(page: Page) -> None:
    page.wait_for_selector(".station-item")
    page.select_option("#sort-select", "eta")
    page.wait_for_selector("[data-test='eta-minutes']", timeout=15_000)
    assert re.fullmatch(r"\d+ 分钟", page.locator("[data-test='eta-minutes']").first.inner_text())
    page.select_option("#sort-select", "total_cost")
    page.wait_for_selector("[data-test='total-cost']", timeout=15_000)
    assert re.fullmatch(r"总花费 \d+\.\d\d 元", page.locator("[data-test='total-cost']").first.inner_text())
    assert page.locator("[data-test='price-age']").count() >= 1
    shot(page, "08_total_cost.png")
    open_first_station(page)
    page.wait_for_selector("[data-test='nav-amap']", timeout=15_000)
    assert "coordinate=gaode" in (page.get_attribute("[data-test='nav-amap']", "href") or "")
    assert (page.get_attribute("[data-test='nav-geo']", "href") or "").startswith("geo:")
    assert page.locator("[data-test='nav-tencent']").count() == 1
    assert page.locator("[data-test='nav-apple']").count() == 1
    ids = page.eval_on_selector_all("[data-test='promotion']", "els => els.map(e => e.dataset.promotionId)")
    assert len(ids) == len(set(ids))  # each promotion once, with its grades
    shot(page, "09_station_navigate.png")


def test_callouts_do_not_overlap(page: Page) -> None:
    wait_markers(page)
    page.wait_for_timeout(300)
    assert no_overlap(page) == []
    page.click(".leaflet-control-zoom-in")
    page.wait_for_timeout(800)
    assert no_overlap(page) == []


def test_each_layer_fetched_once_per_view(page: Page) -> None:
    wait_markers(page)
    page.wait_for_timeout(500)
    seen: list[str] = []
    page.on("request", lambda r: seen.append(urlparse(r.url).path) if "/v1/map/" in r.url else None)
    page.select_option("#grade-select", "95")
    page.wait_for_selector("#map[data-grade='95'] .station-marker")
    page.wait_for_timeout(500)
    assert seen.count("/v1/map/roads") == 0 and seen.count("/v1/map/stations") == 1, seen
    seen.clear()
    page.evaluate("() => { window.fuelApp.map.panBy([120, 0], {animate: false}); }")
    page.wait_for_timeout(1200)
    assert seen.count("/v1/map/roads") == 1 and seen.count("/v1/map/stations") == 1, seen


@pytest.mark.viewport(DESKTOP)
def test_desktop_has_the_list_beside_the_map(page: Page) -> None:
    wait_markers(page)
    page.wait_for_selector(".station-item")
    lst = page.locator("#list-sheet").bounding_box()
    mp = page.locator("#map").bounding_box()
    assert lst is not None and mp is not None
    assert lst["x"] + lst["width"] <= mp["x"] + 1  # beside, not below
    assert mp["width"] > DESKTOP["width"] / 2 and lst["height"] > DESKTOP["height"] / 2
    shot(page, "10_desktop.png")
    open_first_station(page)
    shot(page, "11_desktop_station.png")


def test_every_brand_has_an_icon_and_a_name(page: Page) -> None:
    page.wait_for_selector(".station-item")
    page.wait_for_timeout(500)
    broken = page.eval_on_selector_all(
        ".station-item img, .station-marker img",
        "els => els.filter(e => e.complete && e.naturalWidth === 0).map(e => e.getAttribute('src'))",
    )
    assert broken == []
    names = page.eval_on_selector_all(".station-item .name", "els => els.map(e => e.textContent)")
    assert names and not [n for n in names if n.startswith("brand_")], names


@pytest.mark.viewport(DESKTOP)
def test_the_list_tells_the_stations_apart(page: Page, server: str) -> None:
    """Most demo stations have no mapped name: the list shows brand or "加油站" with their road, never
    two identical rows, in both languages, as the service names them."""
    page.wait_for_selector(".station-item")
    names = page.eval_on_selector_all(".station-item .name", "els => els.map(e => e.textContent)")
    assert len(names) >= 10 and len(set(names)) == len(names), names
    assert "加油站" not in names and sum(n.startswith("加油站 · ") for n in names) >= 5, names
    ids = page.eval_on_selector_all(".station-item", "els => els.map(e => Number(e.dataset.stationId))")
    api = {
        x["id"]: x["display_name"]
        for x in httpx.get(
            f"{server}/v1/stations", params={"bbox": "1.40,42.42,1.80,42.66"}, timeout=10
        ).json()["results"]
    }
    assert names == [api[i] for i in ids]
    wait_markers(page)
    page.wait_for_selector("#map[data-roads]")
    shot(page, "12_distinct_names.png")
    page.click("#lang-toggle")
    page.wait_for_function("() => document.querySelector('#app-title').textContent === 'Lijiang Fuel'")
    en = page.eval_on_selector_all(".station-item .name", "els => els.map(e => e.textContent)")
    assert len(set(en)) == len(en) and sum(n.startswith("Fuel station · ") for n in en) >= 5, en
    shot(page, "13_distinct_names_en.png")
    page.click("#lang-toggle")


def test_the_eta_list_from_a_place_no_road_is_near_says_why(context: BrowserContext, server: str) -> None:
    context.grant_permissions(["geolocation"], origin=server)
    context.set_geolocation({"latitude": 42.45, "longitude": 1.35})  # in the region's box, 1 km+ from roads
    pg = context.new_page()
    pg.set_viewport_size(PHONE)  # type: ignore[arg-type]
    try:
        pg.goto(server + "/")
        pg.wait_for_selector("body[data-ready='1']", timeout=30_000)
        pg.wait_for_selector(".station-item")
        pg.select_option("#sort-select", "eta")
        note = pg.wait_for_selector("[data-test='list-note'][data-code='NoRoadNear']", timeout=15_000)
        assert note is not None and "直线距离" in note.inner_text()
        assert pg.input_value("#sort-select") == "eta" and pg.locator(".station-item").count() >= 1
        shot(pg, "14_eta_no_road_note.png")
    finally:
        pg.close()
        context.set_geolocation(HERE)
