"""The map screen's API (WeChat mini-program and the web page at `/`): stations as an H3 price heatmap
or as priced markers, our own roads as the base map (coloured by traffic), and the region's outline.

GET /v1/map/stations?bbox=west,south,east,north&zoom=&grade=&sort=&coord=&at=&format=
  What `zoom` returns (ZOOM_TABLE; counts and prices are aggregated in SQL, GROUP BY the H3 column):

  | zoom   | returns                 | H3 resolution | how                                         |
  |--------|-------------------------|---------------|---------------------------------------------|
  | 0-6    | price heatmap cells     | 4             | r7 groups from SQL, h3.cell_to_parent -> r4 |
  | 7-8    | price heatmap cells     | 5             | r7 groups from SQL, parents at r5           |
  | 9      | price heatmap cells     | 6             | r7 groups from SQL, parents at r6           |
  | 10-11  | price heatmap cells     | 7             | GROUP BY h3_r7                              |
  | 12     | price heatmap cells     | 8             | GROUP BY h3_r8                              |
  | 13-22  | one marker per station  | -             | GiST bbox query, at most MAX_MARKERS        |

  A cell carries `count` (stations of the cell inside the bbox, any status), `priced` (stations where
  a driver can fill up at `at`, geo._hours.can_fill_up: status and opening hours, with a list price
  for `grade`), `min_price` (the lowest effective price of `grade`, i.e. after the
  best applicable promotion for a default order of 40 L, non-member: geo._pricing) and
  `min_list_price`, its boundary polygon, and `fill` (green = cheapest .. red = dearest cell in view).
  The effective price is exact: SQL groups the stations of a cell by (brand, list price, own station
  promotion) and the price is computed once per group (promotions of a brand apply to the whole group).
  Cells straddling the bbox edge count only the stations inside the bbox.
  Below r7 a station counts in the parent of its r7 cell (H3 children do not tile their parent
  exactly, so near a coarse cell's edge this can differ from latlng_to_cell at that resolution).
  Markers carry the list and effective price of `grade` and the price label.

  bbox: in `coord` (wgs84 default, gcj02, bd09); its corners are converted to WGS-84. Rules (422,
  param `bbox`): four numbers, west < east, south < north, in range, and at zoom >= 13 an area of at
  most MAX_AREA_KM2_AT_13 km² (2,500) divided by 4 per zoom level above 13 (625 at 14, 156 at 15 ...):
  the view a large screen shows at that zoom, with room to spare. zoom: an integer 0-22 (param `zoom`).
  grade: default 92. sort (order of the features): id (default for markers), price (list),
  effective_price (default for cells). at: ISO-8601, naive = region time, default now.
  format: geojson (default, a FeatureCollection) or wechat: the WeChat `map` component's shapes,
  `{markers: [{id, kind, latitude, longitude, title, iconPath, width, height, anchor, zIndex,
  callout: {...}}], polygons: [...]}` in GCJ-02 (coord is forced to gcj02), to the `map` component's
  documentation: `iconPath` an absolute URL of a PNG rendered at build time from api/static/icons
  (web/icons.mjs: `{FUEL_PUBLIC_BASE_URL}/static/dist/icons/{brand}@3x.png`, the request's origin when
  the setting is unset), a non-empty `title`, colours as #RRGGBBAA. Marker ids never collide: stations
  keep their id (below CELL_ID_BASE), heatmap cells take CELL_ID_BASE + 1..n (WeChat ids have at most
  9 digits), and `kind` says which ("station" | "cell").

GET /v1/map/roads?bbox=&zoom=&coord=
  Road edges meeting the bbox (GiST), classes by zoom (ROAD_CLASSES_BY_ZOOM), simplified with
  ST_SimplifyPreserveTopology at half a screen pixel of that zoom, major classes first, at most
  MAX_ROAD_FEATURES (then `truncated: true`). Each carries edge_id, highway, name, name_en and the
  traffic `factor` (speed / free-flow speed now, profile + live) and `level`: free (>= 0.8), slow
  (0.5-0.8), congested (< 0.5), closed (factor 0), unknown (no router loaded). Same bbox rule.

GET /v1/map/region?coord=
  The served region's outline (its boundary polygon, else its bbox rectangle, simplified to ~50 m),
  name, display name, bbox, centre (the median station position of the region: where the drivers
  are; else the polygon's representative point, else the bbox centre), default zoom (13, where
  markers show) and the OSM attribution.

The SQL of this module lives in store/_map.py (cell_groups, roads_in_bbox, median_station_position).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import h3
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BeforeValidator
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from api._models import (
    READ,
    Coord,
    Grade,
    MapRoadsPublic,
    MapStationsAnswer,
    RegionPublic,
    documented,
    error_responses,
)
from api._params import (
    AtQ,
    BBoxQ,
    CoordQ,
    bbox_to_wgs84,
    grade_code,
    lowercase,
    parse_at,
    parse_bbox,
    point_out,
)
from api._routing import level
from api._state import AppState, get_state
from config import Region
from geo._brands import station_display_name
from geo._errors import InvalidInput
from geo._hours import can_fill_up
from geo._pricing import DEFAULT_LITRES, Promotion, effective_price
from store._map import cell_groups, median_station_position, roads_in_bbox
from store._prices import current_prices
from store._promotions import promotions_for_stations
from store._stations import stations_in_bbox

router = APIRouter(prefix="/v1/map", tags=["map"])

MIN_ZOOM, MAX_ZOOM = 0, 22
MARKER_MIN_ZOOM = 13
DEFAULT_GRADE: Grade = "92"
DEFAULT_ZOOM = MARKER_MIN_ZOOM
MAX_AREA_KM2_AT_13 = 2_500.0
MAX_MARKERS = 500
MAX_CELLS = 5_000
MAX_ROAD_FEATURES = 6_000
SIMPLIFY_PX = 0.5
BOUNDARY_TOLERANCE_DEG = 0.0005
ATTRIBUTION = "© OpenStreetMap contributors (ODbL)"
ATTRIBUTION_URL = "https://www.openstreetmap.org/copyright"
EARTH_RADIUS_KM = 6_371.0088

# zoom -> H3 resolution of the heatmap, and the column the SQL groups by (parents computed in Python).
ZOOM_TABLE: tuple[tuple[int, int, int], ...] = (
    # (max zoom, resolution, SQL column resolution)
    (6, 4, 7),
    (8, 5, 7),
    (9, 6, 7),
    (11, 7, 7),
    (12, 8, 8),
)

# Road classes drawn from a zoom on (links follow their road).
_CLASS_MIN_ZOOM: dict[str, int] = {
    "motorway": 0,
    "trunk": 0,
    "primary": 0,
    "motorway_link": 9,
    "trunk_link": 9,
    "primary_link": 9,
    "secondary": 9,
    "secondary_link": 11,
    "tertiary": 11,
    "tertiary_link": 11,
    "unclassified": 13,
    "residential": 13,
    "road": 13,
    "living_street": 14,
    "service": 14,
}
CLASS_ORDER: tuple[str, ...] = tuple(_CLASS_MIN_ZOOM)

ZoomQ = Annotated[
    int,
    Query(
        ge=MIN_ZOOM,
        le=MAX_ZOOM,
        description="map zoom: below 13 H3 price heatmap cells, from 13 station markers; it also bounds "
        "the bbox (2,500 km² at 13, a quarter per level above)",
        examples=[13],
    ),
]

# Heatmap colours: cheapest -> dearest.
_STOPS = ((0.0, (0x2E, 0x7D, 0x32)), (0.5, (0xF9, 0xA8, 0x25)), (1.0, (0xC6, 0x28, 0x28)))
NO_PRICE_COLOUR = "#9e9e9e"
# WeChat marker ids: stations keep theirs, heatmap cells count on from here (at most 9 digits).
CELL_ID_BASE = 900_000_000
BRAND_TITLES = {
    "sinopec": "中国石化",
    "petrochina": "中国石油",
    "cnooc": "中国海油",
    "shell": "壳牌",
    "other": "加油站",
}


# ---- parsing ------------------------------------------------------------------------------------


def max_area_km2(zoom: int) -> float | None:
    """The largest bbox accepted at `zoom` (None: no limit below MARKER_MIN_ZOOM)."""
    if zoom < MARKER_MIN_ZOOM:
        return None
    return MAX_AREA_KM2_AT_13 / 4 ** (zoom - MARKER_MIN_ZOOM)


def bbox_area_km2(west: float, south: float, east: float, north: float) -> float:
    """Area of a lon/lat box on the sphere."""
    return (
        EARTH_RADIUS_KM**2
        * math.radians(east - west)
        * abs(math.sin(math.radians(north)) - math.sin(math.radians(south)))
    )


def parse_map_bbox(value: str | None, coord: str, zoom: int) -> tuple[float, float, float, float]:
    """The bbox (in `coord`) as a WGS-84 box around its converted corners, checked for the zoom."""
    west, south, east, north = bbox_to_wgs84(*parse_bbox(value), coord)
    limit = max_area_km2(zoom)
    if limit is not None:
        area = bbox_area_km2(west, south, east, north)
        if area > limit:
            raise InvalidInput(
                "bbox",
                f"covers {area:,.0f} km², more than the {limit:,.1f} km² allowed at zoom {zoom} "
                f"(2,500 km² at zoom 13, a quarter per level above): zoom out or ask for a smaller box",
            )
    return west, south, east, north


def resolution_for_zoom(zoom: int) -> tuple[int, int] | None:
    """(heatmap resolution, SQL column resolution) for `zoom`, None for markers (ZOOM_TABLE)."""
    for max_zoom, res, col in ZOOM_TABLE:
        if zoom <= max_zoom:
            return res, col
    return None


def road_classes_for_zoom(zoom: int) -> list[str]:
    return [c for c in CLASS_ORDER if _CLASS_MIN_ZOOM[c] <= zoom]


def simplify_tolerance_deg(zoom: int) -> float:
    """SIMPLIFY_PX screen pixels at `zoom`, in degrees (256-px tiles, Web Mercator at the equator)."""
    return SIMPLIFY_PX * 360.0 / (256.0 * 2**zoom)


def traffic_level(factor: float | None) -> str:
    """The traffic level of a congestion factor (api._routing.level), "unknown" without one."""
    if factor is None or not math.isfinite(factor):
        return "unknown"
    return level(factor)


def price_colour(price: float | None, lo: float | None, hi: float | None) -> str:
    """Heatmap fill: green (lo) -> amber -> red (hi); grey without a price."""
    if price is None or lo is None or hi is None:
        return NO_PRICE_COLOUR
    t = 0.0 if hi <= lo else min(1.0, max(0.0, (price - lo) / (hi - lo)))
    for (t0, c0), (t1, c1) in itertools.pairwise(_STOPS):
        if t <= t1:
            u = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
            rgb = tuple(round(a + (b - a) * u) for a, b in zip(c0, c1, strict=True))
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return "#{:02x}{:02x}{:02x}".format(*_STOPS[-1][1])


_ICON_BRANDS = ("sinopec", "petrochina", "cnooc", "shell")  # brands with an icon of their own


def icon_path(brand: str | None) -> str:
    return f"/static/icons/{brand if brand in _ICON_BRANDS else 'other'}.svg"


def png_icon_url(base: str, name: str, scale: int = 3) -> str:
    """The absolute URL of a marker icon's PNG (web/icons.mjs renders @2x and @3x)."""
    return f"{base}/static/dist/icons/{name}@{scale}x.png"


