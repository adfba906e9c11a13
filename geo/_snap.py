"""Snap points to the nearest POINT of the nearest drivable road edge (not to a node).

Everything happens in a local equirectangular projection in metres centred on the graph (distortion
under 1 % across a region of a couple of degrees). The nearest edge is chosen in that projection; the
reported snap distance is the haversine distance between the input and the snapped point, and it is
what `max_snap_m` limits. Both directions of a two-way road share a geometry: only one of them (the
smaller id) is indexed and returned (the router adds the other direction itself).

Index (built once at load): a uniform grid of square cells (side `c`) over the projected geometry; every
polyline segment is registered in each cell its bounding box overlaps, so any cell holding a point of a
segment lists that segment. A query (compiled, all points in one call) scans the cells in Chebyshev
rings around its own cell, projecting exactly onto each listed segment, and stops after ring ``R`` as
soon as the best distance is ``< R * c`` (less a micrometre of slack, and segments are
registered with their boxes widened by as much, against float rounding at cell borders): every cell of ring ``R + 1`` or beyond is at least ``R * c``
away, so no unseen segment can be closer. It also stops once ``R * c`` exceeds the search radius
(`max_snap_m` widened for the projection error): nothing unseen is within it. The answer is therefore
the exact nearest segment (ties: smallest edge id among the scanned ones); there is no fallback path.
The shapely geometries (`lines`, `tree`) are still available, built on first use.

Components. Every road is kept, also those of small strongly connected components (a one-way-heavy
estate, a clipped corner of the extract). Given the main component's edges (`main_edges`), the
snapper keeps two grids, one per side, and snaps to the nearest edge of the MAIN component unless an
edge of a smaller component is much closer: it wins when the main-component distance exceeds
``SMALL_RATIO * d_small + SMALL_MARGIN_M`` (twice as far plus 25 m), e.g. a point on an isolated car
park road 3 m away keeps it unless a main road lies within 31 m. So a point on a road is routed from
that road, and a point between roads prefers the one connected to the rest of the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numba import njit

from geo._coords import EARTH_RADIUS_M
from geo._errors import InvalidInput, NoRoadNear
from geo._graph import CompiledGraph

_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
MAX_CELLS = 1 << 22  # cap on grid cells (memory of the cell pointer array)
_EPS = 1e-6  # metres of slack against float rounding at cell borders
# A snap this close (metres along its edge) to an end junction stands ON that junction: a route may
# leave it by any out-edge and reach it by any in-edge (phantom endpoint), not only along the snapped edge.
JUNCTION_TOL_M = 1.0
SMALL_RATIO = 2.0  # snapping prefers the main component unless a smaller one is much closer (module doc)
SMALL_MARGIN_M = 25.0


@dataclass(frozen=True)
class _Grid:
    gx0: float
    gy0: float
    cell: float
    nx: int
    ny: int
    cell_ptr: np.ndarray  # int64 [nx * ny + 1]
    cell_seg: np.ndarray  # int64 segment (first point index) per registration


@dataclass(frozen=True)
class Snap:
    edge: int  # road edge id
    fraction: float  # 0..1 along the edge polyline, from its tail
    lat: float
    lon: float
    distance_m: float


class Snapper:
    def __init__(
        self,
        g: CompiledGraph,
        *,
        max_snap_m: float = 1000.0,
        cell_m: float = 100.0,
        main_edges: np.ndarray | None = None,
    ) -> None:
        self.g = g
        self.max_snap_m = float(max_snap_m)
        self.radius = self.max_snap_m * 1.05 + 1.0  # the projection error is < 2 %: search a little wider
        self.lat0 = float(np.mean(g.geom_lat)) if g.geom_lat.size else 0.0
        self.lon0 = float(np.mean(g.geom_lon)) if g.geom_lon.size else 0.0
        self.kx = _M_PER_DEG * math.cos(math.radians(self.lat0))
        x, y = self._xy(g.geom_lat, g.geom_lon)
        self._x = np.ascontiguousarray(x, dtype=np.float64)
        self._y = np.ascontiguousarray(y, dtype=np.float64)
        m = g.n_road_edges
        offs = g.edge_geom_offsets.astype(np.int64)
        npts = np.diff(offs)
        pt_edge = np.repeat(np.arange(m, dtype=np.int64), npts)
        valid = pt_edge[:-1] == pt_edge[1:] if x.size > 1 else np.zeros(0, np.bool_)
        seg_len = np.hypot(np.diff(self._x), np.diff(self._y)) if x.size > 1 else np.zeros(0)
        # projected length from the edge's tail at each vertex (what shapely's line_locate_point measures)
        cum = np.cumsum(np.concatenate(([0.0], np.where(valid, seg_len, 0.0))))
        self._cum = np.ascontiguousarray(cum - np.repeat(cum[offs[:-1]], npts)) if m else np.zeros(0)
        self._edge_len = self._cum[np.maximum(offs[1:] - 1, offs[:-1])] if m else np.zeros(0)
        self._pt_edge = pt_edge
        # index one direction of each two-way segment
        rev = g.edge_rev.astype(np.int64) if g.edge_rev.shape[0] == m else np.full(m, -1, np.int64)
        keep_edge = (rev < 0) | (np.arange(m) < rev)
        seg = np.flatnonzero(valid & keep_edge[pt_edge[:-1]]) if x.size > 1 else np.zeros(0, np.int64)
        self._grids = [self._build_grid(seg, float(cell_m))]
        if main_edges is not None and main_edges.shape[0] == m and not main_edges.all():
            in_main = main_edges[pt_edge[seg]]
            self._grids = [self._build_grid(seg[in_main], float(cell_m))]
            small = seg[~in_main]  # usually few: a coarser grid keeps its pointer array small
            self._grids.append(self._build_grid(small, float(cell_m), min(MAX_CELLS, 1024 + 16 * small.size)))
        self._lines: np.ndarray | None = None
        self._strtree: Any = None

    def _build_grid(self, seg: np.ndarray, cell: float, max_cells: int = MAX_CELLS) -> _Grid:
        x, y = self._x, self._y
        if seg.size == 0:
            return _Grid(0.0, 0.0, max(cell, 1.0), 1, 1, np.zeros(2, np.int64), np.zeros(0, np.int64))
        gx0, gy0 = float(x.min()), float(y.min())
        w, h = float(x.max()) - gx0, float(y.max()) - gy0
        cell = max(cell, math.sqrt(max(w * h, 1.0) / max_cells), 1.0)
        nx, ny = int(w // cell) + 1, int(h // cell) + 1
        ax, bx = x[seg], x[seg + 1]
        ay, by = y[seg], y[seg + 1]
        x0 = np.clip(((np.minimum(ax, bx) - gx0 - _EPS) // cell).astype(np.int64), 0, nx - 1)
        x1 = np.clip(((np.maximum(ax, bx) - gx0 + _EPS) // cell).astype(np.int64), 0, nx - 1)
        y0 = np.clip(((np.minimum(ay, by) - gy0 - _EPS) // cell).astype(np.int64), 0, ny - 1)
        y1 = np.clip(((np.maximum(ay, by) - gy0 + _EPS) // cell).astype(np.int64), 0, ny - 1)
        wx = x1 - x0 + 1
        cnt = wx * (y1 - y0 + 1)
        rep = np.repeat(np.arange(seg.size), cnt)
        j = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        cid = (y0[rep] + j // wx[rep]) * nx + (x0[rep] + j % wx[rep])
        order = np.argsort(cid, kind="stable")
        cell_seg = np.ascontiguousarray(seg[rep[order]], dtype=np.int64)
        cell_ptr = np.concatenate(([0], np.cumsum(np.bincount(cid, minlength=nx * ny)))).astype(np.int64)
        return _Grid(gx0, gy0, cell, nx, ny, cell_ptr, cell_seg)

    # shapely geometries (tests, diagnostics), built on first use
    @property
    def lines(self) -> np.ndarray:
        if self._lines is None:
            idx = np.repeat(np.arange(self.g.n_road_edges), np.diff(self.g.edge_geom_offsets))
            self._lines = shapely.linestrings(np.column_stack((self._x, self._y)), indices=idx)
        return self._lines

    @property
    def tree(self) -> Any:
        if self._strtree is None:
            self._strtree = shapely.STRtree(self.lines)
        return self._strtree

    def _xy(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(lon) - self.lon0) * self.kx, (np.asarray(lat) - self.lat0) * _M_PER_DEG

    def snap_many(
        self, points: Sequence[tuple[float, float]] | np.ndarray, param: str = "points"
    ) -> list[Snap | None]:
        """Snap each (lat, lon); None where no road is within max_snap_m."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        found = []
        for gr in self._grids:
            res = _snap_points(
                pts, self.lat0, self.lon0, self.kx, _M_PER_DEG, EARTH_RADIUS_M, gr.gx0, gr.gy0, gr.cell,
                gr.nx, gr.ny, gr.cell_ptr, gr.cell_seg, self._x, self._y, self._pt_edge, self._cum,
                self._edge_len, self.radius, self.max_snap_m, _EPS,
            )  # fmt: skip
            if res is None:
                raise InvalidInput(param, "coordinates must be finite lat in [-90, 90], lon in [-180, 180]")
            found.append(res)
        be, frac, slat, slon, dist = found[0]
        if len(found) > 1:  # main component unless a smaller one is much closer (module doc)
            se, sf, sla, slo, sd = found[1]
            small = (se >= 0) & ((be < 0) | (dist > SMALL_RATIO * sd + SMALL_MARGIN_M))
            be, frac = np.where(small, se, be), np.where(small, sf, frac)
            slat, slon, dist = (
                np.where(small, sla, slat),
                np.where(small, slo, slon),
                np.where(small, sd, dist),
            )
        return [
            Snap(e, f, la, lo, d) if e >= 0 else None
            for e, f, la, lo, d in zip(be.tolist(), frac.tolist(), slat.tolist(), slon.tolist(), dist.tolist(), strict=True)
        ]  # fmt: skip

    def snap(self, lat: float, lon: float, *, param: str = "point") -> Snap:
        """Snap one point or raise NoRoadNear(param)."""
        s = self.snap_many([(lat, lon)], param)[0]
        if s is None:
            raise NoRoadNear(param, f"no road near ({lat:.6f}, {lon:.6f}) within {self.max_snap_m:.0f} m")
        return s

    def candidates(
        self, lat: float, lon: float, *, radius_m: float | None = None, limit: int = 1
    ) -> list[tuple[Snap, float]]:
        """Up to `limit` road segments nearest to (lat, lon) within `radius_m` (at most `max_snap_m`),
        nearest first, one per two-way road segment: (snap on it, bearing of the road at the snap point
        in its edge's direction, 0-360). Bounded: scans the grid cells within the radius only."""
        if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
            raise InvalidInput("coordinates", "must be finite lat in [-90, 90], lon in [-180, 180]")
        limit_m = self.max_snap_m if radius_m is None else min(float(radius_m), self.max_snap_m)
        r = limit_m * 1.05 + 1.0
        px, py = (lon - self.lon0) * self.kx, (lat - self.lat0) * _M_PER_DEG
        parts = [_grid_segments(gr, px, py, r) for gr in self._grids]
        seg = np.unique(np.concatenate(parts))
        if seg.size == 0:
            return []
        ax, ay = self._x[seg], self._y[seg]
        vx, vy = self._x[seg + 1] - ax, self._y[seg + 1] - ay
        l2 = vx * vx + vy * vy
        t = np.clip(
            np.where(l2 > 0, ((px - ax) * vx + (py - ay) * vy) / np.where(l2 > 0, l2, 1.0), 0.0), 0, 1
        )
        d = np.hypot(px - (ax + t * vx), py - (ay + t * vy))
        edge = self._pt_edge[seg]
        order = np.lexsort((edge, d))
        _, first = np.unique(edge[order], return_index=True)
        pick = order[np.sort(first)]
        pick = pick[d[pick] <= r][: max(1, int(limit)) * 2]
        out: list[tuple[Snap, float]] = []
        for k in pick.tolist():
            sg, tt = int(seg[k]), float(t[k])
            sx, sy = float(ax[k] + tt * vx[k]), float(ay[k] + tt * vy[k])
            slat, slon = sy / _M_PER_DEG + self.lat0, sx / self.kx + self.lon0
            dist = _haversine(lat, lon, slat, slon)
            if dist > limit_m:
                continue
            e = int(edge[k])
            el = float(self._edge_len[e])
            frac = (float(self._cum[sg]) + tt * math.sqrt(float(l2[k]))) / el if el > 0 else 0.0
            bearing = (math.degrees(math.atan2(float(vx[k]), float(vy[k]))) + 360.0) % 360.0
            out.append((Snap(e, min(max(frac, 0.0), 1.0), slat, slon, dist), bearing))
        out.sort(key=lambda x: (x[0].distance_m, x[0].edge))
        return out[: max(1, int(limit))]


