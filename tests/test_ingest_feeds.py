"""`python -m ingest prices` and `python -m ingest promotions`: validation, history, ceilings at the
effective time, idempotence, dry run, atomicity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from config import PROJECT_ROOT, Settings
from ingest._guidance import load_guidance_file
from ingest._prices import load_prices
from ingest._promotions import load_promotions
from ingest._stations import load_stations

EXAMPLES = PROJECT_ROOT / "data" / "examples"


@pytest.fixture(scope="module")
def settings(module_db: str, shared_data: Path) -> Settings:
    with psycopg.connect(module_db) as conn:
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
    return Settings(database_url=module_db, region="lijiang", shared_data_dir=shared_data)


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
            "LJ-GC-001,98,12.50,2026-09-25T00:00:00",  # 98# has no ceiling (within its band over 95#)
            "LJ-GC-002,92,8.90,2027-01-01T00:00:00",  # future-dated
        ],
    )
    s = load_prices(f, settings=settings, allow_rejects=True)
    assert [(r.row, r.field) for r in s.rejects] == [(2, "price_cny")]
    assert "8.83" in s.rejects[0].reason and s.new == 2
    # plausible, but 98# at 12.50 is far above the neighbours' 98#: held for an operator's review
    assert s.extra["held"] == 1 and "98# 12.50" in s.examples["prices held for review"][0]


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


# ---- plausibility: every rule a feed can break, with the rule and the allowed range in the report ----


def test_implausible_feed_prices_are_rejected_with_rule_and_range(
    settings: Settings, stations: None, module_db: str, tmp_path: Path
) -> None:
    f = feed(
        tmp_path,
        "implausible.csv",
        [
            "station,grade,price_cny,effective_from",
            "LJ-GC-001,95,0.95,2026-10-12",  # a typo: below the band of the 95# ceiling 9.63
            "LJ-GC-001,92,99.99,2020-01-01",  # back-dated before the first ceiling notice
            "LJ-GC-001,98,99.99,2026-10-12",  # 98# has no ceiling: bounded by the 95# one
            "LJ-GC-002,98,10.40,2026-10-12",  # LJ-GC-002 sells no 98#
            "LJ-GC-001,92,8.80,2031-01-01",  # absurdly far ahead
            "LJ-GC-001,92,8.80,2026-10-12",  # fine
        ],
    )
    before = (n(module_db, "prices"), n(module_db, "audit_log"))
    s = load_prices(f, settings=settings)
    assert not s.written and (n(module_db, "prices"), n(module_db, "audit_log")) == before
    got = {(r.row, r.field): r.reason for r in s.rejects}
    assert set(got) == {
        (2, "price_cny"),
        (3, "effective_from"),
        (4, "price_cny"),
        (5, "grade"),
        (6, "effective_from"),
    }
    assert "price.below_band" in got[(2, "price_cny")] and "7.23-9.63" in got[(2, "price_cny")]
    assert "price.before_first_notice" in got[(3, "effective_from")]
    assert "price.above_band" in got[(4, "price_cny")] and "7.23-13.00" in got[(4, "price_cny")]
    assert "price.grade_not_sold" in got[(5, "grade")]
    assert "price.too_far_ahead" in got[(6, "effective_from")]
    assert load_prices(f, settings=settings, allow_rejects=True).new == 1


def test_implausible_promotions_are_rejected(
    settings: Settings, stations: None, module_db: str, tmp_path: Path
) -> None:
    f = feed(
        tmp_path,
        "promos.csv",
        [
            "source_ref,station,kind,value,grades,valid_from",
            "X1,LJ-GC-001,cny_off_per_litre,999999,92,2026-10-01",  # effective price 0.01
            "X2,LJ-GC-001,percent_off,50,,2026-10-01",
            "X3,LJ-GC-001,cny_off_per_order,5000,,2026-10-01",
            "X4,LJ-GC-001,topup_bonus,80,,2026-10-01",
            "X5,LJ-GC-001,cny_off_per_litre,0.50,92,2026-10-01",  # fine
        ],
    )
    s = load_promotions(f, settings=settings)
    assert not s.written and n(module_db, "promotions") == 0
    got = {(r.row, r.field): r.reason for r in s.rejects}
    assert set(got) == {(2, "value"), (3, "value"), (4, "value"), (5, "value")}
    assert "promotion.cny_off_per_litre" in got[(2, "value")] and "2.69" in got[(2, "value")]
    assert "promotion.percent_off" in got[(3, "value")]
    assert "promotion.cny_off_per_order" in got[(4, "value")]
    assert "promotion.topup_bonus" in got[(5, "value")]


def test_promotion_source_ref_is_per_station_in_feeds(
    settings: Settings, stations: None, module_db: str, tmp_path: Path
) -> None:
    f = feed(
        tmp_path,
        "same-ref.csv",
        [
            "source_ref,station,kind,value,valid_from",
            "WEEKEND,LJ-GC-001,cny_off_per_litre,0.30,2026-10-01",
            "WEEKEND,LJ-GC-002,cny_off_per_litre,0.20,2026-10-01",  # another station's own promotion
        ],
    )
    s = load_promotions(f, settings=settings)
    assert (s.new, s.rejected_rows) == (2, 0)
    assert load_promotions(f, settings=settings).changed == 0


def test_loaders_audit_with_the_cli_actor(
    settings: Settings, stations: None, module_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    from config import get_settings
    from ingest.__main__ import main

    monkeypatch.setenv("DATABASE_URL", module_db)
    monkeypatch.setenv("FUEL_REGION", "lijiang")
    monkeypatch.setenv("FUEL_ONBOARDING_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    try:
        a = feed(tmp_path, "a.csv", ["station,grade,price_cny,effective_from", "3,95,9.40,2026-10-05"])
        assert main(["prices", str(a), "--no-progress", "--actor", "ops:alice"]) == 0
        assert main(["promotions", str(EXAMPLES / "promotions.csv"), "--no-progress"]) == 0
    finally:
        get_settings.cache_clear()
    with psycopg.connect(module_db) as conn:
        actors = dict(
            conn.execute("SELECT entity, actor FROM audit_log WHERE entity <> 'station'").fetchall()
        )
    assert actors == {"price": "ops:alice", "promotion": f"cli:{getpass.getuser()}"}


def test_a_new_notice_removes_future_prices_above_its_ceiling(
    settings: Settings, stations: None, module_db: str, tmp_path: Path, shared_data: Path
) -> None:
    import json
    from datetime import datetime, timedelta

    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    soon, later = today + timedelta(days=10), today + timedelta(days=20)
    f = feed(
        tmp_path,
        "future.csv",
        [
            "station,grade,price_cny,effective_from",
            f"LJ-GC-001,92,8.95,{soon}",  # fine under 8.99, above the next notice's 8.60
            f"LJ-GC-001,95,9.20,{soon}",  # fine under both
            f"LJ-GC-002,92,8.50,{later}",  # fine under both
        ],
    )
    assert load_prices(f, settings=settings).new == 3
    doc = json.loads((shared_data / "prices" / "yunnan_guidance_prices.json").read_text(encoding="utf-8"))
    adj = today + timedelta(days=2)
    doc["notices"].append(
        {"adjustment_date": adj.isoformat(), "prices": {"89": 7.95, "92": 8.60, "95": 9.25, "0": 8.30}}
    )
    path = tmp_path / "notice.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    try:
        with psycopg.connect(module_db) as conn:
            loaded = load_guidance_file(conn, path, actor="guidance:test")
            left = conn.execute(
                "SELECT station_id, grade FROM prices WHERE effective_from > now() ORDER BY 1, 2"
            ).fetchall()
            removed = conn.execute(
                "SELECT actor, old_value->>'price_cny', new_value->>'rule' FROM audit_log"
                " WHERE entity = 'price' AND action = 'delete'"
            ).fetchall()
            ceilings = conn.execute(
                "SELECT count(*) FROM audit_log WHERE entity = 'price_ceiling' AND actor = 'guidance:test'"
            ).fetchone()
    finally:
        with psycopg.connect(module_db) as conn:
            conn.execute("DELETE FROM price_ceilings WHERE adjustment_date = %s", (adj,))
    assert left == [(3, "95"), (4, "92")]  # LJ-GC-001 is station 3, LJ-GC-002 station 4
    assert removed == [("guidance:test", "8.95", "price.above_ceiling")]
    assert [(r.station_id, r.grade) for r in loaded.removed] == [(3, "92")]
    assert ceilings == (4,)  # the new notice's four grades, audited
