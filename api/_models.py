"""The shapes of the API's bodies (Public models), for the OpenAPI schema clients are generated from, and
the error body with the statuses each endpoint documents (`error_responses`).

Endpoints build plain dicts and declare these as `response_model`. Most return the dict, and FastAPI
checks and serialises it against the model in compiled code (a body out of step with its model is still
answered, and logged: api/_errors.py). The hot endpoints (nearby, along-route, route, matrix, the map's
stations and roads) return `documented(body)`: the dict as JSON, unchecked, so that the model costs them
nothing; tests/test_openapi.py and the schemathesis run (tests/test_fuzz.py) hold those bodies to their
models. A key the service leaves out when it does not apply (`served_note` outside the demo region,
`cost` without a grade, ...) is typed `X | Absent`: not required in the schema, never written as null.
Request bodies are the Create/Update models of their endpoint modules (api/_manage.py, api/_routing.py,
api/_ranking.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import orjson
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from geo._pricing import KNOWN_GRADES, PromotionKind

Absent = SkipJsonSchema[None]  # a key left out of the body (never null): not required in the schema
DateTime = Annotated[
    str,
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-11-28T08:30:00+08:00"]}),
]
Coord = Literal["wgs84", "gcj02", "bd09"]
Grade = Literal["89", "92", "95", "98", "0"]
assert get_args(Grade) == KNOWN_GRADES  # the grades the service knows, as a choice in the schema
Level = Literal["free", "slow", "congested", "closed"]
Rgba = Annotated[str, Field(pattern=r"^#[0-9A-F]{8}$", description="#RRGGBBAA (the WeChat map's colours)")]
LonLat = Annotated[
    list[float],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 2,
            "description": "[lon, lat] in `coord`",
        }
    ),
]


def documented(body: dict[str, Any]) -> Response:
    """A hot endpoint's body as JSON, as built: its `response_model` documents it (see above)."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


class _Public(BaseModel):
    """Response models: every key the service writes is declared (additionalProperties: false)."""

    model_config = ConfigDict(extra="forbid")


# ---- stations, prices, promotions --------------------------------------------------------------------


class AppliedPromotionPublic(_Public):
    id: int | None
    title: str
    title_en: str | None
    kind: PromotionKind
    saving: float | None = Field(description="CNY saved per litre")
    saving_total: float | None = Field(description="CNY saved on the whole purchase")


class QueryTimePricePublic(_Public):
    at: DateTime
    list_price: float | None
    effective_price: float | None


class GradePricePublic(_Public):
    list_price: float | None = Field(description="CNY per litre in force at `at`; null: no known price")
    effective_price: float | None = Field(
        description="after the best applicable promotion (they do not stack)"
    )
    promotions_applied: list[AppliedPromotionPublic]
    price_age_s: int | None = Field(description="seconds between the price's effective_from and `at`")
    source: str | None
    effective_from: DateTime | None
    priced_at: DateTime | Absent = Field(
        None, description="when the prices apply: the predicted arrival in the drive rankings, else `at`"
    )
    at_query_time: QueryTimePricePublic | Absent = Field(
        None, description="the price at the query time, a labelled extra when arrival differs (never ranked)"
    )


class GradesPublic(_Public):
    """Per grade the station sells (or has a price for); grades it does not sell are left out."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    g89: GradePricePublic | Absent = Field(None, alias="89")
    g92: GradePricePublic | Absent = Field(None, alias="92")
    g95: GradePricePublic | Absent = Field(None, alias="95")
    g98: GradePricePublic | Absent = Field(None, alias="98")
    g0: GradePricePublic | Absent = Field(None, alias="0", description="0# diesel")


class ScoreWeights(_Public):
    price: float
    distance: float


class ScorePublic(_Public):
    score: float | None = Field(description="0.7 x price_part + 0.3 x distance_part; lower is better")
    price_part: float | None
    distance_part: float
    weights: ScoreWeights | Absent = None


class CostPublic(_Public):
    """The fill-up's total cost at the predicted arrival; only total, worth_it and reason when there is none."""

    total: float | None = Field(description="CNY: fuel + fuel burnt driving there + time driving there")
    worth_it: bool | None = Field(description="total <= the total at the nearest priced station")
    reason: (
        Literal["unreachable", "no_price", "closed", "temporarily_closed", "outside_opening_hours"] | Absent
    ) = None
    saving_vs_nearest: float | None = None
    litres: float | Absent = None
    list_price: float | None = None
    effective_price: float | None = None
    price_effective_from: DateTime | None = None
    price_source: str | None = None
    promotions_applied: list[AppliedPromotionPublic] | Absent = None
    fuel_cost: float | Absent = None
    detour_fuel_cost: float | Absent = None
    time_cost: float | Absent = None
    priced_at: DateTime | Absent = None


