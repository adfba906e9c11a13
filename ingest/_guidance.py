"""`python -m ingest guidance [FILE]`: load the official Yunnan price ceilings into price_ceilings.

The file is ../shared/data/prices/yunnan_guidance_prices.json (or one of the same shape): notices of
one zone (`zone.code`, `notices[].prices`), each in force from 24:00 Asia/Shanghai of its adjustment
date (`effective_from`, checked against that rule), plus optionally `other_zones_<date>` tables keyed
"<zone code> (<cities>)" for the notice of that date. Idempotent: loading twice changes nothing.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from geo._pricing import KNOWN_GRADES
from store._ceilings import Ceiling, upsert_ceilings

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


def load_guidance_file(conn: psycopg.Connection, path: Path | str) -> tuple[int, int]:
    """Load a guidance file; returns (ceilings in the file, rows changed)."""
    ceilings = parse_guidance(json.loads(Path(path).read_text(encoding="utf-8")))
    return len(ceilings), upsert_ceilings(conn, ceilings)


def main(argv: list[str]) -> int:
    from config import get_settings

    args = argv[1:] if argv and argv[0] == "guidance" else argv
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m ingest guidance [FILE]  (default: shared yunnan_guidance_prices.json)")
        return 0
    path = Path(args[0]) if args else default_guidance_file()
    if not path.is_file():
        print(f"guidance file {path} not found")
        return 1
    try:
        with psycopg.connect(get_settings().database_url) as conn:
            total, changed = load_guidance_file(conn, path)
    except ValueError as exc:
        print(f"guidance file {path} rejected: {exc}")
        return 1
    print(f"price ceilings: {total} in {path.name}, {changed} new or changed")
    return 0
