"""Official price ceilings for the station console: the ceilings in force and whether they are stale.

- GET /v1/manage/ceilings    the served region's price zone: the ceiling of each grade in force now
  with its notice date, the newest notice loaded, the adjustment windows that have passed since it
  (geo/_adjustments.py, on the region's holiday calendar) and `stale`, which the console shows as a
  warning ("load the newer notices"). Any API key (operator or manager) may read it.
"""

from __future__ import annotations

from datetime import date, datetime

import psycopg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api._auth import authenticate
from api._models import READ, Grade, error_responses
from api._state import AppState, get_state
from config import Region
from geo._pricing import KNOWN_GRADES
from store._auth import Principal
from store._ceilings import ceiling_in, ceilings_for_zone, staleness

router = APIRouter(tags=["manage"])


class CeilingInForce(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grade: Grade
    max_price_cny: float = Field(description="the official maximum retail price, CNY per litre")
    notice_date: date | None = Field(description="the adjustment (notice) date of the ceiling")
    effective_from: datetime = Field(description="24:00 of the notice day, in the region's time zone")


class CeilingFreshness(BaseModel):
    """Whether the official ceilings loaded are current: the same fields here and in the console's prices."""

    model_config = ConfigDict(extra="forbid")
    newest_notice: date | None = Field(description="the newest notice loaded; null: none is loaded")
    last_adjustment_window: date | None = Field(
        description="the latest adjustment window up to today (ten working days apart, region's calendar)"
    )
    missed_windows: list[date] = Field(description="adjustment windows after the newest notice, up to today")
    next_adjustment_window: date | None
    stale: bool = Field(description="true when a window has passed with no newer notice loaded (or none is)")
    warning: str | None = Field(description="what to tell the operator when stale")


def ceiling_freshness(conn: psycopg.Connection, region: Region, now: datetime) -> CeilingFreshness:
    """Whether adjustment windows of `region` passed since its newest notice (geo/_adjustments.py)."""
    status = staleness(conn, region.price_zone, now.astimezone(region.tz).date(), region.holidays)
    return CeilingFreshness(
        newest_notice=status.newest_notice,
        last_adjustment_window=status.last_window,
        missed_windows=list(status.missed_windows),
        next_adjustment_window=status.next_window,
        stale=status.stale,
        warning=status.message(),
    )


class CeilingsPublic(CeilingFreshness):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "zone": "yunnan-4",
                    "ceilings": [
                        {
                            "grade": "92",
                            "max_price_cny": 8.98,
                            "notice_date": "2026-09-24",
                            "effective_from": "2026-09-25T00:00:00+08:00",
                        }
                    ],
                    "newest_notice": "2026-09-24",
                    "last_adjustment_window": "2026-11-26",
                    "missed_windows": ["2026-10-15", "2026-10-29", "2026-11-12", "2026-11-26"],
                    "next_adjustment_window": "2026-12-10",
                    "stale": True,
                    "warning": "the official price ceilings are stale: ...",
                }
            ]
        },
    )
    zone: str = Field(description="the served region's price zone")
    ceilings: list[CeilingInForce] = Field(description="the ceiling in force now, per grade that has one")


@router.get(
    "/v1/manage/ceilings",
    response_model=CeilingsPublic,
    responses=error_responses(401, 403, *READ),
)
def read_ceilings(
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> CeilingsPublic:
    """The official price ceilings in force in the served region, and whether newer notices are due."""
    region = state.served.region
    now = datetime.now(region.tz)
    with state.db.connection() as conn:
        book = ceilings_for_zone(conn, region.price_zone)
        fresh = ceiling_freshness(conn, region, now)
    in_force = [c for g in KNOWN_GRADES if (c := ceiling_in(book, g, now)) is not None]
    return CeilingsPublic(
        zone=region.price_zone,
        ceilings=[
            CeilingInForce(
                grade=c.grade,
                max_price_cny=float(c.max_price_cny),
                notice_date=c.adjustment_date,
                effective_from=c.effective_from.astimezone(region.tz),
            )
            for c in in_force
        ],
        **fresh.model_dump(),
    )
