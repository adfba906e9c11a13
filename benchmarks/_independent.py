"""An independent routing engine on the same extract, and the explanation of every disagreement.

The other engine is osmnx as its users run it: the extract's ways that pass osmnx's own network filter
(`drive`: the Overpass filter osmnx sends when it downloads, evaluated here tag by tag) are written to
plain .osm XML with pyosmium, and `ox.graph_from_xml` builds the graph (its one-way rules, its largest
weakly connected component, its `simplify_graph`, its great-circle lengths). Nothing of our graph goes
into it. Routes: `nx.shortest_path` by `length` on osmnx's graph; ours: `Router.route(metric="distance")`.

A disagreement (lengths more than `TOL` apart, or a path on one side only) is explained by the first
thing on the SHORTER side's path that the longer side may not use:
- component: one side has no path (the node is outside a kept component, or cut off by a one-way);
- barrier: a node we block (barrier tags) on osmnx's path (osmnx reads no barriers);
- policy: a way one side drives and the other does not (or not in that direction, or not through:
  destination/private), named with its tags;
- turn restriction: osmnx's path makes a turn a restriction relation bans (osmnx reads none);
- u-turn across a median: osmnx's path turns from a one-way way back onto an opposite one-way way at a
  junction that is not a dead end, which our graph refuses (`geo._build.is_median_u_turn`; osmnx has
  no such rule);
- clipped way: osmnx joins the remaining nodes of a way cut at the extract edge, we split it;
- other: none of these (a finding to look at).
Restrictions through via ways are matched run by run (`first_banned_turn`: the from way, every via way,
then the to way), as our graph applies them. The U-turn cost (`FUEL_ROUTE_U_TURN_PENALTY_S`, in metres
x 10 m/s for these distance routes) needs no class of its own: osmnx's shortest paths are simple paths
(they never turn back onto the road just driven), so wherever our graph can drive osmnx's path it finds
one at most as long without a U-turn; ours turns back only where something else forbids osmnx's path
(a restriction, a one-way, a barrier), and that is the class given.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from geo._build import is_median_u_turn, segment_bearing
from geo._errors import RouteNotFound
from geo._graph import CompiledGraph
from geo._osm import OsmRoads, Restriction, read_roads
from geo._router import Router

TOL = 0.01  # 1 %: beyond this the two engines disagree
CLASSES = (
    "component", "barrier", "policy", "turn restriction", "u-turn across a median", "clipped way", "other",
)  # fmt: skip
_CLAUSE = re.compile(r'\["([^"]+)"(?:(!?~)"([^"]*)")?\]')

Clause = tuple[str, str, "re.Pattern[str] | None"]


# ---- osmnx's network filter, evaluated on tags ---------------------------------------------------
def parse_overpass_filter(text: str) -> list[Clause]:
    """The clauses of an Overpass way filter such as osmnx builds: `["k"]` (key present), `["k"~"re"]`,
    `["k"!~"re"]` (no such key, or a value the regex does not match)."""
    out: list[Clause] = []
    pos = 0
    for m in _CLAUSE.finditer(text):
        if text[pos : m.start()].strip():
            raise ValueError(f"unsupported Overpass filter syntax: {text[pos : m.start()]!r}")
        key, op, rx = m.group(1), m.group(2) or "", m.group(3)
        out.append((key, op, re.compile(rx) if rx is not None else None))
        pos = m.end()
    if text[pos:].strip():
        raise ValueError(f"unsupported Overpass filter syntax: {text[pos:]!r}")
    return out


def filter_matches(clauses: Sequence[Clause], tags: dict[str, str]) -> bool:
    """Whether a way with `tags` passes every clause (Overpass semantics: unanchored regex search)."""
    for key, op, rx in clauses:
        value = tags.get(key)
        if op == "":
            if value is None:
                return False
        elif op == "~":
            if value is None or rx is None or not rx.search(value):
                return False
        elif value is not None and rx is not None and rx.search(value):  # "!~"
            return False
    return True


def osmnx_filter(network_type: str = "drive") -> list[Clause]:
    """osmnx's own way filter for `network_type` (the one it sends to Overpass), parsed."""
    from osmnx import _overpass

    return parse_overpass_filter(_overpass._get_network_filter(network_type))