ClosedReason = Literal["closed", "temporarily_closed", "outside_opening_hours"]


class StationPricesPublic(_Public):
    """A station with its prices and promotions at `at`."""

    id: int
    name: str
    name_en: str | None
    brand: str = Field(description="brand key: petrochina, sinopec, cnooc, shell, other ...")
    brand_raw: str | None
    address: str | None = Field(
        description="mapped (addr:* tags, operator file, manager), else the nearest named road at load"
    )
    lat: float
    lon: float
    status: Literal["open", "closed", "temporarily_closed"]
    open_now: bool | None = Field(description="at `checked_at`; null: opening hours unknown")
    opening_hours: str | None = Field(description="OSM opening_hours syntax")
    display_name: str = Field(
        description="name to show: the station's own name, else brand or operator + ' · ' + street "
        "(the address: mapped, or the nearest named road), e.g. '加油站 · CG-2'"
    )
    display_name_en: str = Field(description="in English, e.g. 'Fuel station · CG-2'")
    can_fill_up: bool | Absent | None = Field(
        None, description="can sell fuel at `checked_at` (status and opening hours); null: hours unknown"
    )
    closed_reason: ClosedReason | Absent | None = None
    checked_at: DateTime | Absent = Field(None, description="the arrival in the drive rankings, else `at`")
    amenities: list[str]
    source: str
    grades: GradesPublic


class NearbyStationPublic(StationPricesPublic):
    distance_m: float = Field(description="straight-line (geodesic) distance from the query point")
    score: ScorePublic | Absent = None
    eta_s: float | Absent | None = Field(None, description="sort=eta|total_cost: drive time under traffic")
    road_distance_m: float | Absent | None = None
    arrive_at: DateTime | Absent | None = None
    cost: CostPublic | Absent = None


class AlongRouteStationPublic(StationPricesPublic):
    offset_m: float = Field(description="distance from the route line")
    along_m: float = Field(description="distance along the route from its start")
    side: Literal["left", "right"]
    eta_s: float | None
    road_distance_m: float | None
    arrive_at: DateTime | None
    detour_s: float | None = Field(description="extra seconds of the stop over the direct route")
    detour_m: float | None
    cost: CostPublic | Absent = None


class _Envelope(_Public):
    region: str
    region_name: str
    coord: Coord
    at: DateTime
    attribution: str
    served_note: str | Absent = Field(None, description="the demo region is served")


class NearbyQueryPublic(_Public):
    lat: float
    lon: float
    radius_m: float
    grade: Grade | None
    sort: Literal["distance", "price", "effective_price", "score", "eta", "total_cost"]
    limit: int


class SearchPublic(_Public):
    max_time_s: float
    candidates: int
    origin_snap_m: float


class PurchasePublic(_Public):
    grade: Grade
    litres: float
    litres_from: Literal["litres", "tank", "amount_cny", "default"]
    amount_cny: float | None
    tank_l: float | None
    fill_level: float | None
    consumption_l_100km: float
    value_of_time_cny_h: float
    member: bool
    payment: str | None
    currency: str


class NearestByEta(_Public):
    id: int
    eta_s: float
    total: float


class NearbyPublic(_Envelope):
    query: NearbyQueryPublic
    count: int
    results: list[NearbyStationPublic]
    note: str | Absent = Field(
        None,
        description="why the list is empty or ordered otherwise than asked: the point is outside the served "
        "region (note_code OutsideRegion), or sort=eta from a point no road is near (note_code NoRoadNear: "
        "listed by straight-line distance)",
    )
    note_code: Literal["OutsideRegion", "NoRoadNear"] | Absent = Field(
        None, description="the note's code: the error code the other endpoints answer in the same case"
    )
    closed_left_out: int | Absent = Field(None, description="stations left out: they cannot sell at arrival")
    search: SearchPublic | Absent = None
    purchase: PurchasePublic | Absent = None
    nearest: NearestByEta | Absent | None = None


class StationByIdPublic(_Envelope):
    station: StationPricesPublic


class StationSummaryPublic(_Public):
    id: int
    name: str
    name_en: str | None
    display_name: str = Field(description="as in nearby: name, else brand or operator + street")
    display_name_en: str
    brand: str
    brand_raw: str | None
    address: str | None = Field(description="mapped, or the nearest named road (set at load)")
    lat: float
    lon: float
    status: Literal["open", "closed", "temporarily_closed"]
    grades: list[Grade]


