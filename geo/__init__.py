"""Pure computation: geometry, H3, coordinate systems, road graph, traffic, router. No HTTP, no SQL."""

from geo._coords import CoordSystem, bearing_deg, from_wgs84, haversine_m, haversine_m_array, to_wgs84
from geo._errors import (
    Conflict,
    ExtractError,
    FuelError,
    GraphCacheError,
    InvalidInput,
    NoRoadNear,
    NotFound,
    PriceAboveCeiling,
    RouteNotFound,
)
from geo._graph import CLASS_INDEX, ROAD_CLASSES, CompiledGraph

__all__ = [
    "CLASS_INDEX",
    "ROAD_CLASSES",
    "CompiledGraph",
    "Conflict",
    "CoordSystem",
    "ExtractError",
    "FuelError",
    "GraphCacheError",
    "InvalidInput",
    "NoRoadNear",
    "NotFound",
    "PriceAboveCeiling",
    "RouteNotFound",
    "bearing_deg",
    "from_wgs84",
    "haversine_m",
    "haversine_m_array",
    "to_wgs84",
]
