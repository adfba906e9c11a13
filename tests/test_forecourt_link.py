"""The link server as a real process, spoken to line by line over TCP and WebSocket: handshake, wrong
keys, malformed lines, out-of-order progress, sale checks, NOTIFY, takeovers, heartbeats, the raw log
and the service role's rights on it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from websockets.sync.client import connect as ws_connect

from config import Settings
from tests._forecourt import LinkProcess, RawSite, seed_station, site_key

pytestmark = pytest.mark.slow  # real processes: a link server, simulated sites

TS = "2026-03-04T08:00:00Z"


@pytest.fixture(scope="module")
def link(module_db: str) -> Iterator[LinkProcess]:
    server = LinkProcess(module_db)
    yield server
    server.close()


@pytest.fixture
def station(module_db: str) -> int:
    return seed_station(module_db, pumps=2)


def _rows(url: str, sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def _events(url: str, station: int) -> list[str]:
    return [
        r[0]
        for r in _rows(url, "SELECT line FROM forecourt_events WHERE station_id = %s ORDER BY id", station)
    ]


def _wait_rows(url: str, sql: str, *args: object, n: int = 1, timeout: float = 5.0) -> list[tuple]:
    """The rows once there are at least `n` (n=0: once there are none), or as they are at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _rows(url, sql, *args)
        if (len(rows) >= n if n else not rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def connected(link: LinkProcess, url: str, station: int, **kw: str) -> RawSite:
    key, secret = site_key(url, station)
    site = RawSite(link.host, link.port)
    site.handshake(key, secret, **kw)
    return site


def test_the_server_announces_its_capability_and_wants_the_sites_first(
    link: LinkProcess, module_db: str, station: int
) -> None:
    site = RawSite(link.host, link.port)
    cap = site.read() or ""
    assert cap.startswith("* CAPABILITY ")
    assert {"BEAT", "CHARSET", "PLAINAUTH", "PRICE", "PUMP", "TRANSACTION", "PROGRESS", "SALE"} <= set(
        cap.split()[2:]
    )
    key, secret = site_key(module_db, station)
    site.send(f"C1 PLAINAUTH {key} {secret}")  # before CAPABILITY
    assert site.read() == "C1 ERR 403 the first message is CAPABILITY"
    assert (site.read() or "").startswith("* QUIT ")
    assert site.read() is None
    assert _rows(module_db, "SELECT 1 FROM forecourt_links WHERE station_id = %s", station) == []


def test_a_wrong_key_gets_err_401_and_three_end_the_connection(
    link: LinkProcess, module_db: str, station: int
) -> None:
    key, secret = site_key(module_db, station)
    site = RawSite(link.host, link.port)
    site.read()
    site.send("* CAPABILITY HEARTBEAT PUMPS")
    wrong = [
        "9eb56d5e-6563-430a-9d39-5ddf567e73d5 " + secret,
        f"{key} not-the-secret",
        f"{key} {secret[:-1]}",
    ]
    for i, cred in enumerate(wrong, start=1):
        site.send(f"C{i} PLAINAUTH {cred}")
        assert site.read() == f"C{i} ERR 401 SiteAccessKey and/or secret are not valid"
    assert (site.read() or "").startswith("* QUIT ")
    assert site.read() is None
    expected = [
        f"C{i} PLAINAUTH {c.split()[0]} ***" for i, c in enumerate(wrong, start=1)
    ]  # secrets never logged

    def logged_now() -> list[str]:
        sql = "SELECT line FROM forecourt_events WHERE line LIKE %s ORDER BY id"
        return [r[0] for r in _rows(module_db, sql, "C_ PLAINAUTH %")]

    deadline = time.monotonic() + 5  # the last line commits as the connection closes
    while logged_now()[-3:] != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = logged_now()
    assert logged[-3:] == expected
    assert not any(secret in line for line in logged)
    assert _rows(module_db, "SELECT 1 FROM forecourt_links WHERE station_id = %s", station) == []


def test_a_revoked_key_is_refused(link: LinkProcess, module_db: str, station: int) -> None:
    key, secret = site_key(module_db, station)
    with psycopg.connect(module_db) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE site_access_key = %s", (key,))
    site = RawSite(link.host, link.port)
    site.read()
    site.send("* CAPABILITY PUMPS")
    site.send(f"C1 PLAINAUTH {key} {secret}")
    assert site.read() == "C1 ERR 401 SiteAccessKey and/or secret are not valid"


def test_a_site_key_is_no_api_key(module_db: str, station: int) -> None:
    from store._auth import principal_for_key
    from tests._servers import TEST_SECRET_KEY

    _, secret = site_key(module_db, station)
    with psycopg.connect(module_db) as conn:
        assert principal_for_key(conn, secret, secret_key=TEST_SECRET_KEY) is None


def test_malformed_lines_get_an_err_line_and_change_nothing(
    link: LinkProcess, module_db: str, station: int
) -> None:
    site = connected(link, module_db, station)
    site.send("* PUMP 1 free")
    site.send("* FPSTATE 1 3")
    _wait_rows(module_db, "SELECT 1 FROM pump_status WHERE station_id = %s AND fp_state = 3", station)
    before = _rows(
        module_db, "SELECT status, fp_state, reported_at FROM pump_status WHERE station_id = %s", station
    )
    bad = [
        ("garbage", r"^garbage ERR 400 a method follows the tag"),
        ("&garbage", r"^\* ERR 400 invalid tag"),
        ("* PUMP 1 broken", r"^\* ERR 400 PUMP: status 'broken'"),
        ("* PUMP 0 in-use", r"^\* ERR 400 "),
        ("* PUMP 7 in-use", r"^\* ERR 404 pump 7 is not onboarded"),
        ("C9 PUMP 1 in-use", r"^C9 ERR 400 PUMP from a site is a notification"),
        ("C8 FROB 1", r"^C8 ERR 405 method FROB unknown"),
        ("C7 CHARSET UTF-8", r"^C7 ERR 403 CHARSET after authentication"),
        ("* PROGRESS 1 1 T1 92 1 1.000 7.65 LTR EUR", r"^\* ERR 422 currency EUR"),
        ("* PROGRESS 1 1 T1 95 1 1.000 7.65 LTR CNY", r"^\* ERR 400 pump 1 nozzle 1 delivers 92, not 95"),
        (
            "* PROGRESS 1 1 T1 92 1 1.0005 7.65 LTR CNY",
            r"^\* ERR 400 volume 1.0005 L is finer than a millilitre",
        ),
        (
            "* SALE 1 1 T1 payable - 0 92 LTR 0.000 CNY 0.00 7.65 1.000 1.000 2026-03-04T08:00:00Z",
            r"^\* ERR 400 a sale dispensed",
        ),
        (
            "* SALE 1 1 T1 payable - 0 92 LTR 1.000 CNY 7.65 99.99 1.000 2.000 2026-03-04T08:00:00Z",
            r"^\* ERR 400 unit price 9999",
        ),
        ("S77 OK", r"^S77 ERR 400 OK answers no open request"),
        ("* PUMP 1 fr\x00ee", r"^\* ERR 400 PUMP: status"),
        (b"* PRICE 92 LTR CNY 7.65 \xff\xfe", r"^\* ERR 406 "),
    ]
    for line, answer in bad:
        site.send(line)
        site.expect(answer)
    site.send(b"* PUMP 1 " + b"x" * 5000)
    site.expect(r"^\* ERR 400 line longer than 4096 bytes")
    assert (site.expect(r"^\* QUIT ")).startswith("* QUIT")
    assert (
        _rows(
            module_db, "SELECT status, fp_state, reported_at FROM pump_status WHERE station_id = %s", station
        )
        == before
    )
    assert _rows(module_db, "SELECT 1 FROM pump_progress WHERE station_id = %s", station) == []
    assert _rows(module_db, "SELECT 1 FROM fcc_sales WHERE station_id = %s", station) == []
    logged = _events(module_db, station)
    for line, _ in bad[:-1]:
        assert line.replace("\x00", "\\x00") in logged  # every raw line is logged before it is judged
    assert any(line.startswith("* PRICE 92 LTR CNY 7.65 \\xff") for line in logged)


def test_progress_out_of_order_is_refused_without_a_state_change(
    link: LinkProcess, module_db: str, station: int
) -> None:
    site = connected(link, module_db, station)
    site.send("* PROGRESS 2 2 T9 95 5 10.000 81.80 LTR CNY")
    site.send("* PROGRESS 2 2 T9 95 3 6.000 49.08 LTR CNY")
    site.expect(r"^\* ERR 400 out of order: seq 3 after 5$")
    site.send("* PROGRESS 2 2 T9 95 5 10.000 81.80 LTR CNY")
    site.expect(r"^\* ERR 400 out of order: seq 5 after 5$")
    site.send("* PROGRESS 2 2 T9 95 6 9.000 73.62 LTR CNY")
    site.expect(r"^\* ERR 400 volume or amount went backwards")
    site.send("* PROGRESS 2 2 T9 95 7 12.000 98.16 LTR CNY")
    site.send("* PROGRESS 2 2 T10 95 1 0.500 4.09 LTR CNY")  # a new fuelling starts its own sequence
    rows = _wait_rows(
        module_db,
        "SELECT site_tx_id, seq, volume_ml, amount_fen FROM pump_progress WHERE station_id = %s ORDER BY id",
        station,
        n=3,
    )
    assert rows == [("T9", 5, 10_000, 8_180), ("T9", 7, 12_000, 9_816), ("T10", 1, 500, 409)]


def test_sales_are_checked_against_totalisers_and_written_once(
    link: LinkProcess, module_db: str, station: int
) -> None:
    site = connected(
        link, module_db, station, capability="CLEAR HEARTBEAT PUMPS TRANSACTIONS QUIT SALE LOCKTX RECONCILE"
    )
    good = "* SALE 1 1 G1 payable - 0 92 LTR 40.000 CNY 306.00 7.65 1000.000 1040.000 2026-03-04T08:00:00Z"
    chengdu = "* SALE 1 2 B1 payable - 0 95 LTR 67.960 CNY 555.91 8.18 2000.000 2040.780 2026-03-04T08:05:00Z"
    rounding = "* SALE 2 3 R1 payable - 0 0 LTR 33.333 CNY 246.66 7.40 500.000 533.333 2026-03-04T08:06:00Z"
    for line in (good, chengdu, rounding):
        site.send(line)
    rows = _wait_rows(
        module_db,
        "SELECT site_tx_id, volume_ml, amount_fen, unit_price_fen, totaliser_start_ml, totaliser_end_ml, state, review_reason"
        " FROM fcc_sales WHERE station_id = %s ORDER BY id",
        station,
        n=3,
    )
    assert rows[0] == ("G1", 40_000, 30_600, 765, 1_000_000, 1_040_000, "payable", None)
    assert rows[1][0] == "B1" and "differs from the totaliser delta 40780 ml" in rows[1][7]
    assert rows[2][0] == "R1" and rows[2][7] is None  # 33.333 L x 7.40 = 246.6642: 246.66 within a fen
    # the same sale reported again with other figures: kept as first reported, sent to review
    site.send(good.replace("40.000 CNY 306.00", "67.180 CNY 513.93").replace("1040.000", "1067.180"))
    site.send(good.replace("payable", "locked"))
    rows = _wait_rows(
        module_db,
        "SELECT volume_ml, state, review_reason FROM fcc_sales WHERE site_tx_id = 'G1' AND state = 'locked'",
    )
    assert rows[0][0] == 40_000 and rows[0][2].startswith("site reported different figures")
    # a TRANSACTION from a site that sends SALE lines creates nothing
    site.send("* TRANSACTION 1 X1 open 92 CNY 7.65 6.77 13.0 0.88 LTR 1.000 7.65")
    site.send("* PUMP 1 free")
    _wait_rows(module_db, "SELECT 1 FROM pump_status WHERE station_id = %s AND status = 'free'", station)
    assert _rows(module_db, "SELECT 1 FROM fcc_sales WHERE site_tx_id = 'X1'") == []


def test_reconcile_starts_from_the_last_sale_stored_before_the_site_came_back(
    link: LinkProcess, module_db: str, station: int
) -> None:
    """A sale the site sends live between its handshake and our RECONCILE must not move RECONCILE's start
    past a sale it wrote while the link was down (ended before the live one, cleared offline: no
    TRANSACTIONS line brings it). RECONCILE starts from the last sale stored before the site came back."""
    cap = "CLEAR HEARTBEAT PUMPS TRANSACTIONS QUIT SALE LOCKTX RECONCILE"
    stored = "* SALE 1 1 A1 payable - 0 92 LTR 10.000 CNY 76.50 7.65 1000.000 1010.000 2026-05-01T08:00:00Z"
    live = "* SALE 2 1 C1 payable - 0 92 LTR 10.000 CNY 76.50 7.65 3000.000 3010.000 2026-05-01T08:10:00Z"
    first = connected(link, module_db, station, capability=cap)
    first.send(stored)
    assert _wait_rows(module_db, "SELECT 1 FROM fcc_sales WHERE station_id = %s", station)
    first.close()  # the link goes down; the site writes B1 (pump 1, 08:05) as cleared while offline
    site = connected(link, module_db, station, capability=cap)
    asked = site.read() or ""
    assert asked.split()[1:] == ["PUMPS"], asked  # our first request after the handshake: not answered yet
    site.send(live)  # pump 2 ends a sale live meanwhile
    assert _wait_rows(
        module_db, "SELECT 1 FROM fcc_sales WHERE station_id = %s AND site_tx_id = 'C1'", station
    )
    site.send(f"{asked.split()[0]} OK")
    line = site.expect(r"^\S+ RECONCILE")
    since = datetime.fromisoformat(line.split()[2].replace("Z", "+00:00"))
    assert since == datetime(2026, 5, 1, 8, 0, tzinfo=UTC), line  # not 08:10: B1 (08:05) is asked for
    site.close()


def test_a_core_only_site_s_transactions_are_stored_for_review(
    link: LinkProcess, module_db: str, station: int
) -> None:
    site = connected(link, module_db, station, capability="CLEAR HEARTBEAT PUMPS TRANSACTIONS QUIT")
    site.send("* TRANSACTION 2 c71b9838ad3dfc15 open 92 CNY 416.16 368.28 13.0 47.88 LTR 54.40 7.65")
    site.send("* TRANSACTION 2 nopriced open 92 CNY 416.16 368.28 13.0 47.88 LTR 54.40")
    site.expect(r"^\* ERR 400 TRANSACTION needs its PricePerUnit")
    rows = _wait_rows(
        module_db, "SELECT volume_ml, amount_fen, review_reason FROM fcc_sales WHERE station_id = %s", station
    )
    assert rows[0][:2] == (54_400, 41_616) and rows[0][2].startswith("no totaliser readings")


def test_changes_are_notified_with_their_row(link: LinkProcess, module_db: str, station: int) -> None:
    with psycopg.connect(module_db, autocommit=True) as listener:
        listener.execute("LISTEN forecourt")
        site = connected(link, module_db, station)
        site.send("* PUMP 2 in-use")
        site.send("* PROGRESS 2 1 N1 92 1 0.400 3.06 LTR CNY")
        site.send("* SALE 2 1 N1 payable - 0 92 LTR 0.400 CNY 3.06 7.65 10.000 10.400 2026-03-04T08:00:00Z")
        notes = []
        for note in listener.notifies(timeout=5):
            payload = json.loads(note.payload)
            if payload["station_id"] == station:
                notes.append(payload)
            if len(notes) == 4:
                break
    kinds = [n["kind"] for n in notes]
    assert kinds == ["link", "status", "progress", "sale"]
    assert notes[0]["online"] is True
    progress_id = _rows(module_db, "SELECT id FROM pump_progress WHERE station_id = %s", station)[0][0]
    sale_id = _rows(module_db, "SELECT id FROM fcc_sales WHERE station_id = %s", station)[0][0]
    assert (notes[2]["id"], notes[3]["id"], notes[3]["pump_no"]) == (progress_id, sale_id, 2)
    status_event = _rows(module_db, "SELECT line FROM forecourt_events WHERE id = %s", notes[1]["id"])
    assert status_event == [("* PUMP 2 in-use",)]


def test_a_newer_connection_replaces_the_older_one(link: LinkProcess, module_db: str, station: int) -> None:
    key, secret = site_key(module_db, station)
    first = RawSite(link.host, link.port)
    first.handshake(key, secret)
    second = RawSite(link.host, link.port)
    second.handshake(key, secret)
    assert first.expect(r"^\* QUIT ") == "* QUIT replaced by a newer connection"
    assert first.read() is None
    second.send("* PUMP 1 in-use")
    _wait_rows(module_db, "SELECT 1 FROM pump_status WHERE station_id = %s AND status = 'in-use'", station)
    (held,) = _rows(module_db, "SELECT count(*) FROM forecourt_links WHERE station_id = %s", station)
    assert held == (1,)


def test_a_second_link_server_takes_over_a_station(link: LinkProcess, module_db: str, station: int) -> None:
    other = LinkProcess(module_db)
    try:
        key, secret = site_key(module_db, station)
        first = RawSite(link.host, link.port)
        first.handshake(key, secret)
        second = RawSite(other.host, other.port)
        second.handshake(key, secret)
        assert first.expect(r"^\* QUIT ", timeout=5) == "* QUIT replaced by a newer connection"
        rows = _rows(module_db, "SELECT link_id FROM forecourt_links WHERE station_id = %s", station)
        assert len(rows) == 1
    finally:
        other.close()


def test_unanswered_heartbeats_drop_the_link(module_db: str, station: int) -> None:
    fast = LinkProcess(module_db, heartbeat_s=0.3, FUEL_LINK_HEARTBEAT_TIMEOUT_S="0.3")
    try:
        key, secret = site_key(module_db, station)
        site = RawSite(fast.host, fast.port)
        site.handshake(key, secret, capability="QUIT")
        seen = []
        while (line := site.read(timeout=5)) is not None:
            seen.append(line)
        assert seen[-1] == "* QUIT heartbeat not answered"
        assert sum(" HEARTBEAT " in line for line in seen) == 2
        assert (
            _wait_rows(module_db, "SELECT 1 FROM forecourt_links WHERE station_id = %s", station, n=0) == []
        )
    finally:
        fast.close()


def test_websocket_text_frames_carry_one_line_each(link: LinkProcess, module_db: str, station: int) -> None:
    key, secret = site_key(module_db, station)
    with ws_connect(link.ws_url) as ws:
        assert str(ws.recv(timeout=5)).startswith("* CAPABILITY ")
        ws.send("* CAPABILITY HEARTBEAT PUMPS QUIT")
        ws.send("C1 CHARSET ISO-8859-1")
        assert ws.recv(timeout=5) == "C1 ERR 404 WebSocket text frames are UTF-8"
        ws.send(f"C2 PLAINAUTH {key} {secret}\r\n")
        assert ws.recv(timeout=5) == "C2 OK"
        assert ws.recv(timeout=5) == "S1 PUMPS"
        ws.send("* PUMP 1 ready-to-pay")
        ws.send("S1 OK")
        ws.send(b"* PUMP 2 free")  # a binary frame is not a line
        assert str(ws.recv(timeout=5)).startswith("* ERR 400")
        rows = _wait_rows(
            module_db, "SELECT status FROM pump_status WHERE station_id = %s AND pump_no = 1", station
        )
        assert rows == [("ready-to-pay",)]
        assert _rows(module_db, "SELECT transport FROM forecourt_links WHERE station_id = %s", station) == [
            ("ws",)
        ]
    import websockets.exceptions

    with (
        pytest.raises(websockets.exceptions.InvalidStatus),
        ws_connect(f"ws://{link.host}:{link.ws_port}/other"),
    ):
        pass


def test_the_service_role_only_appends_to_the_raw_log(
    link: LinkProcess, module_db: str, station: int
) -> None:
    connected(link, module_db, station).close()
    url = Settings(database_url=module_db).service_url
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in (
            "SELECT line FROM forecourt_events LIMIT 1",
            "UPDATE forecourt_events SET line = 'x'",
            "DELETE FROM forecourt_events",
            "DELETE FROM fcc_sales",
            "UPDATE pump_progress SET seq = 0",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
        (new_id,) = conn.execute(
            "INSERT INTO forecourt_events (connection_id, link_id, line) VALUES (gen_random_uuid(), 't', 'x') RETURNING id"
        ).fetchone()  # type: ignore[misc]
        assert new_id > 0