class StationListPublic(_Envelope):
    count: int
    results: list[StationSummaryPublic]
    next_after: int | None = Field(description="pass as `after` for the next page; null: last page")


class AlongRouteQueryPublic(_Public):
    corridor_m: float
    grade: Grade | None
    sort: Literal["total_cost", "detour", "along"]
    range_km: float | None
    limit: int


class AlongRouteRoutePublic(_Public):
    distance_m: float
    duration_s: float | Absent = None
    depart_at: DateTime
    arrive_at: DateTime | Absent = None
    polyline6: str | Absent = Field(None, description="GET: the route driven (polyline, precision 6)")
    points: int | Absent = Field(None, description="POST: points of the line sent")
    direct_duration_s: float
    direct_distance_m: float


class CorridorPublic(_Public):
    corridor_m: float
    h3_res: int
    h3_cells: int | None
    in_corridor: int
    candidates: int


class NearestByDetour(_Public):
    id: int
    detour_s: float
    total: float


class AlongRoutePublic(_Envelope):
    query: AlongRouteQueryPublic
    route: AlongRouteRoutePublic
    corridor: CorridorPublic
    count: int
    results: list[AlongRouteStationPublic]
    closed_left_out: int | Absent = Field(None, description="stations left out: they cannot sell at arrival")
    purchase: PurchasePublic | Absent = None
    nearest: NearestByDetour | Absent | None = None


# ---- routes, matrix, traffic -------------------------------------------------------------------------


class LineStringPublic(_Public):
    type: Literal["LineString"]
    coordinates: list[LonLat]


class RouteSegmentPublic(_Public):
    edge_id: int
    distance_m: float
    duration_s: float
    congestion: float = Field(description="free-flow time / time under traffic (1 = free flow)")
    level: Level
    coordinates: list[LonLat]


class RouteStepPublic(_Public):
    maneuver: str
    type: str = Field(description="OSRM maneuver type: depart, turn, continue, new name, roundabout, ...")
    modifier: str | None
    name: str
    name_en: str
    ref: str | None
    text_zh: str
    text_en: str
    distance_m: float
    duration_s: float
    location: LonLat
    bearing_before: int
    bearing_after: int
    exit: int | Absent = Field(None, description="roundabouts: the number of the exit taken")


class SnappedPointPublic(_Public):
    location: LonLat
    distance_m: float


class RouteSnapPublic(_Public):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: SnappedPointPublic = Field(alias="from")
    to: SnappedPointPublic


class _Route(_Public):
    distance_m: float
    duration_s: float
    duration_free_flow_s: float
    delay_s: float
    depart_at: DateTime
    arrive_at: DateTime
    geometry: LineStringPublic | Absent = Field(None, description="geometries=geojson (the default) or all")
    polyline6: str | Absent = Field(None, description="geometries=polyline6 or all: precision 6, in `coord`")
    segments: list[RouteSegmentPublic] | Absent = Field(
        None, description="geometries=segments or all: per road edge, with its traffic level"
    )
    steps: list[RouteStepPublic]
    snap: RouteSnapPublic


class AlternativeRoutePublic(_Route):
    overlap: float = Field(description="share of the fastest route's length it shares")
    stretch: float = Field(description="its duration / the fastest route's duration")


class RoutePublic(_Route):
    alternatives: list[AlternativeRoutePublic]
    coord: Coord
    attribution: str


class WechatPointPublic(_Public):
    latitude: float
    longitude: float


class WechatPolylinePublic(_Public):
    """One line of the WeChat map component's `polyline` attribute."""

    points: list[WechatPointPublic]
    color: Rgba = Field(description="the first stretch's traffic colour; alternatives: grey")
    colorList: list[Rgba] | Absent = Field(
        None, description="the fastest route: the traffic colour of each stretch between two points"
    )
    width: int
    arrowLine: bool
    borderColor: Rgba
    borderWidth: int
    level: Literal["abovelabels", "aboveroads"]


class _WechatRoute(_Public):
    distance_m: float
    duration_s: float
    duration_free_flow_s: float
    delay_s: float
    depart_at: DateTime
    arrive_at: DateTime
    polyline: list[WechatPolylinePublic]
    steps: list[RouteStepPublic]


class WechatAlternativePublic(_WechatRoute):
    overlap: float = Field(description="share of the fastest route's length it shares")
    stretch: float = Field(description="its duration / the fastest route's duration")


class RouteWechatPublic(_WechatRoute):
    """format=wechat: the WeChat map component's `polyline` attribute, in GCJ-02."""

    alternatives: list[WechatAlternativePublic]
    coord: Literal["gcj02"]
    attribution: str


