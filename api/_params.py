"""Query parameters shared by the endpoints: their types for the OpenAPI schema, and the rules no type
can say.

Typed parameters (`Lat`, `CoordQ`, `LimitQ`, ...) are checked by FastAPI before the endpoint runs; a
broken rule is a 422 naming the parameter in the user's words (api/_errors.py). What a type cannot say
stays here as a parser (a "lat,lon" pair, a bbox, a date within the allowed window, limits read from
the settings) and is still declared in the schema with its pattern and description. Every rule broken
in a parser raises InvalidInput(param, rule). An empty query value (`?grade=`) means the parameter
is absent (`BlankQueryIsAbsent`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api._models import Coord, Grade
from api._query import QueryModel
from api._security import request_settings
from config import Region, Settings
from geo._coords import from_wgs84, to_wgs84
from geo._errors import InvalidInput, OutsideRegion
from geo._pricing import normalize_grade
from geo._ranking import MAX_CONSUMPTION_L_100KM, MAX_VALUE_OF_TIME_CNY_H, MIN_CONSUMPTION_L_100KM
from geo._vehicle import Vehicle, make_vehicle

NearbySort = Literal["distance", "price", "effective_price", "score", "eta", "total_cost"]
AlongRouteSort = Literal["total_cost", "detour", "along"]
PRICE_SORTS: tuple[str, ...] = ("price", "effective_price", "score", "total_cost")
MAX_LITRES = 1_000.0
MAX_AMOUNT_CNY = 20_000.0
MAX_TANK_L = 1_000.0
DEFAULT_CORRIDOR_M = 1_000.0
MAX_CORRIDOR_M = 5_000.0
MAX_RANGE_KM = 2_000.0
MAX_ID = 2**63 - 1  # PostgreSQL bigint

_NUMBER = r"[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?"
LAT_LON_PATTERN = rf"^ *{_NUMBER} *, *{_NUMBER} *$"
BBOX_PATTERN = rf"^ *{_NUMBER} *, *{_NUMBER} *, *{_NUMBER} *, *{_NUMBER} *$"
PAYMENT_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"
SETTING_MAXIMUM = "x-maximum-setting"  # the schema's maximum is this settings field (api/_docs.py)
SETTING_MAX_ITEMS = "x-max-items-setting"  # the same for the length of a list


# ---- typed parameters (what /openapi.json says) -----------------------------------------------------


def lowercase(value: Any) -> Any:
    """Choices are case-insensitive: 'GCJ02' is gcj02."""
    return value.strip().lower() if isinstance(value, str) else value


def grade_code(value: Any) -> Any:
    """'95#' and ' 0# ' are grades 95 and 0; anything else is left for the choice check to refuse."""
    return (normalize_grade(value) or value) if isinstance(value, str) else value


# origin and destination of a route, as "lat,lon" in the request's `coord`
FromQ = Annotated[
    str,
    Query(
        alias="from",
        description="origin: lat,lon in `coord`",
        json_schema_extra={"pattern": LAT_LON_PATTERN},
        examples=["42.5063,1.5218"],
    ),
]
ToQ = Annotated[
    str,
    Query(
        description="destination: lat,lon in `coord`",
        json_schema_extra={"pattern": LAT_LON_PATTERN},
        examples=["42.5347,1.5800"],
    ),
]
Lat = Annotated[
    float,
    Query(ge=-90, le=90, allow_inf_nan=False, description="latitude, in `coord`", examples=[26.8721]),
]
Lon = Annotated[
    float,
    Query(ge=-180, le=180, allow_inf_nan=False, description="longitude, in `coord`", examples=[100.2297]),
]
CoordQ = Annotated[
    Coord,
    BeforeValidator(lowercase),
    Query(
        description="coordinate system of the input and output: wgs84 (GPS), gcj02 (WeChat and Chinese "
        "map SDKs) or bd09 (Baidu)"
    ),
]
GradeQ = Annotated[
    Grade | None,
    BeforeValidator(grade_code),
    Query(description="fuel grade: 89, 92, 95, 98 or 0 (diesel); `95#` is accepted too", examples=["92"]),
]
AtQ = Annotated[
    str | None,
    Query(
        description="ISO-8601 date-time; without an offset it is the region's local time; default now; "
        "within FUEL_MAX_DATE_OFFSET_DAYS (730) of now",
        json_schema_extra={"format": "date-time"},
        examples=["2026-11-28T08:30:00+08:00"],
    ),
]
LimitQ = Annotated[
    int | None,
    Query(
        ge=1,
        description="how many results, at most FUEL_MAX_LIMIT (default 20)",
        json_schema_extra={SETTING_MAXIMUM: "max_limit"},
    ),
]
BBoxQ = Annotated[
    str,
    Query(
        description="west,south,east,north in degrees (in `coord`); west < east, south < north",
        json_schema_extra={"pattern": BBOX_PATTERN},
        examples=["100.18,26.82,100.28,26.92"],
    ),
]
MemberQ = Annotated[bool, Query(description="the driver is a member (members-only and top-up offers apply)")]
PaymentQ = Annotated[
    str | None,
    Query(
        description="payment method, e.g. wechat, alipay, card, cash (offers tied to a payment method)",
        json_schema_extra={"pattern": PAYMENT_PATTERN},
        examples=["wechat"],
    ),
]
LitresQ = Annotated[
    float | None,
    Query(gt=0, le=MAX_LITRES, allow_inf_nan=False, description="litres bought (default 40)"),
]
AmountQ = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_AMOUNT_CNY,
        allow_inf_nan=False,
        description="total_cost: CNY to spend instead of litres (litres at the nearest station's price)",
    ),
]
TankQ = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_TANK_L,
        allow_inf_nan=False,
        description="total_cost: tank size in litres, with fill_level, instead of litres",
    ),
]
FillLevelQ = Annotated[
    float | None,
    Query(
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="total_cost: how full the tank is now, 0 to below 1; litres = tank_l x (1 - fill_level)",
    ),
]
ConsumptionQ = Annotated[
    float | None,
    Query(
        ge=MIN_CONSUMPTION_L_100KM,
        le=MAX_CONSUMPTION_L_100KM,
        allow_inf_nan=False,
        description="total_cost: the car's litres per 100 km (default 8)",
    ),
]
ValueOfTimeQ = Annotated[
    float | None,
    Query(
        ge=0,
        le=MAX_VALUE_OF_TIME_CNY_H,
        allow_inf_nan=False,
        description="total_cost: CNY per hour of driving (default FUEL_VALUE_OF_TIME_CNY_H, 30)",
    ),
]
VehicleKind = Literal["car", "van", "truck"]
VehicleQ = Annotated[
    VehicleKind,
    BeforeValidator(lowercase),
    Query(description="car (default), van or truck: a van or truck keeps off roads whose limits it exceeds"),
]
HeightQ = Annotated[float | None, Query(description="van/truck height, m (1-6; default van 2.6, truck 4)")]
WeightQ = Annotated[
    float | None, Query(description="van/truck weight, t (0.5-100; default van 3.5, truck 18)")
]
WidthQ = Annotated[float | None, Query(description="van/truck width, m (1-4; default van 2.1, truck 2.55)")]
LengthQ = Annotated[float | None, Query(description="van/truck length, m (2-40; default van 6, truck 12)")]


async def vehicle_query(
    vehicle: VehicleQ = "car",
    height_m: HeightQ = None,
    weight_t: WeightQ = None,
    width_m: WidthQ = None,
    length_m: LengthQ = None,
) -> Vehicle:
    """The vehicle query parameters of every endpoint that drives (route, nearby by ETA or total cost,
    along-route): the vehicle with its dimensions checked (`geo._vehicle.make_vehicle`: a 422 naming the
    parameter out of range)."""
    return make_vehicle(vehicle, height_m=height_m, weight_t=weight_t, width_m=width_m, length_m=length_m)


def _vehicle_of(m: VehicleQuery | VehicleBody) -> Vehicle:
    return make_vehicle(
        m.vehicle, height_m=m.height_m, weight_t=m.weight_t, width_m=m.width_m, length_m=m.length_m
    )


class VehicleQuery(QueryModel):
    """The vehicle query parameters as fields of a query model (api/_query.py), as vehicle_query."""

    vehicle: VehicleQ = "car"
    height_m: HeightQ = None
    weight_t: WeightQ = None
    width_m: WidthQ = None
    length_m: LengthQ = None

    def as_vehicle(self) -> Vehicle:
        return _vehicle_of(self)


class VehicleBody(BaseModel):
    """The same vehicle fields in a JSON body (POST along-route, matrix)."""

    model_config = ConfigDict(extra="forbid")
    vehicle: Annotated[VehicleKind, BeforeValidator(lowercase)] = Field(
        "car",
        description="car (default), van or truck: a van or truck keeps off roads whose limits it exceeds",
    )
    height_m: float | None = Field(None, description="van/truck height, m (1-6; default van 2.6, truck 4)")
    weight_t: float | None = Field(
        None, description="van/truck weight, t (0.5-100; default van 3.5, truck 18)"
    )
    width_m: float | None = Field(None, description="van/truck width, m (1-4; default van 2.1, truck 2.55)")
    length_m: float | None = Field(None, description="van/truck length, m (2-40; default van 6, truck 12)")

    def as_vehicle(self) -> Vehicle:
        return _vehicle_of(self)


def at_most(
    value: float | None, param: str, hi: float, *, lo: float | None = None, lo_open: bool = False
) -> None:
    """A limit that comes from the settings (the schema shows it too, see SETTING_MAXIMUM)."""
    if value is not None and value > hi:
        raise InvalidInput(param, f"{range_rule(lo, hi, lo_open=lo_open)}, got {_num(value)}")


def range_rule(lo: float | None, hi: float | None, *, lo_open: bool = False, hi_open: bool = False) -> str:
    """'must be between -90 and 90', 'must be more than 0 and at most 5000', 'must be at least 1'."""
    if lo is not None and hi is not None and not lo_open and not hi_open:
        return f"must be between {_num(lo)} and {_num(hi)}"
    parts = []
    if lo is not None:
        parts.append(("more than " if lo_open else "at least ") + _num(lo))
    if hi is not None:
        parts.append(("less than " if hi_open else "at most ") + _num(hi))
    return "must be " + " and ".join(parts)


def _num(x: float) -> str:
    if isinstance(x, int):
        return str(x)
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


# ---- empty query values -----------------------------------------------------------------------------

_Scope = MutableMapping[str, Any]
_App = Callable[[_Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def _may_have_blanks(raw: bytes) -> bool:
    """False only when no value of the query string can be blank: every pair has `=`, none is `k=` (then &
    or the end), none starts with an encoded byte or a `+` (a space), and no byte is a space itself. The
    cheap test before parsing it (most queries have no blank value)."""
    return (
        raw.endswith(b"=")
        or b"=&" in raw
        or b"=+" in raw
        or b"=%" in raw
        or raw.count(b"=") <= raw.count(b"&")
        or any(c in raw for c in (b" ", b"\t", b"\r", b"\n", b"\x0b", b"\x0c"))
    )


class BlankQueryIsAbsent:
    """`?grade=&limit=` means grade and limit were not given (as a form leaves its empty fields), for the
    service's own endpoints under /v1/; the OSRM services read their options as sent."""

    def __init__(self, app: _App) -> None:
        self.app = app

    async def __call__(self, scope: _Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/v1/"):
            raw: bytes = scope.get("query_string", b"")
            if raw and _may_have_blanks(raw):
                pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
                kept = [(k, v) for k, v in pairs if v.strip()]
                if len(kept) != len(pairs):
                    scope = dict(scope)
                    scope["query_string"] = urlencode(kept, encoding="latin-1").encode("latin-1")
        await self.app(scope, receive, send)


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
    if (lo is not None and (x <= lo if lo_open else x < lo)) or (hi is not None and x > hi):
        raise InvalidInput(param, f"{range_rule(lo, hi, lo_open=lo_open)}, got {_num(x)}")
    return x


def parse_lat(value: str | None, param: str = "lat") -> float:
    x = parse_float(value, param, lo=-90.0, hi=90.0)
    assert x is not None
    return x


def parse_lon(value: str | None, param: str = "lon") -> float:
    x = parse_float(value, param, lo=-180.0, hi=180.0)
    assert x is not None
    return x


# Conversions are geo._coords' (identity outside China); the api names are kept as plain aliases.
point_to_wgs84 = to_wgs84
point_from_wgs84 = from_wgs84


def in_region(
    region: Region, point: tuple[float, float], param: str, *, what: str = ""
) -> tuple[float, float]:
    """The WGS-84 (lat, lon), or 422 OutsideRegion naming `param`, in the wording of nearby's note
    (config.Region.outside_message); `what` prefixes the message ("point 3: ")."""
    if not region.contains(point[0], point[1]):
        raise OutsideRegion(param, what + region.outside_message(point[0], point[1]))
    return point


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


def parse_sort(sort: str, grade: str | None) -> str:
    """The nearby ranking; the price sorts compare the price of `grade`, which they need."""
    if sort in PRICE_SORTS and grade is None:
        raise InvalidInput("grade", f"is required with sort={sort} (the grade whose price is compared)")
    return sort


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
