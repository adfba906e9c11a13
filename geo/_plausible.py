"""Plausibility rules of every write path (manager API, ingest loaders, load-region, demo seeding).

Pure: no database, no HTTP. The thresholds come from settings (`PlausibilityRules.from_settings`); the
official ceilings are passed in as a `CeilingBook`. A rule that fails gives a `Problem` naming the
field, the rule and the allowed range; the API turns it into a 422 (`Problem.error`), the loaders into a
reject row (`Problem.reason`).

Prices (a list price of `grade` at a station, in force from `effective_from`), checked in this order:
- `price.grade_not_sold`: the station does not list the grade;
- `price.too_far_ahead`: `effective_from` later than now + `max_ahead_days`;
- `price.no_ceiling`: no official ceiling of the grade is loaded at all (load the notices first);
- `price.before_first_notice`: `effective_from` before the first ceiling notice of the grade;
- `price.too_old`: `effective_from` earlier than now - `max_age_days`;
- `price.above_ceiling` / `price.below_band`: outside [ceiling x (1 - band), ceiling], with the ceiling
  in force at `effective_from` (a notice of day D is in force from 24:00 of D);
- 98# has no official ceiling: it is checked against the 95# ceiling c95, within
  [c95 x (1 - band), c95 x (1 + premium_98)] (`price.below_band` / `price.above_band`).
Bounds are rounded inwards to the fen (0.01 CNY).

Promotions, capped per kind (`promotion.<kind>`):
- `percent_off` <= `max_percent_off` percent;
- `cny_off_per_litre` <= `max_off_per_litre` x the lowest ceiling of the grades it applies to (all
  grades when none are listed; 98# counts with the 95# ceiling), in force at `valid_from` (the first
  notice when it starts earlier);
- `cny_off_per_order` <= `max_off_per_order_fen` (integer fen);
- `topup_bonus` (percent of bonus credit) <= `max_topup_bonus_percent`.

Pumps and nozzles (a station's forecourt, `nozzle_problem`):
- `nozzle.pump_no` 1-99 and `nozzle.nozzle_no` 1-9 (IFSF fuelling points and logical nozzles);
- `nozzle.grade_not_sold`: a nozzle delivers a grade the station does not list (when it lists any);
- `nozzle.label`: a pump label of at most 40 printable characters.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol

from geo._errors import ImplausibleValue, PriceAboveCeiling
from geo._pricing import CEILING_GRADES, KNOWN_GRADES, Promotion

CENT = Decimal("0.01")
FEN_PER_CNY = 100


class CeilingLike(Protocol):
    """An official maximum retail price (store._ceilings.Ceiling)."""

    @property
    def zone(self) -> str: ...
    @property
    def grade(self) -> str: ...
    @property
    def max_price_cny(self) -> Decimal: ...
    @property
    def effective_from(self) -> datetime: ...
    @property
    def adjustment_date(self) -> date | None: ...


class RuleSettings(Protocol):
    """The settings fields the rules read (config.Settings has them)."""

    plausible_price_band: Decimal
    plausible_98_over_95: Decimal
    plausible_price_max_age_days: int
    plausible_price_max_ahead_days: int
    plausible_max_percent_off: Decimal
    plausible_max_off_per_litre: Decimal
    plausible_max_off_per_order_fen: int
    plausible_max_topup_bonus_percent: Decimal


@dataclass(frozen=True)
class PlausibilityRules:
    """The thresholds. Defaults equal the settings' defaults (config/_settings.py)."""

    price_band: Decimal = Decimal("0.25")
    premium_98: Decimal = Decimal("0.35")
    max_age_days: int = 365
    max_ahead_days: int = 60
    max_percent_off: Decimal = Decimal(30)
    max_off_per_litre: Decimal = Decimal("0.30")
    max_off_per_order_fen: int = 10_000
    max_topup_bonus_percent: Decimal = Decimal(20)

    @classmethod
    def from_settings(cls, s: RuleSettings) -> PlausibilityRules:
        return cls(
            price_band=Decimal(s.plausible_price_band),
            premium_98=Decimal(s.plausible_98_over_95),
            max_age_days=int(s.plausible_price_max_age_days),
            max_ahead_days=int(s.plausible_price_max_ahead_days),
            max_percent_off=Decimal(s.plausible_max_percent_off),
            max_off_per_litre=Decimal(s.plausible_max_off_per_litre),
            max_off_per_order_fen=int(s.plausible_max_off_per_order_fen),
            max_topup_bonus_percent=Decimal(s.plausible_max_topup_bonus_percent),
        )