def public_base(request: Request, configured: str | None) -> str:
    """The origin clients load our assets from: FUEL_PUBLIC_BASE_URL, else this request's origin."""
    return configured or str(request.base_url).rstrip("/")


def rgba(colour: str, alpha: int = 0xFF) -> str:
    """#RRGGBB (or #RRGGBBAA) as the 8-digit #RRGGBBAA the WeChat map wants."""
    hexes = colour.lstrip("#")
    if len(hexes) == 6:
        hexes += f"{alpha:02X}"
    if len(hexes) != 8:
        raise ValueError(f"not a #RRGGBB colour: {colour!r}")
    return "#" + hexes.upper()


def grade_label(grade: str) -> str:
    return f"{grade}#"


def _f(x: Decimal | float | None) -> float | None:
    return None if x is None else round(float(x), 2)


# ---- pricing helpers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Priced:
    list_price: Decimal | None
    effective: Decimal | None
    promotion: Promotion | None


def _price(
    list_price: Decimal | None, grade: str, promos: Sequence[Promotion], at: datetime, region: Region
) -> _Priced:
    if list_price is None:
        return _Priced(None, None, None)
    eff, applied = effective_price(
        list_price, grade, promos, at, tz=region.tz, holidays=region.holidays, litres=DEFAULT_LITRES
    )
    return _Priced(Decimal(list_price), eff, applied[0].promotion if applied else None)


