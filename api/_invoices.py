"""Fuel e-invoices (电子发票) of paid sales, and the station's seller identity they name.

- `PUT /v1/stations/{station_id}/seller` (operator API key): the station's legal name and taxpayer id
  (纳税人识别号): the seller on its fuel invoices. Audited. `GET` the same path reads it (operator, or the
  station's manager).
- `POST /v1/payments/{out_trade_no}/invoice` (the payer's user token, `Idempotency-Key` header): ask for
  the fuel e-invoice of a paid sale, as an individual or an organisation (taxpayer id mandatory then).
  The request is stored with its application job (payments/_invoice.py); the same key answers the same
  invoice, a payment has one invoice (409 for another), 409 while the payment is not paid or was refunded
  or the station has no seller identity, 422 naming the field for a rule of fuel invoices.
- `GET /v1/payments/{out_trade_no}/invoice`: its status (requested, applied, issued, reversing, reversed,
  failed) and, once issued, its number. A refund of the payment reverses it (红冲).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api._auth import Forbidden, authenticate, require_operator
from api._models import _Public, error_responses
from api._payments import IdempotencyKey
from api._state import AppState, get_state
from api._users import CurrentUser, require_owner
from geo import NotFound
from payments._fapiao import TAXPAYER_ID, Buyer
from payments._invoice import STATUS_PUBLIC, request_invoice
from store import _invoices
from store import _sale_payments as sp
from store._auth import Principal
from store._stations import get_station

router = APIRouter(tags=["invoices"])

StationId = Annotated[int, Path(ge=1, le=2**63 - 1, description="station id")]
OutTradeNo = Annotated[
    str,
    Path(pattern=r"^[0-9A-Za-z_|*-]{6,32}$", description="the payment's out_trade_no (from the pay answer)"),
]
TaxpayerId = Annotated[
    str,
    Field(
        pattern=TAXPAYER_ID.pattern,
        description="纳税人识别号: the 18-character unified social credit code (or a 15/17/20-character id)",
        examples=["91530700MA6N8XY21K"],
    ),
]


class SellerIn(BaseModel):
    """The station's identity on its invoices."""

    model_config = ConfigDict(extra="forbid")
    legal_name: str = Field(
        min_length=1, max_length=100, description="the legal name of the station's company"
    )
    taxpayer_id: TaxpayerId


class SellerPublic(_Public):
    station_id: int
    legal_name: str
    taxpayer_id: str
    updated_at: datetime


class InvoiceIn(BaseModel):
    """Who the invoice is for: a person, or an organisation with its taxpayer id."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"type": "INDIVIDUAL", "name": "张三"},
                {"type": "ORGANIZATION", "name": "丽江古城运输有限公司", "taxpayer_id": "91530700MA6N8XY21K"},
            ]
        },
    )
    type: Literal["INDIVIDUAL", "ORGANIZATION"]
    name: str = Field(min_length=1, max_length=100, description="the buyer's name (抬头)")
    taxpayer_id: TaxpayerId | None = Field(default=None, description="mandatory for an organisation")

    @model_validator(mode="after")
    def _organisation_has_tax_id(self) -> InvoiceIn:
        if self.type == "ORGANIZATION" and not self.taxpayer_id:
            raise ValueError("taxpayer_id is required for an organisation (纳税人识别号)")
        if not self.name.strip():
            raise ValueError("name must not be blank")
        return self


class InvoicePublic(_Public):
    """A fuel e-invoice of a paid sale and where it stands."""

    out_trade_no: str
    fapiao_id: str = Field(description="our number of the invoice")
    status: Literal[STATUS_PUBLIC]  # type: ignore[valid-type]
    buyer_type: Literal["INDIVIDUAL", "ORGANIZATION"]
    buyer_name: str
    buyer_taxpayer_id: str | None
    seller_name: str
    seller_taxpayer_id: str
    total_fen: int = Field(description="the invoiced amount: what was paid, in fen")
    fapiao_number: str | None = Field(description="the tax bureau's invoice number, once issued")
    reversal_wanted: bool = Field(description="the payment was refunded: the invoice is (being) reversed")
    created_at: datetime
    updated_at: datetime


def _seller_public(s: _invoices.StationSeller) -> dict[str, Any]:
    return {
        "station_id": s.station_id,
        "legal_name": s.legal_name,
        "taxpayer_id": s.taxpayer_id,
        "updated_at": s.updated_at,
    }


def _invoice_public(inv: _invoices.InvoiceRow, seller: _invoices.StationSeller | None) -> dict[str, Any]:
    return {
        "out_trade_no": inv.out_trade_no,
        "fapiao_id": inv.fapiao_id,
        "status": inv.status,
        "buyer_type": inv.buyer_type,
        "buyer_name": inv.buyer_name,
        "buyer_taxpayer_id": inv.buyer_taxpayer_id,
        "seller_name": seller.legal_name if seller else "",
        "seller_taxpayer_id": seller.taxpayer_id if seller else "",
        "total_fen": inv.total_fen,
        "fapiao_number": inv.detail.get("fapiao_number"),
        "reversal_wanted": inv.reverse_wanted,
        "created_at": inv.created_at,
        "updated_at": inv.updated_at,
    }


@router.put(
    "/v1/stations/{station_id}/seller",
    response_model=SellerPublic,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429, 503),
)
def put_seller(
    station_id: StationId,
    body: SellerIn,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Set the station's seller identity on its fuel invoices (operator keys only; audited)."""
    require_operator(principal, "a station's seller identity")
    with state.db.transaction() as conn:
        if get_station(conn, station_id) is None:
            raise NotFound(f"station {station_id} not found")
        seller, _ = _invoices.set_seller(
            conn,
            station_id=station_id,
            legal_name=body.legal_name.strip(),
            taxpayer_id=body.taxpayer_id,
            actor=principal.name,
        )
    return _seller_public(seller)


