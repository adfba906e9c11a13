"""Bulk onboarding writes: stations and prices staged with COPY, matched, compared, then applied.

Everything here runs inside the caller's transaction (the loaders use one REPEATABLE READ transaction
per file, see ingest/_stations.py): staging tables are temporary (ON COMMIT DROP), and nothing is
written to the real tables until `apply_*`, which the loaders call only when the whole file is valid
(or --allow-rejects). Every write is compared with what is stored first, so loading the same file
twice changes nothing: no new rows, no version/updated_at bump, no audit rows.

Station matching, in order:
1. the same (source, source_ref) as a stored station, or as a remembered alias (station_refs);
2. else the nearest stored station of the same normalised brand within MATCH_RADIUS_M (geodesic;
   for brand `other`, which is no brand, the raw brand (else the name) must also be equal):
   the row updates that station ("matched by location") and its key is remembered as an alias.
Two rows of one file that land on the same stored station: the later one is rejected.
Source precedence: a row never overwrites a station from a stronger source
(onboarding > osm > demo); such a row only records its alias ("kept"). A field the station manager API
set (stations.manager_fields) keeps its stored value whatever the file says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from store._stations import MANAGER_EDITABLE, STATION_COLUMNS

MATCH_RADIUS_M = 50.0
SOURCE_PRECEDENCE = ["demo", "osm", "onboarding"]  # weakest first
# Station columns an onboarding file may leave out; absent columns keep the stored value on update.
KEEPABLE = (
    "name",
    "name_en",
    "brand",
    "brand_raw",
    "address",
    "grades",
    "opening_hours",
    "amenities",
    "status",
)

STAGE_COLUMNS = ("seq", "row_no", *STATION_COLUMNS)
_STAGE_TYPES = (
    "int4",
    "int4",
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


def _station_json(alias: str) -> str:
    """jsonb of a station row (fixed SQL fragment; `alias` is a constant of this module)."""
    a = alias
    return (
        f"jsonb_build_object('source', {a}.source, 'source_ref', {a}.source_ref, 'name', {a}.name,"
        f" 'name_en', {a}.name_en, 'brand', {a}.brand, 'brand_raw', {a}.brand_raw, 'address', {a}.address,"
        f" 'lat', ST_Y({a}.geom), 'lon', ST_X({a}.geom), 'grades', {a}.grades,"
        f" 'opening_hours', {a}.opening_hours, 'amenities', {a}.amenities, 'status', {a}.status,"
        f" 'version', {a}.version)"
    )


@dataclass
class StationPlan:
    """What applying the staged stations would do."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0
    matched_by_location: int = 0
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (row, field, reason)
    examples: dict[str, list[str]] = field(default_factory=dict)


def stage_stations(conn: psycopg.Connection, rows: Iterable[Sequence[Any]]) -> int:
    """Create the staging table and COPY `rows` (tuples in STAGE_COLUMNS order) into it."""
    conn.execute("DROP TABLE IF EXISTS pg_temp.onboard_stations")
    conn.execute(
        "CREATE TEMP TABLE onboard_stations (seq int4 PRIMARY KEY, row_no int4, source text, source_ref text,"
        " name text, name_en text, brand text, brand_raw text, address text, lat float8, lon float8,"
        " h3_r7 int8, h3_r8 int8, h3_r9 int8, grades text[], opening_hours text, amenities text[],"
        " status text, target_id bigint, matched_by text, match_m float8, action text DEFAULT 'new', reject text)"
        " ON COMMIT DROP"
    )
    n = 0
    # text[] columns go as array literals (typed text, parsed by the server): the same few lists
    # repeat on every row, and a cached literal is much cheaper than dumping a list per row.
    arrays = [i for i, t in enumerate(_STAGE_TYPES) if t == "text[]"]
    types = ["text" if t == "text[]" else t for t in _STAGE_TYPES]
    literals: dict[tuple[Any, ...], str] = {}
    with (
        conn.cursor() as cur,
        cur.copy("COPY onboard_stations (" + ", ".join(STAGE_COLUMNS) + ") FROM STDIN") as cp,
    ):
        cp.set_types(types)
        for row in rows:
            row = list(row)
            for i in arrays:
                v = row[i]
                if v is not None:
                    key = tuple(v)
                    lit = literals.get(key)
                    if lit is None:
                        lit = literals[key] = _array_literal(key)
                    row[i] = lit
            cp.write_row(row)
            n += 1
    conn.execute("CREATE INDEX ON onboard_stations (source, source_ref)")
    conn.execute("ANALYZE onboard_stations")
    return n


