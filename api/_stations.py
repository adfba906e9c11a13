"""Stations: nearby search with prices and promotions, one station, stations in a box.

Ranking (GET /v1/stations/nearby, `sort`):
- distance: nearest first (exact geodesic distance on the WGS-84 spheroid), ties by id.
- price: the list price of `grade` in force at `at`, cheapest first, ties by distance.
- effective_price: the price after the best applicable promotion at `at` (geo._pricing: promotions do
  not stack), for `litres` (default 40), `member`, `payment`; cheapest first, ties by distance.
- score: lower is better, `score = 0.7 * price_part + 0.3 * distance_part` where price_part is the
  effective price normalised over the candidates, (p - min) / (max - min) (0 when all equal), and
  distance_part = distance / radius_m; both parts are returned.
- eta: drive time from the query point under traffic at `at`, fastest first (ties by distance); from a
  point no road is near (farther than the snapping limit), nearest first with a `note` (note_code
  NoRoadNear) saying why, rather than an error. ONE
  time-dependent one-to-many search settles every candidate (geo._ranking.drive_times), bounded by
  max_time_s = 600 + 3 x radius_m / 5 m/s (search_bound_s; returned in `search`). Each result gets
  eta_s, road_distance_m and arrive_at (distance_m stays the straight line); stations with no road
  path, beyond the bound or more than max_snap_m from a road come last with eta_s null.
- total_cost (needs `grade`): the cost of the fill-up, prices at the PREDICTED ARRIVAL (promotions
  evaluated then, price adjustments in force then): total = effective price x litres + road km x
  consumption_l_100km / 100 x effective price + drive hours x value_of_time_cny_h (geo._ranking).
  Litres: `litres`, or `tank_l` x (1 - `fill_level`), or `amount_cny` / the list price at the nearest
  station (so all are compared for the same litres), default 40. consumption_l_100km default 8
  (2..40), value_of_time_cny_h default settings.value_of_time_cny_h (30). Each result has `cost` with
  the breakdown and worth_it = its total <= the total at the nearest (by drive time) priced station.
  Unreachable or unpriced stations come last with a null total. 3 queries: stations, price rows in
  [at, last arrival], promotions valid in that window.
eta and total_cost rank the nearest RANKING_CANDIDATES stations within the radius.
`grade` is required for the price sorts. With `grade`, only stations offering that grade are listed;
for the price sorts those without a known price for it come last, by distance. Price sorts rank the
nearest PRICE_SORT_CANDIDATES stations within the radius.

Coordinates: `coord` (wgs84 default, gcj02, bd09) is the system of the query point and of the output
coordinates; the search itself runs on WGS-84. `at`: ISO-8601, naive = the region's local time,
default now. A point outside the served region gives 200 with no results and a `note` (note_code
OutsideRegion): an empty list is an answer here, while the endpoints that cannot answer without the
point (route, matrix, along-route, OSRM) refuse it with 422 OutsideRegion in the same words.
price_age_s = seconds between the price's effective_from and `at`.

Can I fill up there: every listed station is judged at the time the driver is there (its arrival for
eta and total_cost, else `at`) by ONE function, geo._hours.can_fill_up (status, then opening hours with
the region's public holidays): `can_fill_up` (true, false, or null when the hours are unknown),
`closed_reason` (closed, temporarily_closed, outside_opening_hours) and `checked_at`. Stations that
cannot sell then are left out (`closed_left_out` counts them); `include_closed=true` lists them after
all others. In the eta and total_cost rankings each `grades` block is priced at the arrival
(`priced_at`), the same price as `cost`; the query-time price is only the labelled `at_query_time`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from anyio.to_thread import run_sync
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BeforeValidator

from api._models import READ, NearbyPublic, StationByIdPublic, StationListPublic, documented, error_responses
from api._params import (
    MAX_ID,
    SETTING_MAXIMUM,
    AmountQ,
    AtQ,
    BBoxQ,
    ConsumptionQ,
    CoordQ,
    FillLevelQ,
    FillSpec,
    GradeQ,
    Lat,
    LimitQ,
    LitresQ,
    Lon,
    MemberQ,
    NearbySort,
    PaymentQ,
    TankQ,
    ValueOfTimeQ,
    VehicleQuery,
    at_most,
    bbox_to_wgs84,
    lowercase,
    parse_at,
    parse_bbox,
    parse_fill,
    parse_float,
    parse_payment,
    parse_sort,
    point_out,
)
from api._query import query_docs, query_values, reads_query
from api._routing import need_router
from api._state import AppState, get_state
from api._users import OPTIONAL_TOKEN, OPTIONAL_TOKEN_READ, OptionalUser, request_user
from config import Region, Settings
from geo._brands import station_display_name
from geo._coords import to_wgs84
from geo._errors import InvalidInput, NoRoadNear, NotFound
from geo._hours import FillUp, can_fill_up
from geo._pricing import DEFAULT_LITRES, KNOWN_GRADES, AppliedPromotion, Promotion, effective_price
from geo._ranking import (
    DEFAULT_CONSUMPTION_L_100KM,
    MAX_CONSUMPTION_L_100KM,
    MAX_VALUE_OF_TIME_CNY_H,
    MIN_CONSUMPTION_L_100KM,
    CostBreakdown,
    Purchase,
    StationSnaps,
    arrival,
    drive_times,
    fill_up_cost,
    litres_for,
    price_at,
    search_bound_s,
    worth_it,
)
from geo._router import Router
from geo._vehicle import Vehicle
from store._membership import membership
from store._prices import CurrentPrice, current_prices, station_prices_between
from store._promotions import promotions_between, promotions_for_stations
from store._station_feed import StationFeed
from store._stations import NearbyOffer, get_station, nearby_offers, nearby_stations, stations_in_bbox
from store._users import User

router = APIRouter(prefix="/v1/stations", tags=["stations"])

PRICE_SORT_CANDIDATES = 2_000
RANKING_CANDIDATES = 100  # eta / total_cost: the nearest N within the radius (one search settles all)
SCORE_PRICE_WEIGHT = 0.7
SCORE_DISTANCE_WEIGHT = 0.3


@lru_cache(maxsize=4096)
def local_iso(t: datetime, tz: tzinfo) -> str:
    """`t` in the region's zone as ISO-8601. Memoised: a listing writes the same few times (its `at`, each
    price's effective_from) once per station and grade, and the same price rows again request after
    request; formatting them was 40 % of shaping a nearby answer."""
    return t.astimezone(tz).isoformat()


def _f(x: Decimal | float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)


@lru_cache(maxsize=65_536)
def _price_parts(p: CurrentPrice, tz: tzinfo) -> tuple[float | None, float | None, str]:
    """What a price shows whenever it is asked for: the list price, the effective price when no
    promotion applies (effective_price without promotions: to the cent, half up) and effective_from in
    the region's zone. Memoised: the same price rows are listed request after request."""
    plain, _ = effective_price(p.price_cny, p.grade, (), p.effective_from)
    return _f(p.price_cny), _f(plain), local_iso(p.effective_from, tz)


