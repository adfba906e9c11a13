"""The pure points rules: earning (basis, multipliers, tiers, daily cap), redemption checks, refund
shares, rolling FIFO expiry, and the hold state machine checked exhaustively with Hypothesis."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import load_loyalty_rules
from loyalty import (
    HOLD_TRANSITIONS,
    EarnRules,
    HoldState,
    InvalidHoldTransition,
    Lot,
    RedemptionRules,
    earn_points,
    expiry_for,
    next_hold_state,
    redemption_problem,
    refund_share,
    rules_from_mapping,
    take_fifo,
)

TZ = ZoneInfo("Asia/Shanghai")


def test_the_shipped_rules_file_loads_with_petrochinas_rate() -> None:
    rules = load_loyalty_rules(Path(__file__).resolve().parent.parent / "data" / "loyalty" / "rules.toml")
    assert (rules.redemption.unit_points, rules.redemption.unit_fen) == (1000, 1000)
    assert rules.earn.tier_percent["standard"] == 100


def test_bad_rules_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"earn\.basis"):
        rules_from_mapping({"earn": {"basis": "km"}})
    with pytest.raises(ValueError, match=r"redemption\.unit_points"):
        rules_from_mapping({"redemption": {"unit_points": 0}})


def test_earning_basis_multipliers_tiers_and_cap() -> None:
    r = EarnRules(
        brand_percent={"中国石化": 200}, station_percent={7: 300}, tier_percent={"standard": 100, "gold": 150}
    )
    kw = {"volume_ml": 30_500, "earned_today": 0}
    assert earn_points(r, paid_fen=25_099, brand=None, station_id=1, **kw) == 250  # whole CNY
    assert earn_points(r, paid_fen=25_000, brand="中国石化", station_id=1, **kw) == 500
    assert earn_points(r, paid_fen=25_000, brand="中国石化", station_id=7, **kw) == 750  # station beats brand
    assert earn_points(r, paid_fen=25_000, brand=None, station_id=1, tier="gold", **kw) == 375
    assert earn_points(r, paid_fen=25_000, brand=None, station_id=1, tier="unknown", **kw) == 250
    assert earn_points(EarnRules(basis="litre"), paid_fen=25_000, brand=None, station_id=1, **kw) == 30
    assert earn_points(r, paid_fen=25_000, brand=None, station_id=1, volume_ml=0, earned_today=1_900) == 100
    assert earn_points(r, paid_fen=25_000, brand=None, station_id=1, volume_ml=0, earned_today=5_000) == 0


def test_redemption_problems_name_what_is_wrong() -> None:
    r = RedemptionRules()
    assert redemption_problem(r, points=2000, balance=5000, due_fen=30_000) is None
    assert "multiple of 1000" in str(redemption_problem(r, points=1500, balance=5000, due_fen=30_000))
    assert "unexpired points" in str(redemption_problem(r, points=6000, balance=5000, due_fen=30_000))
    assert "at least 1 fen" in str(redemption_problem(r, points=3000, balance=5000, due_fen=3000))


@given(points=st.integers(0, 10**6), paid=st.integers(1, 10**7), data=st.data())
@settings(max_examples=50, deadline=None)
def test_refund_shares_are_monotone_and_exact_in_full(points: int, paid: int, data: st.DataObject) -> None:
    a = data.draw(st.integers(0, paid))
    b = data.draw(st.integers(a, paid))
    assert (
        0
        <= refund_share(points, refunded_fen=a, paid_fen=paid)
        <= refund_share(points, refunded_fen=b, paid_fen=paid)
    )
    assert refund_share(points, refunded_fen=paid, paid_fen=paid) == points


def test_expiry_is_rolling_by_calendar_month() -> None:
    assert expiry_for(datetime(2026, 1, 31, 9, tzinfo=TZ), 1) == datetime(2026, 2, 28, 9, tzinfo=TZ)
    assert expiry_for(datetime(2026, 5, 3, 9, tzinfo=TZ), 12) == datetime(2027, 5, 3, 9, tzinfo=TZ)


@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(-30, 30)), max_size=8), st.integers(0, 20_000))
@settings(max_examples=50, deadline=None)
def test_fifo_takes_earliest_first_and_never_expired_points(lots: list[tuple[int, int]], points: int) -> None:
    now = datetime(2026, 6, 1, tzinfo=TZ)
    ls = [Lot(i, r, now + timedelta(days=d)) for i, (r, d) in enumerate(lots)]
    live = sum(lot.remaining for lot in ls if lot.expires_at > now)
    if points > live:
        with pytest.raises(ValueError):
            take_fifo(ls, points, now=now)
        return
    taken = take_fifo(ls, points, now=now)
    assert sum(n for _, n in taken) == points
    by_id = {lot.id: lot for lot in ls}
    assert all(by_id[i].expires_at > now and 0 < n <= by_id[i].remaining for i, n in taken)
    expiries = [by_id[i].expires_at for i, _ in taken]
    assert expiries == sorted(expiries)
    for i, n in taken[:-1]:
        assert n == by_id[i].remaining  # every lot but the last is emptied


@given(st.lists(st.sampled_from(["hold", "post", "void"]), max_size=10))
@settings(max_examples=50, deadline=None)
def test_a_hold_resolves_at_most_once(events: list[str]) -> None:
    state, resolved = HoldState.ABSENT, []
    for e in events:
        try:
            new = next_hold_state(state, e)
        except InvalidHoldTransition:
            assert (state, e) not in HOLD_TRANSITIONS
            continue
        if new != state and new in (HoldState.POSTED, HoldState.VOIDED):
            resolved.append(new)
        state = new
    assert len(resolved) <= 1
    if HoldState.VOIDED in resolved:
        assert state == HoldState.VOIDED
