"""The operators' payment cases over real HTTP (the ASGI app, a real PostgreSQL): cases opened by the
payment code's store function are listed oldest first with their sale's station, filtered by state and
kind and paged; one is read by id; resolving takes a note, is audited and happens once (409 naming the
case after); other keys are refused (403), no key is a 401."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config import Settings
from store import _cases, _payments
from store._audit import audit_rows
from store._auth import create_api_key
from tests._forecourt import seed_station
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY, fresh_rate_prefix

NO_EXTRACT = Path("/nonexistent/lijiang.osm.pbf")
OPERATOR = {"X-API-Key": TEST_ADMIN_KEY}
# the app's keys (the admin key is an operator key) and a rate limiter of this module's own
KEYS = {
    "admin_api_key": TEST_ADMIN_KEY,
    "secret_key": TEST_SECRET_KEY,
    "rate_limit_prefix": fresh_rate_prefix(),
}


def _payment(conn: psycopg.Connection, station: int | None, sale_id: int | None) -> str:
    no = f"T{uuid.uuid4().hex[:24]}"
    _payments.create_payment(
        conn,
        out_trade_no=no,
        sale_ref=f"fcc:{sale_id}" if sale_id else f"test:{no}",
        station_id=station,
        openid=f"o-{uuid.uuid4().hex[:12]}",
        amount_fen=5_390,
        expires_at=datetime.now().astimezone() + timedelta(minutes=15),
        actor="test",
    )
    return no


def _sale(conn: psycopg.Connection, station: int) -> int:
    row = conn.execute(
        "INSERT INTO fcc_sales (station_id, pump_no, nozzle_no, site_tx_id, grade, volume_ml, amount_fen,"
        " unit_price_fen, totaliser_start_ml, totaliser_end_ml, state)"
        " VALUES (%s, 1, 1, %s, '92', 7000, 5390, 770, 1000, 8000, 'cleared') RETURNING id",
        (station, f"TX-{uuid.uuid4().hex[:8]}"),
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="module")
def env(module_db: str, shared_data: Path) -> Iterator[dict[str, Any]]:
    """Four open cases (a points_released, two unknown_at_site, a refund_abnormal without a sale) and a
    manager key; the in-process app with the admin key as the operator."""
    settings = Settings(database_url=module_db, extract=NO_EXTRACT, shared_data_dir=shared_data, **KEYS)
    station = seed_station(module_db, pumps=1)
    opened: list[dict[str, Any]] = []
    with psycopg.connect(module_db) as conn:
        for kind, with_sale in (
            ("points_released", True),
            ("unknown_at_site", True),
            ("unknown_at_site", True),
            ("refund_abnormal", False),
        ):
            sale_id = _sale(conn, station) if with_sale else None
            no = _payment(conn, station if with_sale else None, sale_id)
            detail = {"sale_id": sale_id, "points": 1_000} if kind == "points_released" else {"site": 404}
            assert _cases.open_case(
                conn, out_trade_no=no, sale_id=sale_id, kind=kind, detail=detail, actor="test"
            )
            assert not _cases.open_case(  # once per payment and kind
                conn, out_trade_no=no, sale_id=sale_id, kind=kind, detail=detail, actor="test"
            )
            opened.append({"out_trade_no": no, "sale_id": sale_id, "kind": kind, "detail": detail})
        manager = create_api_key(conn, "a-manager", "manager", [station], secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings)) as client:
        yield {
            "client": client,
            "db": module_db,
            "station": station,
            "opened": opened,
            "manager": manager,
        }


def _ids(env: dict[str, Any], **params: Any) -> tuple[list[int], int | None]:
    r = env["client"].get("/v1/payments/cases", params=params, headers=OPERATOR)
    assert r.status_code == 200, r.text
    body = r.json()
    return [c["id"] for c in body["cases"]], body["next_after_id"]


def test_only_operators_see_and_resolve_cases(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    calls = [
        ("GET", "/v1/payments/cases", None),
        ("GET", "/v1/payments/cases/1", None),
        ("POST", "/v1/payments/cases/1/resolve", {"note": "refunded"}),
    ]
    for method, path, body in calls:
        r = c.request(method, path, json=body, headers={"X-API-Key": env["manager"]})
        assert r.status_code == 403 and "operator keys only" in r.json()["error"]["message"], (path, r.text)
        assert c.request(method, path, json=body).status_code == 401, path
        assert c.request(method, path, json=body, headers={"X-API-Key": "not-a-key"}).status_code == 401
    with psycopg.connect(env["db"]) as conn:
        assert conn.execute(
            "SELECT count(*) FROM payment_cases WHERE resolved_at IS NOT NULL"
        ).fetchone() == (0,)


def test_open_cases_are_listed_oldest_first_with_their_station(env: dict[str, Any]) -> None:
    r = env["client"].get("/v1/payments/cases", headers=OPERATOR)
    assert r.status_code == 200, r.text
    body = r.json()
    first = body["cases"][0]
    want = env["opened"][0]
    assert {k: first[k] for k in ("out_trade_no", "sale_id", "kind", "detail")} == want
    assert first["station_id"] == env["station"]
    assert (first["resolved_at"], first["resolved_by"], first["resolution_note"]) == (None, None, None)
    assert datetime.fromisoformat(first["opened_at"]).tzinfo is not None
    ids = [c["id"] for c in body["cases"]]
    assert ids == sorted(ids) and body["next_after_id"] is None
    no_sale = next(c for c in body["cases"] if c["kind"] == "refund_abnormal")
    assert (no_sale["sale_id"], no_sale["station_id"]) == (None, None)
    one = env["client"].get(f"/v1/payments/cases/{first['id']}", headers=OPERATOR)
    assert one.status_code == 200 and one.json() == first


def test_cases_are_paged_and_filtered_by_kind(env: dict[str, Any]) -> None:
    everything, _ = _ids(env, state="open", limit=200)
    assert len(everything) >= 3
    page1, after = _ids(env, limit=2)
    assert page1 == everything[:2] and after == page1[-1]
    page2, _ = _ids(env, limit=2, after_id=after)
    assert page2 == everything[2:4]
    r = env["client"].get("/v1/payments/cases", params={"kind": "unknown_at_site"}, headers=OPERATOR)
    listed = r.json()["cases"]
    opened = [o["out_trade_no"] for o in env["opened"] if o["kind"] == "unknown_at_site"]
    assert [x["out_trade_no"] for x in listed] == opened and r.json()["next_after_id"] is None
    assert {x["kind"] for x in listed} == {"unknown_at_site"}
    assert _ids(env, kind="locked_elsewhere") == ([], None)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"state": "closed"}, "state"),
        ({"kind": "lost"}, "kind"),
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
        ({"after_id": -1}, "after_id"),
    ],
)
def test_bad_listing_parameters_are_422(env: dict[str, Any], params: dict[str, Any], words: str) -> None:
    r = env["client"].get("/v1/payments/cases", params=params, headers=OPERATOR)
    assert r.status_code == 422 and words in r.text, r.text


def test_a_case_is_resolved_once_with_a_note_and_audited(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    target = next(o for o in env["opened"] if o["kind"] == "points_released")
    case = next(
        x
        for x in c.get("/v1/payments/cases", headers=OPERATOR).json()["cases"]
        if x["kind"] == target["kind"]
    )
    path = f"/v1/payments/cases/{case['id']}/resolve"
    note = "已联系车主，补扣 1000 积分 / took the 1000 points with the driver's consent"
    r = c.post(path, json={"note": note}, headers=OPERATOR)
    assert r.status_code == 200, r.text
    done = r.json()
    assert (done["id"], done["resolved_by"], done["resolution_note"]) == (case["id"], "admin", note)
    assert datetime.fromisoformat(done["resolved_at"]) >= datetime.fromisoformat(done["opened_at"])
    # no longer open; listed among the resolved
    assert case["id"] not in _ids(env)[0]
    assert case["id"] in _ids(env, state="resolved")[0]
    # twice: 409 naming the case, nothing changes
    again = c.post(path, json={"note": "again"}, headers=OPERATOR)
    assert again.status_code == 409, again.text
    message = again.json()["error"]["message"]
    assert f"payment case {case['id']}" in message and target["out_trade_no"] in message
    assert c.get(f"/v1/payments/cases/{case['id']}", headers=OPERATOR).json() == done
    with psycopg.connect(env["db"]) as conn:
        rows = audit_rows(conn, entity="payment_case", entity_id=f"{target['out_trade_no']}:points_released")
    assert [(r["action"], r["actor"]) for r in rows] == [("create", "test"), ("update", "admin")]
    assert rows[1]["new_value"] == {"resolved_by": "admin", "resolution_note": note}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "note"),
        ({"note": ""}, "note"),
        ({"note": "x" * 501}, "note"),
        ({"note": "done\x00"}, "control characters"),
        ({"note": "done\x1b[31m"}, "control characters"),
        ({"note": "done", "by": "me"}, "by"),
        ({"note": 5}, "note"),
    ],
)
def test_a_bad_note_is_422_and_resolves_nothing(
    env: dict[str, Any], body: dict[str, Any], words: str
) -> None:
    open_ids, _ = _ids(env)
    r = env["client"].post(f"/v1/payments/cases/{open_ids[-1]}/resolve", json=body, headers=OPERATOR)
    assert r.status_code == 422 and words in r.text, r.text
    assert open_ids[-1] in _ids(env)[0]


def test_an_unknown_case_is_404(env: dict[str, Any]) -> None:
    c: TestClient = env["client"]
    for method, path, body in (
        ("GET", "/v1/payments/cases/987654321", None),
        ("POST", "/v1/payments/cases/987654321/resolve", {"note": "n/a"}),
    ):
        r = c.request(method, path, json=body, headers=OPERATOR)
        assert r.status_code == 404 and "payment case 987654321 not found" in r.text, r.text
    assert c.get("/v1/payments/cases/0", headers=OPERATOR).status_code == 422
    assert c.get("/v1/payments/cases/abc", headers=OPERATOR).status_code == 422
