"""A real client built from the contract: openapi-typescript (npm, pinned in web/package.json) generates
TypeScript types from this server's /openapi.json, and `tsc --noEmit --strict` type-checks
tests/ts/usage.ts against them (nearby, route, matrix, manager prices and promotions). usage.ts also
holds mistakes marked `@ts-expect-error` (a string latitude, an unknown grade, a missing parameter...):
with untyped parameters they would compile, and tsc fails on an expected error that does not occur."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from config import PROJECT_ROOT

BIN = PROJECT_ROOT / "web" / "node_modules" / ".bin"
USAGE = PROJECT_ROOT / "tests" / "ts" / "usage.ts"

if shutil.which("node") is None or not (BIN / "openapi-typescript").exists() or not (BIN / "tsc").exists():
    pytest.skip(
        "TypeScript client test skipped: needs node and the web dev packages (`make -C web deps`)",
        allow_module_level=True,
    )


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_generated_typescript_client_type_checks_the_usage(client: TestClient, tmp_path: Path) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    (tmp_path / "openapi.json").write_text(r.text, encoding="utf-8")
    gen = _run(
        [
            str(BIN / "openapi-typescript"),
            "openapi.json",
            "--default-non-nullable",
            "false",  # a default makes a request field optional, not required
            "-o",
            "schema.d.ts",
        ],
        tmp_path,
    )
    assert gen.returncode == 0, gen.stdout + gen.stderr
    assert "export interface paths" in (tmp_path / "schema.d.ts").read_text(encoding="utf-8")
    shutil.copy(USAGE, tmp_path / "usage.ts")
    tsc = _run(
        [
            str(BIN / "tsc"),
            "--noEmit",
            "--strict",
            "--target",
            "ES2022",
            "--module",
            "ES2022",
            "--moduleResolution",
            "bundler",
            "--lib",
            "ES2022,DOM",
            "usage.ts",
        ],
        tmp_path,
    )
    assert tsc.returncode == 0, tsc.stdout + tsc.stderr
