"""Brands recognised from brand:wikidata, brand, operator and name; display names a driver can tell apart:
the street of a station without one comes from its nearest named (or numbered) road at load time, and the
names and addresses reach every endpoint that lists stations (nearby, along-route, the station list, the
map's markers, the WeChat markers' title and callout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from geo._brands import BRANDS, brand_from_tags, display_name, normalize_brand
from ingest._osm_stations import STREET_MAX_M, addresses_from_roads, read_fuel_stations
from store._stations import StationIn

ANDORRA = "1.40,42.42,1.80,42.66"  # every station of the demo region


@pytest.mark.parametrize(
    ("tags", "brand", "raw"),
    [
        ({"operator": "ESSO"}, "esso", "ESSO"),
        ({"name": "bp", "operator": "BP"}, "bp", "BP"),
        ({"operator": "Total"}, "totalenergies", "Total"),
        ({"brand": "Repsol"}, "repsol", "Repsol"),
        ({"brand": "CEPSA"}, "cepsa", "CEPSA"),
        ({"brand:wikidata": "Q154950", "brand": "Shell Express"}, "shell", "Shell Express"),
        ({"brand:wikidata": "Q152057"}, "bp", "Q152057"),
        ({"name": "中国石化加油站"}, "sinopec", "中国石化加油站"),
        ({"operator": "中化石油"}, "sinochem", "中化石油"),
        ({"operator": "Gasopas"}, "other", "Gasopas"),
        # name-suggestion-index items of the Chinese majors and of brands' own fuel items
        ({"brand:wikidata": "Q503182", "brand": "中国石油"}, "petrochina", "中国石油"),
        ({"brand:wikidata": "Q795354"}, "cnooc", "Q795354"),
        ({"brand:wikidata": "Q831445", "name": "丽江古城加油站"}, "sinopec", "Q831445"),
        ({"brand:wikidata": "Q110716465", "brand": "Shell"}, "shell", "Shell"),
        ({"operator:wikidata": "Q154950", "operator": "Shell plc"}, "shell", "Shell plc"),
        ({"brand:wikidata": "Q109676002", "brand": "Mobil"}, "esso", "Mobil"),
        ({"brand:wikidata": "Q99999999", "brand": "Repsol"}, "repsol", "Repsol"),  # unknown item: the tags
    ],
)
def test_brands_from_tags(tags: dict[str, str], brand: str, raw: str) -> None:
    assert brand_from_tags(tags) == (brand, raw)
    assert brand in BRANDS


def test_a_wikidata_item_as_the_brand_value_is_recognised() -> None:
    assert normalize_brand("Q795354") == "cnooc" and normalize_brand(" Q503182 ") == "petrochina"
    assert normalize_brand("Q1") == "other"


def test_display_names_use_brand_operator_and_street() -> None:
    assert display_name(name="", name_en=None, brand="bp", brand_raw="BP", street=None) == (
        "BP加油站",
        "BP fuel station",
    )
    assert display_name(name="", name_en=None, brand="other", brand_raw=None, street="CG-2") == (
        "加油站 · CG-2",
        "Fuel station · CG-2",
    )
    assert display_name(
        name="", name_en=None, brand="other", brand_raw="Gasopas", street="Av. Meritxell"
    ) == ("Gasopas加油站 · Av. Meritxell", "Gasopas fuel station · Av. Meritxell")
    # a mapped name that only repeats the brand does not tell two stations of the brand apart
    assert display_name(name="bp", name_en=None, brand="bp", brand_raw="BP", street="CG-2") == (
        "BP加油站 · CG-2",
        "BP fuel station · CG-2",
    )
    assert display_name(
        name="中国石化加油站", name_en=None, brand="sinopec", brand_raw=None, street="福慧路"
    )[0] == ("中国石化加油站 · 福慧路")
    # a name of its own is shown as mapped
    assert display_name(
        name="丽江古城站", name_en="Old Town", brand="sinopec", brand_raw=None, street="X路"
    ) == (
        "丽江古城站",
        "Old Town",
    )


def _st(ref: str, **kw: Any) -> StationIn:
    return StationIn(source="osm", source_ref=ref, lat=42.5, lon=1.5, **kw)


def test_addresses_from_the_nearest_roads() -> None:
    stations = [
        _st("node/1"),  # alone on its road
        _st("node/2"),  # two on CG-1: each adds the nearest other road that tells it apart
        _st("node/3"),
        _st("node/4", address="Av. Meritxell 12"),  # its own address stays
        _st("node/5"),  # no road near enough
        _st("node/6", brand="bp", brand_raw="BP"),  # a brand on CG-1: another name, no cross street
        _st("node/7"),  # on CG-3 like node/8, and nothing else near either: cannot be told apart
        _st("node/8"),
    ]
    roads = [
        [("Carrer de la Unió", 12.0)],
        [("CG-1", 8.0), ("Carrer Major", 140.0), ("Camí d'Auvinyà", 300.0)],
        [("CG-1", 5.0), ("Carrer Major", 90.0), ("Carretera de Fontaneda", 400.0)],
        [("CG-2", 3.0)],
        [("CG-2", STREET_MAX_M + 50.0)],
        [("CG-1", 20.0), ("Carrer Major", 60.0)],
        [("CG-3", 10.0)],
        [("CG-3", 12.0)],
    ]
    out = addresses_from_roads(stations, roads)
    assert [s.address for s in out] == [
        "Carrer de la Unió",
        "CG-1 / Carrer Major",
        "CG-1 / Carretera de Fontaneda",  # Carrer Major is taken: the next road
        "Av. Meritxell 12",
        None,
        "CG-1",
        "CG-3",
        "CG-3",
    ]


def test_andorra_stations_get_their_brands(shared_data: Path) -> None:
    stations = read_fuel_stations(shared_data / "osm" / "andorra.osm.pbf")
    assert len(stations) == 19
    brands = {s.brand_raw: s.brand for s in stations if s.brand_raw}
    assert brands["ESSO"] == "esso" and brands["BP"] == "bp" and brands["Total"] == "totalenergies"
    assert brands["Gasopas"] == "other"
    assert sum(s.brand != "other" for s in stations) >= 5


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [x["display_name"] for x in items]


def test_every_andorra_station_has_a_name_a_driver_can_tell_apart(client: TestClient) -> None:
    """17 of the 19 stations have no mapped name and 13 neither brand nor operator: each shows its brand or
    "加油站" with its road, and no two show the same name (zh or en)."""
    body = client.get("/v1/stations", params={"bbox": ANDORRA}).json()
    got = body["results"]
    assert len(got) == 19
    for key in ("display_name", "display_name_en"):
        names = [x[key] for x in got]
        assert len(set(names)) == 19, sorted(names)
    assert "加油站" not in _names(got) and "Fuel station" not in [x["display_name_en"] for x in got]
    untagged = [x for x in got if x["brand"] == "other" and not x["brand_raw"] and not x["name"]]
    assert len(untagged) == 13
    for x in untagged:  # the address is the road the name shows
        assert x["address"] and x["display_name"] == f"加油站 · {x['address']}"
        assert x["display_name_en"] == f"Fuel station · {x['address']}"
    assert any(x["address"].startswith("CG-") for x in untagged)  # numbered roads (OSM ref) count
    bp = [x for x in got if x["brand"] == "bp"]
    assert len(bp) == 2 and all(x["display_name"].startswith("BP加油站 · ") for x in bp)


def test_names_and_addresses_in_nearby_along_route_and_the_map(client: TestClient) -> None:
    listed = {x["id"]: x for x in client.get("/v1/stations", params={"bbox": ANDORRA}).json()["results"]}

    def same(x: dict[str, Any]) -> None:
        ref = listed[x["id"]]
        assert (x["display_name"], x["display_name_en"], x["address"]) == (
            ref["display_name"],
            ref["display_name_en"],
            ref["address"],
        )

    near = client.get("/v1/stations/nearby", params={"lat": 42.5063, "lon": 1.5218, "radius_m": 20000})
    assert near.status_code == 200 and near.json()["count"] >= 5
    for x in near.json()["results"]:
        same(x)
    eta = client.get(
        "/v1/stations/nearby",
        params={"lat": 42.5063, "lon": 1.5218, "radius_m": 20000, "sort": "total_cost", "grade": "95"},
    )
    assert eta.status_code == 200 and eta.json()["count"] >= 1
    for x in eta.json()["results"]:
        same(x)
    along = client.get(
        "/v1/stations/along-route",
        params={"from": "42.4630,1.4910", "to": "42.5347,1.5800", "corridor_m": 2000, "include_closed": True},
    )
    assert along.status_code == 200 and along.json()["count"] >= 2, along.text
    for x in along.json()["results"]:
        same(x)
    one = client.get(f"/v1/stations/{next(iter(listed))}").json()["station"]
    same(one)
    markers = client.get("/v1/map/stations", params={"bbox": "1.48,42.45,1.60,42.55", "zoom": 14}).json()
    props = [f["properties"] for f in markers["features"]]
    assert props and all(p["display_name"] for p in props)
    for p in props:
        same(p)
    wx = client.get(
        "/v1/map/stations", params={"bbox": "1.48,42.45,1.60,42.55", "zoom": 14, "format": "wechat"}
    ).json()
    stations = [m for m in wx["markers"] if m["kind"] == "station"]
    assert len(stations) == len(props)
    for m in stations:
        assert m["title"] == listed[m["id"]]["display_name"]
        assert m["callout"]["content"].startswith(m["title"] + "\n")
