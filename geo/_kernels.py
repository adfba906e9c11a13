"""Numba kernels of the router: time-dependent A* (ALT) / Dijkstra over the arc CSR, path evaluation.

Few compiled functions (compile time matters): `search`, `trace`, `path_times`, `landmark_bounds` (the
active landmarks of a search), and the rare half of an offer `_offer` (with `_b_pays`), kept out of the
search loop.

Labels are times in seconds RELATIVE to the start of the departure bin ``b0 * 900`` (modes 0 and 1) or
metres (mode 2). Modes: 0 = time-dependent (profile table + live overlay), 1 = free flow, 2 = distance.
Travel time through an edge integrates distance through 15-minute bins of piecewise-constant speed
(Ichoua-Gendreau-Potvin); FIFO proof in `geo._traffic`.

Search. Sources are points on road edges (edge, metres from the tail): the search is seeded at the head
node of each source edge (all arcs of one road edge share their head) with the time to drive the rest
of it. Targets are points on road edges (edge, metres from the tail): a target candidate is evaluated
when an arc of the target's road edge is relaxed from its tail node state, i.e. as a partial arc, so
turn restrictions compiled into split nodes stay honoured. A source and target on the same edge, the
target ahead, also give the direct candidate. The search stops when the smallest key in the heap is at
least the worst best target cost (every target final) or above `max_cost`.

Heuristic (ALT). For active landmarks l: ``h(v) = max_l max(Tf[l] - from[l, v], to[l, v] - Tt[l]) -
margin`` where ``Tf[l] <= d(l, target)`` and ``Tt[l] >= d(target, l)`` (lower/upper bounds prepared
by the router). Landmark distances are free-flow times and every time-dependent edge time is at least
its free-flow time (factor <= 1; closures only remove arcs; penalties >= 1), so ``h`` is a lower bound.
`margin` covers float32 rounding of the landmark tables.
Time windows sharpen it: if every factor (profile table and live) is at most ``f_j`` on
``[t0, H_j]`` then a trip from a node reached at ``L`` either arrives after ``H_j`` or takes at least
``h / f_j``, so the key ``max(L + h, max_j min(H_j, L + h / f_j))`` is still a lower bound of the
arrival (it depends on L, is non-decreasing in L, and stale entries are recognised by recomputing it).
Period tables sharpen it further: the router may pass landmark tables computed with every edge's
free-flow time divided by a per-class factor ceiling, with ``per_h`` the first time (relative) at which
some profile or live factor may exceed its ceiling. A trip from a node reached at ``L`` that arrives
by ``per_h`` drives only under the ceilings, so it takes at least the period bound ``hp``; otherwise it
arrives after ``per_h``: arrival >= ``min(per_h, L + hp)``. And ``per_s * hp`` (``per_s`` the smallest
ceiling) still bounds the free-flow time, so the window key applies to it. The key is the max of both.
Distance (mode 2) uses a straight-line bound instead: every edge length is the haversine length of its
polyline, whose ends are the junction coordinates, so the road distance from node ``v`` to a target
point ``off`` metres past the tail ``u`` of its edge is at least ``haversine(v, u) + off``; ``hg`` holds
(lat rad, lon rad, cos lat, off) per target variant and the bound is the min over them (slightly shrunk
for float rounding). ``node_rad[v] = (lat rad, lon rad, cos lat)``.
Restricted roads (destination/private access, no through traffic): ``arc_f[a, 2]`` is an additive
cost (seconds, or metres in mode 2) paid on entering the arc's road edge from a node, never on the
source edge unless the route starts at its tail (a phantom endpoint on a junction; ``edge_f[e, 3]``);
labels include it (so a route uses such roads only where it cannot avoid them), it is
tracked per label in ``nd[v, 5]`` (traffic is read at the true clock time, label less entry costs) and
taken off the returned costs, which stay true travel costs. An
additive constant keeps FIFO, and labels only grow, so every bound above stays a lower bound.
Nodes are re-opened if a better label
appears (so tiny inconsistencies from rounding cannot cost exactness); labels are exact arrival times.

U-turns. Leaving a node by the reverse road edge of the one that entered it costs ``up_c`` (seconds, or
metres in mode 2), an additive cost like the restricted roads' (in the label and ``nd[v, 5]``, not in
the returned costs), except at a dead end (a node with one arc out: turning back is the only way on).
A turn cost makes the best label of a node not enough (the second best, by another road edge, may
leave back along the first one's edge without paying it), so each node holds two labels: slot A, the
best, and slot B, the best by another road edge. Only those two matter: any other arrival is beaten by
A on every arc but A's way back, and by B on that one. Slot B is kept only while it may pay (below A
plus the U-turn cost, and able to improve a label where the road back leads, see `_offer`), and when
settled relaxes that one arc. Heap entries and parents are states ``2 * node + slot``. With ``up_c =
0`` slot B is never used and the search is the plain node search.

Workspace (per thread, reused): dist/len/parent/h arrays are valid only where ``stamp == epoch``, so a
query never initialises whole-graph arrays. The 4-ary heap (lazy deletion) has a fixed capacity: when
it is full the kernel returns settled = -1 and the caller doubles it and reruns (growing inside the hot
loop cost about 30 % of the speed).
Before relaxing a node's arcs the kernel prefetches the heads' workspace rows and landmark rows (a hint
only: the heads are random in memory and those loads dominated the per-node cost).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

BIN = 900.0
DAY = 96
EARTH_R = 6371008.8  # must equal geo._coords.EARTH_RADIUS_M (checked by the router)
GEO_SHRINK = 1.0 - 1e-9  # float slack of the straight-line bound


@intrinsic
def _prefetch(typingctx, arr, i, j):
    """Hint the CPU to load the cache line holding arr[i, j] (2-D C-contiguous; no effect on results)."""

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], args[2]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, types.intp, types.intp), codegen


@njit(cache=True, nogil=True, inline="always")
def _cost(e, key, v0, t, d, mode, b0, table, lv_flag, lv, decay, any_lv=True):
    """Cost of driving d metres of road edge e (profile key, free-flow speed v0) entered at time t."""
    if mode == 2:
        return d
    if mode == 1 or d <= 0.0:
        return d / v0
    k = int(t // BIN)
    n_k = table.shape[0]
    tt = t
    rem = d
    has_live = any_lv and lv_flag[e] == 1
    while True:
        kk = k if k < n_k else n_k - DAY + (k - (n_k - DAY)) % DAY
        f = table[kk, key]
        if has_live:
            bb = b0 + k
            start = bb * BIN
            o = lv[e, 1]
            ob = math.floor(o / BIN)
            if ob <= bb and start < lv[e, 2]:
                w = 1.0
                if ob != bb:
                    w = 1.0 - (start - o) / decay
                    if w < 0.0:
                        w = 0.0
                f = w * lv[e, 0] + (1.0 - w) * f
        v = v0 * f
        end = (k + 1) * BIN
        cap = v * (end - tt)
        if rem <= cap:
            return tt + rem / v - t
        rem -= cap
        tt = end
        k += 1


@njit(cache=True, nogil=True, inline="always")
def _closed(e, t_abs, lv_flag, lv):
    return lv_flag[e] == 2 and t_abs < lv[e, 2] and math.floor(lv[e, 1] / BIN) * BIN <= t_abs


@njit(cache=True, nogil=True, inline="always")
def _heur(v, lmt, n_lm, act, t_from, t_to, margin):
    h = 0.0
    for q in range(act.shape[0]):
        lq = act[q]
        a1 = t_from[q] - lmt[v, lq]
        a2 = lmt[v, n_lm + lq] - t_to[q]
        if a1 > h:
            h = a1
        if a2 > h:
            h = a2
    h -= margin
    return h if h > 0.0 else 0.0


@njit(cache=True, nogil=True, inline="always")
def _heur_geo(v, node_rad, hg):
    """Distance bound: min over target variants j of haversine(v, tail_j) + offset_j (metres)."""
    p1 = node_rad[v, 0]
    l1 = node_rad[v, 1]
    c1 = node_rad[v, 2]
    h = np.inf
    for j in range(hg.shape[0]):
        sp = math.sin((hg[j, 0] - p1) * 0.5)
        sl = math.sin((hg[j, 1] - l1) * 0.5)
        a = sp * sp + c1 * hg[j, 2] * sl * sl
        if a > 1.0:
            a = 1.0
        d = 2.0 * EARTH_R * math.asin(math.sqrt(a)) * GEO_SHRINK + hg[j, 3]
        if d < h:
            h = d
    h -= 1e-6
    return h if h > 0.0 else 0.0


@njit(cache=True, nogil=True, inline="always")
def _key(lab, lb, win_h, win_f, per_h, per_s):
    """Lower bound of the arrival through a node with label `lab` and landmark bound `lb`.

    per_h < 0: `lb` bounds free-flow time (time windows apply). per_h >= 0: `lb` bounds the time under
    the period ceilings, valid for trips that end by per_h, and per_s * lb bounds free-flow time."""
    if per_h >= 0.0:
        kp = lab + lb
        if kp > per_h:
            kp = per_h
        lb = per_s * lb
    else:
        kp = -np.inf
    k = lab + lb
    for j in range(win_h.shape[0]):
        c = lab + lb / win_f[j]
        if c > win_h[j]:
            c = win_h[j]
        if c > k:
            k = c
    return k if k > kp else kp


@njit(cache=True, nogil=True, inline="always")
def _pen(e, pen_e):
    n = pen_e.shape[0]
    if n == 0:
        return False
    p = np.searchsorted(pen_e, e)
    return p < n and pen_e[p] == e


@njit(cache=True, nogil=True, inline="always")
def _push(heap, hn, key, v):
    """4-ary min-heap, entries interleaved: heap[2i] = key, heap[2i + 1] = node."""
    pos = hn
    while pos > 0:
        pp = (pos - 1) >> 2
        pk = heap[2 * pp]
        if pk <= key:
            break
        heap[2 * pos] = pk
        heap[2 * pos + 1] = heap[2 * pp + 1]
        pos = pp
    heap[2 * pos] = key
    heap[2 * pos + 1] = v


@njit(cache=True, nogil=True, inline="always")
def _pop_fix(heap, hn):
    """Move the last entry (index hn, already removed from the count) down from the root."""
    lk = heap[2 * hn]
    lvv = heap[2 * hn + 1]
    pos = 0
    while True:
        c = 4 * pos + 1
        if c >= hn:
            break
        bc = c
        bk = heap[2 * c]
        ce = c + 4 if c + 4 <= hn else hn
        for c2 in range(c + 1, ce):
            k2 = heap[2 * c2]
            if k2 < bk:
                bk = k2
                bc = c2
        if bk >= lk:
            break
        heap[2 * pos] = bk
        heap[2 * pos + 1] = heap[2 * bc + 1]
        pos = bc
    heap[2 * pos] = lk
    heap[2 * pos + 1] = lvv


@njit(cache=True, nogil=True, inline="always")
def _is_target(e, tg_edge, tg_bits):
    """Whether road edge e holds a target (`tg_bits`: bit e % 64 set for every target edge, a cheap
    first test)."""
    if (tg_bits >> (e & 63)) & 1 == 0:
        return False
    n = tg_edge.shape[0]
    if n == 0 or e < tg_edge[0] or e > tg_edge[n - 1]:
        return False
    j = np.searchsorted(tg_edge, e)
    return j < n and tg_edge[j] == e


@njit(cache=True, nogil=True)
def _b_pays(nl, back, offsets, edge_f, edge_head, up_c, nd, fep, mode, tg_edge, tg_bits):
    """Whether a slot-B label `nl` at a node whose slot A would turn back along road edge `back` can still
    lead anywhere: `back` holds a target, or driving it (at least its free-flow time) reaches its head
    below that head's slot-A label plus its U-turn cost (else it improves neither slot there). Labels
    only decrease, so a label refused once stays useless."""
    if _is_target(back, tg_edge, tg_bits):
        return True
    x = edge_head[back]
    if x < 0 or nd[x, 3] != fep:
        return True
    lb = edge_f[back, 0] if mode == 2 else edge_f[back, 0] / edge_f[back, 1]
    up = up_c if offsets[x + 1] - offsets[x] > 1 else 0.0
    return nl + lb < nd[x, 0] + up


@njit(cache=True, nogil=True)
def _offer(
    v, nl, ln, pn, e, turn, parent, tcap, offsets, up_c, edge_f, edge_head, mode, tg_edge, tg_bits, fep,
    nd, nb, par, heap, hn, win_h, win_f, per_h, per_s,
):  # fmt: skip
    """Offer label `nl` (length `ln`, entry costs `pn`) for arriving at node v by road edge e, whose
    reverse is `turn` (-1 none), from state `parent`. Returns the new heap size, -1 when the heap is full.

    Slot A keeps the best label. Slot B keeps the best by another road edge while it may still pay: it
    only serves to leave back along A's road edge (where A pays a U-turn, `up_c`, unless v is a dead
    end), and only when driving that road back can improve a label where it leads (`_b_pays`). Two
    arrivals count as by the same road edge when their reverses are equal (two one-way arrivals cannot
    U-turn, so neither needs slot B). nd[v, 7] caps what slot B may take: slot B's label, A's label
    plus `up_c`, and `tcap` of A's arc (the parent's label plus `up_c` less the least cost of driving
    back, a necessary condition of `_b_pays`; infinite when unknown or when the road back holds a
    target). `search` writes the common cases out in its loop (same road edge, or nothing for slot B)
    and calls this for the rest."""
    cap = heap.shape[0] // 2
    ft = float(turn)
    if turn >= 0 and tcap < np.inf and _is_target(turn, tg_edge, tg_bits):
        tcap = np.inf
    up = up_c if offsets[v + 1] - offsets[v] > 1 else 0.0
    if nl < nd[v, 0]:
        if hn + 1 >= cap:
            return -1
        old = nd[v, 0]
        bcap = min(nl + up_c, tcap)
        if ft == nd[v, 6]:
            bcap = min(bcap, nd[v, 7])
        elif (
            up > 0.0
            and turn >= 0
            and old < min(nl + up, tcap)
            and _b_pays(old, turn, offsets, edge_f, edge_head, up_c, nd, fep, mode, tg_edge, tg_bits)
        ):  # the old slot A becomes slot B
            nb[v, 0] = nd[v, 2]
            nb[v, 1] = nd[v, 4]
            nb[v, 2] = nd[v, 5]
            nb[v, 3] = old
            nb[v, 4] = ft
            par[v, 2] = par[v, 0]
            par[v, 3] = par[v, 1]
            _push(heap, hn, nb[v, 1], 2 * v + 1)
            hn += 1
            bcap = min(bcap, old)
        # (otherwise a slot B by another edge is void: `search` checks nb[v, 4] against nd[v, 6])
        nd[v, 0] = nl
        nd[v, 2] = ln
        nd[v, 5] = pn
        nd[v, 6] = ft
        nd[v, 7] = bcap
        par[v, 0] = parent
        par[v, 1] = e
        key = _key(nl, nd[v, 1], win_h, win_f, per_h, per_s)
        nd[v, 4] = key
        _push(heap, hn, key, 2 * v)
        return hn + 1
    if ft == nd[v, 6] or not nl < nd[v, 7]:
        return hn
    back = int(nd[v, 6])
    if (
        up > 0.0
        and nl < nd[v, 0] + up
        and back >= 0
        and _b_pays(nl, back, offsets, edge_f, edge_head, up_c, nd, fep, mode, tg_edge, tg_bits)
    ):
        if hn >= cap:
            return -1
        nb[v, 0] = ln
        nb[v, 1] = _key(nl, nd[v, 1], win_h, win_f, per_h, per_s)
        nb[v, 2] = pn
        nb[v, 3] = nl
        nb[v, 4] = nd[v, 6]
        par[v, 2] = parent
        par[v, 3] = e
        nd[v, 7] = nl  # slot B only takes better labels now
        _push(heap, hn, nb[v, 1], 2 * v + 1)
        return hn + 1
    return hn


@njit(cache=True, nogil=True)
def search(
    offsets,
    arc_i,
    arc_f,
    edge_f,
    edge_head,
    edge_rev,
    up_c,
    # traffic
    mode,
    b0,
    t0,
    t_abs,
    decay,
    table,
    lv_flag,
    lv,
    any_lv,
    # sources / targets
    src_edge,
    src_off,
    tg_edge,
    tg_off,
    tg_id,
    n_tg,
    # heuristic
    lmt,
    act,
    t_from,
    t_to,
    margin,
    win_h,
    win_f,
    per_h,
    per_s,
    node_rad,
    hg,
    # penalties (sorted road edge ids) and bound
    pen_e,
    pen_f,
    max_cost,
    # workspace
    nd,
    nb,
    par,
    epoch,
    heap,
    pend,
):
    """arc_i[a] = (head, road edge, profile key, reverse road edge or -1) int32; arc_f[a] = (length m,
    free-flow m/s, entry cost, least cost of driving the reverse road edge back to this arc's tail, -inf
    when it does not lead back to that very node); edge_f[e] = (length, speed, key); edge_rev[e] the reverse road edge (-1
    none); up_c the cost of a U-turn at a node with more than one arc out (free at a dead end); lv[e] = (factor, observed, expires) with lv_flag[e] 0 none,
    1 live factor, 2 closure (any_lv False: lv_flag is all 0 and is not read in the hot loop);
    nd[v] = (label A, h, length A, stamp, key A, entry costs A, reverse of road edge A, cap of slot B)
    and nb[v] = (length B, key B, entry costs B, label B, nd[v, 6] when B was set); par[v] = (parent state A, road edge A, parent state
    B, road edge B), a state being 2 * node + slot (slot 0 = A, 1 = B) and a seed's parent
    -(source variant + 1);
    heap: 4-ary, (key, state) interleaved, capacity heap.shape[0] // 2; pend: [largest out-degree, 7]
    scratch for the offers a node's relaxation leaves to `_offer`."""
    best = np.full(n_tg, np.inf)
    blen = np.full(n_tg, np.inf)
    bnode = np.full(n_tg, -2, np.int64)
    bvar = np.full(n_tg, -1, np.int64)
    bpen = np.zeros(n_tg)
    n_found = 0
    worst = np.inf
    start = t0 if mode != 2 else 0.0
    n_t = tg_edge.shape[0]
    tg_lo = tg_edge[0] if n_t > 0 else 0
    tg_hi = tg_edge[n_t - 1] if n_t > 0 else -1
    n_lm = lmt.shape[1] // 2
    n_geo = hg.shape[0]
    hn = 0
    settled = 0
    fep = float(epoch)
    tg_bits = 0
    for j in range(n_t):
        tg_bits |= 1 << (tg_edge[j] & 63)

    # direct candidates (source and target on the same road edge, target ahead)
    for i in range(src_edge.shape[0]):
        e = src_edge[i]
        for j in range(n_t):
            if tg_edge[j] == e and tg_off[j] >= src_off[i]:
                c = _cost(
                    e,
                    int(edge_f[e, 2]),
                    edge_f[e, 1],
                    start,
                    tg_off[j] - src_off[i],
                    mode,
                    b0,
                    table,
                    lv_flag,
                    lv,
                    decay,
                )
                if _pen(e, pen_e):
                    c *= pen_f
                ep = edge_f[e, 3] if src_off[i] == 0.0 else 0.0
                c += ep
                ti = tg_id[j]
                if start + c < best[ti]:
                    if best[ti] == np.inf:
                        n_found += 1
                    best[ti] = start + c
                    blen[ti] = tg_off[j] - src_off[i]
                    bpen[ti] = ep
                    bnode[ti] = -1
                    bvar[ti] = j * 65536 + i
    if n_found == n_tg and n_tg > 0:
        worst = best.max()

    # seeds: the head node of each source edge, after driving the rest of it
    for i in range(src_edge.shape[0]):
        e = src_edge[i]
        v = edge_head[e]
        if v < 0:
            continue
        rest = edge_f[e, 0] - src_off[i]
        c = _cost(e, int(edge_f[e, 2]), edge_f[e, 1], start, rest, mode, b0, table, lv_flag, lv, decay)
        if _pen(e, pen_e):
            c *= pen_f
        ep = edge_f[e, 3] if src_off[i] == 0.0 else 0.0
        nl = start + c + ep
        if nd[v, 3] != fep:
            nd[v, 3] = fep
            nd[v, 0] = np.inf
            nd[v, 6] = -1.0
            nd[v, 7] = np.inf
            nd[v, 1] = (
                _heur_geo(v, node_rad, hg) if n_geo > 0 else _heur(v, lmt, n_lm, act, t_from, t_to, margin)
            )
        hn = _offer(
            v, nl, rest, ep, e, edge_rev[e], -(i + 1), np.inf, offsets, up_c, edge_f, edge_head, mode, tg_edge,
            tg_bits, fep,
            nd, nb, par, heap, hn, win_h, win_f, per_h, per_s,
        )  # fmt: skip
        if hn < 0:
            return best, blen, bnode, bvar, -1

    while hn > 0:
        key = heap[0]
        s = int(heap[1])
        hn -= 1
        if hn > 0:
            _pop_fix(heap, hn)
        if key >= worst or key > max_cost:
            break
        u = s >> 1
        slot = s & 1
        if slot == 0:
            if key > nd[u, 4]:
                continue  # stale entry (nd[u, 4] is the key of the latest label)
            lu = nd[u, 0]
            du = nd[u, 2]
            pu = nd[u, 5]
            turn = int(nd[u, 6])  # leaving by it is a U-turn
            a_lo = offsets[u]
            a_hi = offsets[u + 1]
            up = up_c if a_hi - a_lo > 1 else 0.0
        else:
            if nb[u, 4] != nd[u, 6] or key > nb[u, 1]:
                continue  # slot B is void (A has changed road edge since), or a stale entry
            lu = nb[u, 3]
            du = nb[u, 0]
            pu = nb[u, 2]
            # slot B only pays where slot A would U-turn: the arc back along A's road edge
            back = int(nd[u, 6])
            a_lo = offsets[u + 1]
            a_hi = a_lo
            for a in range(offsets[u], offsets[u + 1]):
                if arc_i[a, 1] == back:
                    a_lo = a
                    a_hi = a + 1
                    break
            turn = -1
            up = 0.0
        settled += 1
        n_pend = 0
        if slot == 0:
            for a in range(a_lo, a_hi):
                w = arc_i[a, 0]
                _prefetch(nd, w, 0)  # type: ignore[call-arg]
                if n_geo == 0 and n_lm > 0:
                    _prefetch(lmt, w, 0)
                    _prefetch(lmt, w, n_lm)
        for a in range(a_lo, a_hi):
            e = arc_i[a, 1]
            if any_lv and lv_flag[e] == 2 and _closed(e, t_abs, lv_flag, lv):
                continue  # closed at departure
            pen = pen_f if _pen(e, pen_e) else 1.0
            ekey = arc_i[a, 2]
            v0 = arc_f[a, 1]
            ap = arc_f[a, 2]
            if e == turn:
                ap += up
            if tg_lo <= e <= tg_hi:
                j = np.searchsorted(tg_edge, e)
                while j < n_t and tg_edge[j] == e:
                    cand = (
                        lu
                        + pen
                        * _cost(e, ekey, v0, lu - pu, tg_off[j], mode, b0, table, lv_flag, lv, decay, any_lv)
                        + ap
                    )
                    ti = tg_id[j]
                    if cand < best[ti]:
                        if best[ti] == np.inf:
                            n_found += 1
                        best[ti] = cand
                        blen[ti] = du + tg_off[j]
                        bpen[ti] = pu + ap
                        bnode[ti] = s
                        bvar[ti] = j
                        if n_found == n_tg:
                            worst = best.max()
                    j += 1
            v = arc_i[a, 0]
            ln = arc_f[a, 0]
            nl = lu + pen * _cost(e, ekey, v0, lu - pu, ln, mode, b0, table, lv_flag, lv, decay, any_lv) + ap
            if nd[v, 3] != fep:
                nd[v, 3] = fep
                nd[v, 0] = np.inf
                nd[v, 6] = -1.0
                nd[v, 7] = np.inf
                nd[v, 1] = (
                    _heur_geo(v, node_rad, hg)
                    if n_geo > 0
                    else _heur(v, lmt, n_lm, act, t_from, t_to, margin)
                )
            # the common cases of `_offer` written out (as an inlined function it cost a third of the speed)
            rv = arc_i[a, 3]
            ft = float(rv)
            tcap = lu + up_c - arc_f[a, 3]
            if nl < nd[v, 0]:
                same = ft == nd[v, 6]
                if tcap < np.inf and rv >= 0 and _is_target(rv, tg_edge, tg_bits):
                    tcap = np.inf
                bcap = nl + up_c if nl + up_c < tcap else tcap
                if same or not nd[v, 0] < bcap:  # the same road edge, or the old A cannot be slot B
                    if hn >= heap.shape[0] // 2:
                        return best, blen, bnode, bvar, -1
                    if same and nd[v, 7] < bcap:
                        bcap = nd[v, 7]
                    nd[v, 0] = nl
                    nd[v, 2] = du + ln
                    nd[v, 5] = pu + ap
                    nd[v, 6] = ft
                    nd[v, 7] = bcap
                    par[v, 0] = s
                    par[v, 1] = e
                    key2 = _key(nl, nd[v, 1], win_h, win_f, per_h, per_s)
                    nd[v, 4] = key2
                    _push(heap, hn, key2, 2 * v)
                    hn += 1
                    continue
            elif ft == nd[v, 6] or not nl < nd[v, 7]:
                continue
            # the rest waits until this node's arcs are done (a call inside this loop slows all of it)
            pend[n_pend, 0] = v
            pend[n_pend, 1] = nl
            pend[n_pend, 2] = du + ln
            pend[n_pend, 3] = pu + ap
            pend[n_pend, 4] = e
            pend[n_pend, 5] = rv
            pend[n_pend, 6] = tcap
            n_pend += 1
        for k in range(n_pend):
            hn = _offer(
                int(pend[k, 0]), pend[k, 1], pend[k, 2], pend[k, 3], int(pend[k, 4]), int(pend[k, 5]), s,
                pend[k, 6], offsets, up_c, edge_f, edge_head, mode, tg_edge, tg_bits, fep, nd, nb, par, heap, hn,
                win_h, win_f, per_h, per_s,
            )  # fmt: skip
            if hn < 0:
                return best, blen, bnode, bvar, -1
    for ti in range(n_tg):
        if best[ti] < np.inf:
            best[ti] -= start + bpen[ti]
    return best, blen, bnode, bvar, settled


