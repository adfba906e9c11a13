"""risk.evaluate against a real PostgreSQL and Redis: decisions logged and explainable from their row,
rules reloaded without a restart (file and database overrides), lists, velocity windows, the review."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

import risk
from risk import Rule, RuleSet, decide
from store import _risk
from store._audit import audit_rows

SECRET = "test-secret"


@pytest.fixture(scope="module")
def conn(module_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_db, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def rds() -> Iterator[redis.Redis]:
    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    yield r
    for k in r.scan_iter(f"{risk._velocity.PREFIX}*test-{RUN}*"):
        r.delete(k)
    r.close()


RUN = uuid.uuid4().hex[:8]
PAY = {
    "amount_fen": 30_000,
    "volume_ml": 40_000,
    "totaliser_delta_ml": 40_000,
    "litres": 40.0,
    "tank_litres": 70,
    "unusual_hour": False,
}


def test_a_decision_is_logged_and_explained_from_its_row(conn: psycopg.Connection) -> None:
    with conn.transaction():
        d = risk.evaluate(conn, "pay", {**PAY, "amount_fen": 200_000}, subject={"sale_id": 1, "user_id": 7})
    assert d.id is not None and d.outcome == "review" and [f.rule for f in d.fired] == ["pay.amount_review"]
    row = _risk.get_decision(conn, d.id)
    assert row["outcome"] == "review" and row["review_state"] == "pending"
    assert row["fired"] == [f.as_dict() for f in d.fired] and row["subject"] == {"sale_id": 1, "user_id": 7}
    # the row alone explains it: the same facts under the same rules version give the same decision
    ruleset = _risk.current_ruleset(conn)
    assert row["rules_version"] == ruleset.version
    again = decide(ruleset, row["point"], row["facts"])
    assert again.outcome == row["outcome"] and [f.as_dict() for f in again.fired] == row["fired"]
    # and each fired rule's expression, evaluated on the stored facts, is true
    for f in row["fired"]:
        assert risk.validate_rule(Rule(f["rule"], "pay", f["expr"], f["outcome"], f["reason"])).matches(
            row["facts"]
        )


def test_no_fuel_no_pay_is_denied_and_logged(conn: psycopg.Connection) -> None:
    with conn.transaction():
        d = risk.evaluate(conn, "pay", {**PAY, "totaliser_delta_ml": 10_000})
    with pytest.raises(risk.RiskDenied, match="no fuel, no pay") as exc:
        risk.enforce(d)
    assert exc.value.decision_id == d.id
    assert _risk.get_decision(conn, d.id)["outcome"] == "deny"


def test_overrides_reload_without_a_restart_and_are_audited(conn: psycopg.Connection) -> None:
    before = _risk.current_ruleset(conn)
    facts = {**PAY, "amount_fen": 120_000}
    assert decide(before, "pay", facts).outcome == "allow"
    stricter = Rule("pay.amount_review", "pay", "amount_fen > 100000", "review", "above 1000 CNY (tightened)")
    with conn.transaction():
        _risk.put_override(conn, stricter, enabled=True, actor="key:ops")
    with conn.transaction():
        d = risk.evaluate(conn, "pay", facts)
    assert d.outcome == "review" and d.fired[0].reason == "above 1000 CNY (tightened)"
    assert d.rules_version != before.version
    with conn.transaction():
        _risk.put_override(conn, stricter, enabled=False, actor="key:ops")  # switched off entirely
    with conn.transaction():
        assert risk.evaluate(conn, "pay", {**PAY, "amount_fen": 200_000}).outcome == "allow"
    audit = audit_rows(conn, entity="risk_rule", entity_id="pay.amount_review")
    assert [a["action"] for a in audit] == ["create", "update"] and audit[1]["new_value"]["enabled"] is False
    with pytest.raises(risk.InvalidRule), conn.transaction():
        _risk.put_override(
            conn, Rule("pay.bad", "pay", "amount_fen >>", "deny", "x"), enabled=True, actor="k"
        )
    conn.execute("DELETE FROM risk_rules")


def test_the_rules_file_reloads_without_a_restart(
    conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads(_risk.RULES_FILE.read_text(encoding="utf-8"))
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    monkeypatch.setenv("FUEL_RISK_RULES_FILE", str(path))
    facts = {**PAY, "litres": 60.0, "tank_litres": 25}
    with conn.transaction():
        assert risk.evaluate(conn, "pay", facts).outcome == "deny"  # over a motorcycle's tank by far
    doc["version"] = "2026.11.2"
    doc["rules"] = [r for r in doc["rules"] if not r["name"].startswith("pay.over_tank")]
    path.write_text(json.dumps(doc), encoding="utf-8")
    with conn.transaction():
        d = risk.evaluate(conn, "pay", facts)
    assert d.outcome == "allow" and d.rules_version.startswith("2026.11.2+")


def test_deny_and_allow_lists(conn: psycopg.Connection) -> None:
    device = risk.keyed_hash(SECRET, "device", f"fp-stolen-{RUN}")
    user = risk.keyed_hash(SECRET, "user", f"fleet-{RUN}")
    with conn.transaction():
        _risk.add_to_list(
            conn, kind="deny", subject="device", value_hash=device, note="stolen phone", actor="k"
        )
        _risk.add_to_list(conn, kind="allow", subject="user", value_hash=user, note="fleet", actor="k")
    with conn.transaction():
        d = risk.evaluate(conn, "bind", {"user_binds_1h": 1}, hashes={"device": device})
    assert d.outcome == "deny" and d.fired[0].rule == "deny_list"
    with conn.transaction():
        d = risk.evaluate(conn, "bind", {"wechat_risk_rank": 3}, hashes={"user": user})
    assert d.outcome == "allow" and [f.rule for f in d.fired] == ["bind.wechat_risk_high", "allow_list"]
    with conn.transaction():
        assert risk.evaluate(conn, "bind", {"wechat_risk_rank": 4}, hashes={"user": user}).outcome == "deny"
    assert len(audit_rows(conn, entity="risk_list")) == 2


def test_velocity_windows_in_redis(conn: psycopg.Connection, rds: redis.Redis) -> None:
    nozzle = f"test-{RUN}-n1"
    windows = lambda user: [  # noqa: E731
        risk.Window("user_binds_1h", f"test-{RUN}-u{user}", 3600),
        risk.Window("nozzle_users_30m", nozzle, 1800, member=str(user)),
    ]
    outcomes = []
    for user in range(1, 19):  # eighteen different users bind one nozzle
        with conn.transaction():
            outcomes.append(risk.evaluate(conn, "bind", {}, redis=rds, windows=windows(user)).outcome)
    assert outcomes == ["allow"] * 15 + ["review"] * 3
    with conn.transaction():  # the same user again: still 18 distinct users, the user's own count grows
        d = risk.evaluate(conn, "bind", {}, redis=rds, windows=windows(1))
    assert d.facts["nozzle_users_30m"] == 18 and d.facts["user_binds_1h"] == 2
    # the window slides: an hour later the old binds are gone
    with conn.transaction():
        later = risk.evaluate(
            conn, "bind", {}, redis=rds, windows=windows(1), now_s=__import__("time").time() + 3700
        )
    assert later.facts["nozzle_users_30m"] == 1 and later.facts["user_binds_1h"] == 1


def test_redis_down_means_no_velocity_facts_not_an_error(conn: psycopg.Connection) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with conn.transaction():
        d = risk.evaluate(conn, "bind", {}, redis=dead, windows=[risk.Window("user_binds_1h", "x", 60)])
    assert d.outcome == "allow" and d.facts["velocity_available"] is False


def test_review_approve_lets_the_retry_pass_and_is_audited(conn: psycopg.Connection) -> None:
    subject = {"sale_id": 99, "user_id": 5}
    big = {**PAY, "amount_fen": 200_000}
    with conn.transaction():
        d = risk.evaluate(conn, "pay", big, subject=subject, approved_keys=("sale_id", "user_id"))
    assert d.outcome == "review"
    with conn.transaction():
        row = _risk.review(conn, d.id, approve=True, note="known fleet card", actor="key:ops")
    assert row["review_state"] == "approved" and row["reviewed_by"] == "key:ops"
    with pytest.raises(_risk.AlreadyReviewed), conn.transaction():
        _risk.review(conn, d.id, approve=False, note="", actor="key:ops")
    with conn.transaction():
        retry = risk.evaluate(conn, "pay", big, subject=subject, approved_keys=("sale_id", "user_id"))
    assert retry.outcome == "allow" and retry.fired[-1].rule == "review_approved"
    with conn.transaction():  # another sale of the same user is not covered
        other = risk.evaluate(
            conn, "pay", big, subject={**subject, "sale_id": 100}, approved_keys=("sale_id", "user_id")
        )
    assert other.outcome == "review"
    with conn.transaction():  # an approval never lifts a hard deny
        hard = risk.evaluate(
            conn,
            "pay",
            {**big, "totaliser_delta_ml": 0},
            subject=subject,
            approved_keys=("sale_id", "user_id"),
        )
    assert hard.outcome == "deny"
    audit = audit_rows(conn, entity="risk_decision", entity_id=d.id)
    assert audit[-1]["new_value"] == {"review_state": "approved", "review_note": "known fleet card"}
    pending = [r["id"] for r in _risk.decisions(conn)]
    assert d.id not in pending and other.id in pending
    with pytest.raises(_risk.DecisionNotFound):
        _risk.get_decision(conn, 10**12)


def test_ruleset_is_cached_until_something_changes(conn: psycopg.Connection) -> None:
    a = _risk.current_ruleset(conn)
    assert _risk.current_ruleset(conn) is a
    assert isinstance(a, RuleSet)


def test_a_rejected_review_denies_the_retry(conn: psycopg.Connection) -> None:
    subject = {"sale_id": 501, "user_id": 5}
    big = {**PAY, "amount_fen": 200_000}
    with conn.transaction():
        d = risk.evaluate(conn, "pay", big, subject=subject, approved_keys=("sale_id", "user_id"))
    with conn.transaction():
        _risk.review(conn, d.id, approve=False, note="ring", actor="key:ops")
    with conn.transaction():
        retry = risk.evaluate(conn, "pay", big, subject=subject, approved_keys=("sale_id", "user_id"))
    assert retry.outcome == "deny" and retry.fired[-1].rule == "review_rejected"


def test_redemption_caps_per_user_device_and_plate_per_day(
    conn: psycopg.Connection, rds: redis.Redis
) -> None:
    device = f"test-{RUN}-farm-device"
    plate = f"test-{RUN}-farm-plate"
    outcomes = []
    for k in range(5):  # five accounts, one phone, one plate, one day
        windows = risk.redeem_windows(
            user=f"test-{RUN}-acct{k}", device=device, plate=plate, day="2026-11-26"
        )
        with conn.transaction():
            d = risk.evaluate(conn, "redeem", {"station_redemption_ratio": 1.0}, redis=rds, windows=windows)
        outcomes.append((d.outcome, sorted(f.rule for f in d.fired)))
    assert outcomes[:2] == [("allow", []), ("allow", [])]
    assert outcomes[2] == ("deny", ["redeem.plate_cap"])  # a third redemption for the plate today
    assert outcomes[4] == ("deny", ["redeem.device_cap", "redeem.plate_cap"])
    # another day starts afresh; a station far above its peers goes to review
    windows = risk.redeem_windows(user=f"test-{RUN}-acct0", device=device, plate=plate, day="2026-11-27")
    ratio = risk.peer_ratio(120, [30, 25, 40, 35])
    with conn.transaction():
        d = risk.evaluate(conn, "redeem", {"station_redemption_ratio": ratio}, redis=rds, windows=windows)
    assert d.outcome == "review" and [f.rule for f in d.fired] == ["redeem.station_outlier"]


def test_a_price_far_from_history_and_neighbours_is_held_until_approved(
    module_db: str, conn: psycopg.Connection, shared_data: Path
) -> None:
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal
    from zoneinfo import ZoneInfo

    from geo import ImplausibleValue
    from ingest._guidance import load_guidance_file
    from store._price_review import screen_price
    from store._prices import PriceIn, current_prices, insert_price
    from tests._forecourt import seed_station

    me, *peers = [seed_station(module_db, pumps=1, grades=("95",)) for _ in range(4)]
    t0 = datetime(2026, 10, 1, 8, tzinfo=ZoneInfo("Asia/Shanghai"))
    load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
    with conn.transaction():
        for i, cny in enumerate(("7.90", "7.95", "7.92", "7.98")):
            insert_price(
                conn, PriceIn(me, "95", Decimal(cny), t0 + timedelta(days=i)), zone="yunnan-4", actor="t"
            )
        for p, cny in zip(peers, ("7.96", "8.01", "7.93"), strict=True):
            insert_price(conn, PriceIn(p, "95", Decimal(cny), t0), zone="yunnan-4", actor="t")
    # an ordinary step is published at once
    with conn.transaction():
        d = screen_price(
            conn, PriceIn(me, "95", Decimal("8.02"), t0 + timedelta(days=5)), zone="yunnan-4", actor="mgr"
        )
    assert d.outcome == "allow"
    # a jump to 9.40 (under the official ceiling): far beyond its own steps and 15 percent: held
    cut = PriceIn(me, "95", Decimal("9.40"), t0 + timedelta(days=6))
    with conn.transaction():
        d = screen_price(conn, cut, zone="yunnan-4", actor="mgr")
    assert d.outcome == "review"
    assert {f.rule for f in d.fired} == {"price.own_history", "price.jump"}
    assert d.facts["neighbour_deviation"] == round((940 - 796) / 796, 4)  # the three neighbours' median
    # 18 percent over the neighbours is within their 20 percent; 9.60 is not
    with conn.transaction():
        deep = screen_price(
            conn, PriceIn(me, "95", Decimal("9.60"), t0 + timedelta(days=6)), zone="yunnan-4", actor="m"
        )
    assert "price.neighbours" in {f.rule for f in deep.fired}
    later = t0 + timedelta(days=7)
    assert current_prices(conn, [me], later)[me]["95"].price_cny == Decimal("8.02")
    # an implausible price is refused outright (422), never held
    with pytest.raises(ImplausibleValue), conn.transaction():
        screen_price(
            conn, PriceIn(me, "95", Decimal("6.50"), t0 + timedelta(days=6)), zone="yunnan-4", actor="m"
        )
    with conn.transaction():
        _risk.review(conn, d.id, approve=True, note="clearance sale confirmed by phone", actor="key:ops")
    # approving published it from the approval on (its day 6 is past): the past keeps its prices
    assert current_prices(conn, [me], later)[me]["95"].price_cny == Decimal("8.02")
    assert current_prices(conn, [me], datetime.now(UTC))[me]["95"].price_cny == Decimal("9.40")
