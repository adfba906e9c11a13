"""Fuel brands and station names.

`brand_from_tags` normalises OSM-style tags (`brand:wikidata`, then brand, operator, name; Chinese or
English) to a brand code of BRANDS: the Chinese majors, the international brands seen in the served and
demo regions, and 'other'. `display_name` builds the name a driver sees (zh and en) from the name, the
brand, the operator and the street, so stations without a mapped name can still be told apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

BRANDS: tuple[str, ...] = (
    "sinopec",
    "petrochina",
    "cnooc",
    "sinochem",
    "shell",
    "bp",
    "esso",
    "totalenergies",
    "repsol",
    "cepsa",
    "galp",
    "other",
)

# The brands' Wikidata items as OSM maps them (`brand:wikidata`, `operator:wikidata`; the items of the
# name-suggestion-index's amenity=fuel brands, and the companies' own items seen as operator): the most
# reliable tags.
WIKIDATA: dict[str, str] = {
    "Q831445": "sinopec",  # 中国石化 Sinopec
    "Q503182": "petrochina",  # 中国石油 PetroChina
    "Q795354": "cnooc",  # 中国海油 CNOOC
    "Q110716465": "shell",  # Shell (fuel brand)
    "Q2289188": "shell",  # Shell Express
    "Q154950": "shell",  # Shell plc (operator)
    "Q152057": "bp",
    "Q124630740": "bp",  # BP Express
    "Q109280112": "bp",  # 中油碧辟 BP PetroChina: BP signage
    "Q867662": "esso",
    "Q2350336": "esso",  # Esso Express
    "Q109676002": "esso",  # Mobil (ExxonMobil, as the patterns below)
    "Q154037": "totalenergies",
    "Q124610909": "totalenergies",  # TotalEnergies Express
    "Q174747": "repsol",
    "Q608819": "cepsa",  # Cepsa, now Moeve
    "Q1492739": "galp",
}
WIKIDATA_TAGS = ("brand:wikidata", "operator:wikidata")
_QID = re.compile(r"^Q[1-9][0-9]*$")

# Display names (zh, en) of the brand codes.
BRAND_NAMES: dict[str, tuple[str, str]] = {
    "sinopec": ("中国石化", "Sinopec"),
    "petrochina": ("中国石油", "PetroChina"),
    "cnooc": ("中国海油", "CNOOC"),
    "sinochem": ("中化石油", "Sinochem"),
    "shell": ("壳牌", "Shell"),
    "bp": ("BP", "BP"),
    "esso": ("埃索", "Esso"),
    "totalenergies": ("道达尔", "TotalEnergies"),
    "repsol": ("雷普索尔", "Repsol"),
    "cepsa": ("塞普萨", "Cepsa"),
    "galp": ("Galp", "Galp"),
}

# Checked in this order: the first brand with a matching pattern wins. Order matters:
# "中国石油化工" (Sinopec's full name) contains "中国石油" (PetroChina), "China Petroleum & Chemical"
# contains "China Petroleum", and "延长壳牌" (Yanchang Shell) is a Shell joint venture.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("shell", re.compile(r"壳牌|\bshell\b", re.IGNORECASE)),
    ("cnooc", re.compile(r"中海油|中国海油|中国海洋石油|\bcnooc\b", re.IGNORECASE)),
    (
        "sinopec",
        re.compile(
            r"中国石化|中石化|中国石油化工|\bsinopec\b|china\s+petroleum\s*(?:&|and)\s*chemical", re.I
        ),
    ),
    (
        "petrochina",
        re.compile(r"中国石油|中石油|\bpetrochina\b|\bcnpc\b|china\s+national\s+petroleum", re.IGNORECASE),
    ),
    ("sinochem", re.compile(r"中化石油|中化|\bsinochem\b", re.IGNORECASE)),
    ("bp", re.compile(r"\bbp\b|british\s+petroleum", re.IGNORECASE)),
    ("esso", re.compile(r"\besso\b|埃索|\bexxon\s*mobil\b|\bmobil\b|美孚", re.IGNORECASE)),
    ("totalenergies", re.compile(r"\btotal(?:\s*energies)?\b|道达尔", re.IGNORECASE)),
    ("repsol", re.compile(r"\brepsol\b", re.IGNORECASE)),
    ("cepsa", re.compile(r"\bcepsa\b|\bmoeve\b", re.IGNORECASE)),
    ("galp", re.compile(r"\bgalp\b", re.IGNORECASE)),
)

# Tag groups, most authoritative first: when a group has any value, it decides (an explicit
# brand=Repsol is 'other' even if the name mentions a big brand); the raw value of that group is kept.
TAG_GROUPS: tuple[tuple[str, ...], ...] = (
    ("brand", "brand:zh", "brand:en"),
    ("operator", "operator:zh", "operator:en"),
    ("name", "name:zh", "name:en"),
)


def normalize_brand(text: str | None) -> str:
    """The brand code of one free-text value, or of a Wikidata item id ('other' when none matches)."""
    if not text:
        return "other"
    text = text.strip()
    if _QID.match(text):
        return WIKIDATA.get(text, "other")
    for code, pattern in _PATTERNS:
        if pattern.search(text):
            return code
    return "other"


def brand_from_tags(tags: Mapping[str, str]) -> tuple[str, str | None]:
    """(brand code, raw tag value) from OSM-style tags.

    The first tag group (brand, then operator, then name) with any value decides. The raw value is
    the matching tag's value, else the group's first value; names are never kept as the raw brand
    when nothing matched (None).
    A known `brand:wikidata` (then `operator:wikidata`) decides first (the raw value is then the brand
    tag, else the operator tag, else the item id).
    """
    for key in WIKIDATA_TAGS:
        item = (tags.get(key) or "").strip()
        code = WIKIDATA.get(item)
        if code is not None:
            raw = (tags.get("brand") or "").strip() or (tags.get("operator") or "").strip()
            return code, raw or item
    for i, group in enumerate(TAG_GROUPS):
        values = [v.strip() for v in (tags.get(k) or "" for k in group) if v.strip()]
        if not values:
            continue
        for value in values:
            code = normalize_brand(value)
            if code != "other":
                return code, value
        if i < len(TAG_GROUPS) - 1:
            return "other", values[0]
    return "other", None


SEPARATOR = " · "  # between a name that is not the station's own and where it is


def _is_brand_only(name: str, brand: str, brand_raw: str | None) -> bool:
    """A mapped name that only repeats the brand ("bp", "Esso"): it does not tell stations apart."""
    folded = name.casefold()
    zh, en = BRAND_NAMES.get(brand, ("", ""))
    known = {v.casefold() for v in (zh, en, brand_raw or "") if v}
    return (
        folded in known
        or folded in {f"{v}加油站" for v in known}
        or folded in {f"{v} station" for v in known}
    )


@lru_cache(maxsize=8192)  # pure; every nearby answer names each of its stations again
def display_name(
    *,
    name: str | None,
    name_en: str | None,
    brand: str,
    brand_raw: str | None,
    street: str | None,
) -> tuple[str, str]:
    """(zh, en) name a driver sees.

    A station with a name of its own shows it (name_en in English when mapped). Otherwise (no name, or
    a name that only repeats the brand): the brand's name, or the raw brand/operator, with
    "加油站"/"fuel station" ("加油站"/"Fuel station" without either), then " · " and the street (the
    address: mapped, or the nearest named road given at load time), e.g. "加油站 · Carretera General 2"
    / "Fuel station · Carretera General 2", so that stations of one brand, or of none, can be told apart.
    """
    zh_brand, en_brand = BRAND_NAMES.get(brand, (brand_raw or "", brand_raw or ""))
    own_zh = (name or "").strip()
    own_en = (name_en or "").strip()
    if own_zh and _is_brand_only(own_zh, brand, brand_raw):
        own_zh = ""
    if own_en and _is_brand_only(own_en, brand, brand_raw):
        own_en = ""
    where = (street or "").strip()
    base_zh = f"{zh_brand}加油站" if zh_brand else "加油站"
    base_en = f"{en_brand} fuel station" if en_brand else "Fuel station"
    zh = own_zh or (f"{base_zh}{SEPARATOR}{where}" if where else base_zh)
    en = own_en or own_zh or (f"{base_en}{SEPARATOR}{where}" if where else base_en)
    return zh, en


def station_display_name(row: Mapping[str, object]) -> tuple[str, str]:
    """display_name of a stored station row (name, name_en, brand, brand_raw, address)."""

    def text(key: str) -> str | None:
        v = row.get(key)
        return v if isinstance(v, str) else None

    return display_name(
        name=text("name"),
        name_en=text("name_en"),
        brand=text("brand") or "other",
        brand_raw=text("brand_raw"),
        street=text("address"),
    )