class _Quote:
    """The caller's purchase: for effective prices."""

    def __init__(
        self, *, litres: float | None, member: bool, payment: str | None, tiers: frozenset[str] = frozenset()
    ) -> None:
        self.litres = Decimal(str(litres)) if litres is not None else DEFAULT_LITRES
        self.member = member
        self.payment = payment
        self.tiers = tiers  # the logged-in driver's membership tiers (member-only promotions)

    def effective(
        self, price: Decimal, grade: str, promos: list[Promotion], at: datetime, region: Region,
        *, tz: tzinfo | None = None,
    ) -> tuple[Decimal, list[AppliedPromotion]]:  # fmt: skip
        """`effective_price` of this purchase; `tz`: the zone `at` is taken to first (None: as it is)."""
        return effective_price(
            price,
            grade,
            promos,
            at,
            tz=tz,
            holidays=region.holidays,
            litres=self.litres,
            member=self.member,
            payment=self.payment,
            topup=self.member,
            tiers=self.tiers,
        )


def member_tiers(state: AppState, user: User | None) -> frozenset[str]:
    """The membership tiers of the driver whose session token came with a public read (none without)."""
    if user is None:
        return frozenset()
    with state.db.connection() as conn:
        return membership(conn, user.id).tiers_held


def applied_out(applied: list[AppliedPromotion]) -> list[dict[str, Any]]:
    return [
        {
            "id": a.promotion.id,
            "title": a.promotion.title,
            "title_en": a.promotion.title_en,
            "kind": a.promotion.kind,
            "saving": _f(a.saving_per_litre, 3),
            "saving_total": _f(a.saving_total),
        }
        for a in applied
    ]


