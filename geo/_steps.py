"""Turn-by-turn guidance in Chinese and English from a path of road edges (OSRM v5 maneuver model).

A step starts where the driver has something to do; between steps the road is followed. Decisions are
taken at junctions (`Guide`: the road arms of every junction, built once per graph) from the bearing
change ``d`` between the end of the incoming edge and the start of the outgoing one (positive =
clockwise = right; |d| < 20 straight, < 50 slight, < 120 turn, < 170 sharp, else U-turn) and from the
other arms that could have been taken there (turn restrictions respected: `entry`); the rules run
compiled, all junctions of a route in one call (`geo._maneuvers`):

- roundabout / rotary (``junction=roundabout`` / ``junction=circular``): one step where the ring is
  entered, with `exit` = the number of exits passed including the one taken (an exit is a junction on
  the ring with a road that may be entered leaving it), then an ``exit roundabout`` step where it is
  left. A route that ends on the ring has no exit; one that starts on it has only the exit step;
- ``continue``: the road (same name and number, or the same unnamed way) goes on but is not the
  obvious way ahead (it turns while another road goes straight), and every U-turn on the same road;
- ``off ramp`` / ``on ramp`` / ``merge``: motorway or trunk -> link, other road -> motorway or trunk
  link, link -> motorway or trunk;
- ``end of road``: a T-junction where nothing goes on straight ahead; ``fork``: two roads ahead,
  neither the continuation of the current road;
- ``new name``: the road ahead is the obvious way but its name or number changes (also where two ways
  simply meet); otherwise ``turn``.

Nothing is said where the road is followed through a junction. Road numbers (`ref`, e.g. G214) are
given with the name, and stand in for it on unnamed roads. A first or last edge driven for less than
`MIN_DRIVEN_M` does not make a step of its own: the route starts (ends) at its junction.
Bearings are integers 0-359. The depart bearing is the direction from the start to the point
`HEADING_M` metres along the route; the arrive bearing from the point as far before the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from geo._coords import bearing_deg
from geo._graph import CLASS_INDEX, FLAG_TOLL, CompiledGraph
from geo._maneuvers import KINDS, MODIFIERS, ROTARY, ROUNDABOUT, maneuvers
from geo._polyline import _interp

MIN_DRIVEN_M = 1.0
HEADING_M = 20.0
_M_PER_DEG = 111_194.93  # metres per degree of latitude (equirectangular distances along a line)

_COMPASS_ZH = ("北", "东北", "东", "东南", "南", "西南", "西", "西北")
_COMPASS_EN = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
_MOD_ZH = {
    "straight": "直行",
    "slight left": "稍向左转",
    "slight right": "稍向右转",
    "left": "左转",
    "right": "右转",
    "sharp left": "向左急转",
    "sharp right": "向右急转",
    "uturn": "掉头",
}
_MOD_EN = {
    "straight": "Go straight",
    "slight left": "Turn slightly left",
    "slight right": "Turn slightly right",
    "left": "Turn left",
    "right": "Turn right",
    "sharp left": "Turn sharp left",
    "sharp right": "Turn sharp right",
    "uturn": "Make a U-turn",
}
_SIDE_ZH = {"left": "左", "right": "右"}
_MOTORWAY_CLASS = frozenset({CLASS_INDEX["motorway"], CLASS_INDEX["motorway_link"]})


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 10x (25 steps a route)
class Intersection:
    """A junction passed by a step (the first is where its maneuver happens), as OSRM describes it."""

    location: tuple[float, float]  # (lat, lon)
    bearings: tuple[int, ...]  # every road arm, leaving the junction, 0-359, ascending
    entry: tuple[bool, ...]  # whether each arm may be entered from the incoming road
    in_: int | None  # arm the route arrives on (None at the departure)
    out: int | None  # arm the route leaves on (None at the arrival)
    classes: tuple[str, ...] = ()  # of the road taken: "motorway", "toll"


@dataclass(slots=True)
class Step:
    maneuver: str  # depart, straight, slight_left, ..., sharp_right, uturn, arrive (direction of the step)
    name: str  # local (zh) road name, "" when unnamed
    name_en: str
    text_zh: str
    text_en: str
    distance_m: float
    duration_s: float
    location: tuple[float, float]  # (lat, lon) where the maneuver happens
    bearing_before: int  # 0-359
    bearing_after: int
    first_edge_index: int  # index into the route's edge list
    type: str = "turn"  # OSRM maneuver type: depart, turn, continue, new name, roundabout, ...
    modifier: str = ""  # OSRM modifier ("" for depart and arrive)
    ref: str = ""  # road number(s), e.g. "G214"
    exit: int | None = None  # roundabout / rotary: number of the exit taken
    rotary_name: str = ""
    geometry: tuple[int, int] = (0, 0)  # first and last point of the step in the route polyline
    intersections: tuple[Intersection, ...] = ()


def _bearings(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lon2 - lon1)
    x = np.sin(dl) * np.cos(p2)
    y = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.asarray((np.degrees(np.arctan2(x, y)) + 360.0) % 360.0)


def edge_bearings(g: CompiledGraph, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bearing of the first and of the last polyline segment of each edge (vectorised)."""
    a = g.edge_geom_offsets[edges].astype(np.int64)
    b = g.edge_geom_offsets[edges + 1].astype(np.int64)
    la, lo = g.geom_lat, g.geom_lon
    a1 = np.minimum(a + 1, b - 1)
    b2 = np.maximum(b - 2, a)
    start = _bearings(la[a], lo[a], la[a1], lo[a1])
    end = _bearings(la[b2], lo[b2], la[b - 1], lo[b - 1])
    return start, end


