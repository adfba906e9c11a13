"""Station manager API: prices, promotions and station details, behind API keys (api/_auth.py).

Writes need the version they are based on: `If-Match: "<version>"` (the ETag of the last read or
write) or a `version` field in the body. A stale version gives 409 naming the current version;
no version at all gives 428. Responses carry the new ETag. Every change is in audit_log, written in
the same transaction. POST (create) needs no version: a retried POST with the same `source_ref` and
content returns the stored promotion (200), other content under that source_ref is a 409.

Endpoints:
- GET    /v1/manage/stations/{id}        the station's editable view (version, current prices, promotions)
- PATCH  /v1/stations/{id}               name, name_en, address, opening_hours, status, grades, amenities
- PUT    /v1/stations/{id}/prices        [{grade, price_cny, effective_from?}] (or {"prices": [...], "version": n})
- POST   /v1/stations/{id}/promotions    a station promotion
- GET    /v1/promotions/{id}             one promotion with its version
- PUT    /v1/promotions/{id}             replace its editable fields
- DELETE /v1/promotions/{id}
Managers read and write their own stations (and those stations' promotions) only: another station's
resource is a 403. Brand-wide promotions are written by operators only; a manager may read those of
the brands of its stations. Every value is checked for plausibility (geo/_plausible.py): an
implausible one is a 422 naming the field, the rule and the allowed range.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, tzinfo
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from api._auth import Forbidden, PreconditionRequired, authenticate, require_operator, require_station
from api._models import READ, WRITE, Grade, error_responses
from api._params import grade_code
from api._state import AppState, get_state
from api._text import Text
from geo._errors import InvalidInput
from geo._hours import check_opening_hours
from geo._plausible import PlausibilityRules
from geo._pricing import KNOWN_GRADES, PROMOTION_KINDS, Promotion, PromotionKind
from store._auth import Principal
from store._manage import (
    brands_of,
    create_promotion,
    delete_promotion,
    get_promotion_row,
    get_station_row,
    patch_station,
    set_prices,
    update_promotion,
)
from store._prices import current_prices
from store._promotions import promotions_for_stations

router = APIRouter(tags=["manage"])

StationId = Annotated[int, Path(ge=1, le=2**63 - 1, description="station id")]
PromotionId = Annotated[int, Path(ge=1, le=2**63 - 1, description="promotion id")]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", description='"<version>" from the ETag', examples=['"3"'])
]
_ETAG = {"ETag": {"schema": {"type": "string"}, "description": 'the version, e.g. "4": send it as If-Match'}}


def _with_etag(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error responses, and the ETag header of the 200."""
    return {200: {"headers": _ETAG}, **error_responses(*statuses)}


GradeIn = Annotated[Grade, BeforeValidator(grade_code)]  # "95#" is 95
# [first day, last day]: an array of two dates in the schema (tuple schemas trip some OpenAPI tools)
DateRange = Annotated[
    tuple[date, date],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "format": "date"},
            "minItems": 2,
            "maxItems": 2,
            "description": "[first day, last day], inclusive",
        }
    ),
]
# a local time of day: JSON Schema's `time` format needs an offset, these have none
TimeOfDay = Annotated[
    time,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?$",
            "description": "local time of day, HH:MM[:SS], in the region's time zone",
            "examples": ["07:00:00"],
        }
    ),
]
Amenity = Literal["shop", "car_wash", "toilets", "ev_charging", "compressed_air", "atm"]
AMENITIES: tuple[str, ...] = get_args(Amenity)


def _grades(v: list[str] | None) -> list[str] | None:
    """Each grade once, in the usual order."""
    return None if v is None else [g for g in KNOWN_GRADES if g in v]


# ---- models: Create / Update / Public ---------------------------------------------------------------


