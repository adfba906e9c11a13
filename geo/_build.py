"""OSM extract -> CompiledGraph: simplification, edge attributes, turn restrictions, strong connectivity.

Steps (`build_graph`):
1. Read the drivable way pieces and restrictions (`geo._osm.read_roads`; policy documented there).
2. Junctions: nodes used twice or more by the kept ways (shared by two ways, or twice by one), piece
   endpoints, restriction via nodes, and the middle node of a segment that would otherwise start and
   end at the same junction (a closed way), so no road edge is a self-loop.
3. Road edges: one per direction of each segment between consecutive junctions of a piece (one for
   one-way ways), with the full polyline, haversine length (at least `MIN_LENGTH_M` so that no cost is
   zero: scipy's sparse graphs drop zero weights), class, way id, names, lanes and maxspeed per
   direction (`maxspeed:forward/backward` and `lanes:forward/backward` when tagged; otherwise `maxspeed`,
   and `lanes` for one-way ways or max(1, lanes // 2) for two-way ways), free-flow speed
   (`geo._maxspeed.freeflow_mps`).
4. Turn restrictions with a via node or one or several via ways are compiled by node splitting (see
   `geo._graph`); `restrictions_applied_via_way` counts the latter. Ignored and counted: missing
   members (`restrictions_skipped_missing`); several from- or to-ways for a value other than
   `no_entry` / `no_exit`, several via nodes, or via node and via way together
   (`restrictions_skipped_malformed`); via ways that no from -> via -> to path joins
   (`restrictions_skipped_via_way`); a via node the from and to ways do not meet at
   (`restrictions_skipped_not_at_junction`). U-turns from one one-way edge onto an opposite one-way edge
   at a junction that has another exit (a dual carriageway's median) are forbidden
   (`is_median_u_turn`, also used by the independent comparison; `median_u_turns_forbidden`); other U-turns are allowed unless a restriction forbids them.
   `no_entry` / `no_exit` are prohibitions like `no_*` (their several from- or to-ways all count).
   A from-way (to-way) that is not split at the via node contributes every edge of it that ends
   (starts) at the via node. When from-way == to-way, a `*_u_turn` restriction concerns the reverse
   edge of the incoming one; any other value concerns the other edges of that way leaving the node.
5. Every road is kept, also small strongly connected components (a one-way-heavy estate, a clipped
   corner of the extract, a lone one-way road): dropping them made whole ways vanish and their points
   snap to another road far away. `geo._components` finds the main (largest) component at load; the
   snapper prefers it (rule in `geo._snap`) and the router answers "not connected" between parts that
   do not join. The counts report `components` and the junctions and road edges outside the main one.
"""

from __future__ import annotations

import hashlib
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from geo._access import ALLOW
from geo._coords import haversine_m_array
from geo._errors import ExtractError
from geo._graph import CLASS_INDEX, FLAG_CIRCULAR, FLAG_RESTRICTED, FLAG_ROUNDABOUT, FLAG_TOLL, CompiledGraph
from geo._maxspeed import freeflow_mps, parse_maxspeed
from geo._osm import OsmRoads, Restriction, oneway_direction, read_roads
from geo._vehicle import hgv_access, way_limits

MIN_LENGTH_M = 0.1
_CODE_FILES = (
    "_osm.py", "_access.py", "_build.py", "_maxspeed.py", "_graph.py", "_landmarks.py", "_vehicle.py",
)  # fmt: skip


