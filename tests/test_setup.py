"""Settings, migrations and the served-region choice."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import psycopg
import pytest

from config import Settings, UnsafeSettingsError, load_region, resolve_served_region
from config._settings import DEV_ADMIN_KEY
from store import migrate
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY

STRONG = "Zr7-qP2xW9_kVt4LmN8cYb3HdJ6sFg1AeUoQ"  # 36 characters, 34 different


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(UnsafeSettingsError, match="FUEL_SECRET_KEY"):
        Settings(env="production")
    with pytest.raises(UnsafeSettingsError, match="FUEL_ADMIN_API_KEY"):
        Settings(env="production", secret_key=STRONG, admin_api_key=DEV_ADMIN_KEY)
    ok = Settings(env="production", secret_key=secrets.token_urlsafe(32), admin_api_key=secrets.token_hex(32))
    assert ok.env == "production"


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("a" * 40, "different characters"),
        ("s" * 32, "different characters"),
        ("aaaaaaaaaaaaaaaa", "fewer than 32"),
        ("abcdefghijklm" * 3, "repeated pattern"),
        ("3f9a0c7e1b5d2846e9c1a7f30b5d8246", "bits"),  # 16 random bytes in hex, not 32
    ],
)
def test_production_refuses_weak_secrets_and_says_the_rule(secret: str, why: str) -> None:
    for field in ("secret_key", "admin_api_key"):
        with pytest.raises(UnsafeSettingsError, match="weak secrets") as caught:
            Settings(env="production", **{"secret_key": STRONG, field: secret})
        assert why in str(caught.value) and "at least 32 characters" in str(caught.value)
        assert secret not in str(caught.value)  # the message names the rule, never the secret


def test_test_env_refuses_development_secrets() -> None:
    with pytest.raises(UnsafeSettingsError, match="FUEL_SECRET_KEY"):
        Settings(env="test")
    with pytest.raises(UnsafeSettingsError, match="FUEL_ADMIN_API_KEY"):
        Settings(env="test", secret_key=TEST_SECRET_KEY, admin_api_key=DEV_ADMIN_KEY)
    assert Settings(env="test", secret_key=TEST_SECRET_KEY, admin_api_key=TEST_ADMIN_KEY).env == "test"


def test_development_secrets_need_a_loopback_bind() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert Settings(env="development", bind_host=host).admin_api_key == DEV_ADMIN_KEY
    for host in ("0.0.0.0", "192.0.2.10", "::", "fuel.example.com"):
        with pytest.raises(UnsafeSettingsError, match="loopback"):
            Settings(env="development", bind_host=host)
    # with secrets of its own, development may bind anywhere (the static admin key is then off)
    public = Settings(env="development", bind_host="0.0.0.0", secret_key=STRONG)
    assert public.admin_api_key == "" and not public.uses_dev_secrets


def test_static_admin_key_is_off_unless_configured_outside_development() -> None:
    assert Settings(env="production", secret_key=STRONG).admin_api_key == ""
    assert Settings(env="test", secret_key=TEST_SECRET_KEY).admin_api_key == ""
    assert Settings(env="development", admin_api_key="").admin_api_key == ""  # switched off


def test_docs_are_configurable_and_off_in_production() -> None:
    assert not Settings(env="production", secret_key=STRONG).docs_served
    assert Settings(env="production", secret_key=STRONG, docs_enabled=True).docs_served
    assert Settings(env="test", secret_key=TEST_SECRET_KEY).docs_served
    assert not Settings(env="development", docs_enabled=False).docs_served


def test_make_run_works_with_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run`: FUEL_ENV=development and FUEL_BIND_HOST from HOST (127.0.0.1), nothing else."""
    for name in ("FUEL_SECRET_KEY", "FUEL_ADMIN_API_KEY", "FUEL_BIND_HOST", "FUEL_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FUEL_ENV", "development")
    monkeypatch.setenv("FUEL_BIND_HOST", "127.0.0.1")
    settings = Settings()
    assert settings.uses_dev_secrets and settings.dev_secrets_allowed
    monkeypatch.setenv("FUEL_BIND_HOST", "0.0.0.0")
    with pytest.raises(UnsafeSettingsError, match="loopback"):
        Settings()


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
