"""Reference router: plain pure-Python time-dependent Dijkstra (heapq), for tests only.

Independent of the fast path on purpose:
- EDGE-BASED search: a state is the arc just driven (a road edge, standing at the node it leads to);
  the allowed next arcs are those leaving that node (this is how the compiled graph encodes turn
  restrictions, via-way ones included), so labels live on arcs, not on (split) nodes;
- its own speed model: day type and local bin from `datetime` per bin, the raw profile arrays, the live
  snapshot, and its own bin-by-bin integration in absolute time (no numba, no per-query table);
- U-turns: an arc onto the reverse road edge of the arc just driven costs `u_turn_penalty_s` (metres x 10
  m/s in distance mode) unless it is the only arc leaving there (a dead end), a cost like the restricted
  roads' entry cost (in the label, not in the reported time);
- vehicles: its own reading of the per-edge limits (a road edge is closed when a dimension exceeds
  its limit; trucks: hgv=no closed, hgv=destination pays the restricted-road entry cost), edge by edge;
- no heuristic, no workspace, no heap tricks.
Snapping is shared with the router (same seeds). Slow: use graphs of a few thousand nodes.
"""

from __future__ import annotations

import heapq
import math
from datetime import datetime
from zoneinfo import ZoneInfo

from config._region import Holidays
from geo._graph import FLAG_RESTRICTED, CompiledGraph
from geo._snap import JUNCTION_TOL_M, Snap
from geo._traffic import DAY_TYPE_INDEX, LiveState, TrafficProfile
from geo._vehicle import Vehicle