def build_code_hash() -> str:
    """sha256 over the source of the modules that shape a compiled graph (cache key and meta)."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _CODE_FILES:
        p = here / name
        if p.is_file():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- 2. junctions and segments ------------------------------------------------------------------
@dataclass
class _Segments:
    uniq: np.ndarray  # int64 OSM ids of all nodes used
    nidx: np.ndarray  # per position: index into uniq
    junction: np.ndarray  # bool per uniq node
    a: np.ndarray  # start position of each segment
    b: np.ndarray  # end position
    way: np.ndarray  # way index of each segment
    cum_m: np.ndarray  # cumulative distance per position


def _segments(osm: OsmRoads) -> _Segments:
    offsets = osm.piece_offsets
    pid = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    uniq, nidx = np.unique(osm.refs, return_inverse=True)
    junction = np.bincount(nidx, minlength=len(uniq)) >= 2
    junction[nidx[offsets[:-1]]] = True
    junction[nidx[offsets[1:] - 1]] = True
    via = np.array([n for r in osm.restrictions for n in r.via_nodes], dtype=np.int64)
    via = np.concatenate((via, osm.blocked_nodes))  # barriers end edges too (U-turn only there)
    if via.size:
        pos = np.searchsorted(uniq, via).clip(0, len(uniq) - 1)
        junction[pos[uniq[pos] == via]] = True
    while True:
        jpos = np.flatnonzero(junction[nidx])
        same = pid[jpos[:-1]] == pid[jpos[1:]]
        a, b = jpos[:-1][same], jpos[1:][same]
        loops = nidx[a] == nidx[b]
        if not loops.any():
            break
        junction[nidx[(a[loops] + b[loops]) // 2]] = True
    d = haversine_m_array(osm.lat[:-1], osm.lon[:-1], osm.lat[1:], osm.lon[1:])
    cum = np.concatenate(([0.0], np.cumsum(d)))
    return _Segments(uniq, nidx, junction, a, b, osm.piece_way[pid[a]], cum)


# ---- 3. road edges ------------------------------------------------------------------------------
def _lanes(value: str | None) -> int:
    if not value:
        return 0
    try:
        return max(0, min(127, int(float(value.split(";")[0].strip()))))
    except ValueError:
        return 0


@dataclass
class _WayAttrs:
    oneway: np.ndarray  # int8
    cls: np.ndarray  # uint8
    name: np.ndarray  # int32
    lanes: np.ndarray  # int8 [ways, 2] forward, backward
    maxspeed: np.ndarray  # float32 [ways, 2]
    speed: np.ndarray  # float64 [ways, 2] m/s
    names: list[str]
    names_en: list[str]
    ref: np.ndarray  # int32 index into refs, -1 none
    flags: np.ndarray  # uint8 FLAG_* bits
    refs: list[str]
    limits: np.ndarray  # float32 [ways, 4] height, weight, width, length (inf: none)
    hgv: np.ndarray  # uint8 [ways, 2] goods-vehicle access forward, backward


def _way_attrs(osm: OsmRoads, speeds_kmh: dict[str, float]) -> _WayAttrs:
    n = len(osm.way_ids)
    oneway = np.zeros(n, np.int8)
    cls = np.zeros(n, np.uint8)
    name = np.full(n, -1, np.int32)
    lanes = np.zeros((n, 2), np.int8)
    maxspeed = np.full((n, 2), np.nan, np.float32)
    speed = np.zeros((n, 2), np.float64)
    table: dict[tuple[str, str], int] = {}
    ref = np.full(n, -1, np.int32)
    flags = np.zeros(n, np.uint8)
    ref_table: dict[str, int] = {}
    limits = np.full((n, 4), np.inf, np.float32)
    hgv = np.full((n, 2), ALLOW, np.uint8)
    for i, tags in enumerate(osm.way_tags):
        limits[i] = way_limits(tags)
        hgv[i] = hgv_access(tags)
        r = tags.get("ref", "").strip()
        if r and r.lower() != "fixme":  # a mapper's placeholder, not a road number
            ref[i] = ref_table.setdefault(r, len(ref_table))
        junction = tags.get("junction", "")
        if junction in ("roundabout", "circular"):
            flags[i] |= FLAG_ROUNDABOUT | (FLAG_CIRCULAR if junction == "circular" else 0)
        if tags.get("toll", "") == "yes":
            flags[i] |= FLAG_TOLL
        oneway[i] = osm.way_oneway[i] if osm.way_oneway else oneway_direction(tags)
        if osm.way_restricted and osm.way_restricted[i]:
            flags[i] |= FLAG_RESTRICTED
        hw = tags["highway"]
        cls[i] = CLASS_INDEX[hw]
        en = tags.get("name:en", "")
        local = tags.get("name:zh") or tags.get("name") or en
        if local:
            name[i] = table.setdefault((local, en), len(table))
        total = _lanes(tags.get("lanes"))
        per_dir = total if oneway[i] else (max(1, total // 2) if total else 0)
        for d, suffix in enumerate(("forward", "backward")):
            lanes[i, d] = _lanes(tags.get(f"lanes:{suffix}")) or per_dir
            ms = parse_maxspeed(tags.get(f"maxspeed:{suffix}"))
            if math.isnan(ms):
                ms = parse_maxspeed(tags.get("maxspeed"))
            maxspeed[i, d] = ms
            speed[i, d] = freeflow_mps(ms, hw, speeds_kmh)
    names = [k[0] for k in table]
    names_en = [k[1] for k in table]
    return _WayAttrs(
        oneway, cls, name, lanes, maxspeed, speed, names, names_en, ref, flags, list(ref_table), limits, hgv
    )


@dataclass
class _Edges:
    u: np.ndarray  # uniq index of tail
    v: np.ndarray  # uniq index of head
    way: np.ndarray  # way index
    rev: np.ndarray  # bool: against the way's node order
    twin: np.ndarray  # int64: the opposite edge of the same segment, -1 if none
    length: np.ndarray
    geom_pos: np.ndarray  # positions into osm.lat/lon, concatenated per edge
    geom_offsets: np.ndarray


def _edges(seg: _Segments, wa: _WayAttrs) -> _Edges:
    ow = wa.oneway[seg.way]
    s_idx = np.arange(len(seg.a))
    fw, bw = s_idx[ow >= 0], s_idx[ow <= 0]
    e_seg = np.concatenate((fw, bw))
    e_rev = np.concatenate((np.zeros(len(fw), bool), np.ones(len(bw), bool)))
    order = np.lexsort((e_rev, e_seg))
    e_seg, e_rev = e_seg[order], e_rev[order]
    twin = np.full(len(e_seg), -1, np.int64)
    pair = np.flatnonzero(e_seg[1:] == e_seg[:-1])
    twin[pair], twin[pair + 1] = pair + 1, pair
    a, b = seg.a[e_seg], seg.b[e_seg]
    start, end = np.where(e_rev, b, a), np.where(e_rev, a, b)
    counts = b - a + 1
    goff = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    k = np.arange(goff[-1]) - np.repeat(goff[:-1], counts)
    gpos = np.repeat(start, counts) + k * np.repeat(np.where(e_rev, -1, 1), counts)
    length = np.maximum(seg.cum_m[b] - seg.cum_m[a], MIN_LENGTH_M)
    return _Edges(seg.nidx[start], seg.nidx[end], seg.way[e_seg], e_rev, twin, length, gpos, goff)


# ---- 4. restrictions ----------------------------------------------------------------------------
MEDIAN_ANGLE = 30.0  # degrees from a full reversal still counted as a U-turn across a median
MAX_VIA_EDGES = 16  # road edges along the via ways of one restriction (longer: malformed)
_MANY_ALLOWED = ("no_entry", "no_exit")  # the only values that may name several from (to) ways


@dataclass
class _Split:
    """Private copies of junctions. Copy i stands at junction `base[i]`; `arcs[i]` lists its outgoing
    (road edge, head) pairs, head -1 meaning the edge's usual head. `entry[e]` is the copy that road
    edge e enters instead of its head junction (its first copy)."""

    base: list[int]
    arcs: list[list[tuple[int, int]]]
    entry: dict[int, int]
    counts: dict[str, int]


def _edge_targets(
    r: Restriction, e: int, fw: int, tws: list[int], out_at: dict[int, list[int]], ed: _Edges
) -> set[int]:
    out: set[int] = set()
    for tw in tws:
        cand = out_at.get(tw, [])
        if tw == fw:
            back = int(ed.twin[e])
            cand = [back] if r.value.endswith("u_turn") else [f for f in cand if f != back]
            cand = [f for f in cand if f in out_at.get(tw, [])]
        out.update(cand)
    return out


def _via_paths(
    r: Restriction, fws: list[int], tws: list[int], vws: set[int], ed: _Edges, out_of: dict[int, list[int]]
) -> list[tuple[tuple[int, ...], set[int]]]:
    """(from edge + via edges, to edges) for a via-way restriction: a from-way edge ending on a via way,
    then road edges of the via ways (each via way used, no junction twice), then a to-way edge leaving."""
    found: list[tuple[tuple[int, ...], set[int]]] = []
    tw_set = set(tws)
    starts = [e for e in range(len(ed.u)) if int(ed.way[e]) in fws] if fws else []
    for e0 in starts:
        stack: list[tuple[int, ...]] = [(e0,)]
        while stack:
            path = stack.pop()
            v = int(ed.v[path[-1]])
            if len(path) > 1 and {int(ed.way[x]) for x in path[1:]} == vws:
                back = int(ed.twin[path[-1]])
                to = {f for f in out_of.get(v, []) if int(ed.way[f]) in tw_set and f != back}
                if to:
                    found.append((path, to))
            if len(path) > MAX_VIA_EDGES:
                continue
            seen = {int(ed.u[x]) for x in path} | {v}
            for f in out_of.get(v, []):
                if int(ed.way[f]) in vws and int(ed.v[f]) not in seen:
                    stack.append((*path, f))
    return found


def _restrictions(osm: OsmRoads, seg: _Segments, ed: _Edges) -> _Split:
    c = {"restrictions_read": len(osm.restrictions), "restrictions_applied": 0}
    c |= {
        "restrictions_applied_via_way": 0,
        "restrictions_skipped_via_way": 0,  # via ways that no from -> via -> to path joins
        "restrictions_skipped_missing": 0,
        "restrictions_skipped_malformed": 0,
        "restrictions_skipped_not_at_junction": 0,
    }
    way_index = {w: i for i, w in enumerate(osm.way_ids)}
    pos = np.searchsorted(seg.uniq, osm.blocked_nodes).clip(0, max(len(seg.uniq) - 1, 0))
    blocked = pos[seg.uniq[pos] == osm.blocked_nodes].tolist() if len(seg.uniq) else []
    node_index = {int(n): i for i, n in enumerate(seg.uniq)} if osm.restrictions else {}
    via = {node_index[n] for r in osm.restrictions for n in r.via_nodes if n in node_index} | set(blocked)
    in_at: dict[int, dict[int, list[int]]] = {v: {} for v in via}
    out_at: dict[int, dict[int, list[int]]] = {v: {} for v in via}
    for e in np.flatnonzero(np.isin(ed.v, list(via))).tolist():
        in_at[int(ed.v[e])].setdefault(int(ed.way[e]), []).append(e)
    for e in np.flatnonzero(np.isin(ed.u, list(via))).tolist():
        out_at[int(ed.u[e])].setdefault(int(ed.way[e]), []).append(e)
    out_of: dict[int, list[int]] = {}
    if any(r.via_ways for r in osm.restrictions):
        for e in range(len(ed.u)):
            out_of.setdefault(int(ed.u[e]), []).append(e)
    rules: dict[int, list[tuple[str, set[int]]]] = {}
    path_rules: dict[tuple[int, ...], list[tuple[str, set[int]]]] = {}
    for r in osm.restrictions:
        fws = [way_index[w] for w in r.from_ways if w in way_index]
        tws = [way_index[w] for w in r.to_ways if w in way_index]
        if not fws or not tws or not (r.via_nodes or r.via_ways):
            c["restrictions_skipped_missing"] += 1
            continue
        several = len(r.from_ways) > 1 or len(r.to_ways) > 1
        if (r.via_nodes and r.via_ways) or len(r.via_nodes) > 1 or (several and r.value not in _MANY_ALLOWED):
            c["restrictions_skipped_malformed"] += 1
            continue
        if r.via_ways:
            vws = {way_index[w] for w in r.via_ways if w in way_index}
            if len(vws) != len(set(r.via_ways)):
                c["restrictions_skipped_missing"] += 1
                continue
            paths = _via_paths(r, fws, tws, vws, ed, out_of)
            if not paths:
                c["restrictions_skipped_via_way"] += 1
                continue
            c["restrictions_applied"] += 1
            c["restrictions_applied_via_way"] += 1  # of restrictions_applied
            for path, to in paths:
                path_rules.setdefault(path, []).append((r.kind, to))
            continue
        if r.via_nodes[0] not in node_index:
            c["restrictions_skipped_missing"] += 1
            continue
        v = node_index[r.via_nodes[0]]
        found: list[tuple[int, set[int]]] = []
        for fw in fws:
            for e in in_at[v].get(fw, []):
                targets = _edge_targets(r, e, fw, tws, out_at[v], ed)
                if targets:
                    found.append((e, targets))
        if not found:
            c["restrictions_skipped_not_at_junction"] += 1
            continue
        c["restrictions_applied"] += 1
        for e, targets in found:
            rules.setdefault(e, []).append((r.kind, targets))
    # a barrier node: whoever arrives may only turn back (the twin edge), nobody passes through
    c["barriers_applied"] = 0
    for v in blocked:
        arriving = [e for es in in_at[v].values() for e in es]
        c["barriers_applied"] += bool(arriving)
        for e in arriving:
            back = int(ed.twin[e])
            rules.setdefault(e, []).append(("only", {back} if back >= 0 else set()))
    c["median_u_turns_forbidden"] = _median_u_turns(osm, ed, rules)
    return _copies(ed, rules, path_rules, c)


def _median_u_turns(osm: OsmRoads, ed: _Edges, rules: dict[int, list[tuple[str, set[int]]]]) -> int:
    """Forbid turning from a one-way road edge onto a one-way edge leaving the same junction in the
    opposite direction (`is_median_u_turn`): a U-turn across a dual carriageway's median. Returns the
    number forbidden."""
    one = np.flatnonzero(ed.twin < 0)
    if one.size == 0:
        return 0
    lat, lon = osm.lat[ed.geom_pos], osm.lon[ed.geom_pos]
    g0, g1 = ed.geom_offsets[:-1], ed.geom_offsets[1:]
    end_b = segment_bearing(lat[g1 - 2], lon[g1 - 2], lat[g1 - 1], lon[g1 - 1])
    start_b = segment_bearing(lat[g0], lon[g0], lat[g0 + 1], lon[g0 + 1])
    out_n = np.bincount(ed.u, minlength=int(max(ed.u.max(), ed.v.max())) + 1)
    by_tail: dict[int, list[int]] = {}
    for f in one.tolist():
        by_tail.setdefault(int(ed.u[f]), []).append(f)
    n = 0
    for e in one.tolist():
        v = int(ed.v[e])
        if out_n[v] <= 1:
            continue  # a dead end: no U-turn there is refused (`is_median_u_turn`)
        for f in by_tail.get(v, []):
            if int(ed.way[f]) == int(ed.way[e]):
                continue  # the same way going on (a hairpin bend, a one-way loop), not two carriageways
            if is_median_u_turn(float(end_b[e]), float(start_b[f]), int(out_n[v])):
                rules.setdefault(e, []).append(("no", {f}))
                n += 1
    return n


def is_median_u_turn(arrive_deg: float, leave_deg: float, exits: int) -> bool:
    """Whether arriving at a junction on a one-way road heading `arrive_deg` (bearing of its last
    segment) and leaving on another one-way road heading `leave_deg` (its first segment) is a U-turn
    across a dual carriageway's median: the heading turns within `MEDIAN_ANGLE` degrees of a full
    reversal, and the junction has another way on (`exits`, the road edges leaving it, is more than
    one; at a dead end turning back is the only way on)."""
    turn = abs((leave_deg - arrive_deg + 180.0) % 360.0 - 180.0)
    return exits > 1 and turn >= 180.0 - MEDIAN_ANGLE


def segment_bearing(la0: Any, lo0: Any, la1: Any, lo1: Any) -> np.ndarray:
    """Heading (degrees clockwise from north, [0, 360)) of the short segment(s) from (la0, lo0) to
    (la1, lo1), equirectangular; arrays or scalars."""
    dx = np.radians(np.asarray(lo1) - lo0) * np.cos(np.radians((np.asarray(la0) + la1) / 2))
    dy = np.radians(np.asarray(la1) - la0)
    return np.asarray(np.degrees(np.arctan2(dx, dy)) % 360.0)


def _copies(
    ed: _Edges,
    rules: dict[int, list[tuple[str, set[int]]]],
    path_rules: dict[tuple[int, ...], list[tuple[str, set[int]]]],
    c: dict[str, int],
) -> _Split:
    """Node splitting (see `geo._graph`): one copy per road edge with rules at its head, and one per
    prefix of a via-way path (from edge, via edges...), each copy's arcs the turns allowed from it."""
    out_of: dict[int, list[int]] = {}
    keys: set[tuple[int, ...]] = {(e,) for e in rules}
    for path in path_rules:
        keys.update(path[:k] for k in range(1, len(path) + 1))
    if keys:
        for e in np.flatnonzero(np.isin(ed.u, [int(ed.v[k[-1]]) for k in keys])).tolist():
            out_of.setdefault(int(ed.u[e]), []).append(e)
    order = sorted(keys, key=lambda k: (len(k), k))
    cid = {k: i for i, k in enumerate(order)}
    base: list[int] = []
    arcs: list[list[tuple[int, int]]] = []
    for k in order:
        v = int(ed.v[k[-1]])
        ok = set(out_of.get(v, []))
        for kind, targets in rules.get(k[-1], []) + path_rules.get(k, []):
            ok = ok & targets if kind == "only" else ok - targets
        base.append(v)
        arcs.append([(f, cid.get((*k, f), -1)) for f in sorted(ok)])
    c["split_nodes"] = len(order)
    return _Split(base, arcs, {k[0]: cid[k] for k in order if len(k) == 1}, c)


