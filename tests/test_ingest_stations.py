"""`python -m ingest stations`: formats, every rejection reason, matching, idempotence, dry run,
atomicity under a killed process, and the 100k-row load time."""

from __future__ import annotations

import csv
import getpass
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from config import PROJECT_ROOT, Settings, load_region
from geo._coords import from_wgs84
from ingest.__main__ import main
from ingest._guidance import load_guidance_file
from ingest._stations import load_stations

EXAMPLES = PROJECT_ROOT / "data" / "examples"

HEADER = "source_ref,name,brand,address,lat,lon,coord,grades,opening_hours,amenities,status,price_92,prices_effective_from"


@pytest.fixture(scope="module")
def settings(module_db: str, shared_data: Path) -> Settings:
    s = Settings(database_url=module_db, region="lijiang", shared_data_dir=shared_data)
    with psycopg.connect(module_db) as conn:
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
    return s


@pytest.fixture()
def cli_env(module_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """`main()` reads settings from the environment: point it at the test database and Lijiang."""
    from config import get_settings

    monkeypatch.setenv("DATABASE_URL", module_db)
    monkeypatch.setenv("FUEL_REGION", "lijiang")
    monkeypatch.setenv("FUEL_ONBOARDING_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture()
def clean(module_db: str, cli_env: None) -> Iterator[None]:
    def wipe() -> None:
        with psycopg.connect(module_db) as conn:
            conn.execute(
                "TRUNCATE stations, station_refs, prices, promotions, audit_log RESTART IDENTITY CASCADE"
            )

    wipe()
    yield
    wipe()


def counts(module_db: str) -> dict[str, int]:
    with psycopg.connect(module_db) as conn:
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("stations", "prices", "audit_log", "station_refs")
        }


def fingerprint(module_db: str) -> list[tuple[object, ...]]:
    with psycopg.connect(module_db) as conn:
        return conn.execute("SELECT id, version, updated_at, name FROM stations ORDER BY id").fetchall()


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def test_examples_load_in_every_format_and_twice_changes_nothing(
    settings: Settings, clean: None, module_db: str
) -> None:
    s1 = load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)
    s2 = load_stations(EXAMPLES / "stations_gcj02.geojson", settings=settings)
    s3 = load_stations(EXAMPLES / "stations.json", settings=settings)
    assert (s1.new, s2.new, s3.new) == (4, 2, 2) and not (s1.rejects or s2.rejects or s3.rejects)
    before, fp = counts(module_db), fingerprint(module_db)
    assert before["stations"] == 8 and before["prices"] == 19
    for f in ("stations_wgs84.csv", "stations_gcj02.geojson", "stations.json"):
        again = load_stations(EXAMPLES / f, settings=settings)
        assert again.new == again.updated == 0 and again.extra["prices new"] == 0
    # no rows, no version/updated_at, no audit
    assert counts(module_db) == before and fingerprint(module_db) == fp


def test_gcj02_is_converted_to_wgs84(settings: Settings, clean: None, module_db: str) -> None:
    load_stations(EXAMPLES / "stations_gcj02.geojson", settings=settings)
    with psycopg.connect(module_db) as conn:
        lat, lon = conn.execute(
            "SELECT ST_Y(geom), ST_X(geom) FROM stations WHERE source_ref = 'LJ-YS-005'"
        ).fetchone()  # type: ignore[misc]
    assert abs(lat - 26.6845) < 2e-5 and abs(lon - 100.7510) < 2e-5  # the WGS-84 point it was made from


