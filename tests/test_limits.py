"""Rate limits that hold: shared by real uvicorn workers through real Redis, keyed by what a client
cannot make up, no burst at a window edge, and still limits (per worker) while Redis is down."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import limits.storage.memory as limits_memory
import limits.storage.redis as limits_redis
import pytest
import redis

from api import _limits
from api._limits import Limiter
from api._pipelined_redis import PipelinedRedis
from config import PROJECT_ROOT
from tests._servers import Server, free_port

REGION = "/v1/map/region"  # a cheap rate-limited endpoint


def prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


def codes(base: str, n: int, **kw: object) -> list[int]:
    return [httpx.get(base + REGION, timeout=10, **kw).status_code for _ in range(n)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def two_workers(demo_db: str) -> Iterator[tuple[Server, Server]]:
    """Two uvicorn processes, one Redis: a limit of 10 a minute under one key prefix."""
    env = {"FUEL_RATE_LIMIT_PER_MINUTE": "10", "FUEL_RATE_LIMIT_PREFIX": prefix()}
    a, b = Server(demo_db, **env), Server(demo_db, **env)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_the_limit_holds_across_workers_and_made_up_keys_or_forwarded_for(
    two_workers: tuple[Server, Server],
) -> None:
    a, b = two_workers
    seen = []
    for i in range(10):
        server = a if i % 2 else b
        # a fresh made-up key and a fresh X-Forwarded-For each time: neither buys a budget
        headers = {"X-API-Key": f"lfk_made-up-{uuid.uuid4().hex}", "X-Forwarded-For": f"203.0.113.{i}"}
        seen.append(httpx.get(server.base + REGION, headers=headers, timeout=10).status_code)
    assert seen == [200] * 10
    r = httpx.get(a.base + REGION, headers={"X-Forwarded-For": "198.51.100.7"}, timeout=10)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert httpx.get(b.base + REGION, timeout=10).status_code == 429
    assert (
        httpx.post(b.base + "/v1/matrix", json={"sources": [[42.5063, 1.5218]]}, timeout=10).status_code
        == 429
    )


def test_forwarded_for_is_believed_from_trusted_proxies_only(demo_db: str) -> None:
    env = {
        "FUEL_RATE_LIMIT_PER_MINUTE": "3",
        "FUEL_RATE_LIMIT_PREFIX": prefix(),
        "FUEL_TRUSTED_PROXIES": '["127.0.0.1/32"]',
    }
    server = Server(demo_db, **env)
    try:
        # behind the trusted proxy (this test's loopback peer) each client has its own budget
        assert codes(server.base, 4, headers={"X-Forwarded-For": "203.0.113.1"}) == [200] * 3 + [429]
        assert codes(server.base, 3, headers={"X-Forwarded-For": "203.0.113.2"}) == [200] * 3
        # a client that writes its own X-Forwarded-For: the proxy appends the address it saw, and the
        # right-most address that is not a trusted proxy is the client
        spoofed = {"X-Forwarded-For": "198.51.100.99, 203.0.113.1, 127.0.0.1"}
        assert codes(server.base, 1, headers=spoofed) == [429]
    finally:
        server.close()


def test_redis_down_still_limits_each_worker(demo_db: str) -> None:
    env = {
        "FUEL_RATE_LIMIT_PER_MINUTE": "5",
        "FUEL_RATE_LIMIT_PREFIX": prefix(),
        "FUEL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    }
    a, b = Server(demo_db, **env), Server(demo_db, **env)
    try:
        for server in (a, b):
            assert codes(server.base, 7) == [200] * 5 + [429] * 2
            server.log.seek(0)
            log = server.log.read().decode(errors="replace")
            assert log.count("Redis unreachable") == 1, log  # one line, not one per request
    finally:
        a.close()
        b.close()


class Clock:
    """A controllable clock for the limits library and our limiter."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize("redis_up", [True, False])
def test_no_burst_at_a_window_edge(monkeypatch: pytest.MonkeyPatch, redis_up: bool) -> None:
    """N at the end of one clock minute and N at the start of the next would be 2N within a second
    under fixed windows; the moving window keeps any 60 s at N or fewer, in Redis and in memory."""
    minute = 1_900_000_020.0  # a clock-minute boundary, in the future so Redis keeps our entries
    clock = Clock(minute - 0.5)
    for module in (limits_redis, limits_memory, _limits):
        monkeypatch.setattr(module, "time", clock)
    url = "redis://127.0.0.1:6379/0" if redis_up else f"redis://127.0.0.1:{free_port()}/0"
    limiter = Limiter(url, prefix=prefix(), retry_s=3_600)

    def burst(n: int) -> list[bool]:
        return [limiter.hit("requests", "client", limit=10) is None for _ in range(n)]

    assert burst(10) == [True] * 10  # the last half second of one minute
    clock.now = minute + 0.5
    assert burst(10) == [False] * 10  # the first half second of the next: nothing more fits
    clock.now = minute + 30
    assert burst(1) == [False]
    clock.now = minute + 59.6  # 60.1 s after the first ten
    assert burst(10) == [True] * 10
    assert limiter.shared is redis_up