class StationUpdate(BaseModel):
    """PATCH body: only the fields sent are changed (null clears name_en, address, opening_hours)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"opening_hours": "Mo-Su 07:00-22:00", "amenities": ["shop", "toilets"]}]
        },
    )
    name: Text | None = Field(None, min_length=1, max_length=200)
    name_en: Text | None = Field(None, max_length=200)
    address: Text | None = Field(None, max_length=500)
    opening_hours: Text | None = Field(None, max_length=200)
    status: Literal["open", "closed", "temporarily_closed"] | None = None
    grades: list[GradeIn] | None = None
    amenities: list[Amenity] | None = None
    version: int | None = Field(None, ge=1, description="alternative to If-Match")

    @field_validator("grades")
    @classmethod
    def _known_grades(cls, v: list[str] | None) -> list[str] | None:
        return _grades(v)

    @field_validator("amenities")
    @classmethod
    def _known_amenities(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [a for a in AMENITIES if a in v]

    @field_validator("opening_hours")
    @classmethod
    def _hours(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        try:
            return check_opening_hours(v)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None


class PriceCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"grade": "92", "price_cny": "7.85", "effective_from": "2026-11-28T00:00:00+08:00"}]
        },
    )
    grade: GradeIn
    price_cny: Decimal = Field(gt=0, le=100, decimal_places=2)
    effective_from: datetime | None = Field(None, description="ISO-8601; naive = region local; default now")


class PricesPut(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"prices": [{"grade": "95", "price_cny": "8.36"}], "version": 3}]},
    )
    prices: list[PriceCreate] = Field(min_length=1, max_length=20)
    version: int | None = Field(None, ge=1)


class PricePublic(BaseModel):
    grade: Grade
    price_cny: float = Field(description="CNY per litre, a number as in the public views")
    effective_from: datetime = Field(description="in the region's time zone (+08:00)")
    action: Literal["new", "updated", "unchanged", "held"]
    decision_id: int | None = Field(
        None, description="held: the risk decision an operator reviews (approving publishes the price)"
    )


class PromotionBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Text = Field("", max_length=200)
    title_en: Text | None = Field(None, max_length=200)
    grades: list[GradeIn] = Field(default_factory=list, description="the grades it applies to; none: all")
    kind: Literal["percent_off", "cny_off_per_litre", "cny_off_per_order", "topup_bonus"]
    value: Decimal = Field(gt=0, le=999999, decimal_places=2)
    min_amount_cny: Decimal | None = Field(None, gt=0, decimal_places=2)
    min_litres: Decimal | None = Field(None, gt=0, decimal_places=2)
    days_of_week: list[Annotated[int, Field(ge=1, le=7)]] = Field(default_factory=list)
    date_ranges: list[DateRange] = Field(default_factory=list, description="only on these days")
    public_holidays_only: bool = False
    time_from: TimeOfDay | None = None
    time_to: TimeOfDay | None = None
    members_only: bool = False
    payment_methods: list[Annotated[Text, Field(min_length=1, max_length=40)]] = Field(default_factory=list)
    min_tier: str | None = Field(
        None,
        pattern=r"^[a-z]{1,20}$",
        description="for members of this tier or above (a code of GET /v1/me/membership's tiers); null: anyone",
    )
    valid_from: datetime
    valid_to: datetime | None = None

    @field_validator("grades")
    @classmethod
    def _known_grades(cls, v: list[str]) -> list[str]:
        return _grades(v) or []


class PromotionCreate(PromotionBase):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "title": "周末92号每升优惠0.30元",
                    "title_en": "0.30 CNY off per litre of 92 at weekends",
                    "grades": ["92"],
                    "kind": "cny_off_per_litre",
                    "value": "0.30",
                    "days_of_week": [6, 7],
                    "valid_from": "2026-12-01T00:00:00+08:00",
                    "source_ref": "weekend-92-2026-12",
                }
            ]
        },
    )
    source_ref: Text | None = Field(None, max_length=100, description="your id: a retried POST is harmless")


class PromotionUpdate(PromotionBase):
    version: int | None = Field(None, ge=1, description="alternative to If-Match")


class PromotionPublic(BaseModel):
    id: int
    version: int
    scope: Literal["station", "brand"]
    station_id: int | None
    brand: str | None
    title: str
    title_en: str | None
    grades: list[Grade]
    kind: PromotionKind
    value: float = Field(description="percent, or CNY (per litre, per order, or bonus), by kind")
    min_amount_cny: float | None
    min_litres: float | None
    days_of_week: list[int]
    date_ranges: list[DateRange]
    public_holidays_only: bool
    time_from: TimeOfDay | None
    time_to: TimeOfDay | None
    members_only: bool
    payment_methods: list[str]
    min_tier: str | None = Field(description="for members of this tier or above; null: anyone")
    valid_from: datetime = Field(description="in the region's time zone (+08:00)")
    valid_to: datetime | None
    source: str
    source_ref: str | None


class StationPublic(BaseModel):
    id: int
    version: int
    source: str
    source_ref: str
    name: str
    name_en: str | None
    brand: str
    address: str | None
    lat: float
    lon: float
    grades: list[Grade]
    opening_hours: str | None
    amenities: list[str]
    status: Literal["open", "closed", "temporarily_closed"]
    updated_at: datetime = Field(description="in the region's time zone (+08:00)")
    prices: dict[str, float] = Field(default_factory=dict, description="list prices in force now, CNY/L")
    promotions: list[PromotionPublic] = Field(default_factory=list)


class PricesResult(BaseModel):
    station_id: int
    version: int
    prices: list[PricePublic]


class PricesHeld(PricesResult):
    """202: at least one price was held for an operator's review (price anomaly); the others were set."""

    held: Literal[True] = True
    decision_id: int = Field(description="the first held price's risk decision")
    decision_ids: list[int] = Field(description="every held price's risk decision, in request order")


