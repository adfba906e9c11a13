"""Risk control at bind, through the real API, link server and simulated site: a device carrying too many
accounts and a deny-listed device are refused before any session exists; the fingerprint is kept only as a
keyed hash; bad risk fields are a 422 naming them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from risk import keyed_hash
from store import _risk
from tests._fuelling import Stack
from tests._servers import TEST_SECRET_KEY

pytestmark = pytest.mark.slow  # real processes


@pytest.fixture(scope="module")
def stack(module_db: str) -> Iterator[Stack]:
    s = Stack(module_db, pumps=2)
    try:
        yield s
    finally:
        s.close()


def _sessions(stack: Stack) -> int:
    return int(stack.sql("SELECT count(*) FROM fuelling_sessions")[0][0])


def test_a_device_with_too_many_accounts_is_denied_at_bind(stack: Stack) -> None:
    fp = f"fp-{uuid.uuid4().hex}"
    for _ in range(3):
        auth = stack.user()
        r = stack.bind(auth, pump=1, device_fingerprint=fp, vehicle_class="car")
        assert r.status_code == 201, r.text
        assert (
            stack.http.post(f"/v1/fuelling/sessions/{r.json()['id']}/cancel", headers=auth).status_code == 200
        )
    before = _sessions(stack)
    r = stack.bind(stack.user(), pump=1, device_fingerprint=fp)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "RiskDenied" and "more than 3 accounts" in err["message"]
    assert _sessions(stack) == before  # nothing bound
    row = stack.sql("SELECT outcome, facts, subject FROM risk_decisions WHERE id = %s", err["decision_id"])[0]
    assert row[0] == "deny" and row[1]["device_users_1d"] == 4
    assert row[2]["device"] == keyed_hash(TEST_SECRET_KEY, "device", fp)
    # the raw fingerprint is nowhere in the database
    assert (
        stack.sql(
            "SELECT count(*) FROM risk_decisions WHERE subject::text LIKE %s OR facts::text LIKE %s",
            f"%{fp}%",
            f"%{fp}%",
        )[0][0]
        == 0
    )
    classes = stack.sql(
        "SELECT DISTINCT subject ->> 'vehicle_class' FROM risk_decisions WHERE point = 'bind'"
    )
    assert ("car",) in classes


def test_a_deny_listed_device_is_refused(stack: Stack) -> None:
    fp = f"fp-{uuid.uuid4().hex}"
    with psycopg.connect(stack.url) as conn, conn.transaction():
        _risk.add_to_list(
            conn,
            kind="deny",
            subject="device",
            value_hash=keyed_hash(TEST_SECRET_KEY, "device", fp),
            note="reported stolen",
            actor="test",
        )
    before = _sessions(stack)
    r = stack.bind(stack.user(), pump=2, device_fingerprint=fp)
    assert r.status_code == 403 and r.json()["error"]["code"] == "RiskDenied", r.text
    assert "deny list" in r.json()["error"]["message"]
    assert _sessions(stack) == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device_fingerprint", "short"),
        ("device_fingerprint", "x" * 201),
        ("device_fingerprint", "has space in it"),
        ("vehicle_class", "tank"),
    ],
)
def test_bad_risk_fields_are_named(stack: Stack, field: str, value: str) -> None:
    r = stack.bind(stack.user(), pump=2, **{field: value})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == field
