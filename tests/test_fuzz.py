"""OpenAPI fuzzing with schemathesis against the running app (uvicorn) on real PostGIS:
no 5xx, and every documented response matches its schema. Bounded examples, derandomized."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from config import Settings
from ingest._load_region import load_region_data
from store import create_database, drop_database, migrate
from tests._servers import Server
from tests.conftest import BASE_URL


@pytest.fixture(scope="module")
def fuzz_server(shared_data: Path) -> Iterator[Server]:
    # its own database: fuzzed traffic updates must not reach the other tests' servers
    url = make_conninfo(BASE_URL, dbname=f"fuel_fuzz_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    drop_database(url)
    create_database(url)
    migrate(url)
    load_region_data(
        Settings(database_url=url, shared_data_dir=shared_data),
        region_name="andorra",
        extract=shared_data / "osm" / "andorra.osm.pbf",
        demo=True,
        progress=False,
    )
    server = Server(url)
    try:
        yield server
    finally:
        server.close()
        drop_database(url)


def test_no_server_errors_and_schema_conformance(fuzz_server: Server, tmp_path: Path) -> None:
    """schemathesis' own runner (its pytest plugin does not support this pytest), bounded and seeded."""
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        fuzz_server.base + "/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--max-examples",
        "25",
        "--seed",
        "20261124",
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
    ]
    run = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"}
    )
    tail = run.stdout[run.stdout.find("FAILURES") :][:6000] or run.stdout[-6000:]
    assert run.returncode == 0, tail
    assert "passed" in run.stdout.lower() or "no issues found" in run.stdout.lower(), tail
