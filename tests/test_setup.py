"""Settings, migrations and the served-region choice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest

from config import Settings, UnsafeSettingsError, load_region, resolve_served_region
from store import migrate


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(UnsafeSettingsError, match="FUEL_SECRET_KEY"):
        Settings(env="production")
    ok = Settings(env="production", secret_key="s" * 32, admin_api_key="k" * 32)
    assert ok.env == "production"


def test_development_accepts_defaults() -> None:
    assert Settings(env="development").secret_key


def test_migrations_are_recorded_and_idempotent(db_url: str) -> None:
    assert migrate(db_url) == []  # the fixture already migrated: nothing left to apply
    with psycopg.connect(db_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions and versions[0] == "0001_init.sql"
        postgis = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'").fetchone()
        assert postgis is not None


def test_lijiang_is_default_and_falls_back_to_demo(tmp_path: Path, shared_data: Path) -> None:
    settings = Settings(cache_dir=tmp_path, shared_data_dir=shared_data)
    lijiang = load_region("lijiang", settings)
    assert lijiang.timezone == "Asia/Shanghai" and lijiang.price_zone == "yunnan-4"
    served = resolve_served_region(settings)
    if not (Path(__file__).parent.parent / ".cache" / "extracts" / "lijiang.osm.pbf").exists():
        assert served.is_demo and served.region.name == "andorra"
        assert served.extract == shared_data / "osm" / "andorra.osm.pbf"
        assert "No lijiang extract" in served.note


def test_explicit_extract_wins(tmp_path: Path) -> None:
    extract = tmp_path / "lijiang.osm.pbf"
    served = resolve_served_region(Settings(extract=extract))
    assert not served.is_demo and served.extract == extract and served.region.name == "lijiang"


def test_lijiang_boundary_is_wgs84_and_contains_old_town() -> None:
    lijiang = load_region("lijiang")
    # Dayan old town (大研古城), WGS-84
    assert lijiang.contains(26.872, 100.233)
    assert not lijiang.contains(25.04, 102.71)  # Kunming
    assert lijiang.holidays.day_type(dt.date(2026, 10, 1)) == "holiday"
    assert lijiang.holidays.day_type(dt.date(2026, 10, 10)) == "weekday"  # worked Saturday
