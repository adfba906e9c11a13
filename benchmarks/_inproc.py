"""`python -m benchmarks._inproc --database-url URL`: where the time of a request goes, in-process.

Times (timeit, best of several repeats) nearby through the ASGI TestClient for limit 20 and 200,
`route_json` on a route of about 56 edges and on a long one (wgs84 and gcj02), the WeChat shaping,
and a full /v1/route through TestClient. The database must hold the demo region (ingest load-region
--demo). Seeded; prints one line per figure (milliseconds per call).
"""

from __future__ import annotations

import argparse
import random
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api._routing import route_json, wechat_polylines
from api.main import create_app
from config import Settings
from geo._errors import RouteNotFound
from geo._router import Router, RouteResult

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEPART = datetime(2025, 3, 5, 8, 0, tzinfo=UTC)


def _ms(fn: Callable[[], Any], number: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1000.0


def _routes(r: Router, seed: int) -> tuple[RouteResult, RouteResult]:
    """A route of the 56-edge size (closest found) and the longest of 300 seeded pairs."""
    rng = random.Random(seed)
    lat, lon = r.g.node_lat, r.g.node_lon
    best: RouteResult | None = None
    longest: RouteResult | None = None
    for _ in range(300):
        a, b = rng.randrange(len(lat)), rng.randrange(len(lat))
        try:
            res = r.route((float(lat[a]), float(lon[a])), (float(lat[b]), float(lon[b])), depart_at=DEPART)
        except RouteNotFound:  # unreachable pairs are skipped
            continue
        if best is None or abs(len(res.edges) - 56) < abs(len(best.edges) - 56):
            best = res
        if longest is None or len(res.polyline) > len(longest.polyline):
            longest = res
    assert best is not None and longest is not None
    return best, longest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._inproc")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--shared-data", type=Path, default=SHARED)
    args = parser.parse_args(argv)
    settings = Settings(
        database_url=args.database_url,
        shared_data_dir=args.shared_data,
        env="test",
        secret_key="bench-secret-key-0123456789abcdef0123456789abcdef",
        admin_api_key="bench-admin-key-0123456789abcdef0123456789abcdef",
        rate_limit_per_minute=100_000_000,
        rate_limit_prefix="bench-inproc",
    )
    with TestClient(create_app(settings)) as c:
        state = c.app.state.fuel  # type: ignore[attr-defined]
        r: Router = state.router
        q = {"lat": 42.5063, "lon": 1.5218, "radius_m": 20_000}
        for limit in (20, 200):
            p = dict(q, limit=min(limit, settings.max_limit))

            def nearby(p: dict[str, Any] = p) -> None:
                assert c.get("/v1/stations/nearby", params=p).status_code == 200

            print(f"nearby limit={p['limit']}: {_ms(nearby, 50):.3f} ms")
        print(f"health: {_ms(lambda: c.get('/health'), 200):.3f} ms")
        mid, long = _routes(r, args.seed)
        for name, res in (("56-edge", mid), ("long", long)):
            info = f"{len(res.edges)} edges, {len(res.polyline)} points"
            for coord in ("wgs84", "gcj02"):
                ms = _ms(lambda res=res, coord=coord: route_json(r, res, coord), 200)
                print(f"route_json {name} ({info}) {coord}: {ms:.3f} ms")
            print(f"wechat_polylines {name}: {_ms(lambda res=res: wechat_polylines(r, res), 200):.3f} ms")
        a = f"{mid.polyline[0][0]},{mid.polyline[0][1]}"
        b = f"{mid.polyline[-1][0]},{mid.polyline[-1][1]}"
        dep = DEPART.isoformat()

        def full() -> None:
            assert c.get("/v1/route", params={"from": a, "to": b, "depart_at": dep}).status_code == 200

        print(f"/v1/route 56-edge: {_ms(full, 50):.3f} ms")
        search = _ms(lambda: r.route(mid.polyline[0], mid.polyline[-1], depart_at=DEPART), 200)
        print(f"router.route 56-edge (search, steps, geometry): {search:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
