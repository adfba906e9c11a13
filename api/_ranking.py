"""Stations along a route: GET /v1/stations/along-route (from, to) and POST (a route already computed).

Corridor: stations within `corridor_m` (default 1000, at most 5000) of the route line. The line (the
client's, or the router's for GET) is simplified to min(10 m, corridor / 20) and must stay within the
caps (settings.max_route_points after simplification, settings.max_route_km long: 422 naming the
limit and the value). The simplified line is densified and covered with H3 grid disks
(geo._ranking.corridor_cells; no buffering of client geometry) to prefilter in SQL (h3_rX = ANY(cells)
and a bounding box), then the exact distance to the line as given is checked
(geo._ranking.corridor_positions). The ALONG_ROUTE_CANDIDATES nearest to the line are ranked. The
request stops at settings.along_route_budget_s: 422 naming the POSTed geometry when its geometry work
ran out of time, 503 (Retry-After) when the searches did.

Each station is judged at its arrival time: its `grades` block is priced then, and status and opening
hours decide `can_fill_up` then (geo._hours.can_fill_up); stations closed at arrival are left out
(`closed_left_out` counts them), or listed last with `closed_reason` when `include_closed` is true.
Each station: offset_m (from the line), along_m (distance along the route from the start), side
(left/right of the direction of travel; China drives on the right, so right-side stations need no
crossing), eta_s / arrive_at (drive from the origin), detour_s and detour_m, and `cost` when `grade`
is given. Traffic-aware detour: time(origin -> station) + time(station -> destination, leaving at the
arrival at the station) - time(origin -> destination). The first leg to every candidate and the direct
time come from ONE one-to-many search; the router has no backward search, so the second leg is one
search per candidate (each stops at the destination): the request costs about 1 + N searches, which is
why N is capped. A detour below 0 is float noise (FIFO: geo._ranking.detours) and is reported as 0.

Total cost: as in GET /v1/stations/nearby?sort=total_cost, with the drive being the detour (extra
seconds and extra metres, >= 0) and prices/promotions at the arrival at the station; worth_it compares
with the station of the smallest detour. `range_km`: only stations whose road distance from the start
is <= range_km (reachable before the tank runs dry). `sort`: total_cost (default with grade), detour
(default without), along.

POST body: {"geometry": ..., "depart_at", "grade", ...} with the same options as the GET query; the
origin and destination are the first and last points. The line is one of: `geometry` as a GeoJSON
LineString ([lon, lat]), a list of [lat, lon], or the WeChat `points` of /v1/route?format=wechat
([{latitude, longitude}], GCJ-02 unless `coord` says otherwise); or `polyline6`, the encoded
polyline (precision 6) that /v1/route and the along-route GET return, in `coord`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from api._models import READ, AlongRoutePublic, Coord, DateTime, Grade, documented, error_responses
from api._params import (
    DEFAULT_CORRIDOR_M,
    MAX_AMOUNT_CNY,
    MAX_CORRIDOR_M,
    MAX_LITRES,
    MAX_RANGE_KM,
    MAX_TANK_L,
    PAYMENT_PATTERN,
    SETTING_MAXIMUM,
    AlongRouteSort,
    AmountQ,
    ConsumptionQ,
    CoordQ,
    FillLevelQ,
    FromQ,
    GradeQ,
    LimitQ,
    LitresQ,
    MemberQ,
    PaymentQ,
    TankQ,
    ToQ,
    ValueOfTimeQ,
    VehicleBody,
    at_most,
    grade_code,
    in_region,
    lowercase,
    parse_at,
    parse_lat,
    parse_lon,
    vehicle_query,
)
from api._routing import need_router, parse_point
from api._security import charge, count_points
from api._state import AppState, get_state
from api._stations import (
    CostParams,
    _envelope,
    _Quote,
    _station_out,
    arrival_costs,
    cost_out,
    member_tiers,
    open_first,
    parse_cost_params,
    purchase_out,
    station_snaps,
)
from api._users import OPTIONAL_TOKEN, OptionalUser
from geo import Budget, InvalidInput, RouteNotFound, from_wgs84, to_wgs84
from geo._polyline import decode, encode
from geo._ranking import (
    MAX_CONSUMPTION_L_100KM,
    MAX_VALUE_OF_TIME_CNY_H,
    MIN_CONSUMPTION_L_100KM,
    arrival,
    corridor_cells,
    corridor_positions,
    detours,
    drive_times,
    legs_to,
    line_length_m,
    price_at,
    simplify_line,
    simplify_tolerance_m,
)
from geo._vehicle import Vehicle
from store._prices import station_prices_between
from store._promotions import promotions_between
from store._stations import stations_in_cells

router = APIRouter(prefix="/v1/stations", tags=["stations"])

ALONG_ROUTE_CANDIDATES = 50  # one second-leg search each
MAX_INPUT_POINTS = 20_000  # points of a POSTed line as sent (the body size limit applies as well)
MAX_CORRIDOR_ROWS = 5_000

CorridorQ = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_CORRIDOR_M,
        allow_inf_nan=False,
        description="metres either side of the route (default 1000)",
    ),
]
DepartAtQ = Annotated[
    str | None,
    Query(
        description="ISO-8601 departure; without an offset it is the region's local time; default now",
        json_schema_extra={"format": "date-time"},
        examples=["2026-11-28T08:30:00+08:00"],
    ),
]
RangeQ = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_RANGE_KM,
        allow_inf_nan=False,
        description="only stations within this road distance (km) of the start",
    ),
]
IncludeClosedQ = Annotated[
    bool, Query(description="list stations closed at arrival last, with closed_reason (default: left out)")
]
AlongSortQ = Annotated[
    AlongRouteSort | None,
    BeforeValidator(lowercase),
    Query(description="total_cost (default with `grade`, which it needs), detour (default without), along"),
]
_PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
ROUTE_LINE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "title": "GeoJSON LineString",
            "required": ["type", "coordinates"],
            "properties": {
                "type": {"const": "LineString"},
                "coordinates": {"type": "array", "items": _PAIR, "description": "[lon, lat] points"},
            },
        },
        {"type": "array", "items": _PAIR, "minItems": 1, "description": "[lat, lon] points"},
        {
            "type": "array",
            "title": "WeChat points",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["latitude", "longitude"],
                "properties": {"latitude": {"type": "number"}, "longitude": {"type": "number"}},
                "additionalProperties": False,
            },
            "description": "the WeChat map's points (GCJ-02 unless `coord` is given)",
        },
    ],
    "description": f"the route in driving order, in `coord`: 1 to {MAX_INPUT_POINTS:,} points",
}


class _Options:
    def __init__(
        self,
        state: AppState,
        *,
        corridor_m: float | None,
        depart_at: str | None,
        grade: str | None,
        sort: str | None,
        range_km: float | None,
        limit: int | None,
        cp: CostParams,
        include_closed: bool | None = None,
        vehicle: Vehicle | None = None,
        tiers: frozenset[str] = frozenset(),
    ) -> None:
        s = state.settings
        self.corridor_m = corridor_m if corridor_m is not None else DEFAULT_CORRIDOR_M
        self.at = parse_at(depart_at, state.region.tz, "depart_at")
        self.grade = grade
        self.sort = sort or ("total_cost" if self.grade else "detour")
        if self.sort == "total_cost" and self.grade is None:
            raise InvalidInput(
                "grade", "is required with sort=total_cost (the grade whose price is compared)"
            )
        self.range_km = range_km
        at_most(limit, "limit", s.max_limit, lo=1)
        self.limit = limit if limit is not None else min(20, s.max_limit)
        self.cp = cp
        self.include_closed = bool(include_closed)
        self.vehicle = vehicle
        self.tiers = tiers  # the logged-in driver's membership tiers (member-only promotions)


@router.get(
    "/along-route",
    response_model=AlongRoutePublic,
    responses=error_responses(401, 404, *READ, user=True),
    openapi_extra=OPTIONAL_TOKEN,
)
def along_route(
    from_: FromQ,
    to: ToQ,
    user: OptionalUser,
    corridor_m: CorridorQ = None,
    depart_at: DepartAtQ = None,
    grade: GradeQ = None,
    litres: LitresQ = None,
    amount_cny: AmountQ = None,
    tank_l: TankQ = None,
    fill_level: FillLevelQ = None,
    consumption_l_100km: ConsumptionQ = None,
    value_of_time_cny_h: ValueOfTimeQ = None,
    member: MemberQ = False,
    payment: PaymentQ = None,
    range_km: RangeQ = None,
    sort: AlongSortQ = None,
    coord: CoordQ = "wgs84",
    limit: LimitQ = None,
    include_closed: IncludeClosedQ = False,
    veh: Vehicle = Depends(vehicle_query),
    state: AppState = Depends(get_state),
) -> Response:
    """Stations along the fastest route from `from` to `to`, with detours and total costs, driven by
    `vehicle` (car by default; a van or truck keeps off roads whose limits it exceeds)."""
    budget = Budget(state.settings.along_route_budget_s, what="the along-route search")
    c = coord
    a = in_region(state.region, parse_point(from_, "from", c), "from")
    b = in_region(state.region, parse_point(to, "to", c), "to")
    cp = parse_cost_params(
        state.settings,
        litres=litres,
        amount_cny=amount_cny,
        tank_l=tank_l,
        fill_level=fill_level,
        consumption_l_100km=consumption_l_100km,
        value_of_time_cny_h=value_of_time_cny_h,
        member=member,
        payment=payment,
    )
    opt = _Options(
        state,
        corridor_m=corridor_m,
        depart_at=depart_at,
        grade=grade,
        sort=sort,
        range_km=range_km,
        limit=limit,
        cp=cp,
        include_closed=include_closed,
        vehicle=veh,
        tiers=member_tiers(state, user),
    )
    r = need_router(state)
    res = r.route(a, b, depart_at=opt.at, steps=False, vehicle=veh)
    route = {
        "distance_m": round(res.distance_m, 1),
        "duration_s": round(res.duration_s, 1),
        "depart_at": res.depart_at.isoformat(),
        "arrive_at": res.arrive_at.isoformat(),
        "polyline6": encode([_out(p, c) for p in res.polyline], precision=6),
    }
    line = _bounded_line(state, res.polyline, opt.corridor_m, param="to", budget=budget, client=False)
    return documented(
        _along(state, line, a, b, opt, c, route, from_param="from", to_param="to", budget=budget)
    )


class AlongRouteRequest(VehicleBody):
    """A route the client already has, and the same options as the GET query."""

    model_config = ConfigDict(extra="forbid")
    geometry: Annotated[dict[str, Any] | list[Any] | None, WithJsonSchema(ROUTE_LINE_SCHEMA)] = Field(
        None,
        description="in driving order: a GeoJSON LineString ([lon, lat]), [[lat, lon], ...] or the WeChat "
        "points [{latitude, longitude}, ...] (GCJ-02 unless `coord` is given); or send `polyline6`",
    )
    polyline6: str | None = Field(
        None,
        description="the route as an encoded polyline, precision 6 (as /v1/route returns it), in `coord`",
    )
    depart_at: DateTime | None = Field(None, description="ISO-8601; naive = region local time; default now")
    corridor_m: float | None = Field(
        None, gt=0, le=MAX_CORRIDOR_M, allow_inf_nan=False, description="metres either side, default 1000"
    )
    grade: Annotated[Grade | None, BeforeValidator(grade_code)] = None
    litres: float | None = Field(None, gt=0, le=MAX_LITRES, allow_inf_nan=False)
    amount_cny: float | None = Field(None, gt=0, le=MAX_AMOUNT_CNY, allow_inf_nan=False)
    tank_l: float | None = Field(None, gt=0, le=MAX_TANK_L, allow_inf_nan=False)
    fill_level: float | None = Field(None, ge=0, lt=1, allow_inf_nan=False)
    consumption_l_100km: float | None = Field(
        None, ge=MIN_CONSUMPTION_L_100KM, le=MAX_CONSUMPTION_L_100KM, allow_inf_nan=False
    )
    value_of_time_cny_h: float | None = Field(None, ge=0, le=MAX_VALUE_OF_TIME_CNY_H, allow_inf_nan=False)
    member: bool | None = None
    payment: str | None = Field(None, json_schema_extra={"pattern": PAYMENT_PATTERN})
    range_km: float | None = Field(None, gt=0, le=MAX_RANGE_KM, allow_inf_nan=False)
    sort: Annotated[AlongRouteSort | None, BeforeValidator(lowercase)] = None
    coord: Annotated[Coord | None, BeforeValidator(lowercase)] = None
    limit: int | None = Field(None, ge=1, json_schema_extra={SETTING_MAXIMUM: "max_limit"})
    include_closed: bool | None = None


def _is_wechat_points(geometry: object) -> bool:
    return isinstance(geometry, list) and bool(geometry) and isinstance(geometry[0], dict)


def _polyline6_points(text: str) -> int:
    """How many points an encoded polyline holds (each value ends with a chunk below 0x20)."""
    return sum(1 for ch in text if 0 <= ord(ch) - 63 < 0x20) // 2


def _raw_points(body: AlongRouteRequest) -> list[Any]:
    if (body.geometry is None) == (body.polyline6 is None):
        raise InvalidInput("geometry", "send the route as exactly one of `geometry` and `polyline6`")
    if body.polyline6 is not None:
        n = _polyline6_points(body.polyline6)
        if not 1 <= n <= MAX_INPUT_POINTS:
            raise InvalidInput("polyline6", f"needs 1 to {MAX_INPUT_POINTS:,} points, got {n:,}")
        try:
            return [tuple(p) for p in decode(body.polyline6.strip(), precision=6)]
        except (IndexError, ValueError):
            raise InvalidInput("polyline6", "is not an encoded polyline (precision 6)") from None
    geometry = body.geometry
    if isinstance(geometry, dict):
        if geometry.get("type") != "LineString" or not isinstance(geometry.get("coordinates"), list):
            raise InvalidInput("geometry", "must be a GeoJSON LineString or a list of [lat, lon] points")
        return [
            (p[1], p[0]) if isinstance(p, list | tuple) and len(p) >= 2 else p
            for p in geometry["coordinates"]
        ]
    assert isinstance(geometry, list)
    out: list[Any] = []
    for p in geometry:
        if isinstance(p, dict):
            out.append((p.get("latitude"), p.get("longitude")) if set(p) == {"latitude", "longitude"} else p)
        else:
            out.append(tuple(p) if isinstance(p, list) and len(p) == 2 else p)
    return out


def _route_points(body: AlongRouteRequest, coord: str) -> list[tuple[float, float]]:
    raw = _raw_points(body)
    param = "polyline6" if body.polyline6 is not None else "geometry"
    if not 1 <= len(raw) <= MAX_INPUT_POINTS:
        raise InvalidInput(param, f"needs 1 to {MAX_INPUT_POINTS:,} points, got {len(raw):,}")
    out: list[tuple[float, float]] = []
    for i, p in enumerate(raw):
        if not isinstance(p, tuple) or len(p) != 2:
            raise InvalidInput(
                param, f"point {i} must be a pair of numbers ([lat, lon] or {{latitude, longitude}})"
            )
        try:
            lat = parse_lat(p[0], param)
            lon = parse_lon(p[1], param)
        except InvalidInput as exc:
            raise InvalidInput(param, f"point {i}: {exc.message}") from None
        out.append(to_wgs84(lat, lon, coord))
    return out


@router.post(
    "/along-route",
    response_model=AlongRoutePublic,
    responses=error_responses(400, 401, 404, 413, *READ, user=True),
    openapi_extra=OPTIONAL_TOKEN,
)
def along_route_post(
    body: AlongRouteRequest, user: OptionalUser, state: AppState = Depends(get_state)
) -> Response:
    """Stations along a route the client already has (e.g. from /v1/route), with detours and costs."""
    n_points = (
        _polyline6_points(body.polyline6) if body.polyline6 is not None else count_points(body.geometry)
    )
    charge(n_points, "route_points")
    budget = Budget(state.settings.along_route_budget_s, what="the along-route search")
    wechat = body.coord is None and body.polyline6 is None and _is_wechat_points(body.geometry)
    c = body.coord or ("gcj02" if wechat else "wgs84")
    points = _route_points(body, c)
    param = "polyline6" if body.polyline6 is not None else "geometry"
    in_region(state.region, points[0], param, what="its first point: ")
    in_region(state.region, points[-1], param, what="its last point: ")
    cp = parse_cost_params(
        state.settings,
        litres=body.litres,
        amount_cny=body.amount_cny,
        tank_l=body.tank_l,
        fill_level=body.fill_level,
        consumption_l_100km=body.consumption_l_100km,
        value_of_time_cny_h=body.value_of_time_cny_h,
        member=body.member,
        payment=body.payment,
    )
    opt = _Options(
        state,
        corridor_m=body.corridor_m,
        depart_at=body.depart_at,
        grade=body.grade,
        sort=body.sort,
        range_km=body.range_km,
        limit=body.limit,
        cp=cp,
        include_closed=body.include_closed,
        vehicle=body.as_vehicle(),
        tiers=member_tiers(state, user),
    )
    line = _bounded_line(state, points, opt.corridor_m, param=param, budget=budget, client=True)
    route = {"distance_m": round(line.length_m, 1), "depart_at": opt.at.isoformat(), "points": len(points)}
    return documented(
        _along(
            state,
            line,
            points[0],
            points[-1],
            opt,
            c,
            route,
            from_param=param,
            to_param=param,
            budget=budget,
        )
    )


@dataclass(frozen=True)
class _Line:
    """A route line within the caps: as given (the exact check) and simplified (the H3 cover)."""

    points: list[tuple[float, float]]
    simple: np.ndarray
    tolerance_m: float
    length_m: float
    param: str | None  # names the line in errors when its geometry is the client's


def _bounded_line(
    state: AppState,
    points: list[tuple[float, float]],
    corridor_m: float,
    *,
    param: str,
    budget: Budget,
    client: bool,
) -> _Line:
    """The line checked against settings.max_route_km, simplified, checked against
    settings.max_route_points; InvalidInput(param) names the limit and the value."""
    s = state.settings
    length = line_length_m(points)
    if length > s.max_route_km * 1000.0:
        raise InvalidInput(
            param,
            f"the route is {length / 1000.0:,.1f} km long, above the limit of {s.max_route_km:,g} km",
        )
    tol = simplify_tolerance_m(corridor_m)
    simple = simplify_line(points, tol)
    if len(simple) > s.max_route_points:
        raise InvalidInput(
            param,
            f"the route has {len(simple):,} points after simplification to {tol:g} m, above the limit of "
            f"{s.max_route_points:,}; "
            + ("send a simpler line" if client else "choose a shorter trip or a wider corridor"),
        )
    line = _Line(points, simple, tol, length, param if client else None)
    budget.check(param=line.param)
    return line


def _out(p: tuple[float, float], coord: str) -> tuple[float, float]:
    return from_wgs84(p[0], p[1], coord)


def _along(
    state: AppState,
    line: _Line,
    origin: tuple[float, float],
    dest: tuple[float, float],
    opt: _Options,
    coord: str,
    route: dict[str, Any],
    *,
    from_param: str,
    to_param: str,
    budget: Budget,
) -> dict[str, Any]:
    region = state.served.region
    r = need_router(state)
    at = opt.at
    o_snap = r.snapper.snap(origin[0], origin[1], param=from_param)
    d_snap = r.snapper.snap(dest[0], dest[1], param=to_param)
    cover = corridor_cells(line.simple, opt.corridor_m, tolerance_m=line.tolerance_m)
    budget.check(param=line.param)
    with state.db.read() as conn:
        rows = stations_in_cells(
            conn, res=cover.res, cells=cover.cells, bbox=cover.bbox, grade=opt.grade, limit=MAX_CORRIDOR_ROWS
        )
        pos = corridor_positions(line.points, [(float(x["lat"]), float(x["lon"])) for x in rows])
        budget.check(param=line.param)
        inside = [k for k in range(len(rows)) if pos.offset_m[k] <= opt.corridor_m]
        inside.sort(key=lambda k: (pos.offset_m[k], int(rows[k]["id"])))
        in_corridor = len(inside)
        keep = inside[:ALONG_ROUTE_CANDIDATES]
        rows = [rows[k] for k in keep]
        offset = [float(pos.offset_m[k]) for k in keep]
        along = [float(pos.along_m[k]) for k in keep]
        side = [pos.side[k] for k in keep]
        ids = [int(x["id"]) for x in rows]
        snaps = station_snaps(state, r).get(
            [(i, float(x["lat"]), float(x["lon"])) for i, x in zip(ids, rows, strict=True)]
        )
        dur, dist = drive_times(r, o_snap, [*snaps, d_snap], depart_at=at, vehicle=opt.vehicle)
        t_od, d_od = float(dur[-1]), float(dist[-1])
        if not math.isfinite(t_od):
            raise RouteNotFound("no drivable path joins the start and the end of the route")
        t_os, d_os = dur[:-1], dist[:-1]
        reach = np.isfinite(t_os)
        if opt.range_km is not None:
            reach &= d_os <= opt.range_km * 1000.0
        sel = (
            [k for k in range(len(rows)) if reach[k]] if opt.range_km is not None else list(range(len(rows)))
        )
        t0 = at.timestamp()
        departs = [t0 + float(t_os[k]) if reach[k] else math.nan for k in range(len(rows))]
        budget.check()
        t_sd, d_sd = legs_to(r, snaps, d_snap, depart_at=departs, budget=budget, vehicle=opt.vehicle)
        det = detours(t_os, t_sd, t_od)
        det_m = np.maximum(0.0, d_os + d_sd - d_od)
        pairs = [(i, x["brand"]) for i, x in zip(ids, rows, strict=True)]
        finite = t_os[np.isfinite(t_os)]
        last = at + timedelta(seconds=float(finite.max()) if finite.size else 0.0)
        hist = station_prices_between(conn, ids, at, last)
        promos = promotions_between(conn, pairs, at, last)
    arrivals: list[datetime | None] = [arrival(at, float(t_os[k])) for k in range(len(rows))]
    ok = [bool(np.isfinite(det[k])) for k in range(len(rows))]
    quote = _Quote(litres=opt.cp.fill.litres, member=opt.cp.member, payment=opt.cp.payment, tiers=opt.tiers)
    results: list[dict[str, Any]] = []
    fills: list[bool | None] = []
    for k, row in enumerate(rows):
        a = arrivals[k]
        when = a if a is not None else at
        prices = {g: p for g, h in hist.get(ids[k], {}).items() if (p := price_at(h, when)) is not None}
        out = _station_out(row, prices, promos.get(ids[k], []), when, region, coord, quote)
        out.update(
            {
                "offset_m": round(offset[k], 1),
                "along_m": round(along[k], 1),
                "side": side[k],
                "eta_s": round(float(t_os[k]), 1) if np.isfinite(t_os[k]) else None,
                "road_distance_m": round(float(d_os[k]), 1) if np.isfinite(d_os[k]) else None,
                "arrive_at": a.isoformat() if a is not None else None,
                "detour_s": round(float(det[k]), 1) if ok[k] else None,
                "detour_m": round(float(det_m[k]), 1) if ok[k] else None,
            }
        )
        results.append(out)
        fills.append(out["can_fill_up"])
    extra: dict[str, Any] = {
        "route": route | {"direct_duration_s": round(t_od, 1), "direct_distance_m": round(d_od, 1)},
        "corridor": {
            "corridor_m": opt.corridor_m,
            "h3_res": cover.res,
            "h3_cells": len(cover.cells) if cover.cells is not None else None,
            "in_corridor": in_corridor,
            "candidates": len(rows),
        },
    }
    totals: list[float | None] = [None] * len(rows)
    if opt.grade is not None:
        nearness = sorted(range(len(rows)), key=lambda k: (not ok[k], det[k], along[k], ids[k]))
        ac = arrival_costs(
            region,
            opt.grade,
            opt.cp,
            [hist.get(i, {}).get(opt.grade, []) for i in ids],
            [promos.get(i, []) for i in ids],
            [arrivals[k] if ok[k] else None for k in range(len(rows))],
            [float(det[k]) if ok[k] else 0.0 for k in range(len(rows))],
            [float(det_m[k]) if ok[k] else 0.0 for k in range(len(rows))],
            nearness,
            [r["closed_reason"] for r in results],
        )
        for k, out in enumerate(results):
            out["cost"] = cost_out(ac, k)
        totals = [c.total if c is not None else None for c in ac.costs]
        extra["purchase"] = purchase_out(opt.cp, opt.grade, ac, region)
        b = ac.baseline
        bc = ac.costs[b] if b is not None else None
        extra["nearest"] = (
            {"id": ids[b], "detour_s": round(float(det[b]), 1), "total": round(bc.total, 2)}
            if b is not None and bc is not None
            else None
        )
    if opt.sort == "total_cost":
        order = sorted(sel, key=lambda k: (totals[k] is None, totals[k] or 0.0, det[k], along[k], ids[k]))
    elif opt.sort == "detour":
        order = sorted(sel, key=lambda k: (not ok[k], det[k] if ok[k] else 0.0, along[k], ids[k]))
    else:
        order = sorted(sel, key=lambda k: (along[k], ids[k]))
    listed = open_first(order, [fills[k] for k in order], opt.include_closed)
    extra["closed_left_out"] = len(order) - len(listed)
    ranked = [results[k] for k in listed][: opt.limit]
    query = {
        "corridor_m": opt.corridor_m,
        "grade": opt.grade,
        "sort": opt.sort,
        "range_km": opt.range_km,
        "limit": opt.limit,
    }
    return _envelope(state, coord, at, query=query, **extra, count=len(ranked), results=ranked)
