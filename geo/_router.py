"""The router: snapping, time-dependent A* with landmarks (numba), alternatives, matrices, steps.

Public entry point `Router` (see its methods). Everything heavy is built once in `__init__`
(snapping index, reverse-edge table, edge -> arc tails, live overlay); a query allocates only tiny
arrays. Concurrency: the kernels release the GIL (`nogil`), each query borrows a workspace from a
pool (so threads never share one), and the live overlay is an immutable snapshot per query.

Alternatives (penalty method): after the best route, the road edges of every route found so far have
their cost multiplied by `ALT_PENALTY` (1.4) and the search is rerun. A candidate is accepted when its
overlap (length driven on road edges of an accepted route / candidate length) is below `ALT_MAX_OVERLAP`
(0.7) for every accepted route and its stretch (its true cost, re-evaluated without penalties / the best
cost) is at most `ALT_MAX_STRETCH` (1.4). At most `3 * alternatives` reruns. Limits: penalties are a
heuristic; there can be fewer alternatives than asked (or none) even when acceptable ones exist;
overlap is by directed road edge (driving the same road the other way does not count as overlap).
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np

from config._region import Holidays
from geo import _kernels as K
from geo._budget import Budget
from geo._components import components
from geo._coords import EARTH_RADIUS_M, haversine_m_array
from geo._errors import InvalidInput, NoRoadNear, RouteNotFound
from geo._graph import CLASS_INDEX, FLAG_RESTRICTED, FLAG_TOLL, ROAD_CLASSES, CompiledGraph
from geo._landmarks import landmark_margin, landmark_tables, period_vectors
from geo._polyline import route_coords
from geo._snap import Snap, Snapper, snap_junction
from geo._steps import Guide, Step, build_steps, edge_bearings
from geo._traffic import (
    BIN_S,
    BINS_PER_DAY,
    DAY_TYPE_INDEX,
    DAY_TYPES,
    TABLE_BINS,
    LiveState,
    LiveTraffic,
    TrafficProfile,
    to_epoch,
)
from geo._vehicle import CAR, Vehicle, closed_edges, restricted_edges

MAX_ALTERNATIVES = 3
RESTRICTED_PENALTY_S = 300.0  # default entry cost of a destination/private road (no through traffic)
RESTRICTED_PENALTY_MPS = 10.0  # the same cost in metres for metric="distance": seconds x 10 m/s
U_TURN_PENALTY_S = 20.0  # default cost of turning back at a junction that is not a dead end (OSRM car.lua)
EXCLUDABLE = ("motorway", "toll", "ferry")  # road classes a route can avoid (ferries: none in the graph)
ALT_PENALTY = 1.4
ALT_MAX_OVERLAP = 0.7
ALT_MAX_STRETCH = 1.4
ACTIVE_LANDMARKS = 12
PERIOD_TABLES = 4  # landmark tables under per-class factor ceilings, computed at load (not in the file)
PERIOD_DAY_WEIGHT = np.array([5.0, 2.0, 0.3])  # how often each day type occurs (weekday, weekend, holiday)
PERIOD_SLACK = 1.25  # use a period table when its horizon covers 1.25 x the estimated trip
TABLE_CACHE = 256  # per-departure-bin profile tables kept (LRU; 192 x columns float64 each)
_EPOCH_DATE = date(1970, 1, 1)
_EMPTY_I64 = np.zeros(0, np.int64)
_EMPTY_F64 = np.zeros(0, np.float64)
_EMPTY_HG = np.zeros((0, 4), np.float64)

Metric = Literal["time", "distance"]


@dataclass
class RouteResult:
    distance_m: float
    duration_s: float  # traffic-aware (free flow when free_flow=True)
    duration_free_flow_s: float  # the same path at free-flow speeds
    delay_s: float  # duration_s - duration_free_flow_s
    edges: list[int]  # road edge ids, first and last possibly partial
    first_fraction: float  # where the route starts on edges[0] (0..1 from its tail)
    last_fraction: float  # where it ends on edges[-1]
    edge_entry_s: list[float]  # seconds after departure at which each edge is entered
    line: np.ndarray = field(compare=False, repr=False)  # [points, 2] (lat, lon), partial ends included
    snap_from_m: float
    snap_to_m: float
    from_snapped: tuple[float, float]
    to_snapped: tuple[float, float]
    depart_at: datetime
    arrive_at: datetime
    steps: list[Step] = field(default_factory=list)
    alternatives: list[RouteResult] = field(default_factory=list)
    overlap: float = 0.0  # alternatives: largest overlap with an accepted route (length share)
    stretch: float = 1.0  # alternatives: cost / best cost
    metric: str = "time"
    settled: int = 0  # nodes settled by the search (diagnostics)
    edge_starts: list[int] = field(default_factory=list)  # polyline index where each edge begins
    # geometry index of each polyline point (OSM ids), int64 (a list was a per-route cost)
    vertices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), compare=False, repr=False)
    edge_time_s: list[float] = field(default_factory=list)  # time spent on each edge
    edge_dist_m: list[float] = field(default_factory=list)  # length driven on each edge
    # (lat, lon, start) of `geo._polyline.route_coords` for the edges and fractions, before the ends
    # are moved to the snapped points: the shape of the response (api._routing), computed once
    coords: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def polyline(self) -> list[tuple[float, float]]:
        """(lat, lon) of every point, partial first/last edges included."""
        return list(zip(self.line[:, 0].tolist(), self.line[:, 1].tolist(), strict=True))


@dataclass
class MatrixResult:
    durations_s: np.ndarray  # [sources, targets], inf where unreachable
    distances_m: np.ndarray


class _Workspace:
    """Per-thread search state, two labels per node (`geo._kernels.search`): nd[v] = (label A, h, length A,
    stamp, key A, entry costs A, reverse of road edge A, cap of slot B) (64 bytes: what most relaxations
    read), nb[v] = (length B, key B, entry costs B, label B, A's reverse edge then), par[v] = (parent state A, road edge A, parent state B,
    road edge B), heap = (key, state) pairs interleaved (capacity len(heap) // 2)."""

    __slots__ = ("epoch", "heap", "nb", "nd", "par", "pend")

    def __init__(self, n: int, cap: int, max_degree: int = 16) -> None:
        self.nd = _aligned_zeros(n, 8)
        self.nb = np.zeros((n, 5), np.float64)
        self.pend = np.zeros((max(max_degree, 1), 7), np.float64)
        self.par = np.empty((n, 4), np.int64)
        self.epoch = 0
        self.heap = np.empty(2 * cap, np.float64)

    def grow(self) -> None:
        self.heap = np.empty(2 * len(self.heap), np.float64)

    def next_epoch(self) -> int:
        self.epoch += 1
        if self.epoch >= 2**52:
            self.nd[:, 3] = 0.0
            self.epoch = 1
        return self.epoch


@dataclass
class _Search:
    cost: np.ndarray
    length: np.ndarray
    node: np.ndarray
    var: np.ndarray
    settled: int


@dataclass
class _Period:
    """Landmark tables with every edge's free-flow time divided by its class ceiling `ceil`."""

    ceil: np.ndarray  # [n_classes] factor ceiling per road class
    lmt: np.ndarray  # node-major [n, 2L] float32 (from..., to...)
    margin: float
    smin: float  # smallest ceiling of a class present in the graph
    tight: float  # weighted mean ceiling (lower = sharper)


@dataclass
class _Ctx:
    """Per-query traffic context."""

    mode: int
    b0: int
    t0: float  # departure, seconds after b0*900
    t_abs: float
    table: np.ndarray
    live: LiveState
    detail: bool = False  # steps describe every junction passed (OSRM intersections)
    vehicle: Vehicle = CAR
    costs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # vehicle's (arc_f, edge_f) x2


class Router:
    def __init__(
        self,
        g: CompiledGraph,
        *,
        profile: TrafficProfile,
        holidays: Holidays,
        tz: ZoneInfo,
        max_snap_m: float = 1000.0,
        decay_s: float = 3600.0,
        restricted_penalty_s: float = RESTRICTED_PENALTY_S,
        u_turn_penalty_s: float = U_TURN_PENALTY_S,
    ) -> None:
        self.g = g
        self.profile = profile
        self.holidays = holidays
        self.tz = tz
        self.live = LiveTraffic(g, profile, holidays, tz, decay_s=decay_s)
        self.decay_s = float(decay_s)
        self.components = components(g)
        self.snapper = Snapper(g, max_snap_m=max_snap_m, main_edges=self.components.edge_main)
        n, m = g.n_nodes, g.n_road_edges
        self._keys, self._override_ids = profile.edge_keys(m, g.edge_class)
        # profile column -> road class (an edge override column takes its edge's class)
        self._key_class = np.concatenate(
            (np.arange(len(ROAD_CLASSES)), g.edge_class[self._override_ids].astype(np.int64))
        )
        self._len = np.ascontiguousarray(g.edge_length_m, dtype=np.float64)
        self._spd = np.ascontiguousarray(g.edge_speed_mps, dtype=np.float64)
        self._offsets = np.ascontiguousarray(g.offsets, dtype=np.int64)
        # packed copies for the kernel: what a relaxation reads sits together in memory
        # entry cost of restricted roads (no through traffic): seconds; metres in distance mode (x 10 m/s)
        self.restricted_penalty_s = float(restricted_penalty_s)
        flags = g.edge_flags if g.edge_flags.shape[0] == m else np.zeros(m, np.uint8)
        self._entry_s = np.where((flags & FLAG_RESTRICTED) != 0, self.restricted_penalty_s, 0.0)
        self._edge_f = np.ascontiguousarray(
            np.column_stack((self._len, self._spd, self._keys.astype(np.float64), self._entry_s))
        )
        self._edge_f_dist = self._edge_f.copy()
        self._edge_f_dist[:, 3] *= RESTRICTED_PENALTY_MPS
        self._rev = _reverse_edges(g)
        # (head, road edge, profile key, reverse road edge): 16 bytes per arc
        self._arc_i = np.ascontiguousarray(
            np.column_stack((g.arc_head, g.arc_edge, self._keys[g.arc_edge], self._rev[g.arc_edge])).astype(
                np.int32
            )
        )
        self._arc_f = np.ascontiguousarray(
            np.column_stack((self._len[g.arc_edge], self._spd[g.arc_edge], self._entry_s[g.arc_edge]))
        )
        self._arc_f_dist = self._arc_f.copy()
        self._arc_f_dist[:, 2] *= RESTRICTED_PENALTY_MPS
        arc_tail = np.repeat(np.arange(n, dtype=np.int64), np.diff(g.offsets))
        # where a road edge driven from its junction leads (a via-way restriction gives the same road edge
        # other heads when it is entered from a private copy)
        plain = g.node_base[arc_tail] == arc_tail
        self._edge_head = np.full(m, -1, np.int64)
        self._edge_head[g.arc_edge[plain]] = g.arc_head[plain]
        # a 4th arc column for the U-turn rule (`geo._kernels._offer`): the least cost of driving the
        # reverse road edge back to the arc's tail (free-flow seconds; metres for metric="distance"),
        # -inf when the reverse edge does not lead back to that very node (none, or a private copy)
        rev_a = self._rev[g.arc_edge]
        r_ok = np.maximum(rev_a, 0)
        back = (rev_a >= 0) & (self._edge_head[r_ok] == arc_tail)
        back_s = np.where(back, self._len[r_ok] / self._spd[r_ok], -np.inf)
        back_m = np.where(back, self._len[r_ok], -np.inf)
        self._arc_f = np.ascontiguousarray(np.column_stack((self._arc_f, back_s)))
        self._arc_f_dist = np.ascontiguousarray(np.column_stack((self._arc_f_dist, back_m)))
        order = np.argsort(g.arc_edge, kind="stable")
        self._edge_tails = arc_tail[order]
        # where each arc of a road edge leads: a via-way restriction gives one road edge several heads
        # (its junction, private copies), and a landmark bound past a target must hold for all of them
        self._edge_heads = g.arc_head[order].astype(np.int64)
        self._edge_tail_ptr = np.concatenate(([0], np.cumsum(np.bincount(g.arc_edge, minlength=m)))).astype(
            np.int64
        )
        # U-turns (leaving a node by the reverse of the road edge that entered it) cost u_turn_penalty_s
        # (metres x 10 m/s for metric="distance") wherever the node has another way on; at a dead end
        # (one arc out: a cul-de-sac, a barrier, a junction whose other turns are forbidden) they are free
        self.u_turn_penalty_s = float(u_turn_penalty_s)
        self._max_degree = int(np.diff(self._offsets).max()) if n else 1
        # road edges arriving at each junction (phantom targets); leaving ones are the plain node's arcs
        by_head = np.argsort(g.edge_v, kind="stable")
        self._in_edges = by_head.astype(np.int64)
        self._in_ptr = np.concatenate(([0], np.cumsum(np.bincount(g.edge_v, minlength=n)))).astype(np.int64)
        # first / last segment bearing of every road edge (steps), computed once
        self._bear_start, self._bear_end = edge_bearings(g, np.arange(m, dtype=np.int64))
        self.guide = Guide(
            g, rev=self._rev, edge_head=self._edge_head, b_start=self._bear_start, b_end=self._bear_end
        )
        self._excl_cache: OrderedDict[tuple[int, int, frozenset[str], Vehicle], LiveState] = OrderedDict()
        self._veh_costs: dict[Vehicle, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None] = {}
        self._limits = g.edge_limits if g.edge_limits.shape == (m, 4) else np.full((m, 4), np.inf, np.float32)
        self._hgv = g.edge_hgv if g.edge_hgv.shape[0] == m else np.full(m, 2, np.uint8)
        self._excl_lock = threading.Lock()
        L = g.lm_from.shape[0] if g.lm_from.ndim == 2 and g.lm_from.shape[1] == n else 0
        self._lm_from = np.asarray(g.lm_from if L else np.zeros((0, n), np.float32), dtype=np.float32)
        self._lm_to = np.asarray(g.lm_to if L else np.zeros((0, n), np.float32), dtype=np.float32)
        # node-major copy [n, 2L] (from..., to...): one node's bounds share a cache line or two
        self._lmt = np.ascontiguousarray(np.concatenate((self._lm_from, self._lm_to), axis=0).T)
        self._margin = landmark_margin(g) if L else 0.0
        self._periods = self._build_periods(g, profile) if L else []
        # straight-line bound for metric="distance": valid when every edge is at least as long as the
        # haversine distance between its end junctions (true when lengths are haversine polyline lengths)
        lat_r, lon_r = np.radians(g.node_lat), np.radians(g.node_lon)
        self._node_rad = np.ascontiguousarray(np.column_stack((lat_r, lon_r, np.cos(lat_r))))
        chord = haversine_m_array(
            g.node_lat[g.edge_u], g.node_lon[g.edge_u], g.node_lat[g.edge_v], g.node_lon[g.edge_v]
        )
        self._geo_ok = bool(K.EARTH_R == EARTH_RADIUS_M and np.all(self._len >= chord * K.GEO_SHRINK - 1e-6))
        self._period_cache: dict[tuple[int, int], tuple[float, ...]] = {}
        self._empty_live = LiveState.empty(m, -1)
        self._live_any_cache: tuple[LiveState | None, bool] = (None, False)
        self._pool: queue.SimpleQueue[_Workspace] = queue.SimpleQueue()
        self._tables: OrderedDict[int, np.ndarray] = OrderedDict()
        self._tables_lock = threading.Lock()
        # whole-day profile rows per day type, built once: row dt * 96 + local bin -> factor per column
        n_cls = len(ROAD_CLASSES)
        day = np.empty((len(DAY_TYPES), BINS_PER_DAY, n_cls + len(self._override_ids)))
        day[:, :, :n_cls] = profile.factors.transpose(0, 2, 1)
        for i, e in enumerate(self._override_ids.tolist()):
            day[:, :, n_cls + i] = profile.edge_factors[e]
        self._day_rows = np.ascontiguousarray(day.reshape(len(DAY_TYPES) * BINS_PER_DAY, -1))
        self._day_type: dict[date, int] = {}
        self._win_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._flat_table = np.ones((1, len(ROAD_CLASSES) + len(self._override_ids)))

    # ---- small helpers -------------------------------------------------------------------------
    def _table(self, b0: int) -> np.ndarray:
        with self._tables_lock:
            t = self._tables.get(b0)
            if t is not None:
                self._tables.move_to_end(b0)
                return t
        t = self._build_table(b0)
        with self._tables_lock:
            self._tables[b0] = t
            while len(self._tables) > TABLE_CACHE:
                self._tables.popitem(last=False)
        return t

    def _build_table(self, b0: int) -> np.ndarray:
        """`TrafficProfile.table(b0, ..., TABLE_BINS)` by row gathers from the per-day-type rows.

        When the zone's UTC offset is the same at the first, middle and last bin and a whole number of
        bins (no offset change inside the 48 h table: zones change offset months apart), local bin of
        absolute bin B is ``(B + off / 900) mod 96`` and its local date is day ``(B + off / 900) // 96``
        after 1970-01-01, exactly what `local_bins` derives from ``datetime.fromtimestamp``. Otherwise
        the profile builds it bin by bin."""
        n = TABLE_BINS
        offs = {datetime.fromtimestamp((b0 + k) * BIN_S, self.tz).utcoffset() for k in (0, n // 2, n - 1)}
        off = offs.pop().total_seconds() if len(offs) == 1 else 0.5  # type: ignore[union-attr]
        if off % BIN_S:
            return self.profile.table(b0, self.holidays, self.tz, self._override_ids, n)
        loc = np.arange(b0 + int(off) // BIN_S, b0 + int(off) // BIN_S + n, dtype=np.int64)
        days = loc // BINS_PER_DAY
        d_lo = int(days[0])
        dts = np.array([self._dtype(d) for d in range(d_lo, int(days[-1]) + 1)], np.int64)
        rows = dts[days - d_lo] * BINS_PER_DAY + loc % BINS_PER_DAY
        return self._day_rows[rows]

    def _dtype(self, day_index: int) -> int:
        d = _EPOCH_DATE + timedelta(days=day_index)
        dt = self._day_type.get(d)
        if dt is None:
            dt = DAY_TYPE_INDEX[self.holidays.day_type(d)]
            if len(self._day_type) > 4096:
                self._day_type.clear()
            self._day_type[d] = dt
        return dt

    def _ctx(self, depart_at: datetime | float, *, free_flow: bool, metric: str) -> _Ctx:
        if metric not in ("time", "distance"):
            raise InvalidInput("metric", "must be 'time' or 'distance'")
        t_abs = to_epoch(depart_at, self.tz, "depart_at")
        b0 = int(t_abs // BIN_S)
        mode = 2 if metric == "distance" else (1 if free_flow else 0)
        table = self._table(b0) if mode == 0 else self._flat_table
        live = self._empty_live if free_flow else self.live.snapshot()
        return _Ctx(mode, b0, t_abs - b0 * BIN_S, t_abs, table, live)

    def _variants(
        self, s: Snap, direction: int = 0, *, end: Literal["source", "target"] = "source"
    ) -> tuple[list[int], list[float]]:
        """(edges, metres from tail) for a snapped point.

        On a junction (`geo._snap.snap_junction`) and with no direction asked, the point is a phantom
        endpoint: a source leaves by every edge out of the junction (from its tail), a target is reached
        by every edge into it (at its head). Otherwise: its edge and the reverse edge if any;
        `direction` 1 keeps only its edge (travel along the edge), -1 only the reverse edge."""
        if direction == 0:
            j = snap_junction(self.g, s)
            if j >= 0:
                if end == "source":
                    out = self.g.arc_edge[self._offsets[j] : self._offsets[j + 1]].astype(np.int64).tolist()
                    return out, [0.0] * len(out)
                inn = self._in_edges[self._in_ptr[j] : self._in_ptr[j + 1]].tolist()
                return inn, [float(self._len[e]) for e in inn]
        e = s.edge
        edges: list[int] = []
        offs: list[float] = []
        if direction >= 0:
            edges.append(e)
            offs.append(s.fraction * float(self._len[e]))
        r = int(self._rev[e])
        if r >= 0 and direction <= 0:
            edges.append(r)
            offs.append((1.0 - s.fraction) * float(self._len[r]))
        return edges, offs

    def _same_place(self, s: Snap, d: Snap) -> bool:
        """Whether two snaps are the same point of the network (no driving between them)."""
        if (s.edge == d.edge and s.fraction == d.fraction) or (s.lat == d.lat and s.lon == d.lon):
            return True
        j = snap_junction(self.g, s)
        return j >= 0 and j == snap_junction(self.g, d)

    def _run(
        self,
        ctx: _Ctx,
        src: tuple[Sequence[int], Sequence[float]],
        tg_edge: np.ndarray,
        tg_off: np.ndarray,
        tg_id: np.ndarray,
        n_tg: int,
        *,
        heuristic: bool,
        pen: np.ndarray = _EMPTY_I64,
        max_cost: float = math.inf,
        trace_target: int | None = None,
    ) -> tuple[_Search, list[tuple[np.ndarray, float, float]]]:
        src_edge = np.asarray(src[0], np.int64)
        src_off = np.asarray(src[1], np.float64)
        if self._live_any(ctx.live) and src_edge.size:  # leaving a junction onto a closed road: not allowed
            lv = ctx.live
            e0 = src_edge
            shut = (
                (lv.flag[e0] == 2)
                & (np.floor(lv.data[e0, 1] / BIN_S) * BIN_S <= ctx.t_abs)
                & (ctx.t_abs < lv.data[e0, 2])
                & (src_off == 0.0)
            )
            if shut.any():
                src_edge, src_off = src_edge[~shut], src_off[~shut]
                if not src_edge.size:
                    none = np.full(n_tg, np.inf)
                    return _Search(
                        none, none.copy(), np.full(n_tg, -1, np.int64), np.zeros(n_tg, np.int64), 0
                    ), []
        order = np.argsort(tg_edge, kind="stable")
        tg_edge, tg_off, tg_id = tg_edge[order], tg_off[order], tg_id[order]
        act, t_from, t_to = _EMPTY_I64, _EMPTY_F64, _EMPTY_F64
        win_h, win_f = _EMPTY_F64, _EMPTY_F64
        lmt, margin, per_h, per_s = self._lmt, self._margin, -1.0, 1.0
        hg = _EMPTY_HG
        if heuristic and ctx.mode == 2 and self._geo_ok and len(tg_edge):
            u = self.g.edge_u[tg_edge]
            hg = np.ascontiguousarray(np.column_stack((self._node_rad[u], tg_off)))
        if heuristic and ctx.mode != 2 and self._lm_from.shape[0]:
            act, t_from, t_to, est = self._landmarks_for(src_edge, tg_edge, tg_off, self._lmt, None)
            if ctx.mode == 0:
                win_h, win_f = self._windows(ctx)
                pi, horizon = self._period(ctx, est)
                if pi >= 0:
                    per = self._periods[pi]
                    act, t_from, t_to, _ = self._landmarks_for(src_edge, tg_edge, tg_off, per.lmt, per.ceil)
                    lmt, margin, per_h, per_s = per.lmt, per.margin, horizon, per.smin
        arc_f, edge_f = self._costs(ctx)
        ws = self._get_ws()
        try:
            lv = ctx.live
            while True:
                epoch = ws.next_epoch()
                best, blen, bnode, bvar, settled = K.search(
                    self._offsets, self._arc_i, arc_f, edge_f, self._edge_head, self._rev,
                    self.u_turn_penalty_s * (RESTRICTED_PENALTY_MPS if ctx.mode == 2 else 1.0),
                    ctx.mode, ctx.b0, ctx.t0, ctx.t_abs, self.decay_s, ctx.table, lv.flag, lv.data,
                    self._live_any(lv),
                    src_edge, src_off, tg_edge, tg_off, tg_id, n_tg,
                    lmt, act, t_from, t_to, margin, win_h, win_f, per_h, per_s, self._node_rad, hg,
                    pen, ALT_PENALTY, max_cost + (ctx.t0 if ctx.mode != 2 else 0.0),
                    ws.nd, ws.nb, ws.par, epoch, ws.heap, ws.pend,
                )  # fmt: skip
                if settled >= 0:
                    break
                ws.grow()
            paths: list[tuple[np.ndarray, float, float]] = []
            if trace_target is not None and math.isfinite(best[trace_target]):
                ti = trace_target
                if bnode[ti] == -1:  # direct on one edge
                    j, i = divmod(int(bvar[ti]), 65536)
                    paths.append((np.array([src_edge[i]], np.int64), float(src_off[i]), float(tg_off[j])))
                else:
                    j = int(bvar[ti])
                    mid, sv = K.trace(ws.par, int(bnode[ti]))
                    mid[0] = src_edge[sv]
                    full = np.concatenate((mid, np.array([tg_edge[j]], np.int64)))
                    paths.append((full, float(src_off[sv]), float(tg_off[j])))
        finally:
            self._pool.put(ws)
        return _Search(best, blen, bnode, bvar, int(settled)), paths

    def _costs(self, ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
        """(arc_f, edge_f) for the query: the car's, or the vehicle's when its entry costs differ."""
        c = ctx.costs
        if c is None:
            if ctx.mode == 2:
                return self._arc_f_dist, self._edge_f_dist
            return self._arc_f, self._edge_f
        return (c[2], c[3]) if ctx.mode == 2 else (c[0], c[1])

    def _with_vehicle(
        self, ctx: _Ctx, vehicle: Vehicle | None, exclude: frozenset[str] = frozenset()
    ) -> _Ctx:
        """`ctx` for `vehicle` and the excluded road classes: the edges closed to it are closed in the
        query's live snapshot (the closure mechanism, one mask per vehicle and snapshot, cached), and a
        truck pays the restricted-road entry cost on hgv=destination roads too."""
        v = vehicle if vehicle is not None else CAR
        ctx.vehicle = v
        if exclude or not v.is_car:
            ctx.live = self._excluding(ctx.live, exclude, v)
        if not v.is_car:
            if v not in self._veh_costs:
                extra = restricted_edges(v, self._hgv) & (self._entry_s == 0.0)
                if extra.any():
                    entry = np.where(extra, self.restricted_penalty_s, self._entry_s)
                    edge_f = self._edge_f.copy()
                    edge_f[:, 3] = entry
                    arc_f = self._arc_f.copy()
                    arc_f[:, 2] = entry[self.g.arc_edge]
                    edge_fd, arc_fd = edge_f.copy(), arc_f.copy()
                    edge_fd[:, 3] *= RESTRICTED_PENALTY_MPS
                    arc_fd[:, 2] *= RESTRICTED_PENALTY_MPS
                    arc_fd[:, 3] = self._arc_f_dist[:, 3]
                    self._veh_costs[v] = (arc_f, edge_f, arc_fd, edge_fd)
                else:
                    self._veh_costs[v] = None
                while len(self._veh_costs) > 16:
                    self._veh_costs.pop(next(iter(self._veh_costs)))
            ctx.costs = self._veh_costs.get(v)
        return ctx

    def _windows(self, ctx: _Ctx) -> tuple[np.ndarray, np.ndarray]:
        """Time windows [t0, H_j] (relative seconds) in which every factor is <= f_j < 1."""
        key = (ctx.b0, ctx.live.version)
        hit = self._win_cache.get(key)
        if hit is not None:
            return hit
        # per-bin factor bound (profile and per-class live maxima, see `_live_bound`), running max
        fmax = np.maximum.accumulate(self._live_bound(ctx).max(axis=1))
        hs: list[float] = []
        fs: list[float] = []
        for k in range(1, len(fmax) + 1):
            if (k == len(fmax) or fmax[k] > fmax[k - 1]) and fmax[k - 1] < 1.0:
                hs.append(k * float(BIN_S))
                fs.append(float(fmax[k - 1]))
            if k < len(fmax) and fmax[k] >= 1.0:
                break
        out = (np.array(hs[:8], np.float64), np.array(fs[:8], np.float64))
        if len(self._win_cache) > 64:
            self._win_cache.clear()
        self._win_cache[key] = out
        return out

    def _live_any(self, lv: LiveState) -> bool:
        """Whether the snapshot holds any observation (the kernel skips overlay reads otherwise);
        scanned once per published snapshot, not per query."""
        if lv is self._empty_live:
            return False
        hit = self._live_any_cache
        if hit[0] is lv:
            return hit[1]
        anyv = bool(lv.flag.any())
        self._live_any_cache = (lv, anyv)
        return anyv

    def _get_ws(self) -> _Workspace:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return _Workspace(self.g.n_nodes, min(self.g.n_arcs + 64, 1 << 16), self._max_degree)

    def _landmarks_for(
        self, src_edge: np.ndarray, tg_edge: np.ndarray, tg_off: np.ndarray, lmt: np.ndarray,
        ceil: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:  # fmt: skip
        """Active landmarks, their target bounds (Tf <= d(l, target), Tt >= d(target, l)) for the
        node-major table `lmt` (edge weights free-flow / `ceil[class]`), and the source's bound.
        Tt: past the target the route goes on along its edge to the head of the arc it drove, whichever
        that is (several with via-way restrictions): the largest bound over them all."""
        act, t_from, t_to, best = K.landmark_bounds(
            self._edge_head[src_edge[0]], tg_edge, tg_off, lmt, _EMPTY_F64 if ceil is None else ceil,
            self._edge_tails, self._edge_tail_ptr, self._edge_heads, self._len, self._spd, self.g.edge_class,
            ACTIVE_LANDMARKS,
        )  # fmt: skip
        return act, t_from, t_to, float(best)

    def _build_periods(self, g: CompiledGraph, profile: TrafficProfile) -> list[_Period]:
        """Period landmark tables (built once at load; kept by the router, not in the compiled file)."""
        ff = g.edge_freeflow_s
        weight = np.bincount(g.edge_class, weights=ff, minlength=len(ROAD_CLASSES))
        present = weight > 0
        out: list[_Period] = []
        ceils = period_vectors(profile.factors, weight, PERIOD_TABLES, PERIOD_DAY_WEIGHT)
        # one array (so the memory shows among the router's arrays): [tables, n, 2L] float32
        self._period_lmt = np.empty((len(ceils), g.n_nodes, 2 * g.lm_from.shape[0]), np.float32)
        for i, ceil in enumerate(ceils):
            ceil = np.where(present, ceil, 1.0)
            lf, lt = landmark_tables(g, (ff / ceil[g.edge_class])[g.arc_edge])
            self._period_lmt[i] = np.concatenate((lf, lt), axis=0).T
            out.append(
                _Period(
                    ceil=ceil,
                    lmt=self._period_lmt[i],
                    margin=landmark_margin(g, (lf, lt)),
                    smin=float(ceil[present].min()),
                    tight=float((weight * ceil).sum() / weight.sum()),
                )
            )
        out.sort(key=lambda p: p.tight)
        return out

    def _live_bound(self, ctx: _Ctx) -> np.ndarray:
        """bound[k, key] >= every factor the kernel can use in relative bin k on an edge with profile
        column `key`, profile and live overlay together.

        Proof. The kernel's factor for edge e (column key, class c = `_key_class[key]`; an override column
        is one edge, of its own class) in bin k is either the profile value ``P = table[k, key]`` or
        ``w * x + (1 - w) * P`` with ``w`` in [0, 1] and ``x`` the live factor held for e. ``x`` is at most
        ``class_fmax[c]``, the largest live factor held on any edge of class c, and a convex combination
        is at most the larger of its two terms, so the factor is at most
        ``max(table[k, key], class_fmax[c])``. Closures only remove arcs. So one fast observation on a
        residential street lifts the bound of residential columns only, not every class's."""
        return np.asarray(np.maximum(ctx.table, ctx.live.class_fmax[self._key_class][None, :]))

    def _period(self, ctx: _Ctx, est: float) -> tuple[int, float]:
        """(index of the sharpest period table whose horizon covers the estimated trip, horizon in
        seconds relative to b0*900), or (-1, -1.0). The horizon is the start of the first bin where some
        column's factor bound (`_live_bound`: profile, and the live maximum of its road class) exceeds
        the table's ceiling for that column's class."""
        if not self._periods:
            return -1, -1.0
        key = (ctx.b0, ctx.live.version)
        hz = self._period_cache.get(key)
        if hz is None:
            bound = self._live_bound(ctx)
            hs = []
            for per in self._periods:
                viol = (bound > per.ceil[self._key_class][None, :]).any(axis=1)
                k = int(np.argmax(viol)) if viol.any() else -1
                hs.append(math.inf if k < 0 else k * float(BIN_S))
            hz = tuple(hs)
            if len(self._period_cache) > 64:
                self._period_cache.clear()
            self._period_cache[key] = hz
        for i, per in enumerate(self._periods):
            h = hz[i]
            if h > ctx.t0 and h >= ctx.t0 + PERIOD_SLACK * est / per.tight:
                return i, (h if math.isfinite(h) else 1e300)
        return -1, -1.0

    # ---- public API ----------------------------------------------------------------------------
    def warmup(self) -> RouteResult | None:
        """Compile (or load from numba's cache) the kernels once; the route computed (None: none joins
        the two points tried), for warming what shapes answers."""
        e = int(np.argmax(self._len))
        a = self.g.edge_polyline(e)[0]
        b = self.g.edge_polyline(int(np.argmin(self._len)))[-1]
        with contextlib.suppress(RouteNotFound):
            return self.route((float(a[0]), float(a[1])), (float(b[0]), float(b[1])), depart_at=0.0)
        return None

    def route(
        self,
        from_latlon: tuple[float, float],
        to_latlon: tuple[float, float],
        *,
        depart_at: datetime | float,
        alternatives: int = 0,
        free_flow: bool = False,
        metric: Metric = "time",
        steps: bool = True,
        vehicle: Vehicle | None = None,
    ) -> RouteResult:
        """Fastest (or shortest, metric="distance") route between two WGS-84 points.

        Raises NoRoadNear("from"/"to"), RouteNotFound (no path, including because of closures),
        InvalidInput for bad options. `depart_at`: aware datetime, naive = region-local, or Unix s.
        `vehicle`: a van or truck keeps off the roads whose limits it exceeds (`geo._vehicle`).
        """
        if not 0 <= alternatives <= MAX_ALTERNATIVES:
            raise InvalidInput("alternatives", f"must be 0 to {MAX_ALTERNATIVES}")
        ctx = self._with_vehicle(self._ctx(depart_at, free_flow=free_flow, metric=metric), vehicle)
        try:  # both ends in one index query; errors are re-raised per end (same params and messages)
            s0, d0 = self.snapper.snap_many([from_latlon, to_latlon], "from")
        except (InvalidInput, ValueError, TypeError):
            s0 = d0 = None
        s = s0 if s0 is not None else self.snapper.snap(from_latlon[0], from_latlon[1], param="from")
        d = d0 if d0 is not None else self.snapper.snap(to_latlon[0], to_latlon[1], param="to")
        return self.route_snapped(s, d, ctx=ctx, alternatives=alternatives, steps=steps, metric=metric)

    def route_snapped(
        self, s: Snap, d: Snap, *, ctx: _Ctx, alternatives: int = 0, steps: bool = True, metric: str = "time",
        src_dir: int = 0, dst_dir: int = 0,
    ) -> RouteResult:  # fmt: skip
        """Route between snapped points; `src_dir` / `dst_dir` restrict the direction of travel on the
        snapped road (1 along its edge, -1 against it, 0 either; see `_variants`)."""
        depart = datetime.fromtimestamp(ctx.t_abs, self.tz)
        same = self._same_place(s, d)
        if same and (src_dir == 0 or dst_dir == 0 or src_dir == dst_dir):
            e0 = s.edge if src_dir >= 0 or self._rev[s.edge] < 0 else int(self._rev[s.edge])
            z = np.zeros(1)
            st = (
                build_steps(
                    self.g,
                    self.guide,
                    [e0],
                    z,
                    z,
                    np.array([s.lat]),
                    np.array([s.lon]),
                    np.zeros(1, np.int64),
                    detail=ctx.detail,
                )
                if steps
                else []
            )
            return RouteResult(
                0.0, 0.0, 0.0, 0.0, [e0], s.fraction, s.fraction, [0.0], np.array([[s.lat, s.lon]]),
                s.distance_m, d.distance_m, (s.lat, s.lon), (d.lat, d.lon), depart, depart, st, metric=metric,
                edge_starts=[0], vertices=self.g.edge_geom_offsets[e0 : e0 + 1].astype(np.int64), edge_time_s=[0.0], edge_dist_m=[0.0],
            )  # fmt: skip
        src = self._variants(s, src_dir)
        te, to = self._variants(d, dst_dir, end="target")
        if not src[0] or not te:
            raise RouteNotFound("no drivable path: a waypoint's road cannot be driven in the direction asked")
        tg_edge = np.asarray(te, np.int64)
        tg_off = np.asarray(to, np.float64)
        tg_id = np.zeros(len(te), np.int64)
        res, paths = self._run(ctx, src, tg_edge, tg_off, tg_id, 1, heuristic=True, trace_target=0)
        if not paths:
            raise RouteNotFound(self._why_not(ctx, src, tg_edge, tg_off))
        path, first_off, last_end = paths[0]
        main = self._result(ctx, path, first_off, last_end, s, d, depart, steps, metric)
        main.settled = res.settled
        if alternatives:
            main.alternatives = self._alternatives(
                ctx, main, src, tg_edge, tg_off, s, d, depart, alternatives, steps, metric
            )
        return main

    def route_legs(
        self,
        snaps: Sequence[Snap],
        *,
        depart_at: datetime | float,
        alternatives: int = 0,
        steps: bool = True,
        exclude: Sequence[str] = (),
        directions: Sequence[tuple[int, int]] | None = None,
        continue_straight: bool = False,
        free_flow: bool = False,
        metric: Metric = "time",
        vehicle: Vehicle | None = None,
    ) -> list[list[RouteResult]]:
        """Routes through two or more snapped waypoints in order: a list of routes (the best first, then
        alternatives, which exist for two waypoints only), each a list of legs (one per pair of
        consecutive waypoints). Each leg departs when the previous one arrives.

        `exclude`: classes of road to avoid (`EXCLUDABLE`). `directions[i]` = (arrive, depart) direction
        restriction at waypoint i (1 along its snapped edge, -1 against it, 0 either).
        `continue_straight`: no U-turn at intermediate waypoints (a leg leaves a waypoint in the
        direction the previous leg arrived). Raises RouteNotFound naming the leg, InvalidInput."""
        if len(snaps) < 2:
            raise InvalidInput("coordinates", "a route needs at least two waypoints")
        if not 0 <= alternatives <= MAX_ALTERNATIVES:
            raise InvalidInput("alternatives", f"must be 0 to {MAX_ALTERNATIVES}")
        bad = sorted(set(exclude) - set(EXCLUDABLE))
        if bad:
            raise InvalidInput("exclude", f"unknown class {bad[0]!r}: choose from {', '.join(EXCLUDABLE)}")
        dirs = list(directions) if directions is not None else [(0, 0)] * len(snaps)
        t = to_epoch(depart_at, self.tz, "depart_at")
        legs: list[RouteResult] = []
        alts: list[RouteResult] = []
        for k in range(len(snaps) - 1):
            ctx = self._ctx(t, free_flow=free_flow, metric=metric)
            ctx.detail = steps
            ctx = self._with_vehicle(ctx, vehicle, frozenset(exclude))
            src_dir = dirs[k][1]
            if continue_straight and k > 0 and src_dir == 0:
                last = legs[-1].edges[-1]
                src_dir = 1 if last == snaps[k].edge else (-1 if last == int(self._rev[snaps[k].edge]) else 0)
            try:
                res = self.route_snapped(
                    snaps[k], snaps[k + 1], ctx=ctx, alternatives=alternatives if len(snaps) == 2 else 0,
                    steps=steps, metric=metric, src_dir=src_dir, dst_dir=dirs[k + 1][0],
                )  # fmt: skip
            except RouteNotFound as exc:
                why = f"no route avoiding {', '.join(sorted(exclude))}" if exclude else str(exc)
                raise RouteNotFound(f"leg {k} (waypoint {k} to {k + 1}): {why}") from exc
            if steps and k < len(snaps) - 2 and res.steps:
                res.steps[-1] = replace(
                    res.steps[-1], text_zh=f"到达第{k + 1}个途经点", text_en=f"Arrive at waypoint {k + 1}"
                )
            alts = res.alternatives
            res.alternatives = []
            legs.append(res)
            t = res.arrive_at.timestamp()
        return [legs] + [[a] for a in alts]

    def _excluding(self, live: LiveState, classes: frozenset[str], vehicle: Vehicle = CAR) -> LiveState:
        """`live` with every edge of the excluded classes, and every edge closed to `vehicle`, closed for
        good (cached per snapshot)."""
        key = (id(live), live.version, classes, vehicle)
        with self._excl_lock:
            hit = self._excl_cache.get(key)
            if hit is not None:
                return hit
        g = self.g
        mask = np.zeros(g.n_road_edges, bool)
        if "motorway" in classes:
            mask |= np.isin(g.edge_class, [CLASS_INDEX["motorway"], CLASS_INDEX["motorway_link"]])
        if "toll" in classes and g.edge_flags.shape[0] == g.n_road_edges:
            mask |= (g.edge_flags & FLAG_TOLL) != 0
        mask |= closed_edges(vehicle, self._limits, self._hgv)
        flag = live.flag.copy()
        data = live.data.copy()
        flag[mask] = 2
        data[mask, 1] = 0.0
        data[mask, 2] = np.inf
        out = LiveState(flag, data, live.version, live.fmax, live.class_fmax)
        with self._excl_lock:
            self._excl_cache[key] = out
            while len(self._excl_cache) > 8:
                self._excl_cache.popitem(last=False)
        return out

    def _why_not(self, ctx: _Ctx, src: Any, tg_edge: np.ndarray, tg_off: np.ndarray) -> str:
        if not ctx.vehicle.is_car:
            car_ctx = _Ctx(ctx.mode, ctx.b0, ctx.t0, ctx.t_abs, ctx.table, self._empty_live)
            res, _ = self._run(
                car_ctx, src, tg_edge, tg_off, np.zeros(len(tg_edge), np.int64), 1, heuristic=True
            )
            if math.isfinite(res.cost[0]):
                return (
                    f"no drivable path for this {ctx.vehicle.kind}: height, weight, width or length limits"
                    f"{' or hgv access' if ctx.vehicle.kind == 'truck' else ''} (or closures) block every route"
                )
        closed_now = ctx.live.closed_at(ctx.t_abs)
        if closed_now.any():
            open_ctx = _Ctx(ctx.mode, ctx.b0, ctx.t0, ctx.t_abs, ctx.table, self._empty_live)
            res, _ = self._run(
                open_ctx, src, tg_edge, tg_off, np.zeros(len(tg_edge), np.int64), 1, heuristic=True
            )
            if math.isfinite(res.cost[0]):
                return (
                    f"no drivable path: closed roads ({int(closed_now.sum())} closed now) block every route"
                )
        comp = self.components.edge_component
        if len({int(comp[e]) for e in src[0]} & {int(comp[e]) for e in tg_edge.tolist()}) == 0:
            return (
                "not connected: the two points lie on parts of the road network that no drivable road "
                "joins (one-way roads, barriers, access rules or turn restrictions)"
            )
        return "no drivable path joins the two points (one-way roads or turn restrictions)"

    def _result(
        self, ctx: _Ctx, path: np.ndarray, first_off: float, last_end: float, s: Snap, d: Snap,
        depart: datetime, steps: bool, metric: str,
    ) -> RouteResult:  # fmt: skip
        lv = ctx.live
        tmode = 0 if ctx.mode == 0 or (ctx.mode == 2 and lv is not self._empty_live) else 1
        table = self._table(ctx.b0) if tmode == 0 else self._flat_table
        times = K.path_times(
            path,
            first_off,
            last_end,
            tmode,
            ctx.b0,
            ctx.t0,
            self.decay_s,
            self._edge_f,
            table,
            lv.flag,
            lv.data,
        )
        ff = K.path_times(
            path, first_off, last_end, 1, ctx.b0, ctx.t0, self.decay_s, self._edge_f, table, lv.flag, lv.data
        )
        duration = float(times[-1] - times[0])
        ff_dur = float(ff[-1] - ff[0])
        lens = self._len[path].copy()
        lens[-1] = last_end
        lens[0] -= first_off
        if len(path) == 1:
            lens[0] = last_end - first_off
        dist = float(lens.sum())
        edges = path.tolist()
        f0 = first_off / float(self._len[path[0]]) if self._len[path[0]] > 0 else 0.0
        f1 = last_end / float(self._len[path[-1]]) if self._len[path[-1]] > 0 else 1.0
        raw = route_coords(self.g, path, f0, f1)
        la, lo, vert, starts = raw[0].copy(), raw[1].copy(), raw[2], raw[3]
        if len(la):
            if edges[0] == s.edge:
                la[0], lo[0] = s.lat, s.lon
            if edges[-1] == d.edge:
                la[-1], lo[-1] = d.lat, d.lon
        entry = (times[:-1] - times[0]).tolist()
        dts = np.diff(times)
        st = (
            build_steps(self.g, self.guide, path, lens, dts, la, lo, starts, detail=ctx.detail)
            if steps
            else []
        )
        return RouteResult(
            distance_m=dist,
            duration_s=duration,
            duration_free_flow_s=ff_dur,
            delay_s=duration - ff_dur,
            edges=edges,
            first_fraction=f0,
            last_fraction=f1,
            edge_entry_s=entry,
            line=np.column_stack((la, lo)),
            snap_from_m=s.distance_m,
            snap_to_m=d.distance_m,
            from_snapped=(s.lat, s.lon),
            to_snapped=(d.lat, d.lon),
            depart_at=depart,
            arrive_at=depart + timedelta(seconds=duration),
            steps=st,
            metric=metric,
            edge_starts=starts.tolist(),
            vertices=vert,
            edge_time_s=dts.tolist(),
            edge_dist_m=lens.tolist(),
            coords=(raw[0], raw[1], starts),
        )

    def _alternatives(
        self, ctx: _Ctx, main: RouteResult, src: Any, tg_edge: np.ndarray, tg_off: np.ndarray,
        s: Snap, d: Snap, depart: datetime, want: int, steps: bool, metric: str,
    ) -> list[RouteResult]:  # fmt: skip
        accepted = [main]
        out: list[RouteResult] = []
        penal: set[int] = set(main.edges)
        best_cost = main.distance_m if metric == "distance" else main.duration_s
        for _ in range(3 * want):
            if len(out) >= want:
                break
            pen = np.array(sorted(penal), np.int64)
            _, paths = self._run(
                ctx,
                src,
                tg_edge,
                tg_off,
                np.zeros(len(tg_edge), np.int64),
                1,
                heuristic=True,
                pen=pen,
                trace_target=0,
            )
            if not paths:
                break
            path, first_off, last_end = paths[0]
            cand = self._result(ctx, path, first_off, last_end, s, d, depart, steps, metric)
            penal.update(cand.edges)
            cost = cand.distance_m if metric == "distance" else cand.duration_s
            cand.stretch = cost / best_cost if best_cost > 0 else math.inf
            cand.overlap = max(_overlap(cand, a, self._len) for a in accepted)
            if cand.stretch <= ALT_MAX_STRETCH and cand.overlap < ALT_MAX_OVERLAP:
                accepted.append(cand)
                out.append(cand)
        return out

    def _snap_all(self, points: Sequence[tuple[float, float]], param: str) -> list[Snap]:
        snaps = self.snapper.snap_many(points, param)
        out: list[Snap] = []
        for i, sn in enumerate(snaps):
            if sn is None:
                lat, lon = points[i]
                raise NoRoadNear(
                    f"{param}[{i}]",
                    f"no road near ({lat:.6f}, {lon:.6f}) within {self.snapper.max_snap_m:.0f} m",
                )
            out.append(sn)
        return out

    def snap_filtered(
        self,
        lat: float,
        lon: float,
        *,
        radius_m: float | None = None,
        bearing: tuple[float, float] | None = None,
        approach: str = "unrestricted",
        candidates: int = 10,
    ) -> tuple[Snap, int, int] | None:
        """The nearest road point within `radius_m` (at most `max_snap_m`) that can be driven in a
        direction within `bearing` = (value, range) degrees, among the `candidates` nearest segments:
        (snap, arrive direction, depart direction) with directions as in `route_snapped`, or None.
        `approach` "curb" (arrive and leave with the point on the right, the driving side) or
        "opposite" restrict the direction on two-way roads."""
        for sn, b_fwd in self._unique_candidates(lat, lon, radius_m, candidates if bearing else 1):
            fwd, back = True, int(self._rev[sn.edge]) >= 0
            if bearing is not None:
                fwd = abs((b_fwd - bearing[0] + 180.0) % 360.0 - 180.0) <= bearing[1]
                back = back and abs((b_fwd + 180.0 - bearing[0] + 180.0) % 360.0 - 180.0) <= bearing[1]
            if not (fwd or back):
                continue
            d = 0 if fwd and back else (1 if fwd else -1)
            if approach in ("curb", "opposite") and d == 0 and sn.distance_m > 0.01:
                to_pt = math.degrees(
                    math.atan2(
                        math.radians(lon - sn.lon) * math.cos(math.radians(lat)), math.radians(lat - sn.lat)
                    )
                )
                right = ((to_pt - b_fwd + 360.0) % 360.0) < 180.0  # the point is right of the edge direction
                d = 1 if right == (approach == "curb") else -1
            return sn, d, d
        return None

    def _unique_candidates(
        self, lat: float, lon: float, radius_m: float | None, limit: int
    ) -> list[tuple[Snap, float]]:
        """`Snapper.candidates`, one per two-way segment (a graph without twin records indexes both)."""
        if radius_m is None and limit == 1:
            sn = self.snapper.snap_many([(lat, lon)], "coordinates")[0]
            if sn is None:
                return []
            pl = self.g.edge_polyline(sn.edge)
            cum = np.concatenate(
                (
                    [0.0],
                    np.cumsum(np.hypot(np.diff(pl[:, 0]), np.diff(pl[:, 1]) * math.cos(math.radians(lat)))),
                )
            )
            k = int(
                np.clip(np.searchsorted(cum, sn.fraction * cum[-1], side="right") - 1, 0, max(len(pl) - 2, 0))
            )
            a, b = pl[k], pl[min(k + 1, len(pl) - 1)]
            bearing = (
                math.degrees(math.atan2((b[1] - a[1]) * math.cos(math.radians(a[0])), b[0] - a[0])) % 360.0
            )
            return [(sn, bearing)]
        out: list[tuple[Snap, float]] = []
        seen: set[int] = set()
        for sn, b in self.snapper.candidates(lat, lon, radius_m=radius_m, limit=2 * limit):
            if sn.edge in seen:
                continue
            seen.add(sn.edge)
            r = int(self._rev[sn.edge])
            if r >= 0:
                seen.add(r)
            out.append((sn, b))
        return out[:limit]

    def nearest(self, lat: float, lon: float, *, number: int = 1, radius_m: float | None = None,
                bearing: tuple[float, float] | None = None) -> list[Snap]:  # fmt: skip
        """The `number` nearest road segments (one per two-way segment), nearest first."""
        out = []
        for sn, b_fwd in self._unique_candidates(lat, lon, radius_m, max(number, 1) * (3 if bearing else 1)):
            if bearing is not None:
                fwd = abs((b_fwd - bearing[0] + 180.0) % 360.0 - 180.0) <= bearing[1]
                back = (
                    int(self._rev[sn.edge]) >= 0 and abs((b_fwd - bearing[0]) % 360.0 - 180.0) <= bearing[1]
                )
                if not (fwd or back):
                    continue
            out.append(sn)
        return out[:number]

    def annotate(self, res: RouteResult) -> dict[str, list[Any]]:
        """Per segment of the route polyline: distance (m), duration (s, the time of its edge shared by
        length) and speed (m/s); per point: the OSM node id (for a cut end: the node behind the start,
        ahead of the end; 0 when the graph keeps no node ids)."""
        pts = res.line
        if len(pts) < 2:
            return {"distance": [], "duration": [], "speed": [], "nodes": self._osm_ids(res.vertices)}
        seg_d = haversine_m_array(pts[:-1, 0], pts[:-1, 1], pts[1:, 0], pts[1:, 1])
        starts = np.asarray(res.edge_starts or [0], np.int64)
        owner = np.clip(np.searchsorted(starts, np.arange(len(seg_d)), side="right") - 1, 0, len(starts) - 1)
        per_edge = np.bincount(owner, weights=seg_d, minlength=len(starts))
        times = np.asarray(res.edge_time_s or [res.duration_s], np.float64)
        share = np.divide(seg_d, per_edge[owner], out=np.zeros_like(seg_d), where=per_edge[owner] > 0)
        dur = times[owner] * share
        speed = np.divide(seg_d, dur, out=np.zeros_like(seg_d), where=dur > 0)
        return {
            "distance": np.round(seg_d, 1).tolist(),
            "duration": np.round(dur, 1).tolist(),
            "speed": np.round(speed, 1).tolist(),
            "nodes": self._osm_ids(res.vertices),
        }

    def _osm_ids(self, vertices: np.ndarray) -> list[int]:
        geom_osm = self.g.geom_osm
        if geom_osm.shape[0] != self.g.geom_lat.shape[0]:
            return [0] * len(vertices)
        return [int(x) for x in geom_osm[np.asarray(vertices, np.int64)]]

    def segment_nodes(self, s: Snap) -> tuple[int, int]:
        """OSM ids of the two ends of the segment a snap lies on (edge ends without node ids)."""
        a, b = int(self.g.edge_geom_offsets[s.edge]), int(self.g.edge_geom_offsets[s.edge + 1])
        if self.g.geom_osm.shape[0] == self.g.geom_lat.shape[0] and b - a >= 2:
            pl = self.g.edge_polyline(s.edge)
            cum = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(pl[:, 0]), np.diff(pl[:, 1])))))
            k = int(np.clip(np.searchsorted(cum, s.fraction * cum[-1], side="right") - 1, 0, b - a - 2))
            return int(self.g.geom_osm[a + k]), int(self.g.geom_osm[a + k + 1])
        g = self.g
        return int(g.node_osm[g.edge_u[s.edge]]), int(g.node_osm[g.edge_v[s.edge]])

    def one_to_many(
        self,
        origin: tuple[float, float],
        targets: Sequence[tuple[float, float]],
        *,
        depart_at: datetime | float,
        free_flow: bool = False,
        metric: Metric = "time",
        max_time_s: float = math.inf,
        vehicle: Vehicle | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(durations s, distances m) of the fastest routes to each target; inf where unreachable
        (or beyond `max_time_s`). One time-dependent Dijkstra settles all targets at once."""
        ctx = self._with_vehicle(self._ctx(depart_at, free_flow=free_flow, metric=metric), vehicle)
        s = self.snapper.snap(origin[0], origin[1], param="origin")
        tsn = self._snap_all(targets, "targets")
        return self._one_to_many_snapped(ctx, s, tsn, max_time_s)

    def snap_many(self, points: Sequence[tuple[float, float]], param: str = "points") -> list[Snap | None]:
        """Snap each WGS-84 (lat, lon) to the nearest road point; None where none is within
        `max_snap_m`. Raises InvalidInput(param) for non-finite or out-of-range coordinates."""
        return self.snapper.snap_many(points, param)

    def one_to_many_snapped(
        self,
        origin: Snap,
        targets: Sequence[Snap | None],
        *,
        depart_at: datetime | float,
        max_time_s: float = math.inf,
        free_flow: bool = False,
        metric: Metric = "time",
        vehicle: Vehicle | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`one_to_many` from already snapped points (see `snap_many`): (durations s, distances m), one
        search for all targets; inf for None targets, unreachable ones and those beyond `max_time_s`
        (a cost in the metric: metres for metric="distance"); `vehicle` as in `route`."""
        ctx = self._with_vehicle(self._ctx(depart_at, free_flow=free_flow, metric=metric), vehicle)
        n = len(targets)
        dur = np.full(n, np.inf)
        dist = np.full(n, np.inf)
        idx = [i for i, t in enumerate(targets) if t is not None]
        if not idx:
            return dur, dist
        tsn = [t for t in targets if t is not None]
        d, m = self._one_to_many_snapped(ctx, origin, tsn, max_time_s)
        d = np.asarray(d, np.float64).copy()
        m = np.asarray(m, np.float64).copy()
        beyond = ~(d <= max_time_s)
        d[beyond] = np.inf
        m[beyond] = np.inf
        dur[idx] = d
        dist[idx] = m
        return dur, dist

    def _one_to_many_snapped(
        self, ctx: _Ctx, s: Snap, tsn: Sequence[Snap], max_cost: float
    ) -> tuple[np.ndarray, np.ndarray]:
        te: list[int] = []
        to: list[float] = []
        ti: list[int] = []
        for k, d in enumerate(tsn):
            a, b = self._variants(d, end="target")
            te += a
            to += b
            ti += [k] * len(a)
        if not tsn:
            return np.zeros(0), np.zeros(0)
        res, _ = self._run(
            ctx, self._variants(s), np.asarray(te, np.int64), np.asarray(to, np.float64), np.asarray(ti, np.int64),
            len(tsn), heuristic=False, max_cost=max_cost,
        )  # fmt: skip
        cost, length = res.cost.copy(), res.length.copy()
        for k, d in enumerate(tsn):
            if self._same_place(s, d):
                cost[k], length[k] = 0.0, 0.0
        if ctx.mode == 2:
            return length, length
        return cost, length

    def matrix(
        self,
        sources: Sequence[tuple[float, float]],
        targets: Sequence[tuple[float, float]],
        *,
        depart_at: datetime | float,
        free_flow: bool = False,
        metric: Metric = "time",
        budget: Budget | None = None,
        vehicle: Vehicle | None = None,
    ) -> MatrixResult:
        """Durations and distances [sources x targets]: one one-to-many search per source (a Python
        loop over sources; each search is one compiled call that settles every target, at most the
        whole graph). `budget` is checked before every search but the first: BudgetExceeded when
        spent, and no partial matrix is returned."""
        ctx = self._with_vehicle(self._ctx(depart_at, free_flow=free_flow, metric=metric), vehicle)
        ss = self._snap_all(sources, "sources")
        ts = self._snap_all(targets, "targets")
        dur = np.full((len(ss), len(ts)), np.inf)
        dist = np.full((len(ss), len(ts)), np.inf)
        for i, s in enumerate(ss):
            if budget is not None and i:
                budget.check()
            dur[i], dist[i] = self._one_to_many_snapped(ctx, s, ts, math.inf)
        return MatrixResult(dur, dist)

    def congestion(self, edge_ids: Sequence[int] | np.ndarray, t: datetime | float) -> np.ndarray:
        return self.live.congestion(edge_ids, t)


def _aligned_zeros(rows: int, cols: int, align: int = 64) -> np.ndarray:
    """A zeroed float64 [rows, cols] array whose data starts on an `align`-byte boundary, so that a
    64-byte row is one cache line (numpy only promises 16-byte alignment)."""
    buf = np.zeros(rows * cols + align // 8, np.float64)
    skip = (-buf.ctypes.data % align) // 8
    return buf[skip : skip + rows * cols].reshape(rows, cols)


def _overlap(a: RouteResult, b: RouteResult, lengths: np.ndarray) -> float:
    if a.distance_m <= 0:
        return 1.0
    bs = set(b.edges)
    shared = sum(float(lengths[e]) for e in a.edges if e in bs)
    return min(1.0, shared / a.distance_m)


def _reverse_edges(g: CompiledGraph) -> np.ndarray:
    """Reverse road edge (same segment, v -> u) of each road edge, -1 if none: the builder's record
    when the graph has one, else matched by (v, u, way)."""
    if g.edge_rev.shape[0] == g.n_road_edges:
        return g.edge_rev.astype(np.int64)
    m, n = g.n_road_edges, max(g.n_nodes, 1)
    key = g.edge_u.astype(np.int64) * n + g.edge_v.astype(np.int64)
    order = np.lexsort((g.edge_way, key))
    skey, sway = key[order], g.edge_way[order]
    want = g.edge_v.astype(np.int64) * n + g.edge_u.astype(np.int64)
    pos = np.searchsorted(skey, want)
    pos_c = np.minimum(pos, m - 1)
    ok = (pos < m) & (skey[pos_c] == want) & (sway[pos_c] == g.edge_way)
    rev = np.where(ok, order[pos_c], -1).astype(np.int64)
    # same (v, u) but the first hit is another way: look further (rare)
    miss = np.flatnonzero(~ok & (pos < m) & (skey[pos_c] == want))
    for e in miss.tolist():
        p = int(pos[e])
        while p < m and skey[p] == want[e]:
            if sway[p] == g.edge_way[e]:
                rev[e] = order[p]
                break
            p += 1
    return rev


__all__ = ["EXCLUDABLE", "MAX_ALTERNATIVES", "MatrixResult", "RouteResult", "Router"]