# ---- 5. arcs, strong connectivity, assembly ----------------------------------------------------
@dataclass
class _Arcs:
    tail: np.ndarray
    head: np.ndarray
    edge: np.ndarray
    n_nodes: int
    base: np.ndarray  # junction (uniq index) of each node


def _arcs(seg: _Segments, ed: _Edges, sp: _Split) -> _Arcs:
    jid = np.cumsum(seg.junction) - 1  # uniq index -> junction index
    n_j = int(seg.junction.sum())
    m = len(ed.u)
    head_of = jid[ed.v].astype(np.int64)
    for e, k in sp.entry.items():
        head_of[e] = n_j + k
    tails = [jid[ed.u].astype(np.int64)]
    edges = [np.arange(m, dtype=np.int64)]
    heads = [head_of.copy()]
    for k, out in enumerate(sp.arcs):
        f = np.array([x for x, _ in out], np.int64)
        h = np.array([x for _, x in out], np.int64)
        tails.append(np.full(len(out), n_j + k, np.int64))
        edges.append(f)
        heads.append(np.where(h >= 0, n_j + h, head_of[f]) if len(out) else f)
    edge = np.concatenate(edges)
    base = np.concatenate((np.arange(n_j), jid[np.asarray(sp.base, np.int64)])).astype(np.int64)
    return _Arcs(np.concatenate(tails), np.concatenate(heads), edge, n_j + len(sp.base), base)