def _array_literal(items: Sequence[Any]) -> str:
    """A PostgreSQL text[] input literal: every element double-quoted (NULL for None)."""

    def quote(x: Any) -> str:
        if x is None:
            return "NULL"
        return '"' + str(x).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(quote(x) for x in items) + "}"


def plan_stations(conn: psycopg.Connection, *, keep: Iterable[str] = ()) -> StationPlan:
    """Match the staged rows to stored stations, reject conflicts, classify new/updated/unchanged.

    `keep`: columns absent from the file; a matched row takes the stored value for them.
    """
    conn.execute(
        "UPDATE onboard_stations st SET target_id = s.id, matched_by = 'key'"
        " FROM stations s WHERE s.source = st.source AND s.source_ref = st.source_ref"
    )
    conn.execute(
        "UPDATE onboard_stations st SET target_id = r.station_id, matched_by = 'key' FROM station_refs r"
        " WHERE st.target_id IS NULL AND r.source = st.source AND r.source_ref = st.source_ref"
    )
    conn.execute(
        "UPDATE onboard_stations st SET target_id = m.id, matched_by = 'location', match_m = m.d"
        " FROM (SELECT q.seq, c.id, c.d FROM onboard_stations q CROSS JOIN LATERAL ("
        "   SELECT s.id, ST_Distance(s.geom::geography, ST_SetSRID(ST_MakePoint(q.lon, q.lat), 4326)::geography) AS d"
        "   FROM stations s WHERE s.brand = q.brand AND (q.brand <> 'other'"
        "     OR lower(coalesce(s.brand_raw, s.name, '')) = lower(coalesce(q.brand_raw, q.name, '')))"
        "   AND s.geom && ST_Expand(ST_SetSRID(ST_MakePoint(q.lon, q.lat), 4326),"
        "        0.0006 / greatest(cos(radians(q.lat)), 0.05), 0.0006)"
        "   AND ST_DWithin(s.geom::geography, ST_SetSRID(ST_MakePoint(q.lon, q.lat), 4326)::geography, %s)"
        "   ORDER BY d, s.id LIMIT 1) c WHERE q.target_id IS NULL) m"
        " WHERE m.seq = st.seq",
        (MATCH_RADIUS_M,),
    )
    # Two rows on one stored station: the key match wins, else the earlier row; the others are rejected.
    conn.execute(
        "UPDATE onboard_stations st SET action = NULL, reject = format("
        "   CASE WHEN st.matched_by = 'location'"
        "   THEN 'same brand within %%s m of station %%s, which row %%s of this file already updates'"
        "   ELSE 'station %%s is already updated by row %%s of this file (same key or alias)' END,"
        "   variadic CASE WHEN st.matched_by = 'location' THEN ARRAY[%s::text, r.target_id::text, r.first_row::text]"
        "   ELSE ARRAY[r.target_id::text, r.first_row::text] END)"
        " FROM (SELECT seq, target_id, row_number() OVER w AS rk, first_value(row_no) OVER w AS first_row"
        "       FROM onboard_stations WHERE target_id IS NOT NULL"
        "       WINDOW w AS (PARTITION BY target_id ORDER BY (matched_by = 'key') DESC, seq)) r"
        " WHERE r.seq = st.seq AND r.rk > 1",
        (f"{MATCH_RADIUS_M:g}",),
    )
    for col in KEEPABLE:
        if col in set(keep):
            ident = sql.Identifier(col)
            conn.execute(
                sql.SQL(
                    "UPDATE onboard_stations st SET {c} = s.{c} FROM stations s"
                    " WHERE s.id = st.target_id AND st.reject IS NULL"
                ).format(c=ident)
            )
    # fields the station manager API owns keep the stored value (a file never overwrites them); most
    # loads match no such station (an index answers that), and the staging statistics must know the
    # matches before the join is planned
    owned = conn.execute("SELECT EXISTS (SELECT 1 FROM stations WHERE manager_fields <> '{}')").fetchone()
    if owned is not None and (owned["exists"] if isinstance(owned, dict) else owned[0]):
        conn.execute("ANALYZE onboard_stations")
        _keep_manager_fields(conn)
    conn.execute(
        "UPDATE onboard_stations st SET action = CASE"
        "  WHEN array_position(%(order)s::text[], st.source) < array_position(%(order)s::text[], s.source)"
        "    THEN 'kept'"
        "  WHEN (s.name, s.name_en, s.brand, s.brand_raw, s.address, s.grades, s.opening_hours, s.amenities,"
        "        s.status) IS DISTINCT FROM (st.name, st.name_en, st.brand, st.brand_raw, st.address, st.grades,"
        "        st.opening_hours, st.amenities, st.status)"
        "    OR ST_X(s.geom) <> st.lon OR ST_Y(s.geom) <> st.lat THEN 'updated'"
        "  ELSE 'unchanged' END"
        " FROM stations s WHERE s.id = st.target_id AND st.reject IS NULL",
        {"order": SOURCE_PRECEDENCE},
    )
    # unmatched rows keep the staging default action 'new' (rejected rows have none)
    plan = StationPlan()
    for action, by, n in _rows(
        conn, "SELECT action, matched_by, count(*) FROM onboard_stations WHERE reject IS NULL GROUP BY 1, 2"
    ):
        n = int(n)
        if action == "new":
            plan.new += n
        elif action == "updated":
            plan.updated += n
        elif action == "kept":
            plan.kept += n
        else:
            plan.unchanged += n
        if by == "location":
            plan.matched_by_location += n
    for row_no, reject in _rows(
        conn, "SELECT row_no, reject FROM onboard_stations WHERE reject IS NOT NULL ORDER BY row_no"
    ):
        plan.rejects.append((int(row_no), "lat,lon", str(reject)))
    for action, label in (("new", "new"), ("updated", "updated"), ("unchanged", "unchanged")):
        for row_no, ref, name, by, tid, m in _rows(
            conn,
            "SELECT row_no, source_ref, name, matched_by, target_id, match_m FROM onboard_stations"
            " WHERE action = %s ORDER BY seq LIMIT 5",
            (action,),
        ):
            how = ""
            if tid is not None:
                how = f" -> station {tid}" + (
                    f" (matched by location, {float(m):.0f} m)" if by == "location" else ""
                )
            plan.examples.setdefault(label, []).append(f"row {row_no} {ref} {name or ''}{how}")
    return plan


