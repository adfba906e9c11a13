"""Loads the served region's compiled road graph and router once, at start-up."""

from __future__ import annotations

import logging
import time

from api._routing import warmup
from config import ServedRegion, Settings
from geo._graphcache import load_or_build
from geo._router import Router
from geo._traffic import TrafficProfile

log = logging.getLogger("api.graph")


def load_router(settings: Settings, served: ServedRegion) -> Router | None:
    """The router for the served region, or None (with one log line) when it has no extract."""
    if served.extract is None or not served.extract.is_file():
        log.warning("no road graph: %s", served.note)
        return None
    t0 = time.perf_counter()
    region = served.region
    g = load_or_build(served.extract, speeds_kmh=region.speeds_kmh, cache_dir=settings.graph_cache_dir)
    profile = (
        TrafficProfile.from_file(settings.traffic_profile)
        if settings.traffic_profile
        else TrafficProfile.default()
    )
    router = Router(
        g,
        profile=profile,
        holidays=region.holidays,
        tz=region.tz,
        max_snap_m=settings.max_snap_m,
        decay_s=settings.traffic_decay_s,
        restricted_penalty_s=settings.route_restricted_penalty_s,
        u_turn_penalty_s=settings.route_u_turn_penalty_s,
    )
    router.live.set_limits(
        skew_s=settings.traffic_future_skew_s,
        max_ahead_s=settings.traffic_max_ahead_s,
        max_closure_s=settings.traffic_max_closure_s,
        max_age_s=settings.traffic_max_age_s,
    )
    warmup(router)  # the router's kernels and the route body's, before the first request
    log.info(
        "road graph %s: %d nodes, %d road edges (%s) ready in %.2f s",
        region.name,
        g.n_nodes,
        g.n_road_edges,
        g.meta.get("cache", "?"),
        time.perf_counter() - t0,
    )
    return router
