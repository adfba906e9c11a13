"""Routes, matrices and live traffic over HTTP: /v1/route, /v1/matrix, /v1/traffic (OSRM: api/_osrm.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from anyio.to_thread import run_sync
from fastapi import APIRouter, Depends, Query, Request, Response
from numba import njit
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from api._auth import authenticate, require_role
from api._models import (
    READ,
    Coord,
    DateTime,
    MatrixPublic,
    RouteAnswer,
    TrafficPublic,
    documented,
    error_responses,
)
from api._params import (
    BBOX_PATTERN,
    SETTING_MAX_ITEMS,
    AtQ,
    FromQ,
    ToQ,
    VehicleBody,
    VehicleQuery,
    in_region,
    lowercase,
    parse_at,
    parse_bbox,
    parse_float,
    parse_lat,
    parse_lon,
)
from api._query import query_docs, query_values, reads_query
from api._security import charge
from api._state import AppState, get_state
from api._sync import TrafficSync
from geo import Budget, InvalidInput, RouteNotFound, from_wgs84, to_wgs84
from geo._coords import from_wgs84_arrays
from geo._polyline import encode, route_coords
from geo._router import Router, RouteResult
from geo._steps import Step
from store._audit import record
from store._auth import Principal
from store._road_edges import road_edges_in_bbox
from store._traffic import save_batch, save_clear

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


def _lonlat(points: list[tuple[float, float]] | np.ndarray, coord: str) -> list[list[float]]:
    if not len(points):
        return []
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    la, lo = from_wgs84_arrays(pts[:, 0], pts[:, 1], coord)
    return _pairs(lo, la, 7)


def _round_like_python(x: np.ndarray, nd: int) -> np.ndarray:
    """`round(v, nd)` of every value, bit for bit, over the array.

    Scaled, rounded and divided back (compiled, one pass): the division of the rounded integer is exact
    to the nearest double, as in Python, so the two agree wherever the scaled value is not within a
    rounding error of a half; those few values are rounded by Python itself."""
    out, near_half = _rint_scaled(np.asarray(x, np.float64).ravel(), 10.0**nd)
    for i in near_half.tolist():
        out[i] = round(float(x.flat[i]), nd)
    return out.reshape(np.shape(x))


@njit(cache=True, nogil=True)
def _rint_scaled(x: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """rint(v * scale) / scale per value, and where v * scale is within a rounding error of a half (the
    product's error is at most half a unit in its last place; a margin of four units)."""
    out = np.empty(x.shape[0])
    near = np.empty(x.shape[0], np.int64)
    k = 0
    for i in range(x.shape[0]):
        s = x[i] * scale
        out[i] = np.rint(s) / scale
        a = abs(s)
        if abs(s - np.floor(s) - 0.5) <= max(1e-6, 4 * (np.nextafter(a, np.inf) - a)):
            near[k] = i
            k += 1
    return out, near[:k]


def _rounded_pairs(a: np.ndarray, b: np.ndarray, nd: int) -> np.ndarray:
    """An (n, 2) array of [a, b] rounded like Python's round (the response's exact digits)."""
    both = np.column_stack((np.asarray(a, np.float64), np.asarray(b, np.float64)))
    return _round_like_python(both.ravel(), nd).reshape(-1, 2)


def _pairs(a: np.ndarray, b: np.ndarray, nd: int) -> list[list[float]]:
    """[[a, b], ...] rounded like Python's round, built by numpy."""
    return [] if len(a) == 0 else _rounded_pairs(a, b, nd).tolist()


class _Shape:
    """A route's driven geometry, built once (compiled): the points of every edge piece in one array
    (edge i spans points bounds[i]..bounds[i + 1], its first point shared with the previous piece),
    and, when asked for (`stats`: segments, WeChat polylines), each piece's length, time and traffic level."""

    def __init__(self, r: Router, res: RouteResult) -> None:
        g = r.g
        self._res = res
        n = len(res.edges)
        if n == 0:
            self.lat = self.lon = np.zeros(0)
            self.bounds = np.zeros(1, np.int64)
            self._g, self._f0, self._f1 = g, 0.0, 0.0
            return
        f0, f1 = res.first_fraction, res.last_fraction
        if n == 1:
            f0, f1 = min(f0, f1), max(f0, f1)
        edges = np.asarray(res.edges, np.int64)
        if res.coords is not None and (f0, f1) == (res.first_fraction, res.last_fraction):
            self.lat, self.lon, starts = res.coords  # the router's, for the same edges and fractions
        else:
            self.lat, self.lon, _, starts = route_coords(g, edges, f0, f1)
        self.bounds = np.append(starts, len(self.lat) - 1)
        self._g, self._f0, self._f1 = g, f0, f1

    @cached_property
    def stats(self) -> list[dict[str, Any]]:
        """Per edge piece: edge id, length, time, congestion and traffic level (built on first use: the
        default JSON route does not send them)."""
        res, g, n = self._res, self._g, len(self._res.edges)
        edges = np.asarray(res.edges, np.int64)
        frac = np.ones(n)
        frac[0] -= self._f0
        frac[-1] = self._f1 - (self._f0 if n == 1 else 0.0)
        length = (g.edge_length_m[edges] * np.maximum(0.0, frac)).tolist()
        speed = g.edge_speed_mps[edges].tolist()
        entries = [*res.edge_entry_s, res.duration_s]
        out = []
        for i, e in enumerate(res.edges):
            dur = max(0.0, entries[i + 1] - entries[i])
            factor = min(1.0, length[i] / speed[i] / dur) if dur > 0 else 1.0
            out.append(
                {
                    "edge_id": int(e),
                    "distance_m": round(length[i], 1),
                    "duration_s": round(dur, 1),
                    "congestion": round(factor, 3),
                    "level": level(factor),
                }
            )
        return out

    def piece(self, i: int) -> slice:
        return slice(int(self.bounds[i]), int(self.bounds[i + 1]) + 1)


def edge_pieces(r: Router, res: RouteResult) -> list[dict[str, Any]]:
    """Per road edge of a route: the part driven, its length, time and traffic level."""
    sh = _Shape(r, res)
    return [
        st | {"points": list(zip(sh.lat[sh.piece(i)].tolist(), sh.lon[sh.piece(i)].tolist(), strict=True))}
        for i, st in enumerate(sh.stats)
    ]


def _steps(steps: list[Step], coord: str) -> list[dict[str, Any]]:
    """The steps as JSON: locations converted and every number rounded over arrays, once per route."""
    if not steps:
        return []
    loc = np.array([s.location for s in steps], np.float64)
    la, lo = from_wgs84_arrays(loc[:, 0], loc[:, 1], coord)
    where = _rounded_pairs(lo, la, 7).tolist()
    lengths = _round_like_python(
        np.array([(s.distance_m, s.duration_s) for s in steps], np.float64), 1
    ).tolist()
    out = []
    for s, xy, (dist, dur) in zip(steps, where, lengths, strict=True):
        step: dict[str, Any] = {
            "maneuver": s.maneuver,
            "type": s.type,
            "modifier": s.modifier or None,
            "name": s.name,
            "name_en": s.name_en,
            "ref": s.ref or None,
            "text_zh": s.text_zh,
            "text_en": s.text_en,
            "distance_m": dist,
            "duration_s": dur,
            "location": xy,
            "bearing_before": s.bearing_before,
            "bearing_after": s.bearing_after,
        }
        if s.exit is not None:
            step["exit"] = s.exit
        out.append(step)
    return out


GEOMETRIES = ("geojson", "polyline6", "segments")
DEFAULT_GEOMETRIES = ("geojson",)
_GEOMETRY = "(geojson|polyline6|segments)"
GEOMETRIES_PATTERN = rf"^ *(all|{_GEOMETRY}( *, *{_GEOMETRY})*) *$"


def parse_geometries(value: str | None) -> tuple[str, ...]:
    """`geometries=`: a comma-separated subset of GEOMETRIES, or `all`; default DEFAULT_GEOMETRIES."""
    if value is None or not value.strip():
        return DEFAULT_GEOMETRIES
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    if names == ["all"]:
        return GEOMETRIES
    bad = [n for n in names if n not in GEOMETRIES]
    if bad or not names:
        raise InvalidInput(
            "geometries", f"must be `all` or some of {', '.join(GEOMETRIES)} (comma-separated), got {value!r}"
        )
    return tuple(g for g in GEOMETRIES if g in names)


def route_json(
    r: Router, res: RouteResult, coord: str, geometries: tuple[str, ...] = GEOMETRIES
) -> dict[str, Any]:
    """A route as JSON with the geometries asked for: `geometry` (GeoJSON LineString), `polyline6`,
    `segments` (per road edge: length, time, traffic level and its coordinates)."""
    sh = _Shape(r, res)
    la, lo = from_wgs84_arrays(sh.lat, sh.lon, coord)
    points = _rounded_pairs(lo, la, 7)  # every piece's points, converted and rounded once
    line = res.line
    if len(line) == len(points) and len(points):
        # the polyline: the same points, its ends the snapped ones; an array, written by orjson as is
        coords = points.copy() if "segments" in geometries else points
        for k in (0, -1):  # two points: converted one by one (the same digits as over arrays)
            la_k, lo_k = out_point(float(line[k, 0]), float(line[k, 1]), coord)
            coords[k] = (round(lo_k, 7), round(la_k, 7))
    else:
        coords = np.asarray(_lonlat(line, coord), np.float64).reshape(-1, 2)
    out = _times(res)
    if "geojson" in geometries:
        out["geometry"] = {"type": "LineString", "coordinates": coords}
    if "polyline6" in geometries:
        out["polyline6"] = encode(coords[:, ::-1].tolist(), precision=6)
    if "segments" in geometries:
        pieces: list[list[float]] = points.tolist()
        out["segments"] = [st | {"coordinates": pieces[sh.piece(i)]} for i, st in enumerate(sh.stats)]
    return out | {
        "steps": _steps(res.steps, coord),
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


def warmup(r: Router) -> None:
    """Shape one route (its kernels compiled or loaded from numba's cache now, not on a first request)."""
    res = r.warmup()
    if res is not None:
        route_json(r, res, "wgs84")


def _times(res: RouteResult) -> dict[str, Any]:
    return {
        "distance_m": round(res.distance_m, 1),
        "duration_s": round(res.duration_s, 1),
        "duration_free_flow_s": round(res.duration_free_flow_s, 1),
        "delay_s": round(res.delay_s, 1),
        "depart_at": res.depart_at.isoformat(),
        "arrive_at": res.arrive_at.isoformat(),
    }


# WeChat `map` colours are #RRGGBBAA.
_LEVEL_COLOURS = {"free": "#2E7D32FF", "slow": "#F9A825FF", "congested": "#C62828FF", "closed": "#424242FF"}
ALTERNATIVE_COLOUR = "#9E9E9EFF"
ROUTE_BORDER_COLOUR = "#FFFFFFFF"


def wechat_polylines(r: Router, res: RouteResult, alternative: bool = False) -> list[dict[str, Any]]:
    """The WeChat map component's `polyline` attribute (GCJ-02): one line, its `colorList` giving
    each stretch between two points the colour of its traffic level (`color`: the first level, for
    clients without colorList). An alternative is one grey line without colorList."""
    sh = _Shape(r, res)
    la, lo = from_wgs84_arrays(sh.lat, sh.lon, "gcj02")
    conv = [
        {"latitude": round(a, 6), "longitude": round(b, 6)}
        for a, b in zip(la.tolist(), lo.tolist(), strict=True)
    ]
    points: list[dict[str, float]] = []
    colours: list[str] = []
    for i, st in enumerate(sh.stats):
        pts = conv[sh.piece(i)]
        new = pts if not points else pts[1:]
        points.extend(dict(p) for p in new)
        colours.extend([_LEVEL_COLOURS[st["level"]]] * (len(pts) - 1))
    if not points:
        return []
    line: dict[str, Any] = {
        "points": points,
        "color": ALTERNATIVE_COLOUR if alternative else colours[0] if colours else _LEVEL_COLOURS["free"],
        "width": 6 if not alternative else 5,
        "arrowLine": not alternative,
        "borderColor": ROUTE_BORDER_COLOUR,
        "borderWidth": 1,
        "level": "abovelabels" if not alternative else "aboveroads",
    }
    if not alternative:
        line["colorList"] = colours
    return [line]


def wechat_route(r: Router, res: RouteResult, alternative: bool = False) -> dict[str, Any]:
    """A route in the WeChat shape: the times, the polyline, the steps (GCJ-02)."""
    return _times(res) | {
        "polyline": wechat_polylines(r, res, alternative),
        "steps": _steps(res.steps, "gcj02"),
    }


# ---- /v1/route --------------------------------------------------------------------------------
class RouteQuery(VehicleQuery):
    """The query of GET /v1/route (validated in one pass: api/_query.py)."""

    from_: FromQ
    to: ToQ
    depart_at: Annotated[
        str | None,
        Query(
            description="ISO-8601 departure; without an offset it is the region's local time; default now",
            json_schema_extra={"format": "date-time"},
            examples=["2026-11-28T08:30:00+08:00"],
        ),
    ] = None
    alternatives: Annotated[int, Query(ge=0, le=2, description="how many alternative routes")] = 0
    coord: Annotated[
        Coord | None,
        BeforeValidator(lowercase),
        Query(description="wgs84 (default; gcj02 with format=wechat), gcj02 or bd09, for input and output"),
    ] = None
    format: Annotated[
        Literal["json", "wechat"],
        BeforeValidator(lowercase),
        Query(description="json, or wechat: the WeChat map component's `polyline` in GCJ-02"),
    ] = "json"
    geometries: Annotated[
        str | None,
        Query(
            description="json format: the route geometries sent, comma-separated: geojson (default), "
            "polyline6, segments (per road edge, with traffic level and coordinates), or all",
            json_schema_extra={"pattern": GEOMETRIES_PATTERN},
            examples=["geojson,polyline6"],
        ),
    ] = None


@router.get(
    "/v1/route",
    response_model=RouteAnswer,
    responses=error_responses(404, 422, 429),
    openapi_extra=query_docs(RouteQuery),
)
@reads_query(RouteQuery)
async def route(request: Request) -> Response:
    """The traffic-aware fastest route, with steps in Chinese and English and up to 2 alternatives."""
    # On a graph of up to FUEL_ROUTE_ON_LOOP_MAX_NODES nodes, computed on the event loop: the work is
    # CPU under the GIL (a route and its body take about 0.4 ms in the demo region) and reads nothing
    # else, so a thread adds no parallelism (the workers are the parallelism, one per core) but a
    # hand-over per request and a contended GIL: 2.3 ms of CPU per route at 16 in flight in threads
    # against 1.1 ms on the loop (measured when a route took 1.0 ms in process). On bigger graphs a
    # route takes tens of ms: in the thread pool, where the search releases the GIL and the loop goes on
    # serving.
    state: AppState = request.app.state.fuel  # as get_state, without one more dependency to solve
    q = query_values(RouteQuery, request)
    from_, to, depart_at, alternatives, coord, format, geometries = (
        q.from_, q.to, q.depart_at, q.alternatives, q.coord, q.format, q.geometries
    )  # fmt: skip
    veh = q.as_vehicle()
    fmt = format
    c: str = coord or ("gcj02" if fmt == "wechat" else "wgs84")
    geoms = parse_geometries(geometries)
    a = in_region(state.region, parse_point(from_, "from", c), "from")
    b = in_region(state.region, parse_point(to, "to", c), "to")
    at = parse_at(depart_at, state.region.tz, "depart_at")
    n_alt = alternatives
    r = need_router(state)

    def answer() -> Response:
        return _route_answer(r, r.route(a, b, depart_at=at, alternatives=n_alt, vehicle=veh), fmt, c, geoms)

    if r.g.n_nodes <= state.settings.route_on_loop_max_nodes:
        return answer()
    return await run_sync(answer)


def _route_answer(r: Router, res: RouteResult, fmt: str, c: str, geoms: tuple[str, ...]) -> Response:
    """The body of /v1/route for a route computed: `fmt` json or wechat, coordinates in `c`."""
    if fmt == "wechat":
        return documented(
            wechat_route(r, res)
            | {
                "alternatives": [
                    wechat_route(r, x, alternative=True)
                    | {"overlap": round(x.overlap, 3), "stretch": round(x.stretch, 3)}
                    for x in res.alternatives
                ],
                "coord": "gcj02",
                "attribution": ATTRIBUTION,
            }
        )
    body = route_json(r, res, c, geoms)
    body["alternatives"] = [
        route_json(r, x, c, geoms) | {"overlap": round(x.overlap, 3), "stretch": round(x.stretch, 3)}
        for x in res.alternatives
    ]
    body["coord"] = c
    body["attribution"] = ATTRIBUTION
    return documented(body)


# ---- /v1/matrix --------------------------------------------------------------------------------
LatLonPair = Annotated[
    tuple[float, float],
    WithJsonSchema(
        {
            "type": "array",
            "prefixItems": [
                {"type": "number", "minimum": -90, "maximum": 90, "description": "lat"},
                {"type": "number", "minimum": -180, "maximum": 180, "description": "lon"},
            ],
            "minItems": 2,
            "maxItems": 2,
            "description": "[lat, lon] in `coord`",
        }
    ),
]


class MatrixRequest(VehicleBody):
    model_config = ConfigDict(extra="forbid")
    sources: list[LatLonPair] = Field(
        ...,
        min_length=1,
        description="[[lat, lon], ...]; at most FUEL_MAX_MATRIX_SOURCES",
        json_schema_extra={SETTING_MAX_ITEMS: "max_matrix_sources"},
    )
    targets: list[LatLonPair] | None = Field(
        None,
        description="default: the sources; at least one, at most FUEL_MAX_MATRIX_TARGETS",
        json_schema_extra={SETTING_MAX_ITEMS: "max_matrix_targets"},
    )
    depart_at: DateTime | None = Field(None, description="ISO-8601; naive = region local time; default now")
    coord: Annotated[Coord | None, BeforeValidator(lowercase)] = Field(None, description="default wgs84")


@router.post(
    "/v1/matrix",
    response_model=MatrixPublic,
    responses=error_responses(400, 413, 422, 429, 503),
)
def matrix(body: MatrixRequest, state: AppState = Depends(get_state)) -> Response:
    """Travel times (s) and distances (m), sources x targets, at a departure time; null = unreachable.

    Bounded: sources, targets and cells are capped (settings; 422 naming the list, the limit and the
    count), every coordinate is checked before any search, and the searches (one per source) stop at
    settings.matrix_budget_s with a 503."""
    s = state.settings
    c = body.coord or "wgs84"
    targets = body.targets if body.targets is not None else body.sources
    budget = Budget(s.matrix_budget_s, what=f"the {len(body.sources)} x {len(targets)} matrix")
    if not targets:
        raise InvalidInput("targets", "needs at least one point (leave it out to use the sources)")
    _cap("sources", len(body.sources), s.max_matrix_sources)
    _cap("targets", len(targets), s.max_matrix_targets)
    cells = len(body.sources) * len(targets)
    cap = s.max_matrix_cells
    if cells > cap:
        raise InvalidInput(
            "sources", f"{len(body.sources)} x {len(targets)} = {cells} cells, above the cap of {cap}"
        )
    charge(cells, "matrix_cells")  # after the caps: a refused matrix costs one request, not its cells
    src = [
        in_region(state.region, _checked(p, f"sources[{i}]", c), f"sources[{i}]")
        for i, p in enumerate(body.sources)
    ]
    dst = [
        in_region(state.region, _checked(p, f"targets[{i}]", c), f"targets[{i}]")
        for i, p in enumerate(targets)
    ]
    at = parse_at(body.depart_at, state.region.tz, "depart_at")
    res = need_router(state).matrix(src, dst, depart_at=at, budget=budget, vehicle=body.as_vehicle())
    return documented(
        {
            "durations_s": _nullable(res.durations_s),
            "distances_m": _nullable(res.distances_m),
            "depart_at": at.isoformat(),
        }
    )


def _cap(param: str, count: int, limit: int) -> None:
    if count > limit:
        raise InvalidInput(param, f"has {count:,} points, above the limit of {limit:,}")


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
    closed: bool = Field(False, description="the road is closed (from observed_at, never in the future)")
    observed_at: datetime = Field(description="naive = region time; at most a few seconds ahead of now")
    expires_at: datetime | None = Field(None, description="default observed_at + the decay time")


class TrafficBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    updates: list[TrafficUpdate] = Field(..., min_length=1, max_length=10_000)


class TrafficAccepted(BaseModel):
    batch_id: int = Field(description="the stored batch; every worker applies it")
    applied: int = Field(description="observations that are now the latest for their edge")
    stale: int = Field(description="observations behind the one held for their edge (skipped)")
    version: int = Field(description="live traffic version of the worker that answered")


class TrafficCleared(BaseModel):
    clear_id: int = Field(description="batches stored before this id no longer count, in every worker")


def need_sync(state: AppState) -> TrafficSync:
    sync: TrafficSync | None = state.extras.get("sync")
    if sync is None:
        raise RouteNotFound(f"the road graph of {state.region.name} is not loaded")
    return sync


@router.post(
    "/v1/traffic",
    response_model=TrafficAccepted,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429, 503),
)
def post_traffic(
    body: TrafficBatch,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> TrafficAccepted:
    """Live observations from a traffic feed (`traffic` or `operator` key), all or nothing: every item is
    checked first (a 422 lists each bad one); the batch is stored and audited, then every worker applies it."""
    require_role(principal, "post live traffic", "traffic", "operator")
    r = need_router(state)
    sync = need_sync(state)
    items = r.live.prepare(u.model_dump(exclude_none=True) for u in body.updates)
    expires = datetime.fromtimestamp(max(x["expires_at"] for x in items), UTC)
    with state.db.transaction() as conn:
        batch_id = save_batch(
            conn,
            region=state.region.name,
            graph_hash=sync.graph_hash,
            origin=sync.origin,
            actor=principal.name,
            items=items,
            expires_at=expires,
        )
        record(
            conn,
            actor=principal.name,
            action="create",
            entity="live_traffic",
            entity_id=batch_id,
            old=None,
            new={
                "region": state.region.name,
                "items": len(items),
                "closures": sum(1 for x in items if x.get("closed")),
                "edges": sorted({int(x["edge_id"]) for x in items})[:50],
                "expires_at": expires,
            },
        )
    result = sync.apply_batch(batch_id, items)
    return TrafficAccepted(
        batch_id=batch_id, applied=result.applied, stale=result.stale, version=result.version
    )


@router.delete(
    "/v1/traffic",
    response_model=TrafficCleared,
    responses=error_responses(401, 403, 404, 429, 503),
)
def clear_traffic(
    principal: Principal = Depends(authenticate), state: AppState = Depends(get_state)
) -> TrafficCleared:
    """Drop all live traffic of the region (`operator` key), in every worker and for good: a worker that
    starts later replays only batches stored after the clear. Routes go back to the historical profile."""
    require_role(principal, "clear live traffic", "operator")
    sync = need_sync(state)
    with state.db.transaction() as conn:
        clear_id = save_clear(conn, region=state.region.name, origin=sync.origin, actor=principal.name)
        record(
            conn,
            actor=principal.name,
            action="delete",
            entity="live_traffic",
            entity_id=clear_id,
            old={"region": state.region.name, "cleared_through": clear_id},
            new=None,
        )
    with state.db.connection() as conn:
        sync.rebuild(conn)
    return TrafficCleared(clear_id=clear_id)


@router.get(
    "/v1/traffic",
    response_model=TrafficPublic,
    responses=error_responses(404, *READ),
)
def get_traffic(
    bbox: Annotated[
        str,
        Query(
            description="west,south,east,north in WGS-84 degrees, at most 1 square degree",
            json_schema_extra={"pattern": BBOX_PATTERN},
            examples=["1.50,42.50,1.53,42.52"],
        ),
    ],
    at: AtQ = None,
    limit: Annotated[int, Query(ge=1, le=20_000, description="how many road edges")] = 5000,
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Current congestion per road edge in the bbox: factor (1 = free flow, 0 = closed) and level."""
    west, south, east, north = parse_bbox(bbox)
    if (east - west) * (north - south) > 1.0:
        raise InvalidInput("bbox", "must cover at most 1 square degree")
    n = limit
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
