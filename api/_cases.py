"""Back-office payment cases, for operators (API key with the operator role): what a person must look at
about a payment (store/_cases.py: a paid sale the site no longer knows, a sale locked by another payment,
an ABNORMAL refund, an order paid after its points hold was released).

- `GET /v1/payments/cases?state=open|resolved&kind=...&after_id=N&limit=M`: cases in id order (the open
  ones, oldest first, by default), each with the station of its sale;
- `GET /v1/payments/cases/{id}`: one case;
- `POST /v1/payments/cases/{id}/resolve` {"note": "..."}: resolve an open case with what was done,
  audited (409 naming the case when it was resolved before).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api._auth import next_after_id, operator_key
from api._models import _Public, error_responses
from api._state import AppState, get_state
from api._text import Text
from store import _cases
from store._auth import Principal

router = APIRouter(tags=["payment cases"])

CaseKind = Literal["unknown_at_site", "locked_elsewhere", "refund_abnormal", "points_released"]


class CasePublic(_Public):
    id: int
    out_trade_no: str
    sale_id: int | None = Field(description="the controller sale the payment pays")
    station_id: int | None = Field(description="the sale's station")
    kind: CaseKind = Field(
        description="unknown_at_site: paid, the site no longer knows the sale; locked_elsewhere: paid while"
        " another payment held the sale; refund_abnormal: a refund ended ABNORMAL; points_released: paid"
        " after its points hold was released (charged less the redemption, no points taken)"
    )
    detail: dict[str, Any] = Field(description="what the service knew when it opened the case")
    opened_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None = Field(description="the name of the key that resolved it")
    resolution_note: str | None


class CasesPublic(_Public):
    cases: Annotated[list[CasePublic], Field(max_length=_cases.MAX_PAGE)]
    next_after_id: int | None = Field(description="pass as after_id for the next page (null: no more)")


class ResolveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"note": "已联系车主补扣积分 / points taken with the driver's consent"}]
        },
    )
    note: Annotated[Text, Field(min_length=1, max_length=500, description="what was done about it")]


def _out(row: dict[str, Any]) -> CasePublic:
    return CasePublic(**{k: row[k] for k in CasePublic.model_fields})


CaseId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the payment case's id")]
Operator = Annotated[Principal, Depends(operator_key("read or resolve payment cases"))]
State = Annotated[AppState, Depends(get_state)]
ONE_ERRORS = error_responses(401, 403, 404, 422, 429, 503)
RESOLVE_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503)


@router.get(
    "/v1/payments/cases", response_model=CasesPublic, responses=error_responses(401, 403, 422, 429, 503)
)
def list_cases(
    principal: Operator,
    state: State,
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=_cases.MAX_PAGE)] = 50,
    state_: Annotated[Literal["open", "resolved"], Query(alias="state")] = "open",
    kind: CaseKind | None = None,
) -> CasesPublic:
    """Payment cases awaiting a person (or resolved ones), oldest first, optionally of one kind."""
    with state.db.connection() as conn:
        rows = _cases.cases(conn, resolved=state_ == "resolved", kind=kind, after_id=after_id, limit=limit)
    return CasesPublic(cases=[_out(r) for r in rows], next_after_id=next_after_id(rows, limit))


@router.get("/v1/payments/cases/{case_id}", response_model=CasePublic, responses=ONE_ERRORS)
def get_case(case_id: CaseId, principal: Operator, state: State) -> CasePublic:
    """One payment case."""
    with state.db.connection() as conn:
        return _out(_cases.get_case(conn, case_id))


@router.post("/v1/payments/cases/{case_id}/resolve", response_model=CasePublic, responses=RESOLVE_ERRORS)
def resolve_case(case_id: CaseId, body: ResolveIn, principal: Operator, state: State) -> CasePublic:
    """Resolve an open case with a note saying what was done (audited with the key's name)."""
    with state.db.transaction() as conn:
        return _out(_cases.resolve(conn, case_id, note=body.note, actor=principal.name))
