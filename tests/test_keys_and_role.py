"""API keys from the command line, and the service's least-privilege database role."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from config import PROJECT_ROOT, Settings
from store._audit import audit_rows
from store._auth import create_api_key
from tests._servers import TEST_SECRET_KEY


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DATABASE_URL=db_url, FUEL_SECRET_KEY=TEST_SECRET_KEY, FUEL_ENV="development")
    return subprocess.run(
        [sys.executable, "-m", "ingest", "keys", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _key_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM api_keys").fetchone()
        assert row is not None
        return int(row[0])


def test_keys_cli_create_list_revoke_audited(module_db: str) -> None:
    before = _key_count(module_db)
    assert _cli(module_db, "create", "--help").returncode == 0
    assert _key_count(module_db) == before  # --help touches nothing

    made = _cli(module_db, "create", "--name", "feed-amap", "--role", "traffic", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("lfk_") and len(key) > 40

    again = _cli(module_db, "create", "--name", "feed-amap", "--role", "operator")
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = _cli(module_db, "create", "--name", "m", "--role", "manager")
    assert bad.returncode == 2 and "station ids" in bad.stderr
    past = _cli(module_db, "create", "--name", "old", "--role", "operator", "--expires", "2020-01-01")
    assert past.returncode == 2 and "in the past" in past.stderr

    listed = _cli(module_db, "list")
    assert listed.returncode == 0
    line = next(x for x in listed.stdout.splitlines() if x.startswith("feed-amap\t"))
    assert "\ttraffic\t" in line and "\tactive\t" in line
    assert key not in listed.stdout

    revoked = _cli(module_db, "revoke", "feed-amap")
    assert revoked.returncode == 0
    assert "\trevoked\t" in _cli(module_db, "list").stdout
    assert _cli(module_db, "revoke", "feed-amap").returncode == 1

    with psycopg.connect(module_db) as conn:
        rows = audit_rows(conn, entity="api_key", entity_id="feed-amap")
    assert [r["action"] for r in rows] == ["create", "update"]
    assert all(r["actor"].startswith("cli:") for r in rows)
    assert rows[1]["new_value"] == {"revoked": True}


def test_revoked_and_expired_keys_do_not_authenticate(demo_settings: Settings) -> None:
    with psycopg.connect(demo_settings.database_url, autocommit=True) as conn:
        live = create_api_key(conn, "ops-live", "operator", secret_key=demo_settings.secret_key)
        gone = create_api_key(conn, "ops-gone", "operator", secret_key=demo_settings.secret_key)
        stale = create_api_key(
            conn,
            "ops-stale",
            "operator",
            secret_key=demo_settings.secret_key,
            expires_at=datetime.now(UTC) + timedelta(seconds=1),
        )
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE name = 'ops-gone'")
        conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 s' WHERE name = 'ops-stale'")
    from api.main import create_app

    with TestClient(create_app(demo_settings)) as c:
        codes = {
            name: c.get("/v1/manage/stations/1", headers={"X-API-Key": key}).status_code
            for name, key in (("live", live), ("gone", gone), ("stale", stale))
        }
    assert codes == {"live": 200, "gone": 401, "stale": 401}


def test_service_connects_as_least_privilege_role(client: TestClient, demo_settings: Settings) -> None:
    state = client.app.state.fuel  # type: ignore[attr-defined]
    with state.db.connection() as conn:
        who = conn.execute("SELECT current_user AS u, usesuper FROM pg_user WHERE usename = current_user")
        row = who.fetchone()
    assert row == {"u": "fuel_app", "usesuper": False}

    with psycopg.connect(demo_settings.service_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO audit_log (actor, action, entity, entity_id) VALUES ('t', 'create', 'probe', '1')"
        )
        for statement in (
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "SELECT * FROM audit_log",
            "UPDATE price_ceilings SET max_price_cny = 99",
            "DELETE FROM road_edges",
            "INSERT INTO api_keys (key_hash, name, role) VALUES ('x', 'self-made', 'operator')",
            "UPDATE api_keys SET role = 'operator'",
            "DROP TABLE stations",
            "CREATE TABLE mine (x int)",
            "CREATE ROLE another",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        conn.execute("UPDATE api_keys SET last_used_at = now() WHERE false")
