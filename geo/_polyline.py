"""Route polylines: cut edge polylines at length fractions, join a path, Google encoded polylines."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from numba import njit

from geo._coords import EARTH_RADIUS_M
from geo._graph import CompiledGraph

_M_PER_DEG = EARTH_RADIUS_M * np.pi / 180.0


def cumulative_m(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Cumulative length (metres, local equirectangular) at each vertex of a polyline."""
    if len(lat) < 2:
        return np.zeros(len(lat))
    k = np.cos(np.radians((lat[:-1] + lat[1:]) / 2))
    dy = np.diff(lat) * _M_PER_DEG
    dx = np.diff(lon) * _M_PER_DEG * k
    return np.concatenate(([0.0], np.cumsum(np.hypot(dx, dy))))


def point_at(lat: np.ndarray, lon: np.ndarray, frac: float) -> tuple[float, float]:
    """The point at `frac` (0..1) of the polyline's length."""
    c = cumulative_m(lat, lon)
    if c[-1] <= 0:
        return float(lat[0]), float(lon[0])
    return float(np.interp(frac * c[-1], c, lat)), float(np.interp(frac * c[-1], c, lon))


def cut(lat: np.ndarray, lon: np.ndarray, f0: float, f1: float) -> tuple[np.ndarray, np.ndarray]:
    """The part of a polyline between length fractions f0 <= f1 (both ends interpolated)."""
    c = cumulative_m(lat, lon)
    total = c[-1]
    if total <= 0:
        return lat[:1].copy(), lon[:1].copy()
    d0, d1 = f0 * total, f1 * total
    inner = (c > d0) & (c < d1)
    la = np.concatenate(([np.interp(d0, c, lat)], lat[inner], [np.interp(d1, c, lat)]))
    lo = np.concatenate(([np.interp(d0, c, lon)], lon[inner], [np.interp(d1, c, lon)]))
    return la, lo


def route_polyline(
    g: CompiledGraph, edges: Sequence[int] | np.ndarray, first_frac: float, last_frac: float
) -> list[tuple[float, float]]:
    """[(lat, lon)] along road edges, the first from `first_frac`, the last up to `last_frac`.

    One compiled call over the edge list (same arithmetic as `cut` on the first and last edge: local
    equirectangular lengths, `numpy.interp` at the cut points; the middle edges' vertices copied, each
    edge's first vertex dropped since it repeats the previous edge's last)."""
    if len(edges) == 0:
        return []
    la, lo, _, _ = route_coords(g, edges, first_frac, last_frac)
    return list(zip(la.tolist(), lo.tolist(), strict=True))


