"""Risk rules and deny/allow lists, for operators (API key with the operator role):

- `GET /v1/risk/rules`: every rule as evaluated now (the file's, with the database's overrides applied):
  expression (its threshold), outcome, reason, enabled, and where it comes from;
- `PUT /v1/risk/rules/{name}` {"expr"?, "outcome"?, "reason"?, "enabled"?}: override a rule (fields left
  out keep the rule's current value; {"enabled": false} switches it off). Validated (unknown rule 404, an
  expression that does not parse or a bad value 422), audited, and in force at the next evaluation of
  every API process (the rule set reloads when the overrides' revision moves: no restart);
- `DELETE /v1/risk/rules/{name}/override`: back to the file's rule (audited);
- `GET /v1/risk/lists?kind=deny|allow`, `POST /v1/risk/lists` {"kind", "subject", "value", "note"},
  `DELETE /v1/risk/lists/{id}`: the deny and allow lists. The value (a user id, a device fingerprint, a
  payer's openid, a station id, a plate) is stored only as its keyed hash, exactly as risk control hashes
  what it checks; it is never stored nor answered raw.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

import risk
from api._auth import next_after_id, operator_key
from api._models import error_responses
from api._state import AppState, get_state
from api._text import Text
from geo._errors import InvalidInput
from store import _risk
from store._auth import Principal

router = APIRouter(tags=["risk"])
Outcome = Literal["allow", "review", "deny"]
Point = Literal["bind", "pay", "redeem", "price"]


class RulePublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    point: Point
    expr: str = Field(description="the rule-engine expression over the facts (its thresholds)")
    outcome: Outcome
    reason: str
    enabled: bool
    origin: Literal["file", "override", "added"] = Field(
        description="file: data/risk/rules.json as is; override: a database override of the file's rule;"
        " added: a rule only the database has"
    )
    file_expr: str | None = Field(description="the file's expression (null for an added rule)")
    updated_by: str | None
    updated_at: datetime | None


class RulesPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[RulePublic]


class RuleOverrideIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"expr": "user_binds_1h > 10"}, {"enabled": False}]},
    )
    expr: Text | None = Field(None, min_length=1, max_length=2000)
    outcome: Outcome | None = None
    reason: Text | None = Field(None, min_length=1, max_length=300)
    enabled: bool = True


class ListEntryIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"kind": "deny", "subject": "device", "value": "fp-3b9c", "note": "card ring"}]
        },
    )
    kind: Literal["deny", "allow"]
    subject: Literal["user", "device", "payer", "station", "plate"] = Field(
        description="user: a user id; device: a device fingerprint; payer: a WeChat openid; station: a"
        " station id; plate: a licence plate"
    )
    value: Text = Field(min_length=1, max_length=200, description="stored as its keyed hash")
    note: Text = Field("", max_length=500)


class ListEntryPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int
    kind: Literal["deny", "allow"]
    subject: Literal["user", "device", "payer", "station", "plate"]
    value_hash: str
    note: str
    created_by: str
    created_at: datetime


class ListEntriesPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[ListEntryPublic]
    next_after_id: int | None = Field(description="pass as after_id for the next page (null: no more)")


RuleName = Annotated[str, Path(min_length=2, max_length=64, pattern=r"^[a-z][a-z0-9_.]+$")]
EntryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the list entry's id")]


def _entry(row: dict[str, Any]) -> ListEntryPublic:
    return ListEntryPublic(**{k: row[k] for k in ListEntryPublic.model_fields})


@router.get("/v1/risk/rules", response_model=RulesPublic, responses=error_responses(401, 403, 429, 503))
def list_rules(
    principal: Principal = Depends(operator_key("read the risk rules")), state: AppState = Depends(get_state)
) -> RulesPublic:
    """Every risk rule as evaluated now, with its thresholds and whether it is enabled."""
    with state.db.connection() as conn:
        return RulesPublic(rules=[RulePublic(**r) for r in _risk.rules_in_force(conn)])


@router.put(
    "/v1/risk/rules/{name}",
    response_model=RulePublic,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429, 503),
)
def put_rule(
    name: RuleName,
    body: RuleOverrideIn,
    principal: Principal = Depends(operator_key("change the risk rules")),
    state: AppState = Depends(get_state),
) -> RulePublic:
    """Override a rule (audited; in force at the next evaluation, no restart)."""
    with state.db.transaction() as conn:
        now = _risk.rule_in_force(conn, name)
        rule = risk.Rule(
            name,
            now["point"],
            body.expr if body.expr is not None else now["expr"],
            body.outcome or now["outcome"],
            body.reason if body.reason is not None else now["reason"],
        )
        _risk.put_override(conn, rule, enabled=body.enabled, actor=principal.name)
        return RulePublic(**_risk.rule_in_force(conn, name))


@router.delete(
    "/v1/risk/rules/{name}/override",
    response_model=RulePublic,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def delete_rule_override(
    name: RuleName,
    principal: Principal = Depends(operator_key("change the risk rules")),
    state: AppState = Depends(get_state),
) -> RulePublic:
    """Drop a rule's override: the file's rule applies again (audited). 404 without an override, or for a
    rule only an override has (switch it off instead)."""
    with state.db.transaction() as conn:
        _risk.delete_override(conn, name, actor=principal.name)
        return RulePublic(**_risk.rule_in_force(conn, name))


@router.get(
    "/v1/risk/lists", response_model=ListEntriesPublic, responses=error_responses(401, 403, 422, 429, 503)
)
def list_lists(
    kind: Annotated[Literal["deny", "allow"] | None, Query()] = None,
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=_risk.MAX_PAGE)] = 50,
    principal: Principal = Depends(operator_key("read the risk lists")),
    state: AppState = Depends(get_state),
) -> ListEntriesPublic:
    """The deny and allow list entries (keyed hashes), oldest first."""
    with state.db.connection() as conn:
        rows = _risk.list_entries(conn, kind=kind, after_id=after_id, limit=limit)
    return ListEntriesPublic(entries=[_entry(r) for r in rows], next_after_id=next_after_id(rows, limit))


@router.post(
    "/v1/risk/lists",
    response_model=ListEntryPublic,
    status_code=201,
    responses=error_responses(400, 401, 403, 413, 422, 429, 503),
)
def add_list_entry(
    body: ListEntryIn,
    principal: Principal = Depends(operator_key("change the risk lists")),
    state: AppState = Depends(get_state),
) -> ListEntryPublic:
    """Put a user, device, payer, station or plate on the deny or allow list (audited; hashed with the
    server's key as risk control hashes what it checks). The same entry again updates its note."""
    if body.subject in ("user", "station") and not body.value.isdigit():
        raise InvalidInput("value", f"a {body.subject} is named by its id (digits), got {body.value!r}")
    value_hash = risk.keyed_hash(state.settings.secret_key, body.subject, body.value)
    with state.db.transaction() as conn:
        entry_id = _risk.add_to_list(
            conn,
            kind=body.kind,
            subject=body.subject,
            value_hash=value_hash,
            note=body.note,
            actor=principal.name,
        )
        return _entry(_risk.list_entry(conn, entry_id))


@router.delete(
    "/v1/risk/lists/{entry_id}", status_code=204, responses=error_responses(401, 403, 404, 422, 429, 503)
)
def remove_list_entry(
    entry_id: EntryId,
    principal: Principal = Depends(operator_key("change the risk lists")),
    state: AppState = Depends(get_state),
) -> Response:
    """Take an entry off its list (audited)."""
    with state.db.transaction() as conn:
        _risk.remove_from_list(conn, entry_id, actor=principal.name)
    return Response(status_code=204)