MOVE_WARN_M = 100.0  # a station moved further than this by a file is worth a second look
SAME_NAME_WARN_M = 1000.0  # same name and brand this close but not matched: probably the same station


def coordinate_warnings(
    conn: psycopg.Connection, gcj_readings: Sequence[tuple[int, float, float]]
) -> list[tuple[int, str]]:
    """(row, warning) for staged rows (after `plan_stations`) whose coordinates look wrong:
    - a station matched by its code moves more than MOVE_WARN_M;
    - a new station has the same brand and name as a stored one within SAME_NAME_WARN_M (matching looks
      only MATCH_RADIUS_M around, so a GCJ-02 point read as WGS-84 would create a second station);
    - `gcj_readings` (seq, lat, lon): the file's WGS-84 points read as GCJ-02 instead; when such a reading
      of a row that adds a station or moves one lands within MATCH_RADIUS_M of a stored station, the
      file's coordinates look like GCJ-02.
    Warnings only: the operator decides (the rows load as given)."""
    out: list[tuple[int, str]] = []
    for row_no, tid, name, d in _rows(
        conn,
        "SELECT st.row_no, s.id, s.name, ST_Distance(s.geom::geography,"
        "   ST_SetSRID(ST_MakePoint(st.lon, st.lat), 4326)::geography) AS d"
        " FROM onboard_stations st JOIN stations s ON s.id = st.target_id"
        " WHERE st.reject IS NULL AND st.matched_by = 'key' AND st.action <> 'kept'"
        "   AND NOT ST_DWithin(s.geom::geography, ST_SetSRID(ST_MakePoint(st.lon, st.lat), 4326)::geography, %s)"
        " ORDER BY st.row_no",
        (MOVE_WARN_M,),
    ):
        out.append(
            (
                int(row_no),
                f"moves station {tid} ({name}) by {float(d):.0f} m: are these the right coordinates?",
            )
        )
    for row_no, tid, name, d in _rows(
        conn,
        "SELECT st.row_no, c.id, c.name, c.d FROM onboard_stations st CROSS JOIN LATERAL ("
        "   SELECT s.id, s.name, ST_Distance(s.geom::geography,"
        "     ST_SetSRID(ST_MakePoint(st.lon, st.lat), 4326)::geography) AS d"
        "   FROM stations s WHERE s.brand = st.brand AND s.name <> ''"
        "     AND lower(btrim(s.name)) = lower(btrim(st.name))"
        "     AND s.geom && ST_Expand(ST_SetSRID(ST_MakePoint(st.lon, st.lat), 4326),"
        "          0.012 / greatest(cos(radians(st.lat)), 0.05), 0.012)"
        "     AND ST_DWithin(s.geom::geography, ST_SetSRID(ST_MakePoint(st.lon, st.lat), 4326)::geography, %s)"
        "   ORDER BY d, s.id LIMIT 1) c"
        " WHERE st.reject IS NULL AND st.target_id IS NULL AND coalesce(st.name, '') <> ''"
        " ORDER BY st.row_no",
        (SAME_NAME_WARN_M,),
    ):
        out.append(
            (
                int(row_no),
                f"same name and brand as station {tid} ({name}) {float(d):.0f} m away: a duplicate? "
                f"(stations are matched only within {MATCH_RADIUS_M:g} m)",
            )
        )
    # the GCJ-02 test, for the rows that add a station or move one (a reload of a file costs nothing)
    placing = {
        int(seq)
        for (seq,) in _rows(
            conn,
            "SELECT st.seq FROM onboard_stations st LEFT JOIN stations s ON s.id = st.target_id"
            " WHERE st.reject IS NULL AND (s.id IS NULL OR NOT ST_DWithin(s.geom::geography,"
            "   ST_SetSRID(ST_MakePoint(st.lon, st.lat), 4326)::geography, %s))",
            (MATCH_RADIUS_M,),
        )
    }
    gcj_readings = [g for g in gcj_readings if g[0] in placing]
    if gcj_readings:
        seqs, lats, lons = zip(*gcj_readings, strict=True)
        for row_no, tid, name, d in _rows(
            conn,
            "SELECT st.row_no, c.id, c.name, c.d"
            " FROM unnest(%s::int4[], %s::float8[], %s::float8[]) AS g(seq, lat, lon)"
            " JOIN onboard_stations st ON st.seq = g.seq CROSS JOIN LATERAL ("
            "   SELECT s.id, s.name, ST_Distance(s.geom::geography,"
            "     ST_SetSRID(ST_MakePoint(g.lon, g.lat), 4326)::geography) AS d"
            "   FROM stations s WHERE s.geom && ST_Expand(ST_SetSRID(ST_MakePoint(g.lon, g.lat), 4326),"
            "       0.0006 / greatest(cos(radians(g.lat)), 0.05), 0.0006)"
            "     AND ST_DWithin(s.geom::geography, ST_SetSRID(ST_MakePoint(g.lon, g.lat), 4326)::geography, %s)"
            "   ORDER BY d, s.id LIMIT 1) c"
            " WHERE st.reject IS NULL ORDER BY st.row_no",
            (list(seqs), list(lats), list(lons), MATCH_RADIUS_M),
        ):
            out.append(
                (
                    int(row_no),
                    "these look like GCJ-02 coordinates (Amap/Tencent) marked wgs84: read as gcj02 they land "
                    f"{float(d):.0f} m from station {tid} ({name}); set coord=gcj02 if they came from such a map",
                )
            )
    out.sort(key=lambda w: w[0])
    return out


