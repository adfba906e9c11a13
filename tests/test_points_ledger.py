"""The points ledger against a real PostgreSQL: every invariant of the points issue (the ledger sums to
zero, each stored balance equals its entries, a replay never earns twice, a refund reverses exactly,
expired points are never redeemed), the hold barrier in every order, two phones redeeming at once, and a
Hypothesis stateful model of earn / redeem / pay / pay fails / refund / expire."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from loyalty import InvalidHoldTransition
from store import _ledger as ledger

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 1, 10, 0, tzinfo=TZ)
ACTOR = "test"


@pytest.fixture(scope="module")
def conn(module_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_db, autocommit=True) as c:
        yield c


def new_user(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "INSERT INTO users (openid, unionid) VALUES (%s, NULL) RETURNING id", (f"o-{uuid.uuid4().hex}",)
    ).fetchone()
    assert row is not None
    return int(row[0])


def balance(conn: psycopg.Connection, user_id: int) -> int:
    return ledger.user_account(conn, user_id)[1]


def earn(conn: psycopg.Connection, user_id: int, ref: str, points: int, at: datetime = NOW) -> int:
    with conn.transaction():
        return ledger.earn(
            conn,
            user_id=user_id,
            out_trade_no=ref,
            points=points,
            earned_at=at,
            expiry_months=12,
            actor=ACTOR,
        )


def test_replayed_earn_never_earns_twice_and_the_ledger_sums_to_zero(conn: psycopg.Connection) -> None:
    u = new_user(conn)
    assert earn(conn, u, "pay-1", 250) == 250
    assert earn(conn, u, "pay-1", 250) == 0  # the replayed notification
    assert balance(conn, u) == 250
    assert ledger.verify(conn) == []
    rows = conn.execute(
        "SELECT t.kind, sum(e.amount) FROM ledger_entries e JOIN ledger_transfers t ON t.id = e.transfer_id"
        " WHERE t.ref = 'earn:pay-1' GROUP BY t.kind"
    ).fetchall()
    assert rows == [("earn", 0)]
    audits = conn.execute(
        "SELECT count(*) FROM audit_log WHERE entity = 'ledger_transfer' AND entity_id = 'earn:pay-1'"
    )
    assert audits.fetchone() == (1,)


def test_hold_post_and_void_are_idempotent_and_a_void_before_its_hold_wins(conn: psycopg.Connection) -> None:
    u = new_user(conn)
    earn(conn, u, "e-a", 3000)
    with conn.transaction():
        h = ledger.hold(conn, user_id=u, ref="ord-1", points=1000, fen_off=1000, now=NOW, actor=ACTOR)
    assert h.state == "pending" and balance(conn, u) == 2000
    with conn.transaction():
        ledger.hold(
            conn, user_id=u, ref="ord-1", points=1000, fen_off=1000, now=NOW, actor=ACTOR
        )  # retried pay
    assert balance(conn, u) == 2000
    with conn.transaction():
        assert ledger.post(conn, "ord-1", actor=ACTOR) == "posted"
    with conn.transaction():
        assert ledger.post(conn, "ord-1", actor=ACTOR) == "already"
    with pytest.raises(InvalidHoldTransition), conn.transaction():
        ledger.void(conn, "ord-1", actor=ACTOR)
    # void, then void again, then a late post is refused
    with conn.transaction():
        ledger.hold(conn, user_id=u, ref="ord-2", points=1000, fen_off=1000, now=NOW, actor=ACTOR)
    with conn.transaction():
        assert ledger.void(conn, "ord-2", actor=ACTOR) == "voided"
    with conn.transaction():
        assert ledger.void(conn, "ord-2", actor=ACTOR) == "already"
    assert balance(conn, u) == 2000
    with pytest.raises(InvalidHoldTransition), conn.transaction():
        ledger.post(conn, "ord-2", actor=ACTOR)
    # a void that overtook its hold: the hold afterwards takes nothing
    with conn.transaction():
        assert ledger.void(conn, "ord-3", actor=ACTOR) == "early"
    with conn.transaction():
        late = ledger.hold(conn, user_id=u, ref="ord-3", points=1000, fen_off=1000, now=NOW, actor=ACTOR)
    assert late.state == "voided" and balance(conn, u) == 2000
    assert ledger.verify(conn) == []


def test_expired_points_are_never_redeemed(conn: psycopg.Connection) -> None:
    u = new_user(conn)
    earn(conn, u, "old", 1000, at=NOW - timedelta(days=400))  # expired, the job has not run yet
    earn(conn, u, "new", 500, at=NOW)
    assert balance(conn, u) == 1500
    assert ledger.redeemable(conn, u, now=NOW) == 500
    with pytest.raises(ledger.InsufficientPoints), conn.transaction():
        ledger.hold(conn, user_id=u, ref="ord-x", points=1000, fen_off=1000, now=NOW, actor=ACTOR)
    with conn.transaction():
        assert ledger.expire_due(conn, now=NOW, actor=ACTOR) >= 1000
    with conn.transaction():
        assert ledger.expire_due(conn, now=NOW, actor=ACTOR) == 0  # a retried job expires nothing more
    assert balance(conn, u) == 500
    assert ledger.verify(conn) == []


def test_a_refund_reverses_exactly_what_the_payment_earned_and_redeemed(conn: psycopg.Connection) -> None:
    u = new_user(conn)
    earn(conn, u, "before", 2000)
    with conn.transaction():
        ledger.hold(conn, user_id=u, ref="pay-r", points=1000, fen_off=1000, now=NOW, actor=ACTOR)
        ledger.post(conn, "pay-r", actor=ACTOR)
    earn(conn, u, "pay-r", 300)
    assert balance(conn, u) == 1300
    # a partial refund of a third: a third (rounded down) of each, then the rest reverses exactly
    with conn.transaction():
        took, gave = ledger.reverse_for_refund(
            conn,
            out_trade_no="pay-r",
            out_refund_no="rf-1",
            refunded_fen=1000,
            paid_fen=3000,
            now=NOW,
            actor=ACTOR,
        )
    assert (took, gave) == (100, 333)
    with conn.transaction():  # the same refund reported again
        assert ledger.reverse_for_refund(
            conn,
            out_trade_no="pay-r",
            out_refund_no="rf-1",
            refunded_fen=1000,
            paid_fen=3000,
            now=NOW,
            actor=ACTOR,
        ) == (0, 0)
    with conn.transaction():
        took, gave = ledger.reverse_for_refund(
            conn,
            out_trade_no="pay-r",
            out_refund_no="rf-2",
            refunded_fen=3000,
            paid_fen=3000,
            now=NOW,
            actor=ACTOR,
        )
    assert (took, gave) == (200, 667)
    assert balance(conn, u) == 2000  # as before the payment
    assert ledger.verify(conn) == []


def test_two_phones_redeeming_at_once_never_overspend(module_db: str, conn: psycopg.Connection) -> None:
    u = new_user(conn)
    earn(conn, u, "two-phones", 1000)
    results: list[str] = []

    def phone(i: int) -> None:
        with psycopg.connect(module_db) as c:
            try:
                with c.transaction():
                    ledger.hold(
                        c, user_id=u, ref=f"phone-{i}", points=1000, fen_off=1000, now=NOW, actor=ACTOR
                    )
                results.append("held")
            except ledger.InsufficientPoints:
                results.append("refused")

    threads = [threading.Thread(target=phone, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["held", "refused"]
    assert balance(conn, u) == 0
    assert ledger.verify(conn) == []


def test_verify_finds_a_tampered_balance(module_db: str) -> None:
    with psycopg.connect(module_db) as c:  # rolled back at the end
        u = new_user(c)
        ledger.earn(c, user_id=u, out_trade_no="t", points=10, earned_at=NOW, expiry_months=12, actor=ACTOR)
        assert ledger.verify(c) == []
        c.execute("UPDATE ledger_accounts SET balance = balance + 1 WHERE user_id = %s", (u,))
        problems = ledger.verify(c)
        assert any("entries sum to" in p for p in problems) and any("sum to zero" in p for p in problems)
        c.rollback()


def test_stateful_points_model(module_db: str, conn: psycopg.Connection) -> None:
    class Points(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.user = new_user(conn)
            self.now = NOW
            self.orders: dict[str, dict[str, int | str]] = {}
            self.n = 0

        def ref(self) -> str:
            self.n += 1
            return f"m{self.user}-{self.n}"

        @rule(points=st.integers(1, 3000))
        def earn(self, points: int) -> None:
            ref = self.ref()
            earn(conn, self.user, ref, points, at=self.now)
            earn(conn, self.user, ref, points, at=self.now)  # replayed
            self.orders[ref] = {"earned": points, "redeemed": 0, "state": "paid"}

        @rule(units=st.integers(1, 3), pays=st.booleans())
        def redeem(self, units: int, pays: bool) -> None:
            points, ref = units * 1000, self.ref()
            try:
                with conn.transaction():
                    ledger.hold(
                        conn,
                        user_id=self.user,
                        ref=ref,
                        points=points,
                        fen_off=points,
                        now=self.now,
                        actor=ACTOR,
                    )
            except ledger.InsufficientPoints:
                assert points > ledger.redeemable(conn, self.user, now=self.now)
                return
            with conn.transaction():
                if pays:
                    ledger.post(conn, ref, actor=ACTOR)
                    ledger.earn(
                        conn, user_id=self.user, out_trade_no=ref, points=units * 7, earned_at=self.now,
                        expiry_months=12, actor=ACTOR,
                    )  # fmt: skip
                else:
                    ledger.void(conn, ref, actor=ACTOR)
            self.orders[ref] = {
                "earned": units * 7 if pays else 0,
                "redeemed": points if pays else 0,
                "state": "paid" if pays else "failed",
            }

        @precondition(lambda self: any(o["state"] == "paid" for o in self.orders.values()))
        @rule(data=st.data(), full=st.booleans())
        def refund(self, data: st.DataObject, full: bool) -> None:
            ref = data.draw(
                st.sampled_from(sorted(r for r, o in self.orders.items() if o["state"] == "paid"))
            )
            before = balance(conn, self.user)
            with conn.transaction():
                took, gave = ledger.reverse_for_refund(
                    conn, out_trade_no=ref, out_refund_no=f"{ref}-r", refunded_fen=100 if full else 50,
                    paid_fen=100, now=self.now, actor=ACTOR,
                )  # fmt: skip
            o = self.orders[ref]
            if full:
                assert (took, gave) == (o["earned"], o["redeemed"])
            assert balance(conn, self.user) == before - took + gave
            o["state"] = "refunded"

        @rule(days=st.integers(1, 400))
        def time_passes(self, days: int) -> None:
            self.now += timedelta(days=days)
            with conn.transaction():
                ledger.expire_due(conn, now=self.now, actor=ACTOR)
            assert ledger.redeemable(conn, self.user, now=self.now) <= max(0, balance(conn, self.user))
            row = conn.execute(
                "SELECT count(*) FROM points_lots WHERE user_id = %s AND remaining > 0 AND expires_at <= %s",
                (self.user, self.now),
            ).fetchone()
            assert row == (0,)

        @rule()
        def two_phones(self) -> None:
            live = min(ledger.redeemable(conn, self.user, now=self.now), balance(conn, self.user))
            refs = [self.ref(), self.ref()]
            out: list[bool] = []

            def phone(ref: str) -> None:
                with psycopg.connect(module_db) as c:
                    try:
                        with c.transaction():
                            ledger.hold(
                                c,
                                user_id=self.user,
                                ref=ref,
                                points=1000,
                                fen_off=1000,
                                now=self.now,
                                actor=ACTOR,
                            )
                        out.append(True)
                    except ledger.InsufficientPoints:
                        out.append(False)

            ts = [threading.Thread(target=phone, args=(r,)) for r in refs]
            for t in ts:
                t.start()
            for t in ts:
                t.join(timeout=30)
            assert sum(out) == min(2, max(0, live) // 1000)
            with conn.transaction():
                for r in refs:
                    ledger.void(conn, r, actor=ACTOR)

        @invariant()
        def ledger_agrees(self) -> None:
            assert ledger.verify(conn, account_ids=[ledger.user_account(conn, self.user)[0]]) == []

        def teardown(self) -> None:
            assert ledger.verify(conn) == []

    run_state_machine_as_test(
        Points,
        settings=settings(
            max_examples=15, stateful_step_count=12, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )


def test_the_expiry_job_expires_due_lots_once(module_db: str, conn: psycopg.Connection) -> None:
    from payments._points import expire_points

    u = new_user(conn)
    earn(conn, u, "job-old", 700, at=NOW - timedelta(days=800))
    earn(conn, u, "job-new", 300, at=NOW)
    first = expire_points(lambda: psycopg.connect(module_db), now=NOW, batch=1)
    again = expire_points(lambda: psycopg.connect(module_db), now=NOW, batch=1)
    assert first["expired"] >= 700 and again["expired"] == 0
    assert balance(conn, u) == 300
    assert ledger.verify(conn) == []
