"""Read replicas: which PostgreSQL streaming standbys may serve reads right now.

A background thread per process (`ReplicaMonitor`) asks the primary for its WAL position and each
standby how far it has replayed, every `check_interval_s`; a standby that does not answer within
`check_timeout_s`, is not in recovery, or is behind by more than `max_lag_s` seconds
(`clock_timestamp() - pg_last_xact_replay_timestamp()` while its replay position is short of the
primary's) or `max_lag_bytes` (`pg_wal_lsn_diff`) is skipped. Each change of a standby's state is
logged once. Requests never run these checks: they only read `Replica.usable`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

log = logging.getLogger("store.replicas")

# The standby's state: answered in recovery, its replay position behind the primary's WAL position
# (bytes; NULL when the primary could not be asked), and the age of its last replayed transaction.
_STANDBY_STATE = """
SELECT pg_is_in_recovery() AS standby,
       pg_wal_lsn_diff(%(primary)s::pg_lsn, pg_last_wal_replay_lsn()) AS behind_bytes,
       EXTRACT(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) AS replay_age_s
"""


def describe(url: str) -> str:
    """host:port/dbname of a connection URL, for log lines (never its password)."""
    p = conninfo_to_dict(url)
    return f"{p.get('host') or 'localhost'}:{p.get('port') or 5432}/{p.get('dbname') or ''}"


@dataclass(frozen=True)
class Lag:
    behind_bytes: float | None
    replay_age_s: float | None


def judge(row: dict[str, Any], *, max_lag_s: float, max_lag_bytes: int) -> tuple[bool, str, Lag]:
    """(usable, why not, lag) of a standby's answer to _STANDBY_STATE."""
    behind = None if row["behind_bytes"] is None else float(row["behind_bytes"])
    age = None if row["replay_age_s"] is None else float(row["replay_age_s"])
    lag = Lag(behind, age)
    if not row["standby"]:
        return False, "it is not a standby (promoted, or the primary itself)", lag
    if behind is None:
        return True, "", lag  # the primary is not answering: a standby that answers still serves reads
    if behind <= 0:
        return True, "", Lag(0.0, age)
    if behind > max_lag_bytes:
        return False, f"it is {behind:.0f} bytes of WAL behind the primary (bound {max_lag_bytes})", lag
    if age is None:
        return False, "it is behind the primary and has replayed no transaction yet", lag
    if age > max_lag_s:
        return False, f"it is {age:.1f} s behind the primary (bound {max_lag_s:g} s)", lag
    return True, "", lag


class Replica:
    """One standby: its pool and whether reads may use it."""

    def __init__(self, url: str, pool: ConnectionPool) -> None:
        self.url = url
        self.name = describe(url)
        self.pool = pool
        self.usable = False  # until the first check says otherwise
        self.reason = "not checked yet"
        self._lock = threading.Lock()

    def mark(self, usable: bool, reason: str = "") -> None:
        """Set the state; one log line when it changes."""
        with self._lock:
            first = self.reason == "not checked yet"
            changed = usable != self.usable
            self.usable, self.reason = usable, reason
        if changed and usable and first:
            log.info("read replica %s in use", self.name)
        elif changed and usable:
            log.warning("read replica %s is used again", self.name)
        elif changed or (first and not usable):
            log.warning("read replica %s skipped: %s", self.name, reason)


class ReplicaSet:
    """The standbys of one primary, handed out round robin among the usable ones."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = replicas
        self._turn = itertools.count()

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def pick(self) -> Replica | None:
        usable = [r for r in self.replicas if r.usable]
        if not usable:
            return None
        return usable[next(self._turn) % len(usable)]


# A connection for checks: (url) -> a new autocommit connection. `guard(conn, seconds)` bounds each query.
Connect = Callable[[str], psycopg.Connection]
Guard = Callable[[psycopg.Connection, float], contextlib.AbstractContextManager[psycopg.Connection]]


class ReplicaMonitor:
    """The background check of every standby (see the module doc)."""

    def __init__(
        self,
        primary_url: str,
        replicas: ReplicaSet,
        *,
        connect: Connect,
        guard: Guard,
        max_lag_s: float,
        max_lag_bytes: int,
        check_interval_s: float,
        check_timeout_s: float,
    ) -> None:
        self.primary_url = primary_url
        self.replicas = replicas
        self.connect = connect
        self.guard = guard
        self.max_lag_s = max_lag_s
        self.max_lag_bytes = max_lag_bytes
        self.check_interval_s = check_interval_s
        self.check_timeout_s = check_timeout_s
        self._conns: dict[str, psycopg.Connection] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.replicas:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="db-replica-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.check_timeout_s * (len(self.replicas.replicas) + 2) + 2)
            self._thread = None
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._conns.clear()

    def _run(self) -> None:
        while True:
            try:
                self.check_once()
            except Exception:  # the monitor must outlive any surprise; the next round tries again
                log.exception("checking the read replicas failed")
            if self._stop.wait(self.check_interval_s):
                return

    def check_once(self) -> None:
        """One round: the primary's WAL position, then every standby."""
        primary = self._query(self.primary_url, "SELECT pg_current_wal_lsn()::text AS lsn", {})
        lsn = primary["lsn"] if primary is not None else None
        for replica in self.replicas.replicas:
            try:
                row = self._query(replica.url, _STANDBY_STATE, {"primary": lsn}, raise_errors=True)
            except (psycopg.Error, OSError) as exc:
                replica.mark(False, f"it does not answer ({type(exc).__name__})")
                continue
            assert row is not None
            usable, reason, _ = judge(row, max_lag_s=self.max_lag_s, max_lag_bytes=self.max_lag_bytes)
            replica.mark(usable, reason)

    def _query(
        self, url: str, query: str, params: dict[str, Any], *, raise_errors: bool = False
    ) -> dict[str, Any] | None:
        """One row from `url` over a kept connection, bounded by check_timeout_s; None on failure."""
        try:
            conn = self._conns.get(url)
            if conn is None or conn.closed:
                conn = self._conns[url] = self.connect(url)
            with self.guard(conn, self.check_timeout_s):
                cur = conn.execute(query, params)
                row = cur.fetchone()
            if conn.closed:  # the guard gave up on it
                raise psycopg.OperationalError("the check outlived its deadline")
            return dict(row) if row is not None else None
        except (psycopg.Error, OSError):
            stale = self._conns.pop(url, None)
            if stale is not None:
                with contextlib.suppress(Exception):
                    stale.close()
            if raise_errors:
                raise
            return None