def private_redis(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    """A redis-server of this test's own on `port` (extra server `args`), answering."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server missing: a private Redis cannot be started")
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *args,
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    password = args[args.index("--requirepass") + 1] if "--requirepass" in args else None
    client = redis.Redis(port=port, password=password)
    for _ in range(200):
        try:
            if client.ping():
                return proc
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("private redis-server did not start")


def test_limits_go_back_to_redis_when_it_returns(tmp_path: Path) -> None:
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        return private_redis(tmp_path, port)

    proc = start()
    limiter = Limiter(f"redis://127.0.0.1:{port}/0", prefix=prefix(), retry_s=0)
    try:
        assert [limiter.hit("requests", "c", limit=3) for _ in range(2)] == [None, None]
        assert limiter.shared
        proc.terminate()
        proc.wait(10)
        # down: still limited, by this process alone (its own window starts empty)
        local = [limiter.hit("requests", "c", limit=3) is None for _ in range(4)]
        assert local == [True, True, True, False] and not limiter.shared
        proc = start()
        # back: the shared window is used again (the new Redis has no entries yet)
        assert limiter.hit("requests", "c", limit=3) is None
        assert limiter.shared
    finally:
        proc.terminate()
        proc.wait(10)


def test_pipelined_hits_are_exact_and_share_the_window_with_threads() -> None:
    """The event loop's hits go on one pipelined connection (api/_pipelined_redis.py): 200 at once
    against a limit of 150 let exactly 150 through, and they fill the same window the threads' path
    (redis-py, the `limits` library) reads, and the other way round."""
    limiter = Limiter("redis://127.0.0.1:6379/0", prefix=prefix())

    async def burst(n: int, client: str, limit: int) -> list[float | None]:
        try:
            got = await asyncio.gather(*(limiter.ahit("requests", client, limit=limit) for _ in range(n)))
            assert isinstance(limiter._pipe, PipelinedRedis)  # the hits went on the pipelined connection
            return list(got)
        finally:
            await limiter.aclose()  # the loop's connections close with it

    got = asyncio.run(burst(200, "a", 150))
    assert sum(w is None for w in got) == 150 and all(w is None or 1 <= w <= 60 for w in got)
    assert limiter.hit("requests", "a", limit=150) is not None  # the threads see the loop's hits
    assert [limiter.hit("requests", "b", limit=3) for _ in range(3)] == [None] * 3
    assert asyncio.run(burst(1, "b", 3)) != [None]  # and the loop sees the threads'
    assert limiter.shared


def test_pipelined_hits_load_the_script_log_in_and_select_the_database(tmp_path: Path) -> None:
    """A Redis with a password and the limits in database 3: the pipelined connection logs in and
    selects it, and loads the script (EVAL) when Redis does not have it (after SCRIPT FLUSH)."""
    port = free_port()
    proc = private_redis(tmp_path, port, "--requirepass", "s3cret")
    try:
        limiter = Limiter(f"redis://:s3cret@127.0.0.1:{port}/3", prefix=prefix())
        admin = redis.Redis(port=port, password="s3cret", db=3)

        async def hits(n: int) -> list[float | None]:
            out = []
            for _ in range(n):
                out.append(await limiter.ahit("requests", "c", limit=4))
                admin.script_flush()
            await limiter.aclose()
            return out

        got = asyncio.run(hits(5))
        assert got[:4] == [None] * 4 and got[4] is not None and limiter.shared
        assert any(b"requests" in k for k in admin.scan_iter())  # in database 3
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_redis_that_does_not_answer_costs_one_deadline_then_limits_locally() -> None:
    """A Redis that accepts connections but never answers: the hit gives up after the deadline
    (0.25 s), drops the connection, and the limiter counts in this process until retry_s."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        limiter = Limiter(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", prefix=prefix(), retry_s=3_600)

        async def hits() -> tuple[list[float | None], float]:
            t0 = time.monotonic()
            first = await limiter.ahit("requests", "c", limit=3)
            took = time.monotonic() - t0
            rest = [await limiter.ahit("requests", "c", limit=3) for _ in range(3)]
            await limiter.aclose()
            return [first, *rest], took

        got, took = asyncio.run(hits())
        assert 0.2 <= took < 2.0, took
        assert got[:3] == [None] * 3 and got[3] is not None  # counted locally: the limit still holds
        assert not limiter.shared
    finally:
        silent.close()


def make_run_flags() -> list[str]:
    """The uvicorn flags of `make run` (Makefile UVICORN_FLAGS), so the test runs what we ship."""
    text = (PROJECT_ROOT / "Makefile").read_text()
    block = text[text.index("UVICORN_FLAGS :=") + len("UVICORN_FLAGS :=") :].split("\n\n", 1)[0]
    return block.replace("\\\n", " ").split()


def test_make_run_flags_close_slow_heads_and_cap_header_size(demo_db: str) -> None:
    server = Server(demo_db, uvicorn_args=make_run_flags(), FUEL_HEADER_TIMEOUT_S="1")
    try:
        host, port = "127.0.0.1", server.port
        # a complete request on a kept-alive connection, twice: the deadline is for heads only
        with socket.create_connection((host, port), timeout=10) as s:
            for _ in range(2):
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while not answer.endswith(b'{"status":"ok"}'):
                    chunk = s.recv(65536)
                    assert chunk, answer
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200")
        # a head that never completes: the server closes the connection (recv returns b"")
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            assert s.recv(65536) == b""
        # a head above uvicorn's cap never reaches the app
        r = httpx.get(server.base + "/health", headers={"X-Big": "b" * 40_000}, timeout=10)
        assert r.status_code in (400, 431)
    finally:
        server.close()
