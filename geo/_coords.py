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


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from north in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(x, y)) + 360.0) % 360.0
