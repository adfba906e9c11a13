"""Refunds of WeChat Pay payments, asked for by operators (API key with the operator role).

- `POST /v1/payments/{out_trade_no}/refunds` {out_refund_no, refund_fen, reason}: a full or partial
  refund. Idempotent per out_refund_no: the same number with the same amount answers the stored refund
  (200), with another payment or amount a 409. Never above what is left refundable (409 naming what is
  left); only a paid payment is refunded. The refund is stored with its job (the outbox): the worker asks
  WeChat Pay, whose refund notification moves it to success (the payment's e-invoice is then reversed)
  or abnormal (a back-office case).
- `GET /v1/payments/{out_trade_no}/refunds`: the payment's refunds and what is left refundable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api._auth import authenticate, require_operator, require_role
from api._invoices import OutTradeNo
from api._models import _Public, error_responses
from api._state import AppState, get_state
from geo import Conflict, NotFound
from payments._flow import request_refund
from store import _payments
from store._auth import Principal

router = APIRouter(tags=["refunds"])


class RefundIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"out_refund_no": "R20261126-0001", "refund_fen": 500, "reason": "多收款"}]
        },
    )
    out_refund_no: str = Field(
        pattern=r"^[0-9A-Za-z_|*@-]{1,64}$",
        description="your refund number: the same number never refunds twice",
    )
    refund_fen: int = Field(ge=1, le=10_000_000, description="how much to give back, in fen")
    reason: str = Field(min_length=1, max_length=80, description="shown to the payer")


RefundState = Literal["requested", "processing", "success", "closed", "abnormal"]


class RefundPublic(_Public):
    out_refund_no: str
    out_trade_no: str
    refund_fen: int
    reason: str
    state: RefundState
    refund_id: str | None = Field(description="WeChat Pay's refund id, once it answered")
    created_at: datetime


class RefundsPublic(_Public):
    out_trade_no: str
    paid_fen: int
    refunded_fen: int = Field(description="refunds that succeeded")
    refundable_fen: int = Field(description="what may still be refunded (asked-for refunds count)")
    refunds: Annotated[list[RefundPublic], Field(max_length=100)]


def _refunds(conn: Any, out_trade_no: str) -> list[dict[str, Any]]:
    return [
        {k: r[k] for k in RefundPublic.model_fields}
        for r in _payments.refunds_of(conn, out_trade_no, limit=100)
    ]


@router.post(
    "/v1/payments/{out_trade_no}/refunds",
    response_model=RefundPublic,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
)
def post_refund(
    out_trade_no: OutTradeNo,
    body: RefundIn,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Refund all or part of a paid payment (operator keys only; audited)."""
    require_operator(principal, "refunds")
    with state.db.transaction() as conn:
        payment = _payments.get_payment(conn, out_trade_no, for_update=True)
        if payment is None:
            raise NotFound(f"payment {out_trade_no} not found")
        try:
            request_refund(
                conn,
                out_trade_no=out_trade_no,
                out_refund_no=body.out_refund_no,
                refund_fen=body.refund_fen,
                reason=body.reason,
                actor=principal.name,
            )
        except ValueError as exc:  # over what is left, not paid, the number reused otherwise
            raise Conflict(str(exc)) from None
        row = next(r for r in _refunds(conn, out_trade_no) if r["out_refund_no"] == body.out_refund_no)
    return row


@router.get(
    "/v1/payments/{out_trade_no}/refunds",
    response_model=RefundsPublic,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def get_refunds(
    out_trade_no: OutTradeNo,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """A payment's refunds (operator keys only)."""
    require_role(principal, "read refunds", "operator")
    with state.db.connection() as conn:
        payment = _payments.get_payment(conn, out_trade_no)
        if payment is None:
            raise NotFound(f"payment {out_trade_no} not found")
        refunds = _refunds(conn, out_trade_no)
    paid = payment.paid_fen or 0
    asked = sum(r["refund_fen"] for r in refunds if r["state"] != "closed")
    return {
        "out_trade_no": out_trade_no,
        "paid_fen": paid,
        "refunded_fen": payment.refunded_fen,
        "refundable_fen": max(0, paid - asked),
        "refunds": refunds,
    }
