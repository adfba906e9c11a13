"""Shared machinery of the onboarding loaders (`stations`, `prices`, `promotions`).

- reading operator files: CSV (UTF-8 with or without BOM, or what Excel saves on Chinese Windows:
  GB18030/GBK, also behind a stray UTF-8 BOM, or UTF-16; CRLF line ends), Excel workbooks (.xlsx, the
  first sheet, read with openpyxl), JSON (a list of objects, or an object with one list under
  `rows`/`stations`/`prices`/`promotions`), GeoJSON (a FeatureCollection of Points; the point becomes
  `lat`/`lon`, properties the other columns); chosen by extension, then by content. A file without
  a single data row is an error (exit 2), never "0 rows";
- row numbers: for CSV the line number in the file (the header is line 1, so the first station is
  row 2, as a spreadsheet shows it), for .xlsx the sheet's row number; for JSON/GeoJSON the 1-based
  position in the list;
- value parsers that raise RowError(field, reason);
- the reject report (CSV, or JSON when the path ends in .json: row, field, reason, value);
- the summary / dry-run diff printed at the end, and the progress bar (tqdm, on stderr).

Exit codes shared by the loaders: 0 done (also with rejects under --allow-rejects), 1 rows were
rejected and nothing was written, 2 usage error or unreadable file.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import json
import os
import signal
import sys
import time as time_module
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from tqdm import tqdm

from config import Region, Settings
from ingest._cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Commands, Run, add_command
from store._onboarding import HeldPrice

EXIT_REJECTS = EXIT_FAILURE  # rows were rejected and nothing was written
EXAMPLES_SHOWN = 5
WARNINGS_SHOWN = 20

T = TypeVar("T")


class FileUnreadable(Exception):
    """The input file cannot be read or is not in a supported format (exit code 2)."""


class RowError(ValueError):
    """One value of one row breaks a rule."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Reject:
    row: int
    field: str
    reason: str
    value: str | None = None


@dataclass
class SourceRow:
    row: int
    data: dict[str, Any]
    error: RowError | None = None  # a problem found while reading (e.g. a GeoJSON non-Point)


@dataclass
class InputFile:
    path: Path
    format: str  # csv | xlsx | json | geojson
    rows: list[SourceRow]
    columns: frozenset[str]  # every column/property name seen in the file


def detect_format(path: Path) -> str:
    """csv | xlsx | json | geojson | osm, from the extension, else from the first bytes."""
    name = path.name.lower()
    if name.endswith((".osm.pbf", ".pbf", ".osm", ".osm.gz", ".osm.bz2")):
        return "osm"
    if name.endswith(".geojson"):
        return "geojson"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".xlsx", ".xlsm")):
        return "xlsx"
    if name.endswith(".xls"):
        raise FileUnreadable(f"{path}: an Excel 97-2003 workbook (.xls): save it as .xlsx or CSV")
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise FileUnreadable(f"cannot read {path}: {exc}") from exc
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<?xml") or text.startswith(b"<osm"):
        return "osm"
    if text.startswith((b"{", b"[")):
        if name.endswith(".json") and b'"FeatureCollection"' not in head:
            return "json"
        return "geojson" if b'"FeatureCollection"' in head or b'"Feature"' in head else "json"
    return "csv"


def _norm_key(key: Any) -> str:
    return str(key).strip().lower()


