"""The operators' risk administration over real HTTP (a real API server, PostgreSQL): rules with their
thresholds, an override validated, audited and in force at the next evaluation without a restart, and the
deny/allow lists stored as the same keyed hashes risk control checks; other keys are refused."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from risk import keyed_hash
from store import _risk
from store._auth import create_api_key
from tests._risk import PriceDesk, price_desk, usual_prices
from tests._servers import TEST_SECRET_KEY

pytestmark = pytest.mark.slow  # a real server process


@pytest.fixture(scope="module")
def desk(module_db: str, shared_data: Path) -> Iterator[PriceDesk]:
    with price_desk(module_db, shared_data) as d:
        yield d


def _audit(desk: PriceDesk, entity: str, entity_id: str) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in desk.sql(
            "SELECT actor, action FROM audit_log WHERE entity = %s AND entity_id = %s ORDER BY id",
            entity,
            entity_id,
        )
    ]


def test_only_operators_administer_risk(desk: PriceDesk) -> None:
    with psycopg.connect(desk.db_url) as conn:
        manager = create_api_key(conn, "a-manager", "manager", [1], secret_key=TEST_SECRET_KEY)
    calls = [
        ("GET", "/v1/risk/rules", None),
        ("PUT", "/v1/risk/rules/price.jump", {"enabled": False}),
        ("DELETE", "/v1/risk/rules/price.jump/override", None),
        ("GET", "/v1/risk/lists", None),
        ("POST", "/v1/risk/lists", {"kind": "deny", "subject": "device", "value": "fp-1"}),
        ("DELETE", "/v1/risk/lists/1", None),
    ]
    for method, path, body in calls:
        r = desk.api(method, path, manager, json=body)
        assert r.status_code == 403 and "operator keys only" in r.json()["error"]["message"], (path, r.text)
        assert desk.api(method, path, "not-a-key", json=body).status_code == 401, path
    assert desk.sql("SELECT count(*) FROM risk_rules") == [(0,)]
    assert desk.sql("SELECT count(*) FROM risk_lists") == [(0,)]


def test_rules_are_listed_with_their_thresholds(desk: PriceDesk) -> None:
    r = desk.api("GET", "/v1/risk/rules", desk.operator)
    assert r.status_code == 200, r.text
    rules = {x["name"]: x for x in r.json()["rules"]}
    assert rules["pay.amount_deny"] == {
        "name": "pay.amount_deny",
        "point": "pay",
        "expr": "amount_fen > 300000",
        "outcome": "deny",
        "reason": "a payment above 3000 CNY",
        "enabled": True,
        "origin": "file",
        "file_expr": "amount_fen > 300000",
        "updated_by": None,
        "updated_at": None,
    }
    assert rules["redeem.points_per_day"]["expr"] == "user_points_redeemed_1d > 20000"


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        (
            "/v1/risk/rules/price.no_such_rule",
            {"enabled": False},
            404,
            "no risk rule named 'price.no_such_rule'",
        ),
        ("/v1/risk/rules/price.jump", {"expr": "change_ratio >"}, 422, "price.jump"),
        ("/v1/risk/rules/price.jump", {"outcome": "maybe"}, 422, "outcome"),
        ("/v1/risk/rules/price.jump", {"reason": ""}, 422, "reason"),
        ("/v1/risk/rules/price.jump", {"threshold": 0.2}, 422, "threshold"),
        ("/v1/risk/rules/Price.Jump", {"enabled": False}, 422, "name"),
    ],
)
def test_a_bad_override_is_refused(
    desk: PriceDesk, path: str, body: dict[str, object], status: int, words: str
) -> None:
    r = desk.api("PUT", path, desk.operator, json=body)
    assert r.status_code == status and words in r.text, r.text
    assert desk.sql("SELECT count(*) FROM risk_rules") == [(0,)]


def test_an_override_applies_at_the_next_evaluation_and_can_be_dropped(desk: PriceDesk) -> None:
    usual = usual_prices(desk.ceiling)
    sid, key = desk.station(usual)

    def put(cny: Decimal) -> int:
        body = [{"grade": "92", "price_cny": str(cny)}]
        r = desk.api(
            "PUT", f"/v1/stations/{sid}/prices", key, json=body, headers={"If-Match": desk.etag(sid)}
        )
        assert r.status_code in (200, 202), r.text
        return r.status_code

    assert put(usual["92"] + Decimal("0.07")) == 200  # an ordinary step
    r = desk.api("PUT", "/v1/risk/rules/price.jump", desk.operator, json={"expr": "change_ratio > 0.001"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["expr"], got["origin"], got["file_expr"], got["updated_by"]) == (
        "change_ratio > 0.001",
        "override",
        "change_ratio > 0.15",
        "price-desk",
    )
    assert got["outcome"] == "review" and got["reason"] == "a price change above 15 percent"  # kept
    # the running server holds the same kind of step now: no restart
    assert put(usual["92"] + Decimal("0.03")) == 202
    held = desk.sql("SELECT fired FROM risk_decisions WHERE point = 'price' ORDER BY id DESC LIMIT 1")[0][0]
    assert [f["rule"] for f in held] == ["price.jump"] and held[0]["expr"] == "change_ratio > 0.001"
    # switched off, it no longer fires
    off = desk.api("PUT", "/v1/risk/rules/price.jump", desk.operator, json={"enabled": False})
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert put(usual["92"] + Decimal("0.04")) == 200
    # dropped: the file's rule again
    back = desk.api("DELETE", "/v1/risk/rules/price.jump/override", desk.operator)
    assert back.status_code == 200 and back.json()["origin"] == "file" and back.json()["enabled"] is True
    assert put(usual["92"] + Decimal("0.02")) == 200
    assert desk.api("DELETE", "/v1/risk/rules/price.jump/override", desk.operator).status_code == 404
    assert _audit(desk, "risk_rule", "price.jump") == [
        ("price-desk", "create"),
        ("price-desk", "update"),
        ("price-desk", "delete"),
    ]


def test_deny_and_allow_lists_hold_keyed_hashes(desk: PriceDesk) -> None:
    fp = "fp-ring-7731"
    r = desk.api(
        "POST",
        "/v1/risk/lists",
        desk.operator,
        json={"kind": "deny", "subject": "device", "value": fp, "note": "card ring"},
    )
    assert r.status_code == 201, r.text
    entry = r.json()
    device_h = keyed_hash(TEST_SECRET_KEY, "device", fp)  # how risk control hashes a fingerprint at bind
    assert entry["value_hash"] == device_h and fp not in r.text and entry["created_by"] == "price-desk"
    ok = desk.api(
        "POST", "/v1/risk/lists", desk.operator, json={"kind": "allow", "subject": "user", "value": "42"}
    )
    assert ok.status_code == 201
    for bad, words in (
        ({"kind": "allow", "subject": "user", "value": "alice"}, "digits"),
        ({"kind": "block", "subject": "user", "value": "42"}, "kind"),
        ({"kind": "deny", "subject": "phone", "value": "138"}, "subject"),
        ({"kind": "deny", "subject": "device", "value": ""}, "value"),
    ):
        r = desk.api("POST", "/v1/risk/lists", desk.operator, json=bad)
        assert r.status_code == 422 and words in r.text, r.text
    listed = desk.api("GET", "/v1/risk/lists?kind=deny", desk.operator).json()["entries"]
    assert [(e["id"], e["subject"], e["note"]) for e in listed] == [(entry["id"], "device", "card ring")]
    assert len(desk.api("GET", "/v1/risk/lists", desk.operator).json()["entries"]) == 2
    with psycopg.connect(desk.db_url) as conn:
        assert _risk.listed(conn, {"device": device_h}) == (["device"], [])
    gone = desk.api("DELETE", f"/v1/risk/lists/{entry['id']}", desk.operator)
    assert gone.status_code == 204
    with psycopg.connect(desk.db_url) as conn:
        assert _risk.listed(conn, {"device": device_h}) == ([], [])
    assert desk.api("DELETE", f"/v1/risk/lists/{entry['id']}", desk.operator).status_code == 404
    assert _audit(desk, "risk_list", str(entry["id"])) == [("price-desk", "create"), ("price-desk", "delete")]