def test_every_rejection_reason_and_nothing_written(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    report = tmp_path / "rejects.json"
    rc = main(
        ["stations", str(EXAMPLES / "stations_with_errors.csv"), "--report", str(report), "--no-progress"]
    )
    assert rc == 1
    assert counts(module_db)["stations"] == 0  # the one good row was not written either
    got = {(r["row"], r["field"]) for r in json.loads(report.read_text(encoding="utf-8"))}
    assert got == {
        (3, "source_ref"),  # missing
        (4, "lat,lon"),  # Kunming: outside the served region
        (5, "lat"),  # out of range
        (6, "coord"),  # unknown system
        (7, "grades"),  # unknown grade
        (8, "opening_hours"),  # unparseable
        (9, "price_92"),  # above the ceiling in force
        (10, "status"),
        (11, "amenities"),
        (12, "source_ref"),  # duplicate within the file
        (13, "lat,lon"),  # same brand within 50 m of row 2
    }
    reasons = {r["row"]: r["reason"] for r in json.loads(report.read_text(encoding="utf-8"))}
    assert "8.99" in reasons[9] and "9.50" in reasons[9]


def test_allow_rejects_writes_the_valid_rows(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    rc = main(
        [
            "stations",
            str(EXAMPLES / "stations_with_errors.csv"),
            "--allow-rejects",
            "--report",
            str(tmp_path / "r.csv"),
            "--no-progress",
        ]
    )
    assert rc == 0 and counts(module_db)["stations"] == 1
    rows = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    assert len(rows) == 11 and set(rows[0]) == {"row", "field", "reason", "value"}


def test_unreadable_file_and_usage_exit_2(tmp_path: Path) -> None:
    assert main(["stations", str(tmp_path / "missing.csv")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["stations", str(bad)]) == 2
    assert main(["stations"]) == 2
    assert main(["stations", "x.csv", "--bogus"]) == 2


def test_geojson_non_point_and_region_from_settings(settings: Settings, clean: None, tmp_path: Path) -> None:
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[100.2, 26.8], [100.3, 26.9]]},
                "properties": {"source_ref": "A"},
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [1.52, 42.51]},
                "properties": {"source_ref": "B", "brand": "repsol"},
            },
        ],
    }
    f = tmp_path / "x.geojson"
    f.write_text(json.dumps(fc), encoding="utf-8")
    s = load_stations(f, settings=settings, dry_run=True)
    assert [(r.row, r.field) for r in s.rejects] == [(1, "geometry"), (2, "lat,lon")]
    andorra = Settings(database_url=settings.database_url, region="andorra")
    assert load_region("andorra").contains(42.51, 1.52)
    s2 = load_stations(f, settings=andorra, dry_run=True)
    assert [(r.row, r.field) for r in s2.rejects] == [(1, "geometry")] and s2.new == 1


