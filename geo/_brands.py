"""Fuel brands and station names.

`brand_from_tags` normalises OSM-style tags (`brand:wikidata`, then brand, operator, name; Chinese or
English) to a brand code of BRANDS: the Chinese majors, the international brands seen in the served and
demo regions, and 'other'. `display_name` builds the name a driver sees (zh and en) from the name, the
brand, the operator and the street, so stations without a mapped name can still be told apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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

# The brands' Wikidata items (OSM `brand:wikidata`, name-suggestion-index): the most reliable tag.
WIKIDATA: dict[str, str] = {
    "Q831445": "sinopec",
    "Q503106": "petrochina",
    "Q154950": "shell",
    "Q152057": "bp",
    "Q867662": "esso",
    "Q154037": "totalenergies",
    "Q174747": "repsol",
    "Q608819": "cepsa",
    "Q1492739": "galp",
}

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
    """The brand code of one free-text value ('other' when none matches)."""
    if not text:
        return "other"
    for code, pattern in _PATTERNS:
        if pattern.search(text):
            return code
    return "other"


def brand_from_tags(tags: Mapping[str, str]) -> tuple[str, str | None]:
    """(brand code, raw tag value) from OSM-style tags.

    The first tag group (brand, then operator, then name) with any value decides. The raw value is
    the matching tag's value, else the group's first value; names are never kept as the raw brand
    when nothing matched (None).
    A known `brand:wikidata` decides first (the raw value is then the brand tag, else the item id).
    """
    code = WIKIDATA.get((tags.get("brand:wikidata") or "").strip())
    if code is not None:
        return code, (tags.get("brand") or "").strip() or tags["brand:wikidata"].strip()
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


def display_name(
    *,
    name: str | None,
    name_en: str | None,
    brand: str,
    brand_raw: str | None,
    street: str | None,
) -> tuple[str, str]:
    """(zh, en) name a driver sees: the mapped name, else the brand (or the raw brand/operator) and
    "加油站"/"fuel station"; the street (or address) is added in brackets when the name is not the
    station's own, so neighbouring stations of one brand, or of none, can be told apart."""
    zh_brand, en_brand = BRAND_NAMES.get(brand, (brand_raw or "", brand_raw or ""))
    own_zh = (name or "").strip()
    own_en = (name_en or "").strip()
    base_zh = own_zh or (f"{zh_brand}加油站" if zh_brand else "加油站")
    base_en = own_en or own_zh or (f"{en_brand} fuel station" if en_brand else "Fuel station")
    where = (street or "").strip()
    zh = f"{base_zh}（{where}）" if where and not own_zh else base_zh
    en = f"{base_en} ({where})" if where and not (own_en or own_zh) else base_en
    return zh, en
