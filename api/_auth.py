"""API keys for the write endpoints: header `X-API-Key`.

- no key: 401 with `WWW-Authenticate: ApiKey header="X-API-Key"`; an unknown key: 401;
- settings.admin_api_key is an operator key (actor "admin"); stored keys (store/_auth.py, hashed with
  HMAC-SHA256 under settings.secret_key) are operator (every station), manager (own stations) or
  traffic (live traffic feed only);
- a manager writing another station's data: 403;
- failed authentications are logged (client address and the key's first characters, never the key)
  and limited per client address: past settings.auth_failures_per_minute in a minute, 429.
"""

from __future__ import annotations

import hmac
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from api._limits import Limits, RateLimited, limits_of
from api._state import AppState, get_state
from config import Settings
from geo._errors import FuelError
from store import Database
from store._auth import Principal, principal_for_key

ADMIN_ACTOR = "admin"
AUTH_FAILURES = "auth-failures"  # the limiter's kind for failed authentications per address
KEY_REFUSED = "fuel_key_refused"  # request state: the rate limiter already found the key invalid
MAX_KEY_CHARS = 256  # longer is never a key of ours: refused without a database look-up
log = logging.getLogger("api.auth")

API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="An API key: `operator` (every station), `manager` (its own stations) or `traffic` (the live "
    "traffic feed). Any endpoint accepts a key; requests then count against the key's rate limit.",
    auto_error=False,  # a missing key is answered by authenticate(), in the service's error shape
)


class Unauthorized(FuelError, PermissionError):
    """No credentials, or credentials that are not valid (401)."""


class Forbidden(FuelError, PermissionError):
    """Valid credentials without the right to this resource (403)."""


class PreconditionRequired(FuelError, ValueError):
    """A write without the version it is based on (428)."""


def principal_for(settings: Settings, db: Database, key: str) -> Principal | None:
    """The principal of a valid key (the static admin key, when on, or a stored one), else None."""
    key = key.strip()
    if not key or len(key) > MAX_KEY_CHARS:
        return None
    admin = settings.admin_api_key
    if admin and hmac.compare_digest(key.encode(), admin.encode()):
        return Principal(ADMIN_ACTOR, "operator")
    with db.connection() as conn:
        return principal_for_key(conn, key, secret_key=settings.secret_key)


def failures_wait(limits: Limits, settings: Settings, address: str) -> float | None:
    """Seconds until `address` may try a key again, or None when it has failures left this minute."""
    return limits.limiter.over(AUTH_FAILURES, address, limit=settings.auth_failures_per_minute)


def record_failure(limits: Limits | None, settings: Settings, address: str, key: str) -> None:
    """Log a key that did not authenticate (its first characters only) and count it against the address."""
    key = key.strip()
    log.warning("failed authentication from %s: key %r... (%d characters)", address, key[:6], len(key))
    if limits is not None:
        limits.limiter.hit(AUTH_FAILURES, address, limit=settings.auth_failures_per_minute)


def authenticate(
    request: Request,
    x_api_key: str | None = Security(API_KEY),
    state: AppState = Depends(get_state),
) -> Principal:
    if x_api_key is None or not x_api_key.strip():
        raise Unauthorized("an API key is required: send it in the X-API-Key header")
    limits = limits_of(request.app)
    address = limits.address(request.scope) if limits else str((request.scope.get("client") or ("?",))[0])
    if request.scope.get("state", {}).get(KEY_REFUSED):
        raise Unauthorized("the API key is not valid")  # looked up, logged and counted on the way in
    wait = failures_wait(limits, state.settings, address) if limits is not None else None
    if wait is not None:
        raise RateLimited(
            f"too many failed authentications from {address}; retry in {math.ceil(wait)} s", wait
        )
    principal = principal_for(state.settings, state.db, x_api_key)
    if principal is None:
        record_failure(limits, state.settings, address, x_api_key)
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


def operator_key(what: str) -> Callable[..., Principal]:
    """A dependency: the request's principal, 403 unless it is an operator key (`what` names the action)."""

    def operator(principal: Principal = Depends(authenticate)) -> Principal:
        require_role(principal, what, "operator")
        return principal

    return operator


def next_after_id(rows: Sequence[Mapping[str, Any]], limit: int) -> int | None:
    """The `after_id` of the next page of an id-ordered listing: null when this page was not full."""
    return int(rows[-1]["id"]) if rows and len(rows) == limit else None


def require_operator(principal: Principal, what: str) -> None:
    require_role(principal, f"write {what}", "operator")