# ---- the extract, read once ----------------------------------------------------------------------
@dataclass
class ExtractWays:
    """The extract's highway ways (tags, node refs) and which of them pass osmnx's filter."""

    tags: dict[int, dict[str, str]]
    refs: dict[int, list[int]]
    kept: set[int]  # ways that pass the filter, written for osmnx
    node_tags: dict[int, dict[str, str]] = field(default_factory=dict)  # tagged nodes of highway ways


def write_osmnx_xml(extract: Path, out: Path, clauses: Sequence[Clause]) -> ExtractWays:
    """Write the ways of `extract` (any format pyosmium reads) that pass `clauses`, and their nodes, as
    plain .osm XML (the format `ox.graph_from_xml` reads); return what the explanations need."""
    import osmium

    tags: dict[int, dict[str, str]] = {}
    refs: dict[int, list[int]] = {}
    kept: set[int] = set()
    for w in osmium.FileProcessor(str(extract), osmium.osm.WAY):
        t = {x.k: x.v for x in w.tags}
        if "highway" not in t:
            continue
        tags[w.id] = t
        refs[w.id] = [n.ref for n in w.nodes]  # type: ignore[union-attr]
        if filter_matches(clauses, t):
            kept.add(w.id)
    keep_nodes = {n for w in kept for n in refs[w]}
    road_nodes = {n for r in refs.values() for n in r}
    node_tags: dict[int, dict[str, str]] = {}
    if out.exists():
        out.unlink()
    with osmium.SimpleWriter(str(out)) as wr:
        for obj in osmium.FileProcessor(str(extract), osmium.osm.NODE | osmium.osm.WAY):
            if isinstance(obj, osmium.osm.Node):
                if obj.id in road_nodes and len(obj.tags):
                    node_tags[obj.id] = {x.k: x.v for x in obj.tags}
                if obj.id in keep_nodes:
                    wr.add_node(obj)
            elif obj.id in kept:
                wr.add_way(obj)
    return ExtractWays(tags=tags, refs=refs, kept=kept, node_tags=node_tags)


def osmnx_graphs(xml: Path) -> tuple[Any, Any]:
    """(G, G_full): osmnx's graph as `graph_from_xml(xml)` returns it (largest weakly connected component,
    simplified), and the same graph before `simplify_graph` (every OSM node: the explanations' paths)."""
    import osmnx as ox

    full = ox.graph_from_xml(xml, simplify=False, retain_all=False)
    return ox.simplify_graph(full), full


# ---- our graph's segments ------------------------------------------------------------------------
@dataclass
class OurNetwork:
    """Our graph as directed OSM node segments (for 'does our graph drive u -> v'), with their ways."""

    seg_way: dict[tuple[int, int], int]
    restricted_ways: set[int]  # destination/private: no through traffic
    blocked: set[int]  # nodes whose barrier tags block cars
    restrictions: list[Restriction]
    coords: dict[int, tuple[float, float]] = field(default_factory=dict)  # OSM node -> (lat, lon)
    exits: dict[int, int] = field(default_factory=dict)  # OSM node -> segments leaving it

    def one_way(self, a: int, b: int) -> bool:
        """Whether our graph drives the segment a -> b of its way only in that direction."""
        w = self.seg_way.get((a, b))
        return w is not None and self.seg_way.get((b, a)) != w

    @classmethod
    def of(cls, g: CompiledGraph, roads: OsmRoads) -> OurNetwork:
        off = np.asarray(g.edge_geom_offsets, np.int64)
        lengths = np.diff(off)
        osm = np.asarray(g.geom_osm, np.int64)
        head = np.ones(len(osm), bool)
        head[off[1:] - 1] = False  # the last point of each polyline starts no segment
        idx = np.flatnonzero(head[:-1]) if len(osm) else np.zeros(0, np.int64)
        way = np.repeat(np.asarray(g.edge_way, np.int64), lengths)
        seg_way = {
            (a, b): w
            for a, b, w in zip(osm[idx].tolist(), osm[idx + 1].tolist(), way[idx].tolist(), strict=True)
            if a != b
        }
        restricted = {w for w, r in zip(roads.way_ids, roads.way_restricted, strict=False) if r}
        lat, lon = np.asarray(g.geom_lat).tolist(), np.asarray(g.geom_lon).tolist()
        return cls(
            seg_way=seg_way,
            restricted_ways=restricted,
            blocked=set(roads.blocked_nodes.tolist()),
            restrictions=list(roads.restrictions),
            coords=dict(zip(osm.tolist(), zip(lat, lon, strict=True), strict=True)),
            exits=dict(Counter(a for a, _ in seg_way)),
        )


