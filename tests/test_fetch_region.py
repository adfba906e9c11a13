"""`python -m ingest fetch-region` end to end against a fake Overpass server serving a real extract."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import osmium
import osmnx as ox
import pytest
from shapely.geometry import Polygon

from config import Settings, load_region
from ingest import __main__ as ingest_cli
from ingest._fetch_region import query_polygon
from ingest._overpass import build_queries, osmnx_settings
from tests.overpass_fake import FakeOverpass, OsmData

REGION = "longgang"
# A convex pentagon around Shenzhen Longgang (22.67-22.70 N, 114.19-114.23 E), WGS-84 (lon, lat).
BOUNDARY = [(114.185, 22.665), (114.235, 22.665), (114.236, 22.690), (114.210, 22.706), (114.185, 22.705)]
# The drive filter written out by hand (osmnx network_type="drive"), to check the fake + client against.
DRIVE = {
    "motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary",
    "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential", "living_street", "road",
}  # fmt: skip
# Quick runs: short timeout, 2 attempts, tiny backoff, small pieces (so the polygon is cut up).
FAST = ["--no-progress", "--timeout", "1", "--retries", "2", "--backoff", "0.01", "--max-area-km2", "6"]


@pytest.fixture(scope="module")
def osm_data(shared_data: Path) -> OsmData:
    return OsmData.read(shared_data / "osm" / "shenzhen_longgang.osm.gz")


@pytest.fixture
def fake(osm_data: OsmData) -> Iterator[FakeOverpass]:
    with FakeOverpass(osm_data) as server:
        yield server


@pytest.fixture
def regions(tmp_path: Path) -> Path:
    d = tmp_path / "regions"
    d.mkdir()
    feature = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [BOUNDARY]},
    }
    (d / f"{REGION}.boundary.geojson").write_text(json.dumps(feature), encoding="utf-8")
    (d / f"{REGION}.toml").write_text(
        f'name = "{REGION}"\ntimezone = "Asia/Shanghai"\nprice_zone = "test"\n'
        "bbox = [114.185, 22.665, 114.236, 22.706]\n"
        f'[boundary]\nfile = "{REGION}.boundary.geojson"\n'
        f'[extract]\npath = "{tmp_path / "extracts" / (REGION + ".osm.pbf")}"\n',
        encoding="utf-8",
    )
    return d


def settings_for(tmp_path: Path, regions: Path, url: str) -> Settings:
    return Settings(regions_dir=regions, cache_dir=tmp_path / "cache", overpass_url=url, extract=None)


def run(tmp_path: Path, regions: Path, url: str, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Through the real command table, with settings from the environment like a user's shell."""
    monkeypatch.setenv("FUEL_REGIONS_DIR", str(regions))
    monkeypatch.setenv("FUEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FUEL_OVERPASS_URL", url)
    monkeypatch.delenv("FUEL_EXTRACT", raising=False)
    return ingest_cli.main(["fetch-region", REGION, *FAST, *extra])


def today() -> str:
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()  # Asia/Shanghai


def expected(data: OsmData) -> dict[str, int]:
    """What a correct download holds, from the source file with plain Python (not the fake's parser)."""
    poly = Polygon(BOUNDARY)
    inside = {i for i, (lat, lon, _) in data.nodes.items() if poly.contains(_pt(lon, lat))}

    def drivable(tags: dict[str, str]) -> bool:
        return (
            tags.get("highway") in DRIVE
            and tags.get("access") != "private"
            and tags.get("area") != "yes"
            and tags.get("motor_vehicle") != "no"
            and tags.get("motorcar") != "no"
        )

    roads = {i for i, (nds, tags) in data.ways.items() if drivable(tags) and inside & set(nds)}
    fuel = sum(1 for *_, tags in data.nodes.values() if tags.get("amenity") == "fuel") + sum(
        1 for _, tags in data.ways.values() if tags.get("amenity") == "fuel"
    )
    restrictions = sum(
        1
        for ms, tags in data.relations.values()
        if tags.get("type") == "restriction" and any(t == "way" and r in roads for t, r, _ in ms)
    )
    return {"roads": len(roads), "fuel": fuel, "restrictions": restrictions}


