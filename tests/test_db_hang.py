"""A hung database (it accepts bytes but never answers) fails fast, and what needs no database keeps going.

A TCP proxy between the service and PostgreSQL can be told to stop relaying: the connections stay open
and the kernel keeps acknowledging, as when the server process or its disk is stuck, so neither
`statement_timeout` (the server never runs the timer) nor TCP keepalives end a waiting query.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import psycopg_pool
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from store._db import Database, DatabaseBusy
from tests._servers import Server

NEARBY = {"lat": 42.5063, "lon": 1.5218, "radius_m": 20000}
ROUTE = {"from": "42.5063,1.5218", "to": "42.5347,1.5800"}
BOUND_S = 5.0  # generous: DB-bound requests must give up well within this while the database hangs


class HangingProxy:
    """Relays TCP to PostgreSQL until `hang()`; then holds every byte (in both directions) until `resume()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._relaying = threading.Event()
        self._relaying.set()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._spawn(self._accept)

    def _spawn(self, fn: object, *args: object) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.settimeout(0.2)
                self._socks.append(s)
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._closed.is_set():
            if not self._relaying.wait(0.2):
                continue  # hung: read nothing, so the peer's bytes wait in the kernel buffers
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            while data and not self._relaying.is_set() and not self._closed.is_set():
                time.sleep(0.05)  # read just before the hang: hold it too
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def hang(self) -> None:
        self._relaying.clear()

    def resume(self) -> None:
        self._relaying.set()

    def close(self) -> None:
        self._closed.set()
        self._relaying.set()
        self._listener.close()
        for s in self._socks:
            s.close()

    def url(self, db_url: str) -> str:
        return make_conninfo(db_url, host="127.0.0.1", port=str(self.port))


@pytest.fixture
def proxy(db_url: str) -> Iterator[HangingProxy]:
    info = conninfo_to_dict(db_url)
    p = HangingProxy((str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)))
    try:
        yield p
    finally:
        p.close()


def _timed(fn: Callable[[], object], proxy: HangingProxy) -> tuple[object, float]:
    """(result or exception, seconds) of `fn` run in a thread; one still waiting after 3 x BOUND_S is
    released by resuming the proxy and reported as "still waiting"."""
    ex = ThreadPoolExecutor(1)
    t0 = time.monotonic()
    fut = ex.submit(fn)
    out: object
    try:
        out = fut.result(timeout=3 * BOUND_S)
    except TimeoutError:
        proxy.resume()
        out = "still waiting"
    except Exception as exc:  # the outcome is what the test inspects
        out = exc
    took = time.monotonic() - t0
    ex.shutdown(wait=True)
    return out, took


def test_work_the_database_never_answers_is_ended_by_the_watchdog(proxy: HangingProxy, db_url: str) -> None:
    db = Database(proxy.url(db_url), max_size=2, timeout_s=1.0, statement_timeout_s=1.0, work_deadline_s=1.5)

    def one() -> object:
        with db.connection() as c:
            return c.execute("SELECT 1 AS one").fetchone()

    def hung_query() -> object:
        with db.connection() as c:
            c.execute("SELECT 1")
            proxy.hang()
            return c.execute("SELECT 2").fetchone()

    def hung_commit() -> None:
        with db.connection() as c:
            c.execute("SELECT 1")
            proxy.hang()  # the block ends: its transaction is committed while the server hangs

    db.open()
    try:
        for case in (hung_query, hung_commit):
            assert one() == {"one": 1}
            out, took = _timed(case, proxy)
            assert isinstance(out, psycopg.OperationalError), (case.__name__, out)
            assert took < BOUND_S, case.__name__
            # while it still hangs, asking for a connection gives up too
            out, took = _timed(one, proxy)
            assert isinstance(out, psycopg.OperationalError | psycopg_pool.PoolTimeout), out
            assert took < BOUND_S
            proxy.resume()
            deadline = time.monotonic() + 15
            while (out := _timed(one, proxy)[0]) != {"one": 1}:
                assert time.monotonic() < deadline, f"no recovery: {out!r}"
                time.sleep(0.2)
    finally:
        proxy.resume()
        db.close()


def test_slow_statements_are_ended_by_the_server_or_cancelled_by_the_watchdog(db_url: str) -> None:
    by_server = Database(db_url, max_size=1, statement_timeout_s=0.3, work_deadline_s=30)
    by_watchdog = Database(db_url, max_size=1, statement_timeout_s=30, work_deadline_s=0.3)
    for db in (by_server, by_watchdog):
        db.open()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled), db.connection() as conn:
                conn.execute("SELECT pg_sleep(20)")
            with db.connection() as conn:  # a fresh connection: the late one was not reused
                assert conn.execute("SELECT 3 AS three").fetchone() == {"three": 3}
        finally:
            db.close()


def test_database_work_beyond_the_per_worker_bound_is_refused_at_once(db_url: str) -> None:
    db = Database(db_url, max_size=4, timeout_s=1.0, max_concurrent=2, queue_wait_s=0.05)
    db.open()
    release = threading.Event()
    holding = threading.Barrier(3)

    def hold() -> None:
        with db.connection() as conn:
            conn.execute("SELECT 1")
            holding.wait()
            release.wait(10)

    try:
        with ThreadPoolExecutor(2) as ex:
            futures = [ex.submit(hold) for _ in range(2)]
            holding.wait()
            with pytest.raises(DatabaseBusy), db.connection():
                pass
            release.set()
            for f in futures:
                f.result()
        with db.connection() as conn:  # the slots are free again
            assert conn.execute("SELECT 2 AS two").fetchone() == {"two": 2}
    finally:
        release.set()
        db.close()


def test_while_the_database_hangs_the_server_answers_fast_and_then_recovers(
    proxy: HangingProxy, demo_db: str
) -> None:
    server = Server(
        proxy.url(demo_db),
        FUEL_DB_TIMEOUT_S="1",
        FUEL_DB_STATEMENT_TIMEOUT_S="1",
        FUEL_DB_WORK_DEADLINE_S="1.5",
    )
    try:
        with httpx.Client(base_url=server.base, timeout=30) as c:
            assert c.get("/v1/stations/nearby", params=NEARBY).status_code == 200
            assert c.get("/v1/route", params=ROUTE).status_code == 200
            proxy.hang()
            stop = threading.Event()
            db_results: list[tuple[int, str | None, float]] = []

            def db_client(path: str, params: dict[str, object]) -> None:
                with httpx.Client(base_url=server.base, timeout=30) as own:
                    while not stop.is_set():
                        t0 = time.monotonic()
                        try:
                            r = own.get(path, params=params)  # type: ignore[arg-type]
                        except httpx.HTTPError:  # reported below as status 0 with its duration
                            db_results.append((0, None, time.monotonic() - t0))
                            continue
                        db_results.append(
                            (r.status_code, r.headers.get("Retry-After"), time.monotonic() - t0)
                        )

            pressure = [
                threading.Thread(target=db_client, args=("/v1/stations/nearby", NEARBY)) for _ in range(12)
            ] + [threading.Thread(target=db_client, args=("/v1/traffic", {"bbox": "1.5,42.5,1.6,42.6"}))]
            for t in pressure:
                t.start()
            try:
                fast: list[float] = []
                t_end = time.monotonic() + 6
                while time.monotonic() < t_end:
                    t0 = time.monotonic()
                    assert c.get("/health").status_code == 200
                    route = c.get("/v1/route", params=ROUTE)
                    assert route.status_code == 200, route.text
                    fast.append(time.monotonic() - t0)
                    time.sleep(0.1)
            finally:
                stop.set()
                for t in pressure:
                    t.join(30)
            assert max(fast) < 2.0, f"/health + an in-memory route took up to {max(fast):.2f} s"
            assert db_results, "no database-bound request finished while the database hung"
            assert {s for s, _, _ in db_results} == {503}, sorted({s for s, _, _ in db_results})
            assert all(ra is not None and int(ra) >= 1 for _, ra, _ in db_results)
            slowest = max(t for _, _, t in db_results)
            assert slowest < BOUND_S, f"a database-bound request took {slowest:.2f} s to fail"
            ready = c.get("/ready")
            assert ready.status_code == 503 and ready.headers["Retry-After"] == "2"
        proxy.resume()
        deadline = time.monotonic() + 15
        with httpx.Client(base_url=server.base, timeout=30) as c:
            while c.get("/v1/stations/nearby", params=NEARBY).status_code != 200:
                assert time.monotonic() < deadline, "no recovery after the database came back"
                time.sleep(0.2)
            with ThreadPoolExecutor(8) as ex:
                codes = list(
                    ex.map(lambda _: c.get("/v1/stations/nearby", params=NEARBY).status_code, range(24))
                )
            assert codes == [200] * 24
            assert c.get("/ready").status_code == 200
    finally:
        proxy.resume()
        server.close()
