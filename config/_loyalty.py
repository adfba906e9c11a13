"""The points rules file (data/loyalty/rules.toml, or FUEL_LOYALTY_RULES naming another)."""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path

from config._settings import PROJECT_ROOT
from loyalty import Rules, rules_from_mapping

DEFAULT_RULES_PATH = PROJECT_ROOT / "data" / "loyalty" / "rules.toml"


@lru_cache(maxsize=4)
def load_loyalty_rules(path: Path | None = None) -> Rules:
    """The rules (ValueError naming a bad field); read once per path."""
    p = path or Path(os.environ.get("FUEL_LOYALTY_RULES", str(DEFAULT_RULES_PATH)))
    return rules_from_mapping(tomllib.loads(p.read_text(encoding="utf-8")))