def _pt(lon: float, lat: float) -> Any:
    from shapely.geometry import Point

    return Point(lon, lat)


def read_osm(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"ids": set(), "dupes": 0, "roads": 0, "fuel": 0, "restrictions": 0, "names": 0}
    nodes: set[int] = set()
    refs: list[int] = []
    for obj in osmium.FileProcessor(str(path)):
        key = (obj.type_str(), obj.id)
        out["dupes"] += key in out["ids"]
        out["ids"].add(key)
        tags = obj.tags
        if isinstance(obj, osmium.osm.Node):
            nodes.add(obj.id)
        if isinstance(obj, osmium.osm.Way):
            refs.extend(n.ref for n in obj.nodes)
            if tags.get("highway") in DRIVE:
                out["roads"] += 1
                out["names"] += bool(re.search(r"[\u4e00-\u9fff]", tags.get("name") or ""))
        out["fuel"] += tags.get("amenity") == "fuel"
        out["restrictions"] += isinstance(obj, osmium.osm.Relation) and tags.get("type") == "restriction"
    out["missing_nodes"] = sum(1 for r in refs if r not in nodes)
    out["box"] = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING).header().box()
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


# -- queries ---------------------------------------------------------------------------------------------


def test_road_query_is_osmnx_own(regions: Path, tmp_path: Path) -> None:
    """The road query is byte-for-byte what osmnx's _download_overpass_network sends for each piece."""
    region = load_region(REGION, settings_for(tmp_path, regions, "http://127.0.0.1:9/api/interpreter"))
    polygon = query_polygon(region)
    sent: list[str] = []

    def capture(data: OrderedDict[str, Any]) -> dict[str, Any]:
        sent.append(data["data"])
        return {"elements": []}

    with osmnx_settings(
        endpoint="http://127.0.0.1:9/api", timeout_s=7, max_query_area_m2=6e6, cache_dir=tmp_path
    ):
        mine = [q for q in build_queries(polygon) if q.kind == "roads"]
        original = ox._overpass._overpass_request
        ox._overpass._overpass_request = capture
        try:
            list(ox._overpass._download_overpass_network(polygon, network_type="drive", custom_filter=None))
        finally:
            ox._overpass._overpass_request = original
        assert ox.settings.use_cache is False
    assert len(mine) > 1, "the test polygon should be cut into several pieces"
    assert [q.text for q in mine] == sent
    assert sent[0].startswith("[out:json][timeout:7];")
    assert ox.settings.overpass_url != "http://127.0.0.1:9/api"  # restored afterwards


# -- end to end ------------------------------------------------------------------------------------------


