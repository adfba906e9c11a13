"""`python -m ingest fetch-region REGION`: download a region's roads and fuel stations from Overpass.

Steps, each one all-or-nothing:
1. Query the Overpass endpoint (FUEL_OVERPASS_URL or --endpoint) for the region's polygon (its boundary
   file, else its bbox), in the pieces osmnx cuts it into: drivable ways with their nodes, turn
   restriction relations among those ways, and amenity=fuel nodes/ways/relations (with way nodes).
2. Merge the pieces (de-duplicated by type and id) and write a dated OSM XML extract with <bounds>,
   e.g. `.cache/extracts/lijiang-2026-11-24.osm`, and `lijiang-2026-11-24.osm.attribution.txt` beside it.
3. Validate it by reading it back with pyosmium (well-formed, counts match, at least one drivable way,
   way nodes all present) and only then replace the region's configured extract (its `[extract] path`,
   converted to that file's format, e.g. `.cache/extracts/lijiang.osm.pbf`).
4. Unless --no-ingest, run the normal load (`ingest._load_region.load_region`) on that extract.

Any failure before step 3 leaves the previous extracts and the database untouched (temp files removed).
If the load in step 4 raises, the previous configured extract is put back so file and database agree.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import osmium
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from config import PROJECT_ROOT, Region, Settings, load_region
from geo._errors import ExtractError
from ingest._cli import Commands, add_command, missing_extra

if (
    TYPE_CHECKING
):  # ingest._overpass needs the `fetch` extra (osmnx, requests): imported when the command runs
    from ingest._overpass import Download, Retry

GENERATOR = "lijiang-fuel fetch-region (Overpass API via osmnx queries)"
# pyosmium/libosmium format names by file suffix.
_FORMATS = {".osm.pbf": "pbf", ".pbf": "pbf", ".osm": "osm", ".osm.gz": "osm.gz", ".osm.bz2": "osm.bz2"}


@dataclass(frozen=True)
class ExtractStats:
    nodes: int
    ways: int
    relations: int
    drivable_ways: int
    fuel: int
    restrictions: int
    missing_way_nodes: int


def osm_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return _FORMATS[suffix]
    raise ExtractError(f"{path}: unknown OSM file type (use .osm.pbf, .osm, .osm.gz or .osm.bz2)")


def configured_extract(region: Region, settings: Settings) -> Path | None:
    """The region's `[extract] path` as a local file path (None when unset or a URL)."""
    if not region.extract or "://" in region.extract:
        return None
    p = Path(region.extract.replace("{shared}", str(settings.shared_data_dir)))
    return p if p.is_absolute() else PROJECT_ROOT / p


def query_polygon(region: Region) -> BaseGeometry:
    try:
        boundary = region.boundary
    except (OSError, ValueError) as exc:
        raise ExtractError(
            f"region {region.name}: cannot read boundary {region.boundary_file}: {exc}"
        ) from exc
    if boundary is not None and not boundary.is_empty:
        return boundary if boundary.is_valid else boundary.buffer(0)
    return box(*region.bbox)


def read_stats(path: Path, fmt: str, *, drivable_ids: set[int] | None = None) -> ExtractStats:
    """Read an OSM file with pyosmium (the way the loaders will) and count what is in it."""
    counts: Counter[str] = Counter()
    node_ids: set[int] = set()
    way_refs: list[int] = []
    try:
        for obj in osmium.FileProcessor(osmium.io.File(str(path), fmt)):
            kind = obj.type_str()
            counts[kind] += 1
            tags = obj.tags
            if tags.get("amenity") == "fuel":
                counts["fuel"] += 1
            if kind == "n":
                node_ids.add(obj.id)
            elif isinstance(obj, osmium.osm.Way):
                way_refs.extend(n.ref for n in obj.nodes)
                if "highway" in tags and (drivable_ids is None or obj.id in drivable_ids):
                    counts["drivable"] += 1
            elif kind == "r" and tags.get("type") == "restriction":
                counts["restriction"] += 1
    except RuntimeError as exc:  # libosmium parse errors (e.g. malformed XML)
        raise ExtractError(f"{path}: not a readable OSM {fmt} file: {exc}") from exc
    return ExtractStats(
        nodes=counts["n"],
        ways=counts["w"],
        relations=counts["r"],
        drivable_ways=counts["drivable"],
        fuel=counts["fuel"],
        restrictions=counts["restriction"],
        missing_way_nodes=sum(1 for r in way_refs if r not in node_ids),
    )


