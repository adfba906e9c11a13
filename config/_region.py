"""Region configs (`data/regions/<name>.toml`): bbox, clock, money, prices, speeds, holidays, extracts."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.prepared import PreparedGeometry, prep

from config._settings import PROJECT_ROOT, Settings


def regions_dir(settings: Settings | None = None) -> Path:
    return settings.regions_dir if settings else PROJECT_ROOT / "data" / "regions"


@dataclass(frozen=True)
class Holidays:
    """Public holidays and the weekend days that are working days instead (调休)."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def day_type(self, day: date) -> str:
        """'holiday', 'weekend' or 'weekday' for traffic profiles."""
        if day in self.holidays:
            return "holiday"
        if day in self.workdays:
            return "weekday"
        return "weekend" if day.weekday() >= 5 else "weekday"

    def is_holiday(self, day: date) -> bool:
        return day in self.holidays


def _date_ranges(items: list[Any]) -> frozenset[date]:
    out: set[date] = set()
    for item in items:
        if isinstance(item, list):
            start, end = date.fromisoformat(str(item[0])), date.fromisoformat(str(item[1]))
            while start <= end:
                out.add(start)
                start += timedelta(days=1)
        else:
            out.add(date.fromisoformat(str(item)))
    return frozenset(out)


@dataclass(frozen=True)
class Region:
    name: str
    display_name: str
    timezone: str
    currency: str
    price_zone: str
    bbox: tuple[float, float, float, float]  # west, south, east, north (WGS-84)
    default_grades: tuple[str, ...]
    speeds_kmh: dict[str, float]
    holidays: Holidays
    extract: str | None = None  # path or URL of the region's own OSM extract
    demo_region: str | None = None  # region served when the extract is absent
    boundary_file: str | None = None  # WGS-84 GeoJSON next to the config
    boundary_note: str = ""
    attribution: str = "© OpenStreetMap contributors, ODbL 1.0"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    source: Path | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def now(self) -> datetime:
        return datetime.now(self.tz)

    @cached_property
    def boundary(self) -> BaseGeometry | None:
        if not self.boundary_file or self.source is None:
            return None
        path = self.source.parent / self.boundary_file
        data = json.loads(path.read_text(encoding="utf-8"))
        geom = data.get("geometry", data) if data.get("type") == "Feature" else data
        return shape(geom)

    @cached_property
    def _prepared(self) -> PreparedGeometry | None:
        b = self.boundary
        return prep(b) if b is not None else None

    def outside_message(self, lat: float, lon: float) -> str:
        """The one wording of "this WGS-84 point is outside the region" (API notes and errors, loaders)."""
        return f"({lat:.6f}, {lon:.6f}) WGS-84 is outside the served region {self.display_name} ({self.name})"

    def contains(self, lat: float, lon: float) -> bool:
        """Whether a WGS-84 point lies in the region (its polygon, else its bbox)."""
        west, south, east, north = self.bbox
        if not (south <= lat <= north and west <= lon <= east):
            return False
        if self._prepared is None:
            return True
        from shapely.geometry import Point

        return bool(self._prepared.contains(Point(lon, lat)))


def load_region(name: str, settings: Settings | None = None) -> Region:
    path = regions_dir(settings) / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in regions_dir(settings).glob("*.toml"))
        raise FileNotFoundError(f"unknown region {name!r}; known regions: {', '.join(known)}")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    hol = raw.get("holidays", {})
    extract = raw.get("extract", {})
    return Region(
        name=raw["name"],
        display_name=raw.get("display_name", raw["name"]),
        timezone=raw["timezone"],
        currency=raw.get("currency", "CNY"),
        price_zone=raw["price_zone"],
        bbox=tuple(float(v) for v in raw["bbox"]),  # type: ignore[arg-type]
        default_grades=tuple(str(g) for g in raw.get("default_grades", ["92", "95", "98", "0"])),
        speeds_kmh={k: float(v) for k, v in raw.get("speeds_kmh", {}).items()},
        holidays=Holidays(_date_ranges(hol.get("dates", [])), _date_ranges(hol.get("workdays", []))),
        extract=extract.get("path") or None,
        demo_region=extract.get("demo_region") or None,
        boundary_file=raw.get("boundary", {}).get("file"),
        boundary_note=raw.get("boundary", {}).get("note", ""),
        attribution=raw.get("attribution", "© OpenStreetMap contributors, ODbL 1.0"),
        raw=raw,
        source=path,
    )


@dataclass(frozen=True)
class ServedRegion:
    """The region the service answers for, and the OSM extract its roads and stations come from."""

    region: Region  # coverage, clock, prices (the configured region, or its demo stand-in)
    configured: str  # the region asked for in settings
    extract: Path | None
    is_demo: bool
    note: str  # for operators and logs: names the files

    @property
    def public_note(self) -> str:
        """The note for API answers: the regions by name, never a server path."""
        if self.is_demo:
            return (
                f"No {self.configured} extract is installed on this server: serving the demo region "
                f"{self.region.display_name} instead"
            )
        if self.extract is None:
            return f"No {self.configured} extract is installed on this server"
        return f"{self.region.display_name}: OpenStreetMap extract"


def _expand(path: str, settings: Settings) -> Path:
    p = Path(path.replace("{shared}", str(settings.shared_data_dir)))
    return p if p.is_absolute() else PROJECT_ROOT / p


def resolve_served_region(settings: Settings) -> ServedRegion:
    """Pick the extract: FUEL_EXTRACT, else the region's configured path, else its demo region."""
    region = load_region(settings.region, settings)
    if settings.extract is not None:
        return ServedRegion(
            region, region.name, Path(settings.extract), False, f"{region.name}: {settings.extract}"
        )
    if region.extract:
        path = _expand(region.extract, settings)
        if path.is_file():
            return ServedRegion(region, region.name, path, False, f"{region.name}: {path}")
        if region.demo_region:
            demo = load_region(region.demo_region, settings)
            demo_path = _expand(demo.extract, settings) if demo.extract else None
            note = (
                f"No {region.name} extract at {path}: serving the demo region {demo.name} "
                f"from {demo_path} (set FUEL_EXTRACT or run `python -m ingest fetch-region {region.name}`)"
            )
            return ServedRegion(demo, region.name, demo_path, True, note)
        return ServedRegion(region, region.name, None, False, f"No {region.name} extract at {path}")
    return ServedRegion(region, region.name, None, False, f"{region.name} has no extract configured")
