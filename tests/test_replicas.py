"""Read replicas against a real hot standby: a private primary (initdb), `pg_basebackup -R` into a
temporary folder, a second postgres streaming from it, and a real uvicorn server on both."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from config import Settings
from store import Database, admin_url, request_scope
from tests._servers import TEST_ADMIN_KEY, Server, free_port
from tests.test_faults import PG_BIN, PrivatePostgres

pytestmark = pytest.mark.slow

NEARBY = {"lat": 42.5063, "lon": 1.5218, "radius_m": 20000}
ADMIN = {"X-API-Key": TEST_ADMIN_KEY}
READ_POOL = "lijiang-fuel-read"  # application_name of the API's standby connections


class Standby:
    """A hot standby of `primary`, streaming from it (the base backup asks for an immediate checkpoint:
    the default spread one waits most of checkpoint_timeout)."""

    def __init__(self, primary: PrivatePostgres) -> None:
        self.primary = primary
        self.port = free_port()
        self.data = primary.dir / "standby"
        primary._pg(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "root",
            "-D", str(self.data), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast",
        )  # fmt: skip
        self.url = f"postgresql://root@127.0.0.1:{self.port}/fuel"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.primary.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.primary.dir / "standby.log")
        self.primary._pg("pg_ctl", "-D", str(self.data), "-o", opts, "-l", log, "-w", "start")

    def stop(self) -> None:
        self.primary._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def pids(self) -> list[int]:
        """The postmaster first, then its children."""
        master = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == master:
                    children.append(int(stat.parent.name))
        return [master, *children]

    def signal(self, sig: signal.Signals) -> None:
        pids = self.pids()
        for pid in pids if sig == signal.SIGSTOP else reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as conn:
            return list(conn.execute(sql, params).fetchall())


def wait_caught_up(primary_url: str, standby: Standby, timeout_s: float = 20.0) -> None:
    with psycopg.connect(primary_url, autocommit=True) as conn:
        conn.execute("SELECT pg_current_xact_id()")  # a fresh commit for the standby to replay
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.OperationalError):
            behind = standby.query("SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())", (lsn,))
            if behind[0][0] is not None and float(behind[0][0]) <= 0:  # type: ignore[arg-type]
                return
        time.sleep(0.1)
    raise AssertionError("the standby did not catch up")


@pytest.fixture(scope="module")
def pair(demo_db: str) -> Iterator[tuple[PrivatePostgres, Standby]]:
    """A private primary holding a copy of the session's demo database, and its standby."""
    if not (PG_BIN / "pg_basebackup").exists():
        pytest.skip("PostgreSQL server binaries missing")
    primary = PrivatePostgres()
    standby = None
    try:
        primary.start()
        with psycopg.connect(admin_url(primary.url), autocommit=True) as conn:
            conn.execute("CREATE ROLE fuel_app LOGIN NOINHERIT")  # the service role (migration 0008)
            conn.execute("CREATE DATABASE fuel")
        dump = subprocess.run(
            [str(PG_BIN / "pg_dump"), "--no-owner", "-d", demo_db], check=True, capture_output=True
        )
        subprocess.run(
            [str(PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", primary.url],
            input=dump.stdout,
            check=True,
            capture_output=True,
        )
        standby = Standby(primary)
        standby.start()
        wait_caught_up(primary.url, standby)
        yield primary, standby
    finally:
        if standby is not None:
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                standby.signal(signal.SIGCONT)
                standby.stop()
        primary.remove()


@pytest.fixture(scope="module")
def server(pair: tuple[PrivatePostgres, Standby]) -> Iterator[Server]:
    primary, standby = pair
    srv = Server(
        primary.url,
        FUEL_DATABASE_READ_URL=standby.url,
        FUEL_STATION_CACHE_MAX_STATIONS="0",  # nearby reads SQL here: this module is about where SQL reads go
        FUEL_REPLICA_CHECK_INTERVAL_S="0.2",
        FUEL_REPLICA_CHECK_TIMEOUT_S="0.5",
        FUEL_REPLICA_MAX_LAG_S="30",
        FUEL_DB_WORK_DEADLINE_S="2",
    )
    try:
        yield srv
    finally:
        srv.close()


def server_log(srv: Server) -> str:
    srv.log.seek(0)
    return srv.log.read().decode(errors="replace")


def read_pool_queries(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s AND usename = 'fuel_app'",
            (READ_POOL,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_settings_take_a_list_or_commas_and_use_the_service_role() -> None:
    one = Settings(database_read_url="postgresql://owner:pw@r1:5432/fuel, postgresql://r2/fuel")  # type: ignore[call-arg]
    two = Settings(database_read_url='["postgresql://r1/fuel", "postgresql://r2/fuel"]')  # type: ignore[call-arg]
    assert len(one.database_read_url) == 2 and len(two.database_read_url) == 2
    urls = [psycopg.conninfo.conninfo_to_dict(u) for u in one.service_read_urls]
    assert [(u["host"], u["user"], u.get("password")) for u in urls] == [
        ("r1", "fuel_app", None),
        ("r2", "fuel_app", None),
    ]
    assert Settings().database_read_url == []


def test_reads_come_from_the_standby(server: Server, pair: tuple[PrivatePostgres, Standby]) -> None:
    primary, standby = pair
    for path, params in (
        ("/v1/stations/nearby", NEARBY),
        ("/v1/stations", {"bbox": "1.40,42.42,1.80,42.66"}),
        ("/v1/stations/1", {}),
    ):
        r = httpx.get(server.base + path, params=params, timeout=10)
        assert r.status_code == 200, r.text
    # the read pool's connections are on the standby, as the service role, and none on the primary
    # (test_a_manager_reads_back_its_write shows the data itself coming from the standby)
    assert read_pool_queries(standby.url), "no read connection on the standby"
    assert read_pool_queries(primary.url) == []


def test_a_manager_reads_back_its_write(server: Server, pair: tuple[PrivatePostgres, Standby]) -> None:
    primary, standby = pair
    wait_caught_up(primary.url, standby)
    standby.query("SELECT pg_wal_replay_pause()")  # the standby keeps the old address meanwhile
    try:
        r = httpx.get(server.base + "/v1/manage/stations/2", headers=ADMIN, timeout=10)
        assert r.status_code == 200, r.text
        address = f"Avinguda Meritxell {time.time_ns() % 100_000}"
        w = httpx.patch(
            server.base + "/v1/stations/2",
            json={"address": address},
            headers={**ADMIN, "If-Match": r.headers["ETag"]},
            timeout=10,
        )
        assert w.status_code == 200, w.text
        back = httpx.get(server.base + "/v1/manage/stations/2", headers=ADMIN, timeout=10)
        assert back.status_code == 200 and back.json()["address"] == address, back.text
        public = httpx.get(server.base + "/v1/stations/2", timeout=10).json()
        assert public["station"]["address"] != address  # served by the paused standby
    finally:
        standby.query("SELECT pg_wal_replay_resume()")
    wait_caught_up(primary.url, standby)
    public = httpx.get(server.base + "/v1/stations/2", timeout=10).json()
    assert public["station"]["address"] == address


def test_a_request_that_used_the_primary_reads_from_it(pair: tuple[PrivatePostgres, Standby]) -> None:
    primary, standby = pair
    db = Database(primary.url, read_urls=[standby.url], replica_check_interval_s=0.1)
    db.open()
    try:
        wait_until(lambda: db.replicas.replicas[0].usable, 5)

        def in_recovery() -> bool:
            with db.read() as conn:
                return bool(conn.execute("SELECT pg_is_in_recovery() AS r").fetchone()["r"])  # type: ignore[index]

        with request_scope():
            assert in_recovery()
            with db.transaction() as conn:
                conn.execute("SELECT 1")
            assert not in_recovery()  # pinned to the primary for the rest of the request
        with request_scope():
            assert in_recovery()
    finally:
        db.close()


def test_a_lagging_standby_is_skipped_until_it_catches_up(pair: tuple[PrivatePostgres, Standby]) -> None:
    primary, standby = pair
    db = Database(primary.url, read_urls=[standby.url], replica_max_lag_s=0.5, replica_check_interval_s=0.1)
    db.open()
    replica = db.replicas.replicas[0]
    try:
        wait_caught_up(primary.url, standby)
        wait_until(lambda: replica.usable, 5)
        standby.query("SELECT pg_wal_replay_pause()")
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute("SELECT pg_current_xact_id()")  # a commit the standby does not replay
        assert wait_until(lambda: not replica.usable, 5), replica.reason
        assert "behind the primary" in replica.reason
        with db.read() as conn:
            assert conn.execute("SELECT pg_is_in_recovery() AS r").fetchone()["r"] is False  # type: ignore[index]
        standby.query("SELECT pg_wal_replay_resume()")
        assert wait_until(lambda: replica.usable, 5)
    finally:
        with contextlib.suppress(psycopg.Error):
            standby.query("SELECT pg_wal_replay_resume()")
        db.close()


def test_a_stopped_standby_is_skipped_then_used_again(
    server: Server, pair: tuple[PrivatePostgres, Standby]
) -> None:
    _, standby = pair
    assert httpx.get(server.base + "/v1/stations/nearby", params=NEARBY, timeout=10).status_code == 200
    standby.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with httpx.Client(base_url=server.base, timeout=10) as c:
            # requests running when the standby stopped may fail; the switch must come within the bound
            while "skipped" not in server_log(server) and time.monotonic() - t0 < 10:
                c.get("/v1/stations/nearby", params=NEARBY)
            switched = time.monotonic() - t0
            assert switched < 4.0, f"skipped after {switched:.1f} s\n{server_log(server)}"
            answers = [c.get("/v1/stations/nearby", params=NEARBY) for _ in range(30)]
        codes = [a.status_code for a in answers]
        failed = [a.text for a in answers if a.status_code != 200]
        assert codes == [200] * 30, f"{failed}\n{server_log(server)}"
    finally:
        standby.signal(signal.SIGCONT)
    resumed_at = standby.query("SELECT now()")[0][0]
    assert wait_until(lambda: "is used again" in server_log(server), 10), server_log(server)
    for _ in range(5):
        assert httpx.get(server.base + "/v1/stations/nearby", params=NEARBY, timeout=10).status_code == 200
    used = standby.query(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state_change > %s",
        (READ_POOL, resumed_at),
    )
    assert int(used[0][0]) >= 1  # type: ignore[call-overload]
    text = server_log(server)
    assert text.count("skipped") == 1 and text.count("is used again") == 1, text


def wait_until(condition: object, timeout_s: float) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