def _grid_segments(gr: _Grid, px: float, py: float, r: float) -> np.ndarray:
    """Segments registered in the cells of grid `gr` within `r` of the projected point (px, py)."""
    c = gr.cell
    x0 = max(math.floor((px - r - gr.gx0) / c), 0)
    x1 = min(math.floor((px + r - gr.gx0) / c), gr.nx - 1)
    y0 = max(math.floor((py - r - gr.gy0) / c), 0)
    y1 = min(math.floor((py + r - gr.gy0) / c), gr.ny - 1)
    if x0 > x1 or y0 > y1:
        return np.zeros(0, np.int64)
    cells = (np.arange(y0, y1 + 1)[:, None] * gr.nx + np.arange(x0, x1 + 1)[None, :]).ravel()
    a, b = gr.cell_ptr[cells], gr.cell_ptr[cells + 1]
    cnt = b - a
    if cnt.sum() == 0:
        return np.zeros(0, np.int64)
    idx = np.repeat(a - np.concatenate(([0], np.cumsum(cnt)[:-1])), cnt) + np.arange(int(cnt.sum()))
    return np.asarray(gr.cell_seg[idx], np.int64)


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@njit(cache=True, nogil=True)
def _snap_points(pts, lat0, lon0, kx, mpd, earth_r, gx0, gy0, cell, nx, ny, cell_ptr, cell_seg, x, y, pt_edge, cum,
                 edge_len, radius, max_snap, eps):  # fmt: skip
    """(edge, fraction, lat, lon, haversine m) per point (edge -1: nothing within max_snap), or None when
    a coordinate is invalid. Ring search over the segment grid (see the module doc)."""
    n = pts.shape[0]
    for i in range(n):
        la, lo = pts[i, 0], pts[i, 1]
        if not (math.isfinite(la) and math.isfinite(lo)) or abs(la) > 90.0 or abs(lo) > 180.0:
            return None
    out_e = np.full(n, -1, np.int64)
    out_f = np.zeros(n)
    out_la = np.zeros(n)
    out_lo = np.zeros(n)
    out_d = np.zeros(n)
    for i in range(n):
        px = (pts[i, 1] - lon0) * kx
        py = (pts[i, 0] - lat0) * mpd
        cx = math.floor((px - gx0) / cell)
        cy = math.floor((py - gy0) / cell)
        bd = np.inf
        be = -1
        bs = 0
        bt = 0.0
        r = 0
        while True:
            # cells at Chebyshev distance r from (cx, cy), clipped to the grid
            ylo = max(cy - r, 0)
            yhi = min(cy + r, ny - 1)
            for iy in range(ylo, yhi + 1):
                full = iy == cy - r or iy == cy + r
                ix = max(cx - r, 0)
                xhi = min(cx + r, nx - 1)
                while ix <= xhi:
                    c = iy * nx + ix
                    for p in range(cell_ptr[c], cell_ptr[c + 1]):
                        s = cell_seg[p]
                        ax = x[s]
                        ay = y[s]
                        vx = x[s + 1] - ax
                        vy = y[s + 1] - ay
                        l2 = vx * vx + vy * vy
                        t = 0.0
                        if l2 > 0.0:
                            t = ((px - ax) * vx + (py - ay) * vy) / l2
                            t = min(max(t, 0.0), 1.0)
                        d = math.hypot(px - (ax + t * vx), py - (ay + t * vy))
                        e = pt_edge[s]
                        if d < bd or (d == bd and e < be):
                            bd = d
                            be = e
                            bs = s
                            bt = t
                    if full or ix == cx + r:
                        ix += 1
                    else:  # inner row: only the ring's two columns
                        ix = cx + r if cx + r > ix else ix + 1
            # every unscanned cell is at least r * cell away
            if bd < r * cell - eps or r * cell > radius + eps:
                break
            if cx - r <= 0 and cy - r <= 0 and cx + r >= nx - 1 and cy + r >= ny - 1:
                break  # the whole grid is scanned
            r += 1
        if be < 0 or bd > radius:
            continue
        sx = x[bs] + bt * (x[bs + 1] - x[bs])
        sy = y[bs] + bt * (y[bs + 1] - y[bs])
        slat = sy / mpd + lat0
        slon = sx / kx + lon0
        p1 = math.radians(pts[i, 0])
        p2 = math.radians(slat)
        dl = math.radians(slon - pts[i, 1])
        a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        dist = 2 * earth_r * math.asin(min(1.0, math.sqrt(a)))
        if dist > max_snap:
            continue
        el = edge_len[be]
        f = (
            (cum[bs] + bt * math.sqrt((x[bs + 1] - x[bs]) ** 2 + (y[bs + 1] - y[bs]) ** 2)) / el
            if el > 0.0
            else 0.0
        )
        out_e[i] = be
        out_f[i] = min(max(f, 0.0), 1.0)
        out_la[i] = slat
        out_lo[i] = slon
        out_d[i] = dist
    return out_e, out_f, out_la, out_lo, out_d


def snap_junction(g: CompiledGraph, s: Snap) -> int:
    """The junction a snap stands on (within `JUNCTION_TOL_M` along its edge of an end), else -1.
    On an edge shorter than twice the tolerance, the nearer end."""
    e = s.edge
    length = float(g.edge_length_m[e])
    to_tail, to_head = s.fraction * length, (1.0 - s.fraction) * length
    if min(to_tail, to_head) > JUNCTION_TOL_M:
        return -1
    return int(g.edge_u[e]) if to_tail <= to_head else int(g.edge_v[e])


__all__ = ["JUNCTION_TOL_M", "Snap", "Snapper", "snap_junction"]
