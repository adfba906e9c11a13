"""The risk review queue, for operators (API key with the operator role):

- `GET /v1/risk/reviews?after_id=N&limit=M&state=pending|approved|rejected`: decisions in id order (the
  held ones by default), each with its evidence: the facts the rules saw, every rule that fired (its
  expression and reason), the rules version and the subject (ids and keyed hashes only);
- `GET /v1/risk/decisions/{id}`: one decision (any outcome);
- `POST /v1/risk/decisions/{id}/review` {"approve": bool, "note": "..."}: approve or reject a held
  decision, audited (409 when it is not awaiting review). An approved payment or bind passes when the
  driver retries (the hard denies still apply); an approved price is published from the later of the
  time asked and now (409 NewerPriceExists when a newer price of the grade would be overridden: reject
  it instead);
- `GET /console/review`: the review page (api/static/review/).
"""

from __future__ import annotations

import pathlib
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from api._auth import next_after_id, operator_key
from api._models import error_responses
from api._state import AppState, get_state
from store import _risk
from store._auth import Principal

router = APIRouter(tags=["risk"])


class FiredPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: str
    outcome: Literal["allow", "review", "deny"]
    reason: str
    expr: str


class DecisionPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int
    point: Literal["bind", "pay", "redeem", "price"]
    outcome: Literal["allow", "review", "deny"]
    fired: list[FiredPublic]
    facts: dict[str, Any] = Field(description="exactly what the rules saw")
    rules_version: str
    subject: dict[str, Any]
    review_state: Literal["pending", "approved", "rejected"] | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str | None
    created_at: datetime


class DecisionsPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decisions: list[DecisionPublic]
    next_after_id: int | None = Field(description="pass as after_id for the next page (null: no more)")


class ReviewIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"approve": True, "note": "known fleet"}]}
    )
    approve: bool
    note: str = Field("", max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")


def _out(row: dict[str, Any]) -> DecisionPublic:
    keys = DecisionPublic.model_fields
    return DecisionPublic(**{k: row[k] for k in keys})


DecisionId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the risk decision's id")]


@router.get(
    "/v1/risk/reviews",
    response_model=DecisionsPublic,
    responses=error_responses(401, 403, 422, 429, 503),
)
def list_reviews(
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=_risk.MAX_PAGE)] = 50,
    state_: Annotated[Literal["pending", "approved", "rejected"], Query(alias="state")] = "pending",
    principal: Principal = Depends(operator_key("read the risk review queue")),
    state: AppState = Depends(get_state),
) -> DecisionsPublic:
    """Risk decisions held for review (or reviewed), oldest first, with their evidence."""
    with state.db.connection() as conn:
        rows = _risk.decisions(conn, state=state_, after_id=after_id, limit=limit)
    return DecisionsPublic(decisions=[_out(r) for r in rows], next_after_id=next_after_id(rows, limit))


@router.get(
    "/v1/risk/decisions/{decision_id}",
    response_model=DecisionPublic,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def get_decision(
    decision_id: DecisionId,
    principal: Principal = Depends(operator_key("read risk decisions")),
    state: AppState = Depends(get_state),
) -> DecisionPublic:
    """One risk decision: its outcome, the rules that fired and the facts they saw."""
    with state.db.connection() as conn:
        return _out(_risk.get_decision(conn, decision_id))


@router.post(
    "/v1/risk/decisions/{decision_id}/review",
    response_model=DecisionPublic,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
)
def review_decision(
    decision_id: DecisionId,
    body: ReviewIn,
    principal: Principal = Depends(operator_key("review risk decisions")),
    state: AppState = Depends(get_state),
) -> DecisionPublic:
    """Approve or reject a held decision (audited with the key's name)."""
    with state.db.transaction() as conn:
        row = _risk.review(conn, decision_id, approve=body.approve, note=body.note, actor=principal.name)
    return _out(row)


REVIEW_PAGE = pathlib.Path(__file__).resolve().parent / "static" / "review" / "index.html"


@router.get("/console/review", include_in_schema=False)
def review_page() -> FileResponse:
    """The operators' review page (it asks for the operator API key and calls the API above)."""
    return FileResponse(REVIEW_PAGE, headers={"Cache-Control": "no-cache"})
