"""`python -m ingest roads EXTRACT [--region NAME] [--no-db] [--no-progress]`.

Builds (or loads from the cache) the compiled road graph of EXTRACT with the region's speeds, prints a
summary, and replaces the region's rows of PostGIS road_edges (DATABASE_URL) unless --no-db.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import psycopg

from config import get_settings, load_region
from geo._errors import ExtractError
from geo._graph import CompiledGraph
from geo._graphcache import load_or_build
from ingest._cli import Commands, add_command, described
from store._road_edges import replace_road_edges


def add_parser(commands: Commands) -> None:
    p = add_command(
        commands,
        "roads",
        run,
        summary="build the compiled road graph of an OSM extract and load PostGIS road_edges",
        description=described(__doc__),
    )
    p.add_argument("extract", type=Path, help="OSM extract (.osm, .osm.gz, .osm.bz2, .osm.pbf)")
    p.add_argument("--region", default=None, help="region config name (default: the configured region)")
    p.add_argument("--no-db", action="store_true", help="build the graph cache only, do not write PostGIS")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def summary(g: CompiledGraph, seconds: float) -> str:
    """One line: nodes, edges, dropped references, restrictions, seconds, memory."""
    c = g.meta.get("counts", {})
    skipped = sum(v for k, v in c.items() if k.startswith("restrictions_skipped"))
    return (
        f"roads: {c.get('junctions', g.n_nodes)} junctions ({g.n_nodes} nodes with split copies), "
        f"{g.n_road_edges} road edges, {g.n_arcs} arcs; "
        f"dropped {c.get('missing_refs', 0)} missing node references, "
        f"{c.get('components', 1)} components kept ({c.get('junctions_outside_main', 0)} junctions outside the main one); "
        f"restrictions {c.get('restrictions_read', 0)} read, {c.get('restrictions_applied', 0)} applied, "
        f"{skipped} skipped; cache {g.meta.get('cache', '?')}; {seconds:.2f} s; "
        f"peak memory {g.meta.get('peak_memory_mb', 0):.0f} MB"
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    extract: Path = args.extract
    if not extract.is_file():
        print(f"roads: extract {extract} not found", file=sys.stderr)
        return 2
    try:
        region = load_region(args.region or settings.region, settings)
    except FileNotFoundError as exc:
        print(f"roads: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        g = load_or_build(
            extract,
            speeds_kmh=region.speeds_kmh,
            cache_dir=settings.graph_cache_dir,
            progress=not args.no_progress,
        )
    except ExtractError as exc:
        print(f"roads: {exc}", file=sys.stderr)
        return 2
    print(summary(g, time.perf_counter() - t0))
    if not args.no_db:
        with psycopg.connect(settings.database_url) as conn:
            n = replace_road_edges(conn, region.name, g)
        print(f"road_edges: {n} rows for region {region.name}")
    return 0
