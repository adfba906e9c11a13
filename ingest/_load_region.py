"""`python -m ingest load-region`: make the served region ready in one atomic, idempotent step.

Builds (or loads from cache) the compiled road graph, then in ONE transaction: loads the official
price ceilings, replaces the region's road_edges when the graph changed, upserts the extract's
amenity=fuel stations (those without addr:* tags get the nearest named road of road_edges as their
address) and, for the demo region, seeds demo prices and promotions. A second run on
the same database changes nothing and takes about a second (cache hit, road edges unchanged).

Ceilings, stations, prices and promotions go through the audited, plausibility-checked writes with the
actor `load-region:<region>`; a station field the manager API set is never overwritten (the extract
updates only the fields OSM still owns).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from config import Settings, get_settings, resolve_served_region
from config import load_region as load_region_config
from geo import ExtractError
from geo._graphcache import graph_identity, load_or_build
from geo._plausible import PlausibilityRules
from ingest._cli import Commands, add_command, described
from ingest._demo import seed_demo
from ingest._guidance import load_guidance_file
from ingest._osm_stations import read_fuel_stations, with_road_addresses
from store._road_edges import replace_road_edges
from store._stations import upsert_stations


def load_region_data(
    settings: Settings, *, region_name: str, extract: Path, demo: bool = False, progress: bool = True
) -> dict[str, Any]:
    region = load_region_config(region_name, settings)
    actor = f"load-region:{region.name}"
    rules = PlausibilityRules.from_settings(settings)
    t0 = time.perf_counter()
    g = load_or_build(
        extract, speeds_kmh=region.speeds_kmh, cache_dir=settings.graph_cache_dir, progress=progress
    )
    graph_id = graph_identity(g.meta)
    stations = [
        s
        for s in read_fuel_stations(extract, default_grades=region.default_grades)
        if region.contains(s.lat, s.lon)
    ]
    summary: dict[str, Any] = {
        "region": region.name,
        "extract": str(extract),
        "graph": g.meta.get("cache", "?"),
        "nodes": g.n_nodes,
        "road_edges": g.n_road_edges,
    }
    guidance = settings.shared_data_dir / "prices" / "yunnan_guidance_prices.json"
    with psycopg.connect(settings.database_url) as conn, conn.transaction():
        conn.execute("SELECT set_config('TimeZone', %s, true)", (region.timezone,))  # times in messages
        if guidance.is_file():
            loaded = load_guidance_file(conn, guidance, actor=actor, zone=region.price_zone, rules=rules)
            summary["ceilings"] = (loaded.total, loaded.changed)
            summary["future_prices_removed"] = len(loaded.removed)
        row = conn.execute(
            "SELECT graph_hash FROM regions_loaded WHERE region = %s", (region.name,)
        ).fetchone()
        if row is None or row[0] != graph_id:
            summary["road_edges_written"] = replace_road_edges(conn, region.name, g)
        else:
            summary["road_edges_written"] = 0
        # a station without addr:* tags is shown on its nearest named road (found once, here)
        stations = with_road_addresses(conn, region.name, stations)
        counts = upsert_stations(conn, stations, actor=actor)
        summary["stations"] = {
            "inserted": counts.inserted,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
        }
        if demo:
            demo_summary = seed_demo(conn, region, now=datetime.now(region.tz), actor=actor, rules=rules)
            summary["demo_prices_written"] = demo_summary.prices_written
            summary["demo_promotions_written"] = demo_summary.promotions_written
            summary["demo_pumps_written"] = demo_summary.pumps_written
        conn.execute(
            "INSERT INTO regions_loaded (region, extract_path, extract_hash, graph_hash, stations, edges, loaded_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, now())"
            " ON CONFLICT (region) DO UPDATE SET extract_path = EXCLUDED.extract_path,"
            " extract_hash = EXCLUDED.extract_hash, graph_hash = EXCLUDED.graph_hash,"
            " stations = EXCLUDED.stations, edges = EXCLUDED.edges,"
            " loaded_at = CASE WHEN regions_loaded.graph_hash = EXCLUDED.graph_hash"
            " AND regions_loaded.stations = EXCLUDED.stations THEN regions_loaded.loaded_at ELSE now() END",
            (
                region.name,
                str(extract),
                str(g.meta.get("extract_sha256", "")),
                graph_id,
                len(stations),
                g.n_road_edges,
            ),
        )
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def load_region(
    settings: Settings, *, region_name: str, extract: Path, progress: bool = True, demo: bool = False
) -> dict[str, Any]:
    """Entry point for other tools (fetch-region): build and load `region_name` from `extract`."""
    return load_region_data(settings, region_name=region_name, extract=extract, demo=demo, progress=progress)


def add_parser(commands: Commands) -> None:
    p = add_command(
        commands,
        "load-region",
        run,
        summary="make the served region ready: road graph, road_edges, ceilings, stations (idempotent)",
        description=described(__doc__),
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    served = resolve_served_region(settings)
    if served.is_demo:
        print(served.note, flush=True)
    if served.extract is None or not served.extract.is_file():
        print(f"load-region: no extract to load ({served.note})", file=sys.stderr)
        return 2
    try:
        summary = load_region_data(
            settings,
            region_name=served.region.name,
            extract=served.extract,
            demo=served.is_demo,
            progress=not args.no_progress,
        )
    except ExtractError as exc:
        print(f"load-region: {exc}", file=sys.stderr)
        return 2
    st = summary["stations"]
    print(
        f"region {summary['region']} ready: graph {summary['graph']} ({summary['nodes']} nodes, "
        f"{summary['road_edges']} road edges, {summary['road_edges_written']} written), stations "
        f"{st['inserted']} new / {st['updated']} updated / {st['unchanged']} unchanged, "
        f"demo prices {summary.get('demo_prices_written', 0)}, demo pumps {summary.get('demo_pumps_written', 0)}, "
        f"{summary['seconds']} s"
    )
    if summary.get("future_prices_removed"):
        print(
            f"a new ceiling notice removed {summary['future_prices_removed']} stored future prices outside "
            "its band (audited; see audit_log, actor load-region:<region>, action delete)"
        )
    return 0
