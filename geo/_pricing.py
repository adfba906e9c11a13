"""Promotions and effective prices. Pure: no database, no HTTP.

Time: every condition is evaluated on the region's local wall clock (Asia/Shanghai for Lijiang), so a
Saturday-only promotion applies at 2026-11-27T17:00Z, which is Saturday 01:00 in Lijiang.

Conditions of a promotion (all must hold):
- `valid_from <= at < valid_to` (absolute instants; `valid_to` None = open-ended);
- `grades` empty = every grade, else the grade must be listed;
- `days_of_week` (1 = Monday .. 7 = Sunday), `date_ranges` ([start, end] local dates, inclusive) and
  `public_holidays_only` (the region's holiday calendar) are tested on the *promotion day*: the local
  date of `at`, except in the after-midnight part of a time window that wraps midnight
  (22:00-02:00 on Friday covers Saturday 01:00), where it is the previous date, the day the window
  opened;
- time window `time_from`/`time_to`: `from <= t < to`; when `from > to` it wraps midnight
  (`t >= from or t < to`); equal bounds = all day; one bound alone = open on the other side;
- `min_litres`, `min_amount_cny` (the order amount, default list price x litres);
- `members_only` (caller says member=True), `payment_methods` (caller's payment must be listed);
- `min_tier` (a membership tier code, store/_membership.py): the caller's `tiers` (the codes of its tier
  and every lower one) must hold it; holding any tier also meets `members_only`. Ranking for a logged-in driver and the payment pass the same tiers,
  so a member sees in the ranking the price the member then pays.

Kinds and the saving per litre they give on a list price `p` for an order of `L` litres:
- `percent_off` (value = percent): `p * value / 100`;
- `cny_off_per_litre`: `value` (never more than `p`);
- `cny_off_per_order` (needs `min_amount_cny` if set): `value / L`, so the effective per-litre price
  depends on the litres; `L` defaults to DEFAULT_LITRES = 40 L (a typical car tank fill);
- `topup_bonus` (value = percent of bonus credit on a card top-up: pay 100, get 100 + value): counted
  only when the caller tops up (`topup=True`) or is a member (`member=True`, members hold the stored
  value card); then the effective price is `p / (1 + value / 100)`.

Stacking rule: promotions do not stack. For each grade the single applicable promotion with the
largest saving is applied (ties: the lower id, then title). The effective price is never below 0.01.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal, Protocol

# The fuel grades the service knows, in display order: 89/92/95/98 petrol (RON) and 0# diesel.
KNOWN_GRADES: tuple[str, ...] = ("89", "92", "95", "98", "0")
# Grades with an official ceiling (98# is market-priced).
CEILING_GRADES: tuple[str, ...] = ("89", "92", "95", "0")

PromotionKind = Literal["percent_off", "cny_off_per_litre", "cny_off_per_order", "topup_bonus"]
PROMOTION_KINDS: tuple[str, ...] = ("percent_off", "cny_off_per_litre", "cny_off_per_order", "topup_bonus")
PROMOTION_SCOPES: tuple[str, ...] = ("station", "brand")
DEFAULT_LITRES = Decimal(40)
CENT = Decimal("0.01")


class HolidayCalendar(Protocol):
    def is_holiday(self, day: date) -> bool: ...


class _NoHolidays:
    def is_holiday(self, day: date) -> bool:
        return False


NO_HOLIDAYS: HolidayCalendar = _NoHolidays()


_GRADE_TEXT = re.compile(r"(\d{1,3})?\s*(?:#|号)?\s*(车用)?\s*(汽油|柴油|gasoline|petrol|diesel)?")
_DIESEL_WORDS = ("柴油", "diesel")


def normalize_grade(value: str) -> str | None:
    """The known grade a station's text names, else None: '92', '92#', ' 0# ', '92号', '95号汽油',
    '0号柴油', '0#柴油', full-width '９２＃'; plain '柴油' / 'diesel' is 0# (the only diesel sold)."""
    text = unicodedata.normalize("NFKC", value).strip().lower()
    m = _GRADE_TEXT.fullmatch(text)
    if m is None or not text:
        return None
    number, fuel = m.group(1), m.group(3)
    if number is None:
        return "0" if fuel in _DIESEL_WORDS else None
    if fuel is not None and (fuel in _DIESEL_WORDS) != (number == "0"):
        return None  # '92号柴油', '0号汽油': not a grade
    return number if number in KNOWN_GRADES else None


