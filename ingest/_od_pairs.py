"""`python -m ingest od-pairs EXTRACT --n N --seed S`: seeded origin-destination pairs on the drivable graph.

Each end is a random point ON a drivable road (a snapped-to-road point): a road edge of the compiled
graph is drawn with probability proportional to its length, then a point uniformly along its polyline.
Departure times are uniform in [depart_from, depart_to), whole minutes, in Asia/Shanghai. The same
extract (same compiled graph), N and seed always give the same file, so other engines (OSRM,
pgRouting, osmnx, ...) can be fed exactly the pairs our benchmarks use (`benchmarks` calls `od_pairs`).

Output (JSON): {"extract", "seed", "n", "tz", "bbox": [west, south, east, north] of the graph,
"depart_from", "depart_to", "pairs": [{"from": [lat, lon], "to": [lat, lon], "depart_at": ISO}]}.
Coordinates are WGS-84 rounded to 7 decimals (about 1 cm).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from geo._graph import CompiledGraph
from ingest._cli import Commands, add_command, described

TZ = ZoneInfo("Asia/Shanghai")
# A plain weekday in Lijiang (no holiday), morning to evening: rush hours included.
DEFAULT_FROM = datetime(2026, 3, 4, 6, 0, tzinfo=TZ)
DEFAULT_TO = datetime(2026, 3, 4, 22, 0, tzinfo=TZ)
NDIGITS = 7


@dataclass(frozen=True)
class OdPair:
    origin: tuple[float, float]  # (lat, lon) WGS-84
    destination: tuple[float, float]
    depart_at: datetime  # aware, Asia/Shanghai

    def as_json(self) -> dict[str, Any]:
        return {
            "from": [self.origin[0], self.origin[1]],
            "to": [self.destination[0], self.destination[1]],
            "depart_at": self.depart_at.isoformat(),
        }


def road_points(g: CompiledGraph, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 2] (lat, lon) of random points on road edges (edge chosen by length, uniform along it)."""
    if g.n_road_edges == 0:
        raise ValueError("the graph has no road edges")
    w = np.asarray(g.edge_length_m, dtype=np.float64)
    edges = rng.choice(g.n_road_edges, size=n, p=w / w.sum())
    fracs = rng.random(n)
    out = np.empty((n, 2))
    for i, (e, f) in enumerate(zip(edges.tolist(), fracs.tolist(), strict=True)):
        a, b = int(g.edge_geom_offsets[e]), int(g.edge_geom_offsets[e + 1])
        lat, lon = g.geom_lat[a:b], g.geom_lon[a:b]
        # metric length along the polyline (local equirectangular: fine within one edge)
        kx = math.cos(math.radians(float(lat[0])))
        seg = np.hypot(np.diff(lat), np.diff(lon) * kx)
        cum = np.concatenate(([0.0], np.cumsum(seg)))
        if cum[-1] <= 0:
            out[i] = (lat[0], lon[0])
            continue
        s = f * cum[-1]
        j = min(int(np.searchsorted(cum, s, side="right")) - 1, len(seg) - 1)
        t = (s - cum[j]) / seg[j] if seg[j] > 0 else 0.0
        out[i] = (lat[j] + t * (lat[j + 1] - lat[j]), lon[j] + t * (lon[j + 1] - lon[j]))
    return np.round(out, NDIGITS)


