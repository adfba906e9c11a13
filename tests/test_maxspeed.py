"""maxspeed parsing and free-flow speeds (geo._maxspeed)."""

from __future__ import annotations

import math

import pytest

from geo._maxspeed import FALLBACK_KMH, MPH_KMH, WALK_KMH, freeflow_kmh, freeflow_mps, parse_maxspeed

NAN = math.nan


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("60", 60.0),
        (" 60 ", 60.0),
        ("60 km/h", 60.0),
        ("60km/h", 60.0),
        ("60 kmh", 60.0),
        ("50 kph", 50.0),
        ("35 mph", 35 * MPH_KMH),
        ("35mph", 35 * MPH_KMH),
        ("60;80", 60.0),
        ("80;60", 60.0),
        ("80; 30 mph", 30 * MPH_KMH),
        ("CN:urban", 50.0),
        ("CN:rural", 70.0),
        ("CN:motorway", 120.0),
        ("RU:urban", 60.0),
        ("RU:rural", 90.0),
        ("DE:urban", 50.0),
        ("DE:rural", 100.0),
        ("DE:zone30", 30.0),
        ("DE:zone:30", 30.0),
        ("FR:rural", 80.0),
        ("GB:nsl_single", 60 * MPH_KMH),
        ("XX:urban", NAN),
        ("CN:nowhere", NAN),
        ("walk", WALK_KMH),
        ("none", NAN),
        ("signals", NAN),
        ("variable", NAN),
        ("fast", NAN),
        ("", NAN),
        (None, NAN),
        ("0", NAN),
        ("999", NAN),
        ("signals;60", 60.0),
    ],
)
def test_parse_maxspeed(value: str | None, expected: float) -> None:
    got = parse_maxspeed(value)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected)


def test_freeflow_uses_maxspeed_then_region_then_fallback() -> None:
    speeds = {"primary": 70.0}
    assert freeflow_kmh(60.0, "primary", speeds) == pytest.approx(54.0)
    assert freeflow_kmh(NAN, "primary", speeds) == 70.0
    assert freeflow_kmh(NAN, "residential", speeds) == FALLBACK_KMH["residential"]
    assert freeflow_kmh(NAN, "unknown_class", {}) == 30.0
    assert freeflow_mps(36.0 / 0.9, "primary", speeds) == pytest.approx(10.0)