def _grades_out(
    row: dict[str, Any],
    prices: dict[str, CurrentPrice],
    promos: list[Promotion],
    at: datetime,
    region: Region,
    quote: _Quote,
    now: tuple[datetime, dict[str, CurrentPrice]] | None = None,
) -> dict[str, Any]:
    """Each grade priced at `at` (a ranking passes the station's arrival time); `now`, when given, adds
    the price at the query time as a labelled extra `at_query_time` (never used for ranking)."""
    offered = set(row["grades"] or ()) | set(prices)
    out: dict[str, Any] = {}
    tz = region.tz
    priced_at = local_iso(at, tz)  # one string for every grade of every station listed
    at_local = at.astimezone(tz)  # once, not again in each grade's effective_price
    for grade in (g for g in KNOWN_GRADES if g in offered):
        p = prices.get(grade)
        if p is None:
            out[grade] = {
                "list_price": None,
                "effective_price": None,
                "promotions_applied": [],
                "price_age_s": None,
                "source": None,
                "effective_from": None,
                "priced_at": priced_at,
            }
            continue
        list_f, eff_f, since = _price_parts(p, tz)
        applied: list[AppliedPromotion] = []
        if promos:
            eff, applied = quote.effective(p.price_cny, grade, promos, at_local, region)
            eff_f = _f(eff)
        out[grade] = {
            "list_price": list_f,
            "effective_price": eff_f,
            "promotions_applied": applied_out(applied),
            "price_age_s": int((at - p.effective_from).total_seconds()),
            "source": p.source,
            "effective_from": since,
            "priced_at": priced_at,
        }
    if now is not None:
        at_now, prices_now = now
        for grade, block in out.items():
            q = prices_now.get(grade)
            eff_now = None
            if q is not None:
                eff_now, _ = quote.effective(q.price_cny, grade, promos, at_now, region, tz=region.tz)
            block["at_query_time"] = {
                "at": at_now.astimezone(region.tz).isoformat(),
                "list_price": _f(q.price_cny) if q is not None else None,
                "effective_price": _f(eff_now),
            }
    return out


def _station_out(
    row: dict[str, Any],
    prices: dict[str, CurrentPrice],
    promos: list[Promotion],
    at: datetime,
    region: Region,
    coord: str,
    quote: _Quote,
    now: tuple[datetime, dict[str, CurrentPrice]] | None = None,
    fill: FillUp | None = None,
) -> dict[str, Any]:
    """One station as listed; `at` is when the driver is there (its arrival time in a drive ranking):
    status, opening hours and prices are all judged then (geo._hours.can_fill_up; `fill`, when the
    caller has judged it already)."""
    lat, lon = point_out(float(row["lat"]), float(row["lon"]), coord)
    status = row["status"]
    if fill is None:
        fill = can_fill_up(status, row.get("opening_hours"), at.astimezone(region.tz), region.holidays)
    zh, en = station_display_name(row)
    out: dict[str, Any] = {
        "id": int(row["id"]),
        "name": row["name"],
        "name_en": row["name_en"],
        "display_name": zh,
        "display_name_en": en,
        "brand": row["brand"],
        "brand_raw": row["brand_raw"],
        "address": row["address"],
        "lat": lat,
        "lon": lon,
    }
    if "distance_m" in row:
        out["distance_m"] = round(float(row["distance_m"]), 1)
    out.update(
        {
            "status": status,
            "open_now": fill.open_now,
            "can_fill_up": fill.ok,
            "closed_reason": fill.reason,
            "checked_at": local_iso(at, region.tz),
            "opening_hours": row["opening_hours"],
            "amenities": list(row["amenities"] or ()),
            "source": row["source"],
            "grades": _grades_out(row, prices, promos, at, region, quote, now),
        }
    )
    return out


def open_first(items: Sequence[Any], can_fill: Sequence[bool | None], include_closed: bool) -> list[Any]:
    """Keep the ranking order of the stations where the driver can fill up (or may: hours unknown);
    those that are closed at their time are dropped, or listed after all others with `include_closed`."""
    ok = [x for x, f in zip(items, can_fill, strict=True) if f is not False]
    if not include_closed:
        return ok
    return ok + [x for x, f in zip(items, can_fill, strict=True) if f is False]


def _envelope(state: AppState, coord: str, at: datetime, **extra: Any) -> dict[str, Any]:
    region = state.served.region
    body: dict[str, Any] = {
        "region": region.name,
        "region_name": region.display_name,
        "coord": coord,
        "at": at.isoformat(),
        **extra,
        "attribution": region.attribution,
    }
    if state.served.is_demo:
        body["served_note"] = state.served.public_note
    return body


