"""OSRM v5 HTTP API (`docs/http.md` of Project-OSRM/osrm-backend): route, table and nearest services.

`GET /{service}/v1/{profile}/{coordinates}[.json]?option=value&...` for the services `route`, `table` and
`nearest`; any profile name is accepted (there is one: driving, traffic-aware, departing now).
Coordinates are WGS-84 `lon,lat;lon,lat...`, `polyline(...)` or `polyline6(...)`. Every failure is an
OSRM error body `{"code": ..., "message": ...}` with HTTP 400: `InvalidUrl`, `InvalidService`,
`InvalidVersion`, `InvalidQuery` (malformed or unknown option), `InvalidOptions` (per-coordinate option
counts, indices), `InvalidValue` (coordinates out of range, unsupported exclude class), `NoSegment`,
`NoRoute`, `TooBig` (caps below), `NotImplemented`. Bounded cost: at most `osrm_max_waypoints`
coordinates per route, `MAX_ALTERNATIVES` alternatives, `max_matrix_cells` table cells,
`osrm_max_nearest` nearest results; snapping never searches beyond `max_snap_m`.

Differences from osrm-routed, on purpose: `hints` are checked for syntax and otherwise ignored (every
coordinate is snapped again); `exclude` knows `motorway` (with its links), `toll` and `ferry` (our graph
holds no ferry, so excluding it changes nothing); `bearings` and `approaches` choose the segment and the
direction of travel for routes, the segment only for tables; `waypoints` must list every coordinate.
Extra route options (ours): `vehicle=car|van|truck` with `height_m`, `weight_t`, `width_m`, `length_m`
(`geo._vehicle`: a van or truck keeps off roads whose maxheight/maxweight/maxwidth/maxlength it exceeds, a
truck off hgv=no roads too); a bad value is `InvalidValue`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
import struct
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api._models import (
    OsrmErrorBody,
    OsrmNearestResponse,
    OsrmRouteResponse,
    OsrmTableResponse,
    error_responses,
)
from api._params import SETTING_MAXIMUM
from api._state import AppState, get_state
from geo import FuelError, InvalidInput, NoRoadNear, RouteNotFound, haversine_m
from geo._polyline import decode, encode
from geo._router import EXCLUDABLE, MAX_ALTERNATIVES, Router, RouteResult
from geo._snap import Snap
from geo._steps import Intersection, Step
from geo._vehicle import BOUNDS, Vehicle, make_vehicle

router = APIRouter(tags=["osrm"])

SERVICES = ("route", "table", "nearest")
OTHER_SERVICES = ("match", "trip", "tile")
COMMON = (
    "bearings",
    "radiuses",
    "generate_hints",
    "hints",
    "approaches",
    "exclude",
    "snapping",
    "skip_waypoints",
)
VEHICLE_OPTIONS = ("vehicle", *BOUNDS)  # our extra route options (not in osrm-routed)
OPTIONS = {
    "route": (*COMMON, "alternatives", "steps", "annotations", "geometries", "overview", "continue_straight", "waypoints", *VEHICLE_OPTIONS),
    "table": (*COMMON, "sources", "destinations", "annotations", "fallback_speed", "fallback_coordinate", "scale_factor"),
    "nearest": (*COMMON, "number"),
}  # fmt: skip
ROUTE_ANNOTATIONS = ("duration", "nodes", "distance", "weight", "datasources", "speed")
_PER_COORDINATE = "; one per coordinate, separated by `;` (an empty element = the default)"
_BOOL: dict[str, Any] = {"type": "boolean"}  # true | false in the query string
# (schema, description) of each option: typed for clients; parsed by hand so that a bad or unknown option
# is an OSRM error (InvalidQuery, InvalidOptions, InvalidValue) as osrm-routed answers it.
_DOC: dict[str, tuple[dict[str, Any], str]] = {
    "bearings": (
        {"type": "string", "pattern": r"^(([0-9]{1,3},[0-9]{1,3})?;)*([0-9]{1,3},[0-9]{1,3})?$"},
        "{value},{range} in degrees (0-360, 0-180)" + _PER_COORDINATE,
    ),
    "radiuses": (
        {
            "type": "string",
            "pattern": r"^(([0-9]+([.][0-9]+)?|unlimited)?;)*([0-9]+([.][0-9]+)?|unlimited)?$",
        },
        "snapping radius in metres, or unlimited" + _PER_COORDINATE,
    ),
    "generate_hints": (_BOOL | {"default": True}, "add a hint to each waypoint"),
    "hints": ({"type": "string"}, "base64 hints (checked, then ignored)" + _PER_COORDINATE),
    "approaches": (
        {"type": "string", "pattern": r"^((unrestricted|curb|opposite)?;)*(unrestricted|curb|opposite)?$"},
        "unrestricted, curb (arrive on the right) or opposite" + _PER_COORDINATE,
    ),
    "exclude": (
        {"type": "string", "pattern": r"^((motorway|toll|ferry)(,(motorway|toll|ferry))*)?$"},
        "road classes to avoid: motorway, toll, ferry (comma-separated)",
    ),
    "snapping": (
        {"type": "string", "enum": ["default", "any"], "default": "default"},
        "which edges to snap to",
    ),
    "skip_waypoints": (_BOOL | {"default": False}, "leave the waypoints out of the answer"),
    "alternatives": (
        {"anyOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0, "maximum": MAX_ALTERNATIVES}]},
        "true, false or how many alternative routes (at most 3; two coordinates only)",
    ),
    "steps": (_BOOL | {"default": False}, "turn-by-turn steps"),
    "annotations": (
        {
            "type": "string",
            "pattern": r"^(true|false|(duration|nodes|distance|weight|datasources|speed)"
            r"(,(duration|nodes|distance|weight|datasources|speed))*)$",
        },
        "route: true, false or a list of duration, nodes, distance, weight, datasources, speed; "
        "table: duration, distance or duration,distance",
    ),
    "geometries": (
        {"type": "string", "enum": ["polyline", "polyline6", "geojson"], "default": "polyline"},
        "geometry format",
    ),
    "overview": (
        {"type": "string", "enum": ["simplified", "full", "false"], "default": "simplified"},
        "the route's overview geometry",
    ),
    "continue_straight": (
        {"type": "string", "enum": ["default", "true", "false"], "default": "default"},
        "no U-turn at via points (default true)",
    ),
    "waypoints": ({"type": "string", "pattern": r"^[0-9]+(;[0-9]+)*$"}, "indices of every coordinate"),
    "vehicle": (
        {"type": "string", "enum": ["car", "van", "truck"], "default": "car"},
        "car (default), van or truck (extra option: keeps off roads whose limits the vehicle exceeds)",
    ),
    "height_m": (
        {"type": "number", "exclusiveMinimum": 0},
        "vehicle height, metres (van/truck; default van 2.6, truck 4.0)",
    ),
    "weight_t": (
        {"type": "number", "exclusiveMinimum": 0},
        "vehicle weight, tonnes (van/truck; default van 3.5, truck 18)",
    ),
    "width_m": (
        {"type": "number", "exclusiveMinimum": 0},
        "vehicle width, metres (van/truck; default van 2.1, truck 2.55)",
    ),
    "length_m": (
        {"type": "number", "exclusiveMinimum": 0},
        "vehicle length, metres (van/truck; default van 6, truck 12)",
    ),
    "sources": (
        {"type": "string", "pattern": r"^(all|[0-9]+(;[0-9]+)*)$", "default": "all"},
        "indices or all",
    ),
    "destinations": (
        {"type": "string", "pattern": r"^(all|[0-9]+(;[0-9]+)*)$", "default": "all"},
        "indices or all",
    ),
    "fallback_speed": (
        {"type": "number", "exclusiveMinimum": 0},
        "m/s, for cells without a route (straight-line distance at this speed)",
    ),
    "fallback_coordinate": (
        {"type": "string", "enum": ["input", "snapped"], "default": "input"},
        "which coordinates the fallback distance is measured between",
    ),
    "scale_factor": ({"type": "number", "exclusiveMinimum": 0}, "multiplies the durations"),
    "number": (
        {"type": "integer", "minimum": 1, "default": 1, SETTING_MAXIMUM: "osrm_max_nearest"},
        "how many nearest segments, at most FUEL_OSRM_MAX_NEAREST",
    ),
}
_NUM = r"[-+]?[0-9.]+"
COORDINATES_PATTERN = rf"^({_NUM},{_NUM}(;{_NUM},{_NUM})*|polyline6?\(.+\))(\.json)?$"
Profile = Annotated[str, Path(description="any profile name (there is one: driving)", examples=["driving"])]
Coordinates = Annotated[
    str,
    Path(
        description="WGS-84 lon,lat;lon,lat..., or polyline(...) / polyline6(...); optionally .json",
        json_schema_extra={"pattern": COORDINATES_PATTERN},
        examples=["1.5218,42.5063;1.5800,42.5347"],
    ),
]
_RESPONSES: dict[str, type[BaseModel]] = {
    "route": OsrmRouteResponse,
    "table": OsrmTableResponse,
    "nearest": OsrmNearestResponse,
}


def _openapi(service: str) -> dict[str, Any]:
    """The service's options in the OpenAPI schema (parsed by hand: unknown options are refused)."""
    params = [
        {"name": k, "in": "query", "required": False, "schema": _DOC[k][0], "description": _DOC[k][1]}
        for k in OPTIONS[service]
    ]
    return {"parameters": params}


