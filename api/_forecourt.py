"""At the pump: what a nozzle's QR code names, and a station's pumps with their live status. Both need a
user's session token (api/_users.py).

- `GET /v1/nozzles/{token}`: the token from the sticker's QR code (`scene`, store/_nozzles.py) resolved
  to its station (id, display names: the payee a driver sees), pump, nozzle, grade and the grade's price
  now (list and effective, in CNY and fen). 404 for a token that is not ours (malformed, unknown or
  forged: the same answer), 410 when it was revoked or the nozzle is out of service, 409 when the
  station cannot sell now (closed, temporarily closed, outside its opening hours).
- `GET /v1/stations/{station_id}/pumps`: the station's pumps in order with their nozzles and the live
  status the station link reported; "unknown" when there is none, it is past its TTL, or older than
  FUEL_PUMP_STATUS_MAX_AGE_S. In development and tests only (FUEL_ENV), each nozzle also carries its
  active token (what its QR code holds) so the web page can pick a pump without scanning.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from api._models import NozzlePublic, StationPumpsPublic, error_responses
from api._state import AppState, get_state
from api._stations import applied_out
from api._users import CurrentUser
from geo._brands import display_name
from geo._errors import NotFound
from geo._hours import can_fill_up
from geo._pricing import DEFAULT_LITRES, AppliedPromotion, effective_price
from store._nozzles import TOKEN_CHARS, TOKEN_PATTERN, StationClosed, active_tokens, resolve
from store._prices import current_prices
from store._promotions import promotions_for_stations
from store._pumps import station_pumps
from store._stations import get_station

router = APIRouter(tags=["forecourt"])

NozzleToken = Annotated[
    str,
    Path(
        min_length=TOKEN_CHARS,
        max_length=TOKEN_CHARS,
        pattern=TOKEN_PATTERN,
        description="the `scene` of the nozzle's QR code",
        examples=["bWFkZS11cC1leGFtcGxlLXRvaw"],
    ),
]
StationId = Annotated[int, Path(ge=1, le=2**63 - 1, description="station id")]


def _fen(cny: Decimal | None) -> int | None:
    return None if cny is None else int((Decimal(cny) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _iso(at: datetime | None, state: AppState) -> str | None:
    return None if at is None else at.astimezone(state.region.tz).isoformat()


@router.get(
    "/v1/nozzles/{token}",
    response_model=NozzlePublic,
    responses=error_responses(401, 404, 409, 410, 422, 429, 503, user=True),
)
def nozzle_by_token(
    token: NozzleToken, user: CurrentUser, state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """What a nozzle's QR code names: station, pump, nozzle, grade and its price now."""
    region = state.region
    now = datetime.now(region.tz)
    with state.db.connection() as conn:
        nozzle = resolve(conn, token, secret_key=state.settings.secret_key)
        station = get_station(conn, nozzle.station_id)
        if station is None:  # the token's row references it: only a concurrent delete gets here
            raise NotFound(f"station {nozzle.station_id} not found")
        fill = can_fill_up(station["status"], station.get("opening_hours"), now, region.holidays)
        if fill.ok is False:
            raise StationClosed(nozzle.station_id, fill.reason or "closed")
        price = current_prices(conn, [nozzle.station_id], now, grades=[nozzle.grade]).get(
            nozzle.station_id, {}
        )
        promos = promotions_for_stations(conn, [(nozzle.station_id, station["brand"])], at=now).get(
            nozzle.station_id, []
        )
    zh, en = display_name(
        name=station["name"],
        name_en=station["name_en"],
        brand=station["brand"],
        brand_raw=station["brand_raw"],
        street=station["address"],
    )
    p = price.get(nozzle.grade)
    eff: Decimal | None = None
    applied: list[AppliedPromotion] = []
    if p is not None:
        eff, applied = effective_price(
            p.price_cny,
            nozzle.grade,
            promos,
            now,
            tz=region.tz,
            holidays=region.holidays,
            litres=DEFAULT_LITRES,
        )
    return {
        "station": {
            "id": nozzle.station_id,
            "name": station["name"],
            "display_name": zh,
            "display_name_en": en or None,
            "brand": station["brand"],
            "address": station["address"],
            "can_fill_up": fill.ok,
        },
        "pump": {"pump_no": nozzle.pump_no, "label": nozzle.pump_label},
        "nozzle": {"nozzle_no": nozzle.nozzle_no, "grade": nozzle.grade},
        "price": {
            "list_price": None if p is None else round(float(p.price_cny), 2),
            "list_price_fen": None if p is None else _fen(p.price_cny),
            "effective_price": None if eff is None else round(float(eff), 2),
            "effective_price_fen": _fen(eff),
            "promotions_applied": applied_out(applied),
            "effective_from": None if p is None else _iso(p.effective_from, state),
            "source": None if p is None else p.source,
            "priced_at": now.isoformat(),
        },
        "currency": region.currency,
    }


@router.get(
    "/v1/stations/{station_id}/pumps",
    response_model=StationPumpsPublic,
    responses=error_responses(401, 404, 422, 429, 503, user=True),
)
def pumps_of_station(
    station_id: StationId, user: CurrentUser, state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """The station's pumps with their nozzles and live status ("unknown" when stale or never reported)."""
    now = datetime.now(state.region.tz)
    with state.db.connection() as conn:
        if get_station(conn, station_id) is None:
            raise NotFound(f"station {station_id} not found")
        pumps = station_pumps(
            conn, station_id, now=now, max_age=timedelta(seconds=state.settings.pump_status_max_age_s)
        )
        tokens = (
            active_tokens(conn, station_id, secret_key=state.settings.secret_key)
            if state.settings.demo_enabled
            else None
        )
    if tokens is not None:
        for p in pumps:
            for n in p["nozzles"]:
                n["token"] = tokens.get((p["pump_no"], n["nozzle_no"]))
    for p in pumps:  # the last report's times, also when it is stale
        p["reported_at"] = _iso(p["reported_at"], state)
        p["valid_until"] = _iso(p["valid_until"], state)
    return {"station_id": station_id, "checked_at": now.isoformat(), "pumps": pumps}
