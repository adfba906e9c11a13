"""The back office's store against a real PostgreSQL: staff accounts and lockout, shifts through their
handover states, sales reports by every dimension with a daily close (日结), on seeded controller sales."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.rows import dict_row

from backoffice import MAX_FAILURES, HandoverRefused
from geo._errors import Conflict, InvalidInput
from store._audit import audit_rows
from store._sales_report import close_day, get_close, sales_report
from store._shifts import add_correction, close_shift, enter_tenders, open_shift, sign_incoming, sign_outgoing
from store._staff import (
    AccountLocked,
    LoginFailed,
    create_staff,
    end_session,
    purge_expired_sessions,
    session_staff,
    start_session,
    verify_credentials,
)
from tests._forecourt import seed_station

TZ = ZoneInfo("Asia/Shanghai")
PW = "Lijiang-2026-pw"


def _sale(
    conn: psycopg.Connection,
    station: int,
    tx: str,
    *,
    pump: int,
    nozzle: int,
    grade: str,
    ml: int,
    price: int,
    t0: int,
    at: datetime,
    state: str = "cleared",
) -> None:
    conn.execute(
        "INSERT INTO fcc_sales (station_id, pump_no, nozzle_no, site_tx_id, grade, volume_ml, amount_fen,"
        " unit_price_fen, totaliser_start_ml, totaliser_end_ml, state, ended_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (station, pump, nozzle, tx, grade, ml, ml * price // 1000, price, t0, t0 + ml, state, at),
    )


@pytest.fixture
def conn(module_db: str):  # type: ignore[no-untyped-def]
    with psycopg.connect(module_db, autocommit=True, row_factory=dict_row) as c:  # as the pool's
        yield c


def test_accounts_lock_after_repeated_failures_and_sessions_end(conn: psycopg.Connection) -> None:
    station = seed_station(conn.info.dsn, pumps=1)
    row = create_staff(
        conn,
        station_id=station,
        username=f"lock-{station}",
        display_name="张三",
        role="attendant",
        password=PW,
        actor="key:ops",
    )
    with pytest.raises(Conflict):
        create_staff(
            conn,
            station_id=station,
            username=f"lock-{station}",
            display_name="x",
            role="attendant",
            password=PW,
            actor="key:ops",
        )
    with pytest.raises(InvalidInput, match="password"):
        create_staff(
            conn,
            station_id=station,
            username=f"weak-{station}",
            display_name="x",
            role="attendant",
            password="short",
            actor="key:ops",
        )
    stored = conn.execute("SELECT password_hash FROM staff WHERE id = %s", (row["id"],)).fetchone()
    assert stored is not None and stored["password_hash"].startswith("$argon2id$")  # type: ignore[call-overload]
    now = datetime.now(UTC)
    staff = verify_credentials(conn, f"lock-{station}", PW, now=now)
    token, expires = start_session(conn, staff, now=now, address="127.0.0.1")
    assert session_staff(conn, token, now=now) == staff
    assert session_staff(conn, token, now=expires + timedelta(seconds=1)) is None  # expired
    end_session(conn, token, staff, now=now)
    assert session_staff(conn, token, now=now) is None
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(LoginFailed):
            verify_credentials(conn, f"lock-{station}", "wrong-password", now=now)
    with pytest.raises(AccountLocked) as locked:
        verify_credentials(conn, f"lock-{station}", "wrong-password", now=now)
    assert 800 < locked.value.retry_after_s <= 900
    with pytest.raises(AccountLocked):  # even the right password, while locked
        verify_credentials(conn, f"lock-{station}", PW, now=now + timedelta(minutes=5))
    assert verify_credentials(conn, f"lock-{station}", PW, now=now + timedelta(minutes=16)) == staff
    changes = [a["new_value"] for a in audit_rows(conn, entity="staff", entity_id=staff.id)]
    assert any("locked_until" in (c or {}) for c in changes)
    with pytest.raises(LoginFailed):
        verify_credentials(conn, "nobody-here", PW, now=now)


def test_handover_states_reports_and_daily_close(conn: psycopg.Connection) -> None:
    station = seed_station(conn.info.dsn, pumps=2, grades=("92", "95"))
    a = create_staff(
        conn,
        station_id=station,
        username=f"a-{station}",
        display_name="王五",
        role="attendant",
        password=PW,
        actor="t",
    )
    b = create_staff(
        conn,
        station_id=station,
        username=f"b-{station}",
        display_name="赵六",
        role="attendant",
        password=PW,
        actor="t",
    )
    m = create_staff(
        conn,
        station_id=station,
        username=f"m-{station}",
        display_name="经理",
        role="manager",
        password=PW,
        actor="t",
    )
    now = datetime.now(UTC)
    sa, sb, sm = (verify_credentials(conn, x["username"], PW, now=now) for x in (a, b, m))
    day = (datetime.now(TZ) - timedelta(days=3)).date()
    t = datetime.combine(day, datetime.min.time(), TZ)
    _sale(
        conn,
        station,
        "before",
        pump=1,
        nozzle=1,
        grade="92",
        ml=5_000,
        price=780,
        t0=1_000_000,
        at=t + timedelta(hours=6),
    )
    shift = open_shift(conn, sa, at=t + timedelta(hours=8))
    with pytest.raises(Conflict):
        open_shift(conn, sb, at=t + timedelta(hours=8))
    _sale(
        conn,
        station,
        "s1",
        pump=1,
        nozzle=1,
        grade="92",
        ml=10_000,
        price=780,
        t0=1_005_000,
        at=t + timedelta(hours=9),
    )
    _sale(
        conn,
        station,
        "s2",
        pump=1,
        nozzle=1,
        grade="92",
        ml=20_000,
        price=815,
        t0=1_015_000,
        at=t + timedelta(hours=12),
    )  # after a price rise
    _sale(
        conn,
        station,
        "s3",
        pump=2,
        nozzle=2,
        grade="95",
        ml=30_000,
        price=850,
        t0=2_000_000,
        at=t + timedelta(hours=13),
        state="payable",
    )
    with pytest.raises(HandoverRefused):
        sign_outgoing(conn, shift["id"], sa, at=t)
    closed = close_shift(conn, shift["id"], sa, at=t + timedelta(hours=16))
    n = {(x["pump_no"], x["nozzle_no"]): x for x in closed["readings"]["nozzles"]}
    assert (n[(1, 1)]["opening_ml"], n[(1, 1)]["closing_ml"]) == (1_005_000, 1_035_000)
    assert n[(1, 1)]["amount_fen"] == 7_800 + 16_300 and n[(1, 1)]["prices"] == [780, 815]
    assert (n[(2, 2)]["opening_ml"], n[(2, 2)]["closing_ml"], n[(2, 2)]["sales"]) == (2_000_000, 2_030_000, 1)
    assert (n[(2, 1)]["opening_ml"], n[(2, 1)]["sales"]) == (0, 0)
    done = enter_tenders(
        conn, shift["id"], sa, cash_fen=24_100, card_fen=25_500, counted_cash_fen=24_000, tolerance_fen=200
    )
    assert (
        done["reconciliation"]["status"] == "balanced"
        and done["reconciliation"]["cash_difference_fen"] == -100
    )
    with pytest.raises(InvalidInput):
        enter_tenders(conn, shift["id"], sa, cash_fen=-1, card_fen=0, counted_cash_fen=0)
    sign_outgoing(conn, shift["id"], sa, at=t + timedelta(hours=16, minutes=5))
    signed, nxt = sign_incoming(conn, shift["id"], sb, at=t + timedelta(hours=16, minutes=6))
    assert signed["state"] == "signed" and nxt["attendant_id"] == sb.id
    with pytest.raises(HandoverRefused, match="correction"):
        enter_tenders(conn, shift["id"], sa, cash_fen=0, card_fen=0, counted_cash_fen=0)
    with pytest.raises(Conflict):
        add_correction(conn, shift["id"], sa, field="cash_fen", delta_fen=1, reason="mine")
    with pytest.raises(InvalidInput):  # would make the counted cash negative
        add_correction(conn, shift["id"], sm, field="counted_cash_fen", delta_fen=-(10**6), reason="typo")
    fixed = add_correction(
        conn, shift["id"], sm, field="card_fen", delta_fen=-25_500, reason="card slip void"
    )
    assert fixed["reconciliation"]["status"] == "short" and fixed["summary"]["status"] == "balanced"

    rep = {
        by: sales_report(conn, station, by=by, first=day, last=day, tz=TZ)  # type: ignore[arg-type]
        for by in ("day", "shift", "grade", "nozzle", "attendant", "payment")
    }
    assert rep["day"] == [
        {"key": day.isoformat(), "sales": 4, "volume_ml": 65_000, "amount_fen": 3_900 + 24_100 + 25_500}
    ]
    assert {r["key"]: r["amount_fen"] for r in rep["grade"]} == {"92": 3_900 + 24_100, "95": 25_500}
    assert {r["key"]: r["sales"] for r in rep["nozzle"]} == {"1-1": 3, "2-2": 1}
    assert {r["key"]: r["sales"] for r in rep["attendant"]} == {"-": 1, "王五": 3}
    assert {r["key"]: r["sales"] for r in rep["shift"]} == {"-": 1, str(shift["id"]): 3}
    assert {r["key"]: r["amount_fen"] for r in rep["payment"]} == {"station": 28_000, "unpaid": 25_500}
    with pytest.raises(InvalidInput, match="at most"):
        sales_report(conn, station, by="day", first=day - timedelta(days=200), last=day, tz=TZ)

    with pytest.raises(Conflict, match="not over"):
        close_day(conn, station, datetime.now(TZ).date(), tz=TZ, now=datetime.now(TZ), actor="staff:1")
    closed_day = close_day(conn, station, day, tz=TZ, now=datetime.now(TZ), actor=sm.actor)
    assert closed_day["amount_fen"] == 53_500 and closed_day["shifts"][0]["cash_difference_fen"] == -100
    with pytest.raises(Conflict, match="already closed"):
        close_day(conn, station, day, tz=TZ, now=datetime.now(TZ), actor=sm.actor)
    got = get_close(conn, station, day)
    assert got is not None and got["amount_fen"] == 53_500 and got["business_day"] == day.isoformat()
    assert get_close(conn, station, date(2020, 1, 1)) is None


def _count_sessions(conn: psycopg.Connection, staff_id: int) -> int:
    row = conn.execute("SELECT count(*) AS n FROM staff_sessions WHERE staff_id = %s", (staff_id,)).fetchone()
    assert row is not None
    return int(row["n"])  # type: ignore[call-overload]


def test_expired_sessions_are_deleted_at_login_and_by_the_hourly_job(conn: psycopg.Connection) -> None:
    from payments._queue import PURGE_STAFF_SESSIONS, app

    station = seed_station(conn.info.dsn, pumps=1)
    row = create_staff(
        conn,
        station_id=station,
        username=f"old-{station}",
        display_name="钱七",
        role="attendant",
        password=PW,
        actor="key:ops",
    )
    now = datetime.now(UTC)
    staff = verify_credentials(conn, row["username"], PW, now=now)
    long_ago = now - timedelta(days=3)
    old, _ = start_session(conn, staff, now=long_ago, address="127.0.0.1")  # expired two days ago
    assert _count_sessions(conn, staff.id) == 1
    fresh, _ = start_session(conn, staff, now=now, address="127.0.0.1")  # the next login clears it away
    assert _count_sessions(conn, staff.id) == 1
    assert session_staff(conn, fresh, now=now) == staff and session_staff(conn, old, now=now) is None
    purged = [
        a["new_value"]
        for a in audit_rows(conn, entity="staff_session", entity_id="expired")
        if a["new_value"]
    ]
    assert purged and purged[-1]["deleted"] >= 1

    start_session(conn, staff, now=long_ago, address="127.0.0.1")  # expired again, no login after it
    assert _count_sessions(conn, staff.id) == 2
    with conn.transaction():  # the service's own role may delete them (migration 0026)
        conn.execute("SET LOCAL ROLE fuel_app")
        assert purge_expired_sessions(conn, now=now) >= 1
    assert _count_sessions(conn, staff.id) == 1  # the live session stays
    assert purge_expired_sessions(conn, now=now) == 0
    assert session_staff(conn, fresh, now=now) == staff
    # the payments worker runs the purge every hour
    assert any(task == PURGE_STAFF_SESSIONS for task, _ in app.periodic_registry.periodic_tasks)


def test_a_sale_without_a_nozzle_is_its_own_handover_line(conn: psycopg.Connection) -> None:
    station = seed_station(conn.info.dsn, pumps=1, grades=("92",))
    a, b = (
        create_staff(
            conn,
            station_id=station,
            username=f"{p}-{station}",
            display_name=p,
            role="attendant",
            password=PW,
            actor="t",
        )
        for p in ("nn", "mm")
    )
    now = datetime.now(UTC)
    sa, sb = (verify_credentials(conn, x["username"], PW, now=now) for x in (a, b))
    t = datetime.now(TZ) - timedelta(days=2)
    shift = open_shift(conn, sa, at=t)
    _sale(
        conn,
        station,
        "n1",
        pump=1,
        nozzle=1,
        grade="92",
        ml=10_000,
        price=800,
        t0=500_000,
        at=t + timedelta(hours=1),
    )
    # the controller reported this one without its nozzle number; its litres moved nozzle 1's totaliser
    conn.execute(
        "INSERT INTO fcc_sales (station_id, pump_no, nozzle_no, site_tx_id, grade, volume_ml, amount_fen,"
        " unit_price_fen, state, ended_at) VALUES (%s, 1, NULL, 'n2', '92', 5000, 4000, 800, 'cleared', %s)",
        (station, t + timedelta(hours=2)),
    )
    _sale(
        conn,
        station,
        "n3",
        pump=1,
        nozzle=1,
        grade="92",
        ml=20_000,
        price=800,
        t0=515_000,
        at=t + timedelta(hours=3),
    )
    closed = close_shift(conn, shift["id"], sa, at=t + timedelta(hours=4))
    lines = {(x["pump_no"], x["nozzle_no"]): x for x in closed["readings"]["nozzles"]}
    loose = lines[(1, None)]
    assert (loose["grade"], loose["sales"], loose["sales_ml"], loose["amount_fen"]) == ("92", 1, 5_000, 4_000)
    assert (
        lines[(1, 1)]["sales_ml"] == 30_000
        and lines[(1, 1)]["closing_ml"] - lines[(1, 1)]["opening_ml"] == 35_000
    )
    done = enter_tenders(conn, shift["id"], sa, cash_fen=28_000, card_fen=0, counted_cash_fen=28_000)
    rec = done["reconciliation"]
    assert rec["sales_fen"] == 8_000 + 4_000 + 16_000  # the sale without a nozzle is expected too
    assert rec["status"] == "balanced" and rec["cash_difference_fen"] == 0
    assert rec["unreported_ml"] == 0  # its litres are on nozzle 1's meter: nothing is missing
    sign_outgoing(conn, shift["id"], sa, at=t + timedelta(hours=4, minutes=1))
    signed, _ = sign_incoming(conn, shift["id"], sb, at=t + timedelta(hours=4, minutes=2))
    assert signed["summary"]["sales_fen"] == 28_000