def _service_responses() -> dict[int | str, dict[str, Any]]:
    """OSRM's error body for 400 (and 503 without a road graph); the service's own for 429."""
    return {
        400: {"model": OsrmErrorBody, "description": "OSRM error `{code, message}` (docs/http.md)"},
        503: {"model": OsrmErrorBody, "description": "DisabledDataset: no road graph is loaded"},
        **error_responses(429),
    }


_B64 = re.compile(r"^[A-Za-z0-9_\-+/=]*$")
_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class OsrmError(FuelError, ValueError):
    """A failure answered in OSRM's shape: `{"code": code, "message": message}` (api/_errors.py)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _osrm_errors(fn: Callable[..., JSONResponse]) -> Callable[..., JSONResponse]:
    """Project errors raised while serving OSRM become OSRM errors (see `osrm_error`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> JSONResponse:
        try:
            return fn(*args, **kwargs)
        except (InvalidInput, RouteNotFound) as exc:
            raise osrm_error(exc) from exc

    return wrapper


# ---- parsing -----------------------------------------------------------------------------------
def _coordinates(text: str) -> tuple[list[tuple[float, float]], str]:
    """(lat, lon) list and output format from the coordinates path segment (with `.json`)."""
    fmt = "json"
    if text.endswith(".json"):
        text = text[: -len(".json")]
    elif text.endswith(".flatbuffers"):
        raise OsrmError("NotImplemented", "the flatbuffers format is not offered; use json")
    poly = re.fullmatch(r"polyline(6?)\((.*)\)", text, flags=re.S)
    if poly:
        body = poly.group(2)
        if not body or any(not 63 <= ord(ch) <= 126 for ch in body):
            raise OsrmError("InvalidUrl", "polyline(...) holds characters outside the polyline alphabet")
        try:
            pts = decode(body, precision=6 if poly.group(1) else 5)
        except (IndexError, ValueError):
            raise OsrmError("InvalidUrl", "polyline(...) is truncated") from None
    else:
        pts = []
        for i, part in enumerate(text.split(";")):
            xy = part.split(",")
            if len(xy) != 2 or not all(_FLOAT.match(v.strip()) for v in xy):
                raise OsrmError("InvalidQuery", f"coordinate {i} must be lon,lat, got {part[:40]!r}")
            pts.append((float(xy[1]), float(xy[0])))
    for i, (lat, lon) in enumerate(pts):
        if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
            raise OsrmError("InvalidValue", f"Invalid coordinate value: coordinate {i} is out of range")
    return pts, fmt


def _options(request: Request, service: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in request.query_params.multi_items():
        if k not in OPTIONS[service]:
            raise OsrmError("InvalidQuery", f"unknown option {k!r} for the {service} service")
        if k in out:
            raise OsrmError("InvalidQuery", f"option {k!r} is given twice")
        out[k] = v
    return out


def _bool(opts: dict[str, str], name: str, default: bool) -> bool:
    v = opts.get(name)
    if v is None:
        return default
    if v not in ("true", "false"):
        raise OsrmError("InvalidQuery", f"{name} must be true or false, got {v!r}")
    return v == "true"


def _choice(opts: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    v = opts.get(name, default)
    if v not in choices:
        raise OsrmError("InvalidQuery", f"{name} must be one of {', '.join(choices)}, got {v!r}")
    return v


def _number(v: str, name: str) -> float:
    if not _FLOAT.match(v):
        raise OsrmError("InvalidQuery", f"{name} must be a number, got {v!r}")
    return float(v)


def _vehicle(opts: dict[str, str]) -> Vehicle:
    """The extra `vehicle` options of a route request (module doc)."""
    dims = {k: _number(opts[k], k) for k in BOUNDS if k in opts}
    try:
        return make_vehicle(opts.get("vehicle"), **dims)
    except InvalidInput as exc:
        raise OsrmError("InvalidValue", str(exc)) from exc


def _per_coordinate(opts: dict[str, str], name: str, n: int) -> list[str]:
    """Elements of a per-coordinate option ("" = default); [] when absent. Count must equal n."""
    if name not in opts:
        return []
    parts = opts[name].split(";")
    if len(parts) != n:
        raise OsrmError("InvalidOptions", f"Number of elements in {name} size {len(parts)} does not match coordinate size {n}")  # fmt: skip
    return parts


def _indices(opts: dict[str, str], name: str, n: int) -> list[int]:
    v = opts.get(name, "all")
    if v == "all":
        return list(range(n))
    out = []
    for p in v.split(";"):
        if not p.isdigit():
            raise OsrmError("InvalidQuery", f"{name} must be indices separated by ';' or all, got {v!r}")
        if int(p) >= n:
            raise OsrmError("InvalidOptions", f"{name} index {p} is not below the number of coordinates {n}")
        out.append(int(p))
    return out


def _hint(graph_id: bytes, s: Snap) -> str:
    return base64.urlsafe_b64encode(graph_id + struct.pack("<If", s.edge, s.fraction)).decode()


class _Ctx:
    """What every service needs: the router, parsed options, snapped coordinates."""

    def __init__(
        self, state: AppState, request: Request, service: str, profile: str, coordinates: str
    ) -> None:
        if state.router is None:
            raise OsrmError(
                "DisabledDataset", f"the road graph of {state.region.name} is not loaded", status=503
            )
        self.state = state
        self.router: Router = state.router
        self.points, self.format = _coordinates(coordinates)
        self.opts = _options(request, service)
        self.n = len(self.points)
        self.graph_id = hashlib.sha256(str(self.router.g.meta.get("cache_key", "graph")).encode()).digest()[
            :8
        ]
        self.generate_hints = _bool(self.opts, "generate_hints", True)
        self.skip_waypoints = _bool(self.opts, "skip_waypoints", False)
        _choice(self.opts, "snapping", ("default", "any"), "default")
        for h in _per_coordinate(self.opts, "hints", self.n):
            if not _B64.match(h):
                raise OsrmError("InvalidQuery", f"hint {h[:20]!r} is not base64")
        self.radiuses: list[float | None] = [None] * self.n
        for i, r in enumerate(_per_coordinate(self.opts, "radiuses", self.n)):
            if r in ("", "unlimited"):
                continue
            x = _number(r, "radiuses")
            if x < 0:
                raise OsrmError("InvalidOptions", f"radiuses[{i}] must be >= 0")
            self.radiuses[i] = x
        self.bearings: list[tuple[float, float] | None] = [None] * self.n
        for i, b in enumerate(_per_coordinate(self.opts, "bearings", self.n)):
            if b == "":
                continue
            vr = b.split(",")
            if len(vr) != 2 or not all(x.isdigit() for x in vr):
                raise OsrmError("InvalidQuery", f"bearings[{i}] must be value,range (integers), got {b!r}")
            value, rng = int(vr[0]), int(vr[1])
            if value > 360 or rng > 180:
                raise OsrmError("InvalidOptions", f"bearings[{i}]: value 0-360 and range 0-180, got {b!r}")
            self.bearings[i] = (float(value), float(rng))
        self.approaches = [a or "unrestricted" for a in _per_coordinate(self.opts, "approaches", self.n)] or [
            "unrestricted"
        ] * self.n
        for a in self.approaches:
            if a not in ("unrestricted", "curb", "opposite"):
                raise OsrmError(
                    "InvalidQuery", f"approaches must be curb, opposite or unrestricted, got {a!r}"
                )
        self.exclude: list[str] = []
        if self.opts.get("exclude", "") not in ("", "none"):
            self.exclude = self.opts["exclude"].split(",")
            bad = [c for c in self.exclude if c not in EXCLUDABLE]
            if bad:
                raise OsrmError("InvalidValue", f"Exclude flag combination is not supported: {bad[0]!r} (known: {', '.join(EXCLUDABLE)})")  # fmt: skip

    def in_region(self, i: int) -> None:
        """A coordinate outside the served region: OSRM's NoSegment, in the other endpoints' words."""
        lat, lon = self.points[i]
        region = self.state.region
        if not region.contains(lat, lon):
            raise OsrmError(
                "NoSegment",
                f"Could not find a matching segment for coordinate {i}: {region.outside_message(lat, lon)}",
            )

    def snap(self, indices: list[int] | None = None) -> list[tuple[Snap, int, int]]:
        """Snap the coordinates (radiuses, bearings, approaches); NoSegment names the first failure."""
        out = []
        for i in indices if indices is not None else range(self.n):
            self.in_region(i)
            lat, lon = self.points[i]
            got = self.router.snap_filtered(
                lat, lon, radius_m=self.radiuses[i], bearing=self.bearings[i], approach=self.approaches[i]
            )
            if got is None:
                limit = self.router.snapper.max_snap_m
                r = self.radiuses[i]
                within = limit if r is None else min(r, limit)
                raise OsrmError(
                    "NoSegment", f"Could not find a matching segment for coordinate {i} within {within:g} m"
                )
            out.append(got)
        return out

    def waypoint(self, s: Snap, *, nodes: bool = False) -> dict[str, Any]:
        g = self.router.g
        k, r = int(g.edge_name[s.edge]), int(self.router.guide.refs_idx[s.edge])
        w: dict[str, Any] = {
            "name": g.names[k] if k >= 0 else (g.refs[r] if r >= 0 else ""),  # the road number when unnamed
            "location": [round(s.lon, 6), round(s.lat, 6)],
            "distance": round(s.distance_m, 6),
        }
        if self.generate_hints:
            w["hint"] = _hint(self.graph_id, s)
        if nodes:
            w["nodes"] = list(self.router.segment_nodes(s))
        return w


def _respond(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"code": "Ok", **body})


def _geometry(points: list[tuple[float, float]], kind: str) -> Any:
    if len(points) == 1:
        points = [points[0], points[0]]
    if kind == "geojson":
        return {"type": "LineString", "coordinates": [[round(lo, 6), round(la, 6)] for la, lo in points]}
    return encode(points, precision=6 if kind == "polyline6" else 5)


def _intersection(x: Intersection) -> dict[str, Any]:
    out: dict[str, Any] = {
        "location": [round(x.location[1], 6), round(x.location[0], 6)],
        "bearings": list(x.bearings),
        "entry": list(x.entry),
    }
    if x.in_ is not None:
        out["in"] = x.in_
    if x.out is not None:
        out["out"] = x.out
    if x.classes:
        out["classes"] = list(x.classes)
    return out


def _step(s: Step, leg: RouteResult, kind: str) -> dict[str, Any]:
    man: dict[str, Any] = {
        "type": s.type,
        "location": [round(s.location[1], 6), round(s.location[0], 6)],
        "bearing_before": s.bearing_before,
        "bearing_after": s.bearing_after,
    }
    if s.modifier:
        man["modifier"] = s.modifier
    if s.exit is not None:
        man["exit"] = s.exit
    a, b = s.geometry
    out: dict[str, Any] = {
        "distance": round(s.distance_m, 1),
        "duration": round(s.duration_s, 1),
        "weight": round(s.duration_s, 1),
        "name": s.name,
        "mode": "driving",
        "driving_side": "right",
        "maneuver": man,
        "geometry": _geometry(leg.polyline[a : b + 1], kind),
        "intersections": [_intersection(x) for x in s.intersections],
    }
    if s.ref:
        out["ref"] = s.ref
    if s.rotary_name:
        out["rotary_name"] = s.rotary_name
    return out


def _summary(steps: list[Step]) -> str:
    """The names of the two roads driven longest, in the order driven."""
    by: dict[str, float] = {}
    for s in steps:
        label = s.name or s.ref
        if label:
            by[label] = by.get(label, 0.0) + s.distance_m
    top = sorted(by, key=lambda k: -by[k])[:2]
    return ", ".join(k for k in by if k in top)


def _route(r: Router, legs: list[RouteResult], *, steps: bool, kind: str, overview: str, annotations: list[str]) -> dict[str, Any]:  # fmt: skip
    out_legs = []
    for leg in legs:
        item: dict[str, Any] = {
            "distance": round(leg.distance_m, 1),
            "duration": round(leg.duration_s, 1),
            "weight": round(leg.duration_s, 1),
            "summary": _summary(leg.steps) if steps else "",
            "steps": [_step(s, leg, kind) for s in leg.steps] if steps else [],
        }
        if annotations:
            full = r.annotate(leg)
            ann: dict[str, Any] = {}
            for a in annotations:
                if a == "weight":
                    ann["weight"] = full["duration"]
                elif a == "datasources":
                    ann["datasources"] = [0] * len(full["distance"])
                    ann["metadata"] = {"datasource_names": ["traffic"]}
                else:
                    ann[a] = full[a]
            item["annotation"] = ann
        out_legs.append(item)
    dur = sum(leg.duration_s for leg in legs)
    out: dict[str, Any] = {
        "distance": round(sum(leg.distance_m for leg in legs), 1),
        "duration": round(dur, 1),
        "weight": round(dur, 1),
        "weight_name": "duration",
        "legs": out_legs,
    }
    if overview != "false":
        pts: list[tuple[float, float]] = []
        for leg in legs:
            pts.extend(leg.polyline[1:] if pts else leg.polyline)
        if overview == "simplified" and len(pts) > 2:
            from shapely.geometry import LineString

            line = LineString([(lo, la) for la, lo in pts]).simplify(0.00005)
            pts = [(y, x) for x, y in line.coords]
        out["geometry"] = _geometry(pts, kind)
    return out


# ---- services ----------------------------------------------------------------------------------
@router.get(
    "/route/v1/{profile}/{coordinates}",
    openapi_extra=_openapi("route"),
    response_model=_RESPONSES["route"],
    responses=_service_responses(),
)
@_osrm_errors
def osrm_route(
    profile: Profile, coordinates: Coordinates, request: Request, state: AppState = Depends(get_state)
) -> JSONResponse:
    """OSRM route service: fastest route through the coordinates in order (N waypoints, N-1 legs)."""
    c = _Ctx(state, request, "route", profile, coordinates)
    cap = state.settings.osrm_max_waypoints
    if c.n > cap:
        raise OsrmError("TooBig", f"Number of entries {c.n} is higher than current maximum ({cap})")
    if c.n < 2:
        raise OsrmError("InvalidOptions", "Number of coordinates needs to be at least two.")
    alt_v = c.opts.get("alternatives", "false")
    if alt_v in ("true", "false"):
        n_alt = 1 if alt_v == "true" else 0
    elif alt_v.isdigit():
        n_alt = int(alt_v)
    else:
        raise OsrmError("InvalidQuery", f"alternatives must be true, false or a number, got {alt_v!r}")
    if n_alt > MAX_ALTERNATIVES:
        raise OsrmError("TooBig", f"Requested number of alternatives is higher than current maximum ({MAX_ALTERNATIVES})")  # fmt: skip
    want_steps = _bool(c.opts, "steps", False)
    kind = _choice(c.opts, "geometries", ("polyline", "polyline6", "geojson"), "polyline")
    overview = _choice(c.opts, "overview", ("simplified", "full", "false"), "simplified")
    cs = c.opts.get("continue_straight", "default")
    if cs not in ("default", "true", "false"):
        raise OsrmError("InvalidQuery", f"continue_straight must be default, true or false, got {cs!r}")
    ann_v = c.opts.get("annotations", "false")
    if ann_v in ("true", "false"):
        annotations = list(ROUTE_ANNOTATIONS) if ann_v == "true" else []
    else:
        annotations = ann_v.split(",")
        if any(a not in ROUTE_ANNOTATIONS for a in annotations):
            raise OsrmError(
                "InvalidQuery", f"annotations must be true, false or of {', '.join(ROUTE_ANNOTATIONS)}"
            )
    if "waypoints" in c.opts:
        wp = _indices(c.opts, "waypoints", c.n)
        if not wp or wp[0] != 0 or wp[-1] != c.n - 1:
            raise OsrmError("InvalidValue", "First and last coordinates must be specified as waypoints.")
        if wp != list(range(c.n)):
            raise OsrmError("NotImplemented", "waypoints must list every coordinate (silent via points are not offered)")  # fmt: skip
    vehicle = _vehicle(c.opts)
    snapped = c.snap()
    try:
        routes = c.router.route_legs(
            [s for s, _, _ in snapped],
            depart_at=datetime.now(state.region.tz),
            alternatives=n_alt if c.n == 2 else 0,
            steps=want_steps,
            exclude=c.exclude,
            directions=[(a, d) for _, a, d in snapped],
            continue_straight=cs != "false",  # the car profile's default: no U-turn at via points
            vehicle=vehicle,
        )
    except RouteNotFound as exc:
        raise OsrmError("NoRoute", f"Impossible route between points: {exc}") from exc
    body: dict[str, Any] = {
        "routes": [
            _route(c.router, legs, steps=want_steps, kind=kind, overview=overview, annotations=annotations)
            for legs in routes
        ]
    }
    if not c.skip_waypoints:
        body["waypoints"] = [c.waypoint(s) for s, _, _ in snapped]
    return _respond(body)


@router.get(
    "/table/v1/{profile}/{coordinates}",
    openapi_extra=_openapi("table"),
    response_model=_RESPONSES["table"],
    responses=_service_responses(),
)
@_osrm_errors
def osrm_table(
    profile: Profile, coordinates: Coordinates, request: Request, state: AppState = Depends(get_state)
) -> JSONResponse:
    """OSRM table service: durations and/or distances between sources and destinations (our matrix)."""
    c = _Ctx(state, request, "table", profile, coordinates)
    if c.n < 1:
        raise OsrmError("InvalidOptions", "Number of coordinates needs to be at least one.")
    src = _indices(c.opts, "sources", c.n)
    dst = _indices(c.opts, "destinations", c.n)
    cap = state.settings.max_matrix_cells
    if len(src) * len(dst) > cap or c.n > cap:
        raise OsrmError("TooBig", f"Too many table coordinates: {len(src)} x {len(dst)} cells, above the cap of {cap}")  # fmt: skip
    ann = c.opts.get("annotations", "duration").split(",")
    if not ann or any(a not in ("duration", "distance") for a in ann):
        raise OsrmError("InvalidQuery", "annotations must be duration, distance or duration,distance")
    fallback = None
    if "fallback_speed" in c.opts:
        fallback = _number(c.opts["fallback_speed"], "fallback_speed")
        if fallback <= 0:
            raise OsrmError("InvalidOptions", "fallback_speed must be > 0")
    fb_coord = _choice(c.opts, "fallback_coordinate", ("input", "snapped"), "input")
    scale = 1.0
    if "scale_factor" in c.opts:
        scale = _number(c.opts["scale_factor"], "scale_factor")
        if scale <= 0:
            raise OsrmError("InvalidOptions", "scale_factor must be > 0")
    used = sorted(set(src) | set(dst))
    snaps = dict(zip(used, (s for s, _, _ in c.snap(used)), strict=True))
    now = datetime.now(state.region.tz)
    dur = np.full((len(src), len(dst)), np.inf)
    dist = np.full((len(src), len(dst)), np.inf)
    targets = [snaps[j] for j in dst]
    for i, si in enumerate(src):
        dur[i], dist[i] = c.router.one_to_many_snapped(snaps[si], targets, depart_at=now)
    dur *= scale
    body: dict[str, Any] = {}
    cells: list[list[int]] = []
    if fallback is not None:
        for i, si in enumerate(src):
            for j, dj in enumerate(dst):
                if not math.isfinite(dur[i, j]):
                    a = c.points[si] if fb_coord == "input" else (snaps[si].lat, snaps[si].lon)
                    b = c.points[dj] if fb_coord == "input" else (snaps[dj].lat, snaps[dj].lon)
                    dist[i, j] = haversine_m(a[0], a[1], b[0], b[1])
                    dur[i, j] = dist[i, j] / fallback * scale
                    cells.append([i, j])
    if "duration" in ann:
        body["durations"] = _cells(dur)
    if "distance" in ann:
        body["distances"] = _cells(dist)
    if fallback is not None:
        body["fallback_speed_cells"] = cells
    if not c.skip_waypoints:
        body["sources"] = [c.waypoint(snaps[i]) for i in src]
        body["destinations"] = [c.waypoint(snaps[j]) for j in dst]
    return _respond(body)


def _cells(a: np.ndarray) -> list[list[float | None]]:
    return [[round(float(v), 1) if math.isfinite(v) else None for v in row] for row in a]


@router.get(
    "/nearest/v1/{profile}/{coordinates}",
    openapi_extra=_openapi("nearest"),
    response_model=_RESPONSES["nearest"],
    responses=_service_responses(),
)
@_osrm_errors
def osrm_nearest(
    profile: Profile, coordinates: Coordinates, request: Request, state: AppState = Depends(get_state)
) -> JSONResponse:
    """OSRM nearest service: the `number` nearest road segments to one coordinate."""
    c = _Ctx(state, request, "nearest", profile, coordinates)
    if c.n != 1:
        raise OsrmError("InvalidOptions", "Only one input coordinate is supported")
    v = c.opts.get("number", "1")
    if not v.isdigit() or int(v) < 1:
        raise OsrmError("InvalidQuery", f"number must be an integer >= 1, got {v!r}")
    cap = state.settings.osrm_max_nearest
    if int(v) > cap:
        raise OsrmError("TooBig", f"Number of results {v} is higher than current maximum ({cap})")
    c.in_region(0)
    lat, lon = c.points[0]
    found = c.router.nearest(lat, lon, number=int(v), radius_m=c.radiuses[0], bearing=c.bearings[0])
    if not found:
        raise OsrmError("NoSegment", "Could not find a matching segments for coordinate")
    return _respond({} if c.skip_waypoints else {"waypoints": [c.waypoint(s, nodes=True) for s in found]})


# ---- everything else under an OSRM-looking path --------------------------------------------------
def _other_version(service: str, version: str, profile: str, coordinates: str) -> JSONResponse:
    if version != "v1":
        raise OsrmError("InvalidVersion", f"Version {version!r} is not found: this server speaks v1")
    raise OsrmError("InvalidService", f"Service {service!r} is not offered here (route, table, nearest)")


for _service in (*SERVICES, *OTHER_SERVICES):
    router.add_api_route(
        f"/{_service}/{{version}}/{{profile}}/{{coordinates}}",
        lambda version, profile, coordinates, _s=_service: _other_version(_s, version, profile, coordinates),
        methods=["GET"],
        include_in_schema=False,
    )


@router.get("/{service}/v1/{profile}/{coordinates}", include_in_schema=False)
def osrm_unknown_service(service: str, profile: str, coordinates: str) -> JSONResponse:
    """An OSRM URL naming a service that does not exist (registered last: never shadows a route)."""
    raise OsrmError("InvalidService", f"Service {service!r} not found (route, table, nearest)")


@router.get("/{service}/v1/{profile}", include_in_schema=False)
def osrm_no_coordinates(service: str, profile: str) -> JSONResponse:
    """An OSRM URL without coordinates."""
    raise OsrmError("InvalidUrl", f"URL string malformed: /{service}/v1/{profile} has no coordinates")


def osrm_error(exc: Exception) -> OsrmError:
    """A project error raised while serving OSRM, in OSRM's terms (api/_errors.py answers it)."""
    if isinstance(exc, OsrmError):
        return exc
    if isinstance(exc, NoRoadNear):
        return OsrmError("NoSegment", exc.message)
    if isinstance(exc, InvalidInput):
        return OsrmError("InvalidValue", f"{exc.param}: {exc.message}")
    if isinstance(exc, RouteNotFound):
        return OsrmError("NoRoute", str(exc))
    return OsrmError("InvalidQuery", str(exc))