def _keep_manager_fields(conn: psycopg.Connection) -> None:
    """Staged rows matched to a station take its stored value of every field the manager API owns."""
    conn.execute(
        sql.SQL(
            "UPDATE onboard_stations st SET {sets} FROM stations s"
            " WHERE s.id = st.target_id AND st.reject IS NULL AND s.manager_fields <> '{{}}'"
        ).format(
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = CASE WHEN {n} = ANY(s.manager_fields) THEN s.{c} ELSE st.{c} END").format(
                    c=sql.Identifier(col), n=sql.Literal(col)
                )
                for col in MANAGER_EDITABLE
            )
        )
    )


def _rows(conn: psycopg.Connection, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    cur = conn.execute(query, params)
    return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in cur.fetchall()]


def drop_rejected_stations(conn: psycopg.Connection) -> list[int]:
    """Staged rows rejected by plan_stations (their seq numbers), removed from the staging table."""
    return [
        int(r[0]) for r in _rows(conn, "DELETE FROM onboard_stations WHERE reject IS NOT NULL RETURNING seq")
    ]


def apply_stations(conn: psycopg.Connection, *, actor: str) -> tuple[int, int]:
    """Write the planned station changes with their audit rows; return (inserted, updated).

    After this, every staged row's target_id is the id of its station (prices join on it).
    """
    conn.execute(
        "INSERT INTO station_refs (source, source_ref, station_id)"
        " SELECT st.source, st.source_ref, st.target_id FROM onboard_stations st"
        " JOIN stations s ON s.id = st.target_id"
        " WHERE st.matched_by = 'location' AND st.reject IS NULL"
        " AND (s.source, s.source_ref) <> (st.source, st.source_ref)"
        " ON CONFLICT DO NOTHING"
    )
    updated = conn.execute(
        "WITH old AS (SELECT s.id, " + _station_json("s") + " AS j FROM stations s"
        "   JOIN onboard_stations st ON st.target_id = s.id WHERE st.action = 'updated'),"
        " upd AS (UPDATE stations s SET name = st.name, name_en = st.name_en, brand = st.brand,"
        "   brand_raw = st.brand_raw, address = st.address, geom = ST_SetSRID(ST_MakePoint(st.lon, st.lat), 4326),"
        "   h3_r7 = st.h3_r7, h3_r8 = st.h3_r8, h3_r9 = st.h3_r9, grades = st.grades,"
        "   opening_hours = st.opening_hours, amenities = st.amenities, status = st.status,"
        "   version = s.version + 1, updated_at = now()"
        "   FROM onboard_stations st WHERE st.target_id = s.id AND st.action = 'updated'"
        "   RETURNING s.id, " + _station_json("s") + " AS j)"
        " INSERT INTO audit_log (actor, action, entity, entity_id, old_value, new_value)"
        " SELECT %s, 'update', 'station', upd.id::text, old.j, upd.j FROM upd JOIN old USING (id)",
        (actor,),
    ).rowcount
    inserted = conn.execute(
        "WITH ins AS (INSERT INTO stations (source, source_ref, name, name_en, brand, brand_raw, address, geom,"
        "   h3_r7, h3_r8, h3_r9, grades, opening_hours, amenities, status)"
        "   SELECT source, source_ref, coalesce(name, ''), name_en, coalesce(brand, 'other'), brand_raw, address,"
        "   ST_SetSRID(ST_MakePoint(lon, lat), 4326), h3_r7, h3_r8, h3_r9, coalesce(grades, '{}'),"
        "   opening_hours, coalesce(amenities, '{}'), coalesce(status, 'open')"
        "   FROM onboard_stations WHERE action = 'new' ORDER BY seq"
        "   RETURNING stations.*),"
        " aud AS (INSERT INTO audit_log (actor, action, entity, entity_id, old_value, new_value)"
        "   SELECT %s, 'create', 'station', ins.id::text, NULL, " + _station_json("ins") + " FROM ins)"
        " UPDATE onboard_stations st SET target_id = ins.id FROM ins"
        " WHERE st.action = 'new' AND st.source = ins.source AND st.source_ref = ins.source_ref",
        (actor,),
    ).rowcount
    return inserted, updated