def read_input(path: Path | str, *, list_keys: Sequence[str] = ("rows",)) -> InputFile:
    """Read an operator file into rows of {column: value}. Raises FileUnreadable."""
    p = Path(path)
    if not p.is_file():
        raise FileUnreadable(f"{p}: no such file")
    fmt = detect_format(p)
    if fmt == "osm":
        raise FileUnreadable(f"{p}: an OSM extract, not a row file")
    if fmt == "xlsx":
        return _nonempty(_read_xlsx(p))
    text = read_text(p)
    if fmt == "csv":
        return _nonempty(_read_csv(p, text))
    try:
        doc = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise FileUnreadable(f"{p}: not valid JSON ({exc})") from exc
    if fmt == "geojson" or (isinstance(doc, dict) and doc.get("type") == "FeatureCollection"):
        return _nonempty(_read_geojson(p, doc))
    items: Any = doc
    if isinstance(doc, dict):
        found = [doc[k] for k in (*list_keys, "rows") if isinstance(doc.get(k), list)]
        if not found:
            raise FileUnreadable(f"{p}: expected a JSON list of objects (or {{'rows': [...]}})")
        items = found[0]
    if not isinstance(items, list):
        raise FileUnreadable(f"{p}: expected a JSON list of objects")
    rows: list[SourceRow] = []
    columns: set[str] = set()
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            rows.append(SourceRow(i, {}, RowError("row", f"expected an object, got {type(item).__name__}")))
            continue
        data = {_norm_key(k): v for k, v in item.items()}
        columns.update(data)
        rows.append(SourceRow(i, data))
    return _nonempty(InputFile(p, "json", rows, frozenset(columns)))


def _nonempty(infile: InputFile) -> InputFile:
    """The file, unless it has no data row: loading nothing is never a success."""
    if not infile.rows:
        raise FileUnreadable(
            f"{infile.path}: the file has no data rows (empty {infile.format}): nothing to load"
        )
    return infile


_UTF8_BOM = b"\xef\xbb\xbf"
MAX_XLSX_ROWS = 1_048_576  # Excel's own sheet limit


def read_text(p: Path) -> str:
    """The file as text: UTF-8 (BOM or not), UTF-16 with its BOM, else GB18030 (GBK and GB2312 are its
    subsets: what Excel's "CSV" saves on Chinese Windows), also behind a UTF-8 BOM that some tools put
    in front of GBK bytes. Line ends are left to the readers (CRLF is fine)."""
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise FileUnreadable(f"cannot read {p}: {exc}") from exc
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise FileUnreadable(f"{p}: broken UTF-16 text ({exc.reason} at byte {exc.start})") from exc
    body = raw.removeprefix(_UTF8_BOM)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return body.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise FileUnreadable(
            f"{p}: neither UTF-8 nor GB18030/GBK text (undecodable bytes at byte {exc.start}): "
            "save it as CSV UTF-8 or as .xlsx"
        ) from exc


