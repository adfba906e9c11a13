"""Every rule of data/risk/rules.json with an allow, a review and a deny case (pure: risk.decide), the hard
checks no rule overrides, and the outcome law (the worst fired rule decides) under Hypothesis."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk import (
    InvalidRule,
    Rule,
    RuleSet,
    decide,
    keyed_hash,
    parse_rules_file,
    peer_ratio,
    price_change_facts,
    tank_litres,
    unusual_hour,
)
from store._risk import RULES_FILE

VERSION, RULES = parse_rules_file(RULES_FILE.read_text(encoding="utf-8"))
RULESET = RuleSet.build(RULES, [], VERSION)

# benign facts at each point: nothing fires
BASE: dict[str, dict[str, Any]] = {
    "bind": {
        "user_binds_1h": 1,
        "device_binds_1h": 1,
        "device_users_1d": 1,
        "nozzle_users_30m": 1,
        "wechat_risk_rank": 0,
    },
    "pay": {
        "amount_fen": 30_000,
        "volume_ml": 40_000,
        "totaliser_delta_ml": 40_000,
        "litres": 40.0,
        "tank_litres": 70,
        "unusual_hour": False,
        "payer_pays_1h": 1,
        "station_pays_10m": 3,
    },
    "redeem": {
        "user_redemptions_1d": 1,
        "device_redemptions_1d": 1,
        "plate_redemptions_1d": 1,
        "station_redemption_ratio": 1.1,
        "user_point_redemptions_1d": 1,
        "device_point_redemptions_1d": 1,
        "user_points_redeemed_1d": 2_000,
    },
    "price": {"history_z": 1.0, "change_ratio": 0.01, "neighbour_deviation": 0.02},
}

# (point, changed facts, expected outcome, the rules that must fire)
CASES = [
    ("bind", {"user_binds_1h": 6}, "allow", []),
    ("bind", {"user_binds_1h": 7}, "review", ["bind.user_velocity_review"]),
    ("bind", {"user_binds_1h": 13}, "deny", ["bind.user_velocity_review", "bind.user_velocity_deny"]),
    ("bind", {"device_binds_1h": 8}, "allow", []),
    ("bind", {"device_binds_1h": 9}, "review", ["bind.device_velocity"]),
    (
        "bind",
        {"device_binds_1h": 9, "device_users_1d": 4},
        "deny",
        ["bind.device_velocity", "bind.device_accounts"],
    ),
    ("bind", {"device_users_1d": 3}, "allow", []),
    ("bind", {"device_users_1d": 4}, "deny", ["bind.device_accounts"]),
    ("bind", {"nozzle_users_30m": 15}, "allow", []),
    ("bind", {"nozzle_users_30m": 16}, "review", ["bind.nozzle_many_users"]),
    (
        "bind",
        {"nozzle_users_30m": 16, "user_binds_1h": 20},
        "deny",
        ["bind.nozzle_many_users", "bind.user_velocity_review", "bind.user_velocity_deny"],
    ),
    ("bind", {"wechat_risk_rank": 2}, "allow", []),
    ("bind", {"wechat_risk_rank": 3}, "review", ["bind.wechat_risk_high"]),
    ("bind", {"wechat_risk_rank": 4}, "deny", ["bind.wechat_risk_high", "bind.wechat_risk_max"]),
    ("pay", {"amount_fen": 150_000}, "allow", []),
    ("pay", {"amount_fen": 150_001}, "review", ["pay.amount_review"]),
    ("pay", {"amount_fen": 300_001}, "deny", ["pay.amount_review", "pay.amount_deny"]),
    ("pay", {"litres": 70.0}, "allow", []),
    ("pay", {"litres": 80.0}, "review", ["pay.over_tank_review"]),
    ("pay", {"litres": 106.0}, "deny", ["pay.over_tank_review", "pay.over_tank_deny"]),
    ("pay", {"unusual_hour": True}, "allow", []),
    ("pay", {"unusual_hour": True, "amount_fen": 50_001}, "review", ["pay.night_large"]),
    (
        "pay",
        {"unusual_hour": True, "amount_fen": 300_001},
        "deny",
        ["pay.night_large", "pay.amount_review", "pay.amount_deny"],
    ),
    ("pay", {"payer_pays_1h": 4}, "allow", []),
    ("pay", {"payer_pays_1h": 5}, "review", ["pay.payer_velocity"]),
    ("pay", {"payer_pays_1h": 11}, "deny", ["pay.payer_velocity", "pay.payer_velocity_deny"]),
    ("pay", {"station_pays_10m": 60}, "allow", []),
    ("pay", {"station_pays_10m": 61}, "review", ["pay.station_velocity"]),
    (
        "pay",
        {"station_pays_10m": 61, "amount_fen": 400_000},
        "deny",
        ["pay.station_velocity", "pay.amount_review", "pay.amount_deny"],
    ),
    ("pay", {"totaliser_delta_ml": 0}, "deny", ["no_fuel_no_pay"]),
    ("redeem", {"user_redemptions_1d": 2}, "allow", []),
    ("redeem", {"user_redemptions_1d": 3}, "deny", ["redeem.user_cap"]),
    ("redeem", {"device_redemptions_1d": 4}, "deny", ["redeem.device_cap"]),
    ("redeem", {"plate_redemptions_1d": 3}, "deny", ["redeem.plate_cap"]),
    ("redeem", {"station_redemption_ratio": 3.0}, "allow", []),
    ("redeem", {"station_redemption_ratio": 3.5}, "review", ["redeem.station_outlier"]),
    (
        "redeem",
        {"station_redemption_ratio": 3.5, "plate_redemptions_1d": 5},
        "deny",
        ["redeem.station_outlier", "redeem.plate_cap"],
    ),
    ("redeem", {"user_point_redemptions_1d": 3}, "allow", []),
    ("redeem", {"user_point_redemptions_1d": 4}, "review", ["redeem.points_user_velocity"]),
    (
        "redeem",
        {"user_point_redemptions_1d": 7},
        "deny",
        ["redeem.points_user_velocity", "redeem.points_user_velocity_deny"],
    ),
    ("redeem", {"device_point_redemptions_1d": 4}, "allow", []),
    ("redeem", {"device_point_redemptions_1d": 5}, "deny", ["redeem.points_device_velocity"]),
    ("redeem", {"user_points_redeemed_1d": 20_000}, "allow", []),
    ("redeem", {"user_points_redeemed_1d": 21_000}, "review", ["redeem.points_per_day"]),
    (
        "redeem",
        {"user_points_redeemed_1d": 51_000},
        "deny",
        ["redeem.points_per_day", "redeem.points_per_day_deny"],
    ),
    ("price", {"history_z": 8.0}, "allow", []),
    ("price", {"history_z": 9.0}, "review", ["price.own_history"]),
    ("price", {"change_ratio": 0.2}, "review", ["price.jump"]),
    ("price", {"neighbour_deviation": 0.25}, "review", ["price.neighbours"]),
]


@pytest.mark.parametrize(("point", "changed", "outcome", "fired"), CASES)
def test_each_rule_allows_reviews_or_denies(
    point: str, changed: dict[str, Any], outcome: str, fired: list[str]
) -> None:
    d = decide(RULESET, point, {**BASE[point], **changed})
    assert d.outcome == outcome
    assert sorted(f.rule for f in d.fired) == sorted(fired)
    assert d.rules_version == VERSION


def test_every_rule_of_the_file_has_a_firing_case() -> None:
    covered = {r for *_, fired in CASES for r in fired}
    assert {r.name for r in RULES} <= covered


def test_the_deny_list_denies_and_the_allow_list_waives_only_reviews() -> None:
    d = decide(RULESET, "bind", BASE["bind"], deny_listed=["device"])
    assert d.outcome == "deny" and [f.rule for f in d.fired] == ["deny_list"]
    review = {**BASE["bind"], "wechat_risk_rank": 3}
    d = decide(RULESET, "bind", review, allow_listed=["user"])
    assert d.outcome == "allow" and [f.rule for f in d.fired] == ["bind.wechat_risk_high", "allow_list"]
    deny = {**BASE["bind"], "wechat_risk_rank": 4}
    assert decide(RULESET, "bind", deny, allow_listed=["user"]).outcome == "deny"


def test_no_fuel_no_pay_whatever_the_rules_say() -> None:
    allow_all = RuleSet.build(
        [], [(Rule("pay.anything", "pay", "amount_fen > 0", "allow", "all fine"), True)], "t"
    )
    d = decide(allow_all, "pay", {**BASE["pay"], "totaliser_delta_ml": 39_000})
    assert d.outcome == "deny" and d.fired[0].rule == "no_fuel_no_pay"
    d = decide(allow_all, "pay", {k: v for k, v in BASE["pay"].items() if k != "totaliser_delta_ml"})
    assert d.outcome == "deny"  # no totaliser reading at all


def test_missing_facts_do_not_fire_and_bad_rules_are_refused() -> None:
    assert decide(RULESET, "bind", {}).outcome == "allow"
    with pytest.raises(InvalidRule, match="syntax"):
        RuleSet.build([Rule("bad.rule", "pay", "amount_fen >>> 3", "deny", "x")], [], "t")
    with pytest.raises(InvalidRule, match="point"):
        RuleSet.build([Rule("bad.rule", "nowhere", "true", "deny", "x")], [], "t")
    with pytest.raises(InvalidRule, match="outcome"):
        RuleSet.build([Rule("bad.rule", "pay", "true", "block", "x")], [], "t")


def test_overrides_replace_add_and_switch_off_file_rules() -> None:
    stricter = Rule("pay.amount_review", "pay", "amount_fen > 100000", "review", "above 1000 CNY")
    rs = RuleSet.build(RULES, [(stricter, True), (RULES[0], False)], "t")
    assert decide(rs, "pay", {**BASE["pay"], "amount_fen": 120_000}).outcome == "review"
    assert decide(rs, "bind", {**BASE["bind"], "user_binds_1h": 7}).outcome == "allow"  # switched off


def test_signals() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    assert unusual_hour(datetime(2026, 11, 26, 19, 30, tzinfo=ZoneInfo("UTC")), tz)  # 03:30 in Lijiang
    assert not unusual_hour(datetime(2026, 11, 26, 2, 0, tzinfo=ZoneInfo("UTC")), tz)  # 10:00
    with pytest.raises(ValueError):
        unusual_hour(datetime(2026, 11, 26, 3, 0), tz)
    assert tank_litres("motorcycle") == 25 and tank_litres(None) == tank_litres("suv") == 100
    h = keyed_hash("k", "device", "fp-1")
    assert len(h) == 64 and h == keyed_hash("k", "device", "fp-1") != keyed_hash("other", "device", "fp-1")
    assert "fp-1" not in h
    assert peer_ratio(40, [10, 12, 8]) == 4.0 and peer_ratio(5, []) == 1.0
    f = price_change_facts(999, [800, 805, 810, 815], [810, 820, 800])
    assert f["change_ratio"] == round(184 / 815, 4) and f["history_z"] == round(184 / 5, 2)
    assert f["neighbour_deviation"] == round(189 / 810, 4)
    assert price_change_facts(800, [], [])["change_ratio"] == 0.0


FACT_VALUES = st.fixed_dictionaries(
    {k: st.integers(0, 400_000) for k in ("amount_fen", "payer_pays_1h", "station_pays_10m")}
    | {
        "litres": st.floats(0, 300),
        "tank_litres": st.sampled_from([25, 70, 100, 600]),
        "unusual_hour": st.booleans(),
    }
)


@settings(max_examples=40, deadline=None)
@given(facts=FACT_VALUES, fuel=st.booleans())
def test_the_worst_fired_rule_decides(facts: dict[str, Any], fuel: bool) -> None:
    facts = {**facts, "volume_ml": 1000, "totaliser_delta_ml": 1000 if fuel else 0}
    d = decide(RULESET, "pay", facts)
    severity = {"allow": 0, "review": 1, "deny": 2}
    assert severity[d.outcome] == max((severity[f.outcome] for f in d.fired), default=0)
    if not fuel:
        assert d.outcome == "deny"
    bigger = {**facts, "amount_fen": facts["amount_fen"] + 200_000}
    assert severity[decide(RULESET, "pay", bigger).outcome] >= severity[d.outcome]  # monotone in amount


def test_the_bind_body_accepts_exactly_the_vehicle_classes_with_a_tank() -> None:
    import re

    from api._models import SessionCreate
    from risk import VEHICLE_CLASSES

    pattern = next(
        m.pattern for m in SessionCreate.model_fields["vehicle_class"].metadata if hasattr(m, "pattern")
    )
    assert re.fullmatch(r"\^\((.*)\)\$", pattern) and set(pattern[2:-2].split("|")) == set(VEHICLE_CLASSES)