# ---- prices ------------------------------------------------------------------------------------------

PRICE_STAGE_COLUMNS = (
    "seq",
    "row_no",
    "station_seq",
    "station_id",
    "grade",
    "price_cny",
    "effective_from",
    "observed_at",
    "source",
    "explicit",
)
_PRICE_TYPES = (
    "int4",
    "int4",
    "int4",
    "int8",
    "text",
    "numeric",
    "timestamptz",
    "timestamptz",
    "text",
    "bool",
)


@dataclass
class PricePlan:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)


def stage_prices(conn: psycopg.Connection, rows: Iterable[Sequence[Any]]) -> int:
    """Staging for price rows (PRICE_STAGE_COLUMNS order). `station_seq` points at a staged station
    row (stations files) and is resolved by plan_prices; `station_id` is set directly (price feeds).
    `explicit` False = effective_from was defaulted to now: then a price equal to the one in force is
    not a change."""
    conn.execute("DROP TABLE IF EXISTS pg_temp.onboard_prices")
    conn.execute(
        "CREATE TEMP TABLE onboard_prices (seq int4 PRIMARY KEY, row_no int4, station_seq int4, station_id int8,"
        " grade text, price_cny numeric(6, 2), effective_from timestamptz, observed_at timestamptz,"
        " source text, explicit bool, action text, price_id int8) ON COMMIT DROP"
    )
    n = 0
    with (
        conn.cursor() as cur,
        cur.copy("COPY onboard_prices (" + ", ".join(PRICE_STAGE_COLUMNS) + ") FROM STDIN") as cp,
    ):
        cp.set_types(list(_PRICE_TYPES))
        for row in rows:
            cp.write_row(row)
            n += 1
    conn.execute("ANALYZE onboard_prices")
    return n


