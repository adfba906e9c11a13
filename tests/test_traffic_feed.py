"""Live traffic as a privileged, store-first feed, against two real workers (uvicorn processes) on one
database: keys and roles, the audit row, intake rules, all-or-nothing batches, a failed store, the
deterministic order of equal observations, the operator's clear and the purge of old batches."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from store._audit import audit_rows
from store._auth import create_api_key
from store._traffic import purge, save_batch, save_clear
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY, Server

BBOX = "1.40,42.42,1.80,42.66"
ROUTE = {"from": "42.5063,1.5218", "to": "42.5347,1.5800"}
WAIT_S = 3.0  # how long a worker may take to show a batch another worker stored (NOTIFY)


@pytest.fixture(scope="module")
def keys(demo_db: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    with psycopg.connect(demo_db, autocommit=True) as conn:
        return {
            "traffic_name": f"traffic-feed-{suffix}",
            "traffic": create_api_key(conn, f"traffic-feed-{suffix}", "traffic", secret_key=TEST_SECRET_KEY),
            "manager": create_api_key(
                conn, f"station-manager-{suffix}", "manager", [1], secret_key=TEST_SECRET_KEY
            ),
            "operator": TEST_ADMIN_KEY,
        }


@pytest.fixture(scope="module")
def workers(demo_db: str) -> Iterator[tuple[Server, Server]]:
    with ThreadPoolExecutor(2) as ex:
        a, b = ex.map(lambda _: Server(demo_db), range(2))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture(scope="module")
def edges(workers: tuple[Server, Server]) -> list[int]:
    """Distinct road edges of one route; each test takes its own."""
    route = httpx.get(
        workers[0].base + "/v1/route", params=ROUTE | {"geometries": "segments"}, timeout=30
    ).json()
    ids = list(dict.fromkeys(s["edge_id"] for s in route["segments"]))
    assert len(ids) >= 12
    return ids


def _key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def _post(server: Server, updates: list[dict[str, Any]], key: str | None) -> httpx.Response:
    """POST a batch; json.dumps writes NaN as the bare literal a careless feed sends."""
    headers = {"Content-Type": "application/json"} | (_key(key) if key else {})
    body = json.dumps({"updates": updates})
    return httpx.post(server.base + "/v1/traffic", content=body, headers=headers, timeout=30)


def _factor(e: int, value: float, at: datetime, **extra: Any) -> dict[str, Any]:
    return {"edge_id": e, "factor": value, "observed_at": at.isoformat(), **extra}


def _seen(server: Server, at: datetime) -> dict[int, float]:
    """Congestion factor per road edge (0 = closed) as this worker holds it, at time `at`."""
    r = httpx.get(server.base + "/v1/traffic", params={"bbox": BBOX, "at": at.isoformat()}, timeout=30)
    assert r.status_code == 200, r.text
    return {int(x["edge_id"]): float(x["factor"]) for x in r.json()["edges"]}


def _wait_for(check: Any, timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _clear(server: Server) -> dict[str, Any]:
    r = httpx.delete(server.base + "/v1/traffic", headers=_key(TEST_ADMIN_KEY), timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_posting_needs_a_traffic_or_operator_key_and_every_batch_is_audited(
    workers: tuple[Server, Server], keys: dict[str, str], edges: list[int], demo_db: str
) -> None:
    a, b = workers
    e = edges[0]
    now = datetime.now(UTC)
    attack = [_factor(e, 0.123, now, expires_at=(now + timedelta(hours=24)).isoformat())]
    anonymous = _post(a, attack, None)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["WWW-Authenticate"].startswith("ApiKey")
    assert _post(a, attack, "lfk_not-a-key").status_code == 401
    manager = _post(a, attack, keys["manager"])
    assert manager.status_code == 403, manager.text
    assert "post live traffic" in manager.json()["error"]["message"]
    time.sleep(0.5)  # a batch that slipped through would have reached the other worker by now
    assert _seen(a, now)[e] != 0.123 and _seen(b, now)[e] != 0.123

    ok = _post(a, [_factor(e, 0.35, now)], keys["traffic"])
    assert ok.status_code == 200, ok.text
    batch_id = ok.json()["batch_id"]
    assert ok.json()["applied"] == 1
    assert _seen(a, now)[e] == 0.35  # the receiving worker applied the stored batch before answering
    assert _wait_for(lambda: _seen(b, now)[e] == 0.35)
    with psycopg.connect(demo_db) as conn:
        rows = audit_rows(conn, entity="live_traffic", entity_id=batch_id)
    assert [(r["actor"], r["action"]) for r in rows] == [(keys["traffic_name"], "create")]
    assert rows[0]["new_value"]["items"] == 1

    by_operator = _post(b, [_factor(e, 0.4, now + timedelta(seconds=1))], keys["operator"])
    assert by_operator.status_code == 200, by_operator.text
    with psycopg.connect(demo_db) as conn:
        rows = audit_rows(conn, entity="live_traffic", entity_id=by_operator.json()["batch_id"])
    assert [r["actor"] for r in rows] == ["admin"]


def test_closures_start_now_at_the_latest_and_are_capped_in_length(
    workers: tuple[Server, Server], keys: dict[str, str], edges: list[int]
) -> None:
    a, b = workers
    e1, e2, e3 = edges[1:4]
    now = datetime.now(UTC)
    future = _post(a, [{"edge_id": e1, "closed": True, "observed_at": (now + timedelta(seconds=55)).isoformat()}], keys["traffic"])  # fmt: skip
    assert future.status_code == 422, future.text
    assert "[0]" in future.json()["error"]["message"] and "future" in future.json()["error"]["message"]
    too_long = {
        "edge_id": e2,
        "closed": True,
        "observed_at": now.isoformat(),
        "expires_at": (now + timedelta(hours=7)).isoformat(),
    }
    r = _post(a, [too_long], keys["traffic"])
    assert r.status_code == 422, r.text
    assert "cap" in r.json()["error"]["message"]
    # other observations may be only a few seconds ahead of the service's clock
    ahead = _post(a, [_factor(e3, 0.5, now + timedelta(seconds=55))], keys["traffic"])
    assert ahead.status_code == 422, ahead.text
    time.sleep(0.5)
    for server in (a, b):
        seen = _seen(server, now)
        assert seen[e1] > 0 and seen[e2] > 0 and seen[e3] != 0.5


def test_a_bad_item_after_good_ones_rejects_the_batch_in_every_worker(
    workers: tuple[Server, Server], keys: dict[str, str], edges: list[int]
) -> None:
    a, b = workers
    e1, e2, e3, e4 = edges[4:8]
    now = datetime.now(UTC)
    batch = [
        _factor(e1, 0.21, now),
        {"edge_id": e2, "closed": True, "observed_at": now.isoformat()},
        _factor(e3, 0.22, datetime(1, 1, 1, tzinfo=UTC)),
        _factor(e3, 0.23, now, expires_at="9999-12-31T23:59:59+00:00"),
        _factor(e4, math.nan, now),
        _factor(10**9, 0.5, now),
    ]
    r = _post(a, batch, keys["traffic"])
    assert r.status_code == 422, r.text
    msg = r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "updates"
    for i in (2, 3, 4, 5):
        assert f"[{i}]" in msg
    assert "[0]" not in msg and "[1]" not in msg and "none applied" in msg
    time.sleep(0.5)
    for server in (a, b):
        seen = _seen(server, now)
        assert seen[e1] != 0.21 and seen[e2] > 0, server.base


def test_a_database_failure_while_storing_applies_the_batch_nowhere(
    workers: tuple[Server, Server], keys: dict[str, str], edges: list[int], demo_db: str
) -> None:
    a, b = workers
    e = edges[8]
    now = datetime.now(UTC)
    with psycopg.connect(demo_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION test_refuse_traffic() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'disk full' USING ERRCODE = 'disk_full'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER test_refuse_traffic BEFORE INSERT ON traffic_batches"
            " FOR EACH ROW EXECUTE FUNCTION test_refuse_traffic()"
        )
    try:
        r = _post(a, [_factor(e, 0.45, now)], keys["traffic"])
    finally:
        with psycopg.connect(demo_db, autocommit=True) as conn:
            conn.execute("DROP TRIGGER test_refuse_traffic ON traffic_batches")
            conn.execute("DROP FUNCTION test_refuse_traffic()")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "DatabaseUnavailable"
    assert int(r.headers["Retry-After"]) >= 1
    time.sleep(0.5)
    assert _seen(a, now)[e] != 0.45 and _seen(b, now)[e] != 0.45
    # the same batch goes through once the database takes it, and then every worker has it
    assert _post(a, [_factor(e, 0.45, now)], keys["traffic"]).status_code == 200
    assert _wait_for(lambda: _seen(b, now)[e] == 0.45) and _seen(a, now)[e] == 0.45


def test_equal_observation_times_end_the_same_in_every_worker(
    workers: tuple[Server, Server], keys: dict[str, str], edges: list[int]
) -> None:
    a, b = workers
    e = edges[9]

    def converge(now: datetime, want: float) -> None:
        assert _wait_for(lambda: _seen(a, now)[e] == want and _seen(b, now)[e] == want), (
            f"workers disagree: {_seen(a, now)[e]} and {_seen(b, now)[e]}, expected {want}"
        )

    for first, second in ((a, b), (b, a)):
        now = datetime.now(UTC)
        r1 = _post(first, [_factor(e, 0.3, now)], keys["traffic"])
        r2 = _post(second, [_factor(e, 0.6, now)], keys["traffic"])
        assert r1.status_code == r2.status_code == 200
        assert r2.json()["batch_id"] > r1.json()["batch_id"]
        converge(now, 0.6)  # the higher batch id wins, whatever the order of arrival
        time.sleep(0.3)
        converge(now, 0.6)
    for _ in range(5):  # both workers receive at once, each its own batch first
        now = datetime.now(UTC)
        with ThreadPoolExecutor(2) as ex:
            f1 = ex.submit(_post, a, [_factor(e, 0.25, now)], keys["traffic"])
            f2 = ex.submit(_post, b, [_factor(e, 0.75, now)], keys["traffic"])
            r1, r2 = f1.result(), f2.result()
        assert r1.status_code == r2.status_code == 200
        converge(now, 0.25 if r1.json()["batch_id"] > r2.json()["batch_id"] else 0.75)
    # several items for one edge in one batch: the last one wins
    now = datetime.now(UTC)
    r = _post(a, [_factor(e, 0.5, now), _factor(e, 0.55, now)], keys["traffic"])
    assert r.status_code == 200
    converge(now, 0.55)


def test_clear_returns_every_worker_to_the_profile_and_a_restart_keeps_it_clear(
    workers: tuple[Server, Server], keys: dict[str, str], edges: list[int], demo_db: str
) -> None:
    a, b = workers
    closed = edges[10:12]
    later_edge = edges[12] if len(edges) > 12 else edges[0]
    assert httpx.delete(a.base + "/v1/traffic", timeout=30).status_code == 401
    assert httpx.delete(a.base + "/v1/traffic", headers=_key(keys["traffic"]), timeout=30).status_code == 403
    _clear(a)
    now = datetime.now(UTC)
    assert _wait_for(lambda: _seen(a, now) == _seen(b, now))
    profile = _seen(a, now)
    updates = [
        {
            "edge_id": e,
            "closed": True,
            "observed_at": now.isoformat(),
            "expires_at": (now + timedelta(hours=2)).isoformat(),
        }
        for e in closed
    ]
    assert _post(a, updates, keys["traffic"]).status_code == 200
    assert _wait_for(lambda: all(_seen(b, now)[e] == 0 for e in closed))
    cleared = _clear(b)
    assert _wait_for(lambda: _seen(a, now) == profile and _seen(b, now) == profile)
    with psycopg.connect(demo_db) as conn:
        rows = audit_rows(conn, entity="live_traffic", entity_id=cleared["clear_id"])
    assert [(r["actor"], r["action"]) for r in rows] == [("admin", "delete")]
    assert _post(b, [_factor(later_edge, 0.42, now)], keys["traffic"]).status_code == 200
    restarted = Server(demo_db)
    try:
        seen = _seen(restarted, now)
        assert all(seen[e] == profile[e] for e in closed), "the cleared closures came back after a restart"
        assert seen[later_edge] == 0.42, "a batch stored after the clear was not replayed"
    finally:
        restarted.close()


def test_purge_removes_expired_and_cleared_batches_in_bounded_rounds(demo_db: str) -> None:
    region = f"purge-test-{uuid.uuid4().hex[:6]}"
    long_ago = datetime.now(UTC) - timedelta(days=3)
    soon = datetime.now(UTC) + timedelta(hours=1)
    item = [{"edge_id": 0, "factor": 0.5, "observed_at": 0.0, "expires_at": 1.0}]

    def batch(conn: psycopg.Connection, expires: datetime) -> int:
        return save_batch(
            conn, region=region, graph_hash="g", origin="t", actor="test", items=item, expires_at=expires
        )

    with psycopg.connect(demo_db) as conn:
        before_clear = [batch(conn, soon) for _ in range(2)]
        first_clear = save_clear(conn, region=region, origin="t", actor="test")
        expired = [batch(conn, long_ago) for _ in range(3)]
        last_clear = save_clear(conn, region=region, origin="t", actor="test")
        live = batch(conn, soon)
        expired_after = batch(conn, long_ago)
        conn.commit()
        rounds = []
        while True:
            n = purge(conn, region=region, keep_s=86_400.0, limit=2)
            conn.commit()
            rounds.append(n)
            if n == 0:
                break
        left = [
            r[0]
            for r in conn.execute("SELECT id FROM traffic_batches WHERE region = %s ORDER BY id", (region,))
        ]
    assert max(rounds) <= 2 and sum(rounds) == len(before_clear) + 1 + len(expired) + 1
    assert left == [last_clear, live]
    assert first_clear not in left and expired_after not in left
