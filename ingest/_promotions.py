"""`python -m ingest promotions FILE [--dry-run] [--allow-rejects] [--report PATH] [--no-progress]
[--actor NAME]`: promotions from a feed (CSV, JSON), keyed by (station or brand, source, source_ref) for
idempotence: a source_ref is unique per station (per brand for brand promotions).

Columns: source_ref (required), source (default feed), scope (station | brand; default station when a
station is given, else brand), station (id or operator code; scope station), brand (scope brand;
normalised like station brands), title, title_en, grades ("92;95", empty = all), kind (percent_off |
cny_off_per_litre | cny_off_per_order | topup_bonus), value, min_amount_cny, min_litres, days_of_week
("6;7" or "Sa;Su"), date_ranges ("2026-10-01/2026-10-07;2027-01-01/2027-01-03"), public_holidays_only,
time_from, time_to (HH:MM, local), members_only, payment_methods ("wechat;alipay"), valid_from
(required; naive = local time), valid_to.

The same key with the same content is unchanged; with other content it is updated (version +1, audit
row with the old value, actor --actor or cli:<os user>). Values are capped per kind (geo/_plausible.py:
percent_off, cny_off_per_litre against the grade's ceiling, cny_off_per_order, topup_bonus); a reject
names the rule and the allowed maximum. Rejects, dry run, atomicity and exit codes as for
`ingest stations`. Promotion files are small: rows are written one by one (store._promotions.
upsert_promotion, the one write of a promotion), inside the one transaction.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from config import Settings, get_settings
from geo._brands import normalize_brand
from geo._plausible import CeilingBook, PlausibilityRules, promotion_problem
from geo._pricing import KNOWN_GRADES, PROMOTION_KINDS, Promotion, normalize_grade
from ingest import _onboarding as ob
from ingest._cli import Commands, described
from ingest._onboarding import Reject, RowError, Summary
from ingest._prices import station_of
from store._ceilings import ceiling_book
from store._onboarding import existing_station_ids, resolve_station_refs
from store._promotions import (
    find_promotion,
    promotion_target,
    same_promotion,
    upsert_promotion,
)

COMMAND = "promotions"
DAYS = {"mo": 1, "tu": 2, "we": 3, "th": 4, "fr": 5, "sa": 6, "su": 7}


# Chinese day names: 周六, 星期六, 礼拜六 (Sunday also 日 or 天)
CN_DAYS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "日": 7, "天": 7}
_CN_DAY = re.compile(r"(?:周|星期|礼拜)([一二三四五六日天])")
_DAY_RANGE = re.compile(r"(.+?)\s*(?:-|~|至|到)\s*(.+)")


def _day(x: str) -> int | None:
    k = x.strip().lower()
    if k.isdigit():
        return int(k) if 1 <= int(k) <= 7 else None
    m = _CN_DAY.fullmatch(k)
    if m is not None:
        return CN_DAYS[m.group(1)]
    return DAYS.get(k[:2]) if len(k) >= 2 and k.isascii() and k.isalpha() else None


def _days(items: list[str] | None) -> tuple[int, ...]:
    """'6;7', 'Sa;Su', '周六;周日' (星期六, 礼拜天 ...), ranges 'Mo-Fr' / '周一至周五' -> 1 (Monday) .. 7."""
    out: set[int] = set()
    for x in items or []:
        day = _day(x)
        if day is not None:
            out.add(day)
            continue
        m = _DAY_RANGE.fullmatch(x.strip())
        first, last = (_day(m.group(1)), _day(m.group(2))) if m else (None, None)
        if first is None or last is None or first > last:
            raise RowError(
                "days_of_week", f"days are 1 (Monday) .. 7 (Sunday), Mo..Su or 周一..周日, got {x!r}"
            )
        out.update(range(first, last + 1))
    return tuple(sorted(out))


def _ranges(items: list[str] | None) -> tuple[tuple[date, date], ...]:
    out = []
    for x in items or []:
        parts = x.replace("..", "/").split("/")
        try:
            a, b = (date.fromisoformat(p.strip()) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            a = b = None
        if a is None or b is None:
            raise RowError("date_ranges", f"a range is START/END (ISO dates), got {x!r}")
        if b < a:
            raise RowError("date_ranges", f"range {x!r} ends before it starts")
        out.append((a, b))
    return tuple(sorted(out))


def promotion_from_data(
    d: dict[str, Any],
    *,
    tz: Any,
    station_id: int | None,
    errors: list[RowError],
    book: CeilingBook,
    rules: PlausibilityRules,
) -> Promotion | None:
    """Validate one row into a Promotion (station_id already resolved), its value capped by the
    plausibility rules; None with `errors` filled."""
    a = ob.attempt
    source_ref = a(errors, ob.required_text, d, "source_ref", max_len=100)
    source = (a(errors, ob.text, d, "source", max_len=40) or "feed").lower()
    scope = (
        a(errors, ob.text, d, "scope", max_len=10) or ("station" if station_id is not None else "brand")
    ).lower()
    brand_text = a(errors, ob.text, d, "brand", max_len=100)
    brand: str | None = None
    if scope == "brand":
        if brand_text is None:
            errors.append(RowError("brand", "is required for scope brand"))
        else:
            brand = normalize_brand(brand_text)
    elif scope == "station":
        if station_id is None and not any(e.field == "station" for e in errors):
            errors.append(RowError("station", "is required for scope station"))
    else:
        errors.append(RowError("scope", f"must be station or brand, got {scope!r}"))
    grades: list[str] = []
    for g in a(errors, ob.text_list, d, "grades") or []:
        code = normalize_grade(g)
        if code is None:
            errors.append(RowError("grades", f"unknown grade {g!r} (known: {', '.join(KNOWN_GRADES)})"))
        elif code not in grades:
            grades.append(code)
    kind = (a(errors, ob.text, d, "kind", max_len=30) or "").lower()
    if kind not in PROMOTION_KINDS:
        errors.append(RowError("kind", f"must be one of {', '.join(PROMOTION_KINDS)}, got {kind!r}"))
    value = a(errors, ob.decimal, d, "value", places=2, lo=Decimal(0), hi=Decimal("999999"), required=True)
    min_amount = a(errors, ob.decimal, d, "min_amount_cny", places=2, lo=Decimal(0), hi=Decimal("99999999"))
    min_litres = a(errors, ob.decimal, d, "min_litres", places=2, lo=Decimal(0), hi=Decimal("999999"))
    days = a(errors, _days, a(errors, ob.text_list, d, "days_of_week"))
    ranges = a(errors, _ranges, a(errors, ob.text_list, d, "date_ranges"))
    valid_from = a(errors, ob.when, d, "valid_from", tz)
    if valid_from is None and not any(e.field == "valid_from" for e in errors):
        errors.append(RowError("valid_from", "is required"))
    valid_to = a(errors, ob.when, d, "valid_to", tz)
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        errors.append(RowError("valid_to", "must be after valid_from"))
    time_from = a(errors, ob.clock, d, "time_from")
    time_to = a(errors, ob.clock, d, "time_to")
    payments = sorted({p.lower() for p in (a(errors, ob.text_list, d, "payment_methods") or [])})
    title = a(errors, ob.text, d, "title", max_len=200) or ""
    title_en = a(errors, ob.text, d, "title_en", max_len=200)
    holidays = a(errors, ob.boolean, d, "public_holidays_only")
    members = a(errors, ob.boolean, d, "members_only")
    if errors:
        return None
    try:
        promo = Promotion(
            kind=kind,  # type: ignore[arg-type]
            value=Decimal(value or 0),
            scope=scope,
            station_id=station_id if scope == "station" else None,
            brand=brand,
            title=title,
            title_en=title_en,
            grades=tuple(g for g in KNOWN_GRADES if g in grades),
            min_amount_cny=min_amount,
            min_litres=min_litres,
            days_of_week=days or (),
            date_ranges=ranges or (),
            public_holidays_only=bool(holidays),
            time_from=time_from,
            time_to=time_to,
            members_only=bool(members),
            payment_methods=tuple(payments),
            valid_from=valid_from,
            valid_to=valid_to,
            source=source,
            source_ref=source_ref,
        )
    except ValueError as exc:
        errors.append(RowError("row", str(exc)))
        return None
    problem = promotion_problem(promo, book=book, rules=rules)
    if problem is not None:
        errors.append(RowError(problem.field, problem.reason))
        return None
    return promo


def load_promotions(
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
    infile = ob.read_input(p, list_keys=("promotions",))
    reg = ob.loader_region(settings, region)
    actor = actor or ob.default_actor()
    rules = PlausibilityRules.from_settings(settings)
    ob.phase(f"{p.name}: {len(infile.rows)} rows, region={reg.name}")

    def body(conn: psycopg.Connection) -> Summary:
        summary = Summary(kind="promotions", dry_run=dry_run)
        with conn.transaction() as tx:
            keys: dict[int, tuple[str, int | str]] = {}
            for src in infile.rows:
                if src.error is None and any(
                    src.data.get(k) not in (None, "") for k in ("station", "station_id", "station_ref")
                ):
                    with contextlib.suppress(RowError):
                        keys[src.row] = station_of(src.data)
            refs = resolve_station_refs(conn, [str(k[1]) for k in keys.values() if k[0] == "ref"])
            ids = existing_station_ids(conn, [int(k[1]) for k in keys.values() if k[0] == "id"])
            book = ceiling_book(conn, reg.price_zone)
            rejects: list[Reject] = []
            valid: list[tuple[int, Promotion]] = []
            seen: dict[tuple[str, str, str], int] = {}
            for src in ob.progress(
                infile.rows, total=len(infile.rows), desc="validating", enabled=show_progress
            ):
                if src.error is not None:
                    rejects.append(Reject(src.row, src.error.field, src.error.reason))
                    continue
                errors: list[RowError] = []
                station_id: int | None = None
                if any(src.data.get(k) not in (None, "") for k in ("station", "station_id", "station_ref")):
                    try:
                        kind, key = station_of(src.data)
                        station_id = (
                            refs.get(str(key)) if kind == "ref" else (int(key) if int(key) in ids else None)
                        )
                        if station_id is None:
                            errors.append(RowError("station", f"no station {key}"))
                    except RowError as exc:
                        errors.append(exc)
                promo = promotion_from_data(
                    src.data, tz=reg.tz, station_id=station_id, errors=errors, book=book, rules=rules
                )
                if promo is not None:
                    k = (promotion_target(promo), promo.source, str(promo.source_ref))
                    if k in seen:
                        errors.append(
                            RowError("source_ref", f"duplicate of row {seen[k]} (same station or brand)")
                        )
                    else:
                        seen[k] = src.row
                if errors or promo is None:
                    rejects.extend(
                        Reject(
                            src.row,
                            e.field,
                            e.reason,
                            None if src.data.get(e.field) is None else str(src.data.get(e.field)),
                        )
                        for e in errors
                    )
                    continue
                valid.append((src.row, promo))
            plan: list[tuple[str, Promotion]] = []
            for row, pr in valid:
                found = find_promotion(conn, pr)
                action = (
                    "new" if found is None else ("unchanged" if same_promotion(found[0], pr) else "updated")
                )
                plan.append((action, pr))
                setattr(summary, action, getattr(summary, action) + 1)
                if action != "unchanged":
                    summary.example(action, f"row {row} {pr.source_ref} {pr.title} ({pr.kind} {pr.value})")
            summary.rejects = rejects
            summary.rejected_rows = len({r.row for r in rejects})
            if dry_run or (rejects and not allow_rejects):
                raise psycopg.Rollback(tx)
            for action, pr in plan:
                if action != "unchanged":
                    upsert_promotion(conn, pr, actor=actor, zone=reg.price_zone, rules=rules)
            summary.written = True
        return summary

    return ob.run_load(settings.database_url, reg.timezone, body)


def add_parser(commands: Commands) -> None:
    ob.add_loader_parser(
        commands,
        COMMAND,
        run,
        summary="load promotions from a CSV/JSON feed",
        description=described(__doc__),
    )


def run(args: argparse.Namespace) -> int:
    return ob.run_loader(args, load_promotions)
