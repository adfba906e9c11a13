"""`python -m ingest pumps` (validation, reject report, atomicity, idempotence, audit) and `python -m ingest
qr` (PNG codes read back with a real QR decoder, tokens kept, rotated and revoked), on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import zxingcpp
from PIL import Image

from config import PROJECT_ROOT, Settings
from ingest._guidance import load_guidance_file
from ingest._pumps import load_pumps
from ingest._stations import load_stations
from store._nozzles import TOKEN_CHARS, NozzleTokenInvalid, NozzleTokenRevoked, resolve
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY

EXAMPLES = PROJECT_ROOT / "data" / "examples"
GOOD = """station,pump_no,nozzle_no,grade,label,active
LJ-GC-001,1,1,92#,1号枪,true
LJ-GC-001,1,2,95,1号枪,
LJ-GC-001,2,1,0,2号枪,yes
LJ-GC-002,1,1,92,,
"""


@pytest.fixture(scope="module")
def settings(module_db: str, shared_data: Path) -> Settings:
    with psycopg.connect(module_db) as conn:  # the example stations' prices are checked against them
        load_guidance_file(conn, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
    return Settings(database_url=module_db, region="lijiang", shared_data_dir=shared_data)


@pytest.fixture()
def stations(settings: Settings, module_db: str) -> Iterator[None]:
    with psycopg.connect(module_db) as conn:
        conn.execute("TRUNCATE stations, station_refs, audit_log RESTART IDENTITY CASCADE")
    load_stations(EXAMPLES / "stations_wgs84.csv", settings=settings)  # LJ-GC-001 = 1 (92, 95, 98, 0) ...
    yield


def rows(module_db: str, sql: str) -> list[tuple]:
    with psycopg.connect(module_db) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[return-value]


def cli(module_db: str, *args: str, reports: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": module_db,
        "FUEL_ENV": "test",
        "FUEL_SECRET_KEY": TEST_SECRET_KEY,
        "FUEL_ADMIN_API_KEY": TEST_ADMIN_KEY,
        "FUEL_REGION": "lijiang",
    }
    if reports is not None:
        env["FUEL_ONBOARDING_REPORTS_DIR"] = str(reports)
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=120,
    )


def test_a_good_file_loads_once_and_again_changes_nothing(
    stations: None, settings: Settings, module_db: str, tmp_path: Path
) -> None:
    f = tmp_path / "pumps.csv"
    f.write_text(GOOD, encoding="utf-8")
    s = load_pumps(f, settings=settings, actor="test")
    assert (s.new, s.updated, s.unchanged, s.rejected_rows, s.written) == (4, 0, 0, 0, True)
    assert s.extra == {"pumps new": 3, "pumps updated": 0}
    assert rows(
        module_db, "SELECT station_id, pump_no, nozzle_no, grade, active FROM nozzles ORDER BY 1, 2, 3"
    ) == [
        (1, 1, 1, "92", True),
        (1, 1, 2, "95", True),
        (1, 2, 1, "0", True),
        (2, 1, 1, "92", True),
    ]
    assert rows(module_db, "SELECT label FROM pumps ORDER BY station_id, pump_no") == [
        ("1号枪",),
        ("2号枪",),
        ("",),
    ]
    audit = rows(module_db, "SELECT actor, action, entity FROM audit_log WHERE entity IN ('pump', 'nozzle')")
    assert len(audit) == 7 and {a[0] for a in audit} == {"test"}
    again = load_pumps(f, settings=settings, actor="test")
    assert (again.new, again.updated, again.unchanged) == (0, 0, 4)
    assert len(rows(module_db, "SELECT 1 FROM audit_log WHERE entity IN ('pump', 'nozzle')")) == 7
    # a change: a grade, a nozzle out of service, a label (JSON this time)
    j = tmp_path / "pumps.json"
    j.write_text(
        json.dumps(
            {
                "pumps": [
                    {"station_id": 1, "pump": 1, "nozzle": 1, "grade": "98", "label": "A岛"},
                    {
                        "station_ref": "LJ-GC-001",
                        "pump_no": 1,
                        "nozzle_no": 2,
                        "grade": "95",
                        "label": "A岛",
                        "active": False,
                    },
                ]
            }
        ),
        encoding="utf-8",
    )
    changed = load_pumps(j, settings=settings, actor="test")
    assert (changed.new, changed.updated, changed.unchanged) == (0, 2, 0)
    assert changed.extra["pumps updated"] == 1
    assert rows(
        module_db, "SELECT grade, active FROM nozzles WHERE station_id = 1 AND pump_no = 1 ORDER BY nozzle_no"
    ) == [
        ("98", True),
        ("95", False),
    ]
    old = rows(
        module_db,
        "SELECT old_value, new_value FROM audit_log WHERE entity = 'nozzle' AND action = 'update' ORDER BY id",
    )
    assert old[0] == ({"grade": "92", "active": True}, {"grade": "98", "active": True})


def test_rejects_name_the_rule_and_nothing_is_written(
    stations: None, settings: Settings, module_db: str, tmp_path: Path
) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(
        GOOD
        + "LJ-GC-002,1,2,98,,\n"  # station 2 does not sell 98
        + "LJ-GC-001,100,1,92,,\n"  # pump out of range
        + "LJ-GC-001,1,10,92,1号枪,\n"  # nozzle out of range
        + "LJ-NOPE,1,1,92,,\n"  # unknown station
        + "LJ-GC-001,1,1,95,1号枪,\n"  # the same nozzle twice
        + "LJ-GC-001,2,2,92,二号,\n"  # another label for pump 2
        + "LJ-GC-001,3,1,93,,\n"  # unknown grade
        + "LJ-GC-001,x,1,92,,\n",  # not a number
        encoding="utf-8",
    )
    s = load_pumps(f, settings=settings, actor="test")
    assert not s.written and s.rejected_rows == 8
    reasons = {r.row: r.reason for r in s.rejects}
    assert "nozzle.grade_not_sold" in reasons[6] and "does not sell 98#" in reasons[6]
    assert "nozzle.pump_no" in reasons[7]
    assert "nozzle.nozzle_no" in reasons[8]
    assert "no station with code LJ-NOPE" in reasons[9]
    assert "as row 2" in reasons[10]
    assert "labelled '2号枪' in row 4" in reasons[11]
    assert "unknown grade '93'" in reasons[12]
    assert "whole number" in reasons[13]
    assert rows(module_db, "SELECT count(*) FROM nozzles") == [(0,)]
    assert rows(module_db, "SELECT count(*) FROM audit_log WHERE entity IN ('pump', 'nozzle')") == [(0,)]
    # the command line: exit 1, a reject report in the reports directory; --dry-run writes nothing either
    run = cli(module_db, "pumps", str(f), "--no-progress", reports=tmp_path / "reports")
    assert run.returncode == 1, run.stderr
    report = (tmp_path / "reports" / "bad.csv.rejects.csv").read_text(encoding="utf-8")
    assert "nozzle.grade_not_sold" in report
    dry = cli(
        module_db,
        "pumps",
        str(f),
        "--dry-run",
        "--allow-rejects",
        "--no-progress",
        reports=tmp_path / "reports",
    )
    assert dry.returncode == 0 and "dry run" in dry.stdout
    assert rows(module_db, "SELECT count(*) FROM nozzles") == [(0,)]
    partial = cli(
        module_db, "pumps", str(f), "--allow-rejects", "--no-progress", reports=tmp_path / "reports"
    )
    assert partial.returncode == 0, partial.stderr
    assert rows(module_db, "SELECT count(*) FROM nozzles") == [(4,)]
    assert cli(module_db, "pumps", "--help").returncode == 0


def decode(path: Path) -> str:
    found = zxingcpp.read_barcodes(Image.open(path))
    assert len(found) == 1 and found[0].format == zxingcpp.BarcodeFormat.QRCode, path
    return str(found[0].text)


def test_qr_codes_decode_to_the_page_and_a_token_that_resolves(
    stations: None, settings: Settings, module_db: str, tmp_path: Path
) -> None:
    f = tmp_path / "pumps.csv"
    f.write_text(GOOD, encoding="utf-8")
    load_pumps(f, settings=settings, actor="test")
    out = tmp_path / "codes"
    run = cli(module_db, "qr", "--station", "1", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "3 codes" in run.stdout and "3 new tokens" in run.stdout
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [
        "station-1-pump-1-nozzle-1.png",
        "station-1-pump-1-nozzle-2.png",
        "station-1-pump-2-nozzle-1.png",
    ]
    scenes = {}
    with psycopg.connect(module_db) as conn:
        for p in pngs:
            text = decode(p)
            page, _, scene = text.partition("?scene=")
            assert page == "pages/pump/index" and len(scene) == TOKEN_CHARS <= 32 and scene.isascii()
            nozzle = resolve(conn, scene, secret_key=TEST_SECRET_KEY)
            assert (
                p.name == f"station-{nozzle.station_id}-pump-{nozzle.pump_no}-nozzle-{nozzle.nozzle_no}.png"
            )
            scenes[p.name] = scene
        with pytest.raises(NozzleTokenInvalid):
            resolve(conn, scene, secret_key="another-secret-0123456789abcdefghij")  # another key: not ours
    listed = (out / "station-1-codes.csv").read_text(encoding="utf-8")
    assert all(s in listed for s in scenes.values())
    # again: the same codes; --rotate: new ones, the old ones revoked
    again = cli(module_db, "qr", "--station", "1", "--out", str(out))
    assert "0 new tokens, 3 kept" in again.stdout
    assert {p.name: decode(p).partition("?scene=")[2] for p in pngs} == scenes
    rotated = cli(module_db, "qr", "--station", "1", "--out", str(out), "--rotate", "--actor", "ops")
    assert "3 new tokens" in rotated.stdout, rotated.stderr
    new = {p.name: decode(p).partition("?scene=")[2] for p in pngs}
    assert not set(new.values()) & set(scenes.values())
    with psycopg.connect(module_db) as conn:
        with pytest.raises(NozzleTokenRevoked):
            resolve(conn, scenes["station-1-pump-1-nozzle-1.png"], secret_key=TEST_SECRET_KEY)
        assert resolve(conn, new["station-1-pump-1-nozzle-1.png"], secret_key=TEST_SECRET_KEY).grade == "92"
    # one sticker revoked by hand
    one = new["station-1-pump-2-nozzle-1.png"]
    revoked = cli(module_db, "qr", "--revoke", one)
    assert revoked.returncode == 0 and revoked.stdout.strip() == "revoked"
    assert cli(module_db, "qr", "--revoke", one).stdout.strip() == "already revoked"
    assert cli(module_db, "qr", "--revoke", "not-a-token").returncode == 2
    # a token is base64url: one starting with "-" is still the option's value, not an option
    dashed = cli(module_db, "qr", "--revoke", "-" + one[1:])
    assert dashed.returncode == 2 and dashed.stderr.startswith("qr --revoke:"), dashed.stderr
    audit = rows(
        module_db, "SELECT actor, action, new_value FROM audit_log WHERE entity = 'nozzle_token' ORDER BY id"
    )
    assert [a[1] for a in audit] == ["create"] * 3 + ["update"] * 3 + ["create"] * 3 + ["update"]
    assert audit[3][0] == "ops" and audit[3][2] == {"revoked": True, "why": "rotated"}
    # a station without nozzles, and one that does not exist
    assert cli(module_db, "qr", "--station", "3", "--out", str(out)).returncode == 1
    missing = cli(module_db, "qr", "--station", "999", "--out", str(out))
    assert missing.returncode == 1 and "station 999 not found" in missing.stderr