# ---- one pair ------------------------------------------------------------------------------------
@dataclass
class Verdict:
    cls: str | None  # None: the engines agree
    shorter: str  # "ours", "osmnx", "equal" or "-" (a side has no path)
    rel_diff: float
    detail: str = ""
    subject: str = ""  # what explains it: "way 123", "node 45", "relation 6"


def rel_difference(ours: float, theirs: float) -> float:
    """|ours - theirs| / the shorter one; inf when exactly one side has no path, 0 when neither has."""
    if ours == theirs:
        return 0.0
    if not (math.isfinite(ours) and math.isfinite(theirs)):
        return math.inf
    return abs(ours - theirs) / max(min(ours, theirs), 1e-9)


def dedupe(nodes: Iterable[int]) -> list[int]:
    out: list[int] = []
    for n in nodes:
        if not out or out[-1] != n:
            out.append(n)
    return out


def explain(
    ours_m: float,
    theirs_m: float,
    our_nodes: Sequence[int],
    their_nodes: Sequence[int],
    their_ways: Sequence[int],
    net: OurNetwork,
    their_segments: set[tuple[int, int]],
    ways: ExtractWays,
    *,
    tol: float = TOL,
) -> Verdict:
    """Agreement, or the class of the disagreement between our route (`our_nodes`: its OSM node
    sequence) and osmnx's (`their_nodes`, `their_ways`[i] the way of segment i)."""
    rd = rel_difference(ours_m, theirs_m)
    if not math.isfinite(ours_m) or not math.isfinite(theirs_m):
        if not math.isfinite(ours_m) and not math.isfinite(theirs_m):
            return Verdict(None, "-", 0.0)
        side = "ours" if not math.isfinite(ours_m) else "osmnx"
        detail, subject = f"no path in {side}", f"no path in {side}"
        if side == "ours" and their_nodes:  # what on osmnx's path cuts it off for us
            _, why, subject = _why_osmnx_shorter(list(their_nodes), list(their_ways), net, ways)
            detail += f", cut off by {why}" if why else ""
        elif side == "osmnx" and our_nodes:
            _, why, subject = _why_ours_shorter(list(our_nodes), net, their_segments, ways)
            detail += f", cut off by {why}" if why else ""
        return Verdict("component", "-", rd, detail, subject or detail)
    shorter = "equal" if ours_m == theirs_m else ("ours" if ours_m < theirs_m else "osmnx")
    if rd <= tol:
        return Verdict(None, shorter, rd)
    if shorter == "osmnx":
        cls, detail, subject = _why_osmnx_shorter(list(their_nodes), list(their_ways), net, ways)
    else:
        cls, detail, subject = _why_ours_shorter(list(our_nodes), net, their_segments, ways)
    return Verdict(cls, shorter, rd, detail, subject)


def _tags(ways: ExtractWays, w: int) -> str:
    t = ways.tags.get(w, {})
    keys = ("highway", "construction", "access", "motor_vehicle", "motorcar", "vehicle", "bus", "psv", "service",
            "oneway", "junction", "area")  # fmt: skip
    return f"way {w} " + ",".join(f"{k}={t[k]}" for k in keys if k in t)