def test_dry_run_writes_nothing_and_reports_the_diff(
    settings: Settings, clean: None, module_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)
    before, fp = counts(module_db), fingerprint(module_db)
    rc = main(["stations", str(EXAMPLES / "stations_wgs84.csv"), "--dry-run", "--no-progress"])
    assert rc == 0 and "dry run" in capsys.readouterr().out
    rc = main(["stations", str(EXAMPLES / "stations.json"), "--dry-run", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "2 new, 0 updated" in out and "LJ-NL-007" in out
    assert counts(module_db) == before and fingerprint(module_db) == fp


def test_update_by_key_and_match_by_location(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)
    # same key, new name and price -> updated (version + 1, audit row with the old value)
    f = write_csv(
        tmp_path / "a.csv",
        [
            "LJ-GC-001,中国石化福慧路站,中国石化,福慧路,26.8556,100.2366,wgs84,92;95,24/7,shop,open,8.80,2026-10-02"
        ],
    )
    s = load_stations(f, settings=settings)
    assert (s.new, s.updated) == (0, 1)
    # another code, same brand 20 m away -> the same station, matched by location; other brand -> new
    g = write_csv(
        tmp_path / "b.csv",
        [
            "NEW-9,中国石化福慧路站,sinopec,福慧路,26.8557,100.2367,wgs84,92;95,24/7,shop,open,,",
            "NEW-10,福慧路壳牌,shell,福慧路,26.8557,100.2368,wgs84,92,24/7,,open,,",
        ],
    )
    s = load_stations(g, settings=settings)
    assert (s.new, s.updated, s.unchanged, s.matched_by_location) == (1, 1, 0, 1)
    with psycopg.connect(module_db) as conn:
        assert conn.execute("SELECT station_id FROM station_refs WHERE source_ref = 'NEW-9'").fetchone() == (
            1,
        )
        audit = conn.execute(
            "SELECT old_value->>'name', new_value->>'name' FROM audit_log WHERE entity = 'station'"
            " AND action = 'update' ORDER BY id"
        ).fetchall()
        assert audit[0] == ("中国石化丽江福慧路加油站", "中国石化福慧路站")
    assert load_stations(g, settings=settings).changed == 0  # the alias makes it a key match: unchanged


def test_price_history_from_station_file(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    f1 = write_csv(
        tmp_path / "p1.csv", ["S1,中国石化一号站,sinopec,,26.86,100.24,wgs84,92,24/7,,open,8.70,2026-09-01"]
    )
    f2 = write_csv(
        tmp_path / "p2.csv", ["S1,中国石化一号站,sinopec,,26.86,100.24,wgs84,92,24/7,,open,8.90,2026-10-01"]
    )
    load_stations(f1, settings=settings)
    s = load_stations(f2, settings=settings)
    assert (s.unchanged, s.extra["prices new"]) == (1, 1)
    with psycopg.connect(module_db) as conn:
        assert [r[0] for r in conn.execute("SELECT price_cny::text FROM prices ORDER BY effective_from")] == [
            "8.70",
            "8.90",
        ]
        assert conn.execute("SELECT version FROM stations").fetchone() == (
            2,
        )  # prices bump the station version


def test_an_anomalous_price_in_a_station_file_is_held_for_review(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    f1 = write_csv(
        tmp_path / "h1.csv", ["S1,中国石化一号站,sinopec,,26.86,100.24,wgs84,92,24/7,,open,8.70,2026-09-01"]
    )
    f2 = write_csv(  # 16 percent under the station's last price: plausible, but far beyond a usual step
        tmp_path / "h2.csv", ["S1,中国石化一号站,sinopec,,26.86,100.24,wgs84,92,24/7,,open,7.30,2026-10-01"]
    )
    load_stations(f1, settings=settings)
    s = load_stations(f2, settings=settings)
    assert s.written and (s.extra["prices new"], s.extra["prices held"]) == (0, 1)
    assert "7.30 CNY/L: risk decision" in s.examples["prices held for review"][0]
    with psycopg.connect(module_db) as conn:
        assert [r[0] for r in conn.execute("SELECT price_cny::text FROM prices")] == ["8.70"]
        row = conn.execute(
            "SELECT review_state, action -> 'publish_price' ->> 'price_cny' FROM risk_decisions"
            " WHERE point = 'price' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert row == ("pending", "7.30")


def test_osm_extract_imports_through_the_same_path(module_db: str, shared_data: Path, clean: None) -> None:
    andorra = Settings(database_url=module_db, region="andorra", shared_data_dir=shared_data)
    s = load_stations(shared_data / "osm" / "andorra.osm.pbf", settings=andorra)
    assert s.new >= 17 and not s.rejects and s.written
    with psycopg.connect(module_db) as conn:
        assert conn.execute("SELECT DISTINCT source FROM stations").fetchall() == [("osm",)]
    assert load_stations(shared_data / "osm" / "andorra.osm.pbf", settings=andorra).changed == 0


def test_station_file_prices_must_be_plausible(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    f = tmp_path / "implausible.csv"
    f.write_text(
        "source_ref,name,brand,lat,lon,grades,price_92,price_95,price_98,prices_effective_from\n"
        "P1,中国石化一号站,sinopec,26.86,100.24,92;95,8.80,0.95,,2026-10-01\n"  # 95# typo
        "P2,中国石化二号站,sinopec,26.87,100.25,92;95,8.80,9.40,10.40,2026-10-01\n"  # sells no 98#
        "P3,中国石化三号站,sinopec,26.88,100.26,92;95,99.99,,,2020-01-01\n"  # back-dated, no ceiling then
        "P4,中国石化四号站,sinopec,26.89,100.27,92;95,8.80,9.40,,2026-10-01\n",  # fine
        encoding="utf-8",
    )
    s = load_stations(f, settings=settings)
    assert not s.written and counts(module_db)["stations"] == 0
    got = {(r.row, r.field): r.reason for r in s.rejects}
    assert set(got) == {(2, "price_95"), (3, "price_98"), (4, "prices_effective_from")}
    assert "price.below_band" in got[(2, "price_95")] and "7.23-9.63" in got[(2, "price_95")]
    assert "price.grade_not_sold" in got[(3, "price_98")]
    assert "price.before_first_notice" in got[(4, "prices_effective_from")]


def test_price_for_a_grade_the_matched_station_does_not_sell(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    """Without a grades column, a matched station's stored grades decide (a new one sells nothing yet)."""
    load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)  # LJ-GC-002 sells 92, 95, 0
    f = tmp_path / "no-grades.csv"
    f.write_text(
        "source_ref,name,brand,lat,lon,price_92,price_98,prices_effective_from\n"
        "LJ-GC-002,中国石油丽江香格里拉大道加油站,中国石油,26.8461,100.217,8.80,10.40,2026-10-03\n"
        "NEW-1,中国石化新站,中国石化,26.90,100.30,8.80,,2026-10-03\n",
        encoding="utf-8",
    )
    s = load_stations(f, settings=settings, dry_run=True)
    assert [(r.row, r.field) for r in s.rejects] == [(2, "price_98"), (3, "price_92")]
    assert "price.grade_not_sold" in s.rejects[0].reason


def test_a_file_never_overwrites_a_field_the_manager_set(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    from store._manage import patch_station

    load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)
    with psycopg.connect(module_db) as conn:
        version = conn.execute("SELECT version FROM stations WHERE id = 1").fetchone()
        assert version is not None
        patch_station(conn, 1, version[0], {"name": "福慧路加油站（经理）"}, actor="gc001-manager")
    assert load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings).changed == 0
    text = (EXAMPLES / "stations_wgs84.csv").read_text(encoding="utf-8")
    moved = tmp_path / "moved.csv"
    moved.write_text(
        text.replace("云南省丽江市古城区福慧路128号", "云南省丽江市古城区福慧路130号"), encoding="utf-8"
    )
    s = load_stations(moved, settings=settings)
    assert (s.new, s.updated) == (0, 1)
    with psycopg.connect(module_db) as conn:
        row = conn.execute("SELECT name, address FROM stations WHERE id = 1").fetchone()
        actors = conn.execute(
            "SELECT actor FROM audit_log WHERE entity = 'station' AND entity_id = '1' AND action = 'update'"
            " ORDER BY id"
        ).fetchall()
    assert row == ("福慧路加油站（经理）", "云南省丽江市古城区福慧路130号")
    assert [a for (a,) in actors] == ["gc001-manager", f"cli:{getpass.getuser()}"]


# ---- big files: atomicity under SIGKILL, and speed ---------------------------------------------------


def big_file(path: Path, n: int, *, seed: int = 7) -> Path:
    """n stations on a grid inside the Lijiang boundary (>= 200 m apart), GCJ-02 every third row."""
    region = load_region("lijiang")
    rng = random.Random(seed)
    brands = ["中国石化", "中国石油", "中海油", "壳牌", "加油站"]
    west, south, east, north = region.bbox
    step = 0.002
    written = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "source_ref",
                "name",
                "brand",
                "lat",
                "lon",
                "coord",
                "grades",
                "opening_hours",
                "amenities",
                "price_92",
                "price_95",
                "prices_effective_from",
            ]
        )
        lat = south + 0.01
        while written < n:
            lon = west + 0.01
            while lon < east and written < n:
                if region.contains(lat, lon):
                    coord = "gcj02" if written % 3 == 0 else "wgs84"
                    a, b = from_wgs84(lat, lon, coord)
                    w.writerow(
                        [
                            f"GEN-{written}",
                            f"测试加油站{written}",
                            rng.choice(brands),
                            f"{a:.7f}",
                            f"{b:.7f}",
                            coord,
                            "92;95;0",
                            "24/7",
                            "shop",
                            "8.50",
                            "9.10",
                            "2026-10-01T00:00:00+08:00",
                        ]
                    )
                    written += 1
                lon += step
            lat += step
            assert lat < north, "the region is too small for n"
    return path


def _env(module_db: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": module_db, "FUEL_REGION": "lijiang", "PYTHONUNBUFFERED": "1"})
    return env


@pytest.mark.slow
def test_sigkill_while_writing_leaves_the_database_as_it_was(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)
    before = counts(module_db)
    f = big_file(tmp_path / "big.csv", 60_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "stations", str(f), "--no-progress"],
        cwd=PROJECT_ROOT,
        env=_env(module_db),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen_write = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "] writing " in line:  # the phase line printed just before the INSERT/UPDATE
                seen_write = True
                break
        assert seen_write, "the loader never reached the write phase"
        # the staged rows are in the open transaction: wait until the server works on them, then kill
        with psycopg.connect(module_db, autocommit=True) as conn:
            for _ in range(400):
                busy = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'active' AND query ILIKE '%%INSERT INTO stations%%'"
                    " AND pid <> pg_backend_pid()"
                ).fetchone()
                if busy and busy[0]:
                    break
                time.sleep(0.005)
            assert busy and busy[0], "never saw the INSERT running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.5)  # the server notices the dropped connection and rolls back
    assert counts(module_db) == before


@pytest.mark.slow
def test_100k_rows_load_and_reload_is_a_noop(
    settings: Settings, clean: None, module_db: str, tmp_path: Path
) -> None:
    f = big_file(tmp_path / "100k.csv", 100_000)
    t0 = time.perf_counter()
    s = load_stations(f, settings=settings)
    first = time.perf_counter() - t0
    assert s.new == 100_000 and not s.rejects, s.render()
    t0 = time.perf_counter()
    s2 = load_stations(f, settings=settings)
    second = time.perf_counter() - t0
    print(f"\n100k stations (+200k prices, audit rows): first load {first:.1f} s, reload {second:.1f} s")
    assert s2.changed == 0 and s2.extra["prices new"] == 0
    assert counts(module_db)["stations"] == 100_000
