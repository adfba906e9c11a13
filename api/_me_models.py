"""The shapes of the driver's own bodies (api/_records.py): e-records, the monthly summary, membership and
the account deletion's answer. Like api/_models.py: every key declared, extra keys forbidden."""

from __future__ import annotations

from pydantic import Field

from api._models import DateTime, Grade, _Public


class RecordPromotion(_Public):
    id: int
    title: str
    title_en: str | None
    kind: str
    discount_fen: int = Field(ge=0, description="what the promotion took off the list amount")


class RecordReceipt(_Public):
    trace_no: str = Field(description="the forecourt controller's transaction id of the sale")
    terminal: str = Field(description="pump and nozzle: P<pump>-N<nozzle>")
    receipt_no: str = Field(description="our order number (out_trade_no)")


class RecordPublic(_Public):
    id: int
    paid_at: DateTime = Field(description="when WeChat Pay confirmed the payment (Asia/Shanghai)")
    fuelled_at: DateTime | None = Field(description="when the fill-up ended at the pump")
    station_id: int
    station_name: str
    station_name_en: str | None
    station_brand: str
    pump_no: int
    nozzle_no: int | None
    grade: Grade
    litres: float = Field(description="litres, 3 decimals")
    unit_price_fen: int
    list_amount_fen: int = Field(description="the pump's amount at the list price")
    promotions: list[RecordPromotion]
    amount_paid_fen: int
    refunded_fen: int
    wechat_transaction_id: str
    invoice_status: str | None = Field(description="the e-invoice's status, null when none was asked for")
    receipt: RecordReceipt
    points_earned: int = Field(ge=0, description="points this payment earned (GET /v1/me/points)")
    points_redeemed: int = Field(ge=0, description="points redeemed on this payment")
    redemption_fen: int = Field(ge=0, description="what the redeemed points took off the amount")
    points_reversed: int = Field(ge=0, description="earned points taken back by refunds of this payment")
    points_returned: int = Field(ge=0, description="redeemed points given back by refunds of this payment")
    odometer_km: int | None
    distance_km: int | None = Field(description="km since the previous fill-up with a reading")
    l_per_100km: float | None = Field(description="this fill-up's litres over distance_km (full to full)")
    fen_per_km: float | None = Field(description="amount paid over distance_km")


class RecordsPage(_Public):
    records: list[RecordPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class MonthPublic(_Public):
    month: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}$")
    fillups: int
    litres: float
    spend_fen: int = Field(description="paid, net of refunds")
    list_amount_fen: int
    avg_paid_fen_per_litre: int | None
    avg_nearby_list_fen_per_litre: int | None = Field(
        description="the average list price of the same grade at stations within 5 km of each fill-up, at its "
        "time, weighted by litres"
    )
    saving_vs_nearby_fen_per_litre: int | None
    distance_km: int | None
    l_per_100km: float | None


class SummaryPublic(_Public):
    months: list[MonthPublic]
    litres: float
    spend_fen: int


class TierPublic(_Public):
    code: str
    name: str
    name_en: str
    min_spend_fen: int
    earn_multiplier: float


class MembershipPublic(_Public):
    tier: TierPublic
    spend_12m_fen: int = Field(description="paid spend of the last 12 months, net of refunds")
    next_tier: TierPublic | None
    to_next_tier_fen: int | None
    tiers: list[TierPublic]


class AccountDeleted(_Public):
    deleted: bool
    records_kept: int = Field(description="payments kept, anonymised, as accounting law requires")