def _why_osmnx_shorter(
    nodes: list[int], wayseq: list[int], net: OurNetwork, ways: ExtractWays
) -> tuple[str, str, str]:
    for n in nodes[1:-1]:
        if n in net.blocked:
            t = ways.node_tags.get(n, {})
            return (
                "barrier",
                f"node {n} " + ",".join(f"{k}={v}" for k, v in t.items() if k != "name"),
                f"node {n}",
            )
    for (a, b), w in zip(itertools.pairwise(nodes), wayseq, strict=False):
        if (a, b) in net.seg_way:
            continue
        refs = ways.refs.get(w, [])
        consecutive = any((x, y) in ((a, b), (b, a)) for x, y in itertools.pairwise(refs))
        if not consecutive and w in ways.refs:
            return "clipped way", f"{_tags(ways, w)}: osmnx joins {a}-{b} across missing nodes", f"way {w}"
        how = "we drive it only the other way" if (b, a) in net.seg_way else "not in our graph"
        return "policy", f"{_tags(ways, w)} ({how})", f"way {w}"
    for w in dedupe(wayseq)[1:-1]:
        if w in net.restricted_ways:
            return "policy", f"{_tags(ways, w)} (destination/private: no through traffic in ours)", f"way {w}"
    banned = first_banned_turn(nodes, wayseq, net.restrictions)
    if banned is not None:
        return "turn restriction", banned, banned.split(" (")[0]
    u_turn = first_median_u_turn(nodes, wayseq, net)
    if u_turn is not None:
        return "u-turn across a median", u_turn, u_turn.split(":")[0]
    return "other", "", ""


def _why_ours_shorter(
    nodes: list[int], net: OurNetwork, their_segments: set[tuple[int, int]], ways: ExtractWays
) -> tuple[str, str, str]:
    for a, b in itertools.pairwise(nodes):
        if (a, b) in their_segments:
            continue
        w = net.seg_way.get((a, b), -1)
        if w in ways.kept and (b, a) not in their_segments:
            return (
                "component",
                f"{_tags(ways, w)} passes osmnx's filter, outside its largest component",
                f"way {w}",
            )
        how = "osmnx drives it only the other way" if (b, a) in their_segments else "osmnx's filter drops it"
        return "policy", f"{_tags(ways, w)} ({how})", f"way {w}"
    return "other", "", ""


def first_banned_turn(
    nodes: Sequence[int], wayseq: Sequence[int], restrictions: Sequence[Restriction]
) -> str | None:
    """The first turn of the path (node sequence, way per segment) that a restriction bans, described."""
    turns = [(wayseq[i - 1], nodes[i], wayseq[i]) for i in range(1, len(nodes) - 1)]
    runs = dedupe(wayseq)
    for r in restrictions:
        if r.via_nodes:
            via = set(r.via_nodes)
            for fw, n, tw in turns:
                if n not in via or fw not in r.from_ways or fw == tw:
                    continue
                if (r.kind == "no") == (tw in r.to_ways):
                    return f"relation {r.rel_id} ({r.value}): way {fw} -> node {n} -> way {tw}"
        elif r.via_ways:
            for i, w in enumerate(runs):
                if w not in r.from_ways:
                    continue
                j = i + 1
                while j < len(runs) and runs[j] in r.via_ways:
                    j += 1
                if j >= len(runs) or set(runs[i + 1 : j]) != set(r.via_ways):
                    continue  # our graph applies it only after every via way
                if (r.kind == "no") == (runs[j] in r.to_ways):
                    return f"relation {r.rel_id} ({r.value}): way {w} -> via ways -> way {runs[j]}"
    return None