@dataclass(frozen=True)
class Promotion:
    kind: PromotionKind
    value: Decimal
    id: int | None = None
    scope: str = "station"
    station_id: int | None = None
    brand: str | None = None
    title: str = ""
    title_en: str | None = None
    grades: tuple[str, ...] = ()
    min_amount_cny: Decimal | None = None
    min_litres: Decimal | None = None
    days_of_week: tuple[int, ...] = ()
    date_ranges: tuple[tuple[date, date], ...] = ()
    public_holidays_only: bool = False
    time_from: time | None = None
    time_to: time | None = None
    members_only: bool = False
    payment_methods: tuple[str, ...] = ()
    min_tier: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    source: str = "station"
    source_ref: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROMOTION_KINDS:
            raise ValueError(f"unknown promotion kind {self.kind!r}")
        if self.scope not in PROMOTION_SCOPES:
            raise ValueError(f"unknown promotion scope {self.scope!r}")
        if Decimal(self.value) <= 0:
            raise ValueError("promotion value must be > 0")
        if any(d < 1 or d > 7 for d in self.days_of_week):
            raise ValueError("days_of_week are 1 (Monday) .. 7 (Sunday)")
        for start, end in self.date_ranges:
            if end < start:
                raise ValueError(f"date range {start}..{end} ends before it starts")


@dataclass(frozen=True)
class AppliedPromotion:
    promotion: Promotion
    saving_per_litre: Decimal  # CNY per litre, exact
    saving_total: Decimal  # CNY for the order of `litres`


def _in_window(t: time, start: time | None, end: time | None) -> tuple[bool, bool]:
    """(inside, in the after-midnight part of a wrapping window)."""
    if start is None and end is None:
        return True, False
    if start is not None and end is not None:
        if start == end:
            return True, False
        if start < end:
            return start <= t < end, False
        if t >= start:
            return True, False
        return t < end, t < end
    if start is not None:
        return t >= start, False
    assert end is not None
    return t < end, False


def applies(
    promo: Promotion,
    at_local: datetime,
    *,
    holidays: HolidayCalendar = NO_HOLIDAYS,
    grade: str | None = None,
    litres: Decimal | float | None = None,
    amount: Decimal | float | None = None,
    member: bool = False,
    payment: str | None = None,
    topup: bool = False,
    tiers: Collection[str] = (),
) -> bool:
    """Whether `promo` applies at `at_local` (a timezone-aware datetime in the region's time zone).

    `grade` None skips the grade check; `litres`/`amount` None fail a min_litres/min_amount condition.
    """
    if at_local.tzinfo is None:
        raise ValueError("at_local must be timezone-aware (the region's local time)")
    if promo.valid_from is not None and at_local < promo.valid_from:
        return False
    if promo.valid_to is not None and at_local >= promo.valid_to:
        return False
    if grade is not None and promo.grades and grade not in promo.grades:
        return False
    inside, after_midnight = _in_window(at_local.time().replace(tzinfo=None), promo.time_from, promo.time_to)
    if not inside:
        return False
    day = at_local.date() - timedelta(days=1) if after_midnight else at_local.date()
    if promo.days_of_week and day.isoweekday() not in promo.days_of_week:
        return False
    if promo.date_ranges and not any(start <= day <= end for start, end in promo.date_ranges):
        return False
    if promo.public_holidays_only and not holidays.is_holiday(day):
        return False
    if promo.min_litres is not None and (litres is None or Decimal(str(litres)) < promo.min_litres):
        return False
    if promo.min_amount_cny is not None and (amount is None or Decimal(str(amount)) < promo.min_amount_cny):
        return False
    if promo.members_only and not (member or tiers):  # a logged-in driver holding a tier is a member
        return False
    if promo.min_tier is not None and promo.min_tier not in tiers:
        return False
    if promo.payment_methods and (
        payment is None or payment.lower() not in {m.lower() for m in promo.payment_methods}
    ):
        return False
    return not (promo.kind == "topup_bonus" and not (topup or member))