# ---- shaping --------------------------------------------------------------------------------------


def _ring(latlngs: Iterable[tuple[float, float]], coord: str) -> list[list[float]]:
    ring = []
    for lat, lon in latlngs:
        a, b = point_out(lat, lon, coord)
        ring.append([b, a])
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def _geometry_to(geom: dict[str, Any], coord: str) -> dict[str, Any]:
    """A GeoJSON geometry ([lon, lat] WGS-84) with every vertex converted to `coord`."""
    if coord == "wgs84":
        return geom

    def conv(c: Any) -> Any:
        if c and isinstance(c[0], (int, float)):
            lat, lon = point_out(float(c[1]), float(c[0]), coord)
            return [lon, lat]
        return [conv(x) for x in c]

    return {**geom, "coordinates": conv(geom["coordinates"])}


def _envelope(state: AppState, coord: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"region": state.region.name, "coord": coord, **extra}
    body["attribution"] = ATTRIBUTION
    if state.served.is_demo:
        body["served_note"] = state.served.public_note
    return body


def _cells(
    state: AppState,
    bbox: tuple[float, float, float, float],
    zoom: int,
    grade: str,
    at: datetime,
    coord: str,
    sort: str,
) -> tuple[list[dict[str, Any]], int, bool, int]:
    res_col = resolution_for_zoom(zoom)
    assert res_col is not None
    res, col = res_col
    region = state.region
    with state.db.read() as conn:
        groups = cell_groups(conn, *bbox, column_res=col, grade=grade, at=at)
        reps = [(int(g["rep"]), str(g["brand"])) for g in groups]
        promos = promotions_for_stations(conn, reps, at=at) if reps else {}
    # one effective-price computation per distinct (promotions, list price)
    memo: dict[tuple[tuple[int | None, ...], Decimal], _Priced] = {}
    local = at.astimezone(region.tz)
    cells: dict[str, dict[str, Any]] = {}
    for g in groups:
        cell = h3.int_to_str(int(g["cell"]))
        if res < col:
            cell = h3.cell_to_parent(cell, res)
        c = cells.setdefault(cell, {"count": 0, "priced": 0, "min": None, "min_list": None})
        n = int(g["n"])
        c["count"] += n
        if (
            g["price_cny"] is None
            or can_fill_up(g["status"], g["opening_hours"], local, region.holidays).ok is False
        ):
            continue
        plist = Decimal(g["price_cny"])
        ps = promos.get(int(g["rep"]), [])
        key = (tuple(p.id for p in ps), plist)
        priced = memo.get(key)
        if priced is None:
            priced = memo[key] = _price(plist, grade, ps, at, region)
        c["priced"] += n
        if c["min"] is None or (priced.effective is not None and priced.effective < c["min"]):
            c["min"] = priced.effective
        if c["min_list"] is None or plist < c["min_list"]:
            c["min_list"] = plist
    total = sum(c["count"] for c in cells.values())
    items = list(cells.items())
    if sort == "price":
        items.sort(key=lambda kv: (kv[1]["min_list"] is None, kv[1]["min_list"] or 0, kv[0]))
    elif sort == "id":
        items.sort(key=lambda kv: kv[0])
    else:
        items.sort(key=lambda kv: (kv[1]["min"] is None, kv[1]["min"] or 0, kv[0]))
    truncated = len(items) > MAX_CELLS
    items = items[:MAX_CELLS]
    prices = [float(c["min"]) for _, c in items if c["min"] is not None]
    lo, hi = (min(prices), max(prices)) if prices else (None, None)
    features = []
    for cell, c in items:
        clat, clon = h3.cell_to_latlng(cell)
        plat, plon = point_out(clat, clon, coord)
        min_price = _f(c["min"])
        features.append(
            {
                "type": "Feature",
                "id": cell,
                "geometry": {"type": "Polygon", "coordinates": [_ring(h3.cell_to_boundary(cell), coord)]},
                "properties": {
                    "cell": cell,
                    "res": res,
                    "count": c["count"],
                    "priced": c["priced"],
                    "min_price": min_price,
                    "min_list_price": _f(c["min_list"]),
                    "centre": [plon, plat],
                    "fill": price_colour(min_price, lo, hi),
                },
            }
        )
    return features, total, truncated, res


