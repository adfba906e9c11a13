"""Shared pieces of the benchmarks: options, graphs, routers, seeded pairs, timing, progress, the bench DB."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from benchmarks._report import Report
from config import PROJECT_ROOT, Region, Settings, load_region
from geo._graph import CompiledGraph
from geo._router import Router
from geo._traffic import LiveTraffic, TrafficProfile
from ingest._od_pairs import OdPair, od_pairs

OSM = PROJECT_ROOT.parent / "shared" / "data" / "osm"
EXTRACTS = ("andorra.osm.pbf", "shenzhen_longgang.osm.gz", "beijing_tsinghua.osm.bz2", "west_oakland.osm.bz2")
DEMO_EXTRACT = "andorra.osm.pbf"
TZ = ZoneInfo("Asia/Shanghai")
# The ground-truth day: a plain weekday (Wednesday), rush hour at 08:00 local time.
RUSH = datetime(2026, 3, 4, 8, 0, tzinfo=TZ)
BASE_URL = os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/lijiang_fuel")


@dataclass
class Ctx:
    """What every section gets: options, the report, and caches shared between sections."""

    seed: int
    quick: bool
    report: Report
    settings: Settings
    region: Region
    graphs: dict[str, CompiledGraph] = field(default_factory=dict)
    routers: dict[str, Router] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def n(self, full: float, quick: float) -> Any:
        return quick if self.quick else full

    def graph(self, name: str) -> CompiledGraph:
        """A real extract's compiled graph (cache) or a synthetic one ('synthetic-<n>[-r]')."""
        g = self.graphs.get(name)
        if g is None:
            if name.startswith("synthetic-"):
                from geo._synthetic import synthetic_graph

                parts = name.split("-")
                n = int(parts[1])
                g = synthetic_graph(n, seed=self.seed, restrictions=n // 50 if "r" in parts[2:] else 0)
            else:
                from geo._graphcache import load_or_build

                g = load_or_build(
                    OSM / name, speeds_kmh=self.region.speeds_kmh, cache_dir=self.settings.graph_cache_dir
                )
            self.graphs[name] = g
        return g

    def router(
        self, name: str, *, profile: TrafficProfile | None = None, clock: float | None = None
    ) -> Router:
        """A router on `name` (cached when no profile/clock is given). `clock`: the live overlay's fixed
        'now' (Unix s), so seeded incidents at a fixed past date are accepted reproducibly."""
        key = name if profile is None and clock is None else None
        if key is not None and key in self.routers:
            return self.routers[key]
        r = make_router(self.graph(name), self.region, profile=profile, clock=clock)
        if key is not None:
            self.routers[key] = r
        return r

    def pairs(self, name: str, n: int, *, salt: int = 0, min_distance_m: float = 0.0) -> list[OdPair]:
        return od_pairs(self.graph(name), n, seed=self.seed + salt, min_distance_m=min_distance_m)


def make_router(
    g: CompiledGraph, region: Region, *, profile: TrafficProfile | None = None, clock: float | None = None
) -> Router:
    prof = profile or TrafficProfile.default()
    r = Router(g, profile=prof, holidays=region.holidays, tz=region.tz)
    if clock is not None:
        fixed = float(clock)
        r.live = LiveTraffic(g, prof, region.holidays, region.tz, decay_s=r.decay_s, clock=lambda: fixed)
    r.warmup()
    return r


def make_ctx(seed: int, quick: bool) -> Ctx:
    settings = Settings()
    return Ctx(
        seed=seed,
        quick=quick,
        report=Report(seed),
        settings=settings,
        region=load_region("andorra", settings),
    )


# ---- timing and progress ---------------------------------------------------------------------------
class Progress:
    """Prints `label i/n` at most every `every_s` seconds (and at the end)."""

    def __init__(self, label: str, total: int, every_s: float = 5.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.t0 = self.last = time.perf_counter()

    def tick(self, i: int, extra: str = "") -> None:
        now = time.perf_counter()
        if now - self.last >= self.every_s or i == self.total:
            self.last = now
            print(f"  [{self.label}] {i}/{self.total} {now - self.t0:.0f}s {extra}".rstrip(), flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def p50(samples: list[float] | np.ndarray) -> float:
    a = np.asarray(samples, dtype=float)
    return float(np.median(a)) if a.size else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def rel_diff(a: float, b: float) -> float:
    if a == b:
        return 0.0
    if not (np.isfinite(a) and np.isfinite(b)):
        return float("inf")
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


# ---- the throwaway database -----------------------------------------------------------------------
@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A fresh migrated PostGIS + pgRouting database fuel_bench_<pid>_<rand>, dropped at the end."""
    from psycopg.conninfo import make_conninfo

    from store import create_database, drop_database, migrate

    url = make_conninfo(BASE_URL, dbname=f"fuel_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    create_database(url, extensions=("postgis", "pgrouting"))
    try:
        migrate(url)
        yield url
    finally:
        drop_database(url)


def tmp_dir() -> Path:
    d = PROJECT_ROOT / ".cache" / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d