def plan_prices(conn: psycopg.Connection, *, with_stations: bool = False) -> PricePlan:
    """Classify staged prices: unchanged (same key and price/source, or a defaulted effective_from
    with the price already in force), updated (same key, other price), new.

    with_stations: the rows point at staged stations (station_seq); rows of rejected stations are
    dropped, and rows of stations not stored yet are new."""
    if with_stations:
        conn.execute(
            "DELETE FROM onboard_prices p USING onboard_stations st"
            " WHERE st.seq = p.station_seq AND (st.reject IS NOT NULL)"
        )
        conn.execute(
            "DELETE FROM onboard_prices p WHERE p.station_seq IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM onboard_stations st WHERE st.seq = p.station_seq)"
        )
        source = (
            "SELECT q.seq, q.grade, q.price_cny, q.effective_from, q.source, q.explicit,"
            " coalesce(q.station_id, st.target_id) AS station_id"
            " FROM onboard_prices q LEFT JOIN onboard_stations st ON st.seq = q.station_seq"
        )
    else:
        source = (
            "SELECT q.seq, q.grade, q.price_cny, q.effective_from, q.source, q.explicit, q.station_id"
            " FROM onboard_prices q"
        )
    conn.execute(
        "UPDATE onboard_prices op SET station_id = x.station_id, price_id = x.pid, action = x.action FROM ("
        " SELECT q.seq, q.station_id, p.id AS pid, CASE"
        "   WHEN p.id IS NOT NULL THEN CASE WHEN (p.price_cny, p.source) = (q.price_cny, q.source)"
        "     THEN 'unchanged' ELSE 'updated' END"
        "   WHEN NOT q.explicit AND q.station_id IS NOT NULL AND q.price_cny = (SELECT f.price_cny FROM prices f"
        "     WHERE f.station_id = q.station_id AND f.grade = q.grade AND f.effective_from <= q.effective_from"
        "     ORDER BY f.effective_from DESC LIMIT 1) THEN 'unchanged'"
        "   ELSE 'new' END AS action"
        " FROM (" + source + ") q LEFT JOIN prices p ON p.station_id = q.station_id AND p.grade = q.grade"
        "   AND p.effective_from = q.effective_from) x"
        " WHERE x.seq = op.seq"
    )
    plan = PricePlan()
    for action, n in _rows(conn, "SELECT action, count(*) FROM onboard_prices GROUP BY 1"):
        setattr(plan, str(action), int(n))
    for action in ("new", "updated"):
        for row_no, sid, grade, price, ef in _rows(
            conn,
            "SELECT row_no, station_id, grade, price_cny, effective_from FROM onboard_prices"
            " WHERE action = %s ORDER BY seq LIMIT 5",
            (action,),
        ):
            station = f"station {sid}" if sid is not None else "new station"
            plan.examples.setdefault(f"prices {action}", []).append(
                f"row {row_no} {station} {grade}# {price} CNY/L from {ef.isoformat()}"
            )
    return plan


