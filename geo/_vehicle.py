"""Vehicles: who drives (car, van, truck), their dimensions, and the road limits that apply to them (pure).

Road limits (per way, both directions): `maxheight`, `maxweight`, `maxwidth`, `maxlength`, each the
smallest of the legal key and its `:physical` variant (a sign and a bridge's real clearance both bind).
Values: a number in metres / tonnes ("3.5", "3.5 m", "350 cm", "11'6\"", "7.5 t", "7500 kg", "12 st"
is not one), or `default` / `none` / `below_default` / anything unparsable: no usable limit (inf).
A node carrying one of these keys (a height restrictor, a low bridge mapped as a node) limits every road
edge whose geometry passes through it.

Goods vehicles (`hgv`, with `hgv:forward` / `hgv:backward`, read like the access keys of `geo._access`):
`no` (and the other denying values) keeps trucks out; `destination` / `delivery` / `private` lets a
truck start or end there but carries no truck through traffic (the restricted-road entry cost).

Who is bound by what:
- `car`: nothing new (the car profile of `geo._access`);
- `van`: the four dimensions only;
- `truck`: the four dimensions and the hgv keys.
A road edge is closed to a vehicle when any dimension of the vehicle exceeds the edge's limit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from geo._access import ALLOW, DENY, RESTRICT, classify
from geo._errors import InvalidInput

VehicleKind = Literal["car", "van", "truck"]
VEHICLE_KINDS: tuple[str, ...] = ("car", "van", "truck")
LIMIT_KEYS = ("maxheight", "maxweight", "maxwidth", "maxlength")
HGV_KEYS = ("hgv", "hgv:forward", "hgv:backward")
NODE_LIMIT_KEYS = (*LIMIT_KEYS, "maxheight:physical", "maxwidth:physical")
# what a request may ask for, and what a van / truck is assumed to measure when a dimension is not given
BOUNDS = {"height_m": (1.0, 6.0), "weight_t": (0.5, 100.0), "width_m": (1.0, 4.0), "length_m": (2.0, 40.0)}
DEFAULTS: dict[str, dict[str, float]] = {
    "van": {"height_m": 2.6, "weight_t": 3.5, "width_m": 2.1, "length_m": 6.0},
    "truck": {"height_m": 4.0, "weight_t": 18.0, "width_m": 2.55, "length_m": 12.0},
}
NO_LIMIT = frozenset({"default", "none", "below_default", "no", "unsigned", "unknown"})

_FEET_INCHES = re.compile(r"^(\d+(?:\.\d+)?)\s*'\s*(?:(\d+(?:\.\d+)?)\s*(?:\"|''))?$")
_NUMBER_UNIT = re.compile(r"^(\d+(?:[.,]\d+)?)\s*([a-z]*)\.?$")
_LENGTH_UNITS = {"": 1.0, "m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0, "cm": 0.01,
                 "ft": 0.3048, "feet": 0.3048, "mi": 1609.344}  # fmt: skip
_WEIGHT_UNITS = {"": 1.0, "t": 1.0, "tonne": 1.0, "tonnes": 1.0, "ton": 1.0, "tons": 1.0, "kg": 0.001,
                 "lbs": 0.00045359237, "lb": 0.00045359237, "st": 0.90718474}  # fmt: skip


def parse_length_m(value: str | None) -> float:
    """Metres of a maxheight/maxwidth/maxlength value; inf for no usable limit (module doc)."""
    if value is None:
        return math.inf
    v = value.strip().lower().replace("\u2032", "'").replace("\u2033", '"')
    if not v or v in NO_LIMIT:
        return math.inf
    m = _FEET_INCHES.match(v)
    if m:
        return float(m.group(1)) * 0.3048 + float(m.group(2) or 0.0) * 0.0254
    return _number(v, _LENGTH_UNITS)


def parse_weight_t(value: str | None) -> float:
    """Tonnes of a maxweight value; inf for no usable limit (module doc)."""
    if value is None:
        return math.inf
    v = value.strip().lower()
    if not v or v in NO_LIMIT:
        return math.inf
    return _number(v, _WEIGHT_UNITS)


def _number(v: str, units: dict[str, float]) -> float:
    m = _NUMBER_UNIT.match(v)
    if not m or m.group(2) not in units:
        return math.inf
    x = float(m.group(1).replace(",", ".")) * units[m.group(2)]
    return x if x > 0 else math.inf


def way_limits(tags: dict[str, str]) -> tuple[float, float, float, float]:
    """(height m, weight t, width m, length m) limits of a way or node; inf where none."""
    h = min(parse_length_m(tags.get("maxheight")), parse_length_m(tags.get("maxheight:physical")))
    w = parse_weight_t(tags.get("maxweight"))
    wd = min(parse_length_m(tags.get("maxwidth")), parse_length_m(tags.get("maxwidth:physical")))
    ln = parse_length_m(tags.get("maxlength"))
    return h, w, wd, ln


def hgv_access(tags: dict[str, str]) -> tuple[int, int]:
    """(forward, backward) goods-vehicle decision (ALLOW, RESTRICT, DENY) from the hgv keys."""
    out = []
    for d in ("forward", "backward"):
        decided = ALLOW
        for k in ("hgv", f"hgv:{d}"):
            if k in tags:
                decided = classify(tags[k])
        out.append(decided)
    return out[0], out[1]


@dataclass(frozen=True)
class Vehicle:
    """A vehicle asking for a route. `car` has no dimensions (inf)."""

    kind: VehicleKind = "car"
    height_m: float = math.inf
    weight_t: float = math.inf
    width_m: float = math.inf
    length_m: float = math.inf

    @property
    def is_car(self) -> bool:
        return self.kind == "car"


CAR = Vehicle()


def make_vehicle(kind: str | None, **dims: float | None) -> Vehicle:
    """A validated Vehicle: `kind` car (default), van or truck; dimensions (height_m, weight_t, width_m,
    length_m) only for van and truck, within `BOUNDS`, the kind's `DEFAULTS` where not given.
    Raises InvalidInput naming the bad parameter."""
    k = (kind or "car").strip().lower()
    if k not in VEHICLE_KINDS:
        raise InvalidInput("vehicle", f"must be one of {', '.join(VEHICLE_KINDS)}, got {kind!r}")
    unknown = sorted(set(dims) - set(BOUNDS))
    if unknown:
        raise InvalidInput(unknown[0], "is not a vehicle dimension")
    given = {name: v for name, v in dims.items() if v is not None}
    if k == "car":
        if given:
            name = sorted(given)[0]
            raise InvalidInput(name, "vehicle dimensions need vehicle=van or vehicle=truck")
        return CAR
    out: dict[str, float] = {}
    for name, (lo, hi) in BOUNDS.items():
        v = given.get(name, DEFAULTS[k][name])
        if not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
            raise InvalidInput(name, f"must be a number from {lo:g} to {hi:g}, got {v!r}")
        out[name] = float(v)
    return Vehicle(k, **out)  # type: ignore[arg-type]


def closed_edges(
    vehicle: Vehicle,
    limits: np.ndarray,
    hgv: np.ndarray,
) -> np.ndarray:
    """Bool per road edge: closed to `vehicle`. `limits` float32 [m, 4] (height, weight, width, length;
    inf for none), `hgv` uint8 [m] (ALLOW, RESTRICT, DENY)."""
    m = limits.shape[0]
    if vehicle.is_car or m == 0:
        return np.zeros(m, bool)
    dims = np.array([vehicle.height_m, vehicle.weight_t, vehicle.width_m, vehicle.length_m], np.float64)
    closed = (limits.astype(np.float64) < dims[None, :]).any(axis=1)
    if vehicle.kind == "truck" and hgv.shape[0] == m:
        closed |= hgv == DENY
    return np.asarray(closed)


def restricted_edges(vehicle: Vehicle, hgv: np.ndarray) -> np.ndarray:
    """Bool per road edge: no through traffic for `vehicle` beyond the car profile (truck: hgv=destination)."""
    if vehicle.kind != "truck":
        return np.zeros(hgv.shape[0], bool)
    return np.asarray(hgv == RESTRICT)


__all__ = [
    "BOUNDS",
    "CAR",
    "DEFAULTS",
    "LIMIT_KEYS",
    "VEHICLE_KINDS",
    "Vehicle",
    "closed_edges",
    "hgv_access",
    "make_vehicle",
    "parse_length_m",
    "parse_weight_t",
    "restricted_edges",
    "way_limits",
]