class ReferenceRouter:
    def __init__(
        self,
        g: CompiledGraph,
        profile: TrafficProfile,
        holidays: Holidays,
        tz: ZoneInfo,
        decay_s: float = 3600.0,
        restricted_penalty_s: float = 300.0,
        u_turn_penalty_s: float = 20.0,
    ) -> None:
        self.g = g
        self.profile = profile
        self.holidays = holidays
        self.tz = tz
        self.decay_s = decay_s
        m = g.n_road_edges
        offsets = g.offsets.tolist()
        arc_head = g.arc_head.tolist()
        arc_edge = g.arc_edge.tolist()
        base = g.node_base.tolist()
        self.arc_edge = arc_edge
        # the arc of each road edge that leaves its junction (where a route starting on it drives)
        self.plain: list[int] = [-1] * m
        for t in range(len(offsets) - 1):
            if base[t] == t:
                for a in range(offsets[t], offsets[t + 1]):
                    self.plain[arc_edge[a]] = a
        self.succ: list[list[int]] = [
            list(range(offsets[arc_head[a]], offsets[arc_head[a] + 1])) for a in range(len(arc_edge))
        ]
        # cost of a U-turn after each arc: free where turning back is the only way on
        self.u_turn = [u_turn_penalty_s if len(nxt) > 1 else 0.0 for nxt in self.succ]
        self.length = g.edge_length_m.tolist()
        self.speed = g.edge_speed_mps.tolist()
        self.cls = g.edge_class.tolist()
        by_key = {
            (int(u), int(v), int(w)): e
            for e, (u, v, w) in enumerate(zip(g.edge_u, g.edge_v, g.edge_way, strict=True))
        }
        if g.edge_rev.shape[0] == g.n_road_edges:  # the builder's record of each segment's twin
            self.rev = [int(r) for r in g.edge_rev]
        else:
            self.rev = [
                by_key.get((int(v), int(u), int(w)), -1)
                for u, v, w in zip(g.edge_u, g.edge_v, g.edge_way, strict=True)
            ]
        flags = g.edge_flags.tolist() if g.edge_flags.shape[0] == m else [0] * m
        self.entry = [restricted_penalty_s if f & FLAG_RESTRICTED else 0.0 for f in flags]
        self.restricted_penalty_s = restricted_penalty_s
        lim = g.edge_limits.tolist() if g.edge_limits.shape == (m, 4) else [[math.inf] * 4] * m
        self.limits: list[list[float]] = lim
        self.hgv: list[int] = g.edge_hgv.tolist() if g.edge_hgv.shape[0] == m else [2] * m
        self.tail = g.edge_u.tolist()
        self.head = g.edge_v.tolist()
        self.leaving: dict[int, list[int]] = {}
        self.entering: dict[int, list[int]] = {}
        for e in range(m):
            self.leaving.setdefault(self.tail[e], []).append(e)
            self.entering.setdefault(self.head[e], []).append(e)
        self._bin_cache: dict[int, tuple[int, int]] = {}

    def _day_bin(self, b: int) -> tuple[int, int]:
        r = self._bin_cache.get(b)
        if r is None:
            loc = datetime.fromtimestamp(b * 900, self.tz)
            r = (DAY_TYPE_INDEX[self.holidays.day_type(loc.date())], (loc.hour * 60 + loc.minute) // 15)
            self._bin_cache[b] = r
        return r

    def factor(self, e: int, b: int, live: LiveState) -> float:
        dt, lb = self._day_bin(b)
        ef = self.profile.edge_factors.get(e)
        p = float(ef[dt, lb]) if ef is not None else float(self.profile.factors[dt, self.cls[e], lb])
        if live.flag[e] != 1:
            return p
        x = float(live.data[e, 2])
        o = float(live.data[e, 1])
        ob = math.floor(o / 900)
        start = b * 900.0
        if not (ob <= b and start < x):
            return p
        w = 1.0 if ob == b else max(0.0, 1.0 - (start - o) / self.decay_s)
        return w * float(live.data[e, 0]) + (1 - w) * p

    def travel(self, e: int, t: float, d: float, mode: int, live: LiveState) -> float:
        """Seconds (or metres, mode 2) to drive d metres of edge e entered at absolute time t."""
        if mode == 2:
            return d
        v0 = self.speed[e]
        if mode == 1 or d <= 0:
            return d / v0
        b = math.floor(t / 900)
        tt, rem = t, d
        while True:
            v = v0 * self.factor(e, b, live)
            end = (b + 1) * 900.0
            if rem <= v * (end - tt):
                return tt + rem / v - t
            rem -= v * (end - tt)
            tt = end
            b += 1

    def closed(self, e: int, t_dep: float, live: LiveState) -> bool:
        if live.flag[e] != 2:
            return False
        return math.floor(float(live.data[e, 1]) / 900) * 900 <= t_dep < float(live.data[e, 2])

    def junction(self, s: Snap) -> int:
        """The junction a snap stands on (within JUNCTION_TOL_M of an end of its edge), else -1."""
        along = s.fraction * self.length[s.edge]
        back = self.length[s.edge] - along
        if min(along, back) > JUNCTION_TOL_M:
            return -1
        return self.tail[s.edge] if along <= back else self.head[s.edge]

    def variants(self, s: Snap, end: str = "source", direction: int = 0) -> list[tuple[int, float]]:
        """Where a route may start (end="source") or finish: on a junction, every edge leaving it (from
        its tail) or entering it (to its head); elsewhere its edge and the opposite direction.
        `direction` 1 (-1): along (against) the snapped edge only, also on a junction."""
        j = self.junction(s) if direction == 0 else -1
        if j >= 0 and end == "source":
            return [(e, 0.0) for e in self.leaving.get(j, [])]
        if j >= 0:
            return [(e, self.length[e]) for e in self.entering.get(j, [])]
        out = [(s.edge, s.fraction * self.length[s.edge])] if direction >= 0 else []
        r = self.rev[s.edge]
        if r >= 0 and direction <= 0:
            out.append((r, (1 - s.fraction) * self.length[r]))
        return out

    def vehicle_rules(self, vehicle: Vehicle | None) -> tuple[set[int], list[float]]:
        """(road edges closed to the vehicle, entry cost per road edge in seconds)."""
        if vehicle is None or vehicle.kind == "car":
            return set(), self.entry
        dims = (vehicle.height_m, vehicle.weight_t, vehicle.width_m, vehicle.length_m)
        truck = vehicle.kind == "truck"
        closed = set()
        entry = list(self.entry)
        for e, lim in enumerate(self.limits):
            if any(d > x for d, x in zip(dims, lim, strict=True)) or (truck and self.hgv[e] == 0):
                closed.add(e)
            if truck and self.hgv[e] == 1:
                entry[e] = self.restricted_penalty_s
        return closed, entry

    def cost(
        self, s: Snap, d: Snap, t_dep: float, live: LiveState, mode: int = 0, vehicle: Vehicle | None = None,
        src_dir: int = 0,
    ) -> float:  # fmt: skip
        """Cost (seconds, or metres for mode 2) of the best route, inf when there is none; `src_dir` 1 (-1)
        leaves along (against) the snapped edge only."""
        if (s.edge == d.edge and s.fraction == d.fraction) or (s.lat == d.lat and s.lon == d.lon):
            return 0.0
        if self.junction(s) >= 0 and self.junction(s) == self.junction(d):
            return 0.0
        shut, entries = self.vehicle_rules(vehicle)
        # a route may not leave a junction onto a road that is closed (to everyone, or to this vehicle)
        src = [
            (e, off)
            for e, off in self.variants(s, direction=src_dir)
            if off != 0.0 or not (e in shut or self.closed(e, t_dep, live))
        ]
        tgt = self.variants(d, "target")
        t0 = t_dep if mode != 2 else 0.0
        scale = 10.0 if mode == 2 else 1.0  # entry cost of a restricted road: seconds, or x 10 m/s

        def entry(e: int) -> float:
            return entries[e] * scale

        # labels: (cost with entry costs of restricted roads, true cost); traffic read at the true time
        best = (math.inf, math.inf)
        for e, off in src:
            for e2, off2 in tgt:
                if e == e2 and off2 >= off:
                    c = self.travel(e, t0, off2 - off, mode, live)
                    p = entry(e) if off == 0.0 else 0.0
                    best = min(best, (t0 + c + p, t0 + c))
        lab: dict[int, tuple[float, float]] = {}  # per arc
        heap: list[tuple[float, float, int]] = []
        for e, off in src:
            a0 = self.plain[e]
            if a0 < 0:
                continue
            c = self.travel(e, t0, self.length[e] - off, mode, live)
            p = entry(e) if off == 0.0 else 0.0
            if (t0 + c + p, t0 + c) < lab.get(a0, (math.inf, math.inf)):
                lab[a0] = (t0 + c + p, t0 + c)
                heapq.heappush(heap, (t0 + c + p, t0 + c, a0))
        tg_of: dict[int, list[float]] = {}
        for e2, off2 in tgt:
            tg_of.setdefault(e2, []).append(off2)
        done: set[int] = set()
        while heap:
            lp, t, a = heapq.heappop(heap)
            if lp >= best[0]:
                break
            if a in done:
                continue
            done.add(a)
            back = self.rev[self.arc_edge[a]]
            for a2 in self.succ[a]:
                e2 = self.arc_edge[a2]
                if e2 in shut or self.closed(e2, t_dep, live):
                    continue
                turn = self.u_turn[a] * scale if e2 == back else 0.0
                for off2 in tg_of.get(e2, ()):
                    c = self.travel(e2, t, off2, mode, live)
                    best = min(best, (lp + c + entry(e2) + turn, t + c))
                c = self.travel(e2, t, self.length[e2], mode, live)
                nl = (lp + c + entry(e2) + turn, t + c)
                if nl < lab.get(a2, (math.inf, math.inf)):
                    lab[a2] = nl
                    heapq.heappush(heap, (nl[0], nl[1], a2))
        return best[1] - t0 if best[1] < math.inf else math.inf

    def path_cost(
        self,
        edges: list[int],
        first_off: float,
        last_end: float,
        t_dep: float,
        live: LiveState,
        mode: int = 0,
    ) -> float:
        """Cost of driving a given path (first edge from first_off, last edge up to last_end)."""
        t = t_dep
        n = len(edges)
        for i, e in enumerate(edges):
            s = first_off if i == 0 else 0.0
            f = last_end if i == n - 1 else self.length[e]
            t += self.travel(e, t, f - s, mode, live)
        return t - t_dep


def empty_live(m: int) -> LiveState:
    return LiveState.empty(m)


__all__ = ["ReferenceRouter", "empty_live"]
