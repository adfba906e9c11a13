"""Stations: nearby search with prices and promotions, one station, stations in a box.

Ranking (GET /v1/stations/nearby, `sort`):
- distance: nearest first (exact geodesic distance on the WGS-84 spheroid), ties by id.
- price: the list price of `grade` in force at `at`, cheapest first, ties by distance.
- effective_price: the price after the best applicable promotion at `at` (geo._pricing: promotions do
  not stack), for `litres` (default 40), `member`, `payment`; cheapest first, ties by distance.
- score: lower is better, `score = 0.7 * price_part + 0.3 * distance_part` where price_part is the
  effective price normalised over the candidates, (p - min) / (max - min) (0 when all equal), and
  distance_part = distance / radius_m; both parts are returned.
`grade` is required for the price sorts. With `grade`, only stations offering that grade are listed;
for the price sorts those without a known price for it come last, by distance. Price sorts rank the
nearest PRICE_SORT_CANDIDATES stations within the radius.

Coordinates: `coord` (wgs84 default, gcj02, bd09) is the system of the query point and of the output
coordinates; the search itself runs on WGS-84. `at`: ISO-8601, naive = the region's local time,
default now. A point outside the served region gives 200 with no results and a `note`.
price_age_s = seconds between the price's effective_from and `at`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query

from api._params import (
    parse_at,
    parse_bbox,
    parse_bool,
    parse_coord,
    parse_float,
    parse_grade,
    parse_int,
    parse_lat,
    parse_lon,
    parse_payment,
    parse_sort,
    point_from_wgs84,
    point_to_wgs84,
)
from api._state import AppState, get_state
from config import Region
from geo._errors import InvalidInput, NotFound
from geo._hours import open_now
from geo._pricing import DEFAULT_LITRES, KNOWN_GRADES, Promotion, effective_price
from store._prices import CurrentPrice, current_prices
from store._promotions import promotions_for_stations
from store._stations import get_station, nearby_stations, stations_in_bbox

router = APIRouter(prefix="/v1/stations", tags=["stations"])

PRICE_SORT_CANDIDATES = 2_000
SCORE_PRICE_WEIGHT = 0.7
SCORE_DISTANCE_WEIGHT = 0.3


def _f(x: Decimal | float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)


def _coords_out(lat: float, lon: float, coord: str) -> tuple[float, float]:
    a, b = point_from_wgs84(lat, lon, coord)
    return round(a, 7), round(b, 7)


class _Quote:
    """The caller's purchase: for effective prices."""

    def __init__(self, *, litres: float | None, member: bool, payment: str | None) -> None:
        self.litres = Decimal(str(litres)) if litres is not None else DEFAULT_LITRES
        self.member = member
        self.payment = payment


def _grades_out(
    row: dict[str, Any],
    prices: dict[str, CurrentPrice],
    promos: list[Promotion],
    at: datetime,
    region: Region,
    quote: _Quote,
) -> dict[str, Any]:
    offered = set(row["grades"] or ()) | set(prices)
    out: dict[str, Any] = {}
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
            }
            continue
        eff, applied = effective_price(
            p.price_cny,
            grade,
            promos,
            at,
            tz=region.tz,
            holidays=region.holidays,
            litres=quote.litres,
            member=quote.member,
            payment=quote.payment,
            topup=quote.member,
        )
        out[grade] = {
            "list_price": _f(p.price_cny),
            "effective_price": _f(eff),
            "promotions_applied": [
                {
                    "id": a.promotion.id,
                    "title": a.promotion.title,
                    "title_en": a.promotion.title_en,
                    "kind": a.promotion.kind,
                    "saving": _f(a.saving_per_litre, 3),
                    "saving_total": _f(a.saving_total),
                }
                for a in applied
            ],
            "price_age_s": int((at - p.effective_from).total_seconds()),
            "source": p.source,
            "effective_from": p.effective_from.astimezone(region.tz).isoformat(),
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
) -> dict[str, Any]:
    lat, lon = _coords_out(float(row["lat"]), float(row["lon"]), coord)
    status = row["status"]
    is_open = False if status != "open" else open_now(row.get("opening_hours"), at.astimezone(region.tz))
    out: dict[str, Any] = {
        "id": int(row["id"]),
        "name": row["name"],
        "name_en": row["name_en"],
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
            "open_now": is_open,
            "opening_hours": row["opening_hours"],
            "amenities": list(row["amenities"] or ()),
            "source": row["source"],
            "grades": _grades_out(row, prices, promos, at, region, quote),
        }
    )
    return out


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
        body["served_note"] = state.served.note
    return body


