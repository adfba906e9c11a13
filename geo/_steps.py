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


def _turn_kinds(delta: np.ndarray) -> np.ndarray:
    d = (delta + 180.0) % 360.0 - 180.0
    ad = np.abs(d)
    level = np.select([ad < 20, ad < 50, ad < 120, ad < 170], [0, 1, 2, 3], 4)
    left = (d < 0) & (level >= 1) & (level <= 3)
    return np.asarray(np.where(left, level + 4, level))


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


def _names(g: CompiledGraph, e: int) -> tuple[str, str]:
    k = int(g.edge_name[e])
    if k < 0:
        return "", ""
    zh = g.names[k]
    en = g.names_en[k] if k < len(g.names_en) and g.names_en[k] else zh
    return zh, en


def build_steps(
    g: CompiledGraph,
    edges: Sequence[int],
    edge_dist_m: Sequence[float],
    edge_time_s: Sequence[float],
    polyline: Sequence[tuple[float, float]],
) -> list[Step]:
    """Steps for a path; `edge_dist_m` / `edge_time_s` are what is driven on each edge (partial ends)."""
    if not edges:
        return []
    start_pt = (
        polyline[0]
        if polyline
        else (float(g.node_lat[g.edge_u[edges[0]]]), float(g.node_lon[g.edge_u[edges[0]]]))
    )
    end_pt = polyline[-1] if polyline else start_pt
    ed = np.asarray(edges, dtype=np.int64)
    b_start, b_end = edge_bearings(g, ed)
    groups: list[tuple[int, str]] = [(0, "depart")]
    if len(ed) > 1:
        prev, nxt = ed[:-1], ed[1:]
        kinds = _turn_kinds(b_start[1:] - b_end[:-1])
        uturn = (
            (g.edge_u[nxt] == g.edge_v[prev])
            & (g.edge_v[nxt] == g.edge_u[prev])
            & (g.edge_way[nxt] == g.edge_way[prev])
        )
        kinds = np.where(uturn, 4, kinds)
        new = (g.edge_name[nxt] != g.edge_name[prev]) | np.isin(kinds, (2, 3, 4, 6, 7))
        for i in (np.flatnonzero(new) + 1).tolist():
            groups.append((i, _KINDS[int(kinds[i - 1])]))
    dist_c = np.concatenate(([0.0], np.cumsum(edge_dist_m)))
    time_c = np.concatenate(([0.0], np.cumsum(edge_time_s)))
    steps: list[Step] = []
    for gi, (i0, kind) in enumerate(groups):
        i1 = groups[gi + 1][0] if gi + 1 < len(groups) else len(edges)
        e0 = int(edges[i0])
        zh, en = _names(g, e0)
        dist = float(dist_c[i1] - dist_c[i0])
        dur = float(time_c[i1] - time_c[i0])
        b_after = float(b_start[i0])
        b_before = float(b_end[i0 - 1]) if i0 > 0 else b_after
        if kind == "depart":
            loc = start_pt
            c = int(((b_after + 22.5) % 360) // 45)
            tz = f"从{zh}出发，向{_COMPASS_ZH[c]}行驶" if zh else f"向{_COMPASS_ZH[c]}出发"
            te = f"Head {_COMPASS_EN[c]} on {en}" if en else f"Head {_COMPASS_EN[c]}"
        else:
            u = int(g.edge_u[e0])
            loc = (float(g.node_lat[u]), float(g.node_lon[u]))
            vz, ve = _VERB[kind]
            tz = f"{vz}进入{zh}" if zh else vz
            te = f"{ve} onto {en}" if en else ve
        steps.append(Step(kind, zh, en, tz, te, dist, dur, loc, b_before, b_after, i0))
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
            len(edges) - 1,
        )
    )
    return steps


__all__ = ["Step", "build_steps", "turn_type"]