class NearbyQuery(VehicleQuery):
    """The query of GET /v1/stations/nearby (validated in one pass: api/_query.py)."""

    lat: Lat
    lon: Lon
    radius_m: Annotated[
        float | None,
        Query(
            gt=0,
            allow_inf_nan=False,
            description="search radius in metres, at most FUEL_MAX_RADIUS_M (default FUEL_DEFAULT_RADIUS_M)",
            examples=[5000],
            json_schema_extra={SETTING_MAXIMUM: "max_radius_m"},
        ),
    ] = None
    grade: GradeQ = None
    limit: LimitQ = None
    sort: Annotated[
        NearbySort,
        BeforeValidator(lowercase),
        Query(description="ranking (see the description); the price sorts need `grade`"),
    ] = "distance"
    at: AtQ = None
    coord: CoordQ = "wgs84"
    member: MemberQ = False
    payment: PaymentQ = None
    litres: LitresQ = None
    amount_cny: AmountQ = None
    tank_l: TankQ = None
    fill_level: FillLevelQ = None
    consumption_l_100km: ConsumptionQ = None
    value_of_time_cny_h: ValueOfTimeQ = None
    include_closed: Annotated[
        bool,
        Query(description="list stations closed at arrival last, with closed_reason (default: left out)"),
    ] = False


@router.get(
    "/nearby",
    response_model=NearbyPublic,
    responses=error_responses(401, *READ, user=True),
    openapi_extra=query_docs(NearbyQuery, OPTIONAL_TOKEN_READ),
)
@reads_query(NearbyQuery)
async def nearby(request: Request) -> Response:
    """Stations within `radius_m` of a point, with list and effective prices, ranked by `sort`:

    - distance: nearest first (geodesic distance);
    - price / effective_price: cheapest list / effective price of `grade` first;
    - score: 0.7 x the effective price (normalised over the candidates) + 0.3 x distance / radius_m;
    - eta: fastest drive under traffic at `at` first (`eta_s`, `road_distance_m`, `arrive_at`);
    - total_cost: the cheapest fill-up first, priced at the predicted arrival: fuel for `litres`
      (or `amount_cny`, or `tank_l` x (1 - `fill_level`)) + fuel burnt driving there + time driving there
      (`cost`, with `worth_it` against the nearest station).

    eta and total_cost drive the `vehicle` (car by default; a van or truck with its dimensions keeps off
    roads whose height, weight, width or length limits it exceeds, and a truck off hgv=no roads).

    The price sorts need `grade`; with `grade`, only stations selling it are listed. A point outside
    the served region gives no results and a `note`."""
    user = await request_user(request)  # the token first (401), as a dependency would, then the query
    q = query_values(NearbyQuery, request)
    state: AppState = request.app.state.fuel  # as get_state, without one more dependency to solve
    lat, lon, radius_m, grade, limit, sort, at, coord = (
        q.lat, q.lon, q.radius_m, q.grade, q.limit, q.sort, q.at, q.coord
    )  # fmt: skip
    member, payment, litres, amount_cny, tank_l, fill_level = (
        q.member, q.payment, q.litres, q.amount_cny, q.tank_l, q.fill_level
    )  # fmt: skip
    consumption_l_100km, value_of_time_cny_h, include_closed = (
        q.consumption_l_100km, q.value_of_time_cny_h, q.include_closed
    )  # fmt: skip
    veh = q.as_vehicle()
    settings = state.settings
    region = state.served.region
    coord_s, q_lat, q_lon, grade_s = coord, lat, lon, grade
    at_most(radius_m, "radius_m", settings.max_radius_m, lo=0.0, lo_open=True)
    radius = radius_m if radius_m is not None else settings.default_radius_m
    at_most(limit, "limit", settings.max_limit, lo=1)
    n = limit if limit is not None else min(20, settings.max_limit)
    sort_s = parse_sort(sort, grade_s)
    at_dt = parse_at(at, region.tz)
    cp = parse_cost_params(
        settings,
        litres=litres,
        amount_cny=amount_cny,
        tank_l=tank_l,
        fill_level=fill_level,
        consumption_l_100km=consumption_l_100km,
        value_of_time_cny_h=value_of_time_cny_h,
        member=member,
        payment=payment,
    )
    # Runs on the event loop: what waits on the database (a driver's tiers, the drive-time rankings, the
    # SQL search) goes to the thread pool; the in-memory search (store/_station_cache.py) does not.
    tiers = await run_sync(member_tiers, state, user) if user is not None else frozenset[str]()
    quote = _Quote(litres=cp.fill.litres, member=cp.member, payment=cp.payment, tiers=tiers)
    with_closed = include_closed
    try:
        w_lat, w_lon = to_wgs84(q_lat, q_lon, coord_s)
    except ValueError as exc:
        raise InvalidInput("coord", str(exc)) from None
    query = {"lat": q_lat, "lon": q_lon, "radius_m": radius, "grade": grade_s, "sort": sort_s, "limit": n}
    if not region.contains(w_lat, w_lon):  # an empty list is still an answer: a note, not an error
        outside = region.outside_message(w_lat, w_lon) + ": no stations are listed there"
        return documented(
            _envelope(
                state,
                coord_s,
                at_dt,
                query=query,
                count=0,
                results=[],
                note=outside,
                note_code="OutsideRegion",
            )
        )
    ranked_by = sort_s
    note: dict[str, str] = {}
    if sort_s in ("eta", "total_cost"):
        try:
            return documented(
                await run_sync(
                    _nearby_by_drive,
                    state,
                    (w_lat, w_lon),
                    radius,
                    grade_s,
                    n,
                    sort_s,
                    at_dt,
                    coord_s,
                    cp,
                    quote,
                    query,
                    with_closed,
                    veh,
                )
            )
        except NoRoadNear as exc:  # no drive time from here: eta falls back to the nearest stations
            if sort_s != "eta":
                raise
            ranked_by = "distance"
            note = {
                "note": f"{exc.message}: listed by straight-line distance, not drive time",
                "note_code": "NoRoadNear",
            }

    fetch = (
        min(3 * n + 20, PRICE_SORT_CANDIDATES) if ranked_by == "distance" else max(n, PRICE_SORT_CANDIDATES)
    )
    found = await _offers(state, w_lat, w_lon, radius, limit=fetch, grade=grade_s, at=at_dt)
    if ranked_by == "distance":  # already in order: only the stations listed are shaped
        local = at_dt.astimezone(region.tz)
        judged = [
            (f, can_fill_up(f.row["status"], f.row.get("opening_hours"), local, region.holidays))
            for f in found
        ]
        kept = open_first(judged, [j.ok for _, j in judged], with_closed)
        closed = len(found) - len(kept) if not with_closed else 0
        results = [
            _station_out(f.row, f.prices, f.promotions, at_dt, region, coord_s, quote, fill=j)
            for f, j in kept[:n]
        ]
    else:
        assert grade_s is not None
        shaped = [_station_out(f.row, f.prices, f.promotions, at_dt, region, coord_s, quote) for f in found]
        ranked = _rank(shaped, ranked_by, grade_s, radius)
        listed = open_first(ranked, [x["can_fill_up"] for x in ranked], with_closed)
        closed = len(ranked) - len(listed) if not with_closed else 0
        results = listed[:n]
    return documented(
        _envelope(
            state,
            coord_s,
            at_dt,
            query=query,
            **note,
            closed_left_out=closed,
            count=len(results),
            results=results,
        )
    )


