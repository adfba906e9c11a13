"""Coordinate systems (WGS-84 inside; GCJ-02 and BD-09 at the edges) and geodesic helpers.

Conversion uses prcoords (public domain, maintained); its `*_bored` inverses iterate to well under
1 m inside China and it leaves points outside China unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import prcoords
from numba import njit

CoordSystem = Literal["wgs84", "gcj02", "bd09"]
EARTH_RADIUS_M = 6_371_008.8


def in_china(lat: float, lon: float) -> bool:
    """prcoords' own test of where GCJ-02 applies (outside it every system equals WGS-84)."""
    return bool(prcoords.sanity_in_china_p(prcoords.Coords(lat, lon)))


# system -> prcoords converter of a (lat, lon) pair; wgs84 is the identity.
_TO_WGS84: dict[str, Callable[..., Any]] = {"gcj02": prcoords.gcj_wgs_bored, "bd09": prcoords.bd_wgs_bored}
_FROM_WGS84: dict[str, Callable[..., Any]] = {"gcj02": prcoords.wgs_gcj, "bd09": prcoords.wgs_bd}


def _convert(
    lat: float, lon: float, system: str, converters: dict[str, Callable[..., Any]]
) -> tuple[float, float]:
    if system not in ("wgs84", "gcj02", "bd09"):
        raise ValueError(f"unknown coordinate system {system!r} (wgs84, gcj02, bd09)")
    if system == "wgs84" or not in_china(lat, lon):
        return lat, lon
    out = converters[system]((lat, lon), False)
    return float(out[0]), float(out[1])


def to_wgs84(lat: float, lon: float, system: str) -> tuple[float, float]:
    """Convert a point given in `system` to WGS-84 (lat, lon); identity outside China."""
    return _convert(lat, lon, system, _TO_WGS84)


def from_wgs84(lat: float, lon: float, system: str) -> tuple[float, float]:
    """Convert a WGS-84 point to `system` (lat, lon); identity outside China."""
    return _convert(lat, lon, system, _FROM_WGS84)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def haversine_m_array(
    lat1: np.ndarray | float, lon1: np.ndarray | float, lat2: np.ndarray | float, lon2: np.ndarray | float
) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a))))


@njit(cache=True, nogil=True)
def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from north in [0, 360) (compiled: the
    steps' headings call it from their kernel)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(x, y)) + 360.0) % 360.0


# GCJ-02 over arrays: prcoords.wgs_gcj's arithmetic, operation for operation, compiled (bit for bit the
# same results as the per-point path; tests/test_route_shaping.py checks it on seeded routes).
_GCJ_A = float(prcoords.GCJ_A)
_GCJ_EE = float(prcoords.GCJ_EE)


@njit(cache=True, nogil=True)
def _wgs_gcj_arrays(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    n = lat.shape[0]
    out_lat = np.empty(n)
    out_lon = np.empty(n)
    pi = math.pi
    for i in range(n):
        la, lo = lat[i], lon[i]
        if not (0.8293 <= la <= 55.8271 and 72.004 <= lo <= 137.8347):
            out_lat[i], out_lon[i] = la, lo
            continue
        x, y = lo - 105, la - 35
        d_lat_m = (
            -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
            + (
                2 * math.sin(x * 6 * pi) + 2 * math.sin(x * 2 * pi) + 2 * math.sin(y * pi)
                + 4 * math.sin(y / 3 * pi) + 16 * math.sin(y / 12 * pi) + 32 * math.sin(y / 30 * pi)
            ) * 20 / 3
        )  # fmt: skip
        d_lon_m = (
            300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
            + (
                2 * math.sin(x * 6 * pi) + 2 * math.sin(x * 2 * pi) + 2 * math.sin(x * pi)
                + 4 * math.sin(x / 3 * pi) + 15 * math.sin(x / 12 * pi) + 30 * math.sin(x / 30 * pi)
            ) * 20 / 3
        )  # fmt: skip
        rad_lat = math.radians(la)
        magic = 1 - _GCJ_EE * math.pow(math.sin(rad_lat), 2)
        lat_deg_arclen = math.radians((_GCJ_A * (1 - _GCJ_EE)) / math.pow(magic, 1.5))
        lon_deg_arclen = math.radians(_GCJ_A * math.cos(rad_lat) / math.sqrt(magic))
        out_lat[i] = la + (d_lat_m / lat_deg_arclen)
        out_lon[i] = lo + (d_lon_m / lon_deg_arclen)
    return out_lat, out_lon


def from_wgs84_arrays(lat: np.ndarray, lon: np.ndarray, system: str) -> tuple[np.ndarray, np.ndarray]:
    """`from_wgs84` over arrays of WGS-84 points (gcj02 compiled, one pass; identity outside China)."""
    la = np.ascontiguousarray(lat, dtype=np.float64)
    lo = np.ascontiguousarray(lon, dtype=np.float64)
    if system == "wgs84":
        return la, lo
    if system == "gcj02":
        return _wgs_gcj_arrays(la, lo)
    pts = [from_wgs84(a, b, system) for a, b in zip(la.tolist(), lo.tolist(), strict=True)]
    return np.asarray([p[0] for p in pts], np.float64), np.asarray([p[1] for p in pts], np.float64)