PRICES_HELD: dict[int | str, dict[str, Any]] = {
    202: {
        "model": PricesHeld,
        "headers": _ETAG,
        "description": "Accepted, held: a price change far outside the station's own steps or its"
        " neighbours' prices waits for an operator's review (not published until approved); the other"
        " prices of the request were set. The same price again while it waits answers the same decision.",
    }
}


# ---- helpers ----------------------------------------------------------------------------------------


def expected_version(if_match: str | None, body_version: int | None) -> int:
    """The version a write is based on: If-Match ("3", W/"3" or 3), else the body's `version`."""
    if if_match is not None and if_match.strip():
        tag = if_match.strip()
        if tag == "*":
            raise PreconditionRequired(
                'If-Match: * is not accepted: send the version you read, e.g. If-Match: "3"'
            )
        tag = tag.removeprefix("W/").strip().strip('"')
        if not tag.isdigit():
            raise InvalidInput("If-Match", f'must be a version ETag like "3", got {if_match!r}')
        version = int(tag)
        if body_version is not None and body_version != version:
            raise InvalidInput("version", f"the body says {body_version} but If-Match says {version}")
        return version
    if body_version is not None:
        return body_version
    raise PreconditionRequired(
        'this write needs the version it is based on: send If-Match: "<version>" (the ETag you read) '
        "or a version field"
    )


def _etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


def _local(t: datetime, tz: tzinfo) -> datetime:
    """A stored time in the region's zone, as the public views write it (+08:00); naive: already local."""
    return t.replace(tzinfo=tz) if t.tzinfo is None else t.astimezone(tz)


def _number(x: Decimal | None) -> float | None:
    """Money and quantities as JSON numbers (the database's numeric would be a decimal string)."""
    return None if x is None else float(x)


def _station_public(row: dict[str, Any], tz: tzinfo, **extra: Any) -> StationPublic:
    fields = {k: row[k] for k in StationPublic.model_fields if k in row and k not in extra}
    fields["updated_at"] = _local(row["updated_at"], tz)
    return StationPublic(**fields, **extra)


