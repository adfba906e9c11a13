"""Seeded synthetic road graphs around Lijiang for tests and scaling benchmarks (vectorised numpy).

A jittered grid of junctions (about 150 m apart) centred on 26.87N 100.23E. Every grid row and column
is one "way" with one class: a motorway row, a trunk column, primary/secondary/tertiary lines at regular
intervals, residential otherwise. About 5 % of residential segments are removed, about 12 % of minor
segments are one-way. Polylines have 2 to 4 points. The largest strongly connected component is kept.
Optional turn restrictions (no U-turn / no left turn) are compiled by node splitting exactly as the
contract in `geo._graph` says (`split_restrictions`, generic). Landmarks are added at the end.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from geo._coords import haversine_m_array
from geo._graph import CLASS_INDEX, CompiledGraph
from geo._landmarks import add_landmarks

LAT0, LON0 = 26.87, 100.23
SPACING_M = 150.0
SPEEDS_KMH = {
    "motorway": 110,
    "trunk": 80,
    "primary": 60,
    "secondary": 50,
    "tertiary": 40,
    "residential": 25,
}


def _line_classes(n: int, offset: int) -> np.ndarray:
    i = np.arange(n) + offset
    cls = np.full(n, CLASS_INDEX["residential"], np.uint8)
    cls[i % 4 == 2] = CLASS_INDEX["tertiary"]
    cls[i % 8 == 4] = CLASS_INDEX["secondary"]
    cls[i % 16 == 8] = CLASS_INDEX["primary"]
    return cls


def split_restrictions(
    n_junctions: int, edge_u: np.ndarray, edge_v: np.ndarray, banned: dict[int, set[int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compile turn bans {incoming edge: {forbidden outgoing edges}} by node splitting.

    Returns (offsets, arc_head, arc_edge, copy_base): each incoming edge with a ban ends at a private
    copy of its head junction (ids n_junctions + i, base junction copy_base[i]) whose arcs are the
    allowed turns only; every other arc is a plain copy of its road edge.
    """
    m = len(edge_u)
    restricted = np.array(sorted(banned), dtype=np.int64)
    head_of = edge_v.astype(np.int64).copy()
    copy_ids = n_junctions + np.arange(len(restricted), dtype=np.int64)
    head_of[restricted] = copy_ids
    out_order = np.argsort(edge_u, kind="stable")
    out_ptr = np.concatenate(([0], np.cumsum(np.bincount(edge_u, minlength=n_junctions))))
    tails = [edge_u.astype(np.int64)]
    edges = [np.arange(m, dtype=np.int64)]
    for cid, e1 in zip(copy_ids.tolist(), restricted.tolist(), strict=True):
        j = int(edge_v[e1])
        outs = out_order[out_ptr[j] : out_ptr[j + 1]]
        allowed = np.array([e for e in outs.tolist() if e not in banned[e1]], dtype=np.int64)
        tails.append(np.full(len(allowed), cid, np.int64))
        edges.append(allowed)
    tail = np.concatenate(tails)
    edge = np.concatenate(edges)
    n = n_junctions + len(restricted)
    order = np.argsort(tail, kind="stable")
    offsets = np.concatenate(([0], np.cumsum(np.bincount(tail, minlength=n)))).astype(np.int64)
    return (
        offsets,
        head_of[edge[order]].astype(np.int32),
        edge[order].astype(np.int32),
        edge_v[restricted].astype(np.int32),
    )