def reference_grade(grade: str) -> str:
    """The grade whose official ceiling bounds `grade`: itself, or 95# for 98# (market-priced)."""
    return grade if grade in CEILING_GRADES else "95"


class CeilingBook:
    """The ceilings of one zone, indexed per grade for lookups by time (built once per write)."""

    def __init__(self, ceilings: Iterable[CeilingLike], *, zone: str = "") -> None:
        by_grade: dict[str, list[CeilingLike]] = {}
        for c in ceilings:
            by_grade.setdefault(c.grade, []).append(c)
        self.zone = zone
        self._by_grade = {g: sorted(cs, key=lambda c: c.effective_from) for g, cs in by_grade.items()}
        self._starts = {g: [c.effective_from for c in cs] for g, cs in self._by_grade.items()}

    def at(self, grade: str, when: datetime) -> CeilingLike | None:
        """The ceiling of `grade` in force at `when` (the newest with effective_from <= when)."""
        starts = self._starts.get(grade)
        if not starts:
            return None
        i = bisect.bisect_right(starts, when)
        return self._by_grade[grade][i - 1] if i else None

    def first(self, grade: str) -> CeilingLike | None:
        cs = self._by_grade.get(grade)
        return cs[0] if cs else None


@dataclass(frozen=True)
class Problem:
    """A broken rule: `field` is the input field (grade, price_cny, effective_from, value)."""

    field: str
    rule: str
    message: str
    allowed_min: str | None = None
    allowed_max: str | None = None

    @property
    def allowed(self) -> dict[str, str | None] | None:
        if self.allowed_min is None and self.allowed_max is None:
            return None
        return {"min": self.allowed_min, "max": self.allowed_max}

    @property
    def reason(self) -> str:
        """One line for a reject report: the rule, then the message (which states the allowed range)."""
        return f"{self.rule}: {self.message}"

    def error(self, param: str | None = None) -> ImplausibleValue:
        cls = PriceAboveCeiling if self.rule == "price.above_ceiling" else ImplausibleValue
        return cls(param or self.field, self.message, rule=self.rule, allowed=self.allowed)


def _cny(x: Decimal) -> str:
    return f"{x:.2f}"


def _num(x: Decimal) -> str:
    return format(Decimal(x).normalize(), "f")


def _notice(c: CeilingLike, tz: tzinfo | None) -> str:
    start = c.effective_from.astimezone(tz) if tz is not None else c.effective_from
    day = c.adjustment_date.isoformat() if c.adjustment_date else start.date().isoformat()
    return f"notice of {day}, in force from {start.isoformat()}"


def price_band(grade: str, ceiling: CeilingLike, rules: PlausibilityRules) -> tuple[Decimal, Decimal]:
    """[lowest, highest] plausible price (CNY/L) of `grade` under `ceiling` of its reference grade."""
    c = Decimal(ceiling.max_price_cny)
    lo = (c * (1 - rules.price_band)).quantize(CENT, rounding=ROUND_CEILING)
    if grade in CEILING_GRADES:
        return lo, c
    return lo, (c * (1 + rules.premium_98)).quantize(CENT, rounding=ROUND_FLOOR)


