"""Held price changes against a real PostgreSQL: the same anomalous change again is the one pending
decision (also when two writers send it at once, and for a loader's REPEATABLE READ transaction, which
retries; migration 0028 closes the duplicates queued before), and an approved change is published from
max(asked, approved), beside the prices scheduled before it was asked."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from risk import Decision
from store import _risk, migrate
from store._audit import audit_rows
from store._price_review import NewerPriceExists, price_decision
from store._prices import PriceIn, insert_price, price_history
from tests._risk import TZ, ZONE, anomalous, lowest_ceilings, priced_station, usual_prices


def _held(conn: psycopg.Connection, sid: int, price: Decimal, at: datetime) -> Decision:
    return price_decision(conn, PriceIn(sid, "95", price, at, "feed"), zone=ZONE, actor="feed:test")


def _pending(db_url: str, sid: int) -> list[tuple[int, str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id, subject ->> 'price_cny' FROM risk_decisions WHERE point = 'price'"
            " AND review_state = 'pending' AND (subject ->> 'station_id')::bigint = %s ORDER BY id",
            (sid,),
        ).fetchall()
    return [(int(i), str(p)) for i, p in rows]


def _waits_for_a_lock(db_url: str, pid: int) -> bool:
    deadline = time.monotonic() + 10
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return True
            time.sleep(0.05)
    return False


def test_the_same_change_at_once_is_one_pending_decision(module_db: str, shared_data: Path) -> None:
    ceiling = lowest_ceilings(module_db, shared_data)
    sid = priced_station(module_db, usual_prices(ceiling))
    cut = anomalous(ceiling, "95")
    now = datetime.now(TZ)
    with (
        psycopg.connect(module_db) as a,
        psycopg.connect(module_db) as b,
        ThreadPoolExecutor(1) as pool,
    ):
        first = _held(a, sid, cut, now)  # a's transaction is still open
        # the same price written with another scale, from another writer: it waits for a
        second = pool.submit(_held, b, sid, cut.quantize(Decimal("0.001")), now + timedelta(seconds=1))
        assert _waits_for_a_lock(module_db, b.info.backend_pid)
        a.commit()
        again = second.result(timeout=30)
        b.commit()
    assert first.outcome == again.outcome == "review" and first.id is not None
    assert again.id == first.id and again.reasons == first.reasons
    assert _pending(module_db, sid) == [(first.id, str(cut))]
    # a loader's REPEATABLE READ transaction that began before another writer held the same change
    lower = cut - Decimal("0.10")
    with psycopg.connect(module_db) as loader, psycopg.connect(module_db) as other:
        loader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        loader.execute("SELECT 1")  # its snapshot
        held = _held(other, sid, lower, now)
        other.commit()
        with pytest.raises(psycopg.errors.SerializationFailure):
            _held(loader, sid, lower, now)  # the loaders run the whole file again on this error
        loader.rollback()
        assert _held(loader, sid, lower, now).id == held.id
        loader.commit()
    assert _pending(module_db, sid) == [(first.id, str(cut)), (held.id, str(lower))]


def test_approval_publishes_from_the_later_of_asked_and_approved(module_db: str, shared_data: Path) -> None:
    ceiling = lowest_ceilings(module_db, shared_data)
    usual = usual_prices(ceiling)
    sid = priced_station(module_db, usual)
    cut = anomalous(ceiling, "95")
    now = datetime.now(TZ).replace(microsecond=0)
    scheduled = usual["95"] + Decimal("0.09")
    with psycopg.connect(module_db) as conn:
        # a price scheduled for three days ahead before the held changes were asked
        insert_price(conn, PriceIn(sid, "95", scheduled, now + timedelta(days=3)), zone=ZONE, actor="mgr")
        past = _held(conn, sid, cut, now - timedelta(hours=1))
        ahead = _held(conn, sid, cut - Decimal("0.10"), now + timedelta(days=1))
    assert past.id is not None and ahead.id is not None
    with psycopg.connect(module_db) as conn:
        approved = _risk.review(conn, past.id, approve=True, note="confirmed", actor="ops")
        conn.commit()
        _risk.review(conn, ahead.id, approve=True, note="confirmed", actor="ops")
        conn.commit()
        rows = price_history(conn, sid, grade="95", limit=4)
    assert [(r["price_cny"], r["effective_from"]) for r in rows] == [
        (scheduled, now + timedelta(days=3)),  # still takes effect: it does not override it
        (cut - Decimal("0.10"), now + timedelta(days=1)),  # asked for later than approved: as asked
        (cut, approved["reviewed_at"]),  # asked for an hour before it was approved: from the approval
        (usual["95"] + Decimal("0.05"), rows[3]["effective_from"]),
    ]
    assert rows[3]["effective_from"] < now - timedelta(days=3)


def test_the_migration_closes_the_duplicates_already_queued(module_db: str) -> None:
    """Migration 0028 on a database whose queue already holds the same held price three times."""
    migration = "0028_one_pending_price.sql"
    station = 10**9 + int(time.time()) % 1000  # no stored station: the queue's subjects are ids only
    subjects = [
        (station, "7.70"),
        (station, "7.70"),
        (station, "7.60"),
        (station, "7.70"),
        (station + 1, "7.70"),
    ]
    with psycopg.connect(module_db) as conn:
        conn.execute("DROP INDEX risk_decisions_one_pending_price")
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (migration,))
        ids = [
            int(
                conn.execute(
                    "INSERT INTO risk_decisions (point, outcome, fired, facts, rules_version, subject,"
                    " review_state) VALUES ('price', 'review', '[]', '{}', 'old', %s, 'pending') RETURNING id",
                    (Jsonb({"station_id": sid, "grade": "95", "price_cny": cny, "actor": "mgr"}),),
                ).fetchone()[0]  # type: ignore[index]
            )
            for sid, cny in subjects
        ]
    assert migrate(module_db) == [migration]
    with psycopg.connect(module_db) as conn:
        states = conn.execute(
            "SELECT id, review_state, reviewed_by, review_note FROM risk_decisions WHERE id = ANY(%s) ORDER BY id",
            (ids,),
        ).fetchall()
        audit = audit_rows(conn, entity="risk_decision", entity_id=ids[1]) + audit_rows(
            conn, entity="risk_decision", entity_id=ids[3]
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO risk_decisions (point, outcome, fired, facts, rules_version, subject, review_state)"
                " VALUES ('price', 'review', '[]', '{}', 'new', %s, 'pending')",
                (Jsonb({"station_id": station, "grade": "95", "price_cny": "7.60", "actor": "feed"}),),
            )
    note = f"the same price change as decision {ids[0]}, which awaits review"
    assert states == [
        (ids[0], "pending", None, None),
        (ids[1], "rejected", "migration 0028", note),
        (ids[2], "pending", None, None),
        (ids[3], "rejected", "migration 0028", note),
        (ids[4], "pending", None, None),
    ]
    assert [(a["actor"], a["old_value"], a["new_value"]) for a in audit] == [
        ("migration 0028", {"review_state": "pending"}, {"review_state": "rejected", "review_note": note})
    ] * 2


@pytest.mark.parametrize("hours", [-1, 24], ids=["asked-for-the-past", "asked-for-tomorrow"])
def test_a_price_published_after_the_hold_for_the_same_time_is_not_overridden(
    module_db: str, shared_data: Path, hours: int
) -> None:
    ceiling = lowest_ceilings(module_db, shared_data)
    usual = usual_prices(ceiling)
    sid = priced_station(module_db, usual)
    asked = datetime.now(TZ).replace(microsecond=0) + timedelta(hours=hours)
    with psycopg.connect(module_db) as conn:
        held = _held(conn, sid, anomalous(ceiling, "95"), asked)
    assert held.id is not None
    newer = usual["95"] + Decimal("0.03")
    with psycopg.connect(
        module_db
    ) as conn:  # the manager's next change, for the very same time, is published
        insert_price(conn, PriceIn(sid, "95", newer, asked), zone=ZONE, actor="mgr")
    with psycopg.connect(module_db) as conn:
        before = price_history(conn, sid, grade="95", limit=5)
        with pytest.raises(NewerPriceExists, match=f"newer 95# price, {newer}"):
            _risk.review(conn, held.id, approve=True, note="confirmed", actor="ops")
        conn.rollback()
        assert price_history(conn, sid, grade="95", limit=5) == before
        assert _risk.get_decision(conn, held.id)["review_state"] == "pending"
