"""Shared fixtures: a throwaway PostGIS database per test session, and the real extracts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import PROJECT_ROOT
from store import create_database, drop_database, migrate

SHARED = PROJECT_ROOT.parent / "shared" / "data"
FIXTURES = PROJECT_ROOT / "data" / "fixtures"
BASE_URL = os.environ.get("DATABASE_URL", "postgresql://root@127.0.0.1:5432/lijiang_fuel")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED} is missing")
    return SHARED


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    """A fresh migrated database for this test session, dropped at the end."""
    from psycopg.conninfo import make_conninfo

    url = make_conninfo(BASE_URL, dbname=f"fuel_test_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    create_database(url)
    migrate(url)
    try:
        yield url
    finally:
        drop_database(url)
