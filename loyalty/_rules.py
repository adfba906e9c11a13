"""Earn and redemption rules as data (data/loyalty/rules.toml), and the arithmetic on them.

Earning: `per_cny` points per whole CNY paid (or `per_litre` points per whole litre), times the
station's multiplier (else the brand's, else 100 %), times the tier's multiplier (tier name -> percent,
"standard" by default), rounded down, capped per user per local day (`daily_cap`).
Redemption: `unit_points` points (the only step allowed) are worth `unit_fen` fen off the fuel; an order
keeps at least 1 fen to pay. A refund gives back (and takes back) a share of a payment's points
proportional to the share of its cash refunded, cumulative and rounded down, so a full refund is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EarnRules:
    basis: str = "cny"  # "cny": points per whole CNY paid; "litre": points per whole litre
    points_per_unit: int = 1
    brand_percent: Mapping[str, int] = field(default_factory=dict)
    station_percent: Mapping[int, int] = field(default_factory=dict)
    tier_percent: Mapping[str, int] = field(default_factory=lambda: {"standard": 100})
    daily_cap: int = 2_000
    expiry_months: int = 12


@dataclass(frozen=True)
class RedemptionRules:
    unit_points: int = 1_000
    unit_fen: int = 1_000
    max_points_per_order: int = 100_000


@dataclass(frozen=True)
class Rules:
    earn: EarnRules = field(default_factory=EarnRules)
    redemption: RedemptionRules = field(default_factory=RedemptionRules)


def _percent(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1_000:
        raise ValueError(f"{what} must be a whole percent between 0 and 1000, got {value!r}")
    return value


def _positive(value: Any, what: str, *, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= high:
        raise ValueError(f"{what} must be a whole number between 1 and {high}, got {value!r}")
    return value


def rules_from_mapping(data: Mapping[str, Any]) -> Rules:
    """Rules from a parsed rules file; ValueError naming the first bad field."""
    earn = data.get("earn", {})
    red = data.get("redemption", {})
    basis = earn.get("basis", "cny")
    if basis not in ("cny", "litre"):
        raise ValueError(f"earn.basis must be 'cny' or 'litre', got {basis!r}")
    tiers = {str(k): _percent(v, f"earn.tier_percent.{k}") for k, v in earn.get("tier_percent", {}).items()}
    tiers.setdefault("standard", 100)
    return Rules(
        earn=EarnRules(
            basis=basis,
            points_per_unit=_positive(earn.get("points_per_unit", 1), "earn.points_per_unit", high=1_000),
            brand_percent={
                str(k): _percent(v, f"earn.brand_percent.{k}")
                for k, v in earn.get("brand_percent", {}).items()
            },
            station_percent={
                int(k): _percent(v, f"earn.station_percent.{k}")
                for k, v in earn.get("station_percent", {}).items()
            },
            tier_percent=tiers,
            daily_cap=_positive(earn.get("daily_cap", 2_000), "earn.daily_cap", high=10_000_000),
            expiry_months=_positive(earn.get("expiry_months", 12), "earn.expiry_months", high=120),
        ),
        redemption=RedemptionRules(
            unit_points=_positive(red.get("unit_points", 1_000), "redemption.unit_points", high=1_000_000),
            unit_fen=_positive(red.get("unit_fen", 1_000), "redemption.unit_fen", high=1_000_000),
            max_points_per_order=_positive(
                red.get("max_points_per_order", 100_000), "redemption.max_points_per_order", high=100_000_000
            ),
        ),
    )


def earn_points(
    rules: EarnRules,
    *,
    paid_fen: int,
    volume_ml: int,
    brand: str | None,
    station_id: int,
    earned_today: int,
    tier: str = "standard",
) -> int:
    """Points a payment earns, after the day's cap (earned_today: what the user earned earlier that day)."""
    if paid_fen < 0 or volume_ml < 0 or earned_today < 0:
        raise ValueError("amounts must not be negative")
    units = paid_fen // 100 if rules.basis == "cny" else volume_ml // 1000
    place = rules.station_percent.get(station_id, rules.brand_percent.get(brand or "", 100))
    tier_pct = rules.tier_percent.get(tier, rules.tier_percent.get("standard", 100))
    raw = units * rules.points_per_unit * place * tier_pct // 10_000
    return max(0, min(raw, rules.daily_cap - earned_today))


def redemption_fen(rules: RedemptionRules, points: int) -> int:
    """Fen off for `points` (a multiple of the unit)."""
    return points // rules.unit_points * rules.unit_fen


def redemption_problem(rules: RedemptionRules, *, points: int, balance: int, due_fen: int) -> str | None:
    """Why `points` cannot be redeemed on an order of `due_fen` (None: they can)."""
    if points < 0:
        return "must not be negative"
    if points % rules.unit_points:
        return f"must be a multiple of {rules.unit_points} points"
    if points > rules.max_points_per_order:
        return f"at most {rules.max_points_per_order} points on one order"
    if points > balance:
        return f"is more than the {balance} unexpired points available"
    if redemption_fen(rules, points) >= due_fen:
        return f"would leave nothing to pay on an order of {due_fen} fen: at least 1 fen must be paid"
    return None


def refund_share(points: int, *, refunded_fen: int, paid_fen: int) -> int:
    """Points to give back (or take back) after `refunded_fen` of `paid_fen` were refunded in total."""
    if paid_fen <= 0:
        return points
    refunded = max(0, min(refunded_fen, paid_fen))
    return points * refunded // paid_fen
