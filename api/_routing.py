"""Routes, matrices and live traffic over HTTP: /v1/route, /route/v1/driving (OSRM), /v1/matrix, /v1/traffic."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api._params import parse_at, parse_bbox, parse_coord, parse_float, parse_int, parse_lat, parse_lon
from api._security import charge
from api._state import AppState, get_state
from geo import InvalidInput, NoRoadNear, RouteNotFound, from_wgs84, to_wgs84
from geo._polyline import cut, encode
from geo._router import Router, RouteResult
from geo._steps import Step
from store._road_edges import road_edges_in_bbox
from store._traffic import save_batch

router = APIRouter(tags=["routing"])
ATTRIBUTION = "Routes © OpenStreetMap contributors, ODbL 1.0"


# ---- shared helpers ----------------------------------------------------------------------------
def need_router(state: AppState) -> Router:
    if state.router is None:
        raise RouteNotFound(f"the road graph of {state.region.name} is not loaded")
    r: Router = state.router
    return r


def parse_point(value: str | None, param: str, coord: str) -> tuple[float, float]:
    """'lat,lon' in `coord`, returned as WGS-84 (lat, lon)."""
    if value is None or value.strip() == "":
        raise InvalidInput(param, "is required as lat,lon")
    parts = value.split(",")
    if len(parts) != 2:
        raise InvalidInput(param, f"must be lat,lon, got {value!r}")
    lat = parse_lat(parts[0], param)
    lon = parse_lon(parts[1], param)
    return to_wgs84(lat, lon, coord)


def level(factor: float) -> str:
    if factor <= 0:
        return "closed"
    if factor >= 0.8:
        return "free"
    return "slow" if factor >= 0.5 else "congested"


def out_point(lat: float, lon: float, coord: str) -> tuple[float, float]:
    return from_wgs84(lat, lon, coord)


def _lonlat(points: list[tuple[float, float]], coord: str) -> list[list[float]]:
    out = []
    for lat, lon in points:
        la, lo = out_point(lat, lon, coord)
        out.append([round(lo, 7), round(la, 7)])
    return out


def edge_pieces(r: Router, res: RouteResult) -> list[dict[str, Any]]:
    """Per road edge of a route: the part driven, its length, time and traffic level."""
    g = r.g
    n = len(res.edges)
    entries = [*res.edge_entry_s, res.duration_s]
    pieces = []
    for i, e in enumerate(res.edges):
        f0 = res.first_fraction if i == 0 else 0.0
        f1 = res.last_fraction if i == n - 1 else 1.0
        if n == 1:
            f0, f1 = min(res.first_fraction, res.last_fraction), max(res.first_fraction, res.last_fraction)
        poly = g.edge_polyline(int(e))
        la, lo = cut(poly[:, 0], poly[:, 1], f0, f1)
        length = float(g.edge_length_m[e]) * max(0.0, f1 - f0)
        dur = max(0.0, entries[i + 1] - entries[i])
        free = length / float(g.edge_speed_mps[e])
        factor = min(1.0, free / dur) if dur > 0 else 1.0
        pieces.append(
            {
                "edge_id": int(e),
                "distance_m": round(length, 1),
                "duration_s": round(dur, 1),
                "congestion": round(factor, 3),
                "level": level(factor),
                "points": list(zip(la.tolist(), lo.tolist(), strict=True)),
            }
        )
    return pieces


def _step(s: Step, coord: str) -> dict[str, Any]:
    la, lo = out_point(s.location[0], s.location[1], coord)
    return {
        "maneuver": s.maneuver,
        "name": s.name,
        "name_en": s.name_en,
        "text_zh": s.text_zh,
        "text_en": s.text_en,
        "distance_m": round(s.distance_m, 1),
        "duration_s": round(s.duration_s, 1),
        "location": [round(lo, 7), round(la, 7)],
    }


def route_json(r: Router, res: RouteResult, coord: str) -> dict[str, Any]:
    pieces = edge_pieces(r, res)
    coords = _lonlat(res.polyline, coord)
    return {
        "distance_m": round(res.distance_m, 1),
        "duration_s": round(res.duration_s, 1),
        "duration_free_flow_s": round(res.duration_free_flow_s, 1),
        "delay_s": round(res.delay_s, 1),
        "depart_at": res.depart_at.isoformat(),
        "arrive_at": res.arrive_at.isoformat(),
        "geometry": {"type": "LineString", "coordinates": coords},
        "polyline6": encode([(c[1], c[0]) for c in coords], precision=6),
        "segments": [
            {k: v for k, v in p.items() if k != "points"} | {"coordinates": _lonlat(p["points"], coord)}
            for p in pieces
        ],
        "steps": [_step(s, coord) for s in res.steps],
        "snap": {
            "from": {
                "location": list(reversed(out_point(*res.from_snapped, coord))),
                "distance_m": round(res.snap_from_m, 1),
            },
            "to": {
                "location": list(reversed(out_point(*res.to_snapped, coord))),
                "distance_m": round(res.snap_to_m, 1),
            },
        },
    }


_LEVEL_COLOURS = {"free": "#2E7D32", "slow": "#F9A825", "congested": "#C62828", "closed": "#424242"}


def wechat_polylines(r: Router, res: RouteResult) -> list[dict[str, Any]]:
    """The WeChat map component's `polyline` attribute (GCJ-02), one run per traffic level."""
    runs: list[dict[str, Any]] = []
    for p in edge_pieces(r, res):
        pts = [
            {"latitude": round(a, 6), "longitude": round(b, 6)}
            for a, b in (from_wgs84(q[0], q[1], "gcj02") for q in p["points"])
        ]
        if runs and runs[-1]["level"] == p["level"]:
            runs[-1]["points"].extend(pts[1:])
        else:
            runs.append({"level": p["level"], "points": pts})
    return [
        {"points": run["points"], "color": _LEVEL_COLOURS[run["level"]], "width": 6, "arrowLine": True}
        for run in runs
    ]


