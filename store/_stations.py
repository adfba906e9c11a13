"""Stations: upsert (one and bulk), get, bbox, and the H3-prefiltered nearby search.

Upserts key on (source, source_ref), are audited, and keep the fields the station manager API owns. A row
whose content did not change is left alone (no version bump, no audit row), so re-running a loader is a
no-op. H3 columns are computed in Python (geo._h3cells).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from geo._brands import BRANDS
from geo._h3cells import DEFAULT_MAX_CELLS, cells_for_point, covering_cells
from geo._pricing import Promotion
from store._audit import changed_fields, record_many
from store._prices import IN_FORCE_COLUMN, CurrentPrice, in_force_params, prices_from_json
from store._promotions import VALID_AT_COLUMN, promotions_from_json

SOURCES = ("osm", "onboarding", "demo")
STATUSES = ("open", "closed", "temporarily_closed")


@dataclass(frozen=True)
class StationIn:
    """A station to create or update. Coordinates are WGS-84."""

    source: str
    source_ref: str
    lat: float
    lon: float
    name: str = ""
    name_en: str | None = None
    brand: str = "other"
    brand_raw: str | None = None
    address: str | None = None
    grades: tuple[str, ...] = ()
    opening_hours: str | None = None
    amenities: tuple[str, ...] = ()
    status: str = "open"
    tags: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def validate(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if not self.source_ref:
            raise ValueError("source_ref is empty")
        if self.brand not in BRANDS:
            raise ValueError(f"brand must be one of {', '.join(BRANDS)}, got {self.brand!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if not (math.isfinite(self.lat) and math.isfinite(self.lon)):
            raise ValueError("lat/lon must be finite")
        if not (-90 <= self.lat <= 90 and -180 <= self.lon <= 180):
            raise ValueError(f"lat/lon out of range: {self.lat}, {self.lon}")


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


STATION_COLUMNS = (
    "source",
    "source_ref",
    "name",
    "name_en",
    "brand",
    "brand_raw",
    "address",
    "lat",
    "lon",
    "h3_r7",
    "h3_r8",
    "h3_r9",
    "grades",
    "opening_hours",
    "amenities",
    "status",
)  # what a station row carries, in staging/COPY order
_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "float8",
    "float8",
    "int8",
    "int8",
    "int8",
    "text[]",
    "text",
    "text[]",
    "text",
)

STATION_FIELDS = (
    "s.id, s.source, s.source_ref, s.name, s.name_en, s.brand, s.brand_raw, s.address,"
    " ST_Y(s.geom) AS lat, ST_X(s.geom) AS lon, s.h3_r7, s.h3_r8, s.h3_r9, s.grades, s.opening_hours,"
    " s.amenities, s.status, s.version, s.created_at, s.updated_at"
)

# Fields the station manager API may set (PATCH). Once set through the API a field is the manager's
# (stations.manager_fields): bulk loads keep the stored value of such a field.
MANAGER_EDITABLE = ("name", "name_en", "address", "opening_hours", "status", "grades", "amenities")
_UPDATED = (
    "name",
    "name_en",
    "brand",
    "brand_raw",
    "address",
    "geom",
    "h3_r7",
    "h3_r8",
    "h3_r9",
    "grades",
    "opening_hours",
    "amenities",
    "status",
)


def _incoming(col: str) -> sql.Composable:
    """The value a load writes to `col`: the loaded one, or the stored one when the manager owns it."""
    if col in MANAGER_EDITABLE:
        return sql.SQL(
            "CASE WHEN {name} = ANY(stations.manager_fields) THEN stations.{c} ELSE EXCLUDED.{c} END"
        ).format(name=sql.Literal(col), c=sql.Identifier(col))
    return sql.SQL("EXCLUDED.{c}").format(c=sql.Identifier(col))


_COMPARED = [c for c in _UPDATED if c != "geom" and not c.startswith("h3_")]
# Only rows whose content changed are updated; manager-owned fields keep their stored values.
_ON_CONFLICT = sql.SQL(
    " ON CONFLICT (source, source_ref) DO UPDATE SET {sets}, version = stations.version + 1, updated_at = now()"
    " WHERE ({incoming}) IS DISTINCT FROM ({stored}) OR NOT ST_Equals(stations.geom, EXCLUDED.geom)"
).format(
    sets=sql.SQL(", ").join(
        sql.SQL("{c} = {v}").format(c=sql.Identifier(c), v=_incoming(c)) for c in _UPDATED
    ),
    incoming=sql.SQL(", ").join(_incoming(c) for c in _COMPARED),
    stored=sql.SQL(", ").join(sql.SQL("stations.{c}").format(c=sql.Identifier(c)) for c in _COMPARED),
)


def _station_json(alias: str) -> sql.Composable:
    """jsonb of a station row as audited (no version: an audit row says what changed)."""
    a = sql.Identifier(alias)
    return sql.SQL(
        "jsonb_build_object('source', {a}.source, 'source_ref', {a}.source_ref, 'name', {a}.name,"
        " 'name_en', {a}.name_en, 'brand', {a}.brand, 'brand_raw', {a}.brand_raw, 'address', {a}.address,"
        " 'lat', ST_Y({a}.geom), 'lon', ST_X({a}.geom), 'grades', {a}.grades,"
        " 'opening_hours', {a}.opening_hours, 'amenities', {a}.amenities, 'status', {a}.status)"
    ).format(a=a)


def _row(s: StationIn) -> tuple[Any, ...]:
    s.validate()
    r7, r8, r9 = cells_for_point(s.lat, s.lon)
    return (
        s.source,
        s.source_ref,
        s.name or "",
        s.name_en,
        s.brand,
        s.brand_raw,
        s.address,
        float(s.lat),
        float(s.lon),
        r7,
        r8,
        r9,
        list(s.grades),
        s.opening_hours,
        list(s.amenities),
        s.status,
    )


def upsert_station(conn: psycopg.Connection, station: StationIn, *, actor: str) -> int:
    """Insert or update one station by (source, source_ref), audited (see upsert_stations); its id."""
    upsert_stations(conn, [station], actor=actor)
    found = conn.execute(
        "SELECT id FROM stations WHERE source = %s AND source_ref = %s", (station.source, station.source_ref)
    ).fetchone()
    assert found is not None
    return int(_get(found, "id", 0))


def upsert_stations(conn: psycopg.Connection, stations: Iterable[StationIn], *, actor: str) -> UpsertCounts:
    """Bulk upsert keyed by (source, source_ref): COPY into a temporary staging table, then one
    INSERT ... ON CONFLICT that updates only the rows whose content changed and never a field the
    station manager API owns (manager_fields). Each created station gets an audit row with its content,
    each updated one a row with just the fields that changed (old and new), actor `actor`.

    Atomic (one transaction or savepoint). Duplicate keys in the input: the last one wins.
    """
    rows = [_row(s) for s in stations]
    if not rows:
        return UpsertCounts()
    with conn.transaction():
        conn.execute("DROP TABLE IF EXISTS pg_temp.stations_staging")
        conn.execute(
            "CREATE TEMP TABLE stations_staging (seq bigserial, source text, source_ref text, name text,"
            " name_en text, brand text, brand_raw text, address text, lat float8, lon float8, h3_r7 int8,"
            " h3_r8 int8, h3_r9 int8, grades text[], opening_hours text, amenities text[], status text)"
            " ON COMMIT DROP"
        )
        copy_sql = "COPY stations_staging (" + ", ".join(STATION_COLUMNS) + ") FROM STDIN"  # fixed names
        with conn.cursor() as ccur, ccur.copy(copy_sql) as copy:
            copy.set_types(list(_TYPES))
            for row in rows:
                copy.write_row(row)
        query = sql.SQL(
            "WITH src AS (SELECT DISTINCT ON (source, source_ref) * FROM stations_staging"
            "   ORDER BY source, source_ref, seq DESC),"
            " old AS (SELECT s.id, {old_json} AS j FROM stations s JOIN src USING (source, source_ref)),"
            " up AS (INSERT INTO stations (source, source_ref, name, name_en, brand, brand_raw, address, geom,"
            "   h3_r7, h3_r8, h3_r9, grades, opening_hours, amenities, status)"
            "   SELECT source, source_ref, name, name_en, brand, brand_raw, address,"
            "   ST_SetSRID(ST_MakePoint(lon, lat), 4326), h3_r7, h3_r8, h3_r9, grades, opening_hours,"
            "   amenities, status FROM src {on_conflict}"
            "   RETURNING id, (xmax = 0) AS inserted, {new_json} AS j)"
            " SELECT up.id, up.inserted, old.j AS old, up.j AS new FROM up LEFT JOIN old USING (id) ORDER BY up.id"
        ).format(old_json=_station_json("s"), new_json=_station_json("stations"), on_conflict=_ON_CONFLICT)
        changed = [_as_row(r) for r in conn.execute(query).fetchall()]
        conn.execute("DROP TABLE IF EXISTS pg_temp.stations_staging")
        entries: list[tuple[str, str, int | str, Mapping[str, Any] | None, Mapping[str, Any] | None]] = []
        for sid, created, old, new in changed:
            if created:
                entries.append(("create", "station", sid, None, new))
            else:
                entries.append(("update", "station", sid, *changed_fields(old or {}, new)))
        record_many(conn, actor=actor, entries=entries)
    distinct = len({(r[0], r[1]) for r in rows})
    inserted = sum(1 for r in changed if r[1])
    updated = len(changed) - inserted
    return UpsertCounts(inserted=inserted, updated=updated, unchanged=distinct - len(changed))


def _as_row(r: Any) -> tuple[int, bool, dict[str, Any] | None, dict[str, Any]]:
    if isinstance(r, dict):
        return int(r["id"]), bool(r["inserted"]), r["old"], r["new"]
    return int(r[0]), bool(r[1]), r[2], r[3]


def _get(row: Any, key: str, index: int) -> Any:
    return row[key] if isinstance(row, dict) else row[index]


def _dicts(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description or ()]
    return [r if isinstance(r, dict) else dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def get_station(conn: psycopg.Connection, station_id: int) -> dict[str, Any] | None:
    cur = conn.execute(f"SELECT {STATION_FIELDS} FROM stations s WHERE s.id = %s", (station_id,))
    rows = _dicts(cur)
    return rows[0] if rows else None


def stations_in_bbox(
    conn: psycopg.Connection,
    west: float,
    south: float,
    east: float,
    north: float,
    *,
    limit: int,
    after_id: int = 0,
) -> list[dict[str, Any]]:
    """Stations inside the WGS-84 box (edges included), ordered by id, at most `limit`, ids > after_id
    (pages: pass the last id of the previous page)."""
    cur = conn.execute(
        f"SELECT {STATION_FIELDS} FROM stations s"
        " WHERE s.geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326) AND s.id > %s"
        " ORDER BY s.id LIMIT %s",
        (west, south, east, north, after_id, limit),
    )
    return _dicts(cur)


def nearby_stations(
    conn: psycopg.Connection,
    lat: float,
    lon: float,
    radius_m: float,
    *,
    limit: int,
    grade: str | None = None,
    use_h3: bool = True,
    use_bbox: bool = True,
    max_cells: int = DEFAULT_MAX_CELLS,
    expand: bool = True,
    extra_sql: sql.Composable | None = None,
    extra_params: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Stations within `radius_m` (geodesic, WGS-84 spheroid) of the point, nearest first, in ONE
    statement (prepared by psycopg once it repeats).

    With `expand` (the default) the statement first takes the `limit` stations nearest by planar
    distance (a plain GiST KNN walk on geom): they are `limit` stations within `d_k`, the largest of
    their geodesic distances, so the `limit` geodesically nearest lie within `d_k` too and the exact
    search runs on that disk only, through its own degree box (the full radius when fewer are found
    or `d_k` exceeds it). The answer is the one of the search over the full radius; at 1M stations
    the statement takes about 1.5 ms instead of 78 ms with the full radius's prefilters.

    Prefilters, both conservative: the H3 disk (`h3_rX = ANY(cells)`, see geo._h3cells) and a degree
    box on the GiST-indexed geom (the planner picks or combines them); then the exact
    `ST_DWithin(geography)`. `grade` keeps only stations that list that grade. Each row has
    `distance_m` (metres on the WGS-84 spheroid). Ties by id.

    `extra_sql` adds columns computed per found station (alias `s`; e.g. store._prices.IN_FORCE_COLUMN),
    its values bound from `extra_params`.
    """
    params: dict[str, Any] = {"lat": lat, "lon": lon, "radius": radius_m, "limit": limit, "grade": grade}
    box = _degree_box(lat, lon, radius_m) if use_bbox else None
    # The full radius's prefilters are used without `expand`, or when its bound has no degree box;
    # otherwise the H3 disk is not computed at all (up to a thousand cells per request).
    full_radius = not expand or box is None
    cover = covering_cells(lat, lon, radius_m, max_cells=max_cells) if use_h3 and full_radius else None
    prefilter = ""
    if cover is not None and cover.cells is not None:
        # column name from a fixed set {h3_r7, h3_r8, h3_r9}, never from input
        column = {7: "s.h3_r7", 8: "s.h3_r8", 9: "s.h3_r9"}[cover.res]
        prefilter = f" AND {column} = ANY(%(cells)s::bigint[])"
        # as one array literal: psycopg would otherwise inspect each of up to thousands of ints
        params["cells"] = "{" + ",".join(map(str, cover.cells)) + "}"
    if box is not None:  # a second conservative prefilter the planner may combine (GiST on geom)
        prefilter += " AND s.geom && ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326)"
        params.update(zip(("w", "s", "e", "n"), box, strict=True))
    grade_sql = " AND (%(grade)s::text IS NULL OR %(grade)s::text = ANY(s.grades))"
    within = "%(radius)s"
    knn = ""
    near_filter = prefilter
    if expand:
        # d_k plus a centimetre: ST_DWithin and ST_Distance may differ in the last bits; stations beyond
        # d_k sort after the `limit` found within it, so the margin never changes the answer.
        knn = (
            # a plain KNN walk of the GiST index (no other prefilter, or the planner sorts a bitmap scan)
            " knn AS (SELECT ST_Distance(s.geom::geography, q.g) AS d FROM stations s, q"
            f" WHERE true{grade_sql}"
            " ORDER BY s.geom <-> ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) LIMIT %(limit)s),"
            " bound AS MATERIALIZED (SELECT r, dlat, dlat / cos(radians(abs(%(lat)s) + dlat)) AS dlon FROM"
            " (SELECT r, r * 1.1 / 110574.0 + 1e-6 AS dlat FROM (SELECT CASE WHEN count(*) < %(limit)s"
            " THEN %(radius)s::float8 ELSE least(%(radius)s::float8, max(d) + 0.01) END AS r FROM knn) k) b),"
        )
        within = "(SELECT r FROM bound)"
        # The exact search runs on the disk of radius d_k only: its own degree box (the rule of
        # _degree_box, from d_k) on the GiST index, instead of the full radius's H3 cells and box,
        # which in a dense city (1M stations) hold every station within the radius.
        near_filter = (
            " AND s.geom && ST_MakeEnvelope(%(lon)s - (SELECT dlon FROM bound), %(lat)s - (SELECT dlat FROM bound),"
            " %(lon)s + (SELECT dlon FROM bound), %(lat)s + (SELECT dlat FROM bound), 4326)"
        )
        if box is None:  # near a pole or the antimeridian: the full-radius prefilters, as without expand
            near_filter = prefilter
    extra = sql.SQL("") if extra_sql is None else sql.SQL(", ") + extra_sql
    query = (
        sql.SQL(
            "WITH q AS MATERIALIZED (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography AS g),"
            + knn
            + " near AS (SELECT s.id, ST_Distance(s.geom::geography, q.g) AS distance_m FROM stations s, q"
            + f" WHERE ST_DWithin(s.geom::geography, q.g, {within}){near_filter}{grade_sql}"
            + " ORDER BY distance_m, s.id LIMIT %(limit)s)"
            + f" SELECT {STATION_FIELDS}, near.distance_m"
        )
        + extra
        + sql.SQL(" FROM near JOIN stations s USING (id) ORDER BY near.distance_m, s.id")
    )
    if extra_params:
        params.update(extra_params)
    return _dicts(conn.execute(query, params))