@njit(cache=True, nogil=True)
def trace(par, state):
    """Road edges from the source to `state` (2 * node + slot; slot 0 is the source edge) and the
    source variant."""
    n = 0
    s = state
    while par[s >> 1, 2 * (s & 1)] >= 0:
        n += 1
        s = par[s >> 1, 2 * (s & 1)]
    out = np.empty(n + 1, np.int64)
    s = state
    i = n
    while True:
        v = s >> 1
        k = 2 * (s & 1)
        out[i] = par[v, k + 1]
        p = par[v, k]
        if p < 0:
            return out, -p - 1
        i -= 1
        s = p


@njit(cache=True, nogil=True)
def path_times(edges, first_off, last_end, mode, b0, t0, decay, edge_f, table, lv_flag, lv):
    """Entry time of each edge of a path (relative to b0*900) and the arrival, as an array of n+1."""
    n = edges.shape[0]
    out = np.empty(n + 1)
    t = t0
    for i in range(n):
        e = edges[i]
        s = first_off if i == 0 else 0.0
        f = last_end if i == n - 1 else edge_f[e, 0]
        out[i] = t
        t += _cost(e, int(edge_f[e, 2]), edge_f[e, 1], t, f - s, mode, b0, table, lv_flag, lv, decay)
    out[n] = t
    return out