@dataclass(frozen=True)
class HeldPrice:
    decision_id: int
    row_no: int
    station_id: int
    grade: str
    price_cny: Decimal
    planned: str  # what it would have been: new | updated


def hold_anomalous_prices(conn: psycopg.Connection, *, zone: str, actor: str) -> list[HeldPrice]:
    """Screen each planned new or corrected price of a feed with risk control (the `price` rules,
    store._price_review); one that is not allowed is marked `held` (apply_prices skips it): its decision
    waits for an operator, whose approval publishes it."""
    from store._price_review import price_decision
    from store._prices import PriceIn

    held: list[HeldPrice] = []
    for seq, row_no, sid, grade, price, ef, source, action in _rows(
        conn,
        "SELECT seq, row_no, station_id, grade, price_cny, effective_from, source, action FROM onboard_prices"
        " WHERE action IN ('new', 'updated') AND station_id IS NOT NULL ORDER BY seq",
    ):
        d = price_decision(conn, PriceIn(int(sid), grade, Decimal(price), ef, source), zone=zone, actor=actor)
        if d.outcome != "allow":
            conn.execute("UPDATE onboard_prices SET action = 'held' WHERE seq = %s", (seq,))
            assert d.id is not None
            held.append(HeldPrice(d.id, int(row_no), int(sid), str(grade), Decimal(price), str(action)))
    return held


def staged_prices_with_grades(
    conn: psycopg.Connection,
) -> list[tuple[int, int, str, Decimal, datetime, tuple[str, ...]]]:
    """(seq, row_no, grade, price, effective_from, grades of its station) of the staged prices of a
    stations file: the station's grades as planned (the stored ones when the file has no grades column;
    none for a new station without them)."""
    return [
        (int(seq), int(row_no), str(grade), Decimal(price), ef, tuple(grades or ()))
        for seq, row_no, grade, price, ef, grades in _rows(
            conn,
            "SELECT p.seq, p.row_no, p.grade, p.price_cny, p.effective_from, st.grades FROM onboard_prices p"
            " JOIN onboard_stations st ON st.seq = p.station_seq WHERE st.reject IS NULL ORDER BY p.seq",
        )
    ]


def drop_staged_prices(conn: psycopg.Connection, seqs: Sequence[int]) -> None:
    if seqs:
        conn.execute("DELETE FROM onboard_prices WHERE seq = ANY(%s)", (list(seqs),))


_PRICE_JSON = (
    "jsonb_build_object('station_id', {a}.station_id, 'grade', {a}.grade, 'price_cny', {a}.price_cny,"
    " 'effective_from', {a}.effective_from, 'source', {a}.source)"
)