def convert(
    src: Path, src_fmt: str, dst: Path, dst_fmt: str, bounds: tuple[float, float, float, float]
) -> None:
    header = osmium.io.Header()
    west, south, east, north = bounds
    header.add_box(osmium.osm.Box(osmium.osm.Location(west, south), osmium.osm.Location(east, north)))
    header.set("generator", GENERATOR)
    writer = osmium.SimpleWriter(osmium.io.File(str(dst), dst_fmt), header=header, overwrite=True)
    try:
        for obj in osmium.FileProcessor(osmium.io.File(str(src), src_fmt)):
            writer.add(obj)
    finally:
        writer.close()


def attribution_text(
    region: Region, *, endpoint: str, started: dt.datetime, dl: Download, files: list[Path]
) -> str:
    return (
        f"{region.display_name}: roads and fuel stations from OpenStreetMap.\n"
        "© OpenStreetMap contributors. Available under the Open Database License (ODbL) 1.0:\n"
        "https://www.openstreetmap.org/copyright  https://opendatacommons.org/licenses/odbl/1-0/\n"
        "\n"
        f"files: {', '.join(f.name for f in files)}\n"
        f"endpoint: {endpoint}\n"
        f"queried at: {started.isoformat(timespec='seconds')}\n"
        f"data timestamp (osm_base): {dl.osm_base or 'not reported'}\n"
        f"requests: {dl.requests}\n"
        "queries: drivable ways (osmnx network_type='drive') with their nodes; type=restriction relations\n"
        "         among those ways; amenity=fuel nodes, ways and relations\n"
    )


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def add_parser(commands: Commands) -> None:
    p = add_command(
        commands,
        "fetch-region",
        run,
        summary="download a region's roads and fuel stations from Overpass, then load them (extra: fetch)",
        description="Download a region's drivable roads, turn restrictions and fuel stations from an "
        "Overpass API endpoint into a dated OSM extract, point the region at it, then load it.\n\n"
        + __doc__.split("\n\n", 1)[1]
        + "\nNeeds the optional `fetch` dependencies: pip install 'lijiang-fuel[fetch]'.",
    )
    p.add_argument("region", help="region name (data/regions/<name>.toml), e.g. lijiang")
    p.add_argument("--endpoint", help="Overpass interpreter URL (default: FUEL_OVERPASS_URL)")
    p.add_argument(
        "--out",
        type=Path,
        help="folder for the dated extract (default: the folder of the region's extract path)",
    )
    p.add_argument("--no-ingest", action="store_true", help="only download and write the extract")
    p.add_argument("--timeout", type=float, help="seconds per request (default: FUEL_OVERPASS_TIMEOUT_S)")
    p.add_argument("--retries", type=int, default=3, help="attempts per request (default 3)")
    p.add_argument("--backoff", type=float, default=5.0, help="first wait between attempts, doubling (s)")
    p.add_argument(
        "--max-area-km2",
        type=float,
        default=2500.0,
        help="largest polygon piece per request (km², default 2500)",
    )
    p.add_argument("--no-rate-limit", action="store_true", help="do not consult the endpoint's /status")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    try:
        from ingest._overpass import OverpassError, Retry, interpreter_url
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] in ("ingest", "geo", "config", "store", "api"):
            raise
        return missing_extra(exc, extra="fetch", command="fetch-region")
    settings = Settings()  # read now: the environment of this run, not a cached copy
    try:
        region = load_region(args.region, settings)
    except FileNotFoundError as exc:
        print(f"fetch-region: {exc}", file=sys.stderr)
        return 2
    endpoint = interpreter_url(args.endpoint or settings.overpass_url)
    timeout_s = float(args.timeout if args.timeout is not None else settings.overpass_timeout_s)
    try:
        result = fetch_extract(
            settings,
            region,
            endpoint=endpoint,
            out_dir=args.out,
            timeout_s=timeout_s,
            retry=Retry(attempts=max(args.retries, 1), backoff_s=args.backoff),
            max_query_area_m2=args.max_area_km2 * 1e6,
            rate_limit=not args.no_rate_limit,
            progress=not args.no_progress,
        )
    except OverpassError as exc:
        print(f"fetch-region {region.name}: download failed, nothing changed: {exc}", file=sys.stderr)
        return 1
    except (ExtractError, OSError) as exc:
        print(f"fetch-region {region.name}: failed, nothing changed: {exc}", file=sys.stderr)
        return 1
    if args.no_ingest:
        result.keep()
        print(f"fetch-region {region.name}: --no-ingest: load it with `python -m ingest load-region`")
        return 0
    return load_fetched(settings, region, result, progress=not args.no_progress)