@njit(cache=True, nogil=True)
def landmark_bounds(src_head, tg_edge, tg_off, lmt, ceil, edge_tails, edge_tail_ptr, edge_heads, length, spd,
                    edge_class, k_max):  # fmt: skip
    """Active landmarks for a search (`Router._landmarks_for`): per landmark l of the node-major table
    `lmt` [n, 2L], Tf = min over the target edges' tails of from[l], Tt = max over their heads of to[l]
    plus the rest of the edge (free flow, over `ceil[class]` when `ceil` is not empty), the source's
    score max(Tf - from[l, s], to[l, s] - Tt); the `k_max` best (stable order, NaN last), their Tf and Tt,
    and the best score (NaN when any is). No target tails: empty arrays and 0."""
    nl = lmt.shape[1] // 2
    t_from = np.full(nl, np.inf)
    found = False
    for e in tg_edge:
        for p in range(edge_tail_ptr[e], edge_tail_ptr[e + 1]):
            found = True
            row = edge_tails[p]
            for li in range(nl):
                t_from[li] = min(t_from[li], np.float64(lmt[row, li]))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0), 0.0
    t_to = np.full(nl, -np.inf)
    for j in range(len(tg_edge)):
        e = tg_edge[j]
        rest = (length[e] - tg_off[j]) / spd[e]
        if len(ceil):
            rest = rest / ceil[edge_class[e]]
        for p in range(edge_tail_ptr[e], edge_tail_ptr[e + 1]):
            row = edge_heads[p]
            for li in range(nl):
                t_to[li] = max(t_to[li], np.float64(lmt[row, nl + li]) + rest)
    neg = np.empty(nl)  # -score, the sort key
    best = -np.inf
    for li in range(nl):
        a = t_from[li] - np.float64(lmt[src_head, li])
        b = np.float64(lmt[src_head, nl + li]) - t_to[li]
        sc = np.nan if (a != a or b != b) else max(a, b)
        neg[li] = -sc
        best = np.nan if (sc != sc or best != best) else max(best, sc)
    k = min(k_max, nl)
    act = np.empty(k, np.int64)
    taken = np.zeros(nl, np.bool_)
    for r in range(k):  # selection in stable ascending order of -score, NaN last
        pick = -1
        for li in range(nl):
            if taken[li]:
                continue
            if pick < 0:
                pick = li
                continue
            x, y = neg[li], neg[pick]
            if x == x and (y != y or x < y):  # a number before NaN, then ascending
                pick = li
        taken[pick] = True
        act[r] = pick
    return act, t_from[act].copy(), t_to[act].copy(), best
