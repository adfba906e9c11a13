"""ALT landmarks: free-flow travel times from and to a few well-spread nodes of the arc graph.

Selection is "farthest": the first landmark is the node farthest (free-flow time) from a seeded random
start, each next one maximises the smallest time from the landmarks already chosen (only reachable
nodes count). The tables are computed on the ARC graph (split copies included), forward and reversed,
with scipy's Dijkstra, and stored as float32 seconds. Unreachable entries hold `UNREACHABLE` (a large
finite value): the router's bounds stay valid with it (a difference involving it is either 0, or
negative, or it bounds a distance that really is infinite). Parallel arcs keep their smallest weight.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from geo._graph import CompiledGraph

UNREACHABLE = np.float32(1e9)


def arc_matrix(g: CompiledGraph, weights: np.ndarray | None = None) -> csr_matrix:
    """Sparse [n, n] matrix of the arc graph with free-flow seconds (smallest of parallel arcs)."""
    n = g.n_nodes
    tail = np.repeat(np.arange(n, dtype=np.int64), np.diff(g.offsets))
    head = g.arc_head.astype(np.int64)
    w = g.edge_freeflow_s[g.arc_edge] if weights is None else weights
    order = np.lexsort((w, head, tail))
    tail, head, w = tail[order], head[order], w[order]
    first = np.ones(len(tail), bool)
    first[1:] = (tail[1:] != tail[:-1]) | (head[1:] != head[:-1])
    tail, head, w = tail[first], head[first], w[first]
    keep = tail != head
    return csr_matrix((w[keep], (tail[keep], head[keep])), shape=(n, n))


def add_landmarks(g: CompiledGraph, *, count: int = 16, seed: int = 0) -> None:
    """Fill g.lm_nodes, g.lm_from [L, n] and g.lm_to [L, n] (float32 free-flow seconds)."""
    n = g.n_nodes
    count = max(0, min(count, n))
    if count == 0:
        g.lm_nodes = np.zeros(0, np.int32)
        g.lm_from = np.zeros((0, n), np.float32)
        g.lm_to = np.zeros((0, n), np.float32)
        return
    mat = arc_matrix(g)
    rng = np.random.default_rng(seed)
    start = int(rng.integers(n))
    d0 = dijkstra(mat, directed=True, indices=start)
    fin = np.isfinite(d0)
    cur = int(np.argmax(np.where(fin, d0, -1.0)))
    lms: list[int] = []
    rows: list[np.ndarray] = []
    mind = np.full(n, np.inf)
    for _ in range(count):
        lms.append(cur)
        d = dijkstra(mat, directed=True, indices=cur)
        rows.append(d)
        mind = np.minimum(mind, np.where(np.isfinite(d), d, np.inf))
        score = np.where(np.isfinite(mind), mind, -1.0)
        score[lms] = -1.0
        cur = int(np.argmax(score))
        if score[cur] <= 0:
            break
    lm_from = np.vstack(rows)
    lm_to = dijkstra(mat.T.tocsr(), directed=True, indices=np.array(lms))
    g.lm_nodes = np.array(lms, np.int32)
    g.lm_from = _f32(lm_from)
    g.lm_to = _f32(lm_to)


def landmark_tables(g: CompiledGraph, arc_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(from [L, n], to [L, n]) float32 times from/to the graph's landmark nodes for other arc weights."""
    n, lms = g.n_nodes, g.lm_nodes.astype(np.int64)
    if lms.size == 0:
        return np.zeros((0, n), np.float32), np.zeros((0, n), np.float32)
    mat = arc_matrix(g, arc_weights)
    return _f32(dijkstra(mat, directed=True, indices=lms)), _f32(
        dijkstra(mat.T.tocsr(), directed=True, indices=lms)
    )


def period_vectors(
    factors: np.ndarray, class_weight: np.ndarray, count: int, day_weight: np.ndarray | None = None
) -> list[np.ndarray]:
    """Up to `count` per-class factor ceilings covering the profile's (day type, bin) class vectors.

    `factors` [day types, classes, bins]; classes with zero weight are ignored (ceiling 1); `day_weight`
    (per day type, default equal) is how often each day type occurs. Distinct
    vectors (all-ones excluded: that is the free-flow table) are merged greedily by element-wise max,
    each merge chosen to lose the least weighted sharpness (sum of bins x weight x (1/v - 1/max)).
    A ceiling c is usable by a query whose profile and live factors stay <= c (checked per query).
    """
    use = class_weight > 0
    vecs = np.ones((factors.shape[0] * factors.shape[2], factors.shape[1]))
    vecs[:, use] = factors.transpose(0, 2, 1).reshape(-1, factors.shape[1])[:, use]
    dw = np.ones(factors.shape[0]) if day_weight is None else np.asarray(day_weight, float)
    uniq, inv = np.unique(np.round(vecs, 9), axis=0, return_inverse=True)
    cnt = np.bincount(inv.ravel(), weights=np.repeat(dw, factors.shape[2]), minlength=len(uniq))
    keep = ~np.all(uniq >= 1.0, axis=1)
    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
        (u, u[None, :], np.array([c], float)) for u, c in zip(uniq[keep], cnt[keep], strict=True)
    ]
    w = class_weight / max(float(class_weight.sum()), 1e-12)

    def loss(ceil: np.ndarray, members: np.ndarray, counts: np.ndarray) -> float:
        return float((counts[:, None] * w[None, :] * (1.0 / members - 1.0 / ceil[None, :])).sum())

    while len(groups) > count:
        best: tuple[float, int, int] | None = None
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                ceil = np.maximum(groups[i][0], groups[j][0])
                mem = np.vstack((groups[i][1], groups[j][1]))
                cts = np.concatenate((groups[i][2], groups[j][2]))
                d = loss(ceil, mem, cts) - loss(*groups[i]) - loss(*groups[j])
                if best is None or d < best[0]:
                    best = (d, i, j)
        assert best is not None
        _, i, j = best
        gi, gj = groups[i], groups[j]
        merged = (np.maximum(gi[0], gj[0]), np.vstack((gi[1], gj[1])), np.concatenate((gi[2], gj[2])))
        groups = [x for k, x in enumerate(groups) if k not in (i, j)] + [merged]
    return [gr[0] for gr in groups]


def _f32(a: np.ndarray) -> np.ndarray:
    out = np.where(np.isfinite(a), a, UNREACHABLE).astype(np.float32)
    return np.ascontiguousarray(out)


def landmark_margin(g: CompiledGraph, tables: tuple[np.ndarray, ...] | None = None) -> float:
    """Absolute slack covering float32 rounding of the tables (and float noise of path sums)."""
    vals = [a[a < UNREACHABLE] for a in (tables if tables is not None else (g.lm_from, g.lm_to)) if a.size]
    mx = max((float(v.max()) for v in vals if v.size), default=0.0)
    return mx * 2.0**-20 + 1e-6


__all__ = [
    "UNREACHABLE",
    "add_landmarks",
    "arc_matrix",
    "landmark_margin",
    "landmark_tables",
    "period_vectors",
]
