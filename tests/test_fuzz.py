"""OpenAPI fuzzing with schemathesis against the running app (uvicorn) on real PostGIS, from the typed
/openapi.json: no 5xx, every answer's status, content type and documented headers are in the schema and
its body matches the schema of its status. With the operator key, so that the manager API and the
traffic feed are exercised too (in this module's own database). Bounded examples, derandomized."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._servers import TEST_ADMIN_KEY, FakeWeChat, Server
from tests.conftest import fresh_demo_database

CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
)


@pytest.fixture(scope="module")
def fuzz_server(shared_data: Path) -> Iterator[Server]:
    # its own database: fuzzed traffic updates must not reach the other tests' servers
    with fresh_demo_database(shared_data, "fuel_fuzz") as url:
        wechat = FakeWeChat()  # logins go to the fake WeChat: made-up codes are 401s there, never 5xx
        server = Server(url, **wechat.server_env())
        try:
            yield server
        finally:
            server.close()
            wechat.close()


def test_no_server_errors_and_schema_conformance(fuzz_server: Server, tmp_path: Path) -> None:
    """schemathesis' own runner (its pytest plugin does not support this pytest), bounded and seeded."""
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        fuzz_server.base + "/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--header",
        f"X-API-Key: {TEST_ADMIN_KEY}",
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