@dataclass(frozen=True)
class NearbyOffer:
    """A station found by nearby_offers: its row (with distance_m), prices in force, promotions valid."""

    row: dict[str, Any]
    prices: dict[str, CurrentPrice]
    promotions: list[Promotion]


def nearby_offers(
    conn: psycopg.Connection,
    lat: float,
    lon: float,
    radius_m: float,
    *,
    limit: int,
    at: datetime,
    grade: str | None = None,
) -> list[NearbyOffer]:
    """nearby_stations with, per station, the prices in force at `at` (store._prices.current_prices)
    and the promotions valid then (store._promotions.promotions_for_stations): one round trip."""
    rows = nearby_stations(
        conn,
        lat,
        lon,
        radius_m,
        limit=limit,
        grade=grade,
        extra_sql=sql.SQL(", ").join([IN_FORCE_COLUMN, VALID_AT_COLUMN]),
        extra_params={**in_force_params(at), "promo_at": at},
    )
    out = []
    for r in rows:
        sid = int(r["id"])
        prices = prices_from_json(sid, r.pop("prices_in_force"))
        out.append(NearbyOffer(r, prices, promotions_from_json(r.pop("promotions_valid"))))
    return out


def _degree_box(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float] | None:
    """A WGS-84 box that surely contains the circle (10% margin), or None near a pole/the antimeridian."""
    dlat = radius_m * 1.1 / 110_574.0 + 1e-6  # 110,574 m: the shortest degree of latitude (equator)
    if abs(lat) + dlat >= 89.0:
        return None
    dlon = dlat / math.cos(math.radians(abs(lat) + dlat))
    if lon - dlon < -180.0 or lon + dlon > 180.0:
        return None
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def station_ids_in_region(
    conn: psycopg.Connection, bbox: Sequence[float], *, sources: Sequence[str] = SOURCES
) -> list[dict[str, Any]]:
    """id, source, source_ref, brand, grades, lat, lon of the stations in a bbox, by (source, source_ref)."""
    west, south, east, north = bbox
    cur = conn.execute(
        "SELECT s.id, s.source, s.source_ref, s.brand, s.grades, ST_Y(s.geom) AS lat, ST_X(s.geom) AS lon"
        " FROM stations s WHERE s.geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326) AND s.source = ANY(%s)"
        " ORDER BY s.source, s.source_ref",
        (west, south, east, north, list(sources)),
    )
    return _dicts(cur)