class MatrixPublic(_Public):
    durations_s: list[list[float | None]] = Field(description="sources x targets; null = unreachable")
    distances_m: list[list[float | None]]
    depart_at: DateTime


class EdgeTrafficPublic(_Public):
    edge_id: int
    factor: float = Field(description="speed / free-flow speed (0 = closed)")
    level: Level


class TrafficPublic(_Public):
    at: DateTime
    edges: list[EdgeTrafficPublic]


# ---- map ---------------------------------------------------------------------------------------------


class PolygonPublic(_Public):
    type: Literal["Polygon"]
    coordinates: list[list[LonLat]]


class MultiPolygonPublic(_Public):
    type: Literal["MultiPolygon"]
    coordinates: list[list[list[LonLat]]]


class PointPublic(_Public):
    type: Literal["Point"]
    coordinates: LonLat


class CellPropertiesPublic(_Public):
    cell: str = Field(description="H3 cell index")
    res: int
    count: int
    priced: int
    min_price: float | None
    min_list_price: float | None
    centre: LonLat
    fill: str = Field(description="colour, green (cheapest) to red (dearest in view)")


class CellFeaturePublic(_Public):
    type: Literal["Feature"]
    id: str
    geometry: PolygonPublic
    properties: CellPropertiesPublic


class MarkerPromotionPublic(_Public):
    id: int | None
    title: str
    title_en: str | None


class MarkerPropertiesPublic(_Public):
    id: int
    name: str
    name_en: str | None
    display_name: str = Field(description="as in nearby: name, else brand or operator + street")
    display_name_en: str
    address: str | None
    brand: str
    status: Literal["open", "closed", "temporarily_closed"]
    grades: list[Grade]
    icon: str
    grade: Grade
    list_price: float | None
    effective_price: float | None
    label: str | None
    promotion: MarkerPromotionPublic | None
    can_fill_up: bool | Absent | None = None
    closed_reason: ClosedReason | Absent | None = None


class MarkerFeaturePublic(_Public):
    type: Literal["Feature"]
    id: int
    geometry: PointPublic
    properties: MarkerPropertiesPublic


class PriceRangePublic(_Public):
    min: float
    max: float


class ColoursPublic(_Public):
    cheap: str
    mid: str
    dear: str


class _MapEnvelope(_Public):
    region: str
    coord: Coord
    attribution: str
    served_note: str | Absent = None


class _MapStationsMeta(_MapEnvelope):
    mode: Literal["cells", "markers"] = Field(description="zoom < 13: H3 price cells; >= 13: markers")
    zoom: int
    h3_res: int | None
    grade: Grade
    sort: Literal["id", "price", "effective_price"]
    at: DateTime
    count: int
    truncated: bool
    price_range: PriceRangePublic | None
    colours: ColoursPublic


class MapStationsPublic(_MapStationsMeta):
    """format=geojson: a FeatureCollection of H3 cells (Polygon) or station markers (Point)."""

    type: Literal["FeatureCollection"]
    features: list[CellFeaturePublic | MarkerFeaturePublic]


class WechatCalloutPublic(_Public):
    content: str
    display: str
    color: Rgba
    fontSize: int
    borderRadius: int
    borderWidth: int | Absent = None
    borderColor: Rgba | Absent = None
    bgColor: Rgba
    padding: int
    textAlign: str


class WechatAnchorPublic(_Public):
    x: float
    y: float


class WechatMarkerPublic(_Public):
    id: int = Field(description="a station's id, or CELL_ID_BASE (900000000) + n for a heatmap cell")
    kind: Literal["station", "cell"]
    latitude: float
    longitude: float
    title: str = Field(min_length=1, description="the station's display name; a cell's summary")
    iconPath: str = Field(description="absolute URL of the marker's PNG icon")
    width: int
    height: int
    anchor: WechatAnchorPublic | Absent = None
    zIndex: int = Field(description="stations (2) above heatmap cells (1)")
    cell: str | Absent = Field(None, description="cell mode: the H3 cell the marker labels")
    callout: WechatCalloutPublic


class WechatPolygonPublic(_Public):
    points: list[WechatPointPublic]
    strokeWidth: int
    strokeColor: Rgba
    fillColor: Rgba
    zIndex: int


class MapStationsWechatPublic(_MapStationsMeta):
    """format=wechat: the WeChat `map` component's markers and polygons, in GCJ-02."""

    markers: list[WechatMarkerPublic]
    polygons: list[WechatPolygonPublic]


class RoadPropertiesPublic(_Public):
    edge_id: int
    highway: str
    name: str | None
    name_en: str | None
    factor: float | None
    level: Literal["free", "slow", "congested", "closed", "unknown"]