@dataclass(frozen=True)
class Fetched:
    """What `fetch_extract` published: the dated file, the extract to load, and how to undo the switch."""

    dated: Path
    extract: Path  # the region's configured extract (replaced), else the dated file
    replaced: bool  # whether `extract` is the region's configured path, switched by this run
    backup: Path | None  # the previous configured extract, kept until the load succeeds

    def keep(self) -> None:
        """The new extract stays: drop the backup of the previous one."""
        if self.backup is not None:
            with contextlib.suppress(FileNotFoundError):
                self.backup.unlink()

    def undo(self) -> str:
        """Put the previous configured extract back (or remove the new one if there was none)."""
        if not self.replaced:
            return ""
        if self.backup is not None:
            os.replace(self.backup, self.extract)
            return f"; the previous extract is back at {self.extract}"
        with contextlib.suppress(FileNotFoundError):
            self.extract.unlink()
        return f"; removed the new {self.extract} (there was none before)"


def fetch_extract(
    settings: Settings,
    region: Region,
    *,
    endpoint: str,
    out_dir: Path | None,
    timeout_s: float,
    retry: Retry,
    max_query_area_m2: float,
    rate_limit: bool = True,
    progress: bool = True,
) -> Fetched:
    """Download, write, validate and publish the extract. Raises before publishing if anything fails."""
    from ingest._overpass import OverpassError, fetch, osmnx_settings, write_osm_xml

    started = dt.datetime.now(region.tz)
    target = configured_extract(region, settings)
    out = out_dir or (target.parent if target else settings.cache_dir / "extracts")
    out = out if out.is_absolute() else Path.cwd() / out
    polygon = query_polygon(region)
    west, south, east, north = (float(v) for v in polygon.bounds)
    bounds = (west, south, east, north)

    with osmnx_settings(
        endpoint=endpoint,
        timeout_s=timeout_s,
        max_query_area_m2=max_query_area_m2,
        cache_dir=settings.cache_dir,
    ):
        dl = fetch(
            polygon,
            endpoint=endpoint,
            timeout_s=timeout_s,
            retry=retry,
            progress=progress,
            rate_limit=rate_limit,
        )

    # Checks on the merged answer before anything touches the disk.
    if not dl.road_way_ids:
        raise OverpassError(
            endpoint, f"answered no drivable ways for {region.name}: refusing an empty extract"
        )
    missing = dl.missing_way_nodes()
    if missing:
        raise OverpassError(
            endpoint, f"{missing} way node reference(s) without their node: answer incomplete"
        )
    print(
        f"fetch: {len(dl.nodes):,} nodes, {len(dl.ways):,} ways ({len(dl.road_way_ids):,} drivable), "
        f"{len(dl.relations):,} relations ({len(dl.restriction_ids)} restrictions), "
        f"{len(dl.fuel_keys)} fuel stations; {dl.duplicates:,} duplicates across pieces dropped; "
        f"{dl.missing_relation_members():,} relation members outside the extract (normal for a clip)"
    )

    out.mkdir(parents=True, exist_ok=True)
    dated = out / f"{region.name}-{started.date().isoformat()}.osm"
    publish = target is not None and target.resolve() != dated.resolve()
    # (temp file, final file) pairs, published together at the end.
    files: list[tuple[Path, Path]] = [(_tmp(dated), dated)]
    if publish:
        assert target is not None
        files.append((_tmp(target), target))
    attrs = [(_tmp(_attr(final)), _attr(final)) for _, final in files]
    backup: Path | None = None
    try:
        xml_tmp = files[0][0]
        with xml_tmp.open("w", encoding="utf-8") as f:
            write_osm_xml(dl, f, bounds=bounds, generator=GENERATOR)
        _check(read_stats(xml_tmp, "osm", drivable_ids=dl.road_way_ids), dl, dated)
        if publish:
            tmp, final = files[1]
            final.parent.mkdir(parents=True, exist_ok=True)
            fmt = osm_format(final)
            convert(xml_tmp, "osm", tmp, fmt, bounds)
            _check(read_stats(tmp, fmt, drivable_ids=dl.road_way_ids), dl, final)
        text = attribution_text(
            region, endpoint=endpoint, started=started, dl=dl, files=[f for _, f in files]
        )
        for tmp, _ in attrs:
            tmp.write_text(text, encoding="utf-8")
        # Publish: every file is complete and checked; a rename within one folder is atomic.
        if publish and files[1][1].exists():
            backup = files[1][1].with_name(f"{files[1][1].name}.prev")
            shutil.copy2(files[1][1], backup)
        for tmp, final in files + attrs:
            os.replace(tmp, final)
    finally:
        for tmp, _ in files + attrs:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    print(f"fetch: wrote {dated} ({dated.stat().st_size:,} bytes) and {_attr(dated).name}")
    if publish:
        print(f"fetch: region {region.name} extract updated: {target}")
    elif target is None:
        print(f"fetch: region {region.name} has no local [extract] path; use FUEL_EXTRACT={dated}")
    if settings.extract is not None:
        print(f"fetch: note FUEL_EXTRACT={settings.extract} is set and overrides the region's extract path")
    return Fetched(dated=dated, extract=files[-1][1], replaced=publish, backup=backup)


