"""Turn-by-turn steps in Chinese and English from a path of road edges.

Consecutive edges form one step while the road name stays the same and the turn between them is
below 45 degrees; a new name or a sharper turn starts a step. The maneuver comes from the bearing
change between the end of the previous edge and the start of the next: |d| < 20 straight, < 50 slight,
< 120 turn, < 170 sharp, else (or driving back along the same way) a U-turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from geo._graph import CompiledGraph

_COMPASS_ZH = ("北", "东北", "东", "东南", "南", "西南", "西", "西北")
_COMPASS_EN = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
_VERB = {
    "straight": ("直行", "Continue straight"),
    "slight_left": ("稍向左转", "Turn slightly left"),
    "slight_right": ("稍向右转", "Turn slightly right"),
    "left": ("左转", "Turn left"),
    "right": ("右转", "Turn right"),
    "sharp_left": ("向左急转", "Turn sharp left"),
    "sharp_right": ("向右急转", "Turn sharp right"),
    "uturn": ("掉头", "Make a U-turn"),
}


@dataclass(frozen=True)
class Step:
    maneuver: str  # depart, straight, slight_left, ..., uturn, arrive
    name: str  # local (zh) road name, "" when unnamed
    name_en: str
    text_zh: str
    text_en: str
    distance_m: float
    duration_s: float
    location: tuple[float, float]  # (lat, lon) where the maneuver happens
    bearing_before: float
    bearing_after: float
    first_edge_index: int  # index into the route's edge list


def _bearings(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lon2 - lon1)
    x = np.sin(dl) * np.cos(p2)
    y = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.asarray((np.degrees(np.arctan2(x, y)) + 360.0) % 360.0)


def edge_bearings(g: CompiledGraph, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bearing of the first and of the last polyline segment of each edge (vectorised)."""
    a = g.edge_geom_offsets[edges]
    b = g.edge_geom_offsets[edges + 1]
    la, lo = g.geom_lat, g.geom_lon
    a1 = np.minimum(a + 1, b - 1)
    b2 = np.maximum(b - 2, a)
    start = _bearings(la[a], lo[a], la[a1], lo[a1])
    end = _bearings(la[b2], lo[b2], la[b - 1], lo[b - 1])
    return start, end


_KINDS = ("straight", "slight_right", "right", "sharp_right", "uturn", "slight_left", "left", "sharp_left")
_BREAKS = np.array([False, False, True, True, True, False, True, True])  # kinds that start a new step


def _turn_kinds(delta: np.ndarray) -> np.ndarray:
    """Index into _KINDS per bearing change (same thresholds as `turn_type`)."""
    d = (delta + 180.0) % 360.0 - 180.0
    ad = np.abs(d)
    level = (ad >= 20).astype(np.int64) + (ad >= 50) + (ad >= 120) + (ad >= 170)
    return np.asarray(level + 4 * ((d < 0) & (level >= 1) & (level <= 3)))


def turn_type(delta: float) -> str:
    """Maneuver for a bearing change in degrees (positive = clockwise = right)."""
    d = (delta + 180.0) % 360.0 - 180.0
    ad = abs(d)
    if ad < 20:
        return "straight"
    side = "right" if d > 0 else "left"
    if ad < 50:
        return f"slight_{side}"
    if ad < 120:
        return side
    if ad < 170:
        return f"sharp_{side}"
    return "uturn"


def _names(g: CompiledGraph, k: int) -> tuple[str, str]:
    if k < 0:
        return "", ""
    zh = g.names[k]
    en = g.names_en[k] if k < len(g.names_en) and g.names_en[k] else zh
    return zh, en