class RoadFeaturePublic(_Public):
    type: Literal["Feature"]
    id: int
    geometry: LineStringPublic
    properties: RoadPropertiesPublic


class MapRoadsPublic(_MapEnvelope):
    type: Literal["FeatureCollection"]
    zoom: int
    classes: list[str]
    simplify_deg: float
    traffic_at: DateTime
    traffic: bool = Field(description="live and historical traffic is known (a road graph is loaded)")
    count: int
    truncated: bool
    features: list[RoadFeaturePublic]


class OutlinePropertiesPublic(_Public):
    name: str
    source: Literal["boundary", "bbox"]


class OutlinePublic(_Public):
    type: Literal["Feature"]
    geometry: PolygonPublic | MultiPolygonPublic
    properties: OutlinePropertiesPublic


class CentrePublic(_Public):
    lat: float
    lon: float
    source: Literal["stations", "boundary", "bbox"]


class RegionPublic(_Public):
    name: str
    display_name: str
    coord: Coord
    outline: OutlinePublic
    bbox: list[float] = Field(min_length=4, max_length=4, description="west, south, east, north")
    centre: CentrePublic
    default_zoom: int
    marker_min_zoom: int
    min_zoom: int
    max_zoom: int
    grades: list[Grade]
    currency: str
    timezone: str
    attribution: str
    attribution_url: str
    attribution_detail: str
    is_demo: bool
    served_note: str | Absent = None


# ---- user centre, pumps and nozzles (api/_users.py, api/_forecourt.py) ------------------------------


class UserPublic(_Public):
    id: int
    created_at: DateTime
    last_login_at: DateTime
    unionid_known: bool = Field(description="WeChat gave a unionid (the app is in an open platform)")
    phone_known: bool


class LoginPublic(_Public):
    token: str = Field(description="send it as `Authorization: Bearer <token>`")
    token_type: Literal["Bearer"]
    expires_at: DateTime = Field(description="after this, log in again (wx.login, then this endpoint)")
    expires_in: int = Field(description="seconds until expires_at")
    created: bool = Field(description="this login created the user")
    user: UserPublic


PumpStatusText = Literal[
    "free", "in-use", "in-transaction", "ready-to-pay", "locked", "out-of-order", "unknown"
]


class NozzleGradePricePublic(_Public):
    """The grade's price now at the station (null when the station has no known price for it)."""

    list_price: float | None = Field(description="CNY per litre")
    list_price_fen: int | None = Field(description="fen per litre")
    effective_price: float | None = Field(description="after the best applicable promotion, CNY per litre")
    effective_price_fen: int | None
    promotions_applied: list[AppliedPromotionPublic]
    effective_from: DateTime | None
    source: str | None
    priced_at: DateTime


class NozzleStationPublic(_Public):
    id: int
    name: str
    display_name: str
    display_name_en: str | None
    brand: str
    address: str | None
    can_fill_up: bool | None = Field(description="null: opening hours unknown")


class NozzlePumpPublic(_Public):
    pump_no: int
    label: str


class NozzleNozzlePublic(_Public):
    nozzle_no: int
    grade: Grade


class NozzlePublic(_Public):
    """What the QR code on a nozzle names: the station (the payee), the pump, the nozzle and its grade."""

    station: NozzleStationPublic
    pump: NozzlePumpPublic
    nozzle: NozzleNozzlePublic
    price: NozzleGradePricePublic
    currency: str


class PumpNozzlePublic(_Public):
    nozzle_no: int
    grade: Grade
    active: bool
    token: str | None = Field(
        None,
        description="development and tests only: the nozzle's active QR token (what its sticker holds); "
        "always null in production, and null when none is issued",
    )


class PumpLivePublic(_Public):
    pump_no: int
    label: str
    status: PumpStatusText = Field(
        description="as the station link last reported it; unknown when stale or never"
    )
    fp_state: int | None = Field(description="IFSF fuelling-point state 1-9, when the site reports it")
    reported_at: DateTime | None
    valid_until: DateTime | None
    nozzles: list[PumpNozzlePublic]


class StationPumpsPublic(_Public):
    station_id: int
    checked_at: DateTime
    pumps: list[PumpLivePublic]


class RequestPaymentPublic(_Public):
    """The arguments of the mini-program's wx.requestPayment, as they are."""

    timeStamp: str
    nonceStr: str
    package: str = Field(description="prepay_id=...")
    signType: Literal["RSA"]
    paySign: str