def price_problem(
    grade: str,
    price: Decimal,
    effective_from: datetime,
    *,
    book: CeilingBook,
    rules: PlausibilityRules,
    now: datetime,
    sells: Collection[str] | None = None,
) -> Problem | None:
    """The first rule a price breaks (see the module docstring), or None. `sells`: the station's
    grades (None: not checked here)."""
    if sells is not None and grade not in sells:
        listed = ", ".join(f"{g}#" for g in KNOWN_GRADES if g in sells) or "no grade yet"
        return Problem(
            "grade",
            "price.grade_not_sold",
            f"the station sells {listed}, not {grade}#: add {grade} to the station's grades first",
        )
    tz = effective_from.tzinfo
    latest = now + timedelta(days=rules.max_ahead_days)
    earliest = now - timedelta(days=rules.max_age_days)
    ref = reference_grade(grade)
    first = book.first(ref)
    span_min = max(earliest, first.effective_from) if first is not None else earliest
    allowed = {
        "allowed_min": span_min.astimezone(tz).isoformat(),
        "allowed_max": latest.astimezone(tz).isoformat(),
    }
    if effective_from > latest:
        return Problem(
            "effective_from",
            "price.too_far_ahead",
            f"effective_from {effective_from.isoformat()} is more than {rules.max_ahead_days} days ahead "
            f"(latest {latest.astimezone(tz).isoformat()})",
            **allowed,
        )
    of = f"{ref}# (the bound of 98#)" if ref != grade else f"{grade}#"
    if first is None:
        return Problem(
            "effective_from",
            "price.no_ceiling",
            f"no official ceiling of {of} is loaded for zone {book.zone or '?'}: load the notices first "
            "(python -m ingest guidance)",
        )
    ceiling = book.at(ref, effective_from)
    if ceiling is None:
        return Problem(
            "effective_from",
            "price.before_first_notice",
            f"effective_from {effective_from.isoformat()} is before the first official ceiling of {of} "
            f"in zone {first.zone} ({_notice(first, tz)})",
            **allowed,
        )
    if effective_from < earliest:
        return Problem(
            "effective_from",
            "price.too_old",
            f"effective_from {effective_from.isoformat()} is more than {rules.max_age_days} days back "
            f"(earliest {earliest.astimezone(tz).isoformat()})",
            **allowed,
        )
    return band_problem(grade, price, effective_from, ceiling=ceiling, rules=rules)


def band_problem(
    grade: str, price: Decimal, effective_from: datetime, *, ceiling: CeilingLike, rules: PlausibilityRules
) -> Problem | None:
    """The band rule alone (also used to re-check stored future prices against a new notice)."""
    lo, hi = price_band(grade, ceiling, rules)
    p = Decimal(price)
    if lo <= p <= hi:
        return None
    tz = effective_from.tzinfo
    allowed = f"allowed {_cny(lo)}-{_cny(hi)} CNY/L"
    source = (
        f"the official ceiling {_cny(Decimal(ceiling.max_price_cny))} CNY/L of zone {ceiling.zone} "
        f"({_notice(ceiling, tz)})"
    )
    if grade in CEILING_GRADES:
        rule = "price.above_ceiling" if p > hi else "price.below_band"
        what = "above" if p > hi else f"more than {_num(rules.price_band * 100)} % below"
    else:
        rule = "price.above_band" if p > hi else "price.below_band"
        what = (
            f"more than {_num(rules.premium_98 * 100)} % above"
            if p > hi
            else f"more than {_num(rules.price_band * 100)} % below"
        )
        source = f"the 95# ceiling (98# has none): {source}"
    return Problem(
        "price_cny",
        rule,
        f"{grade}# price {_cny(p)} CNY/L at {effective_from.isoformat()} is {what} {source}; {allowed}",
        _cny(lo),
        _cny(hi),
    )


