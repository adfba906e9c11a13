"""The compiled-graph cache: build once per (extract, build code, speeds), load in well under a second.

File: `<cache_dir>/<extract stem>-<key16>.graph` (CompiledGraph.save/load, checksummed). The key is the
sha256 of the extract bytes + the build code hash (`geo._build.build_code_hash`: source of _osm, _build,
_maxspeed, _graph and _landmarks) + the speeds dict, so changing any of them rebuilds. A corrupt or
truncated cache file logs one warning on logger "geo.graph" and is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from geo._build import build_code_hash, build_graph, file_sha256
from geo._errors import GraphCacheError
from geo._graph import CompiledGraph
from geo._osm import check_extract

log = logging.getLogger("geo.graph")
LANDMARK_COUNT = 12  # the router uses the best 6 per query; 12 keep the graph under 300 B per edge


def cache_key(extract: Path, speeds_kmh: dict[str, float]) -> str:
    """sha256 hex of extract content + build code + speeds."""
    h = hashlib.sha256()
    h.update(file_sha256(extract).encode())
    h.update(build_code_hash().encode())
    h.update(json.dumps({k: float(v) for k, v in sorted(speeds_kmh.items())}).encode())
    return h.hexdigest()


def cache_path(extract: Path, speeds_kmh: dict[str, float], cache_dir: Path) -> Path:
    """Where the compiled graph of `extract` is cached."""
    return Path(cache_dir) / f"{Path(extract).name.split('.')[0]}-{cache_key(extract, speeds_kmh)[:16]}.graph"


def _add_landmarks(g: CompiledGraph) -> None:
    try:
        from geo._landmarks import add_landmarks
    except ImportError:
        log.info("geo._landmarks not available: graph cached without landmarks")
        return
    add_landmarks(g, count=LANDMARK_COUNT, seed=0)


def load_or_build(
    extract: Path, *, speeds_kmh: dict[str, float], cache_dir: Path, progress: bool = False
) -> CompiledGraph:
    """The compiled graph of `extract`: from the cache when present and valid, else built and cached.

    `g.meta["cache"]` says "hit" or "built", `g.meta["cache_file"]` where it lives.
    Raises ExtractError when the extract cannot be read.
    """
    extract = Path(extract)
    check_extract(extract)
    key = cache_key(extract, speeds_kmh)
    path = Path(cache_dir) / f"{extract.name.split('.')[0]}-{key[:16]}.graph"
    if path.exists():
        try:
            g = CompiledGraph.load(path)
        except GraphCacheError as exc:
            log.warning("graph cache %s unusable (%s): rebuilding", path, exc)
        else:
            g.meta["cache"] = "hit"
            g.meta["cache_file"] = str(path)
            return g
    g = build_graph(extract, speeds_kmh=speeds_kmh, progress=progress)
    _add_landmarks(g)
    g.meta["cache_key"] = key
    g.meta["cache_file"] = str(path)
    g.meta["graph_sha256"] = g.save(path)
    g.meta["cache"] = "built"
    return g


def graph_identity(meta: dict[str, object]) -> str:
    """The id of a compiled graph's edge numbering (extract + build code + speeds): road_edges rows and
    live-traffic batches are only valid for the graph with the same identity."""
    return str(meta.get("cache_key", ""))
