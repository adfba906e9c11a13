"""`python -m ingest pumps FILE [--dry-run] [--allow-rejects] [--report PATH] [--no-progress]`: a station's
pumps (fuelling points) and nozzles from an operator file (CSV, JSON).

One row per nozzle. Columns: station (a station id, or the operator's station code = source_ref of an
onboarding station; `station_id` / `station_ref` say which explicitly), pump_no (or pump), nozzle_no (or
nozzle: the logical nozzle number on that pump), grade (92, 95#, 0 ...), label (the pump's label, e.g.
"1号枪", optional; the same for every row of a pump), active (true/false, default true: false takes a
nozzle out of service and its QR code answers 410).

Rules:
- pump 1-99, nozzle 1-9, a known grade that the station sells (when it lists grades), a label of at most
  40 printable characters (geo/_plausible.py nozzle_problem); a reject names the rule;
- each (station, pump, nozzle) once per file, one label per pump;
- pumps and nozzles are created or updated; those the file does not mention are left alone (set
  active=false to take a nozzle out of service); the same file loaded twice changes nothing;
- every change has an audit row (actor: --actor, default cli:<os user>);
- rejects, --allow-rejects, --dry-run, atomicity and exit codes as for `ingest stations`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import psycopg

from config import Settings, get_settings
from geo._plausible import nozzle_problem
from geo._pricing import KNOWN_GRADES, normalize_grade
from ingest import _onboarding as ob
from ingest._cli import Commands, described
from ingest._onboarding import Reject, RowError, Summary
from ingest._prices import station_of
from store._onboarding import existing_station_ids, resolve_station_refs
from store._prices import station_grades
from store._pumps import NozzleIn, upsert_forecourt

COMMAND = "pumps"


def _int(data: dict[str, Any], *keys: str) -> int:
    """A whole number from the first of `keys` present (reported under the first key)."""
    for key in keys:
        v = data.get(key)
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        text = str(v).strip()
        if isinstance(v, bool) or not text.lstrip("-").isdigit() or len(text) > 6:
            raise RowError(keys[0], f"must be a whole number, got {v!r}")
        return int(text)
    raise RowError(keys[0], "is required")


def load_pumps(
    path: Path | str,
    *,
    settings: Settings | None = None,
    dry_run: bool = False,
    allow_rejects: bool = False,
    show_progress: bool = False,
    actor: str | None = None,
    region: str | None = None,
) -> Summary:
    settings = settings or get_settings()
    p = Path(path)
    infile = ob.read_input(p, list_keys=("pumps", "nozzles"))
    reg = ob.loader_region(settings, region)
    actor = actor or ob.default_actor()
    ob.phase(f"{p.name}: {len(infile.rows)} rows")

    def body(conn: psycopg.Connection) -> Summary:
        summary = Summary(kind="nozzles", dry_run=dry_run)
        with conn.transaction() as tx:
            keys: list[tuple[str, int | str] | None] = []
            for src in infile.rows:
                try:
                    keys.append(station_of(src.data) if src.error is None else None)
                except RowError:
                    keys.append(None)
            refs = resolve_station_refs(conn, [str(k[1]) for k in keys if k and k[0] == "ref"])
            ids = existing_station_ids(conn, [int(k[1]) for k in keys if k and k[0] == "id"])
            sells = station_grades(conn, [*refs.values(), *ids])
            rejects: list[Reject] = []
            staged: list[NozzleIn] = []
            seen: dict[tuple[int, int, int], int] = {}
            labels: dict[tuple[int, int], tuple[str, int]] = {}
            for src in ob.progress(
                infile.rows, total=len(infile.rows), desc="validating", enabled=show_progress
            ):
                if src.error is not None:
                    rejects.append(Reject(src.row, src.error.field, src.error.reason))
                    continue
                d = src.data
                errors: list[RowError] = []
                station_id: int | None = None
                try:
                    kind, key = station_of(d)
                    station_id = (
                        refs.get(str(key)) if kind == "ref" else (int(key) if int(key) in ids else None)
                    )
                    if station_id is None:
                        errors.append(
                            RowError("station", f"no station {'with code ' if kind == 'ref' else ''}{key}")
                        )
                except RowError as exc:
                    errors.append(exc)
                pump_no = ob.attempt(errors, _int, d, "pump_no", "pump")
                nozzle_no = ob.attempt(errors, _int, d, "nozzle_no", "nozzle")
                grade_text = ob.attempt(errors, ob.text, d, "grade", max_len=10)
                grade = normalize_grade(grade_text) if grade_text else None
                if grade is None:
                    errors.append(
                        RowError("grade", f"unknown grade {grade_text!r} (known: {', '.join(KNOWN_GRADES)})")
                        if grade_text
                        else RowError("grade", "is required")
                    )
                label = ob.attempt(errors, ob.text, d, "label", max_len=200) or ""
                active = ob.attempt(errors, ob.boolean, d, "active", default=True)
                if not errors and station_id is not None and pump_no is not None and nozzle_no is not None:
                    assert grade is not None
                    problem = nozzle_problem(
                        pump_no, nozzle_no, grade, label=label, sells=sells.get(station_id)
                    )
                    if problem is not None:
                        errors.append(RowError(problem.field, problem.reason))
                    elif (station_id, pump_no, nozzle_no) in seen:
                        errors.append(
                            RowError(
                                "nozzle_no",
                                f"same station, pump and nozzle as row {seen[(station_id, pump_no, nozzle_no)]}",
                            )
                        )
                    elif labels.get((station_id, pump_no), (label, 0))[0] != label:
                        first_label, first_row = labels[(station_id, pump_no)]
                        errors.append(
                            RowError(
                                "label", f"pump {pump_no} is labelled {first_label!r} in row {first_row}"
                            )
                        )
                if errors:
                    rejects.extend(Reject(src.row, e.field, e.reason, _value(d, e.field)) for e in errors)
                    continue
                assert station_id is not None and pump_no is not None and nozzle_no is not None and grade
                seen[(station_id, pump_no, nozzle_no)] = src.row
                labels.setdefault((station_id, pump_no), (label, src.row))
                staged.append(NozzleIn(station_id, pump_no, nozzle_no, grade, bool(active), label))
            write = not dry_run and not (rejects and not allow_rejects)
            counts, examples = upsert_forecourt(conn, staged, actor=actor, apply=write)
            summary.new, summary.updated, summary.unchanged = (
                counts.nozzles_new,
                counts.nozzles_updated,
                counts.unchanged,
            )
            summary.extra = {"pumps new": counts.pumps_new, "pumps updated": counts.pumps_updated}
            summary.rejects = rejects
            summary.rejected_rows = len({r.row for r in rejects})
            for line in examples:
                summary.example("changes", line)
            if not write:
                raise psycopg.Rollback(tx)
            summary.written = True
        return summary

    return ob.run_load(settings.database_url, reg.timezone, body)


def _value(d: dict[str, Any], fld: str) -> str | None:
    v = d.get(fld)
    if v is None:
        v = {
            "station": d.get("station_id", d.get("station_ref")),
            "pump_no": d.get("pump"),
            "nozzle_no": d.get("nozzle"),
        }.get(fld)
    return None if v is None else str(v)


def add_parser(commands: Commands) -> None:
    ob.add_loader_parser(
        commands,
        COMMAND,
        run,
        summary="load stations' pumps and nozzles (grades) from a CSV/JSON file",
        description=described(__doc__),
    )


def run(args: argparse.Namespace) -> int:
    return ob.run_loader(args, load_pumps)
