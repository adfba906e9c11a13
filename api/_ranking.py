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

Each station (its `grades` block priced at its arrival time): offset_m (from the line), along_m (distance along the route from the start), side
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
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api._params import (
    ALONG_ROUTE_SORTS,
    DEFAULT_CORRIDOR_M,
    MAX_CORRIDOR_M,
    MAX_RANGE_KM,
    parse_at,
    parse_choice,
    parse_coord,
    parse_float,
    parse_grade,
    parse_int,
    parse_lat,
    parse_lon,
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
    parse_cost_params,
    purchase_out,
    station_snaps,
)
from geo import Budget, InvalidInput, RouteNotFound, from_wgs84, to_wgs84
from geo._polyline import decode, encode
from geo._ranking import (
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
from store._prices import station_prices_between
from store._promotions import promotions_between
from store._stations import stations_in_cells

router = APIRouter(prefix="/v1/stations", tags=["stations"])

ALONG_ROUTE_CANDIDATES = 50  # one second-leg search each
MAX_INPUT_POINTS = 20_000  # points of a POSTed line as sent (the body size limit applies as well)
MAX_CORRIDOR_ROWS = 5_000


class _Options:
    def __init__(
        self,
        state: AppState,
        *,
        corridor_m: str | float | None,
        depart_at: str | None,
        grade: str | None,
        sort: str | None,
        range_km: str | float | None,
        limit: str | int | None,
        cp: CostParams,
    ) -> None:
        s = state.settings
        c = parse_float(
            corridor_m,
            "corridor_m",
            required=False,
            default=DEFAULT_CORRIDOR_M,
            lo=0.0,
            lo_open=True,
            hi=MAX_CORRIDOR_M,
        )
        assert c is not None
        self.corridor_m = c
        self.at = parse_at(depart_at, state.region.tz, "depart_at")
        self.grade = parse_grade(grade)
        self.sort = parse_choice(
            sort, "sort", ALONG_ROUTE_SORTS, default="total_cost" if self.grade else "detour"
        )
        if self.sort == "total_cost" and self.grade is None:
            raise InvalidInput(
                "grade", "is required with sort=total_cost (the grade whose price is compared)"
            )
        self.range_km = parse_float(
            range_km, "range_km", required=False, lo=0.0, lo_open=True, hi=MAX_RANGE_KM
        )
        self.limit = parse_int(
            None if limit is None else str(limit), "limit", default=min(20, s.max_limit), lo=1, hi=s.max_limit
        )
        self.cp = cp


@router.get("/along-route")
def along_route(
    from_: str | None = Query(None, alias="from", description="origin lat,lon in `coord`"),
    to: str | None = Query(None, description="destination lat,lon in `coord`"),
    corridor_m: str | None = Query(
        None, description="metres either side of the route, default 1000, max 5000"
    ),
    depart_at: str | None = Query(None, description="ISO-8601; naive = region time; default now"),
    grade: str | None = Query(None, description="fuel grade (needed for the total-cost ranking)"),
    litres: str | None = Query(None, description="litres bought, default 40"),
    amount_cny: str | None = Query(None, description="money to spend instead of litres"),
    tank_l: str | None = Query(None, description="tank size (with fill_level) instead of litres"),
    fill_level: str | None = Query(None, description="0..1 full now; litres = tank_l x (1 - fill_level)"),
    consumption_l_100km: str | None = Query(None, description="litres per 100 km, default 8"),
    value_of_time_cny_h: str | None = Query(None, description="CNY per hour of detour, default 30"),
    member: str | None = Query(None),
    payment: str | None = Query(None),
    range_km: str | None = Query(None, description="only stations within this road distance of the start"),
    sort: str | None = Query(None, description="total_cost | detour | along"),
    coord: str | None = Query(None, description="wgs84 | gcj02 | bd09 (input and output)"),
    limit: str | None = Query(None, description="1..settings.max_limit, default 20"),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Stations along the fastest route from `from` to `to`, with detours and total costs."""
    budget = Budget(state.settings.along_route_budget_s, what="the along-route search")
    c = parse_coord(coord)
    a = parse_point(from_, "from", c)
    b = parse_point(to, "to", c)
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
    )
    r = need_router(state)
    res = r.route(a, b, depart_at=opt.at, steps=False)
    route = {
        "distance_m": round(res.distance_m, 1),
        "duration_s": round(res.duration_s, 1),
        "depart_at": res.depart_at.isoformat(),
        "arrive_at": res.arrive_at.isoformat(),
        "polyline6": encode([_out(p, c) for p in res.polyline], precision=6),
    }
    line = _bounded_line(state, res.polyline, opt.corridor_m, param="to", budget=budget, client=False)
    return _along(state, line, a, b, opt, c, route, from_param="from", to_param="to", budget=budget)


class AlongRouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    geometry: dict[str, Any] | list[Any] | None = Field(
        None,
        description="in driving order: a GeoJSON LineString ([lon, lat]), [[lat, lon], ...] or the WeChat "
        "points [{latitude, longitude}, ...] (GCJ-02 unless `coord` is given); or send `polyline6`",
    )
    polyline6: str | None = Field(
        None,
        description="the route as an encoded polyline, precision 6 (as /v1/route returns it), in `coord`",
    )
    depart_at: str | None = None
    corridor_m: float | str | None = None
    grade: str | None = None
    litres: float | str | None = None
    amount_cny: float | str | None = None
    tank_l: float | str | None = None
    fill_level: float | str | None = None
    consumption_l_100km: float | str | None = None
    value_of_time_cny_h: float | str | None = None
    member: bool | None = None
    payment: str | None = None
    range_km: float | str | None = None
    sort: str | None = None
    coord: str | None = None
    limit: int | None = None


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


@router.post("/along-route")
def along_route_post(body: AlongRouteRequest, state: AppState = Depends(get_state)) -> dict[str, Any]:
    """Stations along a route the client already has (e.g. from /v1/route), with detours and costs."""
    n_points = (
        _polyline6_points(body.polyline6) if body.polyline6 is not None else count_points(body.geometry)
    )
    charge(n_points, "route_points")
    budget = Budget(state.settings.along_route_budget_s, what="the along-route search")
    wechat = body.coord is None and body.polyline6 is None and _is_wechat_points(body.geometry)
    c = "gcj02" if wechat else parse_coord(body.coord)
    points = _route_points(body, c)
    cp = parse_cost_params(
        state.settings,
        litres=body.litres,
        amount_cny=body.amount_cny,
        tank_l=body.tank_l,
        fill_level=body.fill_level,
        consumption_l_100km=body.consumption_l_100km,
        value_of_time_cny_h=body.value_of_time_cny_h,
        member=None if body.member is None else str(body.member).lower(),
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
    )
    param = "polyline6" if body.polyline6 is not None else "geometry"
    line = _bounded_line(state, points, opt.corridor_m, param=param, budget=budget, client=True)
    route = {"distance_m": round(line.length_m, 1), "depart_at": opt.at.isoformat(), "points": len(points)}
    return _along(
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
        dur, dist = drive_times(r, o_snap, [*snaps, d_snap], depart_at=at)
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
        t_sd, d_sd = legs_to(r, snaps, d_snap, depart_at=departs, budget=budget)
        det = detours(t_os, t_sd, t_od)
        det_m = np.maximum(0.0, d_os + d_sd - d_od)
        pairs = [(i, x["brand"]) for i, x in zip(ids, rows, strict=True)]
        finite = t_os[np.isfinite(t_os)]
        last = at + timedelta(seconds=float(finite.max()) if finite.size else 0.0)
        hist = station_prices_between(conn, ids, at, last)
        promos = promotions_between(conn, pairs, at, last)
    arrivals: list[datetime | None] = [arrival(at, float(t_os[k])) for k in range(len(rows))]
    ok = [bool(np.isfinite(det[k])) for k in range(len(rows))]
    quote = _Quote(litres=opt.cp.fill.litres, member=opt.cp.member, payment=opt.cp.payment)
    results: list[dict[str, Any]] = []
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
    ranked = [results[k] for k in order][: opt.limit]
    query = {
        "corridor_m": opt.corridor_m,
        "grade": opt.grade,
        "sort": opt.sort,
        "range_km": opt.range_km,
        "limit": opt.limit,
    }
    return _envelope(state, coord, at, query=query, **extra, count=len(ranked), results=ranked)
