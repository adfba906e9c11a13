"""Shared fixtures: a throwaway PostGIS database per test session, and the real extracts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from config import PROJECT_ROOT
from store import create_database, drop_database, migrate
from tests._servers import TEST_ADMIN_KEY, TEST_RATE_PREFIX, TEST_SECRET_KEY

if TYPE_CHECKING:
    from tests._sale_pay import PayStack

SHARED = PROJECT_ROOT.parent / "shared" / "data"


def _write_fixtures() -> Path:
    import atexit
    import shutil
    import tempfile

    from tests.osm_fixtures import OSM_FIXTURES

    folder = Path(tempfile.mkdtemp(prefix="fuel-osm-fixtures-"))
    atexit.register(shutil.rmtree, folder, True)
    for name, text in OSM_FIXTURES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


FIXTURES = _write_fixtures()  # hand-written OSM XML (tests/osm_fixtures.py) as files
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


@pytest.fixture(scope="session")
def demo_db(db_url: str, shared_data: Path) -> str:
    """The session database loaded with the demo region (Andorra roads, stations, demo prices)."""
    from config import Settings
    from ingest._load_region import load_region_data

    settings = Settings(database_url=db_url, shared_data_dir=shared_data)
    load_region_data(
        settings,
        region_name="andorra",
        extract=shared_data / "osm" / "andorra.osm.pbf",
        demo=True,
        progress=False,
    )
    return db_url


@pytest.fixture(scope="session")
def demo_settings(demo_db: str, shared_data: Path):  # type: ignore[no-untyped-def]
    from config import Settings

    return Settings(
        database_url=demo_db,
        shared_data_dir=shared_data,
        rate_limit_per_minute=1_000_000,
        env="test",
        secret_key=TEST_SECRET_KEY,
        admin_api_key=TEST_ADMIN_KEY,
        rate_limit_prefix=TEST_RATE_PREFIX,
    )


@pytest.fixture(scope="session")
def client(demo_settings):  # type: ignore[no-untyped-def]
    """Real HTTP through the ASGI app, lifespan included (graph, router, traffic listener)."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(demo_settings)) as c:
        yield c


@contextmanager
def fresh_demo_database(shared_data: Path, prefix: str) -> Iterator[str]:
    """A database of one's own (named `<prefix>_<pid>_<random>`) with the demo region loaded (Andorra roads,
    stations, demo prices and pumps), dropped afterwards: for tests whose writes others must not see."""
    from psycopg.conninfo import make_conninfo

    from config import Settings
    from ingest._load_region import load_region_data

    url = make_conninfo(BASE_URL, dbname=f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    drop_database(url)
    create_database(url)
    try:
        migrate(url)
        load_region_data(
            Settings(database_url=url, shared_data_dir=shared_data),
            region_name="andorra",
            extract=shared_data / "osm" / "andorra.osm.pbf",
            demo=True,
            progress=False,
        )
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="module")
def module_db() -> Iterator[str]:
    """A fresh migrated database for one test module, for tests that need an empty station table."""
    from psycopg.conninfo import make_conninfo

    url = make_conninfo(BASE_URL, dbname=f"fuel_test_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    create_database(url)
    migrate(url)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="module")
def stack(module_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayStack]:
    """The payment stack of one module, on its own database: fake WeChat Pay, station link, API and payments
    worker as real processes (tests/_sale_pay.py). A module that needs another `stack` defines its own."""
    from tests._sale_pay import PayStack

    with PayStack(module_db, tmp_path_factory.mktemp("wechatpay-keys")) as s:
        yield s


@pytest.fixture(scope="module")
def nearby_conn(module_db: str, shared_data: Path) -> Iterator[psycopg.Connection]:
    """The module's own database seeded with the nearby data (tests/_nearby_data.py), autocommit."""
    from psycopg.rows import dict_row

    from tests._nearby_data import seed_nearby

    with psycopg.connect(module_db, autocommit=True, row_factory=dict_row) as c:
        seed_nearby(c, shared_data)
        yield c