class SalePaymentPublic(_Public):
    """A controller sale's WeChat Pay order: what the payer pays, and how the mini-program pays it."""

    out_trade_no: str
    sale_id: int
    amount_fen: int = Field(description="what the payer pays: the sale's amount minus the promotion")
    sale_amount_fen: int = Field(description="the sale's amount at the pump")
    discount_fen: int = Field(description="the promotion that applied at the fill-up")
    redeemed_points: int = Field(0, description="points redeemed on this order (held until it is paid)")
    redemption_fen: int = Field(0, description="what the redeemed points took off the amount")
    expires_at: DateTime = Field(description="after this the order closes and the sale is released")
    request_payment: RequestPaymentPublic


# ---- points ------------------------------------------------------------------------------------------


class PointsHoldPublic(_Public):
    out_trade_no: str = Field(description="the order the points are held for")
    points: int
    fen_off: int
    held_at: DateTime


class PointsExpiringPublic(_Public):
    expires_at: DateTime
    points: int


class PointsEntryPublic(_Public):
    id: int
    kind: Literal["earn", "hold", "post", "void", "expire", "reverse_earn", "return_redeemed", "adjust"]
    points: int = Field(description="signed: what the entry added to (or took from) the balance")
    balance: int = Field(description="the balance after the entry")
    out_trade_no: str | None
    at: DateTime


class PointsPublic(_Public):
    """A user's points: what they hold, what they can redeem now, what is held, what expires soon."""

    balance: int = Field(description="points on the account (negative: a refund took back spent points)")
    redeemable: int = Field(description="unexpired points a payment can redeem now")
    unit_points: int = Field(description="redemptions are multiples of this")
    unit_fen: int = Field(description="what one unit takes off an order")
    pending: list[PointsHoldPublic]
    expiring: list[PointsExpiringPublic]
    history: list[PointsEntryPublic]
    next_cursor: int | None = Field(description="pass as `cursor` for older entries; null at the end")


# ---- operations --------------------------------------------------------------------------------------


class HealthPublic(_Public):
    status: Literal["ok"]


class ReadyPublic(_Public):
    ready: bool
    database: bool
    region: str
    graph: bool = Field(description="the road graph is loaded")
    database_error: str | Absent = None


# ---- OSRM v5 (their spec is Project-OSRM's docs/http.md; unknown keys are allowed) --------------------


class _Osrm(BaseModel):
    model_config = ConfigDict(extra="allow")


class OsrmWaypoint(_Osrm):
    name: str
    location: LonLat
    distance: float = Field(description="metres from the input coordinate to the snapped one")
    hint: str | Absent = None
    nodes: list[int] | Absent = None


class OsrmManeuver(_Osrm):
    type: str
    location: LonLat
    bearing_before: int
    bearing_after: int
    modifier: str | Absent = None
    exit: int | Absent = None


class OsrmIntersection(_Osrm):
    location: LonLat
    bearings: list[int]
    entry: list[bool]
    in_: int | Absent = Field(None, alias="in")
    out: int | Absent = None
    classes: list[str] | Absent = None


class OsrmStep(_Osrm):
    distance: float
    duration: float
    weight: float
    name: str
    mode: str
    driving_side: str
    maneuver: OsrmManeuver
    geometry: str | LineStringPublic
    intersections: list[OsrmIntersection]
    ref: str | Absent = None
    rotary_name: str | Absent = None


class OsrmLeg(_Osrm):
    distance: float
    duration: float
    weight: float
    summary: str
    steps: list[OsrmStep]
    annotation: dict[str, Any] | Absent = None


class OsrmRoute(_Osrm):
    distance: float
    duration: float
    weight: float
    weight_name: str
    legs: list[OsrmLeg]
    geometry: str | LineStringPublic | Absent = Field(None, description="left out with overview=false")


class OsrmRouteResponse(_Osrm):
    code: Literal["Ok"]
    routes: list[OsrmRoute]
    waypoints: list[OsrmWaypoint] | Absent = None


class OsrmTableResponse(_Osrm):
    code: Literal["Ok"]
    durations: list[list[float | None]] | Absent = None
    distances: list[list[float | None]] | Absent = None
    sources: list[OsrmWaypoint] | Absent = None
    destinations: list[OsrmWaypoint] | Absent = None
    fallback_speed_cells: list[list[int]] | Absent = None


class OsrmNearestResponse(_Osrm):
    code: Literal["Ok"]
    waypoints: list[OsrmWaypoint] | Absent = None


class OsrmErrorBody(_Osrm):
    """OSRM's error body (HTTP 400, or 503 DisabledDataset)."""

    code: str = Field(
        description="InvalidUrl, InvalidService, InvalidVersion, InvalidQuery, InvalidOptions, InvalidValue, "
        "NoSegment, NoRoute, TooBig, NotImplemented, DisabledDataset",
        examples=["NoSegment"],
    )
    message: str


