"""The compiled road graph: flat arrays (CSR by tail node), saved and loaded as one checksummed file.

Two id spaces:
- *road edges* (`edge_*` arrays, length `n_road_edges`): one per directed OSM segment between two
  junctions. Their index is the public edge id (API, traffic, PostGIS road_edges.id).
- *arcs* (`arc_*` arrays and the CSR, length `n_arcs`): what the router relaxes. Each arc is a copy of
  one road edge (`arc_edge`). Turn restrictions are compiled in by splitting the via node: an incoming
  road edge that has a restriction at its head node ends at a private copy of that node whose outgoing
  arcs are only the turns allowed from it. So a plain node-based search honours every restriction.
- Via-way restrictions (from edge f, via edges p1..pk, to edges T) split along the via path: f enters a
  private copy c0 of p1's tail; c0's arc along p1 leads to a private copy c1 of p1's head (not to the
  junction), c1's arc along p2 to a copy c2, ...; ck keeps every turn of its junction but the forbidden
  T (`no_*`) or only T (`only_*`). Every other arc of a copy leads where the road edge normally leads,
  and each copy also applies the via-node rules of the edge it was entered by. Paths sharing a prefix
  share its copies (a trie keyed by the edge sequence). So one road edge can have arcs with different
  heads; the arc leaving its tail junction (`node_base[tail] == tail`) is where a route starting on it goes.
- U-turns across a median (a one-way edge into a junction, then a one-way edge out of it in the
  opposite direction, within 30 degrees) are forbidden by the same splitting unless that is the
  junction's only exit (a dead end).

Nodes: `node_base` maps a split copy back to its junction (self for junctions); coordinates are WGS-84.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from geo._errors import GraphCacheError

# 2: edge_ref, edge_flags, geom_osm, refs (guidance: road numbers, roundabouts, tolls)
# 3: every component kept, car access profile (FLAG_RESTRICTED), node barriers as U-turn-only splits
# 4: vehicle limits per road edge (edge_limits, edge_hgv), via-way turn restrictions, median U-turns
FORMAT_VERSION = 4
_MAGIC = b"FUELGRAPH1\n"

# Road classes, in a fixed order: arrays store the index.
ROAD_CLASSES: tuple[str, ...] = (
    "motorway",
    "motorway_link",
    "trunk",
    "trunk_link",
    "primary",
    "primary_link",
    "secondary",
    "secondary_link",
    "tertiary",
    "tertiary_link",
    "unclassified",
    "residential",
    "living_street",
    "service",
    "road",
)
CLASS_INDEX = {name: i for i, name in enumerate(ROAD_CLASSES)}

# edge_flags bits (per way, so both directions of a segment share them)
FLAG_ROUNDABOUT = 1  # junction=roundabout or junction=circular
FLAG_CIRCULAR = 2  # junction=circular (a traffic circle: "rotary" in guidance)
FLAG_TOLL = 4  # toll=yes
FLAG_RESTRICTED = 8  # destination/private access: no through traffic (geo._access)


@dataclass
class CompiledGraph:
    # nodes (junctions first, then split copies)
    node_lat: np.ndarray  # float64 [n]
    node_lon: np.ndarray  # float64 [n]
    node_osm: np.ndarray  # int64 [n] OSM node id (a copy keeps its junction's id)
    node_base: np.ndarray  # int32 [n] junction index
    # CSR over arcs, grouped by tail node
    offsets: np.ndarray  # int32 (int64 past 2**31 arcs) [n+1]
    arc_head: np.ndarray  # int32 [n_arcs]
    arc_edge: np.ndarray  # int32 [n_arcs] road edge of each arc
    # road edges
    edge_u: np.ndarray  # int32 [m] tail junction
    edge_v: np.ndarray  # int32 [m] head junction
    edge_length_m: np.ndarray  # float64 [m]
    edge_speed_mps: np.ndarray  # float64 [m] free-flow speed
    edge_class: np.ndarray  # uint8 [m] index into ROAD_CLASSES
    edge_way: np.ndarray  # int64 [m] OSM way id
    edge_maxspeed_kmh: np.ndarray  # float32 [m], NaN when untagged/unparsable
    edge_lanes: np.ndarray  # int8 [m], 0 when untagged
    edge_name: np.ndarray  # int32 [m] index into names (-1: unnamed)
    # int32 (int64 past 2**31 points) [m+1] into geom_lat/geom_lon; a polyline includes both ends
    edge_geom_offsets: np.ndarray
    geom_lat: np.ndarray  # float64
    geom_lon: np.ndarray  # float64
    names: list[str]  # local name (zh where tagged)
    names_en: list[str]  # English name or ""
    # the opposite direction of the same OSM segment (int32 [m], -1 if one-way); empty = unknown
    edge_rev: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    # road number of each edge (OSM `ref`, e.g. "G214"): int32 [m] index into refs, -1 none; empty = unknown
    edge_ref: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    edge_flags: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))  # uint8 [m] FLAG_*
    geom_osm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # OSM node id per geom point
    # physical/legal limits per road edge, float32 [m, 4]: height m, weight t, width m, length m (inf: none)
    edge_limits: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    # goods-vehicle access per road edge (geo._access ALLOW 2, RESTRICT 1, DENY 0), uint8 [m]; empty = unknown
    edge_hgv: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    # landmarks for A* (ALT): free-flow travel times, seconds, float32 [L, n]
    lm_nodes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    lm_from: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    lm_to: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    meta: dict[str, Any] = field(default_factory=dict)
    refs: list[str] = field(default_factory=list)  # road numbers (edge_ref indexes)

    @property
    def n_nodes(self) -> int:
        return int(self.node_lat.shape[0])

    @property
    def n_arcs(self) -> int:
        return int(self.arc_head.shape[0])

    @property
    def n_road_edges(self) -> int:
        return int(self.edge_u.shape[0])

    @property
    def edge_freeflow_s(self) -> np.ndarray:
        return np.asarray(self.edge_length_m / self.edge_speed_mps)

    def edge_polyline(self, e: int) -> np.ndarray:
        """[[lat, lon], ...] of road edge `e`, tail to head."""
        a, b = int(self.edge_geom_offsets[e]), int(self.edge_geom_offsets[e + 1])
        return np.column_stack((self.geom_lat[a:b], self.geom_lon[a:b]))

    def nbytes(self) -> int:
        """Memory held by the arrays (names excluded)."""
        return int(
            sum(getattr(self, f.name).nbytes for f in fields(self) if _is_array(getattr(self, f.name)))
        )

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: Path) -> str:
        """Write atomically (temp file + rename); return the content checksum (sha256)."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if _is_array(getattr(self, f.name))}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        payload = buf.getvalue()
        header = json.dumps(
            {
                "format": FORMAT_VERSION,
                "sha256": hashlib.sha256(payload).hexdigest(),
                "size": len(payload),
                "names": self.names,
                "names_en": self.names_en,
                "refs": self.refs,
                "meta": self.meta,
            },
            ensure_ascii=False,
        ).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            fh.write(_MAGIC)
            fh.write(len(header).to_bytes(8, "little"))
            fh.write(header)
            fh.write(payload)
        os.replace(tmp, path)
        return hashlib.sha256(payload).hexdigest()

    @classmethod
    def load(cls, path: Path) -> CompiledGraph:
        """Load and verify; raises GraphCacheError when the file is missing, truncated or corrupt."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise GraphCacheError(f"graph cache {path} unreadable: {exc}") from exc
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
            raise GraphCacheError(f"graph cache {path} is not a compiled graph (bad magic)")
        pos = len(_MAGIC)
        hlen = int.from_bytes(data[pos : pos + 8], "little")
        pos += 8
        try:
            header = json.loads(data[pos : pos + hlen])
        except ValueError as exc:
            raise GraphCacheError(f"graph cache {path} has a corrupt header") from exc
        payload = data[pos + hlen :]
        if header.get("format") != FORMAT_VERSION:
            raise GraphCacheError(
                f"graph cache {path} has format {header.get('format')}, want {FORMAT_VERSION}"
            )
        if len(payload) != header.get("size") or hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise GraphCacheError(f"graph cache {path} is truncated or corrupt (checksum mismatch)")
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return cls(
            **arrays,
            names=header["names"],
            names_en=header["names_en"],
            meta=header["meta"],
            refs=header.get("refs", []),
        )


def _is_array(value: object) -> bool:
    return isinstance(value, np.ndarray)
