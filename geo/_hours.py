"""Opening hours (OSM `opening_hours`) and "can I fill up there at that time".

Parsing and evaluation are done by `opening-hours-py` (the full OSM grammar: `24/7`, `Su closed`,
`PH off`, month ranges, `Dec 25 off`, comments, `||` fallbacks, open ends like `06:00+`). This module
is a thin wrapper that adds the region's own public-holiday calendar (data/regions/*.toml): the
library's built-in calendars know only some days of China's multi-day holidays, so `PH` is resolved
here: on a region holiday the `PH` selector is rewritten to that day's weekday before evaluation, on
any other day it matches nothing (the library's behaviour without a country).

`can_fill_up` is the single decision used by every endpoint that says whether a driver can fill up at
a station at a given (arrival) time.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Protocol

from opening_hours import OpeningHours, State

from geo._errors import InvalidInput

_WEEKDAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_PH = re.compile(r"\bPH\b")
MAX_LENGTH = 255


class HolidayCalendar(Protocol):
    def is_holiday(self, day: date) -> bool: ...


class InvalidOpeningHours(InvalidInput):
    """An opening_hours value that the OSM grammar does not accept."""


@lru_cache(maxsize=4096)
def _parsed(text: str) -> OpeningHours | None:
    try:
        return OpeningHours(text)
    except Exception:  # the library raises its own ParserError (an Exception) for bad syntax
        return None


def _on_holiday(text: str, weekday: int) -> str:
    """`text` with every `PH` outside comments replaced by the weekday `weekday` (0 = Monday)."""
    parts = text.split('"')
    for i in range(0, len(parts), 2):  # even parts are outside "comments"
        parts[i] = _PH.sub(_WEEKDAYS[weekday], parts[i])
    return '"'.join(parts)


def check_opening_hours(value: str, param: str = "opening_hours") -> str:
    """The value stripped when it is valid OSM opening_hours, else InvalidOpeningHours naming `param`."""
    text = value.strip()
    if not text:
        raise InvalidOpeningHours(param, "is empty; send null to clear it")
    if len(text) > MAX_LENGTH:
        raise InvalidOpeningHours(param, f"is {len(text)} characters long, at most {MAX_LENGTH}")
    if _parsed(text) is None:
        raise InvalidOpeningHours(
            param,
            f"{text!r} is not valid OSM opening_hours (examples: '24/7', 'Mo-Sa 07:00-20:00; Su closed', "
            "'06:00-22:00; PH off')",
        )
    return text


_ALWAYS_OPEN = frozenset(
    (
        "24小时",
        "24小时营业",
        "24小时服务",
        "全天",
        "全天营业",
        "全天24小时",
        "全天24小时营业",
        "24h",
        "24/24",
        "24x7",
    )
)
_EVERY_DAY = re.compile(r"^(?:每天|每日|天天|全周)\s*")
_TIME_DASH = re.compile(r"(\d{1,2}:\d{2})\s*(?:-|~|～|至|到|—|–)\s*(\d{1,2}:\d{2})")


def normalize_opening_hours(value: str) -> str:
    """Station operators' Chinese wording as OSM opening_hours: '24小时', '全天营业' -> '24/7';
    '每天 07:00－22:00' -> 'Mo-Su 07:00-22:00'; full-width digits, colons and dashes as ASCII.
    Anything else is returned stripped (and then validated as OSM opening_hours)."""
    text = unicodedata.normalize("NFKC", value).strip()
    if text.lower().replace(" ", "") in _ALWAYS_OPEN:
        return "24/7"
    every_day = _EVERY_DAY.match(text)
    if every_day is not None and _TIME_DASH.search(text):
        text = "Mo-Su " + text[every_day.end() :]
    return _TIME_DASH.sub(r"\1-\2", text)


def is_valid_opening_hours(value: str) -> bool:
    return bool(value.strip()) and _parsed(value.strip()) is not None


def open_now(
    opening_hours: str | None, at_local: datetime, holidays: HolidayCalendar | None = None
) -> bool | None:
    """True/False at the local time `at_local`; None when missing, unparseable or explicitly unknown.

    `holidays` is the region's calendar for `PH`; without it no day is a public holiday.
    """
    if not opening_hours or not opening_hours.strip():
        return None
    text = opening_hours.strip()
    naive = at_local.replace(tzinfo=None)
    if holidays is not None and _PH.search(text) and holidays.is_holiday(naive.date()):
        text = _on_holiday(text, naive.weekday())
    oh = _parsed(text)
    if oh is None:
        return None
    state = oh.state(naive)[0]
    if state == State.OPEN:
        return True
    if state == State.CLOSED:
        return False
    return None


@dataclass(frozen=True)
class FillUp:
    """Whether a driver can fill up at a station at a time: `ok` True, False, or None (hours unknown);
    `reason` says why not: 'closed', 'temporarily_closed' or 'outside_opening_hours'."""

    ok: bool | None
    reason: str | None
    open_now: bool | None  # the opening hours alone (None: missing or unknown)


def can_fill_up(
    status: str, opening_hours: str | None, at_local: datetime, holidays: HolidayCalendar | None = None
) -> FillUp:
    """The one decision: the station's status, then its opening hours at `at_local` (its arrival time).

    Unknown opening hours do not exclude a station (ok None): most stations have none mapped.
    """
    hours = open_now(opening_hours, at_local, holidays)
    if status != "open":
        return FillUp(False, status if status in ("closed", "temporarily_closed") else "closed", False)
    if hours is False:
        return FillUp(False, "outside_opening_hours", False)
    return FillUp(hours, None, hours)
