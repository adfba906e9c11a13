"""Query-parameter parsing shared by the endpoints. Every rule broken raises InvalidInput(param, rule),
which api/_errors.py turns into a 422 naming the parameter. Values arrive as strings so that NaN,
inf and malformed numbers get the same clear message."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from api._security import request_settings
from config import Settings
from geo._coords import from_wgs84, to_wgs84
from geo._errors import InvalidInput
from geo._pricing import KNOWN_GRADES, normalize_grade

COORD_SYSTEMS: tuple[str, ...] = ("wgs84", "gcj02", "bd09")
NEARBY_SORTS: tuple[str, ...] = ("distance", "price", "effective_price", "score", "eta", "total_cost")
PRICE_SORTS: tuple[str, ...] = ("price", "effective_price", "score", "total_cost")
ALONG_ROUTE_SORTS: tuple[str, ...] = ("total_cost", "detour", "along")
MAX_LITRES = 1_000.0
MAX_AMOUNT_CNY = 20_000.0
MAX_TANK_L = 1_000.0
DEFAULT_CORRIDOR_M = 1_000.0
MAX_CORRIDOR_M = 5_000.0
MAX_RANGE_KM = 2_000.0


def parse_float(
    value: str | float | None,
    param: str,
    *,
    required: bool = True,
    default: float | None = None,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> float | None:
    """A finite number, optionally in [lo, hi] (or (lo, hi] with lo_open)."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        if required:
            raise InvalidInput(param, "is required")
        return default
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(param, f"must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise InvalidInput(param, f"must be a finite number, got {value!r}")
    if lo is not None and (x <= lo if lo_open else x < lo):
        raise InvalidInput(param, f"must be {'>' if lo_open else '>='} {lo:g}, got {x:g}")
    if hi is not None and x > hi:
        raise InvalidInput(param, f"must be <= {hi:g}, got {x:g}")
    return x


def parse_lat(value: str | None, param: str = "lat") -> float:
    x = parse_float(value, param, lo=-90.0, hi=90.0)
    assert x is not None
    return x


def parse_lon(value: str | None, param: str = "lon") -> float:
    x = parse_float(value, param, lo=-180.0, hi=180.0)
    assert x is not None
    return x


def parse_int(value: str | None, param: str, *, default: int, lo: int, hi: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        x = int(value.strip())
    except ValueError:
        raise InvalidInput(param, f"must be an integer, got {value!r}") from None
    if x < lo or x > hi:
        raise InvalidInput(param, f"must be between {lo} and {hi}, got {x}")
    return x


def parse_coord(value: str | None, param: str = "coord") -> str:
    if value is None or value.strip() == "":
        return "wgs84"
    v = value.strip().lower()
    if v not in COORD_SYSTEMS:
        raise InvalidInput(param, f"must be one of {', '.join(COORD_SYSTEMS)}, got {value!r}")
    return v


# Conversions are geo._coords' (identity outside China); the api names are kept as plain aliases.
point_to_wgs84 = to_wgs84
point_from_wgs84 = from_wgs84


def point_out(lat: float, lon: float, coord: str) -> tuple[float, float]:
    """A WGS-84 point in `coord` for a response: (lat, lon) rounded to 7 decimals (about 1 cm)."""
    a, b = from_wgs84(lat, lon, coord)
    return round(a, 7), round(b, 7)


def bbox_to_wgs84(
    west: float, south: float, east: float, north: float, coord: str
) -> tuple[float, float, float, float]:
    """A box given in `coord` as the WGS-84 box around its four converted corners (west, south, east,
    north); unchanged for wgs84. An unknown `coord` is an InvalidInput on param `coord`."""
    if coord == "wgs84":
        return west, south, east, north
    try:
        corners = [
            to_wgs84(a, b, coord) for a, b in ((south, west), (south, east), (north, west), (north, east))
        ]
    except ValueError as exc:
        raise InvalidInput("coord", str(exc)) from None
    lats, lons = [c[0] for c in corners], [c[1] for c in corners]
    return min(lons), min(lats), max(lons), max(lats)


def parse_grade(value: str | None, param: str = "grade") -> str | None:
    if value is None or value.strip() == "":
        return None
    g = normalize_grade(value)
    if g is None:
        raise InvalidInput(param, f"unknown grade {value!r} (known: {', '.join(KNOWN_GRADES)})")
    return g


def parse_sort(value: str | None, grade: str | None, param: str = "sort") -> str:
    if value is None or value.strip() == "":
        return "distance"
    v = value.strip().lower()
    if v not in NEARBY_SORTS:
        raise InvalidInput(param, f"must be one of {', '.join(NEARBY_SORTS)}, got {value!r}")
    if v in PRICE_SORTS and grade is None:
        raise InvalidInput("grade", f"is required with sort={v} (the grade whose price is compared)")
    return v


def date_window_days() -> int:
    """How far from now a date in a request may lie (settings.max_date_offset_days)."""
    settings = request_settings()
    if settings is not None:
        return settings.max_date_offset_days
    default = Settings.model_fields["max_date_offset_days"].default
    return int(default)


def parse_at(value: str | None, tz: tzinfo, param: str = "at", *, window_days: int | None = None) -> datetime:
    """ISO-8601 with or without offset; naive = the region's local time. Default: now. Aware result,
    within `window_days` (default: the settings' max_date_offset_days) of now."""
    now = datetime.now(tz)
    if value is None or value.strip() == "":
        return now
    text = value.strip()
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            param, f"must be an ISO-8601 date-time like 2026-11-28T08:30:00+08:00, got {value!r}"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=tz)
    days = window_days if window_days is not None else date_window_days()
    try:
        at = at.astimezone(tz)
        outside = abs(at - now) > timedelta(days=days)
    except (OverflowError, ValueError):
        outside = True
    if outside:
        raise InvalidInput(param, f"must be within {days} days of now, got {value!r}")
    return at


def parse_bool(value: str | None, param: str, *, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(param, f"must be true or false, got {value!r}")


def parse_payment(value: str | None, param: str = "payment") -> str | None:
    if value is None or value.strip() == "":
        return None
    v = value.strip().lower()
    if len(v) > 40 or not all(c.isalnum() or c in "_-" for c in v):
        raise InvalidInput(param, "must be a short payment method name such as wechat, alipay, card, cash")
    return v


def parse_bbox(value: str | None, param: str = "bbox") -> tuple[float, float, float, float]:
    """west,south,east,north (degrees); west < east (no antimeridian crossing), south < north."""
    if value is None or value.strip() == "":
        raise InvalidInput(param, "is required: west,south,east,north")
    parts = value.split(",")
    if len(parts) != 4:
        raise InvalidInput(param, f"must be 4 numbers west,south,east,north, got {value!r}")
    nums: list[float] = []
    for i, p in enumerate(parts):
        x = parse_float(p, param, lo=-90.0 if i % 2 else -180.0, hi=90.0 if i % 2 else 180.0)
        assert x is not None
        nums.append(x)
    west, south, east, north = nums
    if west >= east:
        raise InvalidInput(param, "west must be less than east")
    if south >= north:
        raise InvalidInput(param, "south must be less than north")
    return west, south, east, north


def parse_choice(value: str | None, param: str, choices: tuple[str, ...], *, default: str) -> str:
    """One of `choices` (case-insensitive), `default` when absent."""
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v not in choices:
        raise InvalidInput(param, f"must be one of {', '.join(choices)}, got {value!r}")
    return v


@dataclass(frozen=True)
class FillSpec:
    """How much fuel the driver buys: at most one of litres, amount_cny, tank_l + fill_level."""

    litres: float | None = None
    amount_cny: float | None = None
    tank_l: float | None = None
    fill_level: float | None = None


def parse_fill(
    litres: str | float | None,
    amount_cny: str | float | None,
    tank_l: str | float | None,
    fill_level: str | float | None,
) -> FillSpec:
    """litres in (0, MAX_LITRES]; or amount_cny in (0, MAX_AMOUNT_CNY]; or tank_l in (0, MAX_TANK_L]
    with fill_level in [0, 1) (litres = tank_l * (1 - fill_level)). Only one way at a time."""
    lit = parse_float(litres, "litres", required=False, lo=0.0, lo_open=True, hi=MAX_LITRES)
    amt = parse_float(amount_cny, "amount_cny", required=False, lo=0.0, lo_open=True, hi=MAX_AMOUNT_CNY)
    tank = parse_float(tank_l, "tank_l", required=False, lo=0.0, lo_open=True, hi=MAX_TANK_L)
    fill = parse_float(fill_level, "fill_level", required=False, lo=0.0, hi=1.0)
    if fill is not None and fill >= 1.0:
        raise InvalidInput("fill_level", "must be below 1 (a full tank needs no fuel)")
    if (tank is None) != (fill is None):
        missing = "fill_level" if fill is None else "tank_l"
        raise InvalidInput(missing, "tank_l and fill_level go together (litres = tank_l x (1 - fill_level))")
    given = [n for n, v in (("litres", lit), ("amount_cny", amt), ("tank_l", tank)) if v is not None]
    if len(given) > 1:
        raise InvalidInput(
            given[1], f"give only one of litres, amount_cny, tank_l + fill_level (got {given})"
        )
    return FillSpec(lit, amt, tank, fill)