def route_coords(
    g: CompiledGraph, edges: Sequence[int] | np.ndarray, first_frac: float, last_frac: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lat, lon, vertex, start) of `route_polyline`: `vertex[k]` is the geometry index (into
    geom_lat/geom_lon/geom_osm) of point k (for a cut end: the vertex behind the start, ahead of the
    end), `start[i]` the index of the point where edge i begins (edge i ends at start[i + 1], the last
    at the last point)."""
    ed = np.asarray(edges, dtype=np.int64)
    return _route_coords(ed, float(first_frac), float(last_frac), g.edge_geom_offsets, g.geom_lat, g.geom_lon)


@njit(cache=True, nogil=True)
def _interp(x: float, c: np.ndarray, v: np.ndarray, a: int, n: int) -> float:
    """numpy.interp(x, c[:n], v[a:a+n]) for non-decreasing c (bit for bit: same branches and formula)."""
    if x >= c[n - 1]:
        return float(v[a + n - 1])
    if x < c[0]:
        return float(v[a])
    j = 0
    while j + 1 < n and c[j + 1] <= x:
        j += 1
    if x == c[j]:
        return float(v[a + j])
    slope = (v[a + j + 1] - v[a + j]) / (c[j + 1] - c[j])
    r = slope * (x - c[j]) + v[a + j]
    if math.isnan(r):
        r = slope * (x - c[j + 1]) + v[a + j + 1]
        if math.isnan(r) and v[a + j] == v[a + j + 1]:
            r = float(v[a + j])
    return float(r)


@njit(cache=True, nogil=True)
def _cut_into(la_out: np.ndarray, lo_out: np.ndarray, gi_out: np.ndarray, k: int, glat: np.ndarray,
              glon: np.ndarray, a: int, b: int, f0: float, f1: float, skip_first: bool) -> int:  # fmt: skip
    """Write `cut(glat[a:b], glon[a:b], f0, f1)` (minus its first point if `skip_first`) at k; new k.
    `gi_out`: the geometry index of each written point (a cut point: the vertex behind / ahead)."""
    n = b - a
    c = np.zeros(n)
    for i in range(1, n):
        kk = math.cos(math.radians((glat[a + i - 1] + glat[a + i]) / 2.0))
        dy = (glat[a + i] - glat[a + i - 1]) * _M_PER_DEG
        dx = (glon[a + i] - glon[a + i - 1]) * _M_PER_DEG * kk
        c[i] = c[i - 1] + math.hypot(dx, dy)
    total = c[n - 1]
    if total <= 0.0:
        if not skip_first:
            la_out[k] = glat[a]
            lo_out[k] = glon[a]
            gi_out[k] = a
            k += 1
        return k
    d0, d1 = f0 * total, f1 * total
    if not skip_first:
        la_out[k] = _interp(d0, c, glat, a, n)
        lo_out[k] = _interp(d0, c, glon, a, n)
        j = 0
        while j + 1 < n - 1 and c[j + 1] <= d0:
            j += 1
        gi_out[k] = a + j
        k += 1
    for i in range(n):
        if c[i] > d0 and c[i] < d1:
            la_out[k] = glat[a + i]
            lo_out[k] = glon[a + i]
            gi_out[k] = a + i
            k += 1
    la_out[k] = _interp(d1, c, glat, a, n)
    lo_out[k] = _interp(d1, c, glon, a, n)
    j = n - 1
    while j - 1 > 0 and c[j - 1] >= d1:
        j -= 1
    gi_out[k] = a + j
    return k + 1


@njit(cache=True, nogil=True)
def _route_coords(edges: np.ndarray, f0: float, f1: float, offs: np.ndarray, glat: np.ndarray,
                  glon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    n = edges.shape[0]
    cap = 2
    for i in range(n):
        cap += offs[edges[i] + 1] - offs[edges[i]] + 1
    la = np.empty(cap)
    lo = np.empty(cap)
    gi = np.empty(cap, np.int64)
    starts = np.zeros(n, np.int64)
    a0, b0 = offs[edges[0]], offs[edges[0] + 1]
    if n == 1:
        k = _cut_into(la, lo, gi, 0, glat, glon, a0, b0, f0, f1, False)
        return la[:k], lo[:k], gi[:k], starts
    k = _cut_into(la, lo, gi, 0, glat, glon, a0, b0, f0, 1.0, False)
    for i in range(1, n - 1):
        e = edges[i]
        starts[i] = k - 1
        for p in range(offs[e] + 1, offs[e + 1]):
            la[k] = glat[p]
            lo[k] = glon[p]
            gi[k] = p
            k += 1
    starts[n - 1] = k - 1
    a1, b1 = offs[edges[n - 1]], offs[edges[n - 1] + 1]
    k = _cut_into(la, lo, gi, k, glat, glon, a1, b1, 0.0, f1, True)
    return la[:k], lo[:k], gi[:k], starts


def encode(points: Iterable[tuple[float, float]], precision: int = 5) -> str:
    """Google encoded polyline of (lat, lon) points."""
    f = 10**precision
    out: list[str] = []
    plat = plon = 0
    for lat, lon in points:
        ilat, ilon = round(lat * f), round(lon * f)
        for d in (ilat - plat, ilon - plon):
            v = ~(d << 1) if d < 0 else d << 1
            while v >= 0x20:
                out.append(chr((0x20 | (v & 0x1F)) + 63))
                v >>= 5
            out.append(chr(v + 63))
        plat, plon = ilat, ilon
    return "".join(out)


def decode(text: str, precision: int = 5) -> list[tuple[float, float]]:
    f = 10**precision
    pts: list[tuple[float, float]] = []
    i = lat = lon = 0
    while i < len(text):
        vals = []
        for _ in range(2):
            shift = res = 0
            while True:
                b = ord(text[i]) - 63
                i += 1
                res |= (b & 0x1F) << shift
                shift += 5
                if b < 0x20:
                    break
            vals.append(~(res >> 1) if res & 1 else res >> 1)
        lat += vals[0]
        lon += vals[1]
        pts.append((lat / f, lon / f))
    return pts


__all__ = ["cumulative_m", "cut", "decode", "encode", "point_at", "route_coords", "route_polyline"]