# ---- /v1/route --------------------------------------------------------------------------------
@router.get("/v1/route")
def route(
    from_: str | None = Query(None, alias="from", description="origin lat,lon"),
    to: str | None = Query(None, description="destination lat,lon"),
    depart_at: str | None = Query(None, description="ISO-8601; naive = region time; default now"),
    alternatives: str | None = Query(None, description="0, 1 or 2"),
    coord: str | None = Query(None, description="wgs84 (default) or gcj02, for input and output"),
    format: str | None = Query(None, description="json (default) or wechat"),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """The traffic-aware fastest route, with steps in Chinese and English and up to 2 alternatives."""
    fmt = (format or "json").strip().lower()
    if fmt not in ("json", "wechat"):
        raise InvalidInput("format", f"must be json or wechat, got {format!r}")
    c = parse_coord(coord)
    if fmt == "wechat":
        c = "gcj02" if coord is None else c
    a = parse_point(from_, "from", c)
    b = parse_point(to, "to", c)
    at = parse_at(depart_at, state.region.tz, "depart_at")
    n_alt = parse_int(alternatives, "alternatives", default=0, lo=0, hi=2)
    r = need_router(state)
    res = r.route(a, b, depart_at=at, alternatives=n_alt)
    if fmt == "wechat":
        return {
            "distance_m": round(res.distance_m, 1),
            "duration_s": round(res.duration_s, 1),
            "polyline": wechat_polylines(r, res),
            "alternatives": [
                {"duration_s": round(x.duration_s, 1), "polyline": wechat_polylines(r, x)}
                for x in res.alternatives
            ],
            "coord": "gcj02",
            "attribution": ATTRIBUTION,
        }
    body = route_json(r, res, c)
    body["alternatives"] = [
        route_json(r, x, c) | {"overlap": round(x.overlap, 3), "stretch": round(x.stretch, 3)}
        for x in res.alternatives
    ]
    body["coord"] = c
    body["attribution"] = ATTRIBUTION
    return body


# ---- OSRM-compatible ---------------------------------------------------------------------------
def _osrm_error(code: str, message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


_OSRM_TYPES = {"depart": "depart", "arrive": "arrive", "uturn": "continue"}
_OSRM_MODIFIERS = {
    "straight": "straight",
    "slight_left": "slight left",
    "slight_right": "slight right",
    "left": "left",
    "right": "right",
    "sharp_left": "sharp left",
    "sharp_right": "sharp right",
    "uturn": "uturn",
}


def _osrm_bool(value: str | None, name: str, default: bool) -> bool:
    if value is None:
        return default
    if value in ("true", "false"):
        return value == "true"
    raise InvalidInput(name, f"must be true or false, got {value!r}")


def _osrm_geometry(points: list[tuple[float, float]], kind: str) -> Any:
    if kind == "geojson":
        return {"type": "LineString", "coordinates": [[round(lo, 6), round(la, 6)] for la, lo in points]}
    return encode(points, precision=6 if kind == "polyline6" else 5)


def _osrm_route(res: RouteResult, *, steps: bool, geometries: str, overview: str) -> dict[str, Any]:
    step_list = []
    if steps:
        for s in res.steps:
            kind = _OSRM_TYPES.get(s.maneuver, "turn")
            maneuver: dict[str, Any] = {
                "type": kind,
                "location": [round(s.location[1], 6), round(s.location[0], 6)],
                "bearing_before": round(s.bearing_before),
                "bearing_after": round(s.bearing_after),
            }
            if s.maneuver in _OSRM_MODIFIERS:
                maneuver["modifier"] = _OSRM_MODIFIERS[s.maneuver]
            step_list.append(
                {
                    "distance": round(s.distance_m, 1),
                    "duration": round(s.duration_s, 1),
                    "weight": round(s.duration_s, 1),
                    "name": s.name,
                    "mode": "driving",
                    "driving_side": "right",
                    "maneuver": maneuver,
                    "geometry": _osrm_geometry([s.location], geometries),
                    "intersections": [],
                }
            )
    out: dict[str, Any] = {
        "distance": round(res.distance_m, 1),
        "duration": round(res.duration_s, 1),
        "weight": round(res.duration_s, 1),
        "weight_name": "duration",
        "legs": [
            {
                "distance": round(res.distance_m, 1),
                "duration": round(res.duration_s, 1),
                "weight": round(res.duration_s, 1),
                "summary": ", ".join(dict.fromkeys(s.name for s in res.steps if s.name))[:80],
                "steps": step_list,
            }
        ],
    }
    if overview != "false":
        pts = res.polyline
        if overview == "simplified" and len(pts) > 2:
            from shapely.geometry import LineString

            line = LineString([(lo, la) for la, lo in pts]).simplify(0.00005)
            pts = [(y, x) for x, y in line.coords]
        out["geometry"] = _osrm_geometry(pts, geometries)
    return out


@router.get("/route/v1/driving/{coordinates}", tags=["osrm"])
def osrm_route(
    coordinates: str,
    alternatives: str | None = None,
    steps: str | None = None,
    geometries: str | None = None,
    overview: str | None = None,
    state: AppState = Depends(get_state),
) -> JSONResponse:
    """OSRM's route service (v5): `lon,lat;lon,lat`, WGS-84. Errors follow OSRM: 400 with a code."""
    try:
        pts = []
        for i, part in enumerate(coordinates.split(";")):
            xy = part.split(",")
            if len(xy) != 2:
                raise InvalidInput("coordinates", f"coordinate {i} must be lon,lat")
            lon = parse_lon(xy[0], "coordinates")
            lat = parse_lat(xy[1], "coordinates")
            pts.append((lat, lon))
        if len(pts) != 2:
            raise InvalidInput("coordinates", "exactly two coordinates (origin;destination) are supported")
        geo_kind = geometries or "polyline"
        if geo_kind not in ("polyline", "polyline6", "geojson"):
            raise InvalidInput("geometries", "must be polyline, polyline6 or geojson")
        ov = overview or "simplified"
        if ov not in ("simplified", "full", "false"):
            raise InvalidInput("overview", "must be simplified, full or false")
        want_steps = _osrm_bool(steps, "steps", False)
        if alternatives in (None, "false"):
            n_alt = 0
        elif alternatives == "true":
            n_alt = 2
        else:
            n_alt = parse_int(alternatives, "alternatives", default=0, lo=0, hi=2)
        r = need_router(state)
        res = r.route(pts[0], pts[1], depart_at=datetime.now(state.region.tz), alternatives=n_alt)
    except NoRoadNear as exc:
        return _osrm_error("NoSegment", exc.message)
    except InvalidInput as exc:
        return _osrm_error("InvalidQuery", f"{exc.param}: {exc.message}")
    except RouteNotFound as exc:
        return _osrm_error("NoRoute", str(exc))
    routes = [
        _osrm_route(x, steps=want_steps, geometries=geo_kind, overview=ov) for x in [res, *res.alternatives]
    ]
    waypoints = [
        {
            "name": "",
            "location": [round(res.from_snapped[1], 6), round(res.from_snapped[0], 6)],
            "distance": round(res.snap_from_m, 1),
        },
        {
            "name": "",
            "location": [round(res.to_snapped[1], 6), round(res.to_snapped[0], 6)],
            "distance": round(res.snap_to_m, 1),
        },
    ]
    return JSONResponse({"code": "Ok", "routes": routes, "waypoints": waypoints})


# ---- /v1/matrix --------------------------------------------------------------------------------
class MatrixRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: list[tuple[float, float]] = Field(..., min_length=1, description="[[lat, lon], ...]")
    targets: list[tuple[float, float]] | None = Field(None, description="default: the sources")
    depart_at: str | None = None
    coord: str | None = None


@router.post("/v1/matrix")
def matrix(body: MatrixRequest, state: AppState = Depends(get_state)) -> dict[str, Any]:
    """Travel times (s) and distances (m), sources x targets, at a departure time; null = unreachable."""
    charge(len(body.sources) * len(body.targets or body.sources), "matrix_cells")
    c = parse_coord(body.coord)
    targets = body.targets if body.targets is not None else body.sources
    cells = len(body.sources) * len(targets)
    cap = state.settings.max_matrix_cells
    if cells > cap:
        raise InvalidInput(
            "sources", f"{len(body.sources)} x {len(targets)} = {cells} cells, above the cap of {cap}"
        )
    src = [_checked(p, f"sources[{i}]", c) for i, p in enumerate(body.sources)]
    dst = [_checked(p, f"targets[{i}]", c) for i, p in enumerate(targets)]
    at = parse_at(body.depart_at, state.region.tz, "depart_at")
    res = need_router(state).matrix(src, dst, depart_at=at)
    return {
        "durations_s": _nullable(res.durations_s),
        "distances_m": _nullable(res.distances_m),
        "depart_at": at.isoformat(),
    }


def _checked(p: tuple[float, float], param: str, coord: str) -> tuple[float, float]:
    lat = parse_float(p[0], param, lo=-90.0, hi=90.0)
    lon = parse_float(p[1], param, lo=-180.0, hi=180.0)
    assert lat is not None and lon is not None
    return to_wgs84(lat, lon, coord)


def _nullable(a: np.ndarray) -> list[list[float | None]]:
    return [[round(float(v), 1) if np.isfinite(v) else None for v in row] for row in a]


# ---- /v1/traffic -------------------------------------------------------------------------------
class TrafficUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edge_id: int | None = Field(None, ge=0, description="our road edge id")
    way_id: int | None = Field(None, ge=1, description="OSM way id (with u_osm, v_osm)")
    u_osm: int | None = Field(None, ge=1)
    v_osm: int | None = Field(None, ge=1)
    speed_kmh: float | None = Field(None, description="observed speed")
    factor: float | None = Field(None, description="observed / free-flow speed, (0, 1.5]")
    closed: bool = False
    observed_at: datetime
    expires_at: datetime | None = None


class TrafficBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    updates: list[TrafficUpdate] = Field(..., min_length=1, max_length=10_000)


@router.post("/v1/traffic")
def post_traffic(body: TrafficBatch, state: AppState = Depends(get_state)) -> dict[str, Any]:
    """Apply live observations, all or nothing: one bad item rejects the whole batch (422 lists each)."""
    r = need_router(state)
    tz = state.region.tz
    items = []
    for u in body.updates:
        d = u.model_dump(exclude_none=True)
        for k in ("observed_at", "expires_at"):
            if k in d and d[k].tzinfo is None:
                d[k] = d[k].replace(tzinfo=tz)
        items.append(d)
    result = r.live.apply(items)
    sync = state.extras.get("sync")
    batch_id = None
    if sync is not None:
        resolved = _resolved(r, items)
        expires = max(datetime.fromtimestamp(x["expires_at"], tz) for x in resolved)
        with state.db.transaction() as conn:
            batch_id = save_batch(
                conn,
                region=state.region.name,
                graph_hash=sync.graph_hash,
                origin=sync.origin,
                items=resolved,
                expires_at=expires,
            )
        sync.mark_own(batch_id)
    return {"applied": result.applied, "stale": result.stale, "version": result.version, "batch_id": batch_id}


def _resolved(r: Router, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items addressed by edge id with epoch times, as every worker applies them."""
    out = []
    decay = r.live.decay_s
    for d in items:
        e = d.get("edge_id")
        if e is None:
            e = r.live.resolve_osm(int(d["way_id"]), int(d["u_osm"]), int(d["v_osm"]))
        obs = d["observed_at"].timestamp()
        exp = d["expires_at"].timestamp() if "expires_at" in d else obs + decay
        item: dict[str, Any] = {"edge_id": int(e), "observed_at": obs, "expires_at": exp}
        if d.get("closed"):
            item["closed"] = True
        elif "factor" in d:
            item["factor"] = d["factor"]
        else:
            item["speed_kmh"] = d["speed_kmh"]
        out.append(item)
    return out


@router.get("/v1/traffic")
def get_traffic(
    bbox: str | None = Query(None, description="west,south,east,north (WGS-84)"),
    at: str | None = None,
    limit: str | None = None,
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Current congestion per road edge in the bbox: factor (1 = free flow, 0 = closed) and level."""
    west, south, east, north = parse_bbox(bbox)
    if (east - west) * (north - south) > 1.0:
        raise InvalidInput("bbox", "must cover at most 1 square degree")
    n = parse_int(limit, "limit", default=5000, lo=1, hi=20000)
    when = parse_at(at, state.region.tz, "at")
    r = need_router(state)
    with state.db.connection() as conn:
        rows = road_edges_in_bbox(conn, state.region.name, west, south, east, north, n)
    ids = np.asarray([int(x["id"]) for x in rows if int(x["id"]) < r.g.n_road_edges], dtype=np.int64)
    factors = r.live.congestion(ids, when) if ids.size else np.zeros(0)
    return {
        "at": when.isoformat(),
        "edges": [
            {"edge_id": int(e), "factor": round(float(f), 3), "level": level(float(f))}
            for e, f in zip(ids.tolist(), factors.tolist(), strict=True)
        ],
    }