def synthetic_graph(
    n_nodes: int, *, seed: int = 0, restrictions: int = 0, landmarks: int = 16
) -> CompiledGraph:
    """A road-like CompiledGraph of about `n_nodes` junctions (fewer after keeping the largest SCC)."""
    rng = np.random.default_rng(seed)
    rows = max(2, int(math.sqrt(n_nodes)))
    cols = max(2, math.ceil(n_nodes / rows))
    n0 = rows * cols
    dlat = SPACING_M / 111_195.0
    dlon = dlat / math.cos(math.radians(LAT0))
    r_idx = np.repeat(np.arange(rows), cols)
    c_idx = np.tile(np.arange(cols), rows)
    lat = LAT0 + (r_idx - rows / 2) * dlat + rng.uniform(-0.15, 0.15, n0) * dlat
    lon = LON0 + (c_idx - cols / 2) * dlon + rng.uniform(-0.15, 0.15, n0) * dlon

    row_cls = _line_classes(rows, 0)
    col_cls = _line_classes(cols, 3)
    if rows >= 6:
        row_cls[rows // 3] = CLASS_INDEX["motorway"]
    if cols >= 6:
        col_cls[cols // 2] = CLASS_INDEX["trunk"]
    # undirected segments: horizontal then vertical
    hr = np.repeat(np.arange(rows), cols - 1)
    hc = np.tile(np.arange(cols - 1), rows)
    ha = hr * cols + hc
    vr = np.repeat(np.arange(rows - 1), cols)
    vc = np.tile(np.arange(cols), rows - 1)
    va = vr * cols + vc
    a = np.concatenate((ha, va))
    b = np.concatenate((ha + 1, va + cols))
    line = np.concatenate((hr, rows + vc))  # way index: rows first, then columns
    cls = np.concatenate((row_cls[hr], col_cls[vc]))
    minor = (cls == CLASS_INDEX["residential"]) | (cls == CLASS_INDEX["tertiary"])
    res = cls == CLASS_INDEX["residential"]
    keep = ~(res & (rng.random(len(a)) < 0.05))
    a, b, line, cls, minor = a[keep], b[keep], line[keep], cls[keep], minor[keep]
    oneway = minor & (rng.random(len(a)) < 0.12)
    flip = oneway & (rng.random(len(a)) < 0.5)
    a, b = np.where(flip, b, a), np.where(flip, a, b)
    k = len(a)
    # polylines: 2-4 points per undirected segment
    n_mid = rng.integers(0, 3, k)
    pts_lat = np.empty((k, 4))
    pts_lon = np.empty((k, 4))
    pts_lat[:, 0], pts_lon[:, 0] = lat[a], lon[a]
    pts_lat[:, 3], pts_lon[:, 3] = lat[b], lon[b]
    for j in (1, 2):
        s = np.where(n_mid == 2, j / 3.0, 0.5)
        pts_lat[:, j] = lat[a] + (lat[b] - lat[a]) * s + rng.uniform(-0.07, 0.07, k) * dlat
        pts_lon[:, j] = lon[a] + (lon[b] - lon[a]) * s + rng.uniform(-0.07, 0.07, k) * dlon
    mask = np.ones((k, 4), bool)
    mask[:, 1] = n_mid >= 1
    mask[:, 2] = n_mid >= 2
    # directed road edges: forward for all, backward for two-way
    back = np.flatnonzero(~oneway)
    eu = np.concatenate((a, b[back]))
    ev = np.concatenate((b, a[back]))
    eline = np.concatenate((line, line[back]))
    ecls = np.concatenate((cls, cls[back]))
    glat = np.concatenate((pts_lat, pts_lat[back, ::-1]))
    glon = np.concatenate((pts_lon, pts_lon[back, ::-1]))
    gmask = np.concatenate((mask, mask[back, ::-1]))
    # strongly connected part of the junction graph
    mat = csr_matrix((np.ones(len(eu), np.int8), (eu, ev)), shape=(n0, n0))
    _, labels = connected_components(mat, directed=True, connection="strong")
    big = np.bincount(labels).argmax()
    node_keep = labels == big
    ekeep = node_keep[eu] & node_keep[ev]
    new_id = np.cumsum(node_keep) - 1
    eu, ev = new_id[eu[ekeep]], new_id[ev[ekeep]]
    eline, ecls = eline[ekeep], ecls[ekeep]
    glat, glon, gmask = glat[ekeep], glon[ekeep], gmask[ekeep]
    lat, lon = lat[node_keep], lon[node_keep]
    n = int(node_keep.sum())
    m = len(eu)
    counts = gmask.sum(axis=1)
    geom_offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    geom_lat = glat[gmask]
    geom_lon = glon[gmask]
    seg = haversine_m_array(geom_lat[:-1], geom_lon[:-1], geom_lat[1:], geom_lon[1:])
    csum = np.concatenate(([0.0], np.cumsum(seg)))
    length = np.maximum(csum[geom_offsets[1:] - 1] - csum[geom_offsets[:-1]], 0.5)
    speed_by_cls = np.zeros(256)
    for name, kmh in SPEEDS_KMH.items():
        speed_by_cls[CLASS_INDEX[name]] = kmh / 3.6
    # names: one per grid line; about a third of residential lines unnamed
    n_lines = rows + cols
    zh = [f"古城{i + 1}路" if i < rows else f"玉龙{i - rows + 1}街" for i in range(n_lines)]
    en = [f"Gucheng Road {i + 1}" if i < rows else f"Yulong Street {i - rows + 1}" for i in range(n_lines)]
    line_cls = np.concatenate((row_cls, col_cls))
    unnamed = (line_cls == CLASS_INDEX["residential"]) & (rng.random(n_lines) < 0.33)
    line_name = np.where(unnamed, -1, np.arange(n_lines)).astype(np.int32)
    node_osm = 10_000_000 + np.flatnonzero(node_keep).astype(np.int64)

    banned: dict[int, set[int]] = {}
    if restrictions > 0:
        banned = _pick_restrictions(rng, restrictions, eu, ev, lat, lon, n)
    offsets, arc_head, arc_edge, copy_base = split_restrictions(n, eu, ev, banned)
    node_base = np.concatenate((np.arange(n), copy_base)).astype(np.int32)
    g = CompiledGraph(
        node_lat=lat[node_base],
        node_lon=lon[node_base],
        node_osm=node_osm[node_base],
        node_base=node_base,
        offsets=offsets,
        arc_head=arc_head,
        arc_edge=arc_edge,
        edge_u=eu.astype(np.int32),
        edge_v=ev.astype(np.int32),
        edge_length_m=length.astype(np.float64),
        edge_speed_mps=speed_by_cls[ecls],
        edge_class=ecls.astype(np.uint8),
        edge_way=(1000 + eline).astype(np.int64),
        edge_maxspeed_kmh=np.full(m, np.nan, np.float32),
        edge_lanes=np.where(ecls == CLASS_INDEX["residential"], 1, 2).astype(np.int8),
        edge_name=line_name[eline],
        edge_geom_offsets=geom_offsets,
        geom_lat=geom_lat,
        geom_lon=geom_lon,
        names=zh,
        names_en=en,
        meta={"synthetic": {"n_nodes": n_nodes, "seed": seed, "restrictions": len(banned)}},
    )
    if landmarks:
        add_landmarks(g, count=landmarks, seed=seed)
    return g


def _pick_restrictions(
    rng: np.random.Generator,
    count: int,
    eu: np.ndarray,
    ev: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    n: int,
) -> dict[int, set[int]]:
    out_deg = np.bincount(eu, minlength=n)
    cand = np.flatnonzero(out_deg[ev] >= 3)
    if len(cand) == 0:
        return {}
    picks = rng.choice(cand, size=min(count, len(cand)), replace=False)
    order = np.argsort(eu, kind="stable")
    ptr = np.concatenate(([0], np.cumsum(out_deg)))
    banned: dict[int, set[int]] = {}
    for e1 in picks.tolist():
        j, u = int(ev[e1]), int(eu[e1])
        outs = order[ptr[j] : ptr[j + 1]].tolist()
        b_in = math.atan2(lon[j] - lon[u], lat[j] - lat[u])
        best, best_dev = -1, 1e9
        want_u = rng.random() < 0.4
        for e2 in outs:
            w = int(ev[e2])
            if want_u:
                if w == u:
                    best = e2
                    break
                continue
            b_out = math.atan2(lon[w] - lon[j], lat[w] - lat[j])
            turn = math.degrees((b_out - b_in + 3 * math.pi) % (2 * math.pi) - math.pi)
            if -135 <= turn <= -45 and abs(turn + 90) < best_dev:
                best, best_dev = e2, abs(turn + 90)
        if best >= 0 and len(outs) - len(banned.get(e1, set())) > 1:
            banned.setdefault(e1, set()).add(best)
    return banned


__all__ = ["split_restrictions", "synthetic_graph"]