def _markers(
    state: AppState,
    bbox: tuple[float, float, float, float],
    grade: str,
    at: datetime,
    coord: str,
    sort: str,
) -> tuple[list[dict[str, Any]], int, bool]:
    region = state.region
    with state.db.read() as conn:
        rows = stations_in_bbox(conn, *bbox, limit=MAX_MARKERS + 1)
        truncated = len(rows) > MAX_MARKERS
        rows = rows[:MAX_MARKERS]
        ids = [int(r["id"]) for r in rows]
        prices = current_prices(conn, ids, at, grades=[grade]) if ids else {}
        promos = (
            promotions_for_stations(conn, [(int(r["id"]), r["brand"]) for r in rows], at=at) if ids else {}
        )
    features: list[dict[str, Any]] = []
    for r in rows:
        sid = int(r["id"])
        fill = can_fill_up(r["status"], r["opening_hours"], at.astimezone(region.tz), region.holidays)
        cp = prices.get(sid, {}).get(grade) if fill.ok is not False else None
        priced = _price(cp.price_cny if cp else None, grade, promos.get(sid, []), at, region)
        lat, lon = point_out(float(r["lat"]), float(r["lon"]), coord)
        eff = _f(priced.effective)
        promo = priced.promotion
        names = station_display_name(r)
        features.append(
            {
                "type": "Feature",
                "id": sid,
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": {
                    "id": sid,
                    "name": r["name"],
                    "name_en": r["name_en"],
                    "display_name": names[0],
                    "display_name_en": names[1],
                    "address": r["address"],
                    "brand": r["brand"],
                    "status": r["status"],
                    "can_fill_up": fill.ok,
                    "closed_reason": fill.reason,
                    "grades": list(r["grades"] or ()),
                    "icon": icon_path(r["brand"]),
                    "grade": grade,
                    "list_price": _f(priced.list_price),
                    "effective_price": eff,
                    "label": f"{eff:.2f}" if eff is not None else None,
                    "promotion": None
                    if promo is None
                    else {"id": promo.id, "title": promo.title, "title_en": promo.title_en},
                },
            }
        )
    if sort in ("price", "effective_price"):
        key = "list_price" if sort == "price" else "effective_price"
        features.sort(key=lambda f: (f["properties"][key] is None, f["properties"][key] or 0, f["id"]))
    return features, len(features), truncated