def od_pairs(
    g: CompiledGraph,
    n: int,
    *,
    seed: int,
    depart_from: datetime = DEFAULT_FROM,
    depart_to: datetime = DEFAULT_TO,
    min_distance_m: float = 0.0,
) -> list[OdPair]:
    """`n` seeded pairs of road points with departure times (see the module doc).

    `min_distance_m`: redraw a destination closer than this (straight line) to its origin (at most
    20 tries, then keep the last draw) so that benchmark routes are not trivially short.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if depart_from.tzinfo is None:
        depart_from = depart_from.replace(tzinfo=TZ)
    if depart_to.tzinfo is None:
        depart_to = depart_to.replace(tzinfo=TZ)
    span_min = int((depart_to - depart_from).total_seconds() // 60)
    if span_min <= 0:
        raise ValueError("depart_to must be at least a minute after depart_from")
    rng = np.random.default_rng(seed)
    orig = road_points(g, n, rng)
    dest = road_points(g, n, rng)
    if min_distance_m > 0 and n:
        for _ in range(20):
            d = _dist_m(orig, dest)
            short = np.flatnonzero(d < min_distance_m)
            if short.size == 0:
                break
            dest[short] = road_points(g, int(short.size), rng)
    minutes = rng.integers(0, span_min, n)
    start = depart_from.astimezone(TZ)
    return [
        OdPair(
            (float(orig[i, 0]), float(orig[i, 1])),
            (float(dest[i, 0]), float(dest[i, 1])),
            (start + timedelta(minutes=int(minutes[i]))).astimezone(TZ),
        )
        for i in range(n)
    ]


def _dist_m(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from geo._coords import haversine_m_array

    return np.asarray(haversine_m_array(a[:, 0], a[:, 1], b[:, 0], b[:, 1]))


def graph_bbox(g: CompiledGraph) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the graph's road geometry."""
    return (
        float(g.geom_lon.min()),
        float(g.geom_lat.min()),
        float(g.geom_lon.max()),
        float(g.geom_lat.max()),
    )


def document(
    g: CompiledGraph,
    pairs: list[OdPair],
    *,
    extract: str,
    seed: int,
    depart_from: datetime,
    depart_to: datetime,
) -> dict[str, Any]:
    return {
        "extract": extract,
        "seed": seed,
        "n": len(pairs),
        "tz": str(TZ),
        "bbox": [round(v, NDIGITS) for v in graph_bbox(g)],
        "depart_from": depart_from.isoformat(),
        "depart_to": depart_to.isoformat(),
        "pairs": [p.as_json() for p in pairs],
    }


def _iso(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=TZ) if dt.tzinfo is None else dt.astimezone(TZ)


def add_parser(commands: Commands) -> None:
    p = add_command(
        commands,
        "od-pairs",
        run,
        summary="write seeded origin-destination pairs on the drivable roads of an extract (JSON)",
        description=described(__doc__),
    )
    p.add_argument("extract", type=Path, help="OSM extract (.osm.pbf, .osm, .osm.gz, .osm.bz2)")
    p.add_argument("--n", type=int, required=True, help="number of pairs (>= 1)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=None, help="output file (default: stdout)")
    p.add_argument("--depart-from", type=_iso, default=DEFAULT_FROM, help="ISO-8601; naive = Asia/Shanghai")
    p.add_argument("--depart-to", type=_iso, default=DEFAULT_TO, help="ISO-8601; naive = Asia/Shanghai")
    p.add_argument("--min-distance-m", type=float, default=0.0)
    p.add_argument("--cache-dir", type=Path, default=None, help="compiled-graph cache (default: settings)")


def run(args: argparse.Namespace) -> int:
    if args.n < 1:
        print("od-pairs: --n must be at least 1", file=sys.stderr)
        return 2
    if args.depart_to - args.depart_from < timedelta(minutes=1):
        print("od-pairs: --depart-to must be at least a minute after --depart-from", file=sys.stderr)
        return 2
    if not args.extract.is_file():
        print(f"od-pairs: no extract at {args.extract}", file=sys.stderr)
        return 2
    from config import get_settings, load_region
    from geo import ExtractError
    from geo._graphcache import load_or_build

    settings = get_settings()
    speeds = load_region(settings.region, settings).speeds_kmh
    try:
        g = load_or_build(
            args.extract, speeds_kmh=speeds, cache_dir=args.cache_dir or settings.graph_cache_dir
        )
    except ExtractError as exc:
        print(f"od-pairs: {exc}", file=sys.stderr)
        return 2
    pairs = od_pairs(
        g, args.n, seed=args.seed, depart_from=args.depart_from, depart_to=args.depart_to,
        min_distance_m=args.min_distance_m,
    )  # fmt: skip
    doc = document(
        g,
        pairs,
        extract=args.extract.name,
        seed=args.seed,
        depart_from=args.depart_from,
        depart_to=args.depart_to,
    )
    text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"od-pairs: {len(pairs)} pairs -> {args.out}", file=sys.stderr)
    return 0


__all__ = ["OdPair", "document", "graph_bbox", "od_pairs", "road_points"]
