"""Ranking stations by drive time and by the total cost of a fill-up; stations along a route.

Pure computation: no HTTP, no SQL. It takes a `Router`, points, price histories and promotions.

Drive times (`drive_times`): ONE time-dependent one-to-many Dijkstra from the origin settles every
candidate (never one route per station). Station positions are snapped once and cached per station
(`StationSnaps`); a station with no road within the snapping limit is unreachable (inf).

Total cost of a fill-up at a station (`fill_up_cost`), all prices taken at the PREDICTED ARRIVAL:
    fuel_cost        = effective_price(arrival) x litres
    detour_fuel_cost = drive_km x consumption_l_100km / 100 x effective_price(arrival)
    time_cost        = drive_s / 3600 x value_of_time_cny_h
    total            = fuel_cost + detour_fuel_cost + time_cost
`drive` is the drive to the station (nearby) or the extra drive of the detour (along a route).
The effective price applies the best promotion valid at arrival (day of week, dates, time window,
min litres / amount, payment, members only; geo._pricing: promotions do not stack). The list price
is the price row in force at arrival (`price_at`): an official adjustment at 24:00 applies to the
stations reached after midnight.

Thresholds: with a `min_litres` / `min_amount_cny` promotion, buying a little more can cost less in
total (the discount starts). Without such thresholds the total never decreases with the litres.

Along a route (`simplify_line`, `corridor_cells`, `corridor_positions`, `detours`): stations within
`corridor_m` of the route line. The line is simplified (tolerance well inside the corridor), the
simplified line densified and covered with H3 grid disks (no buffering of client geometry: the cost is
linear in the length and the points), and the stations in the cover get the exact distance check
against the line as given; the detour is time(origin -> station) + time(station -> destination, leaving at the arrival at the
station) - time(origin -> destination), all traffic-aware.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol, TypeVar

import numpy as np
from h3.api import basic_int as h3i
from shapely.geometry import LineString

from geo._budget import Budget
from geo._coords import EARTH_RADIUS_M, haversine_m_array
from geo._h3cells import disk_size, max_edge_m, rings_for_radius
from geo._pricing import NO_HOLIDAYS, AppliedPromotion, HolidayCalendar, Promotion, effective_price
from geo._snap import Snap
from geo._vehicle import Vehicle

log = logging.getLogger("geo.ranking")

DEFAULT_CONSUMPTION_L_100KM = 8.0
MIN_CONSUMPTION_L_100KM = 2.0
MAX_CONSUMPTION_L_100KM = 40.0
DEFAULT_VALUE_OF_TIME_CNY_H = 30.0
MAX_VALUE_OF_TIME_CNY_H = 10_000.0

# Bound of the one-to-many search of a nearby ranking: a station within `radius_m` in a straight line
# is assumed to be at most ETA_ROAD_FACTOR x radius by road, driven at ETA_MIN_SPEED_MPS (18 km/h:
# congested town traffic), plus ETA_SLACK_S. Stations beyond the bound are reported unreachable.
ETA_ROAD_FACTOR = 3.0
ETA_MIN_SPEED_MPS = 5.0
ETA_SLACK_S = 600.0

# A negative detour within this relative tolerance of the direct time is float / FIFO noise: 0.
DETOUR_REL_TOL = 1e-6

_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
CORRIDOR_RESOLUTIONS: tuple[int, ...] = (9, 8, 7)  # finest first
CORRIDOR_TARGET_CELLS = 4_000
CORRIDOR_MAX_CELLS = 60_000
CORRIDOR_MAX_WORK = 300_000  # grid_disk cells enumerated per resolution tried
CORRIDOR_MAX_SAMPLES = 50_000  # densified points of a corridor line (beyond: bounding box only)
SIMPLIFY_MAX_M = 10.0  # simplification tolerance: min(SIMPLIFY_MAX_M, corridor / 20)
SIMPLIFY_CHUNK = 1_000  # Douglas-Peucker runs on pieces of this many points


def search_bound_s(radius_m: float) -> float:
    """The `max_time_s` of the one-to-many search for stations within `radius_m` (see module consts)."""
    return ETA_SLACK_S + ETA_ROAD_FACTOR * float(radius_m) / ETA_MIN_SPEED_MPS


# ---- drive times ------------------------------------------------------------------------------
class StationSnaps:
    """Road positions of stations, snapped once and cached by station id (stations rarely move; an
    entry is recomputed when the coordinates differ). Safe to share between threads (dict ops)."""

    def __init__(self, router: Any, *, max_entries: int = 200_000) -> None:
        self.router = router
        self.max_entries = max_entries
        self._cache: dict[int, tuple[float, float, Snap | None]] = {}

    def get(self, stations: Sequence[tuple[int, float, float]]) -> list[Snap | None]:
        """(id, lat, lon) WGS-84 -> Snap, or None where no road is within the snapping limit."""
        out: list[Snap | None] = [None] * len(stations)
        miss: list[int] = []
        for i, (sid, lat, lon) in enumerate(stations):
            hit = self._cache.get(int(sid))
            if hit is not None and hit[0] == lat and hit[1] == lon:
                out[i] = hit[2]
            else:
                miss.append(i)
        if miss:
            snaps = self.router.snap_many([(stations[i][1], stations[i][2]) for i in miss], "stations")
            if len(self._cache) + len(miss) > self.max_entries:
                self._cache.clear()
            for i, sn in zip(miss, snaps, strict=True):
                sid, lat, lon = stations[i]
                self._cache[int(sid)] = (lat, lon, sn)
                out[i] = sn
        return out


def drive_times(
    router: Any,
    origin: Snap,
    targets: Sequence[Snap | None],
    *,
    depart_at: datetime | float,
    max_time_s: float = math.inf,
    vehicle: Vehicle | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(durations s, road distances m) from `origin` to every target in ONE one-to-many search, under
    traffic at `depart_at`, for `vehicle` (car when None: a truck keeps off roads whose limits it
    exceeds); inf for None targets, unreachable ones and those beyond `max_time_s`.

    Uses the router's public snapped one-to-many (`Router.one_to_many_snapped`: no re-snapping)."""
    dur, dist = router.one_to_many_snapped(
        origin, targets, depart_at=depart_at, max_time_s=max_time_s, vehicle=vehicle
    )
    return np.asarray(dur, np.float64), np.asarray(dist, np.float64)