def station_title(p: dict[str, Any]) -> str:
    """A marker's title: the station's display name (name, brand or operator, street), else its
    name, else its brand's name (never empty)."""
    for key in ("display_name", "name", "name_en"):
        v = (p.get(key) or "").strip()
        if v:
            return str(v)
    return BRAND_TITLES.get(str(p.get("brand") or "other"), BRAND_TITLES["other"])


def _wechat(mode: str, features: list[dict[str, Any]], grade: str, base: str) -> dict[str, Any]:
    """The WeChat `map` component's markers (and polygons for the heatmap)."""
    markers: list[dict[str, Any]] = []
    polygons: list[dict[str, Any]] = []
    g = grade_label(grade)
    for i, f in enumerate(features, start=1):
        p = f["properties"]
        if mode == "markers":
            lon, lat = f["geometry"]["coordinates"]
            price = p["effective_price"]
            brand = p["brand"] if p["brand"] in _ICON_BRANDS else "other"
            markers.append(
                {
                    "id": int(p["id"]),
                    "kind": "station",
                    "latitude": lat,
                    "longitude": lon,
                    "title": station_title(p),
                    "iconPath": png_icon_url(base, brand),
                    "width": 28,
                    "height": 28,
                    "anchor": {"x": 0.5, "y": 1.0},
                    "zIndex": 2,
                    "callout": {  # the name, then the price (WeChat callouts break lines at \n)
                        "content": station_title(p)
                        + "\n"
                        + (f"{g} {price:.2f}" if price is not None else f"{g} --"),
                        "display": "ALWAYS",
                        "color": "#1A1A1AFF",
                        "fontSize": 12,
                        "borderRadius": 6,
                        "borderWidth": 1,
                        "borderColor": "#D0D0D0FF",
                        "bgColor": "#FFFFFFFF",
                        "padding": 4,
                        "textAlign": "center",
                    },
                }
            )
        else:
            lon, lat = p["centre"]
            ring = f["geometry"]["coordinates"][0]
            price = p["min_price"]
            polygons.append(
                {
                    "points": [{"latitude": b, "longitude": a} for a, b in ring[:-1]],
                    "strokeWidth": 1,
                    "strokeColor": "#FFFFFFCC",
                    "fillColor": rgba(p["fill"], 0x99),
                    "zIndex": 1,
                }
            )
            summary = f"{p['count']}站 {g} {price:.2f}起" if price is not None else f"{p['count']}站"
            markers.append(
                {
                    "id": CELL_ID_BASE + i,
                    "kind": "cell",
                    "latitude": lat,
                    "longitude": lon,
                    "title": summary,
                    "iconPath": png_icon_url(base, "cell"),
                    "width": 1,
                    "height": 1,
                    "zIndex": 1,
                    "cell": p["cell"],
                    "callout": {
                        "content": summary,
                        "display": "ALWAYS",
                        "color": "#FFFFFFFF",
                        "fontSize": 12,
                        "borderRadius": 10,
                        "bgColor": rgba(p["fill"]),
                        "padding": 4,
                        "textAlign": "center",
                    },
                }
            )
    return {"markers": markers, "polygons": polygons}


