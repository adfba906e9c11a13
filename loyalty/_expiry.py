"""Rolling expiry: points expire `months` calendar months after they were earned, each earning a lot;
a redemption or an expiry takes from the lots that expire first (FIFO)."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Lot:
    id: int
    remaining: int
    expires_at: datetime


def expiry_for(earned_at: datetime, months: int) -> datetime:
    """earned_at plus `months` calendar months (the last day of a shorter month when the day is missing)."""
    if earned_at.tzinfo is None:
        raise ValueError("earned_at must be timezone-aware")
    m = earned_at.month - 1 + months
    year, month = earned_at.year + m // 12, m % 12 + 1
    day = min(earned_at.day, calendar.monthrange(year, month)[1])
    return earned_at.replace(year=year, month=month, day=day)


def take_fifo(lots: Sequence[Lot], points: int, *, now: datetime) -> list[tuple[int, int]]:
    """[(lot id, points taken)] covering `points` from lots not expired at `now`, earliest expiry first.
    ValueError when the live lots hold fewer points: expired points are never redeemed."""
    if points < 0:
        raise ValueError("points must not be negative")
    taken: list[tuple[int, int]] = []
    need = points
    for lot in sorted(lots, key=lambda x: (x.expires_at, x.id)):
        if need == 0:
            break
        if lot.expires_at <= now or lot.remaining <= 0:
            continue
        n = min(need, lot.remaining)
        taken.append((lot.id, n))
        need -= n
    if need:
        raise ValueError(f"only {points - need} of {points} points are unexpired")
    return taken
