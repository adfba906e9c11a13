"""GCJ-02 <-> WGS-84: round trips within 1 m inside China, identity outside China."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from api._params import point_from_wgs84, point_to_wgs84
from config import load_region
from geo import from_wgs84, haversine_m, to_wgs84

LIJIANG = load_region("lijiang")
W, S, E, N = LIJIANG.bbox


@settings(max_examples=300, deadline=None)
@given(lat=st.floats(S, N), lon=st.floats(W, E))
def test_gcj02_round_trip_within_1m_over_lijiang(lat: float, lon: float) -> None:
    g_lat, g_lon = from_wgs84(lat, lon, "gcj02")
    shift = haversine_m(lat, lon, g_lat, g_lon)
    assert 50.0 < shift < 1_000.0  # GCJ-02 is offset by a few hundred metres in China
    back = to_wgs84(g_lat, g_lon, "gcj02")
    assert haversine_m(lat, lon, *back) < 1.0
    # and the other way round: a GCJ-02 input point
    w = to_wgs84(lat, lon, "gcj02")
    assert haversine_m(lat, lon, *from_wgs84(*w, "gcj02")) < 1.0


@settings(max_examples=100, deadline=None)
@given(lat=st.floats(41.74, 42.79), lon=st.floats(1.04, 1.83))
def test_identity_outside_china(lat: float, lon: float) -> None:  # Andorra
    for system in ("gcj02", "bd09", "wgs84"):
        assert point_from_wgs84(lat, lon, system) == (lat, lon)
        assert point_to_wgs84(lat, lon, system) == (lat, lon)


def test_api_helpers_match_geo_inside_china() -> None:
    assert point_from_wgs84(26.87, 100.23, "gcj02") == from_wgs84(26.87, 100.23, "gcj02")
    assert point_to_wgs84(26.87, 100.23, "gcj02") == to_wgs84(26.87, 100.23, "gcj02")


def test_wgs84_is_identity_and_bd09_round_trip() -> None:
    assert to_wgs84(26.87, 100.23, "wgs84") == (26.87, 100.23)
    b = from_wgs84(26.87, 100.23, "bd09")
    assert haversine_m(26.87, 100.23, *to_wgs84(*b, "bd09")) < 1.0