def _keep_all(arcs: _Arcs, n_junctions: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(node kept, arc kept, component counts): every node and arc is kept (module doc, step 5)."""
    n = arcs.n_nodes
    if n < 2 or len(arcs.tail) == 0:
        raise ExtractError("the drivable network has no road between two junctions")
    mat = csr_matrix((np.ones(len(arcs.tail), np.int8), (arcs.tail, arcs.head)), shape=(n, n))
    count, labels = connected_components(mat, directed=True, connection="strong")
    main = labels == np.bincount(labels).argmax()
    main[arcs.base[np.flatnonzero(main[n_junctions:]) + n_junctions]] = True
    c = {
        "components": int(count),
        "junctions_outside_main": int(n_junctions - main[:n_junctions].sum()),
        "arcs_outside_main": int((~(main[arcs.tail] & main[arcs.head])).sum()),
    }
    return np.ones(n, bool), np.ones(len(arcs.tail), bool), c


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_graph(extract: Path, *, speeds_kmh: dict[str, float], progress: bool = False) -> CompiledGraph:
    """Compile an OSM extract into a CompiledGraph (steps in the module doc); `meta` holds the counts.

    Raises ExtractError when the extract cannot be read or has no usable road network.
    """
    t0 = time.perf_counter()
    extract = Path(extract)
    osm = read_roads(extract, progress=progress)
    with tqdm(total=5, desc="building graph", disable=not progress, leave=False) as bar:
        seg = _segments(osm)
        bar.update()
        wa = _way_attrs(osm, speeds_kmh)
        ed = _edges(seg, wa)
        bar.update()
        sp = _restrictions(osm, seg, ed)
        bar.update()
        arcs = _arcs(seg, ed, sp)
        n_j = int(seg.junction.sum())
        keep, arc_keep, comp_counts = _keep_all(arcs, n_j)
        bar.update()
        g = _assemble(osm, seg, wa, ed, arcs, keep, arc_keep)
        bar.update()
    counts: dict[str, Any] = dict(osm.counts) | sp.counts | comp_counts
    counts |= {
        "nodes": g.n_nodes,
        "junctions": int(np.count_nonzero(g.node_base == np.arange(g.n_nodes))),
        "arcs": g.n_arcs,
        "road_edges": g.n_road_edges,
    }
    g.meta = {
        "source": str(extract.resolve()),
        "extract_sha256": file_sha256(extract),
        "build_code": build_code_hash(),
        "speeds_kmh": dict(speeds_kmh),
        "counts": counts,
        "build_seconds": round(time.perf_counter() - t0, 3),
        "peak_memory_mb": round(_peak_mb(), 1),
        "bbox": [
            float(g.geom_lon.min()),
            float(g.geom_lat.min()),
            float(g.geom_lon.max()),
            float(g.geom_lat.max()),
        ],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return g


def _assemble(
    osm: OsmRoads,
    seg: _Segments,
    wa: _WayAttrs,
    ed: _Edges,
    arcs: _Arcs,
    keep: np.ndarray,
    arc_keep: np.ndarray,
) -> CompiledGraph:
    n_j = int(seg.junction.sum())
    new_node = np.cumsum(keep) - 1
    edge_keep = np.zeros(len(ed.u), bool)
    edge_keep[arcs.edge[arc_keep]] = True
    new_edge = np.cumsum(edge_keep) - 1
    # nodes
    jid = np.cumsum(seg.junction) - 1
    j_lat = np.empty(n_j)
    j_lon = np.empty(n_j)
    j_osm = seg.uniq[seg.junction]
    jmask = seg.junction[seg.nidx]
    j_lat[jid[seg.nidx[jmask]]] = osm.lat[jmask]
    j_lon[jid[seg.nidx[jmask]]] = osm.lon[jmask]
    base = arcs.base[keep]
    node_base = new_node[base].astype(np.int32)
    # arcs: CSR by tail
    tail = new_node[arcs.tail[arc_keep]]
    order = np.argsort(tail, kind="stable")
    n = int(keep.sum())
    offsets = np.concatenate(([0], np.cumsum(np.bincount(tail, minlength=n)))).astype(_index_dtype(len(tail)))
    # road edges
    ke = np.flatnonzero(edge_keep)
    counts = np.diff(ed.geom_offsets)[ke]
    gsel = np.repeat(ed.geom_offsets[ke], counts) + (
        np.arange(counts.sum()) - np.repeat(np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    )
    gpos = ed.geom_pos[gsel]
    way, d = ed.way[ke], ed.rev[ke].astype(np.int64)
    geom_osm = osm.refs[gpos].astype(np.int64)
    geom_offsets = np.concatenate(([0], np.cumsum(counts))).astype(_index_dtype(int(counts.sum())))
    return CompiledGraph(
        node_lat=j_lat[base],
        node_lon=j_lon[base],
        node_osm=j_osm[base].astype(np.int64),
        node_base=node_base,
        offsets=offsets,
        arc_head=new_node[arcs.head[arc_keep]][order].astype(np.int32),
        arc_edge=new_edge[arcs.edge[arc_keep]][order].astype(np.int32),
        edge_u=new_node[jid[ed.u[ke]]].astype(np.int32),
        edge_v=new_node[jid[ed.v[ke]]].astype(np.int32),
        edge_length_m=ed.length[ke].astype(np.float64),
        edge_speed_mps=wa.speed[way, d],
        edge_class=wa.cls[way],
        edge_way=np.asarray(osm.way_ids, dtype=np.int64)[way],
        edge_maxspeed_kmh=wa.maxspeed[way, d],
        edge_lanes=wa.lanes[way, d],
        edge_name=wa.name[way],
        edge_geom_offsets=geom_offsets,
        geom_lat=osm.lat[gpos],
        geom_lon=osm.lon[gpos],
        names=wa.names,
        names_en=wa.names_en,
        edge_rev=_kept_twins(ed.twin[ke], edge_keep, new_edge),
        edge_ref=wa.ref[way],
        edge_flags=wa.flags[way],
        geom_osm=geom_osm,
        refs=wa.refs,
        edge_limits=_edge_limits(wa.limits[way], geom_osm, geom_offsets, osm.node_limits),
        edge_hgv=wa.hgv[way, d],
    )


def _edge_limits(
    limits: np.ndarray,
    geom_osm: np.ndarray,
    geom_offsets: np.ndarray,
    node_limits: dict[int, tuple[float, float, float, float]],
) -> np.ndarray:
    """Way limits per road edge, lowered by the limit of any node its geometry passes through."""
    out = np.ascontiguousarray(limits, dtype=np.float32)
    if not node_limits:
        return out
    ids = np.fromiter(node_limits, np.int64, len(node_limits))
    table = np.array([node_limits[int(i)] for i in ids], np.float32).reshape(-1, 4)
    order = np.argsort(ids)
    ids, table = ids[order], table[order]
    pos = np.flatnonzero(np.isin(geom_osm, ids))
    if pos.size:
        owner = np.searchsorted(geom_offsets, pos, side="right") - 1
        np.minimum.at(out, owner, table[np.searchsorted(ids, geom_osm[pos])])
    return out


def _index_dtype(size: int) -> type[np.signedinteger]:
    """int32 offsets while they fit (every real region), int64 beyond: 4 bytes per arc saved."""
    return np.int32 if size < 2**31 - 1 else np.int64


def _kept_twins(twin: np.ndarray, edge_keep: np.ndarray, new_edge: np.ndarray) -> np.ndarray:
    """The renumbered opposite edge of each kept edge (-1 when it has none or it was dropped).

    Recorded at build time because (u, v, way) does not identify a segment: a way can join the same
    two junctions by two different segments."""
    t = np.maximum(twin, 0)
    return np.where((twin >= 0) & edge_keep[t], new_edge[t], -1).astype(np.int32)


__all__ = ["build_code_hash", "build_graph", "file_sha256"]
