"""Membership rules, pure: the tier a spend reaches (at its thresholds), and the member-tier condition of
the pricing engine (a tier holds every lower one; any tier meets members_only)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from geo._pricing import Promotion, applies, effective_price
from store._membership import Tier, tier_for_spend

TIERS = [
    Tier("basic", 0, "普通会员", "Basic", 0, Decimal("1.00")),
    Tier("silver", 1, "银卡会员", "Silver", 200_000, Decimal("1.20")),
    Tier("gold", 2, "金卡会员", "Gold", 600_000, Decimal("1.50")),
]
AT = datetime(2026, 11, 27, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def held(spend: int) -> frozenset[str]:
    tier, _ = tier_for_spend(TIERS, spend)
    return frozenset(t.code for t in TIERS if t.rank <= tier.rank)


def test_thresholds_are_inclusive() -> None:
    assert [tier_for_spend(TIERS, s)[0].code for s in (0, 199_999, 200_000, 599_999, 600_000, 10**9)] == [
        "basic",
        "basic",
        "silver",
        "silver",
        "gold",
        "gold",
    ]
    assert tier_for_spend(TIERS, 0)[1] == TIERS[1] and tier_for_spend(TIERS, 600_000)[1] is None


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2_000_000), st.integers(min_value=0, max_value=2_000_000))
def test_more_spend_never_lowers_the_tier(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert tier_for_spend(TIERS, lo)[0].rank <= tier_for_spend(TIERS, hi)[0].rank
    tier, nxt = tier_for_spend(TIERS, hi)
    assert tier.min_spend_fen <= hi and (nxt is None or hi < nxt.min_spend_fen)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=1_000_000), st.sampled_from([t.code for t in TIERS]))
def test_a_tier_promotion_applies_from_its_tier_up(spend: int, min_tier: str) -> None:
    promo = Promotion(kind="cny_off_per_litre", value=Decimal("0.5"), id=1, min_tier=min_tier)
    rank = {t.code: t.rank for t in TIERS}
    mine = tier_for_spend(TIERS, spend)[0]
    assert applies(promo, AT, tiers=held(spend)) == (mine.rank >= rank[min_tier])
    assert not applies(promo, AT)  # no tiers: an anonymous caller
    price, applied = effective_price(Decimal("7.65"), "92", [promo], AT, tiers=held(spend))
    assert (price == Decimal("7.15")) == bool(applied) == (mine.rank >= rank[min_tier])


def test_holding_a_tier_meets_members_only() -> None:
    promo = Promotion(kind="cny_off_per_litre", value=Decimal("0.35"), id=2, members_only=True)
    assert applies(promo, AT, tiers=held(0))
    assert applies(promo, AT, member=True)
    assert not applies(promo, AT)
