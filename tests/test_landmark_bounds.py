"""`geo._kernels.landmark_bounds` (the active landmarks of a search, compiled) against the numpy
formula it replaced, on random tables with unreachable landmarks (inf, so NaN scores) and ties."""

from __future__ import annotations

import numpy as np

from geo import _kernels as K


def _numpy_bounds(
    s: int, tg_edge: np.ndarray, tg_off: np.ndarray, lmt: np.ndarray, ceil: np.ndarray | None,
    tails: np.ndarray, ptr: np.ndarray, heads: np.ndarray, length: np.ndarray, spd: np.ndarray,
    cls: np.ndarray, k_max: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:  # fmt: skip
    ts = np.concatenate([tails[ptr[e] : ptr[e + 1]] for e in tg_edge.tolist()])
    if ts.size == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0), 0.0
    nl = lmt.shape[1] // 2
    t_from = lmt[ts, :nl].min(axis=0).astype(np.float64)
    rest = (length[tg_edge] - tg_off) / spd[tg_edge]
    if ceil is not None:
        rest = rest / ceil[cls[tg_edge]]
    lo, hi = ptr[tg_edge], ptr[tg_edge + 1]
    hs = np.concatenate([heads[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)])
    t_to = (lmt[hs, nl:].astype(np.float64) + np.repeat(rest, hi - lo)[:, None]).max(axis=0)
    with np.errstate(invalid="ignore"):
        score = np.maximum(t_from - lmt[s, :nl], lmt[s, nl:] - t_to)
    act = np.argsort(-score, kind="stable")[: min(k_max, len(score))].astype(np.int64)
    return act, t_from[act], t_to[act], float(score.max())


def test_landmark_bounds_match_the_numpy_formula() -> None:
    rng = np.random.default_rng(11)
    for case in range(400):
        n, m, nl = int(rng.integers(2, 40)), int(rng.integers(1, 30)), int(rng.integers(1, 20))
        lmt = np.round(rng.uniform(0, 500, (n, 2 * nl)), 0 if case % 3 == 0 else 3).astype(np.float32)  # ties
        if case % 4 == 0:
            lmt[rng.random((n, 2 * nl)) < 0.2] = np.inf  # landmarks that do not reach a node
        counts = rng.integers(0, 3, m)
        ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        tails = rng.integers(0, n, int(ptr[-1])).astype(np.int64)
        heads = rng.integers(0, n, int(ptr[-1])).astype(np.int64)
        length, spd = rng.uniform(1, 300, m), rng.uniform(3, 30, m)
        cls = rng.integers(0, 5, m).astype(np.uint8)
        ceil = rng.uniform(0.5, 1.0, 5) if case % 2 else None
        tg_edge = rng.integers(0, m, int(rng.integers(1, 4))).astype(np.int64)
        tg_off = rng.uniform(0, 1, len(tg_edge)) * length[tg_edge]
        s, k_max = int(rng.integers(0, n)), int(rng.integers(1, 14))
        want = _numpy_bounds(s, tg_edge, tg_off, lmt, ceil, tails, ptr, heads, length, spd, cls, k_max)
        got = K.landmark_bounds(
            s, tg_edge, tg_off, lmt, np.zeros(0) if ceil is None else ceil, tails, ptr, heads, length, spd, cls, k_max
        )  # fmt: skip
        assert got[0].tolist() == want[0].tolist(), case
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[2], want[2])
        assert got[3] == want[3] or (np.isnan(got[3]) and np.isnan(want[3])), case