def promotion_problem(promo: Promotion, *, book: CeilingBook, rules: PlausibilityRules) -> Problem | None:
    """The cap of the promotion's kind it breaks, or None."""
    value = Decimal(promo.value)
    rule = f"promotion.{promo.kind}"
    if promo.kind == "percent_off" and value > rules.max_percent_off:
        cap = _num(rules.max_percent_off)
        return Problem("value", rule, f"percent_off {_num(value)} % is above the maximum {cap} %", "0", cap)
    if promo.kind == "topup_bonus" and value > rules.max_topup_bonus_percent:
        cap = _num(rules.max_topup_bonus_percent)
        return Problem("value", rule, f"topup_bonus {_num(value)} % is above the maximum {cap} %", "0", cap)
    if promo.kind == "cny_off_per_order":
        cap_cny = Decimal(rules.max_off_per_order_fen) / FEN_PER_CNY
        if value > cap_cny:
            return Problem(
                "value",
                rule,
                f"cny_off_per_order {_cny(value)} CNY is above the maximum {_cny(cap_cny)} CNY per order",
                "0.00",
                _cny(cap_cny),
            )
    if promo.kind == "cny_off_per_litre":
        refs = sorted({reference_grade(g) for g in (promo.grades or KNOWN_GRADES)})
        found: list[CeilingLike] = []
        for g in refs:
            c = (book.at(g, promo.valid_from) if promo.valid_from is not None else None) or book.first(g)
            if c is not None:
                found.append(c)
        if not found:
            return Problem(
                "value",
                rule,
                f"no official ceiling is loaded for zone {book.zone or '?'} to bound a discount per litre: "
                "load the notices first (python -m ingest guidance)",
            )
        low = min(found, key=lambda c: Decimal(c.max_price_cny))
        cap_cny = (Decimal(low.max_price_cny) * rules.max_off_per_litre).quantize(CENT, rounding=ROUND_FLOOR)
        if value > cap_cny:
            return Problem(
                "value",
                rule,
                f"cny_off_per_litre {_cny(value)} CNY/L is above the maximum {_cny(cap_cny)} CNY/L "
                f"({_num(rules.max_off_per_litre * 100)} % of the {low.grade}# ceiling "
                f"{_cny(Decimal(low.max_price_cny))} CNY/L)",
                "0.00",
                _cny(cap_cny),
            )
    return None


MAX_PUMP_NO = 99
MAX_NOZZLE_NO = 9
MAX_PUMP_LABEL = 40


def nozzle_problem(
    pump_no: int, nozzle_no: int, grade: str, *, label: str = "", sells: Collection[str] | None = None
) -> Problem | None:
    """The first forecourt rule a nozzle row breaks, or None (`sells`: the grades the station lists)."""
    if not 1 <= pump_no <= MAX_PUMP_NO:
        return Problem(
            "pump_no",
            "nozzle.pump_no",
            f"pump {pump_no} is not between 1 and {MAX_PUMP_NO}",
            "1",
            str(MAX_PUMP_NO),
        )
    if not 1 <= nozzle_no <= MAX_NOZZLE_NO:
        return Problem(
            "nozzle_no",
            "nozzle.nozzle_no",
            f"nozzle {nozzle_no} is not between 1 and {MAX_NOZZLE_NO}",
            "1",
            str(MAX_NOZZLE_NO),
        )
    if grade not in KNOWN_GRADES:
        return Problem("grade", "nozzle.grade", f"unknown grade {grade!r} (known: {', '.join(KNOWN_GRADES)})")
    if sells and grade not in sells:
        return Problem(
            "grade",
            "nozzle.grade_not_sold",
            f"the station does not sell {grade}# (it lists {', '.join(g + '#' for g in sells)})",
        )
    if len(label) > MAX_PUMP_LABEL or not label.isprintable():
        return Problem(
            "label", "nozzle.label", f"a pump label is at most {MAX_PUMP_LABEL} printable characters"
        )
    return None
