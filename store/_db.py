"""Connection pool (failing fast when PostgreSQL is slow or hangs) and database creation.
Every query in the project is parameterised."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from geo._errors import FuelError
from store._replicas import Replica, ReplicaMonitor, ReplicaSet

EXTENSIONS = ("postgis",)
log = logging.getLogger("store.db")


def admin_url(url: str) -> str:
    """The same server, database `postgres`: for creating and dropping databases."""
    return make_conninfo(url, dbname="postgres")


def database_name(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "postgres")


def create_database(url: str, *, extensions: tuple[str, ...] = EXTENSIONS) -> bool:
    """Create the database named in `url` if missing and its extensions; True when it was created."""
    name = database_name(url)
    created = False
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            created = True
    with psycopg.connect(url, autocommit=True) as conn:
        for ext in extensions:
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
    return created


def drop_database(url: str) -> None:
    name = database_name(url)
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class _RequestScope:
    __slots__ = ("primary_used",)

    def __init__(self) -> None:
        self.primary_used = False


_request: ContextVar[_RequestScope | None] = ContextVar("fuel_db_request", default=None)


@contextmanager
def request_scope() -> Iterator[None]:
    """One request (or unit of work): once it used the primary (`connection()`, `transaction()`), its
    later `read()`s go to the primary too, so it reads what it wrote. Threads started from inside the
    scope with a copy of its context (FastAPI's thread pool) share it."""
    token = _request.set(_RequestScope())
    try:
        yield
    finally:
        _request.reset(token)


class DatabaseBusy(FuelError, ConnectionError):
    """This worker already runs as much database work as it may: retry shortly (503)."""


class _Watch:
    __slots__ = ("conn", "deadline", "doomed")

    def __init__(self, conn: psycopg.Connection, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline
        self.doomed = False


class Watchdog:
    """Ends database work that outlives its deadline, on the client side.

    The rule: every use of a pooled connection (one `Database.connection()` block, and the pool's
    check of a connection before handing it out) has a deadline. When it passes, the watchdog asks
    the server to cancel (`cancel_safe`, bounded by `cancel_timeout_s`); if the work is still waiting
    after that, it shuts the connection's socket, so the waiting call fails at once with
    `OperationalError` (503). This is what ends a query whose server stopped answering while the
    network still acknowledges: `statement_timeout` never fires there (the server does not run it)
    and TCP keepalives see a live peer. A connection given up on is closed, never reused.
    """

    def __init__(self, *, cancel_timeout_s: float = 0.5, tick_s: float = 0.05) -> None:
        self.cancel_timeout_s = cancel_timeout_s
        self.tick_s = tick_s
        self._lock = threading.Lock()
        self._watched: dict[int, _Watch] = {}
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def watch(self, conn: psycopg.Connection, deadline: float) -> int:
        """Watch `conn` until `unwatch`; `deadline` is on the `time.monotonic` clock."""
        with self._lock:
            token = next(self._ids)
            self._watched[token] = _Watch(conn, deadline)
        return token

    def unwatch(self, token: int) -> bool:
        """Stop watching; True when the deadline passed (the connection must then be closed)."""
        with self._lock:
            w = self._watched.pop(token, None)
        return w is not None and w.doomed

    @contextmanager
    def guard(self, conn: psycopg.Connection, seconds: float) -> Iterator[psycopg.Connection]:
        """Bound the work done with `conn` inside the block to `seconds`."""
        token = self.watch(conn, time.monotonic() + seconds)
        try:
            yield conn
        finally:
            if self.unwatch(token):
                conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            now = time.monotonic()
            with self._lock:
                late = [(t, w) for t, w in self._watched.items() if not w.doomed and w.deadline <= now]
                for _, w in late:
                    w.doomed = True
            for token, w in late:
                threading.Thread(
                    target=self._end, args=(token, w), name="db-watchdog-end", daemon=True
                ).start()

    def _end(self, token: int, w: _Watch) -> None:
        grace = self.cancel_timeout_s
        try:
            w.conn.cancel_safe(timeout=self.cancel_timeout_s)
        except Exception as exc:  # the server did not take the cancel: shut the socket at once
            log.info("cancelling a late query failed: %s", type(exc).__name__)
            grace = 0.0
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._lock:
                if token not in self._watched:
                    return  # the cancel ended it; its owner closes the connection
            time.sleep(0.02)
        with self._lock:
            if token not in self._watched:
                return
            # Under the lock: the owner cannot close the connection (and free its descriptor) meanwhile.
            try:
                fd = w.conn.pgconn.socket
                with socket.socket(fileno=os.dup(fd)) as s:
                    s.shutdown(socket.SHUT_RDWR)
                log.warning("database work outlived its deadline: connection shut")
            except (OSError, psycopg.Error) as exc:
                log.info("shutting a late connection failed: %s", exc)


def connection_kwargs(
    *,
    connect_timeout_s: float,
    statement_timeout_s: float | None,
    keepalives_idle_s: int,
    keepalives_interval_s: int,
    keepalives_count: int,
    tcp_user_timeout_s: float,
) -> dict[str, Any]:
    """libpq options of every service connection: give up on a dead peer, stop runaway statements."""
    kwargs: dict[str, Any] = {
        "connect_timeout": max(1, math.ceil(connect_timeout_s)),
        "keepalives": 1,
        "keepalives_idle": keepalives_idle_s,
        "keepalives_interval": keepalives_interval_s,
        "keepalives_count": keepalives_count,
        "tcp_user_timeout": int(tcp_user_timeout_s * 1000),
    }
    # Session settings ride on the connection (no per-request SET): JIT off, since the geodesic tests
    # are costed high and compiling would take longer than the short queries the service runs.
    options = ["-c jit=off"]
    if statement_timeout_s:
        options.append(f"-c statement_timeout={int(statement_timeout_s * 1000)}")
    kwargs["options"] = " ".join(options)
    return kwargs


class Database:
    """A psycopg 3 pool that fails fast.

    - a request never waits longer than `timeout_s` for a connection;
    - at most `max_concurrent` blocks of database work run (or wait for a connection) at once in this
      process; one more waits at most `queue_wait_s`, then gets `DatabaseBusy` (503), so a slow or
      hung database cannot take every thread of the worker;
    - each block must finish within `work_deadline_s`, the pool's check of a connection within
      `timeout_s` (see `Watchdog`); the server ends statements after `statement_timeout_s`.

    Reads that may be a little stale (nearby, map, station pages) use `read()`: a usable streaming
    standby of `read_urls` (see store/_replicas.py), else the primary. `connection()` and
    `transaction()` always use the primary. Standby pools share the primary pool's bounds: the same
    timeouts, watchdog and per-process concurrency bound.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = 3.0,
        statement_timeout_s: float | None = 5.0,
        work_deadline_s: float = 10.0,
        cancel_timeout_s: float = 0.5,
        max_concurrent: int = 24,
        queue_wait_s: float = 0.5,
        keepalives_idle_s: int = 10,
        keepalives_interval_s: int = 5,
        keepalives_count: int = 3,
        tcp_user_timeout_s: float = 15.0,
        read_urls: Sequence[str] = (),
        replica_max_lag_s: float = 10.0,
        replica_max_lag_bytes: int = 64 * 1024 * 1024,
        replica_check_interval_s: float = 1.0,
        replica_check_timeout_s: float = 1.0,
        application_name: str = "lijiang-fuel",
        check_idle_s: float = 1.0,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.work_deadline_s = work_deadline_s
        self.queue_wait_s = queue_wait_s
        self.max_concurrent = max_concurrent
        self.check_idle_s = check_idle_s
        self.watchdog = Watchdog(cancel_timeout_s=cancel_timeout_s)
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._local = threading.local()
        self.connect_kwargs = connection_kwargs(
            connect_timeout_s=timeout_s,
            statement_timeout_s=statement_timeout_s,
            keepalives_idle_s=keepalives_idle_s,
            keepalives_interval_s=keepalives_interval_s,
            keepalives_count=keepalives_count,
            tcp_user_timeout_s=tcp_user_timeout_s,
        )

        def pool(pool_url: str, name: str) -> ConnectionPool:
            return ConnectionPool(
                pool_url,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout_s,
                open=False,
                check=self._check,
                kwargs={**self.connect_kwargs, "row_factory": dict_row, "application_name": name},
                reconnect_timeout=5.0,
            )

        self.pool = pool(url, application_name)
        self.replicas = ReplicaSet([Replica(u, pool(u, f"{application_name}-read")) for u in read_urls])
        self.monitor = ReplicaMonitor(
            url,
            self.replicas,
            connect=lambda u: psycopg.connect(
                u,
                autocommit=True,
                row_factory=dict_row,
                **{
                    **self.connect_kwargs,
                    "connect_timeout": max(1, math.ceil(replica_check_timeout_s)),
                    "application_name": f"{application_name}-replica-check",
                },
            ),
            guard=self.watchdog.guard,
            max_lag_s=replica_max_lag_s,
            max_lag_bytes=replica_max_lag_bytes,
            check_interval_s=replica_check_interval_s,
            check_timeout_s=replica_check_timeout_s,
        )

    def open(self) -> None:
        self.watchdog.start()
        self.pool.open(wait=False)
        for replica in self.replicas.replicas:
            replica.pool.open(wait=False)
        self.monitor.start()

    def close(self) -> None:
        self.monitor.stop()
        for replica in self.replicas.replicas:
            replica.pool.close()
        self.pool.close()
        self.watchdog.stop()

    def _check(self, conn: psycopg.Connection) -> None:
        """The pool's check before handing out a connection, bounded like any other database work.

        A connection that came back from work less than `check_idle_s` ago answered then: it is handed
        out unchecked (under load the check was one round trip of every request's two); its work is
        bounded by the watchdog all the same, and a broken one fails that work with a 503."""
        returned = getattr(conn, "_fuel_returned_at", None)
        if returned is not None and time.monotonic() - returned < self.check_idle_s:
            return
        token = self.watchdog.watch(conn, time.monotonic() + self.timeout_s)
        try:
            ConnectionPool.check_connection(conn)
        finally:
            if self.watchdog.unwatch(token):
                conn.close()
                raise psycopg.OperationalError("the connection check outlived its deadline")

    @contextmanager
    def _slot(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth == 0 and not self._slots.acquire(timeout=self.queue_wait_s):
            raise DatabaseBusy(
                f"{self.max_concurrent} requests of this worker already use the database; retry shortly"
            )
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                self._slots.release()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection to the primary (reads and writes)."""
        scope = _request.get()
        if scope is not None:
            scope.primary_used = True
        with self._slot(), self.pool.connection(timeout=self.timeout_s) as conn:
            yield from self._work(conn)

    @contextmanager
    def read(self) -> Iterator[psycopg.Connection]:
        """A connection for reads that may lag the primary by up to the replica bound: a usable
        standby, else the primary (no usable standby, the request already used the primary, or the
        standby gave no connection within `timeout_s`).

        The block runs in autocommit: a read is then one round trip per statement, with no BEGIN and
        COMMIT around it, and each statement reads its own snapshot (the reads that come here accept
        a replica's lag already). Nothing may be written in it."""
        scope = _request.get()
        replica = None if scope is not None and scope.primary_used else self.replicas.pick()
        with self._slot(), contextlib.ExitStack() as stack:
            conn = None
            if replica is not None:
                try:
                    conn = stack.enter_context(replica.pool.connection(timeout=self.timeout_s))
                except (PoolTimeout, psycopg.OperationalError) as exc:
                    replica.mark(False, f"it gave no connection ({type(exc).__name__})")
            if conn is None:
                conn = stack.enter_context(self.pool.connection(timeout=self.timeout_s))
            conn.autocommit = True
            try:
                yield from self._work(conn)
            finally:
                if not conn.closed:  # transactions again for the connection's next user
                    with contextlib.suppress(psycopg.Error):
                        conn.autocommit = False

    def _work(self, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
        """The body of a block of database work on `conn`: bounded, rolled back on error."""
        with self.watchdog.guard(conn, self.work_deadline_s):
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
                raise
            # End the implicit transaction while still watched: the pool would otherwise commit
            # after the deadline no longer applies, and wait as long as a hung server does.
            conn.commit()
        # It worked just now: the pool's next check of it may be skipped (see _check). Stamped here,
        # not in a pool `reset` callback, which would send every return through the pool's thread.
        conn._fuel_returned_at = time.monotonic()  # type: ignore[attr-defined]

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self.connection() as conn, conn.transaction():
            yield conn
