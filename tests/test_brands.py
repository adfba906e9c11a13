"""Brands recognised from brand:wikidata, brand, operator and name; display names a driver can tell apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from geo._brands import BRANDS, brand_from_tags, display_name
from ingest._osm_stations import read_fuel_stations


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
    ],
)
def test_brands_from_tags(tags: dict[str, str], brand: str, raw: str) -> None:
    assert brand_from_tags(tags) == (brand, raw)
    assert brand in BRANDS


def test_display_names_use_brand_operator_and_street() -> None:
    assert display_name(name="", name_en=None, brand="bp", brand_raw="BP", street=None) == (
        "BP加油站",
        "BP fuel station",
    )
    assert display_name(
        name="", name_en=None, brand="other", brand_raw="Gasopas", street="Av. Meritxell"
    ) == (
        "Gasopas加油站（Av. Meritxell）",
        "Gasopas fuel station (Av. Meritxell)",
    )
    assert display_name(name="丽江古城站", name_en="Old Town", brand="sinopec", brand_raw=None, street="X路")[
        0
    ] == ("丽江古城站")


def test_andorra_stations_get_their_brands(shared_data: Path) -> None:
    stations = read_fuel_stations(shared_data / "osm" / "andorra.osm.pbf")
    assert len(stations) == 19
    brands = {s.brand_raw: s.brand for s in stations if s.brand_raw}
    assert brands["ESSO"] == "esso" and brands["BP"] == "bp" and brands["Total"] == "totalenergies"
    assert brands["Gasopas"] == "other"
    assert sum(s.brand != "other" for s in stations) >= 5