def saving_per_litre(promo: Promotion, list_price: Decimal, litres: Decimal) -> Decimal:
    """The saving per litre `promo` gives on `list_price` for an order of `litres` (>= 0, <= price)."""
    value = Decimal(promo.value)
    if promo.kind == "percent_off":
        saving = list_price * value / 100
    elif promo.kind == "cny_off_per_litre":
        saving = value
    elif promo.kind == "cny_off_per_order":
        saving = value / litres if litres > 0 else Decimal(0)
    else:  # topup_bonus
        saving = list_price - list_price / (1 + value / 100)
    return max(Decimal(0), min(saving, list_price - CENT))


def effective_price(
    list_price: Decimal | float,
    grade: str,
    promos: Iterable[Promotion],
    at: datetime,
    *,
    tz: tzinfo | None = None,
    holidays: HolidayCalendar = NO_HOLIDAYS,
    litres: Decimal | float | None = None,
    amount: Decimal | float | None = None,
    member: bool = False,
    payment: str | None = None,
    topup: bool = False,
    tiers: Collection[str] = (),
) -> tuple[Decimal, list[AppliedPromotion]]:
    """(effective price per litre rounded to 0.01 CNY, the applied promotion with its saving).

    `at` is converted to `tz` (the region's zone) first; a naive `at` is taken as already local in
    `tz`. `litres` defaults to 40; `amount` defaults to list price x litres. At most one promotion
    is applied (the best one): see the module docstring.
    """
    price = _decimal(list_price)
    n_litres = DEFAULT_LITRES if litres is None else _decimal(litres)
    order_amount = price * n_litres if amount is None else _decimal(amount)
    at_local = _localize(at, tz)
    best: AppliedPromotion | None = None
    for promo in sorted(promos, key=lambda p: (p.id if p.id is not None else 1 << 62, p.title)):
        if not applies(
            promo,
            at_local,
            holidays=holidays,
            grade=grade,
            litres=n_litres,
            amount=order_amount,
            member=member,
            payment=payment,
            topup=topup,
            tiers=tiers,
        ):
            continue
        saving = saving_per_litre(promo, price, n_litres)
        if saving <= 0:
            continue
        if best is None or saving > best.saving_per_litre:
            best = AppliedPromotion(promo, saving, saving * n_litres)
    if best is None:
        return price.quantize(CENT, ROUND_HALF_UP), []
    out = max(CENT, (price - best.saving_per_litre).quantize(CENT, ROUND_HALF_UP))
    return out, [best]


def _decimal(x: Decimal | float) -> Decimal:
    """A Decimal as it is; a float through its shortest repr (0.1 -> Decimal('0.1'))."""
    return x if isinstance(x, Decimal) else Decimal(str(x))


def _localize(at: datetime, tz: tzinfo | None) -> datetime:
    if at.tzinfo is None:
        if tz is None:
            raise ValueError("a naive `at` needs `tz`")
        return at.replace(tzinfo=tz)
    return at.astimezone(tz) if tz is not None else at


def parse_date_ranges(value: Sequence[Sequence[str | date]] | None) -> tuple[tuple[date, date], ...]:
    """[[start, end], ...] with ISO strings or dates -> tuple of (start, end) dates."""
    out: list[tuple[date, date]] = []
    for item in value or ():
        if len(item) != 2:
            raise ValueError(f"a date range is [start, end], got {item!r}")
        a, b = (x if isinstance(x, date) else date.fromisoformat(str(x)) for x in item)
        out.append((a, b))
    return tuple(out)
