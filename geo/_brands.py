"""Fuel brands: normalise brand/operator/name tags (Chinese or English) to one of five codes."""

from __future__ import annotations

import re
from collections.abc import Mapping

BRANDS: tuple[str, ...] = ("sinopec", "petrochina", "cnooc", "shell", "other")

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
    """
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