def _int_bearing(b: float) -> int:
    return round(b) % 360


def _int_bearings(b: np.ndarray) -> list[int]:
    """`_int_bearing` of each (numpy's rint rounds halves to even, as Python's round does)."""
    return (np.rint(b).astype(np.int64) % 360).tolist()


_MANEUVERS = tuple(m.replace(" ", "_") for m in MODIFIERS)  # Step.maneuver of each modifier


class Guide:
    """The road arms of every junction (built once per graph, vectorised): an arm is one road segment
    at the junction, with the edge leaving along it (or -1), the edge arriving along it (or -1) and the
    bearing leaving the junction. Entry is checked against the arcs of the incoming edge's head (turn
    restrictions are compiled into the arcs, see `geo._graph`)."""

    def __init__(
        self,
        g: CompiledGraph,
        *,
        rev: np.ndarray,
        edge_head: np.ndarray,
        b_start: np.ndarray,
        b_end: np.ndarray,
    ) -> None:
        self.g = g
        m = g.n_road_edges
        self.rev = rev
        self.edge_head = edge_head
        self.b_start = b_start
        self.b_end = b_end
        ids = np.arange(m, dtype=np.int64)
        seg = np.where(rev >= 0, np.minimum(ids, rev), ids)
        node = np.concatenate((g.edge_u.astype(np.int64), g.edge_v.astype(np.int64)))
        segs = np.concatenate((seg, seg))
        out_e = np.concatenate((ids, np.full(m, -1, np.int64)))
        in_e = np.concatenate((np.full(m, -1, np.int64), ids))
        bear = np.concatenate((b_start, (b_end + 180.0) % 360.0))
        has_out = np.concatenate((np.ones(m, bool), np.zeros(m, bool)))
        order = np.lexsort((~has_out, segs, node))
        node, segs, out_e, in_e, bear = node[order], segs[order], out_e[order], in_e[order], bear[order]
        first = np.ones(len(node), bool)
        first[1:] = (node[1:] != node[:-1]) | (segs[1:] != segs[:-1])
        starts = np.flatnonzero(first)
        self.arm_out = np.maximum.reduceat(out_e, starts) if len(starts) else np.zeros(0, np.int64)
        self.arm_in = np.maximum.reduceat(in_e, starts) if len(starts) else np.zeros(0, np.int64)
        self.arm_bear = bear[starts]  # the out record sorts first in its group: its bearing wins
        arm_node = node[starts]
        n = g.n_nodes
        self.arm_ptr = np.concatenate(([0], np.cumsum(np.bincount(arm_node, minlength=n)))).astype(np.int64)
        self.degree = np.diff(self.arm_ptr)
        flags = g.edge_flags if g.edge_flags.shape[0] == m else np.zeros(m, np.uint8)
        self.flags = flags
        self.refs_idx = g.edge_ref if g.edge_ref.shape[0] == m else np.full(m, -1, np.int32)
        # each road number of a ref ("CG3i4; CG-3" is two), as sorted token ids per ref
        tokens: dict[str, int] = {}
        ref_toks = [sorted({tokens.setdefault(t.strip(), len(tokens)) for t in r.split(";") if t.strip()}) for r in g.refs]  # fmt: skip
        tok_ptr = np.concatenate(([0], np.cumsum([len(t) for t in ref_toks]))).astype(np.int64)
        tok = np.array([t for ts in ref_toks for t in ts], np.int64)
        # the arrays of the compiled maneuver rules (`geo._maneuvers`), in its order
        self.arrays = (
            g.edge_v, g.edge_name, self.refs_idx, g.edge_way, g.edge_class, rev, self.degree, self.arm_ptr,
            self.arm_out, self.arm_in, self.arm_bear, b_end, edge_head, g.offsets, g.arc_edge, tok_ptr, tok,
        )  # fmt: skip
        self.max_degree = int(self.degree.max()) if len(self.degree) else 0
        self.roads: dict[tuple[int, int], _Road] = {}  # by (name, road number) index (`_road_of`)

    def arms(self, v: int) -> tuple[list[int], list[int], list[float]]:
        a, b = int(self.arm_ptr[v]), int(self.arm_ptr[v + 1])
        return self.arm_out[a:b].tolist(), self.arm_in[a:b].tolist(), self.arm_bear[a:b].tolist()

    def allowed(self, e_in: int) -> set[int]:
        """Road edges that may be taken after `e_in` (its head's arcs)."""
        g = self.g
        h = int(self.edge_head[e_in])
        return set(g.arc_edge[int(g.offsets[h]) : int(g.offsets[h + 1])].tolist())

    def intersection(self, e_in: int, e_out: int) -> Intersection:
        v = int(self.g.edge_v[e_in])
        outs, ins, bears = self.arms(v)
        ok = self.allowed(e_in)
        order = sorted(range(len(outs)), key=lambda k: (_int_bearing(bears[k]), k))
        pos = {k: i for i, k in enumerate(order)}
        i_in = next((pos[k] for k in range(len(outs)) if ins[k] == e_in), None)
        i_out = next((pos[k] for k in range(len(outs)) if outs[k] == e_out), None)
        return Intersection(
            (float(self.g.node_lat[v]), float(self.g.node_lon[v])),
            tuple(_int_bearing(bears[k]) for k in order),
            tuple(outs[k] >= 0 and outs[k] in ok for k in order),
            i_in,
            i_out,
            self.classes(e_out),
        )

    def classes(self, e: int) -> tuple[str, ...]:
        out = []
        if int(self.g.edge_class[e]) in _MOTORWAY_CLASS:
            out.append("motorway")
        if int(self.flags[e]) & FLAG_TOLL:
            out.append("toll")
        return tuple(out)


