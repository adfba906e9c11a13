"""`python -m ingest prices` and `python -m ingest promotions`: validation, history, ceilings at the
effective time, idempotence, dry run, atomicity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from config import PROJECT_ROOT, Settings
from ingest._guidance import load_guidance_file
from ingest._prices import load_prices
from ingest._promotions import load_promotions
from ingest._stations import load_stations

EXAMPLES = PROJECT_ROOT / "data" / "examples"
NO_EXTRACT = Path("/nonexistent/lijiang.osm.pbf")


@pytest.fixture(scope="module")
def settings(module_db: str, shared_data: Path) -> Settings:
    with psycopg.connect(module_db) as conn:
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json")
    return Settings(database_url=module_db, extract=NO_EXTRACT, shared_data_dir=shared_data)


@pytest.fixture()
def stations(settings: Settings, module_db: str) -> Iterator[None]:
    def wipe() -> None:
        with psycopg.connect(module_db) as conn:
            conn.execute(
                "TRUNCATE stations, station_refs, prices, promotions, audit_log RESTART IDENTITY CASCADE"
            )

    wipe()
    load_stations(EXAMPLES / "stations.json", settings=settings)  # LJ-NL-007 = 1, LJ-GC-008 = 2, no prices
    load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)  # LJ-GC-001 = 3 ...
    yield
    wipe()


def n(module_db: str, table: str) -> int:
    with psycopg.connect(module_db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def feed(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_example_prices_load_once(settings: Settings, stations: None, module_db: str) -> None:
    before = n(module_db, "prices")
    s = load_prices(EXAMPLES / "prices.csv", settings=settings)
    assert (s.new, s.rejected_rows) == (6, 0)
    audit = n(module_db, "audit_log")
    again = load_prices(EXAMPLES / "prices.csv", settings=settings)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 6)
    assert n(module_db, "prices") == before + 6 and n(module_db, "audit_log") == audit


def test_price_rejections_and_nothing_written(
    settings: Settings, stations: None, module_db: str, tmp_path: Path
) -> None:
    f = feed(
        tmp_path,
        "p.csv",
        [
            "station,grade,price_cny,effective_from,source",
            "LJ-GC-001,92,8.80,2026-10-10,station",  # fine
            "NOPE,92,8.80,2026-10-10,feed",  # unknown station
            "999999,92,8.80,2026-10-10,feed",  # unknown id
            "LJ-GC-001,93,8.80,2026-10-10,feed",  # unknown grade
            "LJ-GC-001,95,abc,2026-10-10,feed",  # not a number
            "LJ-GC-001,95,-1,2026-10-10,feed",  # not positive
            "LJ-GC-001,95,9.555,2026-10-10,feed",  # 3 decimals
            "LJ-GC-001,95,9.50,yesterday,feed",  # bad time
            "LJ-GC-001,95,9.50,2026-10-10,rumour",  # bad source
            "LJ-GC-001,92,9.20,2026-10-10,feed",  # duplicate key of row 2 (and above the ceiling)
            ",92,8.80,2026-10-10,feed",  # no station
        ],
    )
    before = n(module_db, "prices")
    s = load_prices(f, settings=settings)
    assert not s.written and n(module_db, "prices") == before
    fields = {(r.row, r.field) for r in s.rejects}
    assert {
        (3, "station"),
        (4, "station"),
        (5, "grade"),
        (6, "price_cny"),
        (7, "price_cny"),
        (8, "price_cny"),
        (9, "effective_from"),
        (10, "source"),
        (12, "station"),
    } <= fields
    assert (11, "price_cny") in fields  # 9.20 > 8.99
    s2 = load_prices(f, settings=settings, allow_rejects=True)
    assert s2.written and s2.new == 1


def test_ceiling_in_force_at_effective_from_24h_rule(
    settings: Settings, stations: None, tmp_path: Path
) -> None:
    # 92# ceiling: 8.83 from 2026-04-22 00:00 (+08), 8.99 from 2026-09-25 00:00 (notice of 09-24, at 24:00)
    f = feed(
        tmp_path,
        "c.csv",
        [
            "station,grade,price_cny,effective_from",
            "LJ-GC-001,92,8.95,2026-09-24T23:59:00",  # still the April ceiling: rejected
            "LJ-GC-002,92,8.95,2026-09-25T00:00:00",  # the new ceiling is in force: fine
            "LJ-GC-002,98,12.50,2026-09-25T00:00:00",  # 98# has no ceiling
            "LJ-GC-002,92,8.90,2027-01-01T00:00:00",  # future-dated
        ],
    )
    s = load_prices(f, settings=settings, allow_rejects=True)
    assert [(r.row, r.field) for r in s.rejects] == [(2, "price_cny")]
    assert "8.83" in s.rejects[0].reason and s.new == 3


def test_price_history_update_and_default_now(
    settings: Settings, stations: None, module_db: str, tmp_path: Path
) -> None:
    a = feed(tmp_path, "a.csv", ["station,grade,price_cny,effective_from", "3,95,9.40,2026-10-05"])
    b = feed(tmp_path, "b.csv", ["station,grade,price_cny,effective_from", "3,95,9.45,2026-10-05"])
    c = feed(
        tmp_path, "c.csv", ["station,grade,price_cny", "3,95,9.45"]
    )  # effective now = the price in force
    assert load_prices(a, settings=settings).new == 1
    s = load_prices(b, settings=settings)
    assert (s.new, s.updated) == (0, 1)
    with psycopg.connect(module_db) as conn:
        old, new = conn.execute(
            "SELECT old_value->>'price_cny', new_value->>'price_cny' FROM audit_log"
            " WHERE entity = 'price' AND action = 'update'"
        ).fetchone()  # type: ignore[misc]
        assert (old, new) == ("9.40", "9.45")
    assert load_prices(c, settings=settings).changed == 0
    assert load_prices(c, settings=settings, dry_run=True).changed == 0


def test_dry_run_prices_writes_nothing(settings: Settings, stations: None, module_db: str) -> None:
    before = (n(module_db, "prices"), n(module_db, "audit_log"))
    s = load_prices(EXAMPLES / "prices.csv", settings=settings, dry_run=True)
    assert s.new == 6 and not s.written
    assert (n(module_db, "prices"), n(module_db, "audit_log")) == before


def test_promotions_load_idempotent_and_update(
    settings: Settings, stations: None, module_db: str, tmp_path: Path
) -> None:
    s = load_promotions(EXAMPLES / "promotions.csv", settings=settings)
    assert (s.new, s.rejected_rows) == (5, 0)
    audit = n(module_db, "audit_log")
    assert load_promotions(EXAMPLES / "promotions.csv", settings=settings).changed == 0
    assert n(module_db, "audit_log") == audit and n(module_db, "promotions") == 5
    text = (EXAMPLES / "promotions.csv").read_text(encoding="utf-8").replace(",0.30,", ",0.35,")
    f = feed(tmp_path, "p.csv", text.splitlines())
    s = load_promotions(f, settings=settings)
    assert (s.new, s.updated, s.unchanged) == (0, 1, 4)
    with psycopg.connect(module_db) as conn:
        v = conn.execute(
            "SELECT version, value::text FROM promotions WHERE source_ref = 'LJ-PROMO-2026-001'"
        ).fetchone()
        assert v == (2, "0.35")


def test_promotion_rejections(settings: Settings, stations: None, module_db: str, tmp_path: Path) -> None:
    head = "source_ref,scope,station,brand,kind,value,grades,days_of_week,date_ranges,time_from,valid_from,valid_to"
    f = feed(
        tmp_path,
        "bad.csv",
        [
            head,
            "P1,station,LJ-GC-001,,percent_off,5,92,,,,2026-10-01,",  # fine
            ",station,LJ-GC-001,,percent_off,5,,,,,2026-10-01,",  # no source_ref
            "P3,station,NOPE,,percent_off,5,,,,,2026-10-01,",  # unknown station
            "P4,brand,,,percent_off,5,,,,,2026-10-01,",  # brand missing
            "P5,station,LJ-GC-001,,half_price,5,,,,,2026-10-01,",  # unknown kind
            "P6,station,LJ-GC-001,,percent_off,150,,,,,2026-10-01,",  # percent >= 100
            "P7,station,LJ-GC-001,,percent_off,5,93,,,,2026-10-01,",  # unknown grade
            "P8,station,LJ-GC-001,,percent_off,5,,8,,,2026-10-01,",  # bad day
            "P9,station,LJ-GC-001,,percent_off,5,,,2026-10-07/2026-10-01,,2026-10-01,",  # range backwards
            "P10,station,LJ-GC-001,,percent_off,5,,,,25:00,2026-10-01,",  # bad time
            "P11,station,LJ-GC-001,,percent_off,5,,,,,,",  # no valid_from
            "P12,station,LJ-GC-001,,percent_off,5,,,,,2026-10-05,2026-10-01",  # ends before start
            "P1,station,LJ-GC-001,,percent_off,5,92,,,,2026-10-01,",  # duplicate source_ref
        ],
    )
    s = load_promotions(f, settings=settings)
    assert not s.written and n(module_db, "promotions") == 0
    got = {(r.row, r.field) for r in s.rejects}
    assert got == {
        (3, "source_ref"),
        (4, "station"),
        (5, "brand"),
        (6, "kind"),
        (7, "value"),
        (8, "grades"),
        (9, "days_of_week"),
        (10, "date_ranges"),
        (11, "time_from"),
        (12, "valid_from"),
        (13, "valid_to"),
        (14, "source_ref"),
    }
