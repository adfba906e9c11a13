"""H3 (v4) cells for the station index: the r7/r8/r9 columns and the candidate cells of a nearby search.
Cells are handled as 64-bit ints throughout (h3's integer API), never as strings.

A nearby search takes the query point's cell at one resolution and its `grid_disk` of `k` rings. The
disk must cover the whole search circle, so `k` is sized from a conservative bound:

On a regular hexagon grid with edge length `e` (= circumradius), the union of the cells within `k`
rings of a cell contains the disk of radius `(3k + 1) / 2 * e` around that cell's centre (the inner
notches of the ring-k boundary lie on lines at that distance). The query point lies within `e` of its
cell's centre, so every point within `r` of the query point is covered once
`r + e_max <= (3k + 1) / 2 * e_min`, i.e. `k >= (2 (r + e_max) / e_min - 1) / 3`.

H3 cells are distorted (gnomonic projection on an icosahedron): hexagon edges range over roughly
0.71-1.10 x the average edge at resolutions 7-9 (sampled over the sphere; pentagon edges are about
0.84 x). We use `e_min = 0.6 x average` and `e_max = 1.2 x average`, and add one more ring on top.
The property test `tests/test_h3_prefilter.py` checks the result against plain `ST_DWithin(geography)`.

When the disk would exceed `max_cells` at every resolution the caller skips the H3 prefilter and relies
on the exact geodesic test alone (GiST index), which is always correct.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import h3
from h3.api import basic_int as h3i

RESOLUTIONS: tuple[int, ...] = (9, 8, 7)  # finest first
MIN_EDGE_FACTOR = 0.6
MAX_EDGE_FACTOR = 1.2
DEFAULT_MAX_CELLS = 6_000  # a 50 km circle at r7 needs about 5,400
TARGET_CELLS = 1_000  # prefer the finest resolution whose disk stays under this


def _avg_edge_m(res: int) -> float:
    return float(h3.average_hexagon_edge_length(res, unit="m"))


def min_edge_m(res: int) -> float:
    """A lower bound on any cell's edge length at `res` (metres)."""
    return MIN_EDGE_FACTOR * _avg_edge_m(res)


def max_edge_m(res: int) -> float:
    """An upper bound on any cell's edge length (= centre-to-vertex distance) at `res` (metres)."""
    return MAX_EDGE_FACTOR * _avg_edge_m(res)


def rings_for_radius(radius_m: float, res: int) -> int:
    """Rings `k` such that grid_disk(cell(p), k) covers every point within `radius_m` of p."""
    if radius_m < 0 or not math.isfinite(radius_m):
        raise ValueError(f"radius_m must be a finite number >= 0, got {radius_m}")
    k = math.ceil((2.0 * (radius_m + max_edge_m(res)) / min_edge_m(res) - 1.0) / 3.0)
    return max(1, k) + 1


def disk_size(k: int) -> int:
    """Number of cells in a hexagon grid_disk of k rings (an upper bound near pentagons)."""
    return 3 * k * (k + 1) + 1


def cells_for_point(lat: float, lon: float) -> tuple[int, int, int]:
    """(h3_r7, h3_r8, h3_r9) of a WGS-84 point as signed 64-bit ints (they fit: the top bit is 0)."""
    return (h3i.latlng_to_cell(lat, lon, 7), h3i.latlng_to_cell(lat, lon, 8), h3i.latlng_to_cell(lat, lon, 9))


def cells_for_points(lats: Sequence[float], lons: Sequence[float]) -> list[tuple[int, int, int]]:
    """Batch version of `cells_for_point`."""
    return [cells_for_point(float(a), float(b)) for a, b in zip(lats, lons, strict=True)]


@dataclass(frozen=True)
class Covering:
    """Candidate cells of a circle: `res` is 7, 8 or 9; `cells` as ints. `cells` is None when the
    circle is too large for the cap: then search without the H3 prefilter."""

    res: int
    k: int
    cells: list[int] | None

    @property
    def column(self) -> str:
        return f"h3_r{self.res}"


def choose_resolution(radius_m: float, *, max_cells: int = DEFAULT_MAX_CELLS) -> tuple[int, int] | None:
    """(res, k): the finest resolution whose disk is <= TARGET_CELLS, else the finest <= max_cells."""
    options = [(res, rings_for_radius(radius_m, res)) for res in RESOLUTIONS]
    for res, k in options:
        if disk_size(k) <= min(TARGET_CELLS, max_cells):
            return res, k
    for res, k in options:
        if disk_size(k) <= max_cells:
            return res, k
    return None


def covering_cells(
    lat: float, lon: float, radius_m: float, *, max_cells: int = DEFAULT_MAX_CELLS
) -> Covering:
    """The H3 cells whose union provably covers the circle of `radius_m` around (lat, lon)."""
    choice = choose_resolution(radius_m, max_cells=max_cells)
    if choice is None:
        return Covering(res=7, k=rings_for_radius(radius_m, 7), cells=None)
    res, k = choice
    cells = list(h3i.grid_disk(h3i.latlng_to_cell(lat, lon, res), k))
    return Covering(res=res, k=k, cells=cells)
