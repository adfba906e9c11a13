"""API keys for the write endpoints: header `X-API-Key`.

- no key: 401 with `WWW-Authenticate: ApiKey header="X-API-Key"`; an unknown key: 401;
- settings.admin_api_key is an operator key (actor "admin"); stored keys (store/_auth.py, hashed with
  HMAC-SHA256 under settings.secret_key) are operator (every station), manager (own stations) or
  traffic (live traffic feed only);
- a manager writing another station's data: 403.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, Header

from api._state import AppState, get_state
from geo._errors import FuelError
from store._auth import Principal, principal_for_key

ADMIN_ACTOR = "admin"


class Unauthorized(FuelError, PermissionError):
    """No credentials, or credentials that are not valid (401)."""


class Forbidden(FuelError, PermissionError):
    """Valid credentials without the right to this resource (403)."""


class PreconditionRequired(FuelError, ValueError):
    """A write without the version it is based on (428)."""


def authenticate(
    x_api_key: str | None = Header(None, alias="X-API-Key", description="an operator or manager API key"),
    state: AppState = Depends(get_state),
) -> Principal:
    if x_api_key is None or not x_api_key.strip():
        raise Unauthorized("an API key is required: send it in the X-API-Key header")
    key = x_api_key.strip()
    admin = state.settings.admin_api_key
    if admin and hmac.compare_digest(key.encode(), admin.encode()):
        return Principal(ADMIN_ACTOR, "operator")
    with state.db.connection() as conn:
        principal = principal_for_key(conn, key, secret_key=state.settings.secret_key)
    if principal is None:
        raise Unauthorized("the API key is not valid")
    return principal


def require_station(principal: Principal, station_id: int) -> None:
    if not principal.may_write_station(station_id):
        raise Forbidden(f"key {principal.name!r} may not write station {station_id}")


def require_role(principal: Principal, what: str, *roles: str) -> None:
    """403 unless the key has one of `roles`."""
    if principal.role not in roles:
        raise Forbidden(
            f"key {principal.name!r} ({principal.role}) may not {what}: {' or '.join(roles)} keys only"
        )


def require_operator(principal: Principal, what: str) -> None:
    require_role(principal, f"write {what}", "operator")
