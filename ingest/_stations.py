"""`python -m ingest stations FILE [--dry-run] [--allow-rejects] [--report PATH] [--source onboarding]
[--region NAME] [--no-progress]`: load operator station files (CSV in UTF-8 or GB18030, .xlsx, JSON,
GeoJSON) or an OSM extract.

The file schema (columns; JSON keys and GeoJSON properties alike) is documented in
data/examples/README.md. In short: source_ref (required), name, name_en, brand, address, lat, lon,
coord (wgs84 | gcj02 | bd09, default wgs84), grades ("92;95;0"), opening_hours, amenities
("shop;car_wash;toilets;ev_charging"), status (open | closed | temporarily_closed), and optional
price_89/price_92/price_95/price_98/price_0 with prices_effective_from.

The rules:
- every row is validated (see `validate_row`); a rejected row is listed in the reject report
  (row, field, reason, value) and the exit code is 1;
- with any rejected row and no --allow-rejects, NOTHING is written; with --allow-rejects the valid
  rows are written and the exit code is 0;
- one transaction per file (REPEATABLE READ, after a session advisory lock so that two loads run
  one after the other): COPY into a temporary staging table, match, compare, INSERT/UPDATE from the
  staging table, commit. A crash, Ctrl-C or kill before the commit leaves the database unchanged;
- matching and idempotence: see store/_onboarding.py (key, alias, then same brand within 50 m);
  a column absent from the file keeps the stored value of a matched station;
- --dry-run runs everything up to the write and prints what would change;
- coordinates that look wrong are warnings, not rejects (store/_onboarding.coordinate_warnings): a
  station moved more than 100 m, a new one with the name and brand of a stored one within 1 km, and
  `wgs84` points that land on a known station when read as GCJ-02;
- prices must be plausible (geo/_plausible.py): a grade the station sells, a plausible
  prices_effective_from, within the band of the official ceiling in force then; a reject names the
  rule and the allowed range;
- a price of a stored station is screened by risk control as in `ingest prices`: an anomalous one is held
  for an operator's review ("prices held"), not written;
- every written station and price has an audit row (actor: --actor, default cli:<os user>); a field
  the station manager API set keeps its stored value.

An OSM extract (.osm.pbf, .osm, .osm.gz, .osm.bz2) imports its amenity=fuel stations through the same
path with source=osm (their opening_hours are kept as mapped, not validated; a station without addr:*
tags gets the nearest named road of the region's road_edges as its address, as load-region does).
"""

from __future__ import annotations

import argparse
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import h3.api.basic_int as h3_int
import numpy as np
import psycopg
import shapely

from config import Region, Settings, get_settings
from geo._brands import normalize_brand
from geo._coords import from_wgs84_arrays, haversine_m, to_wgs84
from geo._hours import is_valid_opening_hours, normalize_opening_hours
from geo._plausible import CeilingBook, PlausibilityRules, Problem, price_problem
from geo._pricing import KNOWN_GRADES, normalize_grade
from ingest import _onboarding as ob
from ingest._cli import Commands, described
from ingest._onboarding import Reject, RowError, Summary
from store._ceilings import ceiling_book, staleness
from store._onboarding import (
    MATCH_RADIUS_M,
    SAME_NAME_WARN_M,
    apply_prices,
    apply_stations,
    coordinate_warnings,
    drop_rejected_stations,
    drop_staged_prices,
    hold_anomalous_prices,
    plan_prices,
    plan_stations,
    stage_prices,
    stage_stations,
    staged_prices_with_grades,
)
from store._stations import STATION_COLUMNS, StationIn

COMMAND = "stations"
COORD_SYSTEMS = ("wgs84", "gcj02", "bd09")
STATUSES = ("open", "closed", "temporarily_closed")
AMENITIES = ("shop", "car_wash", "toilets", "ev_charging", "compressed_air", "atm")
SOURCES = ("onboarding", "osm", "demo")
PRICE_COLUMNS = {f"price_{g}": g for g in KNOWN_GRADES}
MAX_PRICE = Decimal("100")  # CNY per litre: a sanity bound for grades without an official ceiling


