"""Pure computation: geometry, H3, coordinate systems, road graph, traffic, router. No HTTP, no SQL."""

from geo._brands import BRANDS, brand_from_tags, normalize_brand
from geo._budget import Budget
from geo._coords import CoordSystem, bearing_deg, from_wgs84, haversine_m, haversine_m_array, to_wgs84
from geo._errors import (
    BudgetExceeded,
    Conflict,
    ExtractError,
    FuelError,
    GraphCacheError,
    ImplausibleValue,
    InvalidInput,
    NoRoadNear,
    NotFound,
    OutsideRegion,
    PriceAboveCeiling,
    RouteNotFound,
)
from geo._graph import CLASS_INDEX, ROAD_CLASSES, CompiledGraph
from geo._graphcache import graph_identity, load_or_build
from geo._h3cells import Covering, cells_for_point, cells_for_points, covering_cells, rings_for_radius
from geo._hours import FillUp, can_fill_up, check_opening_hours, open_now
from geo._landmarks import add_landmarks
from geo._pricing import (
    KNOWN_GRADES,
    AppliedPromotion,
    Promotion,
    applies,
    effective_price,
    normalize_grade,
)
from geo._router import MatrixResult, Router, RouteResult
from geo._snap import Snap, Snapper
from geo._steps import Step
from geo._synthetic import synthetic_graph
from geo._traffic import ApplyResult, LiveTraffic, LiveUpdate, TrafficProfile

__all__ = [
    "BRANDS",
    "CLASS_INDEX",
    "KNOWN_GRADES",
    "ROAD_CLASSES",
    "AppliedPromotion",
    "ApplyResult",
    "Budget",
    "BudgetExceeded",
    "CompiledGraph",
    "Conflict",
    "CoordSystem",
    "Covering",
    "ExtractError",
    "FillUp",
    "FuelError",
    "GraphCacheError",
    "ImplausibleValue",
    "InvalidInput",
    "LiveTraffic",
    "LiveUpdate",
    "MatrixResult",
    "NoRoadNear",
    "NotFound",
    "OutsideRegion",
    "PriceAboveCeiling",
    "Promotion",
    "RouteNotFound",
    "RouteResult",
    "Router",
    "Snap",
    "Snapper",
    "Step",
    "TrafficProfile",
    "add_landmarks",
    "applies",
    "bearing_deg",
    "brand_from_tags",
    "can_fill_up",
    "cells_for_point",
    "cells_for_points",
    "check_opening_hours",
    "covering_cells",
    "effective_price",
    "from_wgs84",
    "graph_identity",
    "haversine_m",
    "haversine_m_array",
    "load_or_build",
    "normalize_brand",
    "normalize_grade",
    "open_now",
    "rings_for_radius",
    "synthetic_graph",
    "to_wgs84",
]
