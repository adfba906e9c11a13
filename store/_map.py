"""Reads for the map screen (api/_map.py): H3 price groups, simplified road edges, the stations' centre.

These read across stations, prices, promotions and road_edges for one screen, so they live together
here rather than in the per-aggregate modules. Every value is a bound parameter; the one column name
built into SQL comes from a fixed table (`H3_COLUMNS`), never from input.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

H3_COLUMNS: dict[int, str] = {7: "h3_r7", 8: "h3_r8", 9: "h3_r9"}


def cell_groups(
    conn: psycopg.Connection,
    west: float,
    south: float,
    east: float,
    north: float,
    *,
    column_res: int,
    grade: str,
    at: datetime,
) -> list[dict[str, Any]]:
    """Stations in the box grouped in SQL by (H3 cell, brand, list price of `grade` at `at`, own promotion).

    `column_res` (7, 8 or 9) picks the H3 column grouped by. Rows: cell (int), brand, status,
    opening_hours (the caller decides whether the group can sell: geo._hours.can_fill_up), price_cny
    (None: no price), rep (a station id of the group), n. `own` groups (a station with
    station-scoped promotions valid at `at`) hold one station each.
    """
    column = H3_COLUMNS[column_res]  # from a fixed table, never from input
    cur = conn.cursor(row_factory=dict_row)
    cur.execute(
        "WITH s AS ("
        f" SELECT s.id, s.brand, s.{column} AS cell, s.status, s.opening_hours, p.price_cny AS price,"
        "  EXISTS (SELECT 1 FROM promotions pr WHERE pr.scope = 'station' AND pr.station_id = s.id"
        "   AND pr.valid_from <= %(at)s AND (pr.valid_to IS NULL OR pr.valid_to > %(at)s)) AS own"
        " FROM stations s"
        " LEFT JOIN LATERAL (SELECT price_cny FROM prices WHERE prices.station_id = s.id"
        "   AND prices.grade = %(grade)s AND prices.effective_from <= %(at)s"
        "   ORDER BY prices.effective_from DESC LIMIT 1) p ON true"
        " WHERE s.geom && ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326))"
        " SELECT cell, brand, status, opening_hours, price AS price_cny, min(id) AS rep, count(*) AS n FROM s"
        " GROUP BY cell, brand, status, opening_hours, price, CASE WHEN own THEN id END",
        {"w": west, "s": south, "e": east, "n": north, "grade": grade, "at": at},
    )
    return list(cur.fetchall())


def roads_in_bbox(
    conn: psycopg.Connection,
    region: str,
    west: float,
    south: float,
    east: float,
    north: float,
    *,
    classes: Sequence[str],
    tolerance_deg: float,
    limit: int,
) -> list[dict[str, Any]]:
    """Road edges meeting the box (GiST), of `classes`, simplified; major classes first, then by id.

    Rows: id, highway, name, name_en, geometry (GeoJSON dict, WGS-84, 6 decimals)."""
    cur = conn.cursor(row_factory=dict_row)
    cur.execute(
        "SELECT id, highway, name, name_en,"
        " ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, %(tol)s), 6)::json AS geometry"
        " FROM road_edges WHERE region = %(region)s"
        " AND geom && ST_MakeEnvelope(%(w)s, %(s)s, %(e)s, %(n)s, 4326)"
        " AND highway = ANY(%(classes)s::text[])"
        " ORDER BY array_position(%(classes)s::text[], highway), id LIMIT %(limit)s",
        {
            "region": region,
            "w": west,
            "s": south,
            "e": east,
            "n": north,
            "classes": list(classes),
            "tol": tolerance_deg,
            "limit": limit,
        },
    )
    return list(cur.fetchall())


def median_station_position(conn: psycopg.Connection, bbox: Sequence[float]) -> tuple[float, float] | None:
    """(lat, lon) median of the stations in the box (GiST), None when there are none."""
    west, south, east, north = bbox
    row = (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ST_Y(geom)) AS lat,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY ST_X(geom)) AS lon"
            " FROM stations WHERE geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)",
            (west, south, east, north),
        )
        .fetchone()
    )
    if row is None or row["lat"] is None:
        return None
    return float(row["lat"]), float(row["lon"])