# ---- endpoints ------------------------------------------------------------------------------------


@router.get(
    "/stations",
    response_model=MapStationsAnswer,
    responses=error_responses(*READ),
)
def map_stations(
    request: Request,
    bbox: BBoxQ,
    zoom: ZoomQ,
    grade: Annotated[
        Grade,
        BeforeValidator(grade_code),
        Query(description="fuel grade whose price is shown: 89, 92, 95, 98 or 0 (diesel)"),
    ] = DEFAULT_GRADE,
    sort: Annotated[
        Literal["id", "price", "effective_price"] | None,
        BeforeValidator(lowercase),
        Query(description="order of the features: id (default for markers), price, effective_price (cells)"),
    ] = None,
    coord: Annotated[
        Coord | None,
        BeforeValidator(lowercase),
        Query(description="wgs84 (default), gcj02 or bd09 for the bbox and the output; format=wechat: gcj02"),
    ] = None,
    at: AtQ = None,
    format: Annotated[
        Literal["geojson", "wechat"],
        BeforeValidator(lowercase),
        Query(description="geojson (a FeatureCollection) or wechat (the WeChat map component's shapes)"),
    ] = "geojson",
    state: AppState = Depends(get_state),
) -> Response:
    """Stations for a map view: H3 price heatmap cells at low zoom, priced markers at high zoom."""
    fmt = format
    coord_s: str = coord or ("gcj02" if fmt == "wechat" else "wgs84")
    if fmt == "wechat" and coord_s != "gcj02":
        raise InvalidInput("coord", f"format=wechat uses gcj02 (the WeChat map's system), got {coord!r}")
    z = zoom
    grade_s: str = grade
    mode = "cells" if resolution_for_zoom(z) is not None else "markers"
    sort_s: str = sort or ("effective_price" if mode == "cells" else "id")
    at_dt = parse_at(at, state.region.tz)
    box_ = parse_map_bbox(bbox, coord_s, z)
    res: int | None = None
    if mode == "cells":
        features, count, truncated, res = _cells(state, box_, z, grade_s, at_dt, coord_s, sort_s)
        prices = [f["properties"]["min_price"] for f in features if f["properties"]["min_price"] is not None]
    else:
        features, count, truncated = _markers(state, box_, grade_s, at_dt, coord_s, sort_s)
        prices = [
            f["properties"]["effective_price"]
            for f in features
            if f["properties"]["effective_price"] is not None
        ]
    meta: dict[str, Any] = {
        "mode": mode,
        "zoom": z,
        "h3_res": res,
        "grade": grade_s,
        "sort": sort_s,
        "at": at_dt.isoformat(),
        "count": count,
        "truncated": truncated,
        "price_range": {"min": min(prices), "max": max(prices)} if prices else None,
        "colours": {
            "cheap": price_colour(0, 0, 1),
            "mid": price_colour(0.5, 0, 1),
            "dear": price_colour(1, 0, 1),
        },
    }
    if fmt == "wechat":
        base = public_base(request, state.settings.public_base_url)
        return documented(_envelope(state, coord_s, **meta, **_wechat(mode, features, grade_s, base)))
    return documented(
        {"type": "FeatureCollection", **_envelope(state, coord_s, **meta), "features": features}
    )


