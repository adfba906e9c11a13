"""Typed settings and region configs: the one place the service reads its configuration."""

from config._loyalty import load_loyalty_rules
from config._region import Holidays, Region, ServedRegion, load_region, regions_dir, resolve_served_region
from config._settings import PROJECT_ROOT, Settings, UnsafeSettingsError, get_settings, is_loopback

__all__ = [
    "PROJECT_ROOT",
    "Holidays",
    "Region",
    "ServedRegion",
    "Settings",
    "UnsafeSettingsError",
    "get_settings",
    "is_loopback",
    "load_loyalty_rules",
    "load_region",
    "regions_dir",
    "resolve_served_region",
]
