"""The road_edges aggregate: the compiled graph's road edges in PostGIS, for display and pgRouting.

Writes use COPY (geometry as hex EWKB built from the float arrays, so no coordinate is rounded through
text); reads are parameterised. `source`/`target` are junction indices of the compiled graph and `id`
is the road edge index, so the table joins back to the router's edge ids.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row

from geo._graph import ROAD_CLASSES, CompiledGraph

_COPY = (
    "COPY road_edges (region, id, way_id, u_osm, v_osm, source, target, highway, name, name_en,"
    " maxspeed_kmh, lanes, length_m, cost_s, geom, ref) FROM STDIN"
)
_EWKB_LINESTRING_4326 = struct.pack("<BII", 1, 0x20000002, 4326)


def _ewkb_hex(lon: np.ndarray, lat: np.ndarray) -> str:
    coords = np.column_stack((lon, lat)).astype("<f8")
    return (_EWKB_LINESTRING_4326 + struct.pack("<I", len(lon)) + coords.tobytes()).hex()


def _rows(region: str, g: CompiledGraph) -> Any:
    cost = g.edge_freeflow_s
    refs = g.edge_ref if len(g.edge_ref) == g.n_road_edges else None
    for e in range(g.n_road_edges):
        ref_i = int(refs[e]) if refs is not None else -1
        a, b = int(g.edge_geom_offsets[e]), int(g.edge_geom_offsets[e + 1])
        u, v = int(g.edge_u[e]), int(g.edge_v[e])
        name_i = int(g.edge_name[e])
        maxspeed = float(g.edge_maxspeed_kmh[e])
        lanes = int(g.edge_lanes[e])
        yield (
            region,
            e,
            int(g.edge_way[e]),
            int(g.node_osm[u]),
            int(g.node_osm[v]),
            u,
            v,
            ROAD_CLASSES[int(g.edge_class[e])],
            g.names[name_i] if name_i >= 0 else None,
            (g.names_en[name_i] or None) if name_i >= 0 else None,
            None if math.isnan(maxspeed) else maxspeed,
            lanes or None,
            float(g.edge_length_m[e]),
            float(cost[e]),
            _ewkb_hex(g.geom_lon[a:b], g.geom_lat[a:b]),
            g.refs[ref_i] if ref_i >= 0 else None,
        )


def replace_road_edges(conn: psycopg.Connection, region: str, g: CompiledGraph) -> int:
    """Replace the region's road_edges with the graph's road edges, in one transaction; return the count."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM road_edges WHERE region = %s", (region,))
        with cur.copy(_COPY) as copy:
            for row in _rows(region, g):
                copy.write_row(row)
    return g.n_road_edges


def count_road_edges(conn: psycopg.Connection, region: str) -> int:
    row = conn.execute("SELECT count(*) FROM road_edges WHERE region = %s", (region,)).fetchone()
    return int(row[0]) if row else 0


def road_edges_in_bbox(
    conn: psycopg.Connection, region: str, west: float, south: float, east: float, north: float, limit: int
) -> list[dict[str, Any]]:
    """Road edges whose bounding box meets the given one (GiST index), as id, highway, name, geometry."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, highway, name, ST_AsGeoJSON(geom)::json AS geometry FROM road_edges"
            " WHERE region = %s AND geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
            " ORDER BY id LIMIT %s",
            (region, west, south, east, north, limit),
        )
        return list(cur.fetchall())


def nearest_road_names(
    conn: psycopg.Connection,
    region: str,
    points: list[tuple[float, float]],
    *,
    max_m: float,
    per_point: int = 2,
) -> list[list[tuple[str, float]]]:
    """For each (lat, lon): (name, metres) of the nearest named roads within `max_m`, nearest first,
    each name once, at most `per_point` (the GiST index on a box around each point, then the exact
    distance on the spheroid). A road's name is its name, else its number (the first of its `ref`s).
    One statement for all the points."""
    if not points:
        return []
    lats = [float(p[0]) for p in points]
    lons = [float(p[1]) for p in points]
    rows = conn.execute(
        "SELECT p.i, n.name, n.d FROM unnest(%s::float8[], %s::float8[]) WITH ORDINALITY AS p(lat, lon, i)"
        " CROSS JOIN LATERAL ("
        "   SELECT e.label AS name, min(ST_Distance(e.geom::geography,"
        "          ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)::geography)) AS d"
        "   FROM (SELECT geom, coalesce(nullif(btrim(name), ''), nullif(btrim(split_part(ref, ';', 1)), ''))"
        "         AS label FROM road_edges WHERE region = %s) e"
        "   WHERE e.label IS NOT NULL"
        "     AND e.geom && ST_Expand(ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326),"
        "                             %s / (111000.0 * greatest(cos(radians(p.lat)), 0.01)))"
        "   GROUP BY e.label HAVING min(ST_Distance(e.geom::geography,"
        "          ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)::geography)) <= %s"
        "   ORDER BY d, e.label LIMIT %s) n"
        " ORDER BY p.i, n.d, n.name",
        (lats, lons, region, float(max_m), float(max_m), int(per_point)),
    ).fetchall()
    out: list[list[tuple[str, float]]] = [[] for _ in points]
    for r in rows:
        i, name, d = (r["i"], r["name"], r["d"]) if isinstance(r, dict) else (r[0], r[1], r[2])
        out[int(i) - 1].append((str(name), float(d)))
    return out
