"""The nearby search's data in an API worker's memory: stations, their prices and the promotions.

`GET /v1/stations/nearby` (distance and price sorts) is the hottest read. Its SQL (store._stations.
nearby_offers) costs about 1.5 ms of database and driver CPU per request, more than the rest of the
request; a region's stations, prices and promotions fit in memory (19 stations in the demo region, a few
hundred in Lijiang; at the default cap of 50,000 stations, each with 3 grades and 2 price rows a grade,
about 190 MB a worker, measured with tracemalloc), so each worker keeps them and
answers the same question from memory. What keeps the copy exact is store._station_feed; this module is
the copy and its answers.

The answers are those of nearby_offers, row for row:
- distance on the WGS-84 spheroid by GeographicLib's inverse solution (pyproj.Geod, PROJ), the algorithm
  PostGIS's geography ST_Distance uses (PostGIS >= 2.2 with PROJ >= 4.9): they agree to nanometres;
- within the radius (distance <= radius), the grade among the station's grades, nearest first, ties by id;
- per station the price in force at `at` of each known grade (the newest with effective_from <= at);
- the promotions valid at `at` (valid_from <= at < valid_to), the station's own first, then its
  brand's, by id.

Price history: only what answers `at` >= `cover_from` is held (each grade's newest price from before
it, and everything after); an older `at` is answered by SQL (the caller checks `covers`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from pyproj import Geod

from geo._pricing import KNOWN_GRADES, Promotion
from store._prices import CurrentPrice, _current_price
from store._promotions import _FIELDS as PROMOTION_FIELDS
from store._promotions import promotion_from_row
from store._stations import STATION_FIELDS, NearbyOffer, _degree_box

_GEOD = Geod(ellps="WGS84")

# What a load reads. %(ids)s: the station ids to read (NULL: all); %(brands)s: brands whose promotions
# to read (NULL: all); %(from)s: cover_from.
STATIONS_SQL = (
    f"SELECT {STATION_FIELDS} FROM stations s WHERE %(ids)s::bigint[] IS NULL OR s.id = ANY(%(ids)s)"
)
PRICES_SQL = (
    "SELECT station_id, grade, price_cny, effective_from, observed_at, source FROM prices"
    " WHERE effective_from > %(from)s AND grade = ANY(%(grades)s)"
    " AND (%(ids)s::bigint[] IS NULL OR station_id = ANY(%(ids)s))"
    " UNION ALL (SELECT DISTINCT ON (station_id, grade) station_id, grade, price_cny, effective_from,"
    " observed_at, source FROM prices WHERE effective_from <= %(from)s AND grade = ANY(%(grades)s)"
    " AND (%(ids)s::bigint[] IS NULL OR station_id = ANY(%(ids)s))"
    " ORDER BY station_id, grade, effective_from DESC)"
)
PROMOTIONS_SQL = (
    f"SELECT {PROMOTION_FIELDS} FROM promotions WHERE (valid_to IS NULL OR valid_to > %(from)s)"
    " AND ((%(ids)s::bigint[] IS NULL AND %(brands)s::text[] IS NULL)"
    " OR (scope = 'station' AND station_id = ANY(%(ids)s)) OR (scope = 'brand' AND brand = ANY(%(brands)s)))"
)


def load_params(
    cover_from: datetime, ids: Sequence[int] | None, brands: Sequence[str] | None
) -> dict[str, Any]:
    """The values the three load statements bind."""
    return {
        "from": cover_from,
        "grades": list(KNOWN_GRADES),
        "ids": None if ids is None else list(ids),
        "brands": None if brands is None else list(brands),
    }


@dataclass
class _Prices:
    """One station's price rows of one grade, oldest first, with their effective_from for bisect."""

    starts: list[datetime]
    rows: list[CurrentPrice]