# ---- errors: {"error": {"code", "message", "param"?, ...}} for every status (api/_errors.py) ------------


class ProblemPublic(_Public):
    param: str
    message: str


class AllowedRangePublic(_Public):
    """Amounts (CNY, percent) as numbers; times as ISO-8601 date-times in the region's zone."""

    min: float | str | None
    max: float | str | None


class ErrorPublic(_Public):
    code: str = Field(
        description="what went wrong, e.g. InvalidInput, NoRoadNear, RateLimited, VersionConflict"
    )
    message: str = Field(description="in words a person can act on")
    param: str | Absent | None = Field(None, description="422: the parameter or body field at fault")
    errors: list[ProblemPublic] | Absent = Field(None, description="422: every parameter at fault")
    rule: str | Absent = Field(None, description="ImplausibleValue: the plausibility rule broken")
    allowed: AllowedRangePublic | Absent = Field(None, description="ImplausibleValue: the allowed range")
    current_version: int | Absent = Field(None, description="409 VersionConflict: the stored version")
    retry_after_s: int | Absent = Field(None, description="503: seconds to wait (also in Retry-After)")


class ErrorBody(_Public):
    error: ErrorPublic


def _example(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


_RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
_ERRORS: dict[int, tuple[str, dict[str, Any], dict[str, Any]]] = {
    400: (
        "The body could not be read (not UTF-8, or cut short)",
        _example("HTTPError", "There was an error parsing the body"),
        {},
    ),
    401: (
        "No API key, or a key that is not valid",
        _example("Unauthorized", "an API key is required: send it in the X-API-Key header"),
        {"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'ApiKey header="X-API-Key"'}},
    ),
    403: (
        "The key may not do this (another station's data, or the wrong role)",
        _example("Forbidden", "key 'fuhui-manager' may not write station 2"),
        {},
    ),
    404: (
        "Not found: no such station or promotion, or no drivable path joins the points",
        _example("NotFound", "station 42 not found"),
        {},
    ),
    410: (
        "Gone: the nozzle code was revoked (its sticker replaced) or the nozzle is out of service",
        _example(
            "NozzleTokenRevoked",
            "this nozzle code was revoked on 2026-11-20: scan the code on the nozzle again",
        ),
        {},
    ),
    409: (
        "The write was based on a stale version (the body and ETag name the current one), or conflicts "
        "with a stored value",
        _example("VersionConflict", "station 1 is at version 4, not 3", current_version=4),
        {"ETag": {"schema": {"type": "string"}, "description": 'the current version, e.g. "4"'}},
    ),
    413: (
        "The request body is above FUEL_MAX_BODY_BYTES",
        _example("PayloadTooLarge", "request body above 1048576 bytes"),
        {},
    ),
    422: (
        "Bad input: `param` names the parameter (or body field) and `message` the rule it breaks",
        _example(
            "InvalidInput",
            "lat: must be between -90 and 90, got 91",
            param="lat",
            errors=[{"param": "lat", "message": "must be between -90 and 90, got 91"}],
        ),
        {},
    ),
    428: (
        "A write without the version it is based on: send If-Match or a `version` field",
        _example(
            "PreconditionRequired", 'this write needs the version it is based on: send If-Match: "<version>"'
        ),
        {},
    ),
    429: (
        "Over the client's rate limit (FUEL_RATE_LIMIT_PER_MINUTE), or too many failed authentications",
        _example("RateLimited", "more than 600 requests a minute; retry in 12 s"),
        {"Retry-After": _RETRY_AFTER},
    ),
    503: (
        "The database is unreachable or busy, or the request ran out of its time budget; retry later",
        _example("DatabaseUnavailable", "database unavailable, retry shortly", retry_after_s=2),
        {"Retry-After": _RETRY_AFTER},
    ),
    504: (
        "A command was sent to the station and not answered in time: its outcome is unknown",
        _example("CommandTimeout", "command 12 sent, no answer within 10 s: outcome unknown"),
        {},
    ),
}


# A user's session token instead of an API key (api/_users.py): 401 and 403 in those words.
_USER_ERRORS: dict[int, tuple[str, dict[str, Any], dict[str, Any]]] = {
    401: (
        "No session token, or one that is not valid or has expired: log in (POST /v1/auth/wechat) and "
        "send `Authorization: Bearer <token>`",
        _example("Unauthorized", "a session token is required: log in with POST /v1/auth/wechat"),
        {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    ),
    403: (
        "Someone else's resource",
        _example("Forbidden", "this belongs to another user"),
        {},
    ),
}


# ---- fuelling sessions (api/_fuelling.py) ---------------------------------------------------------------

SessionState = Literal[
    "bound",
    "nozzle_up",
    "authorised",
    "fuelling",
    "completed",
    "locked",
    "paid",
    "expired",
    "taken_by_cashier",
    "cancelled",
    "review",
]


class SessionCreate(BaseModel):
    """Bind a fuelling session to the nozzle of a scanned QR code (post-pay; a preset amount optionally)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"nozzle_token": "bWFkZS11cC1leGFtcGxlLXRvaw"}]}
    )
    nozzle_token: str = Field(
        min_length=27, max_length=27, pattern=r"^[A-Za-z0-9_-]{27}$", description="the QR code's `scene`"
    )
    preset_fen: int | Absent = Field(
        None,
        ge=100,
        le=500_000,
        description="a pre-authorised amount in fen: the pump stops there (UNLOCKPUMP at the station)",
    )
    device_fingerprint: str | Absent = Field(
        None,
        min_length=8,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="the client's device fingerprint for risk control: stored only as a keyed hash",
    )
    vehicle_class: str | Absent = Field(
        None,
        pattern=r"^(motorcycle|car|suv|van|truck)$",
        description="the vehicle's class (motorcycle, car, suv, van, truck): a fill-up above its tank goes to review",
    )


class SaleSnapshotPublic(_Public):
    site_tx_id: str
    volume_ml: int
    amount_fen: int
    unit_price_fen: int
    totaliser_start_ml: int
    totaliser_end_ml: int


class SessionPublic(_Public):
    id: int
    state: SessionState
    terminal: bool = Field(description="the session takes no more events")
    mode: Literal["postpay", "preset"]
    preset_fen: int | None
    station_id: int
    pump_no: int
    nozzle_no: int
    grade: Grade
    volume_ml: int = Field(description="live: the last progress; from completed on: the sale's")
    litres: float
    amount_fen: int
    amount: float = Field(description="amount_fen in CNY")
    amount_final: bool = Field(description="completed, locked or paid: the checked sale's amount")
    final_amount_fen: int | None = Field(description="the amount to pay, once final")
    sale: SaleSnapshotPublic | None
    review_reason: str | None = Field(description="why the sale must not be paid (state review)")
    last_seq: int = Field(description="the sequence number of the session's last event")
    created_at: DateTime
    updated_at: DateTime
    expires_at: DateTime = Field(description="a session still waiting at the pump then expires")
    ended_at: DateTime | None


class SessionEventPublic(_Public):
    seq: int
    type: Literal["state", "progress"]
    kind: str = Field(description="what happened: bound, lifted, progress, sale_payable, cancel, ...")
    state: SessionState
    volume_ml: int
    litres: float
    amount_fen: int
    amount: float
    progress_seq: int | None
    at: DateTime
    sale: SaleSnapshotPublic | None = None
    final_amount_fen: int | None = None
    review_reason: str | None = None
    reason: str | None = None


class SessionEventsPublic(_Public):
    session_id: int
    state: SessionState
    last_seq: int
    events: list[SessionEventPublic]
    more: bool = Field(description="more events follow: ask again with after_seq = the last one's seq")


def error_responses(*statuses: int, user: bool = False) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an endpoint: the error body, a description and an example per status
    (`user`: 401 and 403 are about a user's session token, not an API key)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, example, headers = (_USER_ERRORS if user else {}).get(status) or _ERRORS[status]
        doc: dict[str, Any] = {
            "model": ErrorBody,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
        if headers:
            doc["headers"] = headers
        out[status] = doc
    return out


# the statuses most endpoints share
READ = (422, 429, 503)  # public reads from the database
WRITE = (400, 401, 403, 404, 409, 413, 422, 428, 429, 503)  # manager writes


def _shape(key: str, tag: str, other: str) -> Any:
    """A callable discriminator: the body has `key` -> `tag`, else `other` (one model is checked, not two)."""
    return Discriminator(lambda v: tag if (key in v if isinstance(v, dict) else hasattr(v, key)) else other)


RouteAnswer = Annotated[
    Annotated[RoutePublic, Tag("json")] | Annotated[RouteWechatPublic, Tag("wechat")],
    _shape("geometry", "json", "wechat"),
]
MapStationsAnswer = Annotated[
    Annotated[MapStationsPublic, Tag("geojson")] | Annotated[MapStationsWechatPublic, Tag("wechat")],
    _shape("features", "geojson", "wechat"),
]