def _cell_text(v: Any) -> Any:
    """A spreadsheet cell as the loaders' text: numbers without a spurious .0, dates in ISO-8601."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    return str(v)


def _read_xlsx(p: Path) -> InputFile:
    """The first sheet of an Excel workbook: the first row with two or more values is the header (a
    one-cell title above it is skipped)."""
    import zipfile

    from openpyxl import load_workbook

    try:
        wb = load_workbook(p, read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise FileUnreadable(f"{p}: not a readable .xlsx workbook ({one_line_of(exc)})") from exc
    try:
        if not wb.worksheets:
            raise FileUnreadable(f"{p}: the workbook has no sheet")
        sheet = wb.worksheets[0]
        keys: list[str] | None = None
        rows: list[SourceRow] = []
        for n, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            if n > MAX_XLSX_ROWS:
                raise FileUnreadable(f"{p}: more than {MAX_XLSX_ROWS} rows")
            cells = [_cell_text(v) for v in values]
            filled = sum(1 for c in cells if str(c).strip())
            if filled == 0:
                continue
            if keys is None and filled == 1:
                continue  # a title above the table ("丽江加油站信息表", often a merged cell)
            if keys is None:
                keys = [_norm_key(c) for c in cells]
                while keys and not keys[-1]:
                    keys.pop()
                dup = sorted({k for k in keys if k and keys.count(k) > 1})
                if dup:
                    raise FileUnreadable(f"{p}: duplicate columns in the first sheet: {', '.join(dup)}")
                continue
            extra = [c for c in cells[len(keys) :] if str(c).strip()]
            if extra:
                err = RowError("row", f"{len(keys) + len(extra)} values for {len(keys)} columns")
                rows.append(SourceRow(n, {}, err))
                continue
            rows.append(SourceRow(n, {k: c for k, c in zip(keys, cells, strict=False) if k}))
    finally:
        wb.close()
    if keys is None:
        raise FileUnreadable(f"{p}: the first sheet is empty (no header row): nothing to load")
    return InputFile(p, "xlsx", rows, frozenset(k for k in keys if k))


def one_line_of(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_csv(p: Path, text: str) -> InputFile:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise FileUnreadable(f"{p}: empty CSV file (no header line): nothing to load") from None
    except csv.Error as exc:
        raise FileUnreadable(f"{p}: unreadable CSV header ({exc})") from exc
    keys = [_norm_key(h) for h in header]
    if not any(keys):
        raise FileUnreadable(f"{p}: the CSV header is empty")
    dup = sorted({k for k in keys if k and keys.count(k) > 1})
    if dup:
        raise FileUnreadable(f"{p}: duplicate CSV columns: {', '.join(dup)}")
    rows: list[SourceRow] = []
    line = reader.line_num
    try:
        for values in reader:
            start = line + 1
            line = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) > len(keys):
                err = RowError("row", f"{len(values)} values for {len(keys)} columns")
                rows.append(SourceRow(start, {}, err))
                continue
            rows.append(SourceRow(start, dict(zip(keys, values, strict=False))))
    except csv.Error as exc:
        raise FileUnreadable(f"{p}: broken CSV near line {reader.line_num} ({exc})") from exc
    return InputFile(p, "csv", rows, frozenset(k for k in keys if k))


def _read_geojson(p: Path, doc: Any) -> InputFile:
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise FileUnreadable(f"{p}: expected a GeoJSON FeatureCollection")
    features = doc.get("features")
    if not isinstance(features, list):
        raise FileUnreadable(f"{p}: the FeatureCollection has no features list")
    rows: list[SourceRow] = []
    columns: set[str] = {"lat", "lon"}
    for i, feat in enumerate(features, start=1):
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            rows.append(SourceRow(i, {}, RowError("geometry", "not a GeoJSON Feature")))
            continue
        props = feat.get("properties") or {}
        data = {_norm_key(k): v for k, v in props.items()} if isinstance(props, dict) else {}
        columns.update(data)
        geom = feat.get("geometry")
        coords = geom.get("coordinates") if isinstance(geom, dict) else None
        if not isinstance(geom, dict) or geom.get("type") != "Point":
            kind = geom.get("type") if isinstance(geom, dict) else None
            rows.append(SourceRow(i, data, RowError("geometry", f"must be a Point, got {kind!r}")))
            continue
        if not isinstance(coords, list) or len(coords) < 2:
            rows.append(SourceRow(i, data, RowError("geometry", "Point needs [lon, lat] coordinates")))
            continue
        data["lon"], data["lat"] = coords[0], coords[1]
        rows.append(SourceRow(i, data))
    return InputFile(p, "geojson", rows, frozenset(columns))


# ---- value parsers: each raises RowError(field, reason) ------------------------------------------


def attempt(errors: list[RowError], fn: Callable[..., T], *args: Any, **kw: Any) -> T | None:
    """fn(*args, **kw), or None after appending its RowError to `errors` (to report every problem)."""
    try:
        return fn(*args, **kw)
    except RowError as exc:
        errors.append(exc)
        return None


def text(data: dict[str, Any], key: str, *, max_len: int = 500) -> str | None:
    """A stripped string, None when missing or empty."""
    v = data.get(key)
    if v is None:
        return None
    if isinstance(v, list | dict):
        raise RowError(key, "must be text")
    s = str(v).strip()
    if len(s) > max_len:
        raise RowError(key, f"longer than {max_len} characters")
    return s or None


def required_text(data: dict[str, Any], key: str, *, max_len: int = 200) -> str:
    s = text(data, key, max_len=max_len)
    if s is None:
        raise RowError(key, "is required")
    return s


def text_list(data: dict[str, Any], key: str) -> list[str] | None:
    """'92;95;0' (also , | or 、, full-width ，；｜ too) or a JSON list -> stripped non-empty items (NFKC:
    full-width letters and digits as ASCII); None when missing."""
    v = data.get(key)
    if v is None:
        return None
    if isinstance(v, list):
        items = [unicodedata.normalize("NFKC", str(x)).strip() for x in v]
    else:
        s = unicodedata.normalize("NFKC", str(v))
        for sep in (",", "|", "、"):
            s = s.replace(sep, ";")
        items = [x.strip() for x in s.split(";")]
    return [x for x in items if x]


def number(data: dict[str, Any], key: str, *, required: bool = False) -> float | None:
    v = data.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise RowError(key, "is required")
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise RowError(key, f"must be a number, got {v!r}") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise RowError(key, f"must be a finite number, got {v!r}")
    return x


def decimal(
    data: dict[str, Any],
    key: str,
    *,
    places: int = 2,
    lo: Decimal | None = None,
    hi: Decimal | None = None,
    required: bool = False,
) -> Decimal | None:
    """A decimal with at most `places` decimals, lo < x <= hi."""
    v = data.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise RowError(key, "is required")
        return None
    if isinstance(v, bool):
        raise RowError(key, f"must be a number, got {v!r}")
    d = _parse_decimal(str(v).strip(), key, places)
    if lo is not None and d <= lo:
        raise RowError(key, f"must be > {lo}, got {d}")
    if hi is not None and d > hi:
        raise RowError(key, f"must be <= {hi}, got {d}")
    return d


@lru_cache(maxsize=8192)
def _parse_decimal(v: str, key: str, places: int) -> Decimal:
    try:
        d = Decimal(v)
    except InvalidOperation:
        raise RowError(key, f"must be a number, got {v!r}") from None
    if not d.is_finite():
        raise RowError(key, f"must be a finite number, got {v!r}")
    exp = d.normalize().as_tuple().exponent
    if isinstance(exp, int) and -exp > places:
        raise RowError(key, f"at most {places} decimals, got {v}")
    return d


def boolean(data: dict[str, Any], key: str, *, default: bool = False) -> bool:
    v = data.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        return default
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "y", "on", "是"):
        return True
    if s in ("0", "false", "no", "n", "off", "否"):
        return False
    raise RowError(key, f"must be true or false, got {v!r}")


def parse_datetime_value(value: Any, field: str, tz: tzinfo) -> datetime:
    """ISO-8601 date-time (naive = `tz`, 'Z' = UTC) or a date (00:00 in `tz`). Aware result."""
    return _parse_datetime(str(value), field, tz)


@lru_cache(maxsize=4096)
def _parse_datetime(value: str, field: str, tz: tzinfo) -> datetime:
    s = value.strip()
    if s.endswith(("z", "Z")):
        s = s[:-1] + "+00:00"
    try:
        if len(s) == 10:
            return datetime.combine(date.fromisoformat(s), time(0), tz)
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise RowError(
            field, f"must be an ISO-8601 date-time like 2026-10-01T08:00:00+08:00, got {value!r}"
        ) from None
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


def when(data: dict[str, Any], key: str, tz: tzinfo) -> datetime | None:
    v = data.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    return parse_datetime_value(v, key, tz)


def clock(data: dict[str, Any], key: str) -> time | None:
    v = text(data, key, max_len=20)
    if v is None:
        return None
    try:
        t = time.fromisoformat(v if len(v) != 4 else "0" + v)
    except ValueError:
        raise RowError(key, f"must be a time HH:MM, got {v!r}") from None
    if t.tzinfo is not None:
        raise RowError(key, "a local time of day, without offset")
    return t


# ---- reports and summaries -------------------------------------------------------------------------


def write_report(rejects: Sequence[Reject], path: Path | None) -> str:
    """Write the reject report to `path` (CSV, or JSON for *.json) or stdout; return where it went."""
    rows = [{"row": r.row, "field": r.field, "reason": r.reason, "value": r.value} for r in rejects]
    if path is not None and str(path) != "-":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8", newline="") as fh:
                _write_rows(fh, rows, json_format=path.suffix.lower() == ".json")
            return str(path)
        except OSError as exc:
            print(f"cannot write the report to {path} ({exc}): printing it here", file=sys.stderr)
    _write_rows(sys.stdout, rows, json_format=False)
    return "stdout"


def _write_rows(fh: Any, rows: list[dict[str, Any]], *, json_format: bool) -> None:
    if json_format:
        json.dump(rows, fh, ensure_ascii=False, indent=1, default=str)
        fh.write("\n")
        return
    w = csv.DictWriter(fh, fieldnames=["row", "field", "reason", "value"])
    w.writeheader()
    w.writerows(rows)


def default_report_path(input_path: Path, reports_dir: Path) -> Path:
    """`<reports_dir>/<file>.rejects.csv` (FUEL_ONBOARDING_REPORTS_DIR, default reports/onboarding/), never
    next to the input file, which may sit in a read-only or shared folder (OSM extracts: stdout)."""
    return reports_dir / (input_path.name + ".rejects.csv")


def loader_region(settings: Settings, name: str | None = None) -> Region:
    """The region whose rows a loader checks: `--region NAME`, else FUEL_REGION when it is set, else the
    served region (the demo stand-in when the region's extract is missing). A FUEL_EXTRACT naming a file
    that does not exist is an error here, not a silent switch of region."""
    from config import load_region, resolve_served_region

    chosen = name or (settings.region if "region" in settings.model_fields_set else None)
    if chosen is not None:
        try:
            return load_region(chosen, settings)
        except FileNotFoundError as exc:
            raise FileUnreadable(str(exc)) from exc
    if settings.extract is not None and not Path(settings.extract).is_file():
        raise FileUnreadable(
            f"FUEL_EXTRACT={settings.extract}: no such file (point it at an .osm.pbf, or unset it and pass "
            "--region NAME to check the rows against that region)"
        )
    return resolve_served_region(settings).region


def held_lines(held: Sequence[HeldPrice]) -> list[str]:
    """The report lines of prices risk control held for an operator's review (store.hold_anomalous_prices)."""
    return [
        f"row {h.row_no} station {h.station_id} {h.grade}# {h.price_cny} CNY/L: risk decision {h.decision_id}"
        for h in held
    ]


def held_planned(held: Sequence[HeldPrice], planned: str) -> int:
    """How many of the held prices would have been `planned` (new, updated)."""
    return sum(1 for h in held if h.planned == planned)


@dataclass
class Summary:
    """What a load did (or, in a dry run, would do)."""

    kind: str  # stations | prices | promotions
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected_rows: int = 0
    matched_by_location: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # loaded as given, but worth a look
    written: bool = False
    dry_run: bool = False

    def example(self, what: str, line: str) -> None:
        items = self.examples.setdefault(what, [])
        if len(items) < EXAMPLES_SHOWN:
            items.append(line)

    @property
    def changed(self) -> int:
        return self.new + self.updated

    def render(self) -> str:
        head = "dry run, nothing written: would be" if self.dry_run else ("written" if self.written else "")
        counts = (
            f"{self.kind}: {self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.rejected_rows} rejected"
        )
        if self.matched_by_location:
            counts += f" ({self.matched_by_location} matched by location)"
        for k, v in self.extra.items():
            counts += f"; {k}: {v}"
        lines = [f"{head} {counts}".strip()]
        for what, items in self.examples.items():
            lines.append(f"  {what}:")
            lines.extend(f"    {x}" for x in items)
        if self.warnings:
            lines.append(f"  warnings ({len(self.warnings)}):")
            lines.extend(f"    {w}" for w in self.warnings[:WARNINGS_SHOWN])
            if len(self.warnings) > WARNINGS_SHOWN:
                lines.append(f"    ... and {len(self.warnings) - WARNINGS_SHOWN} more")
        if self.rejects:
            lines.append("  rejected (first ones):")
            lines.extend(f"    row {r.row} {r.field}: {r.reason}" for r in self.rejects[:EXAMPLES_SHOWN])
        return "\n".join(lines)


def progress(items: Iterable[T], *, total: int | None, desc: str, enabled: bool) -> Iterator[T]:
    """A tqdm bar on stderr (off with --no-progress or when stderr is not a terminal and enabled=False)."""
    yield from tqdm(items, total=total, desc=desc, disable=not enabled, file=sys.stderr, mininterval=0.5)


_T0 = time_module.monotonic()


def phase(message: str) -> None:
    """A progress line on stdout with the seconds since start (flushed: a supervisor can follow it)."""
    print(f"[{time_module.monotonic() - _T0:6.1f} s] {message}", flush=True)


# ---- command line ----------------------------------------------------------------------------------


def default_actor() -> str:
    """The audit actor of a command run by hand: `cli:<os user>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


def add_actor_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor",
        default=None,
        help="who is writing, for the audit log (default: cli:<os user>)",
    )


def add_loader_parser(
    commands: Commands, command: str, run: Run, *, summary: str, description: str
) -> argparse.ArgumentParser:
    """The subparser of a file loader (stations, prices, promotions): the file and the shared options."""
    p = add_command(commands, command, run, summary=summary, description=description)
    p.add_argument("file", type=Path, help="CSV (UTF-8 or GB18030), .xlsx, JSON or GeoJSON file")
    add_actor_option(p)
    p.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    p.add_argument(
        "--allow-rejects",
        action="store_true",
        help="write the valid rows even when some are rejected (default: nothing is written then)",
    )
    p.add_argument("--report", type=Path, default=None, help="reject report: .csv or .json, '-' for stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--region",
        default=None,
        metavar="NAME",
        help="check the rows against this region (data/regions/NAME.toml); default FUEL_REGION when set, "
        "else the served region",
    )
    return p


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C: the open transaction is rolled back and the process exits."""

    def _term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _term)