@dataclass(frozen=True)
class _Road:
    name: str
    name_en: str
    ref: str

    def zh(self) -> str:
        if self.name and self.ref and self.ref not in self.name:
            return f"{self.name}（{self.ref}）"
        return self.name or self.ref

    def en(self) -> str:
        if self.name_en and self.ref and self.ref not in self.name_en:
            return f"{self.name_en} ({self.ref})"
        return self.name_en or self.ref


def _road(g: CompiledGraph, guide: Guide, e: int) -> _Road:
    return _road_of(g, guide, int(g.edge_name[e]), int(guide.refs_idx[e]))


def _road_of(g: CompiledGraph, guide: Guide, k: int, r: int) -> _Road:
    """The road of name index `k` and road-number index `r` (-1: none), memoised per graph."""
    road = guide.roads.get((k, r))
    if road is None:
        zh = g.names[k] if k >= 0 else ""
        en = (g.names_en[k] if k < len(g.names_en) and g.names_en[k] else zh) if k >= 0 else ""
        road = guide.roads[(k, r)] = _Road(zh, en, g.refs[r] if 0 <= r < len(g.refs) else "")
    return road


def _ordinal_en(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


@lru_cache(maxsize=8192)  # a region has few (maneuver, road) pairs; a route has 25 steps
def _texts(kind: str, mod: str, road: _Road, *, exit_no: int | None, rotary: _Road | None, waypoint: int) -> tuple[str, str]:  # fmt: skip
    """(zh, en) instruction for a maneuver type, modifier and the road taken."""
    rz, re_ = road.zh(), road.en()
    onto_z = f"，进入{rz}" if rz else ""
    onto_e = f" onto {re_}" if re_ else ""
    side = "left" if "left" in mod else "right"
    if kind == "arrive":
        if waypoint:
            return f"到达第{waypoint}个途经点", f"Arrive at waypoint {waypoint}"
        return "到达目的地", "Arrive at your destination"
    if kind in ("roundabout", "rotary"):
        rz_name, re_name = (rotary.zh(), rotary.en()) if rotary else ("", "")
        ring_z = (
            f"进入{rz_name}"
            if rz_name.endswith(("环岛", "转盘"))
            else (f"进入{rz_name}环岛" if rz_name else "进入环岛")
        )
        ring_e = (
            f"Enter {re_name}"
            if re_name
            else ("Enter the traffic circle" if kind == "rotary" else "Enter the roundabout")
        )
        if exit_no is None:
            return ring_z, ring_e
        return (
            f"{ring_z}，从第{exit_no}出口驶出{onto_z}",
            f"{ring_e} and take the {_ordinal_en(exit_no)} exit{onto_e}",
        )
    if kind in ("exit roundabout", "exit rotary"):
        what = "traffic circle" if kind == "exit rotary" else "roundabout"
        return f"驶出环岛{onto_z}", f"Exit the {what}{onto_e}"
    if kind == "continue":
        if mod == "uturn":
            return (f"掉头，继续沿{rz}行驶" if rz else "掉头"), (f"Make a U-turn and continue on {re_}" if re_ else "Make a U-turn")  # fmt: skip
        if mod == "straight":
            return (f"继续沿{rz}直行" if rz else "继续直行"), (f"Continue straight on {re_}" if re_ else "Continue straight")  # fmt: skip
        verb_z = {"slight left": "靠左", "slight right": "靠右"}.get(mod, _MOD_ZH[mod])
        verb_e = {"slight left": "Keep left", "slight right": "Keep right"}.get(mod, _MOD_EN[mod])
        return (
            (f"{verb_z}，继续沿{rz}行驶" if rz else verb_z),
            (f"{verb_e} to stay on {re_}" if re_ else verb_e),
        )
    if kind == "new name":
        if mod == "straight":
            return (f"继续直行{onto_z}"), (f"Continue onto {re_}" if re_ else "Continue straight")
        return f"{_MOD_ZH[mod]}{onto_z}", f"{_MOD_EN[mod]}{onto_e}"
    if kind == "merge":
        return (f"向{_SIDE_ZH[side]}并入{rz}" if rz else f"向{_SIDE_ZH[side]}并道"), f"Merge {side}{onto_e}"
    if kind == "on ramp":
        return f"从{_SIDE_ZH[side]}侧驶入匝道{onto_z}", f"Take the ramp on the {side}{onto_e}"
    if kind == "off ramp":
        return f"从{_SIDE_ZH[side]}侧出口驶出{onto_z}", f"Take the exit on the {side}{onto_e}"
    if kind == "fork":
        if mod == "straight":
            return f"在岔路口直行{onto_z}", f"Go straight at the fork{onto_e}"
        return f"在岔路口靠{_SIDE_ZH[side]}行驶{onto_z}", f"Keep {side} at the fork{onto_e}"
    if kind == "end of road":
        return f"在道路尽头{_MOD_ZH[mod]}{onto_z}", f"At the end of the road, {_MOD_EN[mod].lower()}{onto_e}"
    verb_z, verb_e = _MOD_ZH[mod], _MOD_EN[mod]
    return (f"{verb_z}进入{rz}" if rz else verb_z), f"{verb_e}{onto_e}"


def heading(lat: np.ndarray, lon: np.ndarray, *, reverse: bool = False, metres: float = HEADING_M) -> float:
    """Bearing from the start of a polyline to the point `metres` along it (reverse: from the point
    `metres` before the end to the end); 0 for a polyline without length.

    Compiled, and only the points that reach `metres` are measured (a route has hundreds; the first few
    reach 20 m): equirectangular distances along the line, `numpy.interp`'s formula (`_interp`) and
    `bearing_deg` (tests/test_guidance.py checks it against numpy over the whole line)."""
    return float(_heading(np.asarray(lat, np.float64), np.asarray(lon, np.float64), reverse, float(metres)))


@njit(cache=True, nogil=True)
def _heading(lat: np.ndarray, lon: np.ndarray, reverse: bool, metres: float) -> float:
    n = len(lat)
    if n < 2:
        return 0.0
    c, la, lo = np.zeros(n), np.empty(n), np.empty(n)  # the line from its start (reverse: its end)
    la[0], lo[0] = (lat[n - 1], lon[n - 1]) if reverse else (lat[0], lon[0])
    m = 1
    while m < n and c[m - 1] < metres:
        i = n - 1 - m if reverse else m
        la[m], lo[m] = lat[i], lon[i]
        k = math.cos(math.radians((la[m - 1] + la[m]) / 2))
        dy = (la[m] - la[m - 1]) * _M_PER_DEG
        dx = (lo[m] - lo[m - 1]) * _M_PER_DEG * k
        c[m] = c[m - 1] + math.hypot(dx, dy)
        m += 1
    if c[m - 1] <= 0:
        return 0.0
    x = min(c[m - 1], metres)
    pla, plo = _interp(x, c, la, 0, m), _interp(x, c, lo, 0, m)
    if reverse:  # from that point to the end
        if pla == la[0] and plo == lo[0]:
            return 0.0
        return bearing_deg(pla, plo, la[0], lo[0])
    return bearing_deg(la[0], lo[0], pla, plo)


def build_steps(
    g: CompiledGraph,
    guide: Guide,
    edges: Sequence[int] | np.ndarray,
    edge_dist_m: Sequence[float] | np.ndarray,
    edge_time_s: Sequence[float] | np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    starts: np.ndarray,
    *,
    waypoint: int = 0,
    detail: bool = True,
) -> list[Step]:
    """Steps for one leg. `edge_dist_m` / `edge_time_s`: what is driven on each edge (partial ends);
    `lat`/`lon`: the leg's polyline, `starts[i]` the polyline index where edge i begins (see
    `geo._polyline.route_coords`). `waypoint` > 0: the leg ends at that intermediate waypoint.
    `detail`: describe the junctions passed (`Step.intersections`); without it only the maneuvers."""
    ed = np.asarray(edges, dtype=np.int64)
    n = len(ed)
    if n == 0:
        return []
    dist = np.asarray(edge_dist_m, dtype=np.float64)
    tim = np.asarray(edge_time_s, dtype=np.float64)
    last_pt = len(lat) - 1
    lo_i = 1 if n > 1 and dist[0] < MIN_DRIVEN_M else 0  # first edge that makes a step
    hi_i = n - 2 if n > 1 and dist[-1] < MIN_DRIVEN_M else n - 1  # last one
    hi_i = max(hi_i, lo_i)
    kinds, mods, exits, described = maneuvers(ed, lo_i, hi_i, guide.arrays, guide.b_start, guide.flags, guide.max_degree)  # fmt: skip
    ev = np.flatnonzero(kinds >= 0)  # the transitions where a step starts
    intersections: dict[int, Intersection] = (
        {i: guide.intersection(int(ed[i - 1]), int(ed[i])) for i in np.flatnonzero(described).tolist()}
        if detail
        else {}
    )
    # per step (the first is the departure): its edges a..b, points, length and time, taken over arrays
    bnd = np.concatenate(([0], ev, [n])).astype(np.int64)
    a_s, b_s = bnd[:-1], bnd[1:]
    pts = np.append(np.asarray(starts, np.int64), last_pt)
    p0s, p1s = pts[a_s], pts[b_s]
    p1s = np.where(p1s <= p0s, np.minimum(p0s + 1, last_pt), p1s)
    cd = np.concatenate(([0.0], np.cumsum(dist)))
    ct = np.concatenate(([0.0], np.cumsum(tim)))
    dists, durs = (cd[b_s] - cd[a_s]).tolist(), (ct[b_s] - ct[a_s]).tolist()
    geoms = list(zip(p0s.tolist(), p1s.tolist(), strict=True))
    # the maneuvers: the edges before and after, where, the bearings, the road named
    p_e, q_e = ed[ev - 1], ed[ev]
    at = g.edge_v[p_e]
    where = list(zip(g.node_lat[at].tolist(), g.node_lon[at].tolist(), strict=True))
    before, after = _int_bearings(guide.b_end[p_e]), _int_bearings(guide.b_start[q_e])
    ring = (kinds[ev] == ROUNDABOUT) | (kinds[ev] == ROTARY)
    named = np.where(ring & (b_s[1:] < n) & (exits[ev] >= 0), ed[np.minimum(b_s[1:], n - 1)], q_e)
    first_road = _road(g, guide, int(ed[lo_i]))
    ba = _int_bearing(heading(lat, lon))
    c8 = int(((ba + 22.5) % 360) // 45)
    rz, re_ = first_road.zh(), first_road.en()
    tz = f"从{rz}出发，向{_COMPASS_ZH[c8]}行驶" if rz else f"向{_COMPASS_ZH[c8]}出发"
    te = f"Head {_COMPASS_EN[c8]} on {re_}" if re_ else f"Head {_COMPASS_EN[c8]}"
    start = (float(lat[0]), float(lon[0]))
    inters = [intersections[k] for k in range(1, int(b_s[0])) if k in intersections] if detail else []
    first = Intersection(start, (ba,), (True,), None, 0, guide.classes(int(ed[lo_i])))
    steps = [
        Step("depart", first_road.name, first_road.name_en, tz, te, dists[0], durs[0], start, 0, ba, 0,
             "depart", "", first_road.ref, None, "", geoms[0], (first, *inters) if detail else ())
    ]  # fmt: skip
    per_step = zip(
        ev.tolist(), kinds[ev].tolist(), mods[ev].tolist(), exits[ev].tolist(), p_e.tolist(), q_e.tolist(),
        g.edge_name[named].tolist(), guide.refs_idx[named].tolist(), strict=True,
    )  # fmt: skip
    for k, (a, kc, mc, xc, p, q, name_k, ref_k) in enumerate(per_step, start=1):
        kind, mod, exit_no = KINDS[kc], MODIFIERS[mc], (xc if xc >= 0 else None)
        road = _road_of(g, guide, name_k, ref_k)  # a ring's step is named after the road it is left by
        ring_road = _road(g, guide, q) if kind == "rotary" else None
        tz, te = _texts(kind, mod, road, exit_no=exit_no, rotary=ring_road, waypoint=0)
        if detail:
            inters = [intersections[j] for j in range(a + 1, int(b_s[k])) if j in intersections]
            here: tuple[Intersection, ...] = ((intersections.get(a) or guide.intersection(p, q)), *inters)
        else:
            here = ()
        steps.append(
            Step(_MANEUVERS[mc], road.name, road.name_en, tz, te, dists[k], durs[k], where[k - 1],
                 before[k - 1], after[k - 1], a, kind, mod, road.ref, exit_no,
                 ring_road.zh() if ring_road else "", geoms[k], here)
        )  # fmt: skip
    bb = _int_bearing(heading(lat, lon, reverse=True))
    end = (float(lat[-1]), float(lon[-1]))
    tz, te = _texts("arrive", "", _Road("", "", ""), exit_no=None, rotary=None, waypoint=waypoint)
    last_road = _road(g, guide, int(ed[hi_i]))
    steps.append(
        Step("arrive", last_road.name, last_road.name_en, tz, te, 0.0, 0.0, end, bb, 0, n - 1, "arrive", "",
             last_road.ref, None, "", (last_pt, last_pt),
             (Intersection(end, ((bb + 180) % 360,), (True,), 0, None),) if detail else ())
    )  # fmt: skip
    return steps


__all__ = ["Guide", "Intersection", "Step", "build_steps", "edge_bearings", "heading"]