async def _offers(
    state: AppState, lat: float, lon: float, radius: float, *, limit: int, grade: str | None, at: datetime
) -> list[NearbyOffer]:
    """nearby_offers from the worker's in-memory copy when it holds them (it answers the same), else SQL."""
    feed: StationFeed | None = state.extras.get("station_feed")
    cache = await feed.fresh() if feed is not None else None
    if cache is not None and cache.covers(at):
        return cache.nearby_offers(lat, lon, radius, limit=limit, grade=grade, at=at)

    def by_sql() -> list[NearbyOffer]:
        with state.db.read() as conn:
            return nearby_offers(conn, lat, lon, radius, limit=limit, grade=grade, at=at)

    return await run_sync(by_sql)


# ---- drive-time and total-cost ranking (shared with api/_ranking.py) -----------------------------
@dataclass(frozen=True)
class CostParams:
    fill: FillSpec
    consumption_l_100km: float
    value_of_time_cny_h: float
    member: bool
    payment: str | None


def parse_cost_params(
    settings: Settings,
    *,
    litres: str | float | None,
    amount_cny: str | float | None,
    tank_l: str | float | None,
    fill_level: str | float | None,
    consumption_l_100km: str | float | None,
    value_of_time_cny_h: str | float | None,
    member: bool | None,
    payment: str | None,
) -> CostParams:
    """The purchase and cost options of a total-cost ranking (each bad value: 422 naming it)."""
    fill = parse_fill(litres, amount_cny, tank_l, fill_level)
    cons = parse_float(
        consumption_l_100km,
        "consumption_l_100km",
        required=False,
        default=DEFAULT_CONSUMPTION_L_100KM,
        lo=MIN_CONSUMPTION_L_100KM,
        hi=MAX_CONSUMPTION_L_100KM,
    )
    vot = parse_float(
        value_of_time_cny_h,
        "value_of_time_cny_h",
        required=False,
        default=settings.value_of_time_cny_h,
        lo=0.0,
        hi=MAX_VALUE_OF_TIME_CNY_H,
    )
    assert cons is not None and vot is not None
    return CostParams(fill, cons, vot, bool(member), parse_payment(payment))