class StationCache:
    """A worker's copy of the stations, prices and promotions (see the module doc). Not thread-safe: it
    is read and refreshed on the worker's event loop only (a full load builds a new copy in a thread,
    before anyone reads it)."""

    def __init__(self, cover_from: datetime) -> None:
        self.cover_from = cover_from
        self.stations: dict[int, dict[str, Any]] = {}
        self._prices: dict[int, dict[str, _Prices]] = {}
        self._station_promos: dict[int, list[Promotion]] = {}
        self._brand_promos: dict[str, list[Promotion]] = {}
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # ids, lat, lon by lat

    def __len__(self) -> int:
        return len(self.stations)

    def covers(self, at: datetime) -> bool:
        """Whether the prices in force at `at` are held (at >= cover_from)."""
        return at >= self.cover_from

    # ---- refresh ----------------------------------------------------------------------------------
    def replace(
        self,
        *,
        ids: Sequence[int] | None,
        brands: Sequence[str] | None,
        stations: Iterable[Mapping[str, Any]],
        prices: Iterable[Mapping[str, Any]],
        promotions: Iterable[Mapping[str, Any]],
    ) -> None:
        """Put what a load read (STATIONS_SQL, PRICES_SQL, PROMOTIONS_SQL with the same ids and brands)
        in place of what is held for them: ids None = everything; a station no longer read is gone."""
        if ids is None:
            self.stations, self._prices, self._station_promos = {}, {}, {}
            if brands is None:
                self._brand_promos = {}
        else:
            for sid in ids:
                self.stations.pop(sid, None)
                self._prices.pop(sid, None)
                self._station_promos.pop(sid, None)
        for b in brands or ():
            self._brand_promos.pop(b, None)
        for row in stations:
            self.stations[int(row["id"])] = dict(row)
        for p in prices:
            price = _current_price(p)
            held = self._prices.setdefault(price.station_id, {}).setdefault(price.grade, _Prices([], []))
            i = bisect.bisect_left(held.starts, price.effective_from)
            held.starts.insert(i, price.effective_from)
            held.rows.insert(i, price)
        for row in promotions:
            promo = promotion_from_row(row)
            if promo.scope == "station":
                assert promo.station_id is not None
                self._station_promos.setdefault(int(promo.station_id), []).append(promo)
            elif promo.brand is not None:
                self._brand_promos.setdefault(promo.brand, []).append(promo)
        for lists in (self._station_promos, self._brand_promos):
            for promos in lists.values():
                promos.sort(key=lambda x: x.id or 0)
        self._index = None

    # ---- answers ----------------------------------------------------------------------------------
    def _spatial(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._index is None:
            ids = np.fromiter(self.stations, dtype=np.int64, count=len(self.stations))
            lat = np.array([float(self.stations[int(i)]["lat"]) for i in ids], dtype=np.float64)
            lon = np.array([float(self.stations[int(i)]["lon"]) for i in ids], dtype=np.float64)
            order = np.argsort(lat, kind="stable")
            self._index = (ids[order], lat[order], lon[order])
        return self._index

    def nearby(
        self, lat: float, lon: float, radius_m: float, *, limit: int, grade: str | None = None
    ) -> list[dict[str, Any]]:
        """store._stations.nearby_stations from memory: rows with distance_m, nearest first, ties by id."""
        ids, lats, lons = self._spatial()
        box = _degree_box(lat, lon, radius_m)
        if box is not None:  # the same conservative box as the SQL; lat-sorted, so a slice, then lon
            w, s, e, n = box
            lo, hi = np.searchsorted(lats, s, "left"), np.searchsorted(lats, n, "right")
            keep = (lons[lo:hi] >= w) & (lons[lo:hi] <= e)
            ids, lats, lons = ids[lo:hi][keep], lats[lo:hi][keep], lons[lo:hi][keep]
        if len(ids) == 0:
            return []
        _, _, dist = _GEOD.inv(np.full(len(ids), lon), np.full(len(ids), lat), lons, lats)
        dist = np.asarray(dist, dtype=np.float64)
        within = dist <= radius_m
        ids, dist = ids[within], dist[within]
        order = np.lexsort((ids, dist))
        out: list[dict[str, Any]] = []
        for k in order:
            row = self.stations[int(ids[k])]
            if grade is not None and grade not in (row["grades"] or ()):
                continue
            out.append({**row, "distance_m": float(dist[k])})
            if len(out) >= limit:
                break
        return out

    def prices_at(self, station_id: int, at: datetime) -> dict[str, CurrentPrice]:
        """{grade: price in force at `at`} of a station (at >= cover_from)."""
        out: dict[str, CurrentPrice] = {}
        for grade, held in self._prices.get(station_id, {}).items():
            i = bisect.bisect_right(held.starts, at)
            if i:
                out[grade] = held.rows[i - 1]
        return out

    def promotions_at(self, station_id: int, brand: str, at: datetime) -> list[Promotion]:
        """The promotions valid at `at` for a station: its own, then its brand's, each by id."""
        return [
            p
            for p in (*self._station_promos.get(station_id, ()), *self._brand_promos.get(brand, ()))
            if p.valid_from is not None and p.valid_from <= at and (p.valid_to is None or p.valid_to > at)
        ]

    def nearby_offers(
        self, lat: float, lon: float, radius_m: float, *, limit: int, at: datetime, grade: str | None = None
    ) -> list[NearbyOffer]:
        """store._stations.nearby_offers from memory (at >= cover_from)."""
        return [
            NearbyOffer(
                row,
                self.prices_at(int(row["id"]), at),
                self.promotions_at(int(row["id"]), row["brand"], at),
            )
            for row in self.nearby(lat, lon, radius_m, limit=limit, grade=grade)
        ]
