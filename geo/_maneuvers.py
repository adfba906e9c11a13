"""Where a route's maneuvers are, and what they are: the junction-by-junction decisions of
`geo._steps` (the rules are written there, in its docstring) compiled with numba.

A route crosses 80 junctions on average in the demo region, each judged from its road arms, the turns
allowed from the incoming road and the names and numbers of the roads; in Python that was 70 % of
building a route's steps. `maneuvers` judges them all in one call and answers per transition ``i`` (edge
``i - 1`` -> edge ``i``) a type code (`KINDS`, -1: nothing to say), a modifier code (`MODIFIERS`), the
roundabout exit number (-1: none) and whether the junction is described (`Step.intersections`:
every junction with a choice, and U-turns outside rings). `geo._steps.build_steps` turns them into
steps with texts.

The float operations are those of the Python rules this replaced (``(d + 180) % 360 - 180`` with
Python's modulo, which numba keeps): the same steps on 3,500 routes of six graphs when it was written.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from geo._graph import CLASS_INDEX, FLAG_CIRCULAR, FLAG_ROUNDABOUT, ROAD_CLASSES

KINDS = (
    "turn",
    "continue",
    "new name",
    "end of road",
    "fork",
    "off ramp",
    "on ramp",
    "merge",
    "roundabout",
    "rotary",
    "exit roundabout",
    "exit rotary",
)
(TURN, CONTINUE, NEW_NAME, END_OF_ROAD, FORK, OFF_RAMP, ON_RAMP, MERGE,
 ROUNDABOUT, ROTARY, EXIT_ROUNDABOUT, EXIT_ROTARY) = range(len(KINDS))  # fmt: skip
MODIFIERS = ("straight", "slight left", "slight right", "left", "right", "sharp left", "sharp right", "uturn")
STRAIGHT, SLIGHT_LEFT, SLIGHT_RIGHT, LEFT, RIGHT, SHARP_LEFT, SHARP_RIGHT, UTURN = range(len(MODIFIERS))


def _classes(*names: str) -> np.ndarray:
    out = np.zeros(len(ROAD_CLASSES), np.bool_)
    out[[CLASS_INDEX[c] for c in names]] = True
    return out


# road classes by index (compile-time constants of the kernels)
_MOTORWAY = _classes("motorway", "trunk")
_LINK = _classes("motorway_link", "trunk_link", "primary_link", "secondary_link", "tertiary_link")
_MOTORWAY_LINK = _classes("motorway_link", "trunk_link")


@njit(cache=True, nogil=True, inline="always")
def _norm(delta: float) -> float:
    return (delta + 180.0) % 360.0 - 180.0


@njit(cache=True, nogil=True)
def modifier(delta: float) -> int:
    """Modifier code of a bearing change in degrees (positive = clockwise = right)."""
    d = _norm(delta)
    ad = abs(d)
    if ad < 20:
        return STRAIGHT
    right = d > 0
    if ad < 50:
        return SLIGHT_RIGHT if right else SLIGHT_LEFT
    if ad < 120:
        return RIGHT if right else LEFT
    if ad < 170:
        return SHARP_RIGHT if right else SHARP_LEFT
    return UTURN


@njit(cache=True, nogil=True, inline="always")
def _refs_meet(rp: int, rq: int, tok_ptr: np.ndarray, tok: np.ndarray) -> bool:
    """Two road-number lists ("CG3i4; CG-3") share a number (token ids sorted per list)."""
    i, i_end = tok_ptr[rp], tok_ptr[rp + 1]
    j, j_end = tok_ptr[rq], tok_ptr[rq + 1]
    while i < i_end and j < j_end:
        if tok[i] == tok[j]:
            return True
        if tok[i] < tok[j]:
            i += 1
        else:
            j += 1
    return False


@njit(cache=True, nogil=True)
def _same_road(p, q, name, refs, way, tok_ptr, tok):
    """One road for the driver: the same name, a road number in common, or the same unnamed way."""
    np_, nq, rp, rq = name[p], name[q], refs[p], refs[q]
    if np_ < 0 and nq < 0 and rp < 0 and rq < 0:
        return way[p] == way[q]
    if np_ >= 0 and np_ == nq:
        return rp == rq or rp < 0 or rq < 0 or _refs_meet(rp, rq, tok_ptr, tok)
    return rp >= 0 and rq >= 0 and _refs_meet(rp, rq, tok_ptr, tok)


@njit(cache=True, nogil=True)
def _shown_change(p, q, name, refs, way, tok_ptr, tok):
    """Worth a "new name": another road, and one with a name or number to announce."""
    named = name[q] >= 0 or refs[q] >= 0
    return named and not _same_road(p, q, name, refs, way, tok_ptr, tok)


@njit(cache=True, nogil=True, inline="always")
def _allowed(e_in, e_out, edge_head, offsets, arc_edge):
    """`e_out` may be taken after `e_in` (an arc of `e_in`'s head; turn restrictions are compiled in)."""
    h = edge_head[e_in]
    for a in range(offsets[h], offsets[h + 1]):  # noqa: SIM110 (a loop compiles; a generator in any() does not)
        if arc_edge[a] == e_out:
            return True
    return False


@njit(cache=True, nogil=True, inline="always")
def _ramp(c_in: int, c_out: int) -> int:
    """off ramp (motorway or trunk -> link), on ramp (other road -> motorway or trunk link), merge
    (link -> motorway or trunk), or -1."""
    if _MOTORWAY[c_in] and _LINK[c_out]:
        return OFF_RAMP
    if _MOTORWAY_LINK[c_out] and not _MOTORWAY[c_in] and not _LINK[c_in]:
        return ON_RAMP
    if _LINK[c_in] and _MOTORWAY[c_out]:
        return MERGE
    return -1


@njit(cache=True, nogil=True)
def _classify(p, q, delta, g, others_x, others_e):
    """(type, modifier) of the move p -> q at a junction outside roundabouts; type -1: nothing said.
    `g`: the tuple of arrays of `maneuvers`; `others_x` / `others_e`: scratch space."""
    (edge_v, name, refs, way, cls, rev, degree, arm_ptr, arm_out, arm_in, arm_bear, b_end,
     edge_head, offsets, arc_edge, tok_ptr, tok) = g  # fmt: skip
    v = edge_v[p]
    d = _norm(delta)
    mod = modifier(d)
    same = _same_road(p, q, name, refs, way, tok_ptr, tok)
    if q == rev[p] or mod == UTURN:
        return (CONTINUE if same else TURN), UTURN
    ramp = _ramp(cls[p], cls[q])
    if degree[v] <= 2:  # no choice here: only a change of road is worth saying
        if ramp >= 0:
            if mod != STRAIGHT:
                return ramp, mod
            return ramp, (SLIGHT_RIGHT if d >= 0.0 else SLIGHT_LEFT)
        if _shown_change(p, q, name, refs, way, tok_ptr, tok):
            return NEW_NAME, mod
        return -1, mod
    n_o = 0
    for k in range(arm_ptr[v], arm_ptr[v + 1]):
        o = arm_out[k]
        if o >= 0 and o != q and arm_in[k] != p and _allowed(p, o, edge_head, offsets, arc_edge):
            others_x[n_o] = _norm(arm_bear[k] - b_end[p])
            others_e[n_o] = o
            n_o += 1
    if ramp >= 0:
        if mod != STRAIGHT:
            return ramp, mod
        main = 0.0  # the other way nearest straight on (the first of equals)
        best = np.inf
        for k in range(n_o):
            if abs(others_x[k]) < best:
                best = abs(others_x[k])
                main = others_x[k]
        return ramp, (SLIGHT_RIGHT if d >= main else SLIGHT_LEFT)
    best_other = 180.0
    for k in range(n_o):
        best_other = min(best_other, abs(others_x[k]))
    if same:
        if abs(d) < 45 and abs(d) <= best_other + 5:
            return -1, mod
        return CONTINUE, mod
    if n_o == 0:  # the only way on
        if _shown_change(p, q, name, refs, way, tok_ptr, tok):
            return NEW_NAME, mod
        return -1, mod
    if abs(d) >= 45 and best_other >= 45 and n_o == 1 and (others_x[0] > 0) != (d > 0):
        return END_OF_ROAD, (RIGHT if d > 0 else LEFT)
    n_ahead, all_gt, all_lt, other_same = 0, True, True, False
    for k in range(n_o):
        x = others_x[k]
        if abs(x) < 60:
            n_ahead += 1
            all_gt = all_gt and x > d
            all_lt = all_lt and x < d
        if _same_road(p, others_e[k], name, refs, way, tok_ptr, tok):
            other_same = True
    if abs(d) < 60 and n_ahead and not other_same:
        if all_gt:
            return FORK, SLIGHT_LEFT
        if all_lt:
            return FORK, SLIGHT_RIGHT
        return FORK, STRAIGHT
    if abs(d) < 35:
        clear = True
        for k in range(n_o):
            if not (abs(others_x[k]) >= 45 and abs(others_x[k]) > abs(d) + 15):
                clear = False
        if clear:
            if _shown_change(p, q, name, refs, way, tok_ptr, tok):
                return NEW_NAME, mod
            return -1, mod
    return TURN, mod


@njit(cache=True, nogil=True)
def _entry_mod(total: float) -> int:
    """Modifier of a roundabout: the direction of the whole move, from entering to leaving."""
    m = modifier(total)
    return STRAIGHT if m == UTURN else m


@njit(cache=True, nogil=True)
def _leaves_ring(e, edge_v, arm_ptr, arm_out, flags, edge_head, offsets, arc_edge):
    """1 when the head of ring edge `e` has a road leaving the ring that may be entered from `e`."""
    v = edge_v[e]
    for k in range(arm_ptr[v], arm_ptr[v + 1]):
        o = arm_out[k]
        if o >= 0 and (flags[o] & FLAG_ROUNDABOUT) == 0 and _allowed(e, o, edge_head, offsets, arc_edge):
            return 1
    return 0


@njit(cache=True, nogil=True)
def maneuvers(
    ed: np.ndarray, lo_i: int, hi_i: int, g: tuple[np.ndarray, ...], b_start: np.ndarray, flags: np.ndarray,
    max_degree: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per transition i (edge i-1 -> edge i, lo_i < i <= hi_i) of the path `ed`: (kind, modifier,
    exit, described); kind -1 where nothing is said. `g`: the guide's arrays (see `_classify`)."""
    (edge_v, name, refs, way, _cls, rev, degree, arm_ptr, arm_out, _arm_in, _arm_bear, b_end,
     edge_head, offsets, arc_edge, _tok_ptr, _tok) = g  # fmt: skip
    n = len(ed)
    kind = np.full(n, -1, np.int8)
    mods = np.zeros(n, np.int8)
    exits = np.full(n, -1, np.int32)
    described = np.zeros(n, np.bool_)
    others_x = np.empty(max_degree + 1)
    others_e = np.empty(max_degree + 1, np.int64)
    i = lo_i + 1
    while i <= hi_i:
        p, q = ed[i - 1], ed[i]
        rb_p, rb_q = (flags[p] & FLAG_ROUNDABOUT) != 0, (flags[q] & FLAG_ROUNDABOUT) != 0
        delta = b_start[q] - b_end[p]
        if degree[edge_v[p]] >= 3 or q == rev[p]:
            described[i] = True
        dl = _norm(delta)
        if (
            abs(dl) < 20
            and name[p] == name[q]
            and refs[p] == refs[q]
            and (name[p] >= 0 or refs[p] >= 0 or way[p] == way[q])
            and rev[p] != q
            and not rb_p
            and not rb_q
        ):  # straight on along the same road, no ring: nothing to say (most junctions of a route)
            i += 1
            continue
        if not rb_p and rb_q:  # entering a ring
            j, n_exits = i, 0
            while j <= hi_i and (flags[ed[j]] & FLAG_ROUNDABOUT) != 0:
                if j + 1 <= hi_i:  # the route goes on past the head of this ring edge
                    n_exits += _leaves_ring(
                        ed[j], edge_v, arm_ptr, arm_out, flags, edge_head, offsets, arc_edge
                    )
                j += 1
            circ = (flags[q] & FLAG_CIRCULAR) != 0
            for k in range(i + 1, min(j, hi_i) + 1):
                if degree[edge_v[ed[k - 1]]] >= 3:
                    described[k] = True
            if j > hi_i:  # the route ends on the ring
                kind[i] = ROTARY if circ else ROUNDABOUT
                mods[i] = modifier(delta)
                break
            whole = _entry_mod(b_start[ed[j]] - b_end[p])  # entering to leaving
            kind[i] = ROTARY if circ else ROUNDABOUT
            kind[j] = EXIT_ROTARY if circ else EXIT_ROUNDABOUT
            mods[i] = mods[j] = whole
            exits[i] = exits[j] = max(n_exits, 1)
            i = j + 1
            continue
        if rb_p and not rb_q:  # leaving a ring the route started on
            kind[i] = EXIT_ROTARY if (flags[p] & FLAG_CIRCULAR) != 0 else EXIT_ROUNDABOUT
            mods[i] = modifier(delta)
        elif not (rb_p and rb_q):
            k_, m_ = _classify(p, q, delta, g, others_x, others_e)
            kind[i], mods[i] = k_, m_
        i += 1
    return kind, mods, exits, described


__all__ = ["KINDS", "MODIFIERS", "ROTARY", "ROUNDABOUT", "maneuvers"]