def station_snaps(state: AppState, r: Router) -> StationSnaps:
    """The app's cache of snapped station positions (built on first use, per router)."""
    cache = state.extras.get("station_snaps")
    if not isinstance(cache, StationSnaps) or cache.router is not r:
        cache = StationSnaps(r)
        state.extras["station_snaps"] = cache
    return cache


@dataclass
class ArrivalCosts:
    costs: list[CostBreakdown | None]
    reasons: list[str | None]
    worth: list[bool | None]
    baseline: int | None  # index of the nearest priced, reachable station (worth_it reference)
    litres: Decimal
    litres_from: str


def arrival_costs(
    region: Region,
    grade: str,
    cp: CostParams,
    histories: Sequence[Sequence[CurrentPrice]],
    promos: Sequence[Sequence[Promotion]],
    arrivals: Sequence[datetime | None],
    drive_s: Sequence[float],
    drive_m: Sequence[float],
    nearness: Sequence[int],
    closed: Sequence[str | None] | None = None,
) -> ArrivalCosts:
    """Per station: the total cost at its arrival time (geo._ranking.fill_up_cost), or a reason.

    `nearness` orders the stations for the baseline (nearest first): the first reachable one with a
    price at arrival is the reference of worth_it and of amount_cny -> litres."""
    n = len(histories)
    shut = list(closed) if closed is not None else [None] * n
    listed = [price_at(histories[i], a) if a is not None else None for i, a in enumerate(arrivals)]
    baseline = next(
        (i for i in nearness if arrivals[i] is not None and listed[i] is not None and shut[i] is None), None
    )
    ref_row = listed[baseline] if baseline is not None else None
    ref = ref_row.price_cny if ref_row is not None else None
    litres, how = litres_for(
        litres=cp.fill.litres,
        amount_cny=cp.fill.amount_cny,
        tank_l=cp.fill.tank_l,
        fill_level=cp.fill.fill_level,
        reference_price=ref,
        default=DEFAULT_LITRES,
    )
    purchase = Purchase(grade, litres, cp.member, cp.payment, cp.consumption_l_100km, cp.value_of_time_cny_h)
    costs: list[CostBreakdown | None] = [None] * n
    reasons: list[str | None] = [None] * n
    for i in range(n):
        a, p = arrivals[i], listed[i]
        if a is None:
            reasons[i] = "unreachable"
            continue
        if shut[i] is not None:
            reasons[i] = shut[i]
            continue
        if p is None:
            reasons[i] = "no_price"
            continue
        c = fill_up_cost(
            p.price_cny,
            promos[i],
            a,
            purchase,
            drive_s=drive_s[i],
            drive_m=drive_m[i],
            tz=region.tz,
            holidays=region.holidays,
        )
        c.extra["price_effective_from"] = p.effective_from.astimezone(region.tz).isoformat()
        c.extra["price_source"] = p.source
        costs[i] = c
    worth = worth_it([c.total if c is not None else None for c in costs], baseline)
    return ArrivalCosts(costs, reasons, worth, baseline, litres, how)


def cost_out(ac: ArrivalCosts, i: int) -> dict[str, Any]:
    c = ac.costs[i]
    if c is None:
        return {"total": None, "worth_it": None, "reason": ac.reasons[i]}
    base = ac.costs[ac.baseline] if ac.baseline is not None else None
    return {
        "total": round(c.total, 2),
        "worth_it": ac.worth[i],
        "saving_vs_nearest": round(base.total - c.total, 2) if base is not None else None,
        "litres": float(c.litres),
        "list_price": _f(c.list_price),
        "effective_price": _f(c.effective_price),
        "price_effective_from": c.extra.get("price_effective_from"),
        "price_source": c.extra.get("price_source"),
        "promotions_applied": applied_out(c.applied),
        "fuel_cost": round(c.fuel_cost, 2),
        "detour_fuel_cost": round(c.detour_fuel_cost, 2),
        "time_cost": round(c.time_cost, 2),
        "priced_at": c.arrive_at.isoformat(),
    }


def purchase_out(cp: CostParams, grade: str, ac: ArrivalCosts, region: Region) -> dict[str, Any]:
    return {
        "grade": grade,
        "litres": float(ac.litres),
        "litres_from": ac.litres_from,
        "amount_cny": cp.fill.amount_cny,
        "tank_l": cp.fill.tank_l,
        "fill_level": cp.fill.fill_level,
        "consumption_l_100km": cp.consumption_l_100km,
        "value_of_time_cny_h": cp.value_of_time_cny_h,
        "member": cp.member,
        "payment": cp.payment,
        "currency": region.currency,
    }