def apply_prices(conn: psycopg.Connection, *, actor: str, with_stations: bool = False) -> tuple[int, int]:
    """Write the planned prices with audit rows; bump the version of each station whose prices changed
    (the station's version covers its prices; stations written by this same load already got theirs).

    Returns (inserted, updated)."""
    updated = conn.execute(
        "WITH old AS (SELECT p.id, " + _PRICE_JSON.format(a="p") + " AS j FROM prices p"
        "   JOIN onboard_prices op ON op.price_id = p.id WHERE op.action = 'updated'),"
        " upd AS (UPDATE prices p SET price_cny = op.price_cny, source = op.source,"
        "   observed_at = coalesce(op.observed_at, now())"
        "   FROM onboard_prices op WHERE op.price_id = p.id AND op.action = 'updated'"
        "   RETURNING p.id, " + _PRICE_JSON.format(a="p") + " AS j)"
        " INSERT INTO audit_log (actor, action, entity, entity_id, old_value, new_value)"
        " SELECT %s, 'update', 'price', upd.id::text, old.j, upd.j FROM upd JOIN old USING (id)",
        (actor,),
    ).rowcount
    # with_stations: the prices of stations created by this load take their ids from the staged
    # station rows (apply_stations set target_id), joined here rather than copied over first.
    station_id = (
        "coalesce(op.station_id, st.target_id) FROM onboard_prices op"
        " LEFT JOIN onboard_stations st ON st.seq = op.station_seq"
        if with_stations
        else "op.station_id FROM onboard_prices op"
    )
    inserted = conn.execute(
        "WITH ins AS (INSERT INTO prices (grade, price_cny, effective_from, observed_at, source, station_id)"
        "   SELECT op.grade, op.price_cny, op.effective_from, coalesce(op.observed_at, now()), op.source, "
        + station_id
        + " WHERE op.action = 'new' ORDER BY op.seq RETURNING prices.*)"
        " INSERT INTO audit_log (actor, action, entity, entity_id, old_value, new_value)"
        " SELECT %s, 'create', 'price', ins.id::text, NULL, " + _PRICE_JSON.format(a="ins") + " FROM ins",
        (actor,),
    ).rowcount
    if with_stations:
        conn.execute(
            "UPDATE stations s SET version = s.version + 1 FROM (SELECT DISTINCT p.station_id"
            "   FROM onboard_prices p JOIN onboard_stations st ON st.seq = p.station_seq"
            "   WHERE p.action IN ('new', 'updated') AND st.action IN ('unchanged', 'kept')) x"
            " WHERE s.id = x.station_id"
        )
    else:
        conn.execute(
            "UPDATE stations s SET version = s.version + 1 WHERE s.id IN"
            " (SELECT station_id FROM onboard_prices WHERE action IN ('new', 'updated'))"
        )
    return inserted, updated


# ---- station references --------------------------------------------------------------------------


def resolve_station_refs(
    conn: psycopg.Connection, refs: Iterable[str], *, source: str = "onboarding"
) -> dict[str, int]:
    """{source_ref: station id} for the operator codes that name a station (own key or alias)."""
    keys = sorted(set(refs))
    if not keys:
        return {}
    out: dict[str, int] = {}
    for ref, sid in _rows(
        conn,
        "SELECT source_ref, station_id FROM station_refs WHERE source = %s AND source_ref = ANY(%s)"
        " UNION ALL SELECT source_ref, id FROM stations WHERE source = %s AND source_ref = ANY(%s)",
        (source, keys, source, keys),
    ):
        out[str(ref)] = int(sid)  # the station's own key comes last and wins
    return out


def existing_station_ids(conn: psycopg.Connection, ids: Iterable[int]) -> dict[int, str]:
    """{id: brand} of the given ids that exist."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {
        int(i): str(b) for i, b in _rows(conn, "SELECT id, brand FROM stations WHERE id = ANY(%s)", (wanted,))
    }


def price_in_force(
    conn: psycopg.Connection, station_id: int, grade: str, at: datetime
) -> tuple[Decimal, datetime] | None:
    rows = _rows(
        conn,
        "SELECT price_cny, effective_from FROM prices WHERE station_id = %s AND grade = %s"
        " AND effective_from <= %s ORDER BY effective_from DESC LIMIT 1",
        (station_id, grade, at),
    )
    return (Decimal(rows[0][0]), rows[0][1]) if rows else None
