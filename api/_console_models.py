"""Request and response models of the station console API (api/_console.py); extra keys are refused."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api._ceilings import CeilingFreshness
from backoffice._staff import MAX_PASSWORD, USERNAME_PATTERN

Money = Field(ge=0, le=100_000_000, description="fen (1/100 CNY)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_Strict):
    username: str = Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class StaffCreate(_Strict):
    station_id: int = Field(ge=1, le=2**63 - 1)
    username: str = Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN)
    display_name: str = Field(min_length=1, max_length=40)
    role: Literal["manager", "attendant"]
    password: str = Field(min_length=10, max_length=MAX_PASSWORD)


class StaffPublic(_Strict):
    id: int
    station_id: int
    username: str
    display_name: str
    role: Literal["manager", "attendant"]
    active: bool = True
    created_by: str | None = None
    created_at: datetime | None = None


class SessionPublic(_Strict):
    staff: StaffPublic
    station_name: str
    expires_at: datetime | None = None


class StaffListPublic(_Strict):
    station_id: int
    staff: list[StaffPublic]


class TendersIn(_Strict):
    cash_fen: int = Money
    card_fen: int = Money
    counted_cash_fen: int = Money
    tolerance_fen: int = Field(500, ge=0, le=100_000, description="fen either way that still balances")


class SignIncomingIn(_Strict):
    username: str = Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class CorrectionIn(_Strict):
    field: Literal["cash_fen", "card_fen", "counted_cash_fen"]
    delta_fen: int = Field(ge=-100_000_000, le=100_000_000)
    reason: str = Field(min_length=3, max_length=200)


class NozzleReadingPublic(_Strict):
    pump_no: int
    nozzle_no: int | None = Field(description="null: sales reported without a nozzle number (未指定油枪)")
    grade: str
    opening_ml: int
    closing_ml: int
    sales: int
    sales_ml: int
    amount_fen: int
    prices: list[int]


class ReconciliationPublic(_Strict):
    sales_fen: int
    wechat_fen: int
    card_fen: int
    cash_declared_fen: int
    expected_cash_fen: int
    counted_cash_fen: int
    cash_difference_fen: int
    tendered_fen: int
    tender_difference_fen: int
    meter_ml: int
    sales_ml: int
    unreported_ml: int
    tolerance_fen: int
    status: Literal["balanced", "short", "over"]


class CorrectionPublic(_Strict):
    id: int
    field: str
    delta_fen: int
    reason: str
    staff_id: int | None
    actor: str
    created_at: datetime


class ShiftPublic(_Strict):
    id: int
    station_id: int
    attendant_id: int
    state: Literal["open", "counting", "awaiting_incoming", "signed"]
    opened_at: datetime
    closed_at: datetime | None
    nozzles: list[NozzleReadingPublic]
    wechat_fen: int | None
    cash_fen: int | None
    card_fen: int | None
    counted_cash_fen: int | None
    tolerance_fen: int
    signed_summary: ReconciliationPublic | None = Field(description="the reconciliation as signed")
    reconciliation: ReconciliationPublic | None = Field(description="after corrections")
    corrections: list[CorrectionPublic]
    outgoing_signed_at: datetime | None
    incoming_id: int | None
    incoming_signed_at: datetime | None
    version: int


class ShiftListPublic(_Strict):
    shifts: list[ShiftPublic]


class HandoverSignedPublic(_Strict):
    signed: ShiftPublic
    next_shift: ShiftPublic


class PumpNozzlePublic(_Strict):
    nozzle_no: int
    grade: str
    active: bool


class ConsolePumpPublic(_Strict):
    pump_no: int
    label: str
    status: str
    fp_state: int | None
    reported_at: datetime | None
    nozzles: list[PumpNozzlePublic]


class ConsolePumpsPublic(_Strict):
    station_id: int
    checked_at: datetime
    pumps: list[ConsolePumpPublic]


class FillUpPublic(_Strict):
    id: int
    pump_no: int
    nozzle_no: int | None
    grade: str
    volume_ml: int
    amount_fen: int
    unit_price_fen: int
    state: str
    payment: Literal["wechat", "station", "unpaid"]
    ended_at: datetime | None


class FillUpsPublic(_Strict):
    station_id: int
    business_day: date
    fill_ups: list[FillUpPublic]


class GradePricePublic(_Strict):
    grade: str
    price_fen: int | None
    effective_from: datetime | None
    source: str | None
    ceiling_fen: int | None
    ceiling_effective_from: datetime | None
    ceiling_notice_date: date | None


class PromotionBrief(_Strict):
    id: int | None
    title: str
    kind: str
    value: float  # CNY, CNY per litre or a percentage, by kind
    grades: list[str]


class ConsolePricesPublic(_Strict):
    station_id: int
    price_zone: str
    grades: list[GradePricePublic]
    promotions: list[PromotionBrief]
    ceiling_status: CeilingFreshness = Field(
        description="whether the official ceilings are current (as GET /v1/manage/ceilings): the page warns "
        "when an adjustment window passed after the newest notice"
    )


class ReportRow(_Strict):
    key: str
    sales: int
    volume_ml: int
    amount_fen: int


class SalesReportPublic(_Strict):
    station_id: int
    by: Literal["day", "shift", "grade", "nozzle", "attendant", "payment"]
    first: date
    last: date
    rows: list[ReportRow]


class DailyCloseIn(_Strict):
    business_day: date


class DailyClosePublic(_Strict):
    station_id: int
    business_day: date
    sales: int
    volume_ml: int
    amount_fen: int
    by_grade: list[ReportRow]
    by_payment: list[ReportRow]
    shifts: list[dict[str, Any]]
    closed_by: str
    closed_at: datetime
