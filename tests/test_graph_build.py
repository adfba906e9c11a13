"""OSM extract -> CompiledGraph: formats, policy, simplification, restrictions, cache, PostGIS, CLI."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from config import get_settings, load_region
from geo import ExtractError
from geo._build import build_graph
from geo._coords import haversine_m_array
from geo._graph import CLASS_INDEX, FLAG_RESTRICTED, ROAD_CLASSES, CompiledGraph
from geo._graphcache import cache_path, load_or_build
from store._road_edges import count_road_edges, replace_road_edges, road_edges_in_bbox
from tests.conftest import FIXTURES

SPEEDS = load_region("andorra").speeds_kmh
EXTRACTS = ["andorra.osm.pbf", "shenzhen_longgang.osm.gz", "beijing_tsinghua.osm.bz2", "west_oakland.osm.bz2"]


def arc_tails(g: CompiledGraph) -> np.ndarray:
    return np.repeat(np.arange(g.n_nodes), np.diff(g.offsets))


def arc_matrix(g: CompiledGraph) -> csr_matrix:
    """Free-flow seconds per arc (the cheapest of parallel arcs)."""
    tail, head = arc_tails(g), g.arc_head.astype(np.int64)
    w = g.edge_freeflow_s[g.arc_edge]
    order = np.lexsort((w, head, tail))
    tail, head, w = tail[order], head[order], w[order]
    first = np.ones(len(tail), bool)
    first[1:] = (tail[1:] != tail[:-1]) | (head[1:] != head[:-1])
    return csr_matrix((w[first], (tail[first], head[first])), shape=(g.n_nodes, g.n_nodes))


def check_graph(g: CompiledGraph) -> None:
    """Contract invariants, and strong connectivity (junction level, and arc level up to source-only nodes)."""
    n, m = g.n_nodes, g.n_road_edges
    n_j = int(np.count_nonzero(g.node_base == np.arange(n)))
    assert np.all(g.node_base[:n_j] == np.arange(n_j)) and np.all(g.node_base[n_j:] < n_j)
    assert g.offsets[0] == 0 and g.offsets[-1] == g.n_arcs and np.all(np.diff(g.offsets) >= 0)
    assert len(g.offsets) == n + 1
    tail = arc_tails(g)
    assert np.all(g.edge_u[g.arc_edge] == g.node_base[tail])
    assert np.all(g.edge_v[g.arc_edge] == g.node_base[g.arc_head])
    assert set(np.unique(g.arc_edge).tolist()) == set(range(m))
    assert np.all(g.edge_u < n_j) and np.all(g.edge_v < n_j) and np.all(g.edge_u != g.edge_v)
    assert np.all(g.edge_length_m > 0) and np.all(g.edge_speed_mps > 0)
    assert np.all(g.edge_class < len(ROAD_CLASSES))
    # geometry: both ends included, length is the haversine sum
    a, b = g.edge_geom_offsets[:-1], g.edge_geom_offsets[1:] - 1
    assert np.all(b > a)
    assert np.allclose(g.geom_lat[a], g.node_lat[g.edge_u]) and np.allclose(
        g.geom_lon[b], g.node_lon[g.edge_v]
    )
    d = haversine_m_array(g.geom_lat[:-1], g.geom_lon[:-1], g.geom_lat[1:], g.geom_lon[1:])
    cum = np.concatenate(([0.0], np.cumsum(d)))
    assert np.allclose(np.maximum(cum[b] - cum[a], 0.1), g.edge_length_m, atol=1e-6)
    # every road is kept: the main (largest) strongly connected component and the counted others
    am = csr_matrix((np.ones(g.n_arcs), (tail, g.arc_head)), shape=(n, n))
    count, _ = connected_components(am, directed=True, connection="strong")
    assert g.meta.get("counts", {}).get("components", count) == count


@pytest.mark.parametrize("name", EXTRACTS)
def test_real_extract_builds_with_every_component(shared_data: Path, name: str) -> None:
    g = build_graph(shared_data / "osm" / name, speeds_kmh=SPEEDS)
    check_graph(g)
    c = g.meta["counts"]
    assert c["junctions_outside_main"] < 0.5 * c["junctions"]  # the main component dominates
    assert c["road_edges"] == g.n_road_edges and c["arcs"] == g.n_arcs and c["nodes"] == g.n_nodes
    assert (
        len(g.meta["extract_sha256"]) == 64 and g.meta["build_seconds"] > 0 and g.meta["peak_memory_mb"] > 0
    )
    west, south, east, north = g.meta["bbox"]
    assert west < east and south < north
    if name.startswith("andorra"):
        assert 1500 <= c["junctions"] <= 3000
        assert 41.7 < south < north < 42.8
    if name.startswith("shenzhen"):
        assert any(re.search(r"[\u4e00-\u9fff]", s) for s in g.names)


def test_garbage_and_missing_files_raise_extract_error(tmp_path: Path, shared_data: Path) -> None:
    truncated = (shared_data / "osm" / "andorra.osm.pbf").read_bytes()[:200_000]
    for fname, content in [
        ("junk.osm.pbf", b"not a pbf at all" * 100),
        ("junk.osm", b"<html>no</html>"),
        ("junk.osm.gz", b"\x1f\x8b garbage"),
        ("junk.osm.bz2", b"BZh9 garbage"),
        ("cut.osm.pbf", truncated),
    ]:
        p = tmp_path / fname
        p.write_bytes(content)
        with pytest.raises(ExtractError, match=re.escape(fname)):
            build_graph(p, speeds_kmh=SPEEDS)
    with pytest.raises(ExtractError, match="does not exist"):
        build_graph(tmp_path / "nothing.osm.pbf", speeds_kmh=SPEEDS)
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ExtractError, match="unknown format"):
        build_graph(tmp_path / "x.txt", speeds_kmh=SPEEDS)


def test_missing_refs_are_split_and_counted() -> None:
    g = build_graph(FIXTURES / "missing_refs.osm", speeds_kmh=SPEEDS)
    check_graph(g)
    c = g.meta["counts"]
    assert c["missing_refs"] == 4  # 999 inside way 201, 998 at the end of 203, 997 and 996 (way 204)
    assert c["ways_with_missing_refs"] == 3
    assert c["ways_kept"] == 4  # way 204 has no node left
    # way 201 is split at 999: no edge joins node 2 to node 3 along it
    pairs = {(int(g.node_osm[u]), int(g.node_osm[v])) for u, v in zip(g.edge_u, g.edge_v, strict=True)}
    w201 = {
        (int(g.node_osm[g.edge_u[e]]), int(g.node_osm[g.edge_v[e]]))
        for e in np.flatnonzero(g.edge_way == 201)
    }
    assert w201 == {(1, 2), (2, 1), (3, 4), (4, 3)}
    assert (2, 3) in pairs  # through way 202


def edges_of(g: CompiledGraph, way: int) -> list[tuple[int, ...]]:
    return sorted(
        tuple(int(g.node_osm[x]) for x in (g.edge_u[e], g.edge_v[e]))
        for e in np.flatnonzero(g.edge_way == way)
    )


def test_network_policy() -> None:
    g = build_graph(FIXTURES / "network.osm", speeds_kmh=SPEEDS)
    check_graph(g)
    ways = set(np.unique(g.edge_way).tolist())
    assert ways == {101, 102, 103, 104, 105, 106, 107, 109, 112, 113}  # 103: access=destination
    # 108 parking_aisle, 110 footway, 111 area=yes: excluded; 107 access=private and 113
    # motor_vehicle=private are kept for trips that start or end on them (no through traffic)
    restricted = {int(w) for w in g.edge_way[(g.edge_flags & FLAG_RESTRICTED) != 0]}
    assert restricted == {103, 107, 113}
    assert edges_of(g, 102) == [(3, 2)]  # oneway=-1: against the node order only
    assert edges_of(g, 105) == [(5, 6), (6, 5)]  # roundabout: one-way, split at 6 so no self-loop
    e6 = np.flatnonzero((g.edge_way == 105) & (g.node_osm[g.edge_u] == 6))[0]
    assert [round(x, 4) for x in g.edge_polyline(e6)[:, 1]] == [100.2315, 100.2305, 100.231]
    e_fw = np.flatnonzero((g.edge_way == 101) & (g.node_osm[g.edge_u] == 1))[0]
    e_bw = np.flatnonzero((g.edge_way == 101) & (g.node_osm[g.edge_u] == 2))[0]
    assert g.edge_maxspeed_kmh[e_fw] == 60 and g.edge_maxspeed_kmh[e_bw] == 40
    assert g.edge_speed_mps[e_fw] == pytest.approx(60 * 0.9 / 3.6)
    assert g.edge_lanes[e_fw] == 2 and g.edge_class[e_fw] == CLASS_INDEX["primary"]
    assert g.names[g.edge_name[e_fw]] == "古城路" and g.names_en[g.edge_name[e_fw]] == "Gucheng Road"
    assert g.edge_length_m[e_fw] == pytest.approx(99.3, abs=0.5)  # 0.001 deg of longitude at 26.87 N
    e104 = np.flatnonzero(g.edge_way == 104)
    assert np.all(g.edge_maxspeed_kmh[e104] == 50) and np.all(g.edge_name[e104] == -1)
    e103 = np.flatnonzero(g.edge_way == 103)
    assert np.all(np.isnan(g.edge_maxspeed_kmh[e103]))
    assert np.allclose(g.edge_speed_mps[e103], SPEEDS["residential"] / 3.6)
    e106 = np.flatnonzero(g.edge_way == 106)
    assert np.allclose(g.edge_maxspeed_kmh[e106], 35 * 1.609344, atol=1e-3)


# ---- turn restrictions -------------------------------------------------------------------------
def without_relations(src: Path, dst: Path) -> Path:
    dst.write_text(re.sub(r"<relation.*?</relation>", "", src.read_text(), flags=re.S))
    return dst


def route(g: CompiledGraph, from_osm: int, to_osm: int) -> tuple[float, list[int]]:
    """Free-flow seconds and the OSM node ids along the shortest path between two junctions."""
    j = {int(g.node_osm[i]): i for i in range(g.n_nodes) if g.node_base[i] == i}
    dist, pred = dijkstra(arc_matrix(g), directed=True, indices=j[from_osm], return_predecessors=True)
    targets = np.flatnonzero(g.node_base == j[to_osm])
    t = int(targets[np.argmin(dist[targets])])
    path = [t]
    while pred[path[-1]] >= 0:
        path.append(int(pred[path[-1]]))
    return float(dist[t]), [int(g.node_osm[x]) for x in reversed(path)]


def has_turn(path: list[int], a: int, b: int, c: int) -> bool:
    return any(path[i : i + 3] == [a, b, c] for i in range(len(path) - 2))


def test_restrictions_change_shortest_paths(tmp_path: Path) -> None:
    g = build_graph(FIXTURES / "restriction.osm", speeds_kmh=SPEEDS)
    free = build_graph(
        without_relations(FIXTURES / "restriction.osm", tmp_path / "free.osm"), speeds_kmh=SPEEDS
    )
    check_graph(g)
    check_graph(free)
    c = g.meta["counts"]
    assert c["restriction_relations"] == 6
    assert c["restrictions_read"] == 5  # 902 (except=motorcar) is not for cars
    assert c["restrictions_applied"] == 3
    assert c["restrictions_applied_via_way"] == 1  # 903: from way 7 through way 1 to way 3
    assert c["restrictions_skipped_via_way"] == 0
    assert c["restrictions_skipped_missing"] == 1
    assert c["restrictions_skipped_not_at_junction"] == 1
    # copies: 111 for ways 1 and 4 (via node), 110 and 111 along 903's via way
    assert g.n_nodes == free.n_nodes + 4 and g.n_road_edges == free.n_road_edges
    block = 110.0 / (SPEEDS["residential"] / 3.6)  # about one block of 100-111 m
    # no_left_turn from way 1 (edges 99->110->111) onto way 3 at 111
    d_free, p_free = route(free, 110, 121)
    d, p = route(g, 110, 121)
    assert p_free == [110, 111, 121]
    assert d > d_free + block and not has_turn(p, 110, 111, 121)
    # the no_left_turn holds from the far end of the split way too (only 110->111 ends at 111)
    d99, p99 = route(g, 99, 121)
    assert d99 > route(free, 99, 121)[0] + block and not has_turn(p99, 110, 111, 121)
    # straight on from 99 through 111 is still allowed
    assert route(g, 99, 112)[1] == [99, 110, 111, 112]
    # only_straight_on from way 4 (101->111): no right turn to 112
    d_free, p_free = route(free, 101, 112)
    d, p = route(g, 101, 112)
    assert p_free == [101, 111, 112]
    assert d > d_free + block and not has_turn(p, 101, 111, 112)
    # turns from the unrestricted approach (way 2, from 112) are untouched
    assert route(g, 112, 101)[1] == route(free, 112, 101)[1] == [112, 111, 101]
    assert route(g, 112, 101)[0] == pytest.approx(route(free, 112, 101)[0])
    # the split copies of 111: exactly the allowed turns (a U-turn stays allowed unless restricted)
    osm = g.node_osm
    turns = {}
    for x in range(g.n_nodes):
        if g.node_base[x] != x:
            into = {int(osm[g.edge_u[g.arc_edge[k]]]) for k in np.flatnonzero(g.arc_head == x)}
            outs = {int(osm[g.edge_v[g.arc_edge[k]]]) for k in range(g.offsets[x], g.offsets[x + 1])}
            turns[tuple(sorted(into))] = outs
    assert turns == {(110,): {110, 112, 101}, (101,): {121}, (100,): {99, 100, 111}}


# ---- cache -------------------------------------------------------------------------------------
def test_cache_hit_and_corruption(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    extract = FIXTURES / "restriction.osm"
    g1 = load_or_build(extract, speeds_kmh=SPEEDS, cache_dir=tmp_path)
    path = cache_path(extract, SPEEDS, tmp_path)
    assert g1.meta["cache"] == "built" and path.is_file()
    mtime = path.stat().st_mtime_ns
    g2 = load_or_build(extract, speeds_kmh=SPEEDS, cache_dir=tmp_path)
    assert g2.meta["cache"] == "hit" and path.stat().st_mtime_ns == mtime
    assert np.array_equal(g1.arc_head, g2.arc_head) and g1.names == g2.names
    # other speeds: another key
    g3 = load_or_build(extract, speeds_kmh=dict(SPEEDS, residential=30.0), cache_dir=tmp_path)
    assert g3.meta["cache"] == "built" and len(list(tmp_path.glob("*.graph"))) == 2
    # flipped bytes in the payload
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="geo.graph"):
        g4 = load_or_build(extract, speeds_kmh=SPEEDS, cache_dir=tmp_path)
    warnings = [r for r in caplog.records if r.name == "geo.graph" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rebuilding" in warnings[0].getMessage()
    assert g4.meta["cache"] == "built"
    assert load_or_build(extract, speeds_kmh=SPEEDS, cache_dir=tmp_path).meta["cache"] == "hit"
    # truncated
    caplog.clear()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="geo.graph"):
        g5 = load_or_build(extract, speeds_kmh=SPEEDS, cache_dir=tmp_path)
    assert g5.meta["cache"] == "built"
    assert sum(r.name == "geo.graph" and r.levelno == logging.WARNING for r in caplog.records) == 1


def test_andorra_cache_loads_fast(shared_data: Path, tmp_path: Path) -> None:
    extract = shared_data / "osm" / "andorra.osm.pbf"
    built = load_or_build(extract, speeds_kmh=SPEEDS, cache_dir=tmp_path)
    t0 = time.perf_counter()
    g = load_or_build(extract, speeds_kmh=SPEEDS, cache_dir=tmp_path)
    seconds = time.perf_counter() - t0
    assert g.meta["cache"] == "hit" and g.n_arcs == built.n_arcs
    print(f"andorra cache load {seconds:.3f} s, {g.nbytes() / g.n_arcs:.0f} bytes per arc")
    assert seconds < 5.0


# ---- PostGIS and CLI ---------------------------------------------------------------------------
def test_road_edges_in_postgis(db_url: str) -> None:
    g = build_graph(FIXTURES / "network.osm", speeds_kmh=SPEEDS)
    with psycopg.connect(db_url) as conn:
        assert replace_road_edges(conn, "fixture", g) == g.n_road_edges
        assert replace_road_edges(conn, "fixture", g) == g.n_road_edges  # idempotent
        assert count_road_edges(conn, "fixture") == g.n_road_edges
        row = conn.execute(
            "SELECT way_id, u_osm, v_osm, highway, name, name_en, maxspeed_kmh, lanes, length_m, cost_s,"
            " ST_NPoints(geom), ST_SRID(geom), ST_X(ST_StartPoint(geom)) FROM road_edges"
            " WHERE region = %s AND way_id = 101 AND u_osm = 1",
            ("fixture",),
        ).fetchone()
        assert row is not None
        assert row[:8] == (101, 1, 2, "primary", "古城路", "Gucheng Road", 60.0, 2)
        assert row[9] == pytest.approx(row[8] / (54 / 3.6)) and row[10:12] == (2, 4326)
        assert row[12] == pytest.approx(100.230)  # node 1
        hits = road_edges_in_bbox(conn, "fixture", 100.2305, 26.8695, 100.2315, 26.8705, 100)
        assert hits and all(h["geometry"]["type"] == "LineString" for h in hits)
        assert {h["id"] for h in hits} <= set(range(g.n_road_edges))
        assert road_edges_in_bbox(conn, "fixture", 0.0, 0.0, 0.1, 0.1, 100) == []
        assert count_road_edges(conn, "other") == 0


def test_roads_cli(
    module_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.__main__ import main

    monkeypatch.setenv("DATABASE_URL", module_db)  # not the session database: its demo roads stay
    monkeypatch.setenv("FUEL_CACHE_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        extract = str(FIXTURES / "restriction.osm")
        assert main(["roads", extract, "--region", "andorra", "--no-db", "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "9 junctions" in out and "restrictions 5 read, 3 applied, 2 skipped" in out and "MB" in out
        assert main(["roads", extract, "--region", "andorra", "--no-progress"]) == 0
        assert main(["roads", extract, "--region", "andorra", "--no-progress"]) == 0
        assert "cache hit" in capsys.readouterr().out
        with psycopg.connect(module_db) as conn:
            assert count_road_edges(conn, "andorra") == 20
        assert main(["roads", str(tmp_path / "missing.osm.pbf"), "--no-db"]) == 2
        assert "not found" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
