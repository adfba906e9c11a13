"""OSM `maxspeed` parsing and the free-flow speed of a road edge.

Parsing rules (`parse_maxspeed`), all results in km/h, NaN when unknown:
- plain numbers and explicit units: "60", "60 km/h", "60kmh", "60 kph", "35 mph", "35mph";
- lists "60;80" (a way tagged with several values, usually conditional or per-lane): the LOWEST value,
  because a router that assumes the higher one would promise arrival times the driver cannot keep;
- country zone codes "CN:urban", "DE:rural", "RU:motorway", "DE:zone30", "DE:zone:30": from
  `ZONE_KMH` below (statutory defaults of each country's road-traffic rules); an unknown code is NaN;
- "walk" (walking pace, living streets): `WALK_KMH` = 6 km/h;
- "none" (no statutory limit, e.g. German Autobahn), "signals" / "variable" (set by signs that change),
  and anything unparsable or outside (0, 300]: NaN, so the road-class default applies.

Free-flow speed (`freeflow_mps`): 90 % of the parsed maxspeed when there is one (drivers rarely hold
the limit over a whole segment: junctions, bends, slopes), else the region's speed for the road class
(`Region.speeds_kmh`), else `FALLBACK_KMH` for the class, else 30 km/h.
"""

from __future__ import annotations

import math
import re

MPH_KMH = 1.609344
WALK_KMH = 6.0
MAXSPEED_FACTOR = 0.9
DEFAULT_FALLBACK_KMH = 30.0

# Statutory default limits by zone code, km/h. Sources: the OSM wiki "Default speed limits" page and
# the national rules it cites. China (道路交通安全法实施条例 art. 45/78): 50 on an urban road with one
# lane per direction, 70 on other roads with one lane per direction, 120 on expressways.
ZONE_KMH: dict[str, float] = {
    "CN:urban": 50.0,
    "CN:rural": 70.0,
    "CN:motorway": 120.0,
    "CN:expressway": 120.0,
    "DE:urban": 50.0,
    "DE:rural": 100.0,
    "DE:living_street": 7.0,
    "DE:bicycle_road": 30.0,
    "DE:motorway": 130.0,  # no limit; 130 is the advisory speed (Richtgeschwindigkeit)
    "AT:urban": 50.0,
    "AT:rural": 100.0,
    "AT:motorway": 130.0,
    "CH:urban": 50.0,
    "CH:rural": 80.0,
    "CH:motorway": 120.0,
    "FR:urban": 50.0,
    "FR:rural": 80.0,
    "FR:motorway": 130.0,
    "ES:urban": 50.0,
    "ES:rural": 90.0,
    "ES:motorway": 120.0,
    "IT:urban": 50.0,
    "IT:rural": 90.0,
    "IT:motorway": 130.0,
    "RU:urban": 60.0,
    "RU:rural": 90.0,
    "RU:motorway": 110.0,
    "RU:living_street": 20.0,
    "GB:nsl_single": 60.0 * MPH_KMH,
    "GB:nsl_dual": 70.0 * MPH_KMH,
    "GB:motorway": 70.0 * MPH_KMH,
}

# When the region config has no speed for a class (km/h).
FALLBACK_KMH: dict[str, float] = {
    "motorway": 100.0,
    "motorway_link": 60.0,
    "trunk": 80.0,
    "trunk_link": 50.0,
    "primary": 60.0,
    "primary_link": 40.0,
    "secondary": 50.0,
    "secondary_link": 35.0,
    "tertiary": 40.0,
    "tertiary_link": 30.0,
    "unclassified": 30.0,
    "residential": 25.0,
    "living_street": 10.0,
    "service": 15.0,
    "road": 30.0,
}

_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km/h|kmh|kph|mph|knots)?\s*$", re.IGNORECASE)
_ZONE_N = re.compile(r"^[A-Z]{2}:zone:?(\d+)$", re.IGNORECASE)
_NAN_WORDS = frozenset({"none", "signals", "variable", "no", "unposted", "implicit"})


def _parse_one(value: str) -> float:
    v = value.strip()
    if not v:
        return math.nan
    low = v.lower()
    if low == "walk":
        return WALK_KMH
    if low in _NAN_WORDS:
        return math.nan
    m = _NUMBER.match(v)
    if m:
        speed = float(m.group(1))
        unit = (m.group(2) or "").lower()
        if unit == "mph":
            speed *= MPH_KMH
        elif unit == "knots":
            speed *= 1.852
        return speed if 0.0 < speed <= 300.0 else math.nan
    z = _ZONE_N.match(v)
    if z:
        return float(z.group(1))
    if ":" in v:
        country, _, zone = v.partition(":")
        return ZONE_KMH.get(f"{country.upper()}:{zone.lower()}", math.nan)
    return math.nan


def parse_maxspeed(value: str | None) -> float:
    """An OSM maxspeed value in km/h; NaN when absent, unknown or unparsable (rules in the module doc)."""
    if value is None:
        return math.nan
    parts = [_parse_one(p) for p in value.split(";")]
    known = [p for p in parts if not math.isnan(p)]
    return min(known) if known else math.nan


def freeflow_kmh(maxspeed_kmh: float, road_class: str, speeds_kmh: dict[str, float]) -> float:
    """Free-flow speed in km/h: 0.9 x maxspeed, else the region's class speed, else a fallback."""
    if not math.isnan(maxspeed_kmh) and maxspeed_kmh > 0:
        return maxspeed_kmh * MAXSPEED_FACTOR
    speed = speeds_kmh.get(road_class)
    if speed is not None and speed > 0:
        return float(speed)
    return FALLBACK_KMH.get(road_class, DEFAULT_FALLBACK_KMH)


def freeflow_mps(maxspeed_kmh: float, road_class: str, speeds_kmh: dict[str, float]) -> float:
    """`freeflow_kmh` in metres per second."""
    return freeflow_kmh(maxspeed_kmh, road_class, speeds_kmh) / 3.6
