"""The concurrency plumbing of a worker: rate-limit calls that do not block the event loop, reads in
one round trip per statement, no connection check for a connection that just worked, blocking
endpoints on threads sized to the database pool, and `make run` with one worker per core."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid

import anyio
import psycopg_pool
import pytest

from api._limits import Limiter
from config import PROJECT_ROOT
from store._db import Database
from tests._servers import free_port


def _prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_event_loop_and_thread_hits_share_one_window_across_workers() -> None:
    """`ahit` (the event loop's) and `hit` (a thread's) take from the same Redis window, whichever
    process asks; each event loop gets its own asyncio client."""
    prefix = _prefix()
    a = Limiter("redis://127.0.0.1:6379/0", prefix=prefix)
    b = Limiter("redis://127.0.0.1:6379/0", prefix=prefix)  # another worker

    async def two(limiter: Limiter) -> list[float | None]:
        return [await limiter.ahit("requests", "c", limit=5) for _ in range(2)]

    assert asyncio.run(two(a)) == [None, None]
    assert a.hit("requests", "c", limit=5) is None
    assert asyncio.run(two(b)) == [None, None]  # units four and five, taken by the other worker
    over = asyncio.run(two(a))
    assert all(w is not None and 1.0 <= w <= 60.0 for w in over), over
    assert a.hit("requests", "c", limit=5) is not None
    assert a.shared and b.shared


def test_event_loop_hits_limit_in_memory_while_redis_is_down() -> None:
    limiter = Limiter(f"redis://127.0.0.1:{free_port()}/0", prefix=_prefix(), retry_s=3_600)

    async def hits(n: int) -> list[bool]:
        return [await limiter.ahit("requests", "c", limit=3) is None for _ in range(n)]

    t0 = time.monotonic()
    assert asyncio.run(hits(4)) == [True, True, True, False]
    assert not limiter.shared
    assert time.monotonic() - t0 < 2.0  # one failed connection, then memory: no stall per request


def test_reads_are_autocommit_and_writes_get_their_transaction_back(db_url: str) -> None:
    db = Database(db_url, max_size=1, min_size=1)  # one connection: every block below gets the same
    db.open()
    try:
        with db.read() as conn:
            assert conn.autocommit
            conn.execute("SELECT 1")
            # no transaction was opened around the statement (one round trip, no BEGIN/COMMIT)
            assert conn.info.transaction_status.name == "IDLE"
        with db.connection() as conn:
            assert not conn.autocommit
            conn.execute("SELECT 1")
            assert conn.info.transaction_status.name == "INTRANS"
        with db.transaction() as conn:
            conn.execute("CREATE TEMP TABLE t_roundtrip (x int)")
            conn.execute("INSERT INTO t_roundtrip VALUES (1)")
    finally:
        db.close()


def test_a_connection_back_from_work_moments_ago_is_handed_out_unchecked(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[float] = []
    real = psycopg_pool.ConnectionPool.check_connection

    def counted(conn):  # type: ignore[no-untyped-def]
        checks.append(time.monotonic())
        real(conn)

    monkeypatch.setattr(psycopg_pool.ConnectionPool, "check_connection", staticmethod(counted))
    db = Database(db_url, max_size=1, min_size=1, check_idle_s=1.0)
    db.open()
    try:
        with db.read() as conn:  # a new connection never came back from work: checked
            conn.execute("SELECT 1")
        assert len(checks) == 1
        for _ in range(5):  # back moments ago: not checked again
            with db.read() as conn:
                conn.execute("SELECT 1")
        assert len(checks) == 1
        time.sleep(1.1)  # idle longer than check_idle_s: checked before use
        asked = time.monotonic()
        with db.connection() as conn:
            conn.execute("SELECT 1")
        # (a CI run once counted one more check while the test slept: only this one is asserted)
        assert checks[-1] >= asked
    finally:
        db.close()


def test_blocking_endpoints_run_on_threads_sized_to_the_pool(client) -> None:  # type: ignore[no-untyped-def]
    settings = client.app.state.fuel.settings
    assert settings.threads == settings.pool_max_size + 6
    tokens = client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
    assert tokens == settings.threads


def test_make_run_serves_one_worker_per_core() -> None:
    out = subprocess.run(
        ["make", "-s", "-f", "Makefile", "-f", "-", "print-workers"],
        input="print-workers:\n\t@echo $(WORKERS)\n",
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "WORKERS"},
    )
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    assert out.stdout.strip() == nproc


def test_what_the_worker_loads_at_start_is_out_of_the_collectors_reach(client) -> None:  # type: ignore[no-untyped-def]
    """The router and the app live as long as the worker: frozen after start-up, a full collection
    does not walk them (each one was a 50-100 ms stall of every request in flight)."""
    import gc

    assert client.app.state.fuel.router is not None
    assert gc.get_freeze_count() > 100_000
