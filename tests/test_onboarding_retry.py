"""A load (ingest._onboarding.run_load: one REPEATABLE READ transaction per file) that PostgreSQL ends as a
deadlock's victim is run again whole, as one that met a serialization failure is: the writer it
deadlocked with commits, and the load's second run writes everything once."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from ingest._onboarding import Summary, run_load


@pytest.fixture()
def probe(module_db: str) -> str:
    with psycopg.connect(module_db, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS load_probe")
        conn.execute("CREATE TABLE load_probe (id int PRIMARY KEY, writer text)")
        conn.execute("INSERT INTO load_probe VALUES (1, NULL), (2, NULL)")
    return module_db


def test_a_load_that_loses_a_deadlock_runs_again(probe: str) -> None:
    load_holds_1 = threading.Event()
    other_holds_2 = threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:  # an API write: row 2, then row 1
        try:
            with psycopg.connect(probe) as conn:
                conn.execute("UPDATE load_probe SET writer = 'api' WHERE id = 2")
                other_holds_2.set()
                load_holds_1.wait(10)
                # the load waits on row 2 first, so its deadlock check comes first and ends it
                with psycopg.connect(probe, autocommit=True) as watch:
                    deadline = time.monotonic() + 10
                    while (
                        time.monotonic() < deadline
                        and not watch.execute(
                            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock'"
                        ).fetchone()
                    ):
                        time.sleep(0.02)
                time.sleep(0.2)
                conn.execute("UPDATE load_probe SET writer = 'api' WHERE id = 1")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    runs = []

    def body(conn: psycopg.Connection) -> Summary:  # the load: row 1, then row 2
        runs.append(len(runs) + 1)
        with conn.transaction():
            conn.execute("UPDATE load_probe SET writer = 'load' WHERE id = 1")
            if len(runs) == 1:
                load_holds_1.set()
                assert other_holds_2.wait(10)
            conn.execute("UPDATE load_probe SET writer = 'load' WHERE id = 2")
        return Summary("prices")

    with psycopg.connect(probe, autocommit=True) as conn:
        conn.execute("ALTER DATABASE " + conn.info.dbname + " SET deadlock_timeout = '1s'")
    thread = threading.Thread(target=other_writer)
    thread.start()
    run_load(probe, "Asia/Shanghai", body)
    thread.join(10)
    assert not errors, errors
    # the first run was the deadlock's victim; the next wrote (or, when it started before the other writer
    # committed, met that commit as a serialization failure and the one after wrote)
    assert runs in ([1, 2], [1, 2, 3])
    with psycopg.connect(probe) as conn:
        rows = conn.execute("SELECT id, writer FROM load_probe ORDER BY id").fetchall()
    assert rows == [(1, "load"), (2, "load")]  # the other writer committed first, the load after it
