"""Route shaping (api._routing: route_json, wechat_polylines, edge_pieces) built once in compiled code
gives exactly the bodies of the per-edge, per-point shaping it replaced (kept here as the reference),
on 200 seeded routes in China (GCJ-02 applies) and alternatives."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from api._models import documented
from api._routing import _round_like_python, edge_pieces, level, route_json, wechat_polylines
from config import Settings, load_region
from geo._coords import from_wgs84
from geo._errors import RouteNotFound
from geo._graphcache import load_or_build
from geo._polyline import cut, encode
from geo._router import Router, RouteResult
from geo._traffic import TrafficProfile
from ingest._od_pairs import od_pairs


# ---- the reference: the shaping as it was, one numpy cut per edge, one conversion per point ----------
def _ref_lonlat(points: list[tuple[float, float]], coord: str) -> list[list[float]]:
    out = []
    for lat, lon in points:
        la, lo = from_wgs84(lat, lon, coord)
        out.append([round(lo, 7), round(la, 7)])
    return out


def _ref_pieces(r: Router, res: RouteResult) -> list[dict[str, Any]]:
    g = r.g
    n = len(res.edges)
    entries = [*res.edge_entry_s, res.duration_s]
    pieces = []
    for i, e in enumerate(res.edges):
        f0 = res.first_fraction if i == 0 else 0.0
        f1 = res.last_fraction if i == n - 1 else 1.0
        if n == 1:
            f0, f1 = min(res.first_fraction, res.last_fraction), max(res.first_fraction, res.last_fraction)
        poly = g.edge_polyline(int(e))
        la, lo = cut(poly[:, 0], poly[:, 1], f0, f1)
        length = float(g.edge_length_m[e]) * max(0.0, f1 - f0)
        dur = max(0.0, entries[i + 1] - entries[i])
        free = length / float(g.edge_speed_mps[e])
        factor = min(1.0, free / dur) if dur > 0 else 1.0
        pieces.append(
            {
                "edge_id": int(e),
                "distance_m": round(length, 1),
                "duration_s": round(dur, 1),
                "congestion": round(factor, 3),
                "level": level(factor),
                "points": list(zip(la.tolist(), lo.tolist(), strict=True)),
            }
        )
    return pieces


def _ref_steps(res: RouteResult, coord: str) -> list[dict[str, Any]]:
    out = []
    for s in res.steps:
        la, lo = from_wgs84(s.location[0], s.location[1], coord)
        step = {
            "maneuver": s.maneuver,
            "type": s.type,
            "modifier": s.modifier or None,
            "name": s.name,
            "name_en": s.name_en,
            "ref": s.ref or None,
            "text_zh": s.text_zh,
            "text_en": s.text_en,
            "distance_m": round(s.distance_m, 1),
            "duration_s": round(s.duration_s, 1),
            "location": [round(lo, 7), round(la, 7)],
            "bearing_before": s.bearing_before,
            "bearing_after": s.bearing_after,
        }
        if s.exit is not None:
            step["exit"] = s.exit
        out.append(step)
    return out


def _ref_geometry(r: Router, res: RouteResult, coord: str) -> dict[str, Any]:
    coords = _ref_lonlat(res.polyline, coord)
    return {
        "steps": _ref_steps(res, coord),
        "geometry": {"type": "LineString", "coordinates": coords},
        "polyline6": encode([(c[1], c[0]) for c in coords], precision=6),
        "segments": [
            {k: v for k, v in p.items() if k != "points"} | {"coordinates": _ref_lonlat(p["points"], coord)}
            for p in _ref_pieces(r, res)
        ],
    }


def _ref_wechat(r: Router, res: RouteResult) -> list[list[Any]]:
    runs: list[dict[str, Any]] = []
    for p in _ref_pieces(r, res):
        pts = [
            {"latitude": round(a, 6), "longitude": round(b, 6)}
            for a, b in (from_wgs84(q[0], q[1], "gcj02") for q in p["points"])
        ]
        if runs and runs[-1]["level"] == p["level"]:
            runs[-1]["points"].extend(pts[1:])
        else:
            runs.append({"level": p["level"], "points": pts})
    return [[run["level"], run["points"]] for run in runs]


# ---- 200 seeded routes ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routes(shared_data: Path) -> Iterator[tuple[Router, list[RouteResult]]]:
    region = load_region("lijiang", Settings())
    with tempfile.TemporaryDirectory(prefix="fuel-shaping-") as tmp:
        g = load_or_build(
            shared_data / "osm" / "shenzhen_longgang.osm.gz",
            speeds_kmh=region.speeds_kmh,
            cache_dir=Path(tmp),
        )
    r = Router(g, profile=TrafficProfile.default(), holidays=region.holidays, tz=region.tz)
    out: list[RouteResult] = []
    for p in od_pairs(g, 200, seed=16):
        try:
            res = r.route(p.origin, p.destination, depart_at=p.depart_at, alternatives=1)
        except RouteNotFound:
            continue
        out += [res, *res.alternatives]
    assert len(out) >= 200
    yield r, out


@pytest.mark.parametrize("coord", ["wgs84", "gcj02", "bd09"])
def test_route_json_shapes_as_before(routes: tuple[Router, list[RouteResult]], coord: str) -> None:
    r, results = routes
    converted = 0
    for res in results:
        body = orjson.loads(documented(route_json(r, res, coord)).body)  # as the client reads it
        ref = _ref_geometry(r, res, coord)
        assert {k: body[k] for k in ref} == ref
        converted += body["geometry"]["coordinates"][0] != _ref_lonlat(res.polyline[:1], "wgs84")[0]
    assert (converted > 0) == (coord != "wgs84")  # the routes lie where GCJ-02 applies


def test_wechat_polylines_and_pieces_as_before(routes: tuple[Router, list[RouteResult]]) -> None:
    r, results = routes
    for res in results:
        got = wechat_polylines(r, res)
        runs = _ref_wechat(r, res)
        points = [p for i, (_, pts) in enumerate(runs) for p in (pts if i == 0 else pts[1:])]
        colours = [_colour(lv) for lv, pts in runs for _ in pts[1:]]
        if not points:
            assert got == []
        else:  # one line, each stretch between two points in the colour of its traffic level
            assert [[p["color"], p["colorList"], p["points"]] for p in got] == [
                [colours[0] if colours else _colour("free"), colours, points]
            ]
            assert len(got[0]["colorList"]) == len(got[0]["points"]) - 1
        assert edge_pieces(r, res) == _ref_pieces(r, res)


def test_round_like_python_is_pythons_round() -> None:
    """The array rounding of the bodies against Python's round, halves and specials included."""
    rng = np.random.default_rng(5)
    for nd in (1, 3, 6, 7):
        for scale in (1e-3, 1.0, 100.0, 1e5):
            x = rng.normal(0, scale, 5_000)
            x[:100] = np.round(x[:100], nd) + 0.5 * 10.0**-nd  # on a half of the last digit
            x[100:110] = [0.0, -0.0, np.inf, -np.inf, 1e-320, 5e-324, 0.05, 0.15, 2.675, 1.0000000000000002]
            got = _round_like_python(x, nd)
            want = np.array([round(float(v), nd) for v in x])
            assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))


def _colour(level_name: str) -> str:
    from api._routing import _LEVEL_COLOURS

    return _LEVEL_COLOURS[level_name]
