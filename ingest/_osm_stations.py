"""Fuel stations (amenity=fuel) from an OSM extract: .osm.pbf, .osm, .osm.gz or .osm.bz2 (pyosmium).

Nodes are taken as they are; ways (station forecourts/buildings drawn as outlines) become the centroid
of their node locations (osmium's location handler fills them in). Multipolygon relations tagged
amenity=fuel are rare and are not read.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import osmium
import psycopg

from geo._brands import brand_from_tags, station_display_name
from geo._errors import ExtractError
from store._road_edges import nearest_road_names
from store._stations import StationIn

DEFAULT_GRADES: tuple[str, ...] = ("92", "95", "98", "0")

# OSM fuel:* keys -> our grade codes (RON; "0" is 0# diesel). Any value but "no" counts as offered.
FUEL_TAGS: dict[str, str] = {
    "fuel:octane_89": "89",
    "fuel:octane_90": "89",
    "fuel:octane_92": "92",
    "fuel:octane_93": "92",
    "fuel:octane_95": "95",
    "fuel:octane_97": "98",
    "fuel:octane_98": "98",
    "fuel:diesel": "0",
    "fuel:GTL_diesel": "0",
    "fuel:HGV_diesel": "0",
}
GRADE_ORDER = ("89", "92", "95", "98", "0")
# A station without addr:* tags is placed on the nearest named (or numbered) road within STREET_MAX_M:
# forecourts sit beside their road, and 250 m still reaches past a large motorway service area to the
# road it serves. Stations that would then show the same name add the nearest other road within
# CROSS_MAX_M ("CG-1 / Carrer de la Unió"), a landmark a driver can place.
STREET_MAX_M = 250.0
CROSS_MAX_M = 1000.0
ROADS_PER_STATION = 8

_CJK = re.compile(r"[\u3400-\u9fff]")


def _yes(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "no", "none", "0")


def grades_from_tags(tags: Mapping[str, str], default: Sequence[str] = DEFAULT_GRADES) -> tuple[str, ...]:
    """Grades offered, from fuel:* tags; `default` when no fuel:* grade tag says yes."""
    found = {grade for key, grade in FUEL_TAGS.items() if _yes(tags.get(key))}
    if not found:
        return tuple(default)
    return tuple(g for g in GRADE_ORDER if g in found)


def amenities_from_tags(tags: Mapping[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    if _yes(tags.get("shop")):
        out.append("shop")
    if _yes(tags.get("car_wash")):
        out.append("car_wash")
    if _yes(tags.get("toilets")):
        out.append("toilets")
    if _yes(tags.get("fuel:electricity")) or _yes(tags.get("charging")) or _yes(tags.get("charging_station")):
        out.append("ev_charging")
    if _yes(tags.get("compressed_air")):
        out.append("compressed_air")
    if _yes(tags.get("atm")):
        out.append("atm")
    return tuple(out)


def address_from_tags(tags: Mapping[str, str]) -> str | None:
    """addr:full, else the addr:* parts: Chinese order (province city district street number) when the
    parts are Chinese, else "number street, postcode city"."""
    full = (tags.get("addr:full") or "").strip()
    if full:
        return full
    g = {
        k: (tags.get(f"addr:{k}") or "").strip()
        for k in (
            "province",
            "state",
            "city",
            "district",
            "suburb",
            "street",
            "place",
            "housenumber",
            "postcode",
        )
    }
    street = g["street"] or g["place"]
    if not any(g.values()):
        return None
    if _CJK.search("".join(g.values())):
        number = g["housenumber"] + ("号" if g["housenumber"] and g["housenumber"][-1].isdigit() else "")
        parts = [g["province"] or g["state"], g["city"], g["district"], g["suburb"], street, number]
        return "".join(p for p in parts if p) or None
    first = " ".join(p for p in (g["housenumber"], street) if p)
    second = " ".join(p for p in (g["postcode"], g["city"]) if p)
    return ", ".join(p for p in (first, second) if p) or None


def station_from_tags(
    tags: Mapping[str, str], lat: float, lon: float, source_ref: str, default_grades: Sequence[str]
) -> StationIn:
    brand, raw = brand_from_tags(tags)
    name = (tags.get("name:zh") or tags.get("name") or "").strip()
    name_en = (tags.get("name:en") or "").strip() or None
    return StationIn(
        source="osm",
        source_ref=source_ref,
        lat=round(lat, 7),
        lon=round(lon, 7),
        name=name,
        name_en=name_en,
        brand=brand,
        brand_raw=raw,
        address=address_from_tags(tags),
        grades=grades_from_tags(tags, default_grades),
        opening_hours=(tags.get("opening_hours") or "").strip() or None,
        amenities=amenities_from_tags(tags),
        status="open",
        tags=dict(tags),
    )


def read_fuel_stations(
    path: Path | str, *, default_grades: Sequence[str] = DEFAULT_GRADES
) -> list[StationIn]:
    """Every amenity=fuel node and way in the extract, ordered by source_ref (node/..., way/...).

    Ways whose nodes have no locations (cut at the extract border) are skipped.
    """
    p = Path(path)
    if not p.is_file():
        raise ExtractError(f"OSM extract {p} not found")
    out: list[StationIn] = []
    try:
        fp = (
            osmium.FileProcessor(str(p), osmium.osm.NODE | osmium.osm.WAY)
            .with_locations()
            .with_filter(osmium.filter.TagFilter(("amenity", "fuel")))
        )
        for obj in fp:
            if isinstance(obj, osmium.osm.Node):
                loc = obj.location
                if not loc.valid():
                    continue
                tags = {t.k: t.v for t in obj.tags}
                out.append(station_from_tags(tags, loc.lat, loc.lon, f"node/{obj.id}", default_grades))
            elif isinstance(obj, osmium.osm.Way):
                pts = {(n.ref, n.lat, n.lon) for n in obj.nodes if n.location.valid()}
                if not pts:
                    continue
                lat = sum(x[1] for x in pts) / len(pts)
                lon = sum(x[2] for x in pts) / len(pts)
                tags = {t.k: t.v for t in obj.tags}
                out.append(station_from_tags(tags, lat, lon, f"way/{obj.id}", default_grades))
    except RuntimeError as exc:  # osmium reports unreadable/corrupt files as RuntimeError
        raise ExtractError(f"cannot read OSM extract {p}: {exc}") from exc
    out.sort(key=lambda s: (s.source_ref.split("/")[0], int(s.source_ref.split("/")[1])))
    return out


def addresses_from_roads(
    stations: Sequence[StationIn], roads: Sequence[Sequence[tuple[str, float]]]
) -> list[StationIn]:
    """Stations without an address get one from the roads near them (`roads[i]`: (name, metres),
    nearest first): the nearest road within STREET_MAX_M. Where stations would still show the same
    display name, each of them whose address came from the roads adds the nearest other road that makes
    its name unique ("CG-1 / Carrer de la Unió"). A station with an address of its own keeps it; one
    with no road near keeps none; stations nothing tells apart keep their common name."""
    out = list(stations)
    derived: dict[int, str] = {}
    for i, (s, near) in enumerate(zip(stations, roads, strict=True)):
        if s.address is None and near and near[0][1] <= STREET_MAX_M:
            derived[i] = near[0][0]
            out[i] = dataclasses.replace(s, address=near[0][0])

    def shown(st: StationIn) -> str:
        return station_display_name(dataclasses.asdict(st))[0]

    same: dict[str, list[int]] = defaultdict(list)
    for i, st in enumerate(out):
        same[shown(st)].append(i)
    taken = {name for name, members in same.items() if len(members) == 1}
    for members in (m for m in same.values() if len(m) > 1):
        for i in (k for k in members if k in derived):
            street = derived[i]
            for other, _ in roads[i]:
                if other == street:
                    continue
                candidate = dataclasses.replace(out[i], address=f"{street} / {other}")
                if shown(candidate) not in taken:
                    out[i] = candidate
                    break
            taken.add(shown(out[i]))
    return out


def with_road_addresses(
    conn: psycopg.Connection, region: str, stations: Sequence[StationIn]
) -> list[StationIn]:
    """addresses_from_roads with the region's road_edges (load them first): one statement."""
    todo = [i for i, s in enumerate(stations) if s.address is None]
    found = nearest_road_names(
        conn,
        region,
        [(stations[i].lat, stations[i].lon) for i in todo],
        max_m=CROSS_MAX_M,
        per_point=ROADS_PER_STATION,
    )
    roads: list[list[tuple[str, float]]] = [[] for _ in stations]
    for i, near in zip(todo, found, strict=True):
        roads[i] = near
    return addresses_from_roads(stations, roads)