def _promotion_public(p: Promotion, version: int, tz: tzinfo) -> PromotionPublic:
    return PromotionPublic(
        id=int(p.id or 0),
        version=version,
        scope=p.scope,
        station_id=p.station_id,
        brand=p.brand,
        title=p.title,
        title_en=p.title_en,
        grades=list(p.grades),
        kind=p.kind,
        value=float(p.value),
        min_amount_cny=_number(p.min_amount_cny),
        min_litres=_number(p.min_litres),
        days_of_week=list(p.days_of_week),
        date_ranges=list(p.date_ranges),
        public_holidays_only=p.public_holidays_only,
        time_from=p.time_from,
        time_to=p.time_to,
        members_only=p.members_only,
        payment_methods=list(p.payment_methods),
        min_tier=p.min_tier,
        valid_from=_local(p.valid_from or datetime.min, tz),
        valid_to=None if p.valid_to is None else _local(p.valid_to, tz),
        source=p.source,
        source_ref=p.source_ref,
    )


def _promotion_in(body: PromotionBase, state: AppState, **key: Any) -> Promotion:
    tz = state.served.region.tz

    def aware(t: datetime | None) -> datetime | None:
        return None if t is None else (t.replace(tzinfo=tz) if t.tzinfo is None else t)

    valid_from, valid_to = aware(body.valid_from), aware(body.valid_to)
    if valid_to is not None and valid_from is not None and valid_to <= valid_from:
        raise InvalidInput("valid_to", "must be after valid_from")
    for a, b in body.date_ranges:
        if b < a:
            raise InvalidInput("date_ranges", f"range {a}..{b} ends before it starts")
    return Promotion(
        kind=body.kind,
        value=body.value,
        title=body.title,
        title_en=body.title_en,
        grades=tuple(body.grades),
        min_amount_cny=body.min_amount_cny,
        min_litres=body.min_litres,
        days_of_week=tuple(sorted(set(body.days_of_week))),
        date_ranges=tuple(sorted(body.date_ranges)),
        public_holidays_only=body.public_holidays_only,
        time_from=body.time_from,
        time_to=body.time_to,
        members_only=body.members_only,
        payment_methods=tuple(sorted({m.lower() for m in body.payment_methods})),
        min_tier=body.min_tier,
        valid_from=valid_from,
        valid_to=valid_to,
        **key,
    )


def _may_write_promotion(principal: Principal, p: Promotion) -> None:
    if p.scope == "brand" or p.station_id is None:
        require_operator(principal, f"brand promotion {p.id}")
    else:
        require_station(principal, p.station_id)


def _may_read_station(principal: Principal, station_id: int) -> None:
    """Operators read every station, managers their own (the stations they may write)."""
    if not principal.may_write_station(station_id):
        raise Forbidden(f"key {principal.name!r} may not read station {station_id}")


def _may_read_promotion(principal: Principal, p: Promotion, conn: Any) -> None:
    """A station promotion: as its station. A brand promotion: operators, and managers of a station of
    that brand."""
    if p.scope == "station" and p.station_id is not None:
        _may_read_station(principal, p.station_id)
        return
    if principal.role == "operator":
        return
    if principal.role == "manager" and p.brand in brands_of(conn, principal.station_ids):
        return
    raise Forbidden(f"key {principal.name!r} may not read promotion {p.id}")


def _rules(state: AppState) -> PlausibilityRules:
    return PlausibilityRules.from_settings(state.settings)


# ---- endpoints --------------------------------------------------------------------------------------


