"""`python -m ingest od-pairs`: seeded, reproducible origin-destination pairs on the drivable graph."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import osmium
import pytest

from ingest.__main__ import main


@pytest.fixture(scope="module")
def oakland(shared_data: Path) -> Path:
    return shared_data / "osm" / "west_oakland.osm.bz2"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("graphs")


def _run(extract: Path, out: Path, cache_dir: Path, *extra: str) -> dict[str, Any]:
    rc = main(["od-pairs", str(extract), "--out", str(out), "--cache-dir", str(cache_dir), *extra])
    assert rc == 0
    return json.loads(out.read_text(encoding="utf-8"))


def _extract_bbox(path: Path) -> tuple[float, float, float, float]:
    lats, lons = [], []
    for obj in osmium.FileProcessor(str(path), osmium.osm.NODE):
        if isinstance(obj, osmium.osm.Node) and obj.location.valid():
            lats.append(obj.location.lat)
            lons.append(obj.location.lon)
    return min(lons), min(lats), max(lons), max(lats)


def test_same_seed_same_file(oakland: Path, cache_dir: Path, tmp_path: Path) -> None:
    _run(oakland, tmp_path / "a.json", cache_dir, "--n", "25", "--seed", "7")
    _run(oakland, tmp_path / "b.json", cache_dir, "--n", "25", "--seed", "7")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_other_seed_other_pairs(oakland: Path, cache_dir: Path, tmp_path: Path) -> None:
    a = _run(oakland, tmp_path / "a.json", cache_dir, "--n", "25", "--seed", "7")
    b = _run(oakland, tmp_path / "b.json", cache_dir, "--n", "25", "--seed", "8")
    assert a["pairs"] != b["pairs"]


def test_n_bbox_and_departures(oakland: Path, cache_dir: Path, tmp_path: Path) -> None:
    doc = _run(
        oakland, tmp_path / "p.json", cache_dir, "--n", "40", "--seed", "1",
        "--depart-from", "2026-03-04T07:00", "--depart-to", "2026-03-04T09:00",
    )  # fmt: skip
    assert doc["n"] == 40 and len(doc["pairs"]) == 40
    west, south, east, north = _extract_bbox(oakland)
    lo = datetime.fromisoformat("2026-03-04T07:00:00+08:00")
    hi = datetime.fromisoformat("2026-03-04T09:00:00+08:00")
    for p in doc["pairs"]:
        for lat, lon in (p["from"], p["to"]):
            assert south <= lat <= north and west <= lon <= east
        at = datetime.fromisoformat(p["depart_at"])
        assert at.utcoffset() is not None and at.utcoffset().total_seconds() == 8 * 3600  # type: ignore[union-attr]
        assert lo <= at < hi


def test_via_ingest_dispatcher(oakland: Path, cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    rc = main(["od-pairs", str(oakland), "--n", "3", "--out", str(out), "--cache-dir", str(cache_dir)])
    assert rc == 0 and len(json.loads(out.read_text(encoding="utf-8"))["pairs"]) == 3


@pytest.mark.parametrize(
    "args",
    [
        [],  # no extract
        ["{x}"],  # no --n
        ["{x}", "--n", "0"],
        ["{x}", "--n", "abc"],
        ["{x}", "--n", "5", "--depart-from", "not-a-date"],
        ["{x}", "--n", "5", "--depart-from", "2026-03-04T09:00", "--depart-to", "2026-03-04T08:00"],
        ["/nonexistent/extract.osm.pbf", "--n", "5"],
        ["{x}", "--n", "5", "--bogus"],
    ],
)
def test_bad_args_exit_2(oakland: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["od-pairs", *(a.replace("{x}", str(oakland)) for a in args)]
    assert main(argv) == 2
