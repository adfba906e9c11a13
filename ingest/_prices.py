"""`python -m ingest prices FILE [--dry-run] [--allow-rejects] [--report PATH] [--no-progress]`:
station list prices from a feed (CSV, JSON).

Columns: station (a station id, or the operator's station code = source_ref of an onboarding
station; `station_id` / `station_ref` say which explicitly), grade (92, 95#, 0 ...), price_cny,
effective_from (ISO-8601; naive = the region's local time; default now), observed_at (default now),
source (station | feed | official, default feed).

Rules (see data/examples/README.md):
- price history is kept: a price for a later effective_from adds a row; future-dated prices are fine;
- the same (station, grade, effective_from) with the same price is unchanged; with another price it
  is corrected in place (audit row with the old value);
- a row without effective_from whose price equals the price in force now changes nothing (so the
  same feed loaded twice adds nothing);
- each price must be plausible (geo/_plausible.py, thresholds in settings): a grade the station sells,
  effective_from after the first ceiling notice, not too old nor too far ahead, and within the band
  of the official ceiling of the region's price zone in force at its effective_from (the notice of
  day D is in force from 24:00 of D; 98#, which has none, within a band of the 95# ceiling); a reject
  names the rule and the allowed range;
- every written row has an audit row (actor: --actor, default cli:<os user>);
- each new or corrected price is screened by risk control (the `price` rules: a change far beyond the
  station's own steps or its neighbours' prices): an anomalous one is held for an operator's review
  (`POST /v1/risk/decisions/{id}/review`; approving publishes it), counted as "held", not written;
- rejects, --allow-rejects, --dry-run, atomicity and exit codes as for `ingest stations`.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from config import Settings, get_settings
from geo._plausible import PlausibilityRules, price_problem
from geo._pricing import KNOWN_GRADES, normalize_grade
from ingest import _onboarding as ob
from ingest._cli import Commands, described
from ingest._onboarding import Reject, RowError, Summary
from store._ceilings import ceiling_book, staleness
from store._onboarding import (
    apply_prices,
    existing_station_ids,
    hold_anomalous_prices,
    plan_prices,
    resolve_station_refs,
    stage_prices,
)
from store._prices import station_grades

COMMAND = "prices"
PRICE_SOURCES = ("station", "feed", "official")
MAX_PRICE = Decimal("100")


def station_of(data: dict[str, Any]) -> tuple[str, int | str]:
    """('id', 123) or ('ref', 'LJ-GC-001') from the station / station_id / station_ref columns."""
    sid = ob.text(data, "station_id", max_len=30)
    if sid is not None:
        if not sid.isdigit():
            raise RowError("station_id", f"must be a station id (integer), got {sid!r}")
        return "id", int(sid)
    ref = ob.text(data, "station_ref", max_len=100)
    if ref is not None:
        return "ref", ref
    s = ob.text(data, "station", max_len=100)
    if s is None:
        raise RowError("station", "is required (a station id or the operator's station code)")
    return ("id", int(s)) if s.isdigit() and len(s) < 19 else ("ref", s)


def load_prices(
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
    infile = ob.read_input(p, list_keys=("prices",))
    reg = ob.loader_region(settings, region)
    actor = actor or ob.default_actor()
    rules = PlausibilityRules.from_settings(settings)
    ob.phase(f"{p.name}: {len(infile.rows)} rows, region={reg.name}, price zone={reg.price_zone}")

    def body(conn: psycopg.Connection) -> Summary:
        summary = Summary(kind="prices", dry_run=dry_run)
        with conn.transaction() as tx:
            now = datetime.now(reg.tz)
            book = ceiling_book(conn, reg.price_zone)
            stale = staleness(conn, reg.price_zone, now.date(), reg.holidays).message()
            if stale is not None:
                summary.warnings.append(stale)
            keys: list[tuple[int, tuple[str, int | str] | None]] = []
            for src in infile.rows:
                try:
                    keys.append((src.row, station_of(src.data) if src.error is None else None))
                except RowError:
                    keys.append((src.row, None))
            refs = resolve_station_refs(conn, [str(k[1]) for _, k in keys if k and k[0] == "ref"])
            ids = existing_station_ids(conn, [int(k[1]) for _, k in keys if k and k[0] == "id"])
            sells = station_grades(conn, [*refs.values(), *ids])
            rejects: list[Reject] = []
            staged: list[tuple[Any, ...]] = []
            seen: dict[tuple[int, str, datetime], int] = {}
            for src in ob.progress(
                infile.rows, total=len(infile.rows), desc="validating", enabled=show_progress
            ):
                if src.error is not None:
                    rejects.append(Reject(src.row, src.error.field, src.error.reason))
                    continue
                errors: list[RowError] = []
                d = src.data
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
                grade_text = ob.text(d, "grade", max_len=10)
                grade = normalize_grade(grade_text) if grade_text else None
                if grade is None:
                    errors.append(
                        RowError("grade", f"unknown grade {grade_text!r} (known: {', '.join(KNOWN_GRADES)})")
                        if grade_text
                        else RowError("grade", "is required")
                    )

                price = ob.attempt(
                    errors, ob.decimal, d, "price_cny", places=2, lo=Decimal(0), hi=MAX_PRICE, required=True
                )
                ef = ob.attempt(errors, ob.when, d, "effective_from", reg.tz)
                observed = ob.attempt(errors, ob.when, d, "observed_at", reg.tz)
                source = (ob.attempt(errors, ob.text, d, "source", max_len=20) or "feed").lower()
                if source not in PRICE_SOURCES:
                    errors.append(
                        RowError("source", f"must be one of {', '.join(PRICE_SOURCES)}, got {source!r}")
                    )
                at = ef if isinstance(ef, datetime) else now
                if (
                    price is not None
                    and grade is not None
                    and not any(e.field == "effective_from" for e in errors)
                ):
                    problem = price_problem(
                        grade,
                        price,
                        at,
                        book=book,
                        rules=rules,
                        now=now,
                        sells=sells.get(station_id, ()) if station_id is not None else None,
                    )
                    if problem is not None:
                        errors.append(RowError(problem.field, problem.reason))
                if not errors and station_id is not None and grade is not None:
                    k = (station_id, grade, at)
                    if k in seen:
                        errors.append(
                            RowError(
                                "effective_from", f"same station, grade and effective_from as row {seen[k]}"
                            )
                        )
                    else:
                        seen[k] = src.row
                if errors:
                    rejects.extend(Reject(src.row, e.field, e.reason, _value(d, e.field)) for e in errors)
                    continue
                staged.append(
                    (
                        len(staged) + 1,
                        src.row,
                        None,
                        station_id,
                        grade,
                        price,
                        at,
                        observed,
                        source,
                        ef is not None,
                    )
                )
            stage_prices(conn, staged)
            plan = plan_prices(conn)
            held = hold_anomalous_prices(conn, zone=reg.price_zone, actor=actor)
            if held:
                plan.examples["prices held for review"] = ob.held_lines(held)
            summary.new = plan.new - ob.held_planned(held, "new")
            summary.updated = plan.updated - ob.held_planned(held, "updated")
            summary.unchanged = plan.unchanged
            summary.extra["held"] = len(held)
            summary.rejects = rejects
            summary.rejected_rows = len({r.row for r in rejects})
            for what, items in plan.examples.items():
                for line in items:
                    summary.example(what, line)
            if dry_run or (rejects and not allow_rejects):
                raise psycopg.Rollback(tx)
            apply_prices(conn, actor=actor)
            summary.written = True
        return summary

    return ob.run_load(settings.database_url, reg.timezone, body)


def _value(d: dict[str, Any], fld: str) -> str | None:
    v = d.get(fld)
    if fld == "station" and v is None:
        v = d.get("station_id", d.get("station_ref"))
    return None if v is None else str(v)


def add_parser(commands: Commands) -> None:
    ob.add_loader_parser(
        commands,
        COMMAND,
        run,
        summary="load station list prices (history rows) from a CSV/JSON feed",
        description=described(__doc__),
    )


def run(args: argparse.Namespace) -> int:
    return ob.run_loader(args, load_prices)