@router.get(
    "/v1/manage/stations/{station_id}",
    response_model=StationPublic,
    responses=_with_etag(401, 403, 404, *READ),
)
def read_station(
    station_id: StationId,
    response: Response,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> StationPublic:
    """The station as a manager edits it, with its version (also the ETag)."""
    _may_read_station(principal, station_id)
    with state.db.connection() as conn:
        row = get_station_row(conn, station_id)
        now = datetime.now(state.served.region.tz)
        prices = current_prices(conn, [station_id], now).get(station_id, {})
        promos = promotions_for_stations(conn, [(station_id, row["brand"])]).get(station_id, [])
        versions = _versions(conn, [int(p.id or 0) for p in promos])
    _etag(response, int(row["version"]))
    tz = state.served.region.tz
    return _station_public(
        row,
        tz,
        prices={g: float(p.price_cny) for g, p in prices.items()},
        promotions=[_promotion_public(p, versions.get(int(p.id or 0), 1), tz) for p in promos],
    )


def _versions(conn: Any, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    rows = conn.execute("SELECT id, version FROM promotions WHERE id = ANY(%s)", (ids,)).fetchall()
    return {int(r["id"]): int(r["version"]) for r in rows}


@router.patch("/v1/stations/{station_id}", response_model=StationPublic, responses=_with_etag(*WRITE))
def update_station(
    station_id: StationId,
    body: StationUpdate,
    response: Response,
    if_match: IfMatch = None,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> StationPublic:
    """Change station details. Only the fields sent change."""
    require_station(principal, station_id)
    version = expected_version(if_match, body.version)
    changes = {k: getattr(body, k) for k in body.model_fields_set if k != "version"}
    if "name" in changes and changes["name"] is None:
        raise InvalidInput("name", "cannot be null")
    for k in ("status", "grades", "amenities"):
        if k in changes and changes[k] is None:
            raise InvalidInput(k, "cannot be null")
    with state.db.connection() as conn:
        row, _ = patch_station(conn, station_id, version, changes, actor=principal.name)
    _etag(response, int(row["version"]))
    return _station_public(row, state.served.region.tz)


@router.put(
    "/v1/stations/{station_id}/prices",
    response_model=PricesResult,
    responses={**_with_etag(*WRITE), **PRICES_HELD},
)
def put_prices(
    station_id: StationId,
    response: Response,
    prices: list[PriceCreate] | PricesPut = Body(...),
    if_match: IfMatch = None,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> PricesResult | JSONResponse:
    """Set list prices. Each {grade, price_cny, effective_from?}: effective_from defaults to now (naive =
    region local time); a later effective_from adds to the history, the same one corrects it. Risk control
    screens each change: an anomalous one is held for an operator's review (202, `held`, not published
    until approved) while the request's other prices are set; a denied one refuses the request (403)."""
    require_station(principal, station_id)
    items, body_version = (prices.prices, prices.version) if isinstance(prices, PricesPut) else (prices, None)
    if not items:
        raise InvalidInput("prices", "at least one price")
    version = expected_version(if_match, body_version)
    region = state.served.region
    tz = region.tz
    seen: set[tuple[str, datetime | None]] = set()
    wanted = []
    for i, p in enumerate(items):
        ef = (
            None
            if p.effective_from is None
            else (
                p.effective_from.replace(tzinfo=tz) if p.effective_from.tzinfo is None else p.effective_from
            )
        )
        if (p.grade, ef) in seen:
            raise InvalidInput(f"prices[{i}]", f"grade {p.grade} twice for the same effective_from")
        seen.add((p.grade, ef))
        wanted.append((p.grade, p.price_cny, ef))
    with state.db.connection() as conn:
        new_version, changes = set_prices(
            conn,
            station_id,
            version,
            wanted,
            zone=region.price_zone,
            now=datetime.now(tz),
            actor=principal.name,
            rules=_rules(state),
        )
    _etag(response, new_version)
    result = PricesResult(
        station_id=station_id,
        version=new_version,
        prices=[
            PricePublic(
                grade=c.grade,
                price_cny=float(c.price_cny),
                effective_from=_local(c.effective_from, tz),
                action=c.action,
                decision_id=c.decision_id,
            )
            for c in changes
        ],
    )
    held = [c.decision_id for c in changes if c.decision_id is not None]
    if not held:
        return result
    body = PricesHeld(**result.model_dump(), decision_id=held[0], decision_ids=held)
    return JSONResponse(jsonable_encoder(body), status_code=202, headers={"ETag": f'"{new_version}"'})


@router.post(
    "/v1/stations/{station_id}/promotions",
    response_model=PromotionPublic,
    status_code=201,
    responses={
        201: {"description": "Created (Location: its URL)", "headers": _ETAG},
        200: {
            "model": PromotionPublic,
            "description": "The same promotion was already stored under this `source_ref` (a retried POST)",
            "headers": _ETAG,
        },
        **error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    },
)
def post_promotion(
    station_id: StationId,
    body: PromotionCreate,
    response: Response,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> PromotionPublic:
    """Create a promotion of this station."""
    require_station(principal, station_id)
    promo = _promotion_in(
        body,
        state,
        scope="station",
        station_id=station_id,
        source="station",
        source_ref=body.source_ref or f"api-{uuid.uuid4().hex}",
    )
    with state.db.connection() as conn:
        get_station_row(conn, station_id)  # 404 for an unknown station
        stored, version, created = create_promotion(
            conn, promo, actor=principal.name, zone=state.region.price_zone, rules=_rules(state)
        )
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/promotions/{stored.id}"
    _etag(response, version)
    return _promotion_public(stored, version, state.served.region.tz)


@router.get(
    "/v1/promotions/{promotion_id}",
    response_model=PromotionPublic,
    responses=_with_etag(401, 403, 404, *READ),
)
def read_promotion(
    promotion_id: PromotionId,
    response: Response,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> PromotionPublic:
    """One promotion with its version (also the ETag)."""
    with state.db.connection() as conn:
        promo, version = get_promotion_row(conn, promotion_id)
        _may_read_promotion(principal, promo, conn)
    _etag(response, version)
    return _promotion_public(promo, version, state.served.region.tz)


@router.put("/v1/promotions/{promotion_id}", response_model=PromotionPublic, responses=_with_etag(*WRITE))
def put_promotion(
    promotion_id: PromotionId,
    body: PromotionUpdate,
    response: Response,
    if_match: IfMatch = None,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> PromotionPublic:
    """Replace a promotion's terms (its station/brand and source_ref stay)."""
    with state.db.connection() as conn:
        current, _ = get_promotion_row(conn, promotion_id)
    _may_write_promotion(principal, current)
    version = expected_version(if_match, body.version)
    promo = _promotion_in(
        body, state, id=promotion_id, scope=current.scope, station_id=current.station_id, brand=current.brand
    )
    with state.db.connection() as conn:
        stored, new_version, _ = update_promotion(
            conn,
            promotion_id,
            version,
            promo,
            actor=principal.name,
            zone=state.region.price_zone,
            rules=_rules(state),
        )
    _etag(response, new_version)
    return _promotion_public(stored, new_version, state.served.region.tz)


@router.delete(
    "/v1/promotions/{promotion_id}",
    status_code=204,
    responses=error_responses(401, 403, 404, 409, 422, 428, 429, 503),
)
def remove_promotion(
    promotion_id: PromotionId,
    if_match: IfMatch = None,
    version: Annotated[int | None, Query(ge=1, description="alternative to If-Match")] = None,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> Response:
    """Delete a promotion (If-Match, or ?version=)."""
    with state.db.connection() as conn:
        current, _ = get_promotion_row(conn, promotion_id)
    _may_write_promotion(principal, current)
    expected = expected_version(if_match, version)
    with state.db.connection() as conn:
        delete_promotion(conn, promotion_id, expected, actor=principal.name)
    return Response(status_code=204)


__all__ = ["PROMOTION_KINDS", "Forbidden", "PreconditionRequired", "router"]
