"""`load-region` writes through the audited path: every station, demo price, demo promotion and ceiling it
creates has an audit row with the actor `load-region:<region>`, and a reload never overwrites a field a
manager edited through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config import Settings
from ingest._load_region import load_region_data
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY

ACTOR = "load-region:andorra"


@pytest.fixture(scope="module")
def region(module_db: str, shared_data: Path) -> Iterator[dict[str, Any]]:
    settings = Settings(
        database_url=module_db,
        shared_data_dir=shared_data,
        env="test",
        secret_key=TEST_SECRET_KEY,
        admin_api_key=TEST_ADMIN_KEY,
        rate_limit_per_minute=1_000_000,
    )

    def load() -> dict[str, Any]:
        return load_region_data(
            settings,
            region_name="andorra",
            extract=shared_data / "osm" / "andorra.osm.pbf",
            demo=True,
            progress=False,
        )

    first = load()
    yield {"settings": settings, "load": load, "first": first, "db": module_db}


def q(db: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def test_first_load_is_audited_as_load_region(region: dict[str, Any]) -> None:
    db = region["db"]
    by_entity = dict(
        q(
            db,
            "SELECT entity, count(*) FROM audit_log WHERE actor = %s AND action = 'create' GROUP BY 1",
            ACTOR,
        )
    )
    stations, prices, promotions, ceilings, pumps, nozzles = q(
        db,
        "SELECT (SELECT count(*) FROM stations), (SELECT count(*) FROM prices),"
        " (SELECT count(*) FROM promotions), (SELECT count(*) FROM price_ceilings),"
        " (SELECT count(*) FROM pumps), (SELECT count(*) FROM nozzles)",
    )[0]
    assert stations > 0 and prices > 0 and promotions == 5 and pumps >= 2 * stations
    assert by_entity == {
        "station": stations,
        "price": prices,
        "promotion": promotions,
        "price_ceiling": ceilings,
        "pump": pumps,
        "nozzle": nozzles,
    }
    assert q(db, "SELECT count(*) FROM audit_log WHERE actor <> %s", ACTOR) == [(0,)]


def test_reload_keeps_manager_edits_and_audits_only_its_own_change(region: dict[str, Any]) -> None:
    db = region["db"]
    sid, osm_name, osm_hours = q(
        db, "SELECT id, name, opening_hours FROM stations WHERE source = 'osm' ORDER BY id LIMIT 1"
    )[0]
    with TestClient(create_app(region["settings"])) as c:
        h = {"X-API-Key": TEST_ADMIN_KEY}
        etag = c.get(f"/v1/manage/stations/{sid}", headers=h).headers["ETag"]
        r = c.patch(f"/v1/stations/{sid}", json={"name": "经理改的站名"}, headers={**h, "If-Match": etag})
        assert r.status_code == 200, r.text
    # the stored opening hours drift from the extract's (as when OSM was edited since the last load)
    drift = "Mo-Fr 08:00-18:00"
    q_exec(db, "UPDATE stations SET opening_hours = %s WHERE id = %s", drift, sid)
    mark = q(db, "SELECT max(id) FROM audit_log")[0][0]

    region["load"]()

    name, hours = q(db, "SELECT name, opening_hours FROM stations WHERE id = %s", sid)[0]
    assert name == "经理改的站名" != osm_name  # the manager's field stays
    assert hours == osm_hours  # a field OSM still owns follows the extract
    rows = q(
        db, "SELECT actor, action, entity, entity_id, old_value, new_value FROM audit_log WHERE id > %s", mark
    )
    assert rows == [
        (ACTOR, "update", "station", str(sid), {"opening_hours": drift}, {"opening_hours": osm_hours})
    ]
    # and a third load changes nothing at all
    mark = q(db, "SELECT max(id) FROM audit_log")[0][0]
    region["load"]()
    assert q(db, "SELECT count(*) FROM audit_log WHERE id > %s", mark) == [(0,)]


def q_exec(db: str, sql: str, *params: Any) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(sql, params)