# ---- ranking reads (stations along a route) -------------------------------------------------------
# The price and promotion reads over a time window are store._prices.station_prices_between and
# store._promotions.promotions_between.


def stations_in_cells(
    conn: psycopg.Connection,
    *,
    res: int,
    cells: Sequence[int] | None,
    bbox: Sequence[float],
    grade: str | None = None,
    limit: int = 5_000,
) -> list[dict[str, Any]]:
    """Stations whose H3 cell at `res` (7, 8 or 9) is in `cells` and inside the WGS-84 `bbox`
    (west, south, east, north), ordered by id; `cells` None = the box alone. Both filters are
    conservative prefilters for a corridor search: the caller checks the exact distance."""
    column = {7: "s.h3_r7", 8: "s.h3_r8", 9: "s.h3_r9"}[res]  # fixed set, never from input
    west, south, east, north = bbox
    params: dict[str, Any] = {"w": west, "s": south, "e": east, "n": north, "grade": grade, "limit": limit}
    cell_filter = ""
    if cells is not None:
        cell_filter = f" AND {column} = ANY(%(cells)s::bigint[])"
        params["cells"] = list(cells)
    cur = conn.execute(
        f"SELECT {STATION_FIELDS} FROM stations s"
        " WHERE s.geom && ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326)"
        f"{cell_filter}"
        " AND (%(grade)s::text IS NULL OR %(grade)s::text = ANY(s.grades))"
        " ORDER BY s.id LIMIT %(limit)s",
        params,
    )
    return _dicts(cur)