@dataclass
class StagedPrice:
    grade: str
    price_cny: Decimal
    effective_from: datetime
    explicit: bool


@dataclass
class ValidRow:
    row: int
    values: dict[str, Any]  # STAGE_COLUMNS minus seq/row_no
    prices: list[StagedPrice] = field(default_factory=list)


@dataclass
class Context:
    region: Region
    now: datetime
    book: CeilingBook
    columns: frozenset[str]
    source: str
    check_hours: bool = True
    defer_region: bool = False  # the caller checks the region for all rows at once (outside_region)
    rules: PlausibilityRules = field(default_factory=PlausibilityRules)
    price_columns: bool = field(init=False)
    _price_cache: dict[tuple[Any, ...], Problem | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.price_columns = any(c in self.columns for c in PRICE_COLUMNS)

    def price_problem(
        self, grade: str, price: Decimal, at: datetime, sells: tuple[str, ...] | None
    ) -> Problem | None:
        """geo._plausible.price_problem, remembered per input: files repeat the same values."""
        key = (grade, price, at, sells)
        try:
            return self._price_cache[key]
        except KeyError:
            p = self._price_cache[key] = price_problem(
                grade, price, at, book=self.book, rules=self.rules, now=self.now, sells=sells
            )
            return p


def _cells(lat: float, lon: float) -> tuple[int, int, int]:
    r9 = h3_int.latlng_to_cell(lat, lon, 9)
    return h3_int.cell_to_parent(r9, 7), h3_int.cell_to_parent(r9, 8), r9


# Operator files repeat the same few values (brands, grade lists, hours, dates, prices): parse each once.
_brand = lru_cache(maxsize=4096)(normalize_brand)


@lru_cache(maxsize=4096)
def _grade_list(raw: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(known grades in display order, unknown items)."""
    found, bad = [], []
    for g in ob.text_list({"g": raw}, "g") or []:
        code = normalize_grade(g)
        if code is None:
            bad.append(g)
        elif code not in found:
            found.append(code)
    return tuple(g for g in KNOWN_GRADES if g in found), tuple(bad)


@lru_cache(maxsize=4096)
def _amenity_list(raw: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    items = [a.strip().lower() for a in ob.text_list({"a": raw}, "a") or []]
    return tuple(a for a in AMENITIES if a in items), tuple(a for a in items if a not in AMENITIES)


@lru_cache(maxsize=4096)
def _hours(text: str) -> tuple[str, bool]:
    """(the OSM form of an operator's opening hours, whether it is valid): '24小时' is '24/7'."""
    norm = normalize_opening_hours(text)
    return norm, is_valid_opening_hours(norm)


@lru_cache(maxsize=4096)
def _price(raw: str, col: str) -> Decimal | RowError | None:
    """ob.decimal of a price column's text (places=2, 0 < x <= MAX_PRICE), or its RowError."""
    try:
        return ob.decimal({col: raw}, col, places=2, lo=Decimal(0), hi=MAX_PRICE)
    except RowError as exc:
        return exc


def _listish(v: Any) -> str | None:
    if v is None:
        return None
    return ";".join(str(x) for x in v) if isinstance(v, list) else str(v)


def validate_row(
    data: dict[str, Any], ctx: Context
) -> tuple[dict[str, Any], list[StagedPrice], list[RowError]]:
    """Validate one row; return (stage values, prices, problems). Problems empty = valid.

    A column absent from the file gives None (keep the stored value); a present but empty one gives
    its default.
    """
    errors: list[RowError] = []
    out: dict[str, Any] = {"source": ctx.source}

    def attempt(fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except RowError as exc:
            errors.append(exc)
            return None

    def text(key: str, max_len: int) -> str | None:  # ob.text, with a fast path for plain strings
        v = data.get(key)
        if v is None:
            return None
        if type(v) is str:
            s = v.strip()
            if len(s) <= max_len:
                return s or None
        return attempt(ob.text, data, key, max_len=max_len)

    def number(key: str) -> float | None:  # ob.number(required=True), with a fast path
        v = data.get(key)
        if type(v) is str:
            try:
                x = float(v)
            except ValueError:
                pass
            else:
                if x - x == 0.0:  # finite
                    return x
        return attempt(ob.number, data, key, required=True)

    ref = attempt(ob.required_text, data, "source_ref", max_len=100)
    out["source_ref"] = ref
    has = ctx.columns.__contains__
    name = text("name", 200)
    out["name"] = (name or "") if has("name") else None
    out["name_en"] = text("name_en", 200) if has("name_en") else None
    out["address"] = text("address", 500) if has("address") else None
    brand_text = text("brand", 100)
    if has("brand"):
        out["brand"] = _brand(brand_text)
        out["brand_raw"] = brand_text
    else:  # the name decides the brand for matching; a matched station keeps its stored brand
        out["brand"] = _brand(name)
        out["brand_raw"] = None

    lat = number("lat")
    lon = number("lon")
    coord = (text("coord", 10) or "wgs84").lower()
    out["coord"] = coord  # not stored (the point is WGS-84): for the coordinate warnings
    if coord not in COORD_SYSTEMS:
        errors.append(RowError("coord", f"must be one of {', '.join(COORD_SYSTEMS)}, got {coord!r}"))
    elif lat is not None and lon is not None:
        if not -90.0 <= lat <= 90.0:
            errors.append(RowError("lat", f"must be between -90 and 90, got {lat}"))
        elif not -180.0 <= lon <= 180.0:
            errors.append(RowError("lon", f"must be between -180 and 180, got {lon}"))
        else:
            w_lat, w_lon = to_wgs84(lat, lon, coord)
            w_lat, w_lon = round(w_lat, 7), round(w_lon, 7)
            if not ctx.defer_region and not ctx.region.contains(w_lat, w_lon):
                errors.append(
                    RowError(
                        "lat,lon",
                        f"({w_lat:.6f}, {w_lon:.6f}) WGS-84 (from {coord}) is outside the served region "
                        f"{ctx.region.display_name} ({ctx.region.name})",
                    )
                )
            out["lat"], out["lon"] = w_lat, w_lon
            out["h3_r7"], out["h3_r8"], out["h3_r9"] = _cells(w_lat, w_lon)

    if has("grades"):
        grades, bad = _grade_list(_listish(data.get("grades")) or "")
        for g in bad:
            errors.append(RowError("grades", f"unknown grade {g!r} (known: {', '.join(KNOWN_GRADES)})"))
        out["grades"] = list(grades)
    else:
        out["grades"] = None
    if has("amenities"):
        amenities, unknown = _amenity_list(_listish(data.get("amenities")) or "")
        for a in unknown:
            errors.append(RowError("amenities", f"unknown amenity {a!r} (known: {', '.join(AMENITIES)})"))
        out["amenities"] = list(amenities)
    else:
        out["amenities"] = None
    hours = text("opening_hours", 200)
    if hours is not None and ctx.check_hours:
        hours, hours_ok = _hours(hours)
    if hours is not None and ctx.check_hours and not hours_ok:
        errors.append(
            RowError(
                "opening_hours",
                f"cannot parse {hours!r} (e.g. '24/7', 'Mo-Su 07:00-22:00', 'Mo-Fr 06:30-23:00')",
            )
        )
    out["opening_hours"] = hours if has("opening_hours") else None
    status = text("status", 40)
    if status is not None and status.lower() not in STATUSES:
        errors.append(RowError("status", f"must be one of {', '.join(STATUSES)}, got {status!r}"))
    out["status"] = (status or "open").lower() if has("status") else None

    prices: list[StagedPrice] = []
    if ctx.price_columns:
        ef = attempt(ob.when, data, "prices_effective_from", ctx.region.tz)
        explicit = ef is not None
        at = ef or ctx.now
        # without a grades column the station's stored grades decide, after matching (_load_once)
        sells = tuple(out["grades"]) if out["grades"] is not None else None
        for col, grade in PRICE_COLUMNS.items():
            raw = data.get(col)
            if raw is None or raw == "":
                continue  # ob.decimal gives None for a missing or empty value (not required)
            if type(raw) is str:
                parsed = _price(raw, col)
                if parsed is None:
                    continue
                if isinstance(parsed, RowError):
                    errors.append(parsed)
                    continue
                price = parsed
            else:
                price = attempt(ob.decimal, data, col, places=2, lo=Decimal(0), hi=MAX_PRICE)
                if price is None:
                    continue
            problem = ctx.price_problem(grade, price, at, sells)
            if problem is not None:
                fld = "prices_effective_from" if problem.field == "effective_from" else col
                if not any(e.field == fld and e.reason == problem.reason for e in errors):
                    errors.append(RowError(fld, problem.reason))
                continue
            prices.append(StagedPrice(grade, price, at, explicit))
    return out, prices, errors


def outside_region(region: Region, lats: Sequence[float], lons: Sequence[float]) -> np.ndarray:
    """Boolean mask of the WGS-84 points outside the region (vectorised Region.contains)."""
    lat, lon = np.asarray(lats, dtype=float), np.asarray(lons, dtype=float)
    west, south, east, north = region.bbox
    inside = (lat >= south) & (lat <= north) & (lon >= west) & (lon <= east)
    boundary = region.boundary
    if boundary is not None and inside.any():
        shapely.prepare(boundary)
        idx = np.nonzero(inside)[0]
        inside[idx] = shapely.contains_xy(boundary, lon[idx], lat[idx])
    return ~inside


def _value_of(data: dict[str, Any], fld: str) -> str | None:
    keys = fld.split(",")
    vals = [data.get(k) for k in keys]
    if all(v is None for v in vals):
        return None
    return ",".join("" if v is None else str(v) for v in vals)


def match_key(values: dict[str, Any]) -> str:
    """Stations with the same key within 50 m are one station: the brand code, and for `other`
    (no brand) also the raw brand, else the name."""
    brand = str(values.get("brand") or "other")
    if brand != "other":
        return brand
    return "other:" + str(values.get("brand_raw") or values.get("name") or "").strip().lower()


def dedupe_in_file(rows: list[ValidRow]) -> tuple[list[ValidRow], list[Reject]]:
    """Reject the later of two rows with the same source_ref, or with the same match_key within 50 m."""
    kept: list[ValidRow] = []
    rejects: list[Reject] = []
    by_ref: dict[str, int] = {}
    grid: dict[tuple[str, int, int], list[ValidRow]] = {}
    cell = 0.001  # degrees: >= 50 m in latitude; longitude cells are wider than 50 m below 60 degrees
    for r in rows:
        v = r.values
        first = by_ref.get(v["source_ref"])
        if first is not None:
            rejects.append(Reject(r.row, "source_ref", f"duplicate of row {first}", v["source_ref"]))
            continue
        lat, lon, key = v["lat"], v["lon"], match_key(v)
        gy, gx = math.floor(lat / cell), math.floor(lon / cell)
        near: ValidRow | None = None
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                for other in grid.get((key, gy + dy, gx + dx), ()):
                    if _distance_m(lat, lon, other.values["lat"], other.values["lon"]) <= MATCH_RADIUS_M:
                        near = other
                        break
        if near is not None:
            rejects.append(
                Reject(
                    r.row,
                    "lat,lon",
                    f"same brand ({v['brand']}) within {MATCH_RADIUS_M:g} m of row {near.row} "
                    f"({near.values['source_ref']}): a duplicate station",
                    f"{lat},{lon}",
                )
            )
            continue
        by_ref[v["source_ref"]] = r.row
        grid.setdefault((key, gy, gx), []).append(r)
        kept.append(r)
    return kept, rejects


def _gcj_readings(rows: Sequence[ValidRow]) -> list[tuple[int, float, float]]:
    """(staging seq, lat, lon) of the rows given as WGS-84 in China, read as GCJ-02 instead: p - (gcj(p) - p),
    within a few metres of the exact inverse (enough for a 50 m test), vectorised for big files."""
    seqs = [seq for seq, r in enumerate(rows, start=1) if r.values.get("coord") == "wgs84"]
    if not seqs:
        return []
    lat = np.array([rows[i - 1].values["lat"] for i in seqs], dtype=np.float64)
    lon = np.array([rows[i - 1].values["lon"] for i in seqs], dtype=np.float64)
    g_lat, g_lon = from_wgs84_arrays(lat, lon, "gcj02")
    shifted = (g_lat != lat) | (g_lon != lon)  # identity outside China
    r_lat, r_lon = 2 * lat - g_lat, 2 * lon - g_lon
    return [
        (seq, float(a), float(b))
        for seq, a, b, s in zip(seqs, r_lat.tolist(), r_lon.tolist(), shifted.tolist(), strict=True)
        if s
    ]


def namesakes_in_file(rows: list[ValidRow]) -> list[str]:
    """Warnings for rows with the same brand and name as an earlier row of the file within
    SAME_NAME_WARN_M (not duplicates by the 50 m rule, but probably one station given twice)."""
    out: list[str] = []
    cell = 0.01  # degrees: >= 1 km in latitude; longitude cells are wider than 1 km below 60 degrees
    grid: dict[tuple[str, str, int, int], list[ValidRow]] = {}
    for r in rows:
        v = r.values
        name = str(v.get("name") or "").strip().lower()
        if not name:
            continue
        lat, lon = v["lat"], v["lon"]
        gy, gx = math.floor(lat / cell), math.floor(lon / cell)
        key = (str(v.get("brand") or "other"), name)
        near = next(
            (
                (o, d)
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                for o in grid.get((*key, gy + dy, gx + dx), ())
                if (d := _distance_m(lat, lon, o.values["lat"], o.values["lon"])) <= SAME_NAME_WARN_M
            ),
            None,
        )
        if near is not None:
            o, d = near
            out.append(
                f"row {r.row}: same name and brand as row {o.row} ({o.values['source_ref']}) {d:.0f} m away: "
                "one station given twice?"
            )
        grid.setdefault((*key, gy, gx), []).append(r)
    return out


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return haversine_m(lat1, lon1, lat2, lon2)


def _osm_stations(path: Path) -> list[StationIn]:
    from geo._errors import ExtractError
    from ingest._osm_stations import read_fuel_stations

    try:
        return read_fuel_stations(path)
    except ExtractError as exc:
        raise ob.FileUnreadable(str(exc)) from exc


def _osm_rows(stations: Sequence[StationIn]) -> tuple[list[ob.SourceRow], frozenset[str]]:
    rows = []
    for i, s in enumerate(stations, start=1):
        data: dict[str, Any] = {
            "source_ref": s.source_ref,
            "name": s.name,
            "name_en": s.name_en,
            "brand": s.brand_raw,
            "address": s.address,
            "lat": s.lat,
            "lon": s.lon,
            "grades": list(s.grades),
            "opening_hours": s.opening_hours,
            "amenities": list(s.amenities),
            "status": s.status,
        }
        rows.append(ob.SourceRow(i, data))
    cols = frozenset(
        (
            "source_ref",
            "name",
            "name_en",
            "brand",
            "address",
            "lat",
            "lon",
            "grades",
            "opening_hours",
            "amenities",
            "status",
        )
    )
    return rows, cols


def load_stations(
    path: Path | str,
    *,
    settings: Settings | None = None,
    dry_run: bool = False,
    allow_rejects: bool = False,
    source: str | None = None,
    show_progress: bool = False,
    actor: str | None = None,
    region: str | None = None,
) -> Summary:
    """Validate and load a station file; the Summary says what was (or would be) written.

    Raises ob.FileUnreadable for a missing/unreadable file.
    """
    settings = settings or get_settings()
    p = Path(path)
    is_osm = ob.detect_format(p) == "osm" if p.is_file() else False
    osm: list[StationIn] | None = None
    if is_osm:
        osm = _osm_stations(p)
        src_rows, columns = _osm_rows(osm)
        source = source or "osm"
    else:
        infile = ob.read_input(p, list_keys=("stations",))
        src_rows, columns = infile.rows, infile.columns
        source = source or "onboarding"
    if source not in SOURCES:
        raise ValueError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    if not is_osm and "source_ref" not in columns and src_rows:
        raise ob.FileUnreadable(f"{p}: no source_ref column (the operator's station code is required)")
    reg = ob.loader_region(settings, region)
    actor = actor or ob.default_actor()
    rules = PlausibilityRules.from_settings(settings)
    ob.phase(f"{p.name}: {len(src_rows)} rows, source={source}, region={reg.name}")

    def body(conn: psycopg.Connection) -> Summary:
        rows = src_rows
        if osm is not None:  # stations without addr:* tags: the nearest named road of the region
            from ingest._osm_stations import with_road_addresses

            rows = _osm_rows(with_road_addresses(conn, reg.name, osm))[0]
        return _load_once(
            conn,
            rows,
            columns,
            region=reg,
            source=source,
            is_osm=is_osm,
            dry_run=dry_run,
            allow_rejects=allow_rejects,
            show_progress=show_progress,
            actor=actor,
            rules=rules,
        )

    return ob.run_load(settings.database_url, reg.timezone, body)


def _load_once(
    conn: psycopg.Connection,
    src_rows: list[ob.SourceRow],
    columns: frozenset[str],
    *,
    region: Region,
    source: str,
    is_osm: bool,
    dry_run: bool,
    allow_rejects: bool,
    show_progress: bool,
    actor: str,
    rules: PlausibilityRules,
) -> Summary:
    summary = Summary(kind="stations", dry_run=dry_run)
    with conn.transaction() as tx:
        conn.execute("SET LOCAL work_mem = '64MB'")  # staging joins/sorts of 100k rows stay in memory
        now = datetime.now(region.tz)
        ctx = Context(
            region,
            now,
            ceiling_book(conn, region.price_zone),
            columns,
            source,
            not is_osm,
            defer_region=True,
            rules=rules,
        )
        rejects: list[Reject] = []
        valid: list[ValidRow] = []
        for src in ob.progress(src_rows, total=len(src_rows), desc="validating", enabled=show_progress):
            if src.error is not None:
                rejects.append(Reject(src.row, src.error.field, src.error.reason))
                continue
            values, prices, errors = validate_row(src.data, ctx)
            if errors:
                rejects.extend(
                    Reject(src.row, e.field, e.reason, _value_of(src.data, e.field)) for e in errors
                )
                continue
            valid.append(ValidRow(src.row, values, prices))
        if valid:
            outside = outside_region(
                region, [r.values["lat"] for r in valid], [r.values["lon"] for r in valid]
            )
            for r, out in zip(valid, outside, strict=True):
                if out:
                    rejects.append(
                        Reject(
                            r.row,
                            "lat,lon",
                            f"({r.values['lat']:.6f}, {r.values['lon']:.6f}) WGS-84 is outside the served region "
                            f"{region.display_name} ({region.name})",
                            f"{r.values['lat']},{r.values['lon']}",
                        )
                    )
            valid = [r for r, out in zip(valid, outside, strict=True) if not out]
            rejects.sort(key=lambda r: r.row)
        valid, dup_rejects = dedupe_in_file(valid)
        if is_osm:  # OSM often maps a station twice (node and outline): skip, the operator cannot fix it
            for d in dup_rejects:
                summary.example("skipped OSM duplicates", f"row {d.row}: {d.reason}")
            if dup_rejects:
                summary.extra["skipped OSM duplicates"] = len(dup_rejects)
        else:
            rejects.extend(dup_rejects)
            summary.warnings.extend(namesakes_in_file(valid))

        ob.phase(f"staging {len(valid)} rows")
        stage_stations(
            conn,
            ob.progress(
                ((i, r.row, *_stage_values(r.values)) for i, r in enumerate(valid, start=1)),
                total=len(valid),
                desc="staging",
                enabled=show_progress,
            ),
        )
        price_rows: list[tuple[Any, ...]] = []
        for i, r in enumerate(valid, start=1):
            for sp in r.prices:
                price_rows.append(
                    (
                        len(price_rows) + 1,
                        r.row,
                        i,
                        None,
                        sp.grade,
                        sp.price_cny,
                        sp.effective_from,
                        None,
                        "station",
                        sp.explicit,
                    )
                )
        stage_prices(conn, price_rows)
        ob.phase("matching against stored stations")
        keep = [
            c
            for c in ("name", "name_en", "address", "grades", "opening_hours", "amenities", "status")
            if c not in columns
        ]
        if "brand" not in columns:
            keep += ["brand", "brand_raw"]
        plan = plan_stations(conn, keep=keep)
        rejects.extend(Reject(row, fld, reason) for row, fld, reason in plan.rejects)
        if not is_osm:
            summary.warnings.extend(
                f"row {row}: {w}" for row, w in coordinate_warnings(conn, _gcj_readings(valid))
            )
        ceilings = staleness(conn, region.price_zone, now.date(), region.holidays).message()
        if ceilings is not None and ctx.price_columns:
            summary.warnings.append(ceilings)
        if ctx.price_columns and "grades" not in columns:  # the grades are the matched stations' now
            dropped: list[int] = []
            for seq, row_no, grade, price, at, sells in staged_prices_with_grades(conn):
                problem = ctx.price_problem(grade, price, at, sells)
                if problem is not None:
                    dropped.append(seq)
                    rejects.append(Reject(row_no, f"price_{grade}", problem.reason, f"{price}"))
            drop_staged_prices(conn, dropped)
        rejects.sort(key=lambda r: r.row)
        pplan = plan_prices(conn, with_stations=True)
        held = hold_anomalous_prices(conn, zone=region.price_zone, actor=actor)  # stored stations' prices
        if held:
            pplan.examples["prices held for review"] = ob.held_lines(held)

        summary.new, summary.updated, summary.unchanged = plan.new, plan.updated, plan.unchanged + plan.kept
        summary.matched_by_location = plan.matched_by_location
        summary.rejects = rejects
        summary.rejected_rows = len({r.row for r in rejects})
        summary.extra |= {
            "prices new": pplan.new - ob.held_planned(held, "new"),
            "prices updated": pplan.updated - ob.held_planned(held, "updated"),
            "prices unchanged": pplan.unchanged,
            "prices held": len(held),
        }
        if plan.kept:
            summary.extra["kept (stronger source)"] = plan.kept
        for what, items in {**plan.examples, **pplan.examples}.items():
            for line in items:
                summary.example(what, line)

        if dry_run or (rejects and not allow_rejects):
            raise psycopg.Rollback(tx)
        drop_rejected_stations(conn)
        ob.phase(f"writing {plan.new} new and {plan.updated} updated stations")
        apply_stations(conn, actor=actor)
        apply_prices(conn, actor=actor, with_stations=True)  # joins the new stations' ids
        summary.written = True
    if summary.written:
        ob.phase("committed")
    return summary


_VALUE_COLUMNS = STATION_COLUMNS

# every key is set by validate_row for a valid row
_stage_values = operator.itemgetter(*_VALUE_COLUMNS)


def add_parser(commands: Commands) -> None:
    parser = ob.add_loader_parser(
        commands,
        COMMAND,
        run,
        summary="load fuel stations from an operator file (CSV, .xlsx, JSON, GeoJSON) or an OSM extract",
        description=described(__doc__),
    )
    parser.add_argument(
        "--source", default=None, choices=SOURCES, help="default: onboarding (osm for OSM files)"
    )


def run(args: argparse.Namespace) -> int:
    return ob.run_loader(args, load_stations, source=args.source)
