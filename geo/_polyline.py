"""Route polylines: cut edge polylines at length fractions, join a path, Google encoded polylines."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

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
    g: CompiledGraph, edges: Sequence[int], first_frac: float, last_frac: float
) -> list[tuple[float, float]]:
    """[(lat, lon)] along road edges, the first from `first_frac`, the last up to `last_frac`."""
    if not edges:
        return []
    ed = np.asarray(edges, dtype=np.int64)
    n = len(ed)
    a = g.edge_geom_offsets[ed]
    b = g.edge_geom_offsets[ed + 1]
    if n == 1:
        la, lo = cut(g.geom_lat[a[0] : b[0]], g.geom_lon[a[0] : b[0]], first_frac, last_frac)
        return list(zip(la.tolist(), lo.tolist(), strict=True))
    la0, lo0 = cut(g.geom_lat[a[0] : b[0]], g.geom_lon[a[0] : b[0]], first_frac, 1.0)
    la1, lo1 = cut(g.geom_lat[a[-1] : b[-1]], g.geom_lon[a[-1] : b[-1]], 0.0, last_frac)
    # middle edges: every vertex but the first of each (it repeats the previous edge's last)
    ma, mb = a[1:-1] + 1, b[1:-1]
    cnt = mb - ma
    idx = np.repeat(ma - np.concatenate(([0], np.cumsum(cnt)[:-1])), cnt) + np.arange(int(cnt.sum()))
    la = np.concatenate((la0, g.geom_lat[idx], la1[1:]))
    lo = np.concatenate((lo0, g.geom_lon[idx], lo1[1:]))
    return list(zip(la.tolist(), lo.tolist(), strict=True))


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


__all__ = ["cumulative_m", "cut", "decode", "encode", "point_at", "route_polyline"]
