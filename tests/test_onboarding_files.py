"""Onboarding what stations actually send, as an operator runs it (`python -m ingest ...` in a subprocess,
real PostgreSQL): Excel's CSV on Chinese Windows (GB18030, CRLF, a BOM in front of GBK bytes), .xlsx,
empty files, Chinese grades/hours/days, GCJ-02 points marked wgs84, --region and FUEL_EXTRACT, stale
official ceilings (CLI and API), reject reports in the reports directory, and the README's examples."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from openpyxl import Workbook

from config import PROJECT_ROOT, Settings, load_region
from geo._adjustments import ceiling_staleness, next_window
from geo._coords import from_wgs84
from geo._hours import normalize_opening_hours
from geo._pricing import normalize_grade
from ingest._guidance import load_guidance_file
from ingest._promotions import load_promotions
from tests._servers import TEST_ADMIN_KEY, Server

EXAMPLES = PROJECT_ROOT / "data" / "examples"
EXAMPLE_CSV = EXAMPLES / "stations_wgs84.csv"


@pytest.fixture(scope="module")
def db(module_db: str, shared_data: Path) -> str:
    with psycopg.connect(module_db) as conn:
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
    return module_db


@pytest.fixture()
def clean(db: str) -> Iterator[str]:
    def wipe() -> None:
        with psycopg.connect(db) as conn:
            conn.execute(
                "TRUNCATE stations, station_refs, prices, promotions, audit_log RESTART IDENTITY CASCADE"
            )

    wipe()
    yield db
    wipe()


@pytest.fixture()
def reports(tmp_path: Path) -> Path:
    return tmp_path / "reports"


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def ingest(db: str, reports: Path, *args: str, real: bool = False, **env_extra: str) -> Ran:
    """`python -m ingest ARGS` as an operator runs it, with no FUEL_* settings but the test database's:
    in a subprocess (`real`: each reproduction's first command), else through the same `main()` in this
    process (the same code path without three seconds of interpreter start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUEL_")}
    env.update(DATABASE_URL=db, PYTHONUNBUFFERED="1", FUEL_ONBOARDING_REPORTS_DIR=str(reports), **env_extra)
    if real:
        p = subprocess.run(
            [sys.executable, "-m", "ingest", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        return Ran(p.returncode, p.stdout, p.stderr)
    from contextlib import redirect_stderr, redirect_stdout

    from config import get_settings
    from ingest.__main__ import main

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        get_settings.cache_clear()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    return Ran(code, out.getvalue(), err.getvalue())


def rows(db: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(query, params).fetchall()


def stations(db: str) -> list[tuple[Any, ...]]:
    return rows(
        db,
        "SELECT source_ref, name, brand, address, round(ST_Y(geom)::numeric, 6), round(ST_X(geom)::numeric, 6),"
        " grades, opening_hours, amenities FROM stations ORDER BY source_ref",
    )


def prices(db: str) -> list[tuple[Any, ...]]:
    return rows(
        db,
        "SELECT s.source_ref, p.grade, p.price_cny FROM prices p JOIN stations s ON s.id = p.station_id"
        " ORDER BY 1, 2",
    )


def example_rows() -> tuple[list[str], list[list[str]]]:
    with EXAMPLE_CSV.open(encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    return table[0], table[1:]


def csv_text(header: list[str], body: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header, *body])
    return out.getvalue()


# ---- formats: GB18030, CRLF, BOM before GBK bytes, .xlsx, empty files --------------------------------


@pytest.mark.parametrize("prefix", [b"", b"\xef\xbb\xbf"], ids=["gbk", "utf8-bom-then-gbk"])
def test_csv_saved_by_excel_on_chinese_windows_loads(
    clean: str, reports: Path, tmp_path: Path, prefix: bytes
) -> None:
    header, body = example_rows()
    f = tmp_path / "加油站.csv"
    f.write_bytes(prefix + csv_text(header, body).encode("gb18030"))
    assert b"\r\n" in f.read_bytes()
    run = ingest(clean, reports, "stations", str(f), "--region", "lijiang", "--no-progress", real=not prefix)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 new" in run.stdout
    # the same stations as the UTF-8 example file gives
    got = stations(clean)
    assert [r[1] for r in got] == [
        "中国石化丽江福慧路加油站",
        "中国石油丽江香格里拉大道加油站",
        "中国石化束河加油站",
        "中国石油黄山镇加油站",
    ]
    assert got[0][2] == "sinopec" and got[0][3] == "云南省丽江市古城区福慧路128号"
    again = ingest(clean, reports, "stations", str(EXAMPLE_CSV), "--region", "lijiang", "--no-progress")
    assert again.returncode == 0 and "0 new, 0 updated, 4 unchanged" in again.stdout, again.stdout


def test_undecodable_text_is_a_clear_error(clean: str, reports: Path, tmp_path: Path) -> None:
    f = tmp_path / "broken.csv"
    f.write_bytes(b"source_ref,name\r\nA,\x81\x30\xff\xff\r\n")
    run = ingest(clean, reports, "stations", str(f), "--region", "lijiang")
    assert run.returncode == 2
    assert "neither UTF-8 nor GB18030" in run.stderr and "Traceback" not in run.stderr


def _xlsx(path: Path, header: list[str] | None, body: list[list[Any]], *, title: str | None = None) -> Path:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    if title is not None:  # a title above the table, merged across it as station staff do
        ws.append([title])
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header or [1]))
    if header is not None:
        ws.append(header)
    for r in body:
        ws.append(r)
    wb.save(path)
    return path


def _typed(header: list[str], row: list[str]) -> list[Any]:
    """A row as Excel keeps it: numbers as numbers, empty cells empty."""
    out: list[Any] = []
    for k, v in zip(header, row, strict=True):
        if v == "":
            out.append(None)
        elif k in ("lat", "lon") or k.startswith("price_"):
            out.append(float(v))
        else:
            out.append(v)
    return out


def test_xlsx_loads_like_the_csv(clean: str, reports: Path, tmp_path: Path) -> None:
    header, body = example_rows()
    f = _xlsx(tmp_path / "stations.xlsx", header, [_typed(header, r) for r in body], title="丽江加油站信息表")
    dry = ingest(clean, reports, "stations", str(f), "--region", "lijiang", "--dry-run", "--no-progress")
    assert dry.returncode == 0 and "would be stations: 4 new" in dry.stdout, dry.stdout + dry.stderr
    run = ingest(clean, reports, "stations", str(f), "--region", "lijiang", "--no-progress", real=True)
    assert run.returncode == 0, run.stdout + run.stderr
    from_xlsx, xlsx_prices = stations(clean), prices(clean)
    assert len(from_xlsx) == 4 and len(xlsx_prices) == 13
    # the CSV of the same rows changes nothing: every value was read the same
    again = ingest(clean, reports, "stations", str(EXAMPLE_CSV), "--region", "lijiang", "--no-progress")
    assert again.returncode == 0 and "0 new, 0 updated, 4 unchanged" in again.stdout, again.stdout
    assert "prices new: 0" in again.stdout and "prices updated: 0" in again.stdout
    assert stations(clean) == from_xlsx and prices(clean) == xlsx_prices


def test_xlsx_rejects_name_the_sheet_row(clean: str, reports: Path, tmp_path: Path) -> None:
    header, body = example_rows()
    bad = _typed(header, body[1])
    bad[header.index("lat")] = 126.87
    f = _xlsx(tmp_path / "bad.xlsx", header, [_typed(header, body[0]), bad], title="加油站")
    run = ingest(clean, reports, "stations", str(f), "--region", "lijiang", "--no-progress")
    assert run.returncode == 1
    assert "row 4 lat: must be between -90 and 90" in run.stdout  # the sheet's row: title, header, 2 rows
    assert stations(clean) == []


@pytest.mark.parametrize(
    "name,content",
    [
        ("empty.csv", b""),
        ("header-only.csv", "source_ref,name,lat,lon\r\n".encode("gb18030")),
        ("blank-lines.csv", b"source_ref,name,lat,lon\r\n\r\n,,,\r\n"),
        ("empty.json", b"[]"),
        ("empty.xlsx", None),
        ("header-only.xlsx", None),
    ],
)
def test_an_empty_file_is_an_error(
    clean: str, reports: Path, tmp_path: Path, name: str, content: bytes | None
) -> None:
    f = tmp_path / name
    if content is not None:
        f.write_bytes(content)
    elif name == "empty.xlsx":
        _xlsx(f, None, [])
    else:
        _xlsx(f, ["source_ref", "name", "lat", "lon"], [])
    for command in ("stations", "prices", "promotions"):
        run = ingest(
            clean,
            reports,
            command,
            str(f),
            "--region",
            "lijiang",
            "--no-progress",
            real=command == "stations" and name == "empty.xlsx",
        )
        assert run.returncode == 2, (command, run.stdout, run.stderr)
        assert "nothing to load" in run.stderr, run.stderr
        assert "written" not in run.stdout and "0 new" not in run.stdout
    assert stations(clean) == []


# ---- Chinese wording: grades, full-width separators, hours, days ------------------------------------


def test_chinese_grades_hours_and_separators_load(clean: str, reports: Path, tmp_path: Path) -> None:
    f = tmp_path / "cn.csv"
    f.write_text(
        "source_ref,name,brand,lat,lon,grades,opening_hours,price_92,price_0,prices_effective_from\n"
        'LJ-CN-1,中国石化测试站一,中国石化,26.8700,100.2400,"92号，95号；0号柴油",24小时,8.80,8.50,2026-10-01\n'
        "LJ-CN-2,中国石油测试站二,中国石油,26.8800,100.2500,92#，95#,全天营业,8.80,,2026-10-01\n"
        "LJ-CN-3,中国石油测试站三,中国石油,26.8900,100.2600,９２＃、0#柴油,每天 07：00－22：00,,,\n",
        encoding="utf-8",
    )
    run = ingest(clean, reports, "stations", str(f), "--region", "lijiang", "--no-progress", real=True)
    assert run.returncode == 0, run.stdout + run.stderr
    got = {r[0]: (r[6], r[7]) for r in stations(clean)}
    assert got == {
        "LJ-CN-1": (["92", "95", "0"], "24/7"),
        "LJ-CN-2": (["92", "95"], "24/7"),
        "LJ-CN-3": (["92", "0"], "Mo-Su 07:00-22:00"),
    }
    assert ("LJ-CN-1", "0", 8.5) in [(a, b, float(c)) for a, b, c in prices(clean)]
    feed = tmp_path / "prices.csv"
    feed.write_text(
        "station,grade,price_cny,effective_from\nLJ-CN-1,0号柴油,8.52,2026-10-02\nLJ-CN-2,92号,8.82,2026-10-02\n",
        encoding="utf-8",
    )
    p = ingest(clean, reports, "prices", str(feed), "--region", "lijiang", "--no-progress")
    assert p.returncode == 0 and "prices: 2 new" in p.stdout, p.stdout + p.stderr


def test_weekend_promotion_in_chinese(clean: str, reports: Path, tmp_path: Path, db: str) -> None:
    f = tmp_path / "cn.csv"
    f.write_text(
        "source_ref,name,brand,lat,lon,grades\nLJ-CN-1,中国石化测试站一,中国石化,26.87,100.24,92号;95号\n",
        encoding="utf-8",
    )
    assert ingest(clean, reports, "stations", str(f), "--region", "lijiang").returncode == 0
    promo = tmp_path / "promo.csv"
    promo.write_text(
        "source_ref,station,title,grades,kind,value,days_of_week,valid_from\n"
        "P1,LJ-CN-1,周末优惠,92号,cny_off_per_litre,0.30,周六;周日,2026-10-01\n"
        "P2,LJ-CN-1,工作日优惠,95#,percent_off,3,周一至周五,2026-10-01\n",
        encoding="utf-8",
    )
    s = load_promotions(promo, settings=Settings(database_url=db), region="lijiang", actor="test")
    assert s.written and s.new == 2, s.render()
    assert rows(db, "SELECT source_ref, grades, days_of_week FROM promotions ORDER BY source_ref") == [
        ("P1", ["92"], [6, 7]),
        ("P2", ["95"], [1, 2, 3, 4, 5]),
    ]


def test_grade_and_hours_wording_is_normalised() -> None:
    for text, grade in [
        ("92号", "92"),
        ("0号柴油", "0"),
        ("０#柴油", "0"),
        ("95号汽油", "95"),
        ("98#", "98"),
    ]:
        assert normalize_grade(text) == grade, text
    for text in ("92号柴油", "0号汽油", "93号", "-10号柴油", "汽油", ""):
        assert normalize_grade(text) is None, text
    assert normalize_opening_hours("24小时") == normalize_opening_hours("全天营业") == "24/7"
    assert normalize_opening_hours("Mo-Fr 06:30-23:00") == "Mo-Fr 06:30-23:00"


# ---- GCJ-02 points marked wgs84 --------------------------------------------------------------------


def test_gcj02_points_marked_wgs84_are_flagged(clean: str, reports: Path, tmp_path: Path) -> None:
    assert ingest(clean, reports, "stations", str(EXAMPLE_CSV), "--region", "lijiang").returncode == 0
    header, body = example_rows()
    first = dict(zip(header, body[0], strict=True))  # LJ-GC-001 at its WGS-84 point
    g_lat, g_lon = from_wgs84(float(first["lat"]), float(first["lon"]), "gcj02")
    # the same station again, its Amap (GCJ-02) point marked wgs84: it would move about 400 m
    moved = dict(first, lat=f"{g_lat:.6f}", lon=f"{g_lon:.6f}")
    f = tmp_path / "amap.csv"
    f.write_text(csv_text(header, [list(moved.values())]), encoding="utf-8")
    run = ingest(
        clean, reports, "stations", str(f), "--region", "lijiang", "--dry-run", "--no-progress", real=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"row 2: moves station 1 \(中国石化丽江福慧路加油站\) by [3-6]\d\d m", run.stdout), (
        run.stdout
    )
    assert "these look like GCJ-02 coordinates" in run.stdout and "station 1 " in run.stdout
    # under another code: matching (50 m) misses it, so it would be a second station beside the first
    dup = dict(moved, source_ref="AMAP-0001")
    f.write_text(csv_text(header, [list(dup.values())]), encoding="utf-8")
    run = ingest(clean, reports, "stations", str(f), "--region", "lijiang", "--no-progress")
    assert run.returncode == 0 and "1 new" in run.stdout, run.stdout
    assert re.search(
        r"same name and brand as station 1 \(中国石化丽江福慧路加油站\) [3-6]\d\d m away", run.stdout
    )
    assert "these look like GCJ-02 coordinates" in run.stdout
    # two rows of one file with the same name and brand 300 m apart: one station given twice?
    twice = [
        dict(first, source_ref="X-1"),
        dict(first, source_ref="X-2", lat=f"{float(first['lat']) + 0.0027:.6f}"),
    ]
    f.write_text(csv_text(header, [list(r.values()) for r in twice]), encoding="utf-8")
    run = ingest(clean, reports, "stations", str(f), "--region", "lijiang", "--dry-run", "--no-progress")
    assert re.search(r"row 3: same name and brand as row 2 \(X-1\) 30\d m away", run.stdout), run.stdout
    # the same row marked gcj02 lands on the stored station: no warning, nothing moves
    right = dict(first, lat=f"{g_lat:.6f}", lon=f"{g_lon:.6f}", coord="gcj02")
    f.write_text(csv_text(header, [list(right.values())]), encoding="utf-8")
    ok = ingest(clean, reports, "stations", str(f), "--region", "lijiang", "--dry-run", "--no-progress")
    assert ok.returncode == 0 and "moves station" not in ok.stdout and "GCJ-02" not in ok.stdout, ok.stdout


# ---- region and extract ----------------------------------------------------------------------------


def test_region_option_and_settings(clean: str, reports: Path, tmp_path: Path) -> None:
    f = str(EXAMPLE_CSV)
    # no Lijiang extract on disk: the served region is the demo stand-in, which rejects Lijiang rows
    served = ingest(clean, reports, "stations", f, "--dry-run", "--no-progress", real=True)
    assert served.returncode == 1 and "outside the served region" in served.stdout, served.stdout
    by_option = ingest(clean, reports, "stations", f, "--dry-run", "--region", "lijiang", "--no-progress")
    assert by_option.returncode == 0 and "region=lijiang" in by_option.stdout, by_option.stdout
    by_env = ingest(clean, reports, "stations", f, "--dry-run", "--no-progress", FUEL_REGION="lijiang")
    assert by_env.returncode == 0 and "4 new" in by_env.stdout, by_env.stdout + by_env.stderr
    missing = ingest(
        clean, reports, "stations", f, "--no-progress", FUEL_EXTRACT="/nonexistent/lijiang.osm.pbf", real=True
    )
    assert (
        missing.returncode == 2
        and "FUEL_EXTRACT=/nonexistent/lijiang.osm.pbf: no such file" in missing.stderr
    )
    unknown = ingest(clean, reports, "prices", str(EXAMPLES / "prices.csv"), "--region", "atlantis")
    assert unknown.returncode == 2 and "unknown region 'atlantis'" in unknown.stderr
    assert stations(clean) == []


# ---- stale official ceilings -----------------------------------------------------------------------


def test_adjustment_windows_follow_the_official_2026_calendar(shared_data: Path) -> None:
    doc = json.loads((shared_data / "prices" / "adjustment_calendar_2026.json").read_text(encoding="utf-8"))
    dates = [date.fromisoformat(d["date"]) for d in doc["adjustment_dates"]]
    calendar = load_region("lijiang").holidays
    assert next_window(date.fromisoformat(doc["anchor_previous_adjustment_date"]), calendar) == dates[0]
    for before, after in itertools.pairwise(dates):
        assert next_window(before, calendar) == after
    # ceilings of 2026-09-24 on 2026-11-26: four windows have passed
    s = ceiling_staleness(date(2026, 9, 24), date(2026, 11, 26), calendar)
    assert s.stale and s.missed_windows == (
        date(2026, 10, 15),
        date(2026, 10, 29),
        date(2026, 11, 12),
        date(2026, 11, 26),
    )
    assert "4 adjustment windows have passed" in (s.message() or "")
    fresh = ceiling_staleness(date(2026, 11, 12), date(2026, 11, 25), calendar)
    assert not fresh.stale and fresh.message() is None and fresh.next_window == date(2026, 11, 26)
    assert ceiling_staleness(None, date(2026, 11, 25), calendar).stale


def _newest_window_today() -> date:
    calendar = load_region("lijiang").holidays
    today = load_region("lijiang").now().date()
    s = ceiling_staleness(date(2026, 9, 24), today, calendar)
    return s.last_window or date(2026, 9, 24)


def test_stale_ceilings_warn_in_the_cli(clean: str, reports: Path) -> None:
    if _newest_window_today() == date(2026, 9, 24):
        pytest.skip("the clock is before the first window after the shared notices")
    g = ingest(clean, reports, "guidance", FUEL_REGION="lijiang", real=True)
    assert g.returncode == 0 and "the official price ceilings are stale" in g.stderr, g.stderr
    assert "newest notice is of 2026-09-24" in g.stderr
    run = ingest(
        clean, reports, "stations", str(EXAMPLE_CSV), "--region", "lijiang", "--dry-run", "--no-progress"
    )
    assert run.returncode == 0 and "the official price ceilings are stale" in run.stdout, run.stdout
    feed = ingest(clean, reports, "prices", str(EXAMPLES / "prices.csv"), "--region", "lijiang", "--dry-run")
    assert "the official price ceilings are stale" in feed.stdout, feed.stdout + feed.stderr


def test_ceilings_endpoint_shows_staleness(clean: str) -> None:
    server = Server(clean)  # the demo region: Lijiang's clock, price zone and holiday calendar
    try:
        unauth = httpx.get(server.base + "/v1/manage/ceilings", timeout=10)
        assert unauth.status_code == 401 and "error" in unauth.json()
        r = httpx.get(server.base + "/v1/manage/ceilings", headers={"X-API-Key": TEST_ADMIN_KEY}, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["zone"] == "yunnan-4" and body["newest_notice"] == "2026-09-24"
        by_grade = {c["grade"]: c for c in body["ceilings"]}
        assert set(by_grade) == {"89", "92", "95", "0"} and by_grade["92"]["notice_date"] == "2026-09-24"
        assert by_grade["92"]["effective_from"] == "2026-09-25T00:00:00+08:00"
        last = _newest_window_today()
        assert body["stale"] is (last > date(2026, 9, 24))
        assert body["last_adjustment_window"] == last.isoformat()
        if body["stale"]:
            assert body["missed_windows"][0] == "2026-10-15" and "stale" in body["warning"]
    finally:
        server.close()


# ---- reject reports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "load"])
def test_reject_reports_go_to_the_reports_directory(
    clean: str, reports: Path, tmp_path: Path, dry_run: bool
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "stations_with_errors.csv"
    f.write_bytes((EXAMPLES / "stations_with_errors.csv").read_bytes())
    inbox.chmod(0o555)  # the operator's folder may be read-only (a share, a USB stick)
    try:
        args = ["stations", str(f), "--region", "lijiang", "--no-progress"] + (
            ["--dry-run"] if dry_run else []
        )
        run = ingest(clean, reports, *args, real=True)
    finally:
        inbox.chmod(0o755)
    assert run.returncode == 1, run.stdout + run.stderr
    report = reports / "stations_with_errors.csv.rejects.csv"
    assert "reject report" in run.stdout and str(report) in run.stdout
    assert sorted(p.name for p in inbox.iterdir()) == ["stations_with_errors.csv"]
    text = report.read_text(encoding="utf-8")
    assert text.startswith("row,field,reason,value") and "source_ref,is required" in text
    assert stations(clean) == []


# ---- the README's examples, verbatim --------------------------------------------------------------


def _readme_commands() -> list[str]:
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    block = text.split("```", 2)[1]
    return [
        line.split("  #")[0].strip()
        for line in block.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_readme_examples_onboard_as_documented(clean: str, reports: Path) -> None:
    commands = _readme_commands()
    assert any("--region" in c or "FUEL_REGION" in c for c in commands)
    env_extra: dict[str, str] = {}
    for command in commands:
        words = shlex.split(command)
        if words[0] == "export":
            key, _, value = words[1].partition("=")
            env_extra[key] = value
            continue
        assert words[:3] == ["python", "-m", "ingest"], command
        run = ingest(clean, reports, *words[3:], **env_extra)
        assert run.returncode == 0, (command, run.stdout, run.stderr)
        assert "rejected" not in run.stdout or " 0 rejected" in run.stdout, (command, run.stdout)
    refs = {r[0] for r in stations(clean)}
    assert {"LJ-GC-001", "LJ-YS-005", "LJ-GC-008"} <= refs
    assert rows(clean, "SELECT count(*) FROM promotions")[0][0] == 5
