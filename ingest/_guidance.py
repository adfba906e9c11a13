"""`python -m ingest guidance [FILE] [--actor NAME]`: load the official Yunnan price ceilings into
price_ceilings, each new or corrected ceiling with an audit row (entity price_ceiling).

The file is ../shared/data/prices/yunnan_guidance_prices.json (or one of the same shape): notices of
one zone (`zone.code`, `notices[].prices`), each in force from 24:00 Asia/Shanghai of its adjustment
date (`effective_from`, checked against that rule), plus optionally `other_zones_<date>` tables keyed
"<zone code> (<cities>)" for the notice of that date. Idempotent: loading twice changes nothing.

A new notice re-checks the stored future prices (effective_from after now) of the served region's price
zone: those outside the band of the ceiling now in force at their effective_from (geo/_plausible.py)
are removed, each with an audit row (action delete, with the rule and the reason), and listed. They are
removed rather than the notice rejected: the official ceiling is the authority, a price set against an
older one is what is now wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import psycopg

from geo._plausible import PlausibilityRules
from geo._pricing import KNOWN_GRADES
from ingest._cli import Commands, add_command, described, one_line
from ingest._onboarding import add_actor_option
from store._ceilings import Ceiling, staleness, upsert_ceilings
from store._prices import RemovedPrice, remove_implausible_future_prices

NOTICE_TZ = ZoneInfo("Asia/Shanghai")


def default_guidance_file() -> Path:
    from config import get_settings

    return get_settings().shared_data_dir / "prices" / "yunnan_guidance_prices.json"


def in_force_from(adjustment_date: date) -> datetime:
    """24:00 Asia/Shanghai of the adjustment date = 00:00 of the next day."""
    return datetime.combine(adjustment_date + timedelta(days=1), time(0), NOTICE_TZ)


def _grade(key: str) -> str:
    g = str(key).strip().rstrip("#")
    if g not in KNOWN_GRADES:
        raise ValueError(f"unknown grade {key!r} in guidance file (known: {', '.join(KNOWN_GRADES)})")
    return g


def parse_guidance(data: dict[str, Any]) -> list[Ceiling]:
    """The ceilings in a guidance document. Raises ValueError on anything inconsistent."""
    zone = data.get("zone", {}).get("code")
    if not zone:
        raise ValueError("guidance file has no zone.code")
    out: list[Ceiling] = []
    notices_by_date: dict[str, dict[str, Any]] = {}
    for n in data.get("notices", []):
        adj = date.fromisoformat(n["adjustment_date"])
        start = in_force_from(adj)
        if "effective_from" in n and datetime.fromisoformat(n["effective_from"]) != start:
            raise ValueError(
                f"notice {adj}: effective_from {n['effective_from']} is not 24:00 Asia/Shanghai of {adj}"
            )
        notices_by_date[adj.isoformat()] = n
        for grade, price in n["prices"].items():
            out.append(Ceiling(zone, _grade(grade), Decimal(str(price)), start, adj, n.get("source_url")))
    for key, table in data.items():
        if not key.startswith("other_zones_"):
            continue
        adj = date.fromisoformat(key.removeprefix("other_zones_"))
        source_url = notices_by_date.get(adj.isoformat(), {}).get("source_url")
        for label, prices in table.items():
            other = str(label).split()[0]
            for grade, price in prices.items():
                out.append(
                    Ceiling(other, _grade(grade), Decimal(str(price)), in_force_from(adj), adj, source_url)
                )
    if not out:
        raise ValueError("guidance file holds no prices")
    for c in out:
        if c.max_price_cny <= 0:
            raise ValueError(f"ceiling {c.zone}/{c.grade} on {c.adjustment_date} is not positive")
    return out


class GuidanceLoad(NamedTuple):
    total: int  # ceilings in the file
    changed: int  # ceilings written (new or corrected), each audited
    removed: list[RemovedPrice]  # stored future prices the new ceilings made implausible (deleted, audited)


def load_guidance_file(
    conn: psycopg.Connection,
    path: Path | str,
    *,
    actor: str,
    zone: str | None = None,
    rules: PlausibilityRules | None = None,
    now: datetime | None = None,
) -> GuidanceLoad:
    """Load a guidance file in one transaction: its ceilings (each change audited as `actor`), then, when
    any changed, the stored future prices re-checked against the ceilings of `zone` (default: the served
    region's price zone): a price outside the band of its new ceiling is removed, with an audit row."""
    ceilings = parse_guidance(json.loads(Path(path).read_text(encoding="utf-8")))
    if zone is None:
        from config import get_settings, resolve_served_region

        zone = resolve_served_region(get_settings()).region.price_zone
    with conn.transaction():
        written = upsert_ceilings(conn, ceilings, actor=actor)
        removed = (
            remove_implausible_future_prices(conn, zone=zone, actor=actor, rules=rules, now=now)
            if written
            else []
        )
    return GuidanceLoad(len(ceilings), len(written), removed)


def add_parser(commands: Commands) -> None:
    p = add_command(
        commands,
        "guidance",
        run,
        summary="load the official Yunnan price ceilings (audited; drops future prices they make implausible)",
        description=described(__doc__),
    )
    p.add_argument("file", nargs="?", type=Path, default=None, help="default: the shared Yunnan file")
    add_actor_option(p)


def run(args: argparse.Namespace) -> int:
    from config import get_settings, resolve_served_region
    from ingest._onboarding import default_actor

    path = args.file or default_guidance_file()
    if not path.is_file():
        print(f"ingest guidance: guidance file {path} not found", file=sys.stderr)
        return 1
    settings = get_settings()
    region = resolve_served_region(settings).region
    zone = region.price_zone
    try:
        with psycopg.connect(settings.database_url) as conn:
            conn.execute("SELECT set_config('TimeZone', %s, false)", (region.timezone,))  # for messages
            loaded = load_guidance_file(
                conn,
                path,
                actor=args.actor or default_actor(),
                zone=zone,
                rules=PlausibilityRules.from_settings(settings),
            )
            stale = staleness(conn, zone, region.now().date(), region.holidays).message()
    except ValueError as exc:
        print(f"ingest guidance: guidance file {path} rejected: {one_line(exc)}", file=sys.stderr)
        return 1
    print(f"price ceilings: {loaded.total} in {path.name}, {loaded.changed} new or changed")
    if loaded.removed:
        print(
            f"removed {len(loaded.removed)} future prices of zone {zone} that the new ceilings make implausible:"
        )
        for r in loaded.removed:
            print(
                f"  price {r.id}: station {r.station_id} {r.grade}# {r.price_cny:.2f} CNY/L from "
                f"{r.effective_from.isoformat()} ({r.reason})"
            )
    if stale is not None:
        print(f"warning: {stale}", file=sys.stderr)
    return 0
