"""Reading an OSM extract (.osm, .osm.gz, .osm.bz2, .osm.pbf) with pyosmium: drivable ways and turn restrictions.

Which ways are kept, in which direction, and which nodes block cars: the car profile of
`geo._access` (access hierarchy with directional variants, lists read as a whole, restricted
destination/private roads, construction, impassable and reversible ways, one-way keys, node barriers).
Service roads are kept, except `service=parking_aisle`, `driveway`, `drive-through` and
`emergency_access` (private or non-through access that would only add noise and dead ends).

Clipped extracts: a way that references nodes missing from the file is SPLIT at every missing node
(the runs of consecutive present nodes become separate pieces of the same way; a run of fewer than two
nodes is dropped). Splitting rather than skipping the missing nodes avoids inventing a straight
segment across the part of the road that lies outside the extract. The number of missing references
is reported as `missing_refs`.

Turn restrictions: relations `type=restriction` (or `type=restriction:motorcar`) whose
`restriction:motorcar` (preferred) or `restriction` value is in `RESTRICTION_VALUES`, unless `except`
lists motorcar / motor_vehicle / vehicle. `restrictions_read` counts those; `restriction_relations`
counts every restriction relation seen. Members: from/to ways, via node or via ways (compiled or
skipped in `geo._build`).

Vehicle limits (`geo._vehicle`): the maxheight/maxweight/maxwidth/maxlength and hgv keys of each kept
way are kept with its tags; nodes carrying a limit are collected in `node_limits`.

Garbage, truncated or unreadable files raise `ExtractError` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import osmium
from tqdm import tqdm

from geo._access import ALLOW, DENY, RESTRICT, directions, excluded, node_blocks
from geo._errors import ExtractError
from geo._graph import CLASS_INDEX
from geo._vehicle import NODE_LIMIT_KEYS, way_limits

EXTRACT_SUFFIXES = (".osm", ".osm.gz", ".osm.bz2", ".osm.pbf", ".pbf", ".osm.xml")
KEPT_TAGS = frozenset(
    {
        "highway",
        "name",
        "name:zh",
        "name:en",
        "lanes",
        "lanes:forward",
        "lanes:backward",
        "maxspeed",
        "maxspeed:forward",
        "maxspeed:backward",
        "oneway",
        "junction",
        "ref",
        "toll",
        "maxheight",
        "maxheight:physical",
        "maxweight",
        "maxwidth",
        "maxwidth:physical",
        "maxlength",
        "hgv",
        "hgv:forward",
        "hgv:backward",
    }
)
_SERVICE_EXCLUDED = frozenset({"parking_aisle", "driveway", "drive-through", "emergency_access"})
RESTRICTION_VALUES = frozenset(
    {
        "no_left_turn",
        "no_right_turn",
        "no_u_turn",
        "no_straight_on",
        "no_entry",
        "no_exit",
        "only_left_turn",
        "only_right_turn",
        "only_straight_on",
        "only_u_turn",
    }
)


@dataclass
class Restriction:
    """A turn restriction relation for motor cars. `kind` is 'no' or 'only'."""

    rel_id: int
    value: str
    from_ways: list[int]
    to_ways: list[int]
    via_nodes: list[int]
    via_ways: list[int]

    @property
    def kind(self) -> str:
        return "only" if self.value.startswith("only_") else "no"


@dataclass
class OsmRoads:
    """Drivable way pieces as flat arrays, plus per-way tags and the restrictions."""

    way_ids: list[int]  # OSM id of each kept way
    way_tags: list[dict[str, str]]  # the KEPT_TAGS of each kept way
    refs: np.ndarray  # int64: node ids of all pieces, concatenated
    lat: np.ndarray  # float64, same length
    lon: np.ndarray  # float64
    piece_offsets: np.ndarray  # int64 [pieces+1] into refs
    piece_way: np.ndarray  # int32 [pieces]: index into way_ids
    restrictions: list[Restriction]
    counts: dict[str, int] = field(default_factory=dict)
    way_oneway: list[int] = field(default_factory=list)  # per kept way: +1, -1 or 0 (`oneway_direction`)
    way_restricted: list[bool] = field(default_factory=list)  # destination/private: no through traffic
    blocked_nodes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # barriers (sorted)
    # nodes with a vehicle limit (height restrictor, low bridge as a node): id -> (h, w, width, length)
    node_limits: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)


def is_drivable(tags: dict[str, str]) -> bool:
    """Whether a way with these tags belongs to the motor-car network in some direction (`geo._access`)."""
    if tags.get("highway") not in CLASS_INDEX or excluded(tags):
        return False
    if tags.get("highway") == "service" and tags.get("service") in _SERVICE_EXCLUDED:
        return False
    return max(directions(tags)) > DENY


def oneway_direction(tags: dict[str, str]) -> int:
    """+1 drivable along the node order only, -1 against it only, 0 both ways (`geo._access`)."""
    fw, bw = directions(tags)
    if bw == DENY and fw > DENY:
        return 1
    if fw == DENY and bw > DENY:
        return -1
    return 0


def is_restricted(tags: dict[str, str]) -> bool:
    """Destination/private-like access in a drivable direction: no through traffic (`geo._access`)."""
    return RESTRICT in directions(tags) and ALLOW not in directions(tags)


def check_extract(path: Path) -> None:
    """Raise ExtractError unless `path` is a readable file with an OSM extension."""
    if not path.is_file():
        raise ExtractError(f"OSM extract {path} does not exist or is not a file")
    name = path.name.lower()
    if not name.endswith(EXTRACT_SUFFIXES):
        raise ExtractError(
            f"OSM extract {path}: unknown format (expected one of {', '.join(EXTRACT_SUFFIXES)})"
        )


def _restriction(rel: osmium.osm.Relation) -> Restriction | None:
    """The restriction for motor cars, None when the relation is none (or `except` exempts cars)."""
    tags = rel.tags
    if tags.get("type") not in ("restriction", "restriction:motorcar"):
        return None
    value = tags.get("restriction:motorcar") or tags.get("restriction")
    if value not in RESTRICTION_VALUES:
        return None
    exempt = {v.strip() for v in (tags.get("except") or "").split(";")}
    if exempt & {"motorcar", "motor_vehicle", "vehicle"}:
        return None
    r = Restriction(int(rel.id), str(value), [], [], [], [])
    for m in rel.members:
        if m.role == "from" and m.type == "w":
            r.from_ways.append(int(m.ref))
        elif m.role == "to" and m.type == "w":
            r.to_ways.append(int(m.ref))
        elif m.role == "via" and m.type == "n":
            r.via_nodes.append(int(m.ref))
        elif m.role == "via" and m.type == "w":
            r.via_ways.append(int(m.ref))
    return r


class _Collector:
    def __init__(self) -> None:
        self.way_ids: list[int] = []
        self.way_tags: list[dict[str, str]] = []
        self.refs: list[int] = []
        self.lat: list[float] = []
        self.lon: list[float] = []
        self.piece_offsets: list[int] = [0]
        self.piece_way: list[int] = []
        self.restrictions: list[Restriction] = []
        self.way_oneway: list[int] = []
        self.way_restricted: list[bool] = []
        self.blocked: list[int] = []
        self.node_limits: dict[int, tuple[float, float, float, float]] = {}
        self.counts = {
            "highway_ways": 0,
            "ways_kept": 0,
            "missing_refs": 0,
            "ways_with_missing_refs": 0,
            "restriction_relations": 0,  # every type=restriction relation, also those not for cars
        }

    def way(self, w: osmium.osm.Way) -> None:
        if "highway" not in w.tags:
            return
        self.counts["highway_ways"] += 1
        tags = {t.k: t.v for t in w.tags}
        if not is_drivable(tags):
            return
        widx = len(self.way_ids)
        run: list[tuple[int, float, float]] = []
        missing = 0
        for n in w.nodes:
            loc = n.location
            if not loc.valid():
                missing += 1
                self._flush(run, widx)
                run = []
                continue
            if run and run[-1][0] == n.ref:  # repeated consecutive node: a zero-length segment
                continue
            run.append((int(n.ref), loc.lat, loc.lon))
        self._flush(run, widx)
        if missing:
            self.counts["missing_refs"] += missing
            self.counts["ways_with_missing_refs"] += 1
        if len(self.piece_way) and self.piece_way[-1] == widx:
            self.way_ids.append(int(w.id))
            self.way_tags.append({k: v for k, v in tags.items() if k in KEPT_TAGS})
            self.way_oneway.append(oneway_direction(tags))
            self.way_restricted.append(is_restricted(tags))
            self.counts["ways_kept"] += 1

    def _flush(self, run: list[tuple[int, float, float]], widx: int) -> None:
        if len(run) < 2:
            return
        for ref, la, lo in run:
            self.refs.append(ref)
            self.lat.append(la)
            self.lon.append(lo)
        self.piece_offsets.append(len(self.refs))
        self.piece_way.append(widx)


def _objects(path: Path) -> Iterator[object]:
    try:
        yield from osmium.FileProcessor(str(path)).with_locations()
    except (RuntimeError, ValueError, OSError) as exc:
        raise ExtractError(f"cannot read OSM extract {path}: {exc}") from exc


def read_roads(path: Path, *, progress: bool = False) -> OsmRoads:
    """Read the drivable ways and the motor-car turn restrictions of an extract.

    Raises ExtractError when the file is missing, not an OSM file, or holds no drivable way.
    """
    path = Path(path)
    check_extract(path)
    col = _Collector()
    bar = tqdm(desc=f"reading {path.name}", unit=" obj", unit_scale=True, disable=not progress, leave=False)
    pending = 0
    for obj in _objects(path):
        pending += 1
        if pending == 50_000:
            bar.update(pending)
            pending = 0
        if isinstance(obj, osmium.osm.Node):
            if len(obj.tags):
                ntags = {t.k: t.v for t in obj.tags}
                if node_blocks(ntags):
                    col.blocked.append(int(obj.id))
                if any(k in ntags for k in NODE_LIMIT_KEYS):
                    col.node_limits[int(obj.id)] = way_limits(ntags)
        elif isinstance(obj, osmium.osm.Way):
            col.way(obj)
        elif isinstance(obj, osmium.osm.Relation):
            if str(obj.tags.get("type", "")).startswith("restriction"):
                col.counts["restriction_relations"] += 1
            r = _restriction(obj)
            if r is not None:
                col.restrictions.append(r)
    bar.update(pending)
    bar.close()
    if not col.way_ids:
        raise ExtractError(f"OSM extract {path} holds no drivable road (or is not an OSM file)")
    return OsmRoads(
        way_ids=col.way_ids,
        way_tags=col.way_tags,
        refs=np.asarray(col.refs, dtype=np.int64),
        lat=np.asarray(col.lat, dtype=np.float64),
        lon=np.asarray(col.lon, dtype=np.float64),
        piece_offsets=np.asarray(col.piece_offsets, dtype=np.int64),
        piece_way=np.asarray(col.piece_way, dtype=np.int32),
        restrictions=col.restrictions,
        counts=dict(col.counts, restrictions_read=len(col.restrictions), blocking_nodes=len(col.blocked)),
        way_oneway=col.way_oneway,
        way_restricted=col.way_restricted,
        blocked_nodes=np.unique(np.asarray(col.blocked, dtype=np.int64)),
        node_limits=col.node_limits,
    )