def _nearby_by_drive(
    state: AppState,
    origin: tuple[float, float],
    radius: float,
    grade: str | None,
    n: int,
    sort: str,
    at: datetime,
    coord: str,
    cp: CostParams,
    quote: _Quote,
    query: dict[str, Any],
    include_closed: bool = False,
    vehicle: Vehicle | None = None,
) -> dict[str, Any]:
    """sort=eta / total_cost: one one-to-many search, then prices, promotions, status and opening hours
    at each station's arrival (the query-time price only as the labelled extra `at_query_time`)."""
    region = state.served.region
    r = need_router(state)
    origin_snap = r.snapper.snap(origin[0], origin[1], param="lat")
    bound = search_bound_s(radius)
    with state.db.read() as conn:
        rows = nearby_stations(
            conn, origin[0], origin[1], radius, limit=max(n, RANKING_CANDIDATES), grade=grade
        )
        ids = [int(x["id"]) for x in rows]
        snaps = station_snaps(state, r).get(
            [(i, float(x["lat"]), float(x["lon"])) for i, x in zip(ids, rows, strict=True)]
        )
        dur, dist = drive_times(r, origin_snap, snaps, depart_at=at, max_time_s=bound, vehicle=vehicle)
        pairs = [(i, x["brand"]) for i, x in zip(ids, rows, strict=True)]
        finite = dur[np.isfinite(dur)]
        last = at + timedelta(seconds=float(finite.max()) if finite.size else 0.0)
        hist = station_prices_between(conn, ids, at, last)
        promos = promotions_between(conn, pairs, at, last)
    arrivals = [arrival(at, float(d)) for d in dur]
    when = [a if a is not None else at for a in arrivals]
    fills = [
        can_fill_up(x["status"], x.get("opening_hours"), w.astimezone(region.tz), region.holidays)
        for x, w in zip(rows, when, strict=True)
    ]

    def prices_at(sid: int, t: datetime) -> dict[str, CurrentPrice]:
        return {g: p for g, h in hist.get(sid, {}).items() if (p := price_at(h, t)) is not None}

    extra: dict[str, Any] = {
        "search": {
            "max_time_s": round(bound, 1),
            "candidates": len(rows),
            "origin_snap_m": round(origin_snap.distance_m, 1),
        }
    }
    ac: ArrivalCosts | None = None
    if sort == "eta":
        order = sorted(
            range(len(rows)),
            key=lambda k: (not np.isfinite(dur[k]), dur[k], float(rows[k]["distance_m"]), ids[k]),
        )
    else:
        assert grade is not None
        nearness = sorted(range(len(rows)), key=lambda k: (dur[k], ids[k]))
        ac = arrival_costs(
            region,
            grade,
            cp,
            [hist.get(i, {}).get(grade, []) for i in ids],
            [promos.get(i, []) for i in ids],
            arrivals,
            [float(d) if np.isfinite(d) else 0.0 for d in dur],
            [float(m) if np.isfinite(m) else 0.0 for m in dist],
            nearness,
            [f.reason for f in fills],
        )
        totals = [c.total if c is not None else None for c in ac.costs]
        order = sorted(range(len(rows)), key=lambda k: (totals[k] is None, totals[k] or 0.0, dur[k], ids[k]))
        extra["purchase"] = purchase_out(cp, grade, ac, region)
        b = ac.baseline
        bc = ac.costs[b] if b is not None else None
        extra["nearest"] = (
            {"id": ids[b], "eta_s": round(float(dur[b]), 1), "total": round(bc.total, 2)}
            if b is not None and bc is not None
            else None
        )
    listed = open_first(order, [fills[k].ok for k in order], include_closed)
    extra["closed_left_out"] = len(order) - len(listed)
    ranked = []
    for k in listed[:n]:  # shape only what is returned
        sid = ids[k]
        out = _station_out(
            rows[k],
            prices_at(sid, when[k]),
            promos.get(sid, []),
            when[k],
            region,
            coord,
            quote,
            now=(at, prices_at(sid, at)) if when[k] != at else None,
        )
        ok = bool(np.isfinite(dur[k]))
        out["eta_s"] = round(float(dur[k]), 1) if ok else None
        out["road_distance_m"] = round(float(dist[k]), 1) if ok else None
        a = arrivals[k]
        out["arrive_at"] = a.isoformat() if a is not None else None
        if ac is not None:
            out["cost"] = cost_out(ac, k)
        ranked.append(out)
    return _envelope(state, coord, at, query=query, **extra, count=len(ranked), results=ranked)