def test_fetch_region_writes_a_valid_extract(
    fake: FakeOverpass, osm_data: OsmData, regions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc = run(tmp_path, regions, fake.url, "--no-ingest", monkeypatch=monkeypatch)
    assert rc == 0
    folder = tmp_path / "extracts"
    dated = folder / f"{REGION}-{today()}.osm"
    pointer = folder / f"{REGION}.osm.pbf"
    assert {p.name for p in folder.iterdir()} == {
        dated.name,
        f"{dated.name}.attribution.txt",
        pointer.name,
        f"{pointer.name}.attribution.txt",
    }
    want = expected(osm_data)
    assert want == {"roads": 238, "fuel": 2, "restrictions": 1}  # the real file, clipped to BOUNDARY
    assert len(fake.queries) == 3 * (len(fake.queries) // 3) > 3  # roads/restrictions/fuel per piece
    for path in (dated, pointer):
        got = read_osm(path)
        assert got["roads"] == want["roads"]
        assert got["fuel"] == 2
        assert got["restrictions"] == want["restrictions"]
        assert got["dupes"] == 0 and got["missing_nodes"] == 0
        assert got["names"] > 0  # Chinese names survive (UTF-8 all the way)
        box = got["box"]
        assert (box.bottom_left.lon, box.bottom_left.lat) == pytest.approx((114.185, 22.665), abs=1e-6)
        assert (box.top_right.lon, box.top_right.lat) == pytest.approx((114.236, 22.706), abs=1e-6)
    text = (folder / f"{dated.name}.attribution.txt").read_text(encoding="utf-8")
    assert "© OpenStreetMap contributors" in text and "ODbL" in text and fake.url in text
    assert "queried at: " in text
    # the served-region resolution now finds the fetched extract at the configured path
    from config import resolve_served_region

    served = resolve_served_region(
        settings_for(tmp_path, regions, fake.url).model_copy(update={"region": REGION})
    )
    assert served.extract == pointer and not served.is_demo


def test_graph_builds_from_the_fetched_extract(
    fake: FakeOverpass, regions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph builder that exists in the tree reads the fetched extract (roads + restriction)."""
    build = pytest.importorskip("geo._build")
    assert run(tmp_path, regions, fake.url, "--no-ingest", monkeypatch=monkeypatch) == 0
    region = load_region("lijiang")  # Chinese road-class speeds
    graph = build.build_graph(tmp_path / "extracts" / f"{REGION}.osm.pbf", speeds_kmh=region.speeds_kmh)
    assert graph.n_road_edges > 100


def test_refetch_replaces_the_previous_extract(
    fake: FakeOverpass, regions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "extracts"
    folder.mkdir()
    (folder / f"{REGION}.osm.pbf").write_bytes(b"previous extract")
    assert run(tmp_path, regions, fake.url, "--no-ingest", monkeypatch=monkeypatch) == 0
    assert read_osm(folder / f"{REGION}.osm.pbf")["fuel"] == 2
    assert not (folder / f"{REGION}.osm.pbf.prev").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files


def test_retries_transient_errors(
    fake: FakeOverpass, regions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.flaky = 1  # one 503 then fine: the 2-attempt budget absorbs it
    assert run(tmp_path, regions, fake.url, "--no-ingest", monkeypatch=monkeypatch) == 0
    assert fake.flaky <= 0
    assert all(re.match(r"\[out:json\]\[timeout:1\];", q) for q in fake.queries)


def test_explicit_endpoint_and_out_dir(
    fake: FakeOverpass, regions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "elsewhere"
    rc = run(
        tmp_path, regions, "http://127.0.0.1:9/api/interpreter", "--endpoint", fake.url.removesuffix("/interpreter"),
        "--out", str(out), "--no-ingest", monkeypatch=monkeypatch,
    )  # fmt: skip
    assert rc == 0
    assert (out / f"{REGION}-{today()}.osm").is_file()
    assert (tmp_path / "extracts" / f"{REGION}.osm.pbf").is_file()  # the region's configured path


# -- failures leave everything as it was --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("down", "connection refused"),
        ("timeout", "no answer within the timeout of 1 s"),
        ("truncated", "truncated or malformed JSON"),
        ("cut", "transfer failed"),
        ("html", "answered HTML/XML, not Overpass JSON"),
        ("500", "HTTP 500"),
        ("429", "HTTP 429"),
        ("remark", "server-side error, answer incomplete"),
        ("fail-after", "HTTP 500"),
    ],
)
def test_failed_download_changes_nothing(
    mode: str,
    message: str,
    fake: FakeOverpass,
    regions: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "extracts"
    folder.mkdir()
    (folder / f"{REGION}.osm.pbf").write_bytes(b"previous extract")
    (folder / f"{REGION}-{today()}.osm").write_bytes(b"<osm>earlier today</osm>")
    before = snapshot(folder)
    url = f"http://127.0.0.1:{free_port()}/api/interpreter" if mode == "down" else fake.url
    fake.mode, fake.sleep_s, fake.fail_after = mode, 2.5, 7  # "fail-after": piece 3 fails midway
    rc = run(tmp_path, regions, url, "--no-ingest", monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert rc == 1
    assert url in err and message in err and "nothing changed" in err, err
    assert "gave up after 2 attempt(s)" in err
    assert snapshot(folder) == before  # byte-identical, no temp files left
    if mode == "fail-after":
        assert len(fake.queries) == 7 + 2 and "piece 3/" in err


def test_invalid_answer_is_rejected(
    fake: FakeOverpass,
    regions: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A well-formed answer with no drivable road is refused rather than published."""
    fake.answer = lambda query: {"version": 0.6, "elements": []}  # type: ignore[method-assign]
    assert run(tmp_path, regions, fake.url, "--no-ingest", monkeypatch=monkeypatch) == 1
    assert "no drivable ways" in capsys.readouterr().err
    assert not (tmp_path / "extracts").exists() or not any((tmp_path / "extracts").iterdir())


def test_unknown_region_is_a_usage_error(
    regions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FUEL_REGIONS_DIR", str(regions))
    assert ingest_cli.main(["fetch-region", "atlantis"]) == 2
    assert "unknown region 'atlantis'" in capsys.readouterr().err


# -- the normal ingest afterwards -------------------------------------------------------------------------


def stub_loader(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[dict[str, Any]]:
    """Stand-in for ingest._load_region (the lead's module); records calls and reads the extract."""
    calls: list[dict[str, Any]] = []

    def load_region(settings: Settings, *, region_name: str, extract: Path, progress: bool) -> dict[str, Any]:
        got = read_osm(extract)
        calls.append(
            {"settings": settings, "region_name": region_name, "extract": extract, "progress": progress}
        )
        if fail:
            raise RuntimeError("database is down")
        return {"roads": got["roads"], "stations": got["fuel"]}

    module = types.ModuleType("ingest._load_region")
    module.load_region = load_region  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ingest._load_region", module)
    return calls


def test_ingest_runs_on_the_new_extract(
    fake: FakeOverpass,
    regions: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = stub_loader(monkeypatch)
    assert run(tmp_path, regions, fake.url, monkeypatch=monkeypatch) == 0
    assert len(calls) == 1
    call = calls[0]
    assert call["region_name"] == REGION and call["progress"] is False
    assert call["extract"] == tmp_path / "extracts" / f"{REGION}.osm.pbf"
    assert call["settings"].overpass_url == fake.url
    assert "'stations': 2" in capsys.readouterr().out
    assert not (tmp_path / "extracts" / f"{REGION}.osm.pbf.prev").exists()


@pytest.mark.parametrize("previous", [True, False])
def test_failed_ingest_puts_the_previous_extract_back(
    previous: bool,
    fake: FakeOverpass,
    regions: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "extracts"
    folder.mkdir()
    pointer = folder / f"{REGION}.osm.pbf"
    if previous:
        pointer.write_bytes(b"previous extract")
    stub_loader(monkeypatch, fail=True)
    assert run(tmp_path, regions, fake.url, monkeypatch=monkeypatch) == 1
    if previous:
        assert pointer.read_bytes() == b"previous extract"
    else:
        assert not pointer.exists()
    assert not (folder / f"{REGION}.osm.pbf.prev").exists()
    assert "database is down" in capsys.readouterr().err
    assert (folder / f"{REGION}-{today()}.osm").is_file()  # the dated download is kept for a retry


def test_fetch_and_load_into_postgis(
    fake: FakeOverpass, regions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """The whole command, with the real ingest._load_region, into a throwaway PostGIS database."""
    pytest.importorskip("ingest._load_region")
    import psycopg

    monkeypatch.setenv("DATABASE_URL", db_url)
    assert run(tmp_path, regions, fake.url, monkeypatch=monkeypatch) == 0
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT extract_path, stations, edges FROM regions_loaded WHERE region = %s", (REGION,)
        )
        path, stations, edges = row.fetchone() or (None, 0, 0)
    assert path == str(tmp_path / "extracts" / f"{REGION}.osm.pbf")
    assert stations == 2 and edges > 100