def legs_to(
    router: Any,
    sources: Sequence[Snap | None],
    destination: Snap,
    *,
    depart_at: Sequence[float],
    budget: Budget | None = None,
    vehicle: Vehicle | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(durations s, distances m) from each source to `destination`, source k leaving at depart_at[k]
    (Unix seconds; NaN/inf = skip). The router has no backward search, so this is one search per
    source (each stops when the destination is settled): cost grows linearly with the sources.
    `budget` is checked before every search but the first (BudgetExceeded when spent); `vehicle` as in
    `drive_times`."""
    n = len(sources)
    dur = np.full(n, np.inf)
    dist = np.full(n, np.inf)
    searched = False
    for k, s in enumerate(sources):
        t = depart_at[k]
        if s is None or not math.isfinite(t):
            continue
        if budget is not None and searched:
            budget.check()
        searched = True
        d, m = router.one_to_many_snapped(s, [destination], depart_at=t, vehicle=vehicle)
        dur[k], dist[k] = float(d[0]), float(m[0])
    return dur, dist


def detours(
    t_os: np.ndarray, t_sd: np.ndarray, t_od: float, *, rel_tol: float = DETOUR_REL_TOL
) -> np.ndarray:
    """time(o -> s) + time(s -> d) - time(o -> d), inf where a leg is unreachable.

    Under FIFO the via-station path is never faster than the fastest direct one (the snapped origin
    may leave in either direction of a two-way road, like the station), so a negative value is float
    noise when within `rel_tol` of the direct time: clamped to 0. A larger negative value would be a
    router bug (tests/test_along_route.py checks it never happens on random inputs); it is logged and
    also reported as 0 rather than as a negative cost."""
    raw = np.asarray(t_os, np.float64) + np.asarray(t_sd, np.float64) - float(t_od)
    out = raw.copy()
    neg = np.isfinite(raw) & (raw < 0)
    if neg.any():
        worst = float(raw[neg].min())
        if not detour_raw_ok(worst, t_od, rel_tol=rel_tol):
            log.warning("negative detour %.3f s (direct %.1f s): FIFO violated?", worst, t_od)
        out[neg] = 0.0
    return out


def detour_raw_ok(raw: float, t_od: float, *, rel_tol: float = DETOUR_REL_TOL) -> bool:
    """Whether a raw detour is >= 0 within the float/FIFO tolerance."""
    return raw >= -rel_tol * max(1.0, abs(t_od))


# ---- prices at arrival --------------------------------------------------------------------------
class _Dated(Protocol):
    @property
    def effective_from(self) -> datetime: ...


_P = TypeVar("_P", bound=_Dated)


def price_at(history: Sequence[_P], at: datetime) -> _P | None:
    """The row in force at `at`: the last with effective_from <= at. `history` sorted by effective_from."""
    keys = [h.effective_from for h in history]
    i = bisect.bisect_right(keys, at)
    return history[i - 1] if i > 0 else None


@dataclass(frozen=True)
class Purchase:
    """What the driver buys and how they value the drive."""

    grade: str
    litres: Decimal
    member: bool = False
    payment: str | None = None
    consumption_l_100km: float = DEFAULT_CONSUMPTION_L_100KM
    value_of_time_cny_h: float = DEFAULT_VALUE_OF_TIME_CNY_H


@dataclass(frozen=True)
class CostBreakdown:
    list_price: Decimal  # at arrival
    effective_price: Decimal  # at arrival, after the best applicable promotion
    applied: list[AppliedPromotion]
    litres: Decimal
    drive_s: float
    drive_m: float
    fuel_cost: float
    detour_fuel_cost: float
    time_cost: float
    total: float
    arrive_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def fill_up_cost(
    list_price: Decimal | float,
    promos: Sequence[Promotion],
    arrive_at: datetime,
    purchase: Purchase,
    *,
    drive_s: float,
    drive_m: float,
    tz: tzinfo | None = None,
    holidays: HolidayCalendar = NO_HOLIDAYS,
) -> CostBreakdown:
    """The total cost of buying `purchase.litres` at a station reached at `arrive_at` after driving
    `drive_s` seconds and `drive_m` metres (the formula is in the module docstring)."""
    if not (math.isfinite(drive_s) and math.isfinite(drive_m)):
        raise ValueError("drive_s and drive_m must be finite")
    eff, applied = effective_price(
        list_price,
        purchase.grade,
        promos,
        arrive_at,
        tz=tz,
        holidays=holidays,
        litres=purchase.litres,
        member=purchase.member,
        payment=purchase.payment,
        topup=purchase.member,
    )
    p = float(eff)
    fuel = p * float(purchase.litres)
    burnt_l = max(0.0, drive_m) / 1000.0 * purchase.consumption_l_100km / 100.0
    detour_fuel = burnt_l * p
    time_cost = max(0.0, drive_s) / 3600.0 * purchase.value_of_time_cny_h
    return CostBreakdown(
        list_price=Decimal(str(list_price)),
        effective_price=eff,
        applied=applied,
        litres=purchase.litres,
        drive_s=float(drive_s),
        drive_m=float(drive_m),
        fuel_cost=fuel,
        detour_fuel_cost=detour_fuel,
        time_cost=time_cost,
        total=fuel + detour_fuel + time_cost,
        arrive_at=arrive_at,
    )


def litres_for(
    *,
    litres: float | None,
    amount_cny: float | None,
    tank_l: float | None,
    fill_level: float | None,
    reference_price: Decimal | float | None,
    default: Decimal,
) -> tuple[Decimal, str]:
    """(litres, how): from `litres`, or `tank_l * (1 - fill_level)`, or `amount_cny / reference_price`
    (the list price at the baseline station, so every station is compared for the same litres), else
    `default`. Rounded to 0.01 L."""
    q = Decimal("0.01")
    if litres is not None:
        return Decimal(str(litres)).quantize(q, ROUND_HALF_UP), "litres"
    if tank_l is not None and fill_level is not None:
        return (Decimal(str(tank_l)) * (1 - Decimal(str(fill_level)))).quantize(q, ROUND_HALF_UP), "tank"
    if amount_cny is not None and reference_price is not None and Decimal(str(reference_price)) > 0:
        v = (Decimal(str(amount_cny)) / Decimal(str(reference_price))).quantize(q, ROUND_HALF_UP)
        return max(v, q), "amount_cny"
    return default, "default"


def worth_it(totals: Sequence[float | None], baseline: int | None) -> list[bool | None]:
    """Per station: its total <= the baseline's (the nearest by drive time); None without a total."""
    if baseline is None or totals[baseline] is None:
        return [None] * len(totals)
    ref = totals[baseline]
    assert ref is not None
    return [None if t is None else t <= ref + 1e-9 for t in totals]


# ---- corridor ---------------------------------------------------------------------------------
def _project(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    kx = _M_PER_DEG * math.cos(math.radians(lat0))
    return (np.asarray(lon) - lon0) * kx, (np.asarray(lat) - lat0) * _M_PER_DEG


@dataclass(frozen=True)
class CorridorCover:
    res: int
    cells: list[int] | None  # None: too many cells, search by bounding box instead
    bbox: tuple[float, float, float, float]  # west, south, east, north (contains the corridor)


def _as_line(points: Sequence[tuple[float, float]] | np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise ValueError("a route needs at least one point")
    keep = np.ones(len(pts), bool)
    keep[1:] = np.any(np.diff(pts, axis=0) != 0, axis=1)
    return pts[keep]


def line_length_m(points: Sequence[tuple[float, float]] | np.ndarray) -> float:
    """Haversine length of a (lat, lon) line: the sum of its segments."""
    pts = _as_line(points)
    if len(pts) < 2:
        return 0.0
    return float(haversine_m_array(pts[:-1, 0], pts[:-1, 1], pts[1:, 0], pts[1:, 1]).sum())


def simplify_tolerance_m(corridor_m: float) -> float:
    """How far the simplified route may stray from the client's line: well inside the corridor."""
    return min(SIMPLIFY_MAX_M, corridor_m / 20.0)


def simplify_line(points: Sequence[tuple[float, float]] | np.ndarray, tolerance_m: float) -> np.ndarray:
    """Douglas-Peucker (shapely) on the (lat, lon) line in local metres: every point of the line lies
    within `tolerance_m` of the result, and every point of the result within `tolerance_m` of the line
    (its vertices are vertices of the line; first and last kept). Runs on pieces of SIMPLIFY_CHUNK
    points, so the worst case (a zig-zag, quadratic for Douglas-Peucker) stays linear in the points."""
    pts = _as_line(points)
    if len(pts) <= 2 or tolerance_m <= 0:
        return pts
    lat0, lon0 = float(pts[:, 0].mean()), float(pts[:, 1].mean())
    x, y = _project(pts[:, 0], pts[:, 1], lat0, lon0)
    xy = np.column_stack((x, y))
    # east-west metres of the frame are exact at lat0 and longer than the ground nearer the equator
    near = float(np.abs(pts[:, 0]).min())
    tol = tolerance_m / max(1.0, math.cos(math.radians(near)) / math.cos(math.radians(lat0)))
    parts = [xy[:1]]
    for s in range(0, len(xy) - 1, SIMPLIFY_CHUNK):
        piece = xy[s : s + SIMPLIFY_CHUNK + 1]
        c = np.asarray(LineString(piece).simplify(tol, preserve_topology=False).coords).reshape(-1, 2)
        if len(c) < 2 or not (np.array_equal(c[0], piece[0]) and np.array_equal(c[-1], piece[-1])):
            c = piece[[0, -1]]
        parts.append(c[1:])
    out_xy = np.concatenate(parts)
    kx = _M_PER_DEG * math.cos(math.radians(lat0))
    out = np.column_stack((out_xy[:, 1] / _M_PER_DEG + lat0, out_xy[:, 0] / kx + lon0))
    out[0], out[-1] = pts[0], pts[-1]
    return out


def _densify(pts: np.ndarray, step_m: float) -> np.ndarray | None:
    """Points along the (lat, lon) line, ends and vertices included, at most `step_m` metres apart
    (over the ground, along the segments, which are straight in lat/lon as `corridor_positions` draws
    them); None when there would be more than CORRIDOR_MAX_SAMPLES."""
    if len(pts) == 1:
        return pts
    lat, lon = pts[:, 0], pts[:, 1]
    dlat, dlon = np.diff(lat), np.diff(lon)
    # cos(latitude) is largest where |latitude| is smallest: an upper bound of each segment's length
    low = np.where(lat[:-1] * lat[1:] < 0, 0.0, np.minimum(np.abs(lat[:-1]), np.abs(lat[1:])))
    seg = _M_PER_DEG * np.hypot(dlat, dlon * np.cos(np.radians(low)))
    n = np.maximum(1, np.ceil(seg / step_m)).astype(np.int64)
    total = int(n.sum())
    if total + 1 > CORRIDOR_MAX_SAMPLES:
        return None
    seg_of = np.repeat(np.arange(len(n)), n)
    t = (np.arange(total) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    return np.vstack(
        (np.column_stack((lat[seg_of] + t * dlat[seg_of], lon[seg_of] + t * dlon[seg_of])), pts[-1:])
    )


def corridor_cells(
    points: Sequence[tuple[float, float]] | np.ndarray, corridor_m: float, *, tolerance_m: float = 0.0
) -> CorridorCover:
    """H3 cells whose union surely covers every point within `corridor_m` of the route, where `points`
    (lat, lon) is the route or its simplification within `tolerance_m` (`simplify_line`).

    No geometry is buffered. The line is densified to points at most `step` metres apart; each point's
    cell is grown by `k` rings (grid_disk), `k` such that the disk covers the circle of radius
    R = (corridor + tolerance + step / 2) x 1.01 + 1 m around the point (geo._h3cells). A point within
    the corridor of the route is within corridor + tolerance of a point x of `points`' line; x lies on
    a segment whose samples are at most `step` apart, so one of them is within step / 2 of x: the point
    is within R of a sample, hence in its disk (1 % and 1 m cover the equirectangular frame in which
    `corridor_positions` measures and float rounding). The bounding box is the samples' box grown by R.
    Resolution: the finest of 9/8/7 whose cover has at most CORRIDOR_TARGET_CELLS cells, else the
    coarsest within CORRIDOR_MAX_CELLS, else none (bounding box only). The work is bounded: at most
    CORRIDOR_MAX_SAMPLES samples and CORRIDOR_MAX_WORK disk cells per resolution tried."""
    pts = _as_line(points)
    reach = float(corridor_m) + float(tolerance_m)
    step = max(max_edge_m(CORRIDOR_RESOLUTIONS[0]), reach / 2.0)
    radius = (reach + step / 2.0) * 1.01 + 1.0
    samples = _densify(pts, step)
    box = pts if samples is None else samples  # a segment lies in the box of its ends
    pad_lat = radius / _M_PER_DEG
    far = min(89.0, float(np.abs(box[:, 0]).max()) + pad_lat)
    pad_lon = radius / (_M_PER_DEG * math.cos(math.radians(far)))
    bbox = (
        float(box[:, 1].min()) - pad_lon,
        float(box[:, 0].min()) - pad_lat,
        float(box[:, 1].max()) + pad_lon,
        float(box[:, 0].max()) + pad_lat,
    )
    coarsest = CORRIDOR_RESOLUTIONS[-1]
    if samples is None:
        return CorridorCover(coarsest, None, bbox)
    lats, lons = samples[:, 0].tolist(), samples[:, 1].tolist()
    fallback: CorridorCover | None = None
    for res in CORRIDOR_RESOLUTIONS:
        k = rings_for_radius(radius, res)
        disk = disk_size(k)
        if disk > CORRIDOR_MAX_WORK:
            continue
        centres = {h3i.latlng_to_cell(a, b, res) for a, b in zip(lats, lons, strict=True)}
        if len(centres) * disk > CORRIDOR_MAX_WORK:
            continue
        cells: set[int] = set()
        for c in centres:
            cells.update(h3i.grid_disk(c, k))
        if len(cells) <= CORRIDOR_TARGET_CELLS:
            return CorridorCover(res, sorted(cells), bbox)
        if len(cells) <= CORRIDOR_MAX_CELLS:
            fallback = CorridorCover(res, sorted(cells), bbox)
    return fallback if fallback is not None else CorridorCover(coarsest, None, bbox)


@dataclass(frozen=True)
class CorridorPositions:
    offset_m: np.ndarray  # distance from the route line
    along_m: np.ndarray  # distance along the route from its start to the nearest point
    side: list[str]  # "left" | "right" | "on" (of the direction of travel)
    route_length_m: float


def corridor_positions(
    points: Sequence[tuple[float, float]] | np.ndarray, stations: Sequence[tuple[float, float]] | np.ndarray
) -> CorridorPositions:
    """Where each station (lat, lon) lies relative to the route (lat, lon points, in driving order).

    Each station is measured in an equirectangular frame centred on itself (the scale error near it
    is negligible for corridors of a few km). The nearest point of the line gives the offset, the
    distance along (haversine lengths of the segments before + the part of its segment) and the side:
    the sign of the cross product of the segment direction and the station offset (x east, y north:
    positive = left). China drives on the right: a right-side station is entered without crossing."""
    line = _as_line(points)
    st = np.asarray(stations, np.float64).reshape(-1, 2)
    n = len(st)
    if len(line) == 1:
        d = haversine_m_array(st[:, 0], st[:, 1], line[0, 0], line[0, 1]) if n else np.zeros(0)
        return CorridorPositions(np.asarray(d), np.zeros(n), ["on"] * n, 0.0)
    seg_len = haversine_m_array(line[:-1, 0], line[:-1, 1], line[1:, 0], line[1:, 1])
    cum = np.concatenate(([0.0], np.cumsum(seg_len)))
    offset = np.zeros(n)
    along = np.zeros(n)
    side: list[str] = []
    for k in range(n):
        plat, plon = float(st[k, 0]), float(st[k, 1])
        x, y = _project(line[:, 0], line[:, 1], plat, plon)
        ax, ay, bx, by = x[:-1], y[:-1], x[1:], y[1:]
        dx, dy = bx - ax, by - ay
        ll = dx * dx + dy * dy
        t = np.where(ll > 0, -(ax * dx + ay * dy) / np.where(ll > 0, ll, 1.0), 0.0)
        t = np.clip(t, 0.0, 1.0)
        cx, cy = ax + t * dx, ay + t * dy
        dd = np.hypot(cx, cy)
        i = int(np.argmin(dd))
        offset[k] = float(dd[i])
        along[k] = float(cum[i] + t[i] * seg_len[i])
        cross = float(dx[i] * (-ay[i]) - dy[i] * (-ax[i]))  # direction x (station - segment start)
        scale = math.sqrt(float(ll[i])) * max(offset[k], 1e-9)
        side.append(
            "on" if offset[k] < 0.5 or abs(cross) <= 1e-9 * scale else ("left" if cross > 0 else "right")
        )
    return CorridorPositions(offset, along, side, float(cum[-1]))


def arrival(depart_at: datetime, seconds: float) -> datetime | None:
    return depart_at + timedelta(seconds=float(seconds)) if math.isfinite(seconds) else None


__all__ = [
    "DEFAULT_CONSUMPTION_L_100KM",
    "DEFAULT_VALUE_OF_TIME_CNY_H",
    "CorridorCover",
    "CorridorPositions",
    "CostBreakdown",
    "Purchase",
    "StationSnaps",
    "arrival",
    "corridor_cells",
    "corridor_positions",
    "detour_raw_ok",
    "detours",
    "drive_times",
    "fill_up_cost",
    "legs_to",
    "line_length_m",
    "litres_for",
    "price_at",
    "search_bound_s",
    "simplify_line",
    "simplify_tolerance_m",
    "worth_it",
]
