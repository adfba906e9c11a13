"""Faults and several workers, against real servers (uvicorn subprocesses) on a private PostgreSQL.

The private cluster (initdb in a temp folder, its own port) can be stopped and started without
touching the shared server other tests use.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from config import Settings
from ingest._load_region import load_region_data
from store import create_database, migrate
from tests._servers import TEST_ADMIN_KEY, Server, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
TZ = ZoneInfo("Asia/Shanghai")
NEARBY = {"lat": 42.5063, "lon": 1.5218, "radius_m": 20000}
FEED = {"X-API-Key": TEST_ADMIN_KEY}  # live traffic is posted with an operator (or traffic) key


class PrivatePostgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fuel-pg-"))
        self.port = free_port()
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "root", "--no-sync", "-E", "UTF8")
        self.url = f"postgresql://root@127.0.0.1:{self.port}/fuel"

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.dir,
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg(shared_data: Path) -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server binaries or runuser missing: private-cluster fault tests skipped")
    cluster = PrivatePostgres()
    try:
        cluster.start()
        create_database(cluster.url)
        migrate(cluster.url)
        load_region_data(
            Settings(database_url=cluster.url, shared_data_dir=shared_data),
            region_name="andorra",
            extract=shared_data / "osm" / "andorra.osm.pbf",
            demo=True,
            progress=False,
        )
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def two_workers(pg: PrivatePostgres) -> Iterator[tuple[Server, Server]]:
    with ThreadPoolExecutor(2) as ex:
        a, b = ex.map(lambda _: Server(pg.url), range(2))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_live_traffic_reaches_every_worker_within_1s(two_workers: tuple[Server, Server]) -> None:
    a, b = two_workers
    route = httpx.get(
        a.base + "/v1/route",
        params={"from": "42.5063,1.5218", "to": "42.5347,1.5800", "geometries": "segments"},
    ).json()
    edge = route["segments"][len(route["segments"]) // 2]["edge_id"]
    now = datetime.now(TZ)
    body = {
        "updates": [
            {
                "edge_id": edge,
                "closed": True,
                "observed_at": now.isoformat(),
                "expires_at": (now + timedelta(minutes=5)).isoformat(),
            }
        ]
    }
    try:
        assert httpx.post(a.base + "/v1/traffic", json=body, headers=FEED).status_code == 200
        # the clock starts when worker A has stored the closure (its answer), not when the request left
        t0 = time.perf_counter()
        seen = None
        while time.perf_counter() - t0 < 1.0:
            edges = httpx.get(b.base + "/v1/traffic", params={"bbox": "1.40,42.42,1.80,42.66"}).json()[
                "edges"
            ]
            if any(e["edge_id"] == edge and e["level"] == "closed" for e in edges):
                seen = time.perf_counter() - t0
                break
            time.sleep(0.02)
        assert seen is not None and seen < 1.0, "worker B did not see worker A's closure within 1 s"
        other = httpx.get(
            b.base + "/v1/route",
            params={"from": "42.5063,1.5218", "to": "42.5347,1.5800", "geometries": "segments"},
        )
        if other.status_code == 200:  # routed around the closure
            assert edge not in {s["edge_id"] for s in other.json()["segments"]}
        else:  # the closed edge was the only way
            assert other.status_code == 404
    finally:  # reopened even when the bar fails: the next test routes over the same edge
        reopen = {
            "updates": [
                {"edge_id": edge, "factor": 1.0, "observed_at": (now + timedelta(seconds=1)).isoformat()}
            ]
        }
        assert httpx.post(a.base + "/v1/traffic", json=reopen, headers=FEED).status_code == 200


def test_database_restart_fails_fast_and_recovers(
    pg: PrivatePostgres, two_workers: tuple[Server, Server]
) -> None:
    a, _ = two_workers
    assert httpx.get(a.base + "/v1/stations/nearby", params=NEARBY).status_code == 200
    pg.stop()
    try:
        t0 = time.perf_counter()
        r = httpx.get(a.base + "/v1/stations/nearby", params=NEARBY, timeout=10)
        elapsed = time.perf_counter() - t0
        assert r.status_code == 503, r.text
        assert elapsed < 3.0, f"took {elapsed:.2f} s to fail"
        assert r.json()["error"]["code"] == "DatabaseUnavailable"
        assert httpx.get(a.base + "/ready", timeout=10).status_code == 503
        # routing needs no database: it keeps answering
        assert (
            httpx.get(
                a.base + "/v1/route", params={"from": "42.5063,1.5218", "to": "42.5347,1.5800"}
            ).status_code
            == 200
        )
    finally:
        pg.start()
    t_up = time.perf_counter()
    ok_after = None
    while time.perf_counter() - t_up < 10:
        if httpx.get(a.base + "/v1/stations/nearby", params=NEARBY, timeout=10).status_code == 200:
            ok_after = time.perf_counter() - t_up
            break
        time.sleep(0.1)
    assert ok_after is not None and ok_after < 5.0, f"recovered after {ok_after}"
    # the pool healed: a burst of concurrent requests all succeed, none stuck
    with ThreadPoolExecutor(16) as ex:
        codes = list(
            ex.map(
                lambda _: httpx.get(a.base + "/v1/stations/nearby", params=NEARBY, timeout=10).status_code,
                range(48),
            )
        )
    assert codes == [200] * 48
