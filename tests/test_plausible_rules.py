"""The plausibility rules (geo/_plausible.py), without a database: every rule at its boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import Settings
from geo import ImplausibleValue, PriceAboveCeiling
from geo._plausible import CeilingBook, PlausibilityRules, price_band, price_problem, promotion_problem
from geo._pricing import Promotion

SH = ZoneInfo("Asia/Shanghai")
D = Decimal
RULES = PlausibilityRules()


@dataclass(frozen=True)
class C:
    zone: str
    grade: str
    max_price_cny: Decimal
    effective_from: datetime
    adjustment_date: date | None


def notice(day: date, prices: dict[str, str]) -> list[C]:
    start = datetime(day.year, day.month, day.day, tzinfo=SH) + timedelta(days=1)  # 24:00 of the day
    return [C("yunnan-4", g, D(p), start, day) for g, p in prices.items()]


BOOK = CeilingBook(
    notice(date(2026, 4, 21), {"92": "8.83", "95": "9.47", "0": "8.47"})
    + notice(date(2026, 9, 24), {"92": "8.99", "95": "9.63", "0": "8.62"}),
    zone="yunnan-4",
)
NOW = datetime(2026, 11, 26, 12, tzinfo=SH)


def check(grade: str, price: str, at: datetime, sells: tuple[str, ...] | None = None) -> str | None:
    p = price_problem(grade, D(price), at, book=BOOK, rules=RULES, now=NOW, sells=sells)
    return None if p is None else p.rule


def at(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=SH)


def test_settings_defaults_are_the_rules_defaults() -> None:
    assert PlausibilityRules.from_settings(Settings()) == RULES


def test_the_band_of_a_ceiling_grade_at_its_edges() -> None:
    t = at(2026, 10, 1)
    assert check("92", "8.99", t) is None and check("92", "9.00", t) == "price.above_ceiling"
    assert check("92", "6.75", t) is None and check("92", "6.74", t) == "price.below_band"  # 8.99 x 0.75
    assert check("0", "0.95", t) == "price.below_band"


def test_the_ceiling_in_force_switches_at_24_00_of_the_notice_day() -> None:
    assert check("92", "8.90", at(2026, 9, 24, 23, 59)) == "price.above_ceiling"  # 8.83 still
    assert check("92", "8.90", at(2026, 9, 25)) is None  # 8.99 from 00:00


def test_98_is_bounded_by_the_95_ceiling() -> None:
    t = at(2026, 10, 1)
    assert price_band("98", BOOK.at("95", t), RULES) == (D("7.23"), D("13.00"))  # type: ignore[arg-type]
    assert check("98", "13.00", t) is None and check("98", "13.01", t) == "price.above_band"
    assert check("98", "7.22", t) == "price.below_band"


def test_dates() -> None:
    assert check("92", "8.80", at(2020, 1, 1)) == "price.before_first_notice"
    assert check("92", "8.80", NOW + timedelta(days=60)) is None
    assert check("92", "8.80", NOW + timedelta(days=60, seconds=1)) == "price.too_far_ahead"
    strict = PlausibilityRules(max_age_days=30)
    old = price_problem("92", D("8.80"), at(2026, 10, 1), book=BOOK, rules=strict, now=NOW)
    assert old is not None and old.rule == "price.too_old" and old.field == "effective_from"
    assert old.allowed == {
        "min": (NOW - timedelta(days=30)).isoformat(),
        "max": (NOW + timedelta(days=60)).isoformat(),
    }
    empty = price_problem("92", D("8.80"), NOW, book=CeilingBook([]), rules=RULES, now=NOW)
    assert empty is not None and empty.rule == "price.no_ceiling" and "ingest guidance" in empty.message


def test_grades_the_station_sells() -> None:
    assert check("98", "10.40", NOW, sells=("92", "95", "0")) == "price.grade_not_sold"
    assert check("98", "10.40", NOW, sells=()) == "price.grade_not_sold"
    assert check("98", "10.40", NOW, sells=("98",)) is None


def test_problems_become_422_errors_naming_the_param() -> None:
    above = price_problem("92", D("9.50"), NOW, book=BOOK, rules=RULES, now=NOW)
    assert above is not None
    err = above.error("prices.0.price_cny")
    assert isinstance(err, PriceAboveCeiling) and err.param == "prices.0.price_cny"
    assert err.details == {"rule": "price.above_ceiling", "allowed": {"min": "6.75", "max": "8.99"}}
    for part in ("9.50", "8.99", "2026-09-24", "allowed 6.75-8.99 CNY/L"):
        assert part in err.message
    below = price_problem("92", D("1.00"), NOW, book=BOOK, rules=RULES, now=NOW)
    assert below is not None and type(below.error()) is ImplausibleValue
    assert below.reason.startswith("price.below_band: ")


@given(cents=st.integers(min_value=1, max_value=3_000))
def test_exactly_the_band_passes(cents: int) -> None:
    price = D(cents) / 100
    lo, hi = D("7.23"), D("9.63")  # 95#: 9.63 x 0.75 rounded up to the fen
    assert (check("95", str(price), NOW) is None) == (lo <= price <= hi)


def promo(kind: str, value: str, grades: tuple[str, ...] = ()) -> Promotion:
    return Promotion(kind=kind, value=D(value), grades=grades, valid_from=at(2026, 10, 1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("p", "ok"),
    [
        (promo("percent_off", "30"), True),
        (promo("percent_off", "30.01"), False),
        (promo("topup_bonus", "20"), True),
        (promo("topup_bonus", "21"), False),
        (promo("cny_off_per_order", "100"), True),
        (promo("cny_off_per_order", "100.01"), False),
        (promo("cny_off_per_litre", "2.69", ("92",)), True),  # 30 % of 8.99, rounded down
        (promo("cny_off_per_litre", "2.70", ("92",)), False),
        (promo("cny_off_per_litre", "2.58"), True),  # every grade: the lowest ceiling, 0# 8.62
        (promo("cny_off_per_litre", "2.59"), False),
        (promo("cny_off_per_litre", "2.88", ("98",)), True),  # 98#: 30 % of the 95# ceiling 9.63
        (promo("cny_off_per_litre", "2.89", ("98",)), False),
    ],
)
def test_promotion_caps(p: Promotion, ok: bool) -> None:
    problem = promotion_problem(p, book=BOOK, rules=RULES)
    assert (problem is None) == ok
    if problem is not None:
        assert problem.field == "value" and problem.rule == f"promotion.{p.kind}"
        assert problem.allowed is not None and problem.allowed["max"] is not None


def test_a_discount_per_litre_needs_a_ceiling() -> None:
    problem = promotion_problem(promo("cny_off_per_litre", "0.10"), book=CeilingBook([]), rules=RULES)
    assert problem is not None and "ingest guidance" in problem.message
    early = Promotion(kind="cny_off_per_litre", value=D("2.64"), grades=("92",), valid_from=at(2026, 1, 1))
    assert promotion_problem(early, book=BOOK, rules=RULES) is None  # before the first notice: its 8.83
    too_much = Promotion(kind="cny_off_per_litre", value=D("2.65"), grades=("92",), valid_from=at(2026, 1, 1))
    assert promotion_problem(too_much, book=BOOK, rules=RULES) is not None