def first_median_u_turn(nodes: Sequence[int], wayseq: Sequence[int], net: OurNetwork) -> str | None:
    """The first turn of the path (node sequence, way per segment) from a way we drive one-way onto
    another such way that our graph refuses as a U-turn across a median (`is_median_u_turn`, on the
    same segment headings and the same count of ways on at the junction), described."""
    for i in range(1, len(nodes) - 1):
        p, n, q = nodes[i - 1], nodes[i], nodes[i + 1]
        fw, tw = wayseq[i - 1], wayseq[i]
        if fw == tw or not (net.one_way(p, n) and net.one_way(n, q)):
            continue
        if p not in net.coords or n not in net.coords or q not in net.coords:
            continue
        arrive = float(segment_bearing(*net.coords[p], *net.coords[n]))
        leave = float(segment_bearing(*net.coords[n], *net.coords[q]))
        if is_median_u_turn(arrive, leave, net.exits.get(n, 0)):
            turn = abs((leave - arrive + 180.0) % 360.0 - 180.0)
            return f"node {n}: way {fw} -> way {tw}, both one-way, heading turned {turn:.0f} deg"
    return None


def their_path_ways(G_full: Any, nodes: Sequence[int]) -> list[int]:
    """The OSM way of each segment of an osmnx path (the shortest parallel edge's `osmid`)."""
    out = []
    for a, b in itertools.pairwise(nodes):
        data = min(G_full[a][b].values(), key=lambda d: d.get("length", 0.0))
        osmid = data.get("osmid")
        out.append(int(osmid[0] if isinstance(osmid, list) else osmid))
    return out


# ---- one extract ---------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Our router and osmnx's graph of the same extract, ready to compare routes between OSM nodes."""

    r: Router
    G: Any  # osmnx's graph as its users get it (simplified)
    G_full: Any  # before simplification: paths with every OSM node
    net: OurNetwork
    their_segments: set[tuple[int, int]]
    ways: ExtractWays

    @classmethod
    def build(cls, extract: Path, r: Router, xml: Path, *, network_type: str = "drive") -> Comparison:
        """osmnx's graph from `extract` (its `network_type` filter, written to `xml` first) beside `r`,
        our router on the same extract."""
        ways = write_osmnx_xml(extract, xml, osmnx_filter(network_type))
        G, G_full = osmnx_graphs(xml)
        net = OurNetwork.of(r.g, read_roads(extract))
        return cls(r=r, G=G, G_full=G_full, net=net, their_segments=set(G_full.edges()), ways=ways)

    def common(self, junctions: Iterable[int]) -> list[int]:
        """The junctions (our node indices) whose OSM node is also a node of osmnx's graph."""
        osm = self.r.g.node_osm
        return [int(j) for j in junctions if int(osm[j]) in self.G]

    def compare(self, a: int, b: int, depart_at: datetime) -> tuple[float, float, Verdict]:
        """(ours m, osmnx m, verdict) for the shortest-distance routes between our junctions a and b."""
        import networkx as nx

        g = self.r.g
        oa, ob = int(g.node_osm[a]), int(g.node_osm[b])
        try:
            res = self.r.route(
                (float(g.node_lat[a]), float(g.node_lon[a])),
                (float(g.node_lat[b]), float(g.node_lon[b])),
                depart_at=depart_at,
                metric="distance",
                steps=False,
            )
            ours = res.distance_m
        except RouteNotFound:
            res, ours = None, math.inf
        try:
            theirs = float(nx.shortest_path_length(self.G, oa, ob, weight="length"))
        except nx.NetworkXNoPath:
            theirs = math.inf
        our_nodes: list[int] = []
        their_nodes: list[int] = []
        if rel_difference(ours, theirs) > TOL:
            if res is not None:
                our_nodes = dedupe(int(x) for x in g.geom_osm[np.asarray(res.vertices, np.int64)])
            if math.isfinite(theirs):
                their_nodes = [int(x) for x in nx.shortest_path(self.G_full, oa, ob, weight="length")]
        verdict = explain(
            ours, theirs, our_nodes, their_nodes, their_path_ways(self.G_full, their_nodes),
            self.net, self.their_segments, self.ways,
        )  # fmt: skip
        return ours, theirs, verdict