@router.get("/roads", response_model=MapRoadsPublic, responses=error_responses(*READ))
def map_roads(
    bbox: BBoxQ,
    zoom: ZoomQ,
    coord: CoordQ = "wgs84",
    state: AppState = Depends(get_state),
) -> Response:
    """Road edges in a box as GeoJSON lines, simplified for the zoom, with the current traffic level."""
    coord_s = coord
    z = zoom
    box_ = parse_map_bbox(bbox, coord_s, z)
    classes = road_classes_for_zoom(z)
    with state.db.read() as conn:
        rows = roads_in_bbox(
            conn,
            state.region.name,
            *box_,
            classes=classes,
            tolerance_deg=simplify_tolerance_deg(z),
            limit=MAX_ROAD_FEATURES + 1,
        )
    truncated = len(rows) > MAX_ROAD_FEATURES
    rows = rows[:MAX_ROAD_FEATURES]
    now = datetime.now(state.region.tz)
    factors: list[float | None] = [None] * len(rows)
    live = getattr(state.router, "live", None)
    if live is not None and rows:
        n_edges = _router_edges(state.router)
        known = [i for i, r in enumerate(rows) if n_edges is None or int(r["id"]) < n_edges]
        if known:
            got = live.congestion([int(rows[i]["id"]) for i in known], now)
            for i, f in zip(known, got, strict=True):
                factors[i] = float(f)
    features = []
    for r, f in zip(rows, factors, strict=True):
        features.append(
            {
                "type": "Feature",
                "id": int(r["id"]),
                "geometry": _geometry_to(r["geometry"], coord_s),
                "properties": {
                    "edge_id": int(r["id"]),
                    "highway": r["highway"],
                    "name": r["name"],
                    "name_en": r["name_en"],
                    "factor": None if f is None else round(f, 3),
                    "level": traffic_level(f),
                },
            }
        )
    return documented(
        {
            "type": "FeatureCollection",
            **_envelope(
                state,
                coord_s,
                zoom=z,
                classes=classes,
                simplify_deg=simplify_tolerance_deg(z),
                traffic_at=now.isoformat(),
                traffic=live is not None,
                count=len(features),
                truncated=truncated,
            ),
            "features": features,
        }
    )


def _router_edges(router_obj: Any) -> int | None:
    g = getattr(router_obj, "g", None)
    n = getattr(g, "n_road_edges", None)
    return int(n) if n is not None else None


def _outline(region: Region) -> tuple[BaseGeometry, str]:
    if region.boundary is not None:
        return region.boundary.simplify(BOUNDARY_TOLERANCE_DEG, preserve_topology=True), "boundary"
    return box(*region.bbox), "bbox"


@router.get(
    "/region",
    response_model=RegionPublic,
    response_model_exclude_unset=True,
    responses=error_responses(*READ),
)
def map_region(coord: CoordQ = "wgs84", state: AppState = Depends(get_state)) -> dict[str, Any]:
    """The served region: outline, names, bbox, centre, default zoom, attribution."""
    coord_s = coord
    region = state.region
    cache_key = f"map_region:{coord_s}"
    outline = state.extras.get(cache_key)
    if outline is None:
        geom, source = _outline(region)
        outline = {
            "type": "Feature",
            "geometry": _geometry_to(mapping(geom), coord_s),
            "properties": {"name": region.name, "source": source},
        }
        state.extras[cache_key] = outline
    with state.db.read() as conn:
        centre = median_station_position(conn, region.bbox)
    centre_source = "stations"
    if centre is None:
        if region.boundary is not None:
            p = region.boundary.representative_point()
            centre, centre_source = (p.y, p.x), "boundary"
        else:
            w, s, e, n = region.bbox
            centre, centre_source = ((s + n) / 2, (w + e) / 2), "bbox"
    clat, clon = point_out(*centre, coord_s)
    w, s, e, n = region.bbox
    sw, ne = point_out(s, w, coord_s), point_out(n, e, coord_s)
    body = {
        "name": region.name,
        "display_name": region.display_name,
        "coord": coord_s,
        "outline": outline,
        "bbox": [sw[1], sw[0], ne[1], ne[0]],
        "centre": {"lat": clat, "lon": clon, "source": centre_source},
        "default_zoom": DEFAULT_ZOOM,
        "marker_min_zoom": MARKER_MIN_ZOOM,
        "min_zoom": MIN_ZOOM,
        "max_zoom": 19,
        "grades": list(region.default_grades),
        "currency": region.currency,
        "timezone": region.timezone,
        "attribution": ATTRIBUTION,
        "attribution_url": ATTRIBUTION_URL,
        "attribution_detail": region.attribution,
        "is_demo": state.served.is_demo,
    }
    if state.served.is_demo:
        body["served_note"] = state.served.public_note
    return body
