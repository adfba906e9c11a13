"""China's fuel price adjustment windows (调价窗口) and whether the official ceilings loaded are stale.

Pure: no database. Under the NDRC mechanism (国家发展改革委关于进一步完善成品油价格形成机制的通知)
retail ceilings may change every ten working days: a window falls on the 10th working day after the
previous one, counted on the region's holiday calendar (data/regions/*.toml: public holidays are not
working days, the weekend days worked instead (调休) are). Each notice is dated on its window day (in
force from 24:00 of that day), so the newest notice loaded is the window the count starts from.

The ceilings are *stale* when a window has come (its date <= today, local) after the newest notice:
a notice may be missing (a window where prices did not move also publishes one, "不作调整", and a
load of the notices records the day). Outside the years the calendar lists, only weekends are
non-working days, so a window may come out a few days early around a holiday: warn, never reject.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

WINDOW_WORKING_DAYS = 10
MAX_WINDOWS = 60  # a bounded look-ahead: two years of windows


class WorkCalendar(Protocol):
    def day_type(self, day: date) -> str: ...  # 'weekday' is a working day (config.Holidays)


def is_working_day(day: date, calendar: WorkCalendar) -> bool:
    return calendar.day_type(day) == "weekday"


def next_window(after: date, calendar: WorkCalendar) -> date:
    """The adjustment window WINDOW_WORKING_DAYS working days after the window of `after`."""
    day, counted = after, 0
    while counted < WINDOW_WORKING_DAYS:
        day += timedelta(days=1)
        if is_working_day(day, calendar):
            counted += 1
    return day


@dataclass(frozen=True)
class CeilingStaleness:
    newest_notice: date | None  # adjustment date of the newest notice loaded (None: none loaded)
    missed_windows: tuple[date, ...]  # windows after it, up to today (capped at MAX_WINDOWS)
    next_window: date | None  # the first window after today, counted from the newest notice

    @property
    def stale(self) -> bool:
        return self.newest_notice is None or bool(self.missed_windows)

    @property
    def last_window(self) -> date | None:
        return self.missed_windows[-1] if self.missed_windows else self.newest_notice

    def message(self) -> str | None:
        """One line for an operator, None when the ceilings are current."""
        if self.newest_notice is None:
            return "no official price ceilings are loaded: run `python -m ingest guidance` (price checks need them)"
        if not self.missed_windows:
            return None
        n = len(self.missed_windows)
        return (
            f"the official price ceilings are stale: the newest notice is of {self.newest_notice}, and "
            f"{n} adjustment window{'s' if n != 1 else ''} ha{'ve' if n != 1 else 's'} passed since "
            f"(last {self.missed_windows[-1]}): load the newer notices with `python -m ingest guidance FILE`"
        )


def ceiling_staleness(newest_notice: date | None, today: date, calendar: WorkCalendar) -> CeilingStaleness:
    """The windows that came after the newest notice, up to `today` (local date) inclusive."""
    if newest_notice is None:
        return CeilingStaleness(None, (), None)
    missed: list[date] = []
    window = next_window(newest_notice, calendar)
    while window <= today and len(missed) < MAX_WINDOWS:
        missed.append(window)
        window = next_window(window, calendar)
    return CeilingStaleness(newest_notice, tuple(missed), window)