def run_loader(args: argparse.Namespace, load: Callable[..., Summary], **options: Any) -> int:
    """The command of a file loader (stations, prices, promotions, pumps): load `args.file` with the shared
    options of add_loader_parser (and the loader's own `options`), print the summary and the reject report,
    and return the exit code. Ctrl-C or SIGTERM mid-load writes nothing."""
    install_signal_handlers()
    try:
        summary = load(
            args.file,
            actor=args.actor,
            dry_run=args.dry_run,
            allow_rejects=args.allow_rejects,
            show_progress=not args.no_progress,
            region=args.region,
            **options,
        )
    except FileUnreadable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    from config import get_settings

    return finish(
        summary,
        report=args.report,
        input_path=args.file,
        allow_rejects=args.allow_rejects,
        reports_dir=get_settings().onboarding_reports_dir,
    )


def finish(
    summary: Summary, *, report: Path | None, input_path: Path, allow_rejects: bool, reports_dir: Path
) -> int:
    """Print the summary, write the reject report (also after a dry run), return the exit code."""
    print(summary.render(), flush=True)
    if summary.rejects:
        if report is None and detect_format(input_path) != "osm":
            report = default_report_path(input_path, reports_dir)
        where = write_report(summary.rejects, report)
        print(f"reject report ({len(summary.rejects)} problems in {summary.rejected_rows} rows): {where}")
        if not allow_rejects:
            if not summary.dry_run:
                print("nothing was written: fix the rows, or pass --allow-rejects to load the valid ones")
            return EXIT_REJECTS
    return EXIT_OK


# ---- the one transaction of a load ------------------------------------------------------------------

LOCK_KEY = 7_431_101  # session advisory lock: one onboarding load at a time (stations, prices, promotions)
RETRIES = 3


def run_load(database_url: str, timezone: str, body: Callable[[psycopg.Connection], Summary]) -> Summary:
    """Run `body(conn)` inside one REPEATABLE READ transaction, after taking the loaders' advisory lock.

    `body` raises psycopg.Rollback to end without writing (dry run, rejects). A concurrent writer
    touching the same rows makes the transaction fail with a serialization error, or PostgreSQL ends it
    as a deadlock's victim (an API write holding a row the load needs while waiting on one the load
    holds): either way nothing was written and the whole body is run again (up to RETRIES times). The
    session time zone is the region's (for messages).
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s), set_config('TimeZone', %s, false)", (LOCK_KEY, timezone))
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        for attempt in range(RETRIES):
            try:
                return body(conn)
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
                if attempt == RETRIES - 1:
                    raise
                why = (
                    "a deadlock with another writer"
                    if isinstance(exc, psycopg.errors.DeadlockDetected)
                    else "a row changed"
                )
                phase(f"{why} while loading: retrying the whole file")
    raise AssertionError("unreachable")