def _attr(path: Path) -> Path:
    return path.with_name(f"{path.name}.attribution.txt")


def _check(stats: ExtractStats, dl: Download, final: Path) -> None:
    expected = (len(dl.nodes), len(dl.ways), len(dl.relations))
    got = (stats.nodes, stats.ways, stats.relations)
    if got != expected:
        raise ExtractError(
            f"{final}: written file reads back as {got} nodes/ways/relations, expected {expected}"
        )
    if stats.drivable_ways < 1:
        raise ExtractError(f"{final}: no drivable way in the written file")
    if stats.missing_way_nodes:
        raise ExtractError(f"{final}: {stats.missing_way_nodes} way node reference(s) missing")
    if stats.fuel < len(dl.fuel_keys):
        raise ExtractError(f"{final}: {stats.fuel} fuel stations read back, {len(dl.fuel_keys)} downloaded")


def load_fetched(settings: Settings, region: Region, fetched: Fetched, *, progress: bool) -> int:
    """Load the fresh extract the normal way; if that fails, undo the switch so file and database agree."""
    from ingest._load_region import load_region as load_extract

    try:
        summary: dict[str, Any] = load_extract(
            settings, region_name=region.name, extract=fetched.extract, progress=progress
        )
    except Exception as exc:
        undone = fetched.undo()
        print(
            f"fetch-region {region.name}: loading {fetched.extract} failed ({exc.__class__.__name__}: {exc}); "
            f"the database keeps its previous data{undone}. The download stays at {fetched.dated}: "
            f"retry with `FUEL_EXTRACT={fetched.dated} python -m ingest load-region`",
            file=sys.stderr,
        )
        return 1
    fetched.keep()
    print(f"fetch-region {region.name}: loaded {fetched.extract}: {summary}")
    return 0