@router.get(
    "/v1/stations/{station_id}/seller",
    response_model=SellerPublic,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def get_seller(
    station_id: StationId,
    principal: Principal = Depends(authenticate),
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """The station's seller identity (operator keys, or the station's manager)."""
    if not principal.may_write_station(station_id):
        raise Forbidden(f"key {principal.name!r} may not read station {station_id}'s seller identity")
    with state.db.connection() as conn:
        seller = _invoices.get_seller(conn, station_id)
    if seller is None:
        raise NotFound(f"station {station_id} has no seller identity")
    return _seller_public(seller)


@router.post(
    "/v1/payments/{out_trade_no}/invoice",
    response_model=InvoicePublic,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503, user=True),
)
def post_invoice(
    out_trade_no: OutTradeNo,
    body: InvoiceIn,
    idempotency_key: IdempotencyKey,
    user: CurrentUser,
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Ask for the fuel e-invoice of your paid sale; WeChat Pay issues it shortly (see GET)."""
    buyer = Buyer(type=body.type, name=body.name.strip(), taxpayer_id=body.taxpayer_id)
    with state.db.transaction() as conn:
        link = sp.get_sale_payment(conn, out_trade_no)
        if link is None:
            raise NotFound(f"payment {out_trade_no} not found")
        require_owner(user, link.user_id, f"payment {out_trade_no}")
        inv, _ = request_invoice(
            conn, out_trade_no=out_trade_no, user_id=user.id, key=idempotency_key, buyer=buyer
        )
        seller = _invoices.get_seller(conn, inv.seller_station_id)
    return _invoice_public(inv, seller)


@router.get(
    "/v1/payments/{out_trade_no}/invoice",
    response_model=InvoicePublic,
    responses=error_responses(401, 403, 404, 422, 429, 503, user=True),
)
def get_invoice(
    out_trade_no: OutTradeNo,
    user: CurrentUser,
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """Your invoice of this payment and its status (404 before you asked for one)."""
    with state.db.connection() as conn:
        link = sp.get_sale_payment(conn, out_trade_no)
        if link is None:
            raise NotFound(f"payment {out_trade_no} not found")
        require_owner(user, link.user_id, f"payment {out_trade_no}")
        inv = _invoices.invoice_of_payment(conn, out_trade_no)
        if inv is None:
            raise NotFound(f"payment {out_trade_no} has no invoice yet")
        seller = _invoices.get_seller(conn, inv.seller_station_id)
    return _invoice_public(inv, seller)