def build_steps(
    g: CompiledGraph,
    edges: Sequence[int] | np.ndarray,
    edge_dist_m: Sequence[float] | np.ndarray,
    edge_time_s: Sequence[float] | np.ndarray,
    polyline: Sequence[tuple[float, float]],
    bearings: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Step]:
    """Steps for a path; `edge_dist_m` / `edge_time_s` are what is driven on each edge (partial ends).

    `bearings`: (first, last) segment bearing of EVERY road edge, precomputed once (the router passes
    them); without it they are computed for the path's edges. Array work only, then one Step per step."""
    ed = np.asarray(edges, dtype=np.int64)
    n = len(ed)
    if n == 0:
        return []
    e_first = int(ed[0])
    start_pt = (
        polyline[0]
        if polyline
        else (float(g.node_lat[g.edge_u[e_first]]), float(g.node_lon[g.edge_u[e_first]]))
    )
    end_pt = polyline[-1] if polyline else start_pt
    if bearings is None:
        b_start, b_end = edge_bearings(g, ed)
    else:
        b_start, b_end = bearings[0][ed], bearings[1][ed]
    names = g.edge_name[ed]
    if n > 1:
        starts, kinds = _step_starts(ed, b_start, b_end, g.edge_u, g.edge_v, g.edge_way, names)
        step_kinds, starts_l = kinds.tolist(), starts.tolist()
    else:
        step_kinds, starts_l = [], []
    i0s = [0, *starts_l]
    kinds_l = [-1, *step_kinds]
    bounds = np.array([*i0s, n])
    dist_c = np.concatenate(([0.0], np.cumsum(np.asarray(edge_dist_m, dtype=np.float64))))[bounds]
    time_c = np.concatenate(([0.0], np.cumsum(np.asarray(edge_time_s, dtype=np.float64))))[bounds]
    dist_l = np.diff(dist_c).tolist()
    dur_l = np.diff(time_c).tolist()
    i0a = np.asarray(i0s)
    b_after = b_start[i0a].tolist()
    b_before = b_end[np.maximum(i0a - 1, 0)].tolist()
    name_k = names[i0a].tolist()
    u = g.edge_u[ed[i0a]]
    loc_lat = g.node_lat[u].tolist()
    loc_lon = g.node_lon[u].tolist()
    steps: list[Step] = []
    for j, i0 in enumerate(i0s):
        zh, en = _names(g, name_k[j])
        ba = b_after[j]
        if j == 0:
            c = int(((ba + 22.5) % 360) // 45)
            tz = f"从{zh}出发，向{_COMPASS_ZH[c]}行驶" if zh else f"向{_COMPASS_ZH[c]}出发"
            te = f"Head {_COMPASS_EN[c]} on {en}" if en else f"Head {_COMPASS_EN[c]}"
            steps.append(Step("depart", zh, en, tz, te, dist_l[j], dur_l[j], start_pt, ba, ba, 0))
        else:
            kind = _KINDS[kinds_l[j]]
            vz, ve = _VERB[kind]
            tz = f"{vz}进入{zh}" if zh else vz
            te = f"{ve} onto {en}" if en else ve
            loc = (loc_lat[j], loc_lon[j])
            steps.append(Step(kind, zh, en, tz, te, dist_l[j], dur_l[j], loc, b_before[j], ba, i0))
    last_b = float(b_end[-1])
    steps.append(
        Step(
            "arrive",
            "",
            "",
            "到达目的地",
            "Arrive at your destination",
            0.0,
            0.0,
            end_pt,
            last_b,
            last_b,
            n - 1,
        )
    )
    return steps


@njit(cache=True, nogil=True)
def _step_starts(ed, b_start, b_end, edge_u, edge_v, edge_way, names):
    """(edge index where each step after the first starts, its kind index into _KINDS): a new step at a
    name change or a turn of kind right/sharp/U (same thresholds and arithmetic as `_turn_kinds`)."""
    n = ed.shape[0]
    starts = np.empty(n, np.int64)
    kinds = np.empty(n, np.int64)
    k = 0
    for i in range(1, n):
        p, q = ed[i - 1], ed[i]
        d = (b_start[i] - b_end[i - 1] + 180.0) % 360.0 - 180.0
        ad = abs(d)
        if edge_u[q] == edge_v[p] and edge_v[q] == edge_u[p] and edge_way[q] == edge_way[p]:
            kind = 4
        elif ad < 20:
            kind = 0
        elif ad < 50:
            kind = 1
        elif ad < 120:
            kind = 2
        elif ad < 170:
            kind = 3
        else:
            kind = 4
        if d < 0 and 1 <= kind <= 3:
            kind += 4
        if names[i] != names[i - 1] or kind in (2, 3, 4, 6, 7):
            starts[k] = i
            kinds[k] = kind
            k += 1
    return starts[:k], kinds[:k]


__all__ = ["Step", "build_steps", "turn_type"]