def _rank(results: list[dict[str, Any]], sort: str, grade: str, radius: float) -> list[dict[str, Any]]:
    def price_of(r: dict[str, Any], key: str) -> float | None:
        g = r["grades"].get(grade)
        return None if g is None else g.get(key)

    if sort in ("price", "effective_price"):
        key = "list_price" if sort == "price" else "effective_price"
        return sorted(
            results,
            key=lambda r: (price_of(r, key) is None, price_of(r, key) or 0.0, r["distance_m"], r["id"]),
        )
    priced = [p for r in results if (p := price_of(r, "effective_price")) is not None]
    lo, hi = (min(priced), max(priced)) if priced else (0.0, 0.0)
    for r in results:
        p = price_of(r, "effective_price")
        dist_part = min(1.0, r["distance_m"] / radius) if radius > 0 else 0.0
        if p is None:
            r["score"] = {"score": None, "price_part": None, "distance_part": round(dist_part, 4)}
            continue
        price_part = (p - lo) / (hi - lo) if hi > lo else 0.0
        score = SCORE_PRICE_WEIGHT * price_part + SCORE_DISTANCE_WEIGHT * dist_part
        r["score"] = {
            "score": round(score, 4),
            "price_part": round(price_part, 4),
            "distance_part": round(dist_part, 4),
            "weights": {"price": SCORE_PRICE_WEIGHT, "distance": SCORE_DISTANCE_WEIGHT},
        }
    return sorted(
        results,
        key=lambda r: (r["score"]["score"] is None, r["score"]["score"] or 0.0, r["distance_m"], r["id"]),
    )


@router.get(
    "/{station_id}",
    response_model=StationByIdPublic,
    response_model_exclude_unset=True,
    responses=error_responses(401, 404, *READ, user=True),
    openapi_extra=OPTIONAL_TOKEN,
)
def station(
    station_id: Annotated[int, Path(description="station id", examples=[1])],
    user: OptionalUser,
    coord: CoordQ = "wgs84",
    at: AtQ = None,
    member: MemberQ = False,
    payment: PaymentQ = None,
    litres: LitresQ = None,
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """One station with its prices and promotions at `at` (with a session token: for that member)."""
    region = state.served.region
    sid = station_id
    if sid < 1 or sid > MAX_ID:
        raise NotFound(f"station {station_id} not found")
    coord_s = coord
    at_dt = parse_at(at, region.tz)
    quote = _Quote(
        litres=litres, member=member, payment=parse_payment(payment), tiers=member_tiers(state, user)
    )
    with state.db.read() as conn:
        row = get_station(conn, sid)
        if row is None:
            raise NotFound(f"station {sid} not found")
        prices = current_prices(conn, [sid], at_dt).get(sid, {})
        promos = promotions_for_stations(conn, [(sid, row["brand"])], at=at_dt).get(sid, [])
    out = _station_out(row, prices, promos, at_dt, region, coord_s, quote)
    return _envelope(state, coord_s, at_dt, station=out)


@router.get(
    "",
    response_model=StationListPublic,
    response_model_exclude_unset=True,
    responses=error_responses(*READ),
)
def stations(
    bbox: BBoxQ,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            description="how many stations, at most FUEL_MAX_LIMIT (the default)",
            json_schema_extra={SETTING_MAXIMUM: "max_limit"},
        ),
    ] = None,
    after: Annotated[
        int,
        Query(ge=0, le=MAX_ID, description="only ids greater than this: `next_after` of the previous page"),
    ] = 0,
    coord: CoordQ = "wgs84",
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Stations in a box, ordered by id (stable): page with `after` = the last id of the previous page.

    With coord gcj02/bd09, the box corners are converted to WGS-84 and the box around them is searched.
    """
    settings = state.settings
    coord_s = coord
    west, south, east, north = bbox_to_wgs84(*parse_bbox(bbox), coord_s)
    at_most(limit, "limit", settings.max_limit, lo=1)
    n = limit if limit is not None else settings.max_limit
    after_id = after
    with state.db.read() as conn:
        rows = stations_in_bbox(conn, west, south, east, north, limit=n, after_id=after_id)
    region = state.served.region
    at_dt = datetime.now(region.tz)
    results = []
    for r in rows:
        lat, lon = point_out(float(r["lat"]), float(r["lon"]), coord_s)
        names = station_display_name(r)
        results.append(
            {
                "id": int(r["id"]),
                "name": r["name"],
                "name_en": r["name_en"],
                "display_name": names[0],
                "display_name_en": names[1],
                "brand": r["brand"],
                "brand_raw": r["brand_raw"],
                "address": r["address"],
                "lat": lat,
                "lon": lon,
                "status": r["status"],
                "grades": list(r["grades"] or ()),
            }
        )
    next_after = results[-1]["id"] if len(results) == n else None
    return _envelope(state, coord_s, at_dt, count=len(results), results=results, next_after=next_after)
