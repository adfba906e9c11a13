"""`open_now` for simple OSM opening_hours values; anything richer gives None (unknown).

Understood: `24/7`; rules separated by `;`, each `[days] ranges` where days are `Mo-Fr`, `Sa,Su`,
`Mo-Su` (default every day) and ranges are `HH:MM-HH:MM[,HH:MM-HH:MM]` (an end before the start, or
24:00, runs past midnight), or `off`. Later rules override earlier ones for their days.
"""

from __future__ import annotations

import re
from datetime import datetime

_DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_RULE = re.compile(r"^(?:(?P<days>[A-Z][a-z](?:\s*[-,]\s*[A-Z][a-z])*)\s+)?(?P<times>.+)$")
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def _days(spec: str | None) -> set[int] | None:
    if not spec:
        return set(range(7))
    out: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            if a not in _DAYS or b not in _DAYS:
                return None
            i, j = _DAYS.index(a), _DAYS.index(b)
            out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in _DAYS:
            out.add(_DAYS.index(part))
        else:
            return None
    return out


def open_now(opening_hours: str | None, at_local: datetime) -> bool | None:
    """True/False for simple opening_hours, None when missing or too complex to judge."""
    if not opening_hours:
        return None
    text = opening_hours.strip()
    if text == "24/7":
        return True
    # per weekday index: list of (start_min, end_min) intervals, possibly spilling past 24:00
    table: dict[int, list[tuple[int, int]]] = {}
    for raw in text.split(";"):
        rule = raw.strip()
        if not rule:
            continue
        m = _RULE.match(rule)
        if not m:
            return None
        days = _days(m.group("days"))
        if days is None:
            return None
        times = m.group("times").strip()
        intervals: list[tuple[int, int]] = []
        if times != "off":
            for part in times.split(","):
                r = _RANGE.match(part.strip())
                if not r:
                    return None
                h1, m1, h2, m2 = (int(x) for x in r.groups())
                if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
                    return None
                start, end = h1 * 60 + m1, h2 * 60 + m2
                if end <= start:
                    end += 24 * 60
                intervals.append((start, end))
        for d in days:
            table[d] = intervals
    minute = at_local.hour * 60 + at_local.minute
    today, yesterday = at_local.weekday(), (at_local.weekday() - 1) % 7
    if any(s <= minute < e for s, e in table.get(today, [])):
        return True
    return any(s <= minute + 24 * 60 < e for s, e in table.get(yesterday, []))