@router.get("/nearby")
def nearby(
    lat: str | None = Query(None, description="latitude of the query point, in `coord`"),
    lon: str | None = Query(None, description="longitude of the query point, in `coord`"),
    radius_m: str | None = Query(
        None, description="search radius in metres (default settings.default_radius_m)"
    ),
    grade: str | None = Query(None, description="fuel grade: 89, 92, 95, 98 or 0 (diesel)"),
    limit: str | None = Query(None, description="1..settings.max_limit, default 20"),
    sort: str | None = Query(None, description="distance | price | effective_price | score"),
    at: str | None = Query(None, description="ISO-8601; naive = region local time; default now"),
    coord: str | None = Query(None, description="wgs84 | gcj02 | bd09 (input and output)"),
    member: str | None = Query(None, description="the caller is a member (members-only and top-up offers)"),
    payment: str | None = Query(None, description="payment method, e.g. wechat, alipay, card"),
    litres: str | None = Query(None, description="litres bought (order-level discounts), default 40"),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Stations near a point with list and effective prices, ranked by `sort` (see the module doc)."""
    settings = state.settings
    region = state.served.region
    coord_s = parse_coord(coord)
    q_lat, q_lon = parse_lat(lat), parse_lon(lon)
    radius = parse_float(
        radius_m,
        "radius_m",
        required=False,
        default=settings.default_radius_m,
        lo=0.0,
        lo_open=True,
        hi=settings.max_radius_m,
    )
    assert radius is not None
    grade_s = parse_grade(grade)
    n = parse_int(limit, "limit", default=min(20, settings.max_limit), lo=1, hi=settings.max_limit)
    sort_s = parse_sort(sort, grade_s)
    at_dt = parse_at(at, region.tz)
    quote = _Quote(
        litres=parse_float(litres, "litres", required=False, lo=0.0, lo_open=True, hi=1_000.0),
        member=parse_bool(member, "member"),
        payment=parse_payment(payment),
    )
    try:
        w_lat, w_lon = point_to_wgs84(q_lat, q_lon, coord_s)
    except ValueError as exc:
        raise InvalidInput("coord", str(exc)) from None
    query = {"lat": q_lat, "lon": q_lon, "radius_m": radius, "grade": grade_s, "sort": sort_s, "limit": n}
    if not region.contains(w_lat, w_lon):
        note = (
            f"({w_lat:.6f}, {w_lon:.6f}) WGS-84 is outside the served region {region.display_name} "
            f"({region.name}): no stations are listed there"
        )
        return _envelope(state, coord_s, at_dt, query=query, count=0, results=[], note=note)

    fetch = n if sort_s == "distance" else max(n, PRICE_SORT_CANDIDATES)
    with state.db.connection() as conn:
        rows = nearby_stations(conn, w_lat, w_lon, radius, limit=fetch, grade=grade_s)
        ids = [int(r["id"]) for r in rows]
        prices = current_prices(conn, ids, at_dt)
        promos = promotions_for_stations(conn, [(int(r["id"]), r["brand"]) for r in rows], at=at_dt)
    results = [
        _station_out(
            r, prices.get(int(r["id"]), {}), promos.get(int(r["id"]), []), at_dt, region, coord_s, quote
        )
        for r in rows
    ]
    if sort_s != "distance":
        assert grade_s is not None
        results = _rank(results, sort_s, grade_s, radius)
    results = results[:n]
    return _envelope(state, coord_s, at_dt, query=query, count=len(results), results=results)


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


@router.get("/{station_id}")
def station(
    station_id: str,
    coord: str | None = Query(None, description="wgs84 | gcj02 | bd09 for the output coordinates"),
    at: str | None = Query(None, description="ISO-8601; naive = region local time; default now"),
    member: str | None = Query(None),
    payment: str | None = Query(None),
    litres: str | None = Query(None),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """One station with its prices and promotions at `at`."""
    region = state.served.region
    try:
        sid = int(station_id)
    except ValueError:
        raise InvalidInput("id", f"must be an integer station id, got {station_id!r}") from None
    if sid < 1 or sid > 2**63 - 1:
        raise NotFound(f"station {station_id} not found")
    coord_s = parse_coord(coord)
    at_dt = parse_at(at, region.tz)
    quote = _Quote(
        litres=parse_float(litres, "litres", required=False, lo=0.0, lo_open=True, hi=1_000.0),
        member=parse_bool(member, "member"),
        payment=parse_payment(payment),
    )
    with state.db.connection() as conn:
        row = get_station(conn, sid)
        if row is None:
            raise NotFound(f"station {sid} not found")
        prices = current_prices(conn, [sid], at_dt).get(sid, {})
        promos = promotions_for_stations(conn, [(sid, row["brand"])], at=at_dt).get(sid, [])
    out = _station_out(row, prices, promos, at_dt, region, coord_s, quote)
    return _envelope(state, coord_s, at_dt, station=out)


@router.get("")
def stations(
    bbox: str | None = Query(None, description="west,south,east,north in `coord`"),
    limit: str | None = Query(None, description="1..settings.max_limit, default settings.max_limit"),
    after: str | None = Query(None, description="return ids greater than this (paging)"),
    coord: str | None = Query(None, description="wgs84 | gcj02 | bd09 (bbox and output)"),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Stations in a box, ordered by id (stable): page with `after` = the last id of the previous page.

    With coord gcj02/bd09, the box corners are converted to WGS-84 and the box around them is searched.
    """
    settings = state.settings
    coord_s = parse_coord(coord)
    west, south, east, north = parse_bbox(bbox)
    n = parse_int(limit, "limit", default=settings.max_limit, lo=1, hi=settings.max_limit)
    after_id = parse_int(after, "after", default=0, lo=0, hi=2**63 - 1)
    if coord_s != "wgs84":
        corners = [
            point_to_wgs84(a, b, coord_s)
            for a, b in ((south, west), (south, east), (north, west), (north, east))
        ]
        south, north = min(c[0] for c in corners), max(c[0] for c in corners)
        west, east = min(c[1] for c in corners), max(c[1] for c in corners)
    with state.db.connection() as conn:
        rows = stations_in_bbox(conn, west, south, east, north, limit=n, after_id=after_id)
    region = state.served.region
    at_dt = datetime.now(region.tz)
    results = []
    for r in rows:
        lat, lon = _coords_out(float(r["lat"]), float(r["lon"]), coord_s)
        results.append(
            {
                "id": int(r["id"]),
                "name": r["name"],
                "name_en": r["name_en"],
                "brand": r["brand"],
                "brand_raw": r["brand_raw"],
                "lat": lat,
                "lon": lon,
                "status": r["status"],
                "grades": list(r["grades"] or ()),
            }
        )
    next_after = results[-1]["id"] if len(results) == n else None
    return _envelope(state, coord_s, at_dt, count=len(results), results=results, next_after=next_after)
