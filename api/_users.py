"""The user centre: WeChat mini-program login, our session tokens, and who may see what.

- `POST /v1/auth/wechat` {"code"}: the code from the mini-program's `wx.login`; the service asks WeChat's
  `jscode2session` (FUEL_WECHAT_API_BASE_URL) for the user's openid, creates or updates the user (users,
  unionid kept when given; one audit row per login) and answers our own signed, expiring session token
  (api/_tokens.py). Logins are limited per client address (FUEL_LOGINS_PER_MINUTE) on top of the
  request limit; WeChat's own errors map to 401 (invalid, expired or used code), 403 (user blocked by
  WeChat's risk control), 429 (WeChat's per-user limit) and 503 (busy, unreachable, not configured).
- `POST /v1/auth/demo` {"openid"?}: development and tests only (404 elsewhere): the service asks the fake
  WeChat server (`python -m wechat fake`) for a code itself and logs in with it like the above, so the
  web page can follow a fill-up without a phone. Same limits and audit row (`via: demo`).
- `GET /v1/me`, `GET /v1/users/{user_id}`: the caller's own account (403 for another user's).

Endpoints for users take the token as `Authorization: Bearer <token>` (`current_user`): 401 without a
valid one. `require_owner(user, owner_id)` is the one check that a resource is the caller's (403).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api import _tokens
from api._auth import Forbidden, Unauthorized
from api._limits import RateLimited, limits_of
from api._models import LoginPublic, UserPublic, error_responses
from api._state import AppState, get_state
from geo._errors import NotFound
from store._users import User, UserRow, get_user, is_active, login
from wechat import WeChatClient

LOGINS = "logins"  # the limiter's kind for logins per client address

USER_TOKEN = HTTPBearer(
    scheme_name="UserToken",
    bearerFormat="JWT",
    description="A mini-program user's session token from POST /v1/auth/wechat.",
    auto_error=False,  # a missing token is answered by current_user(), in the service's error shape
)


# The OpenAPI security of a public read that takes a session token when the driver has one: FastAPI
# declares the token from the dependency; this adds the empty alternative (no token), so it is optional.
OPTIONAL_TOKEN: dict[str, Any] = {"security": [{}]}
# The same for a read that asks `request_user` itself (no dependency declares the token).
OPTIONAL_TOKEN_READ: dict[str, Any] = {"security": [{USER_TOKEN.scheme_name: []}, {}]}


class UserUnauthorized(Unauthorized):
    """No session token, or one that is not valid (401, WWW-Authenticate: Bearer)."""

    challenge = "Bearer"


def current_user(
    credentials: HTTPAuthorizationCredentials | None = Security(USER_TOKEN),
    state: AppState = Depends(get_state),
) -> User:
    """The user of the request's session token; 401 without a valid one, or for a deleted account (one
    indexed lookup of the user row, so a deleted account's tokens stop working at once on every worker)."""
    if credentials is None or not credentials.credentials.strip():
        raise UserUnauthorized(
            "a session token is required: log in with POST /v1/auth/wechat and send "
            "Authorization: Bearer <token>"
        )
    user = _tokens.verify(credentials.credentials.strip(), secret_key=state.settings.secret_key)
    if user is None:
        raise UserUnauthorized("the session token is not valid or has expired: log in again")
    with state.db.connection() as conn:
        if not is_active(conn, user):
            raise UserUnauthorized("this account no longer exists: log in again")
    return user


async def optional_user(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Security(USER_TOKEN)
) -> User | None:
    """The logged-in driver when the request sends a session token (401 for one that is not valid), else
    None: public reads that price for the member who asks (membership tiers). Async so an anonymous read
    costs no thread hand-over; a token's user lookup (a database read) runs in the thread pool."""
    if credentials is None:
        return None
    state: AppState = request.app.state.fuel  # as get_state: one dependency fewer on every public read
    return await run_in_threadpool(current_user, credentials, state)


def require_owner(user: User, owner_id: int, what: str = "this") -> None:
    """403 unless `user` owns the resource."""
    if user.id != owner_id:
        raise Forbidden(f"{what} belongs to another user")


def wechat_client(state: AppState) -> WeChatClient:
    """The app's WeChat client (one per worker, made at start-up)."""
    client: WeChatClient = state.extras["wechat"]
    return client


def make_wechat_client(state: AppState) -> WeChatClient:
    s = state.settings
    return WeChatClient(
        s.wechat_api_base_url, s.wechat_appid, s.wechat_app_secret, timeout_s=s.wechat_timeout_s
    )


# ---- endpoints ----------------------------------------------------------------------------------------

router = APIRouter(tags=["users"])
CurrentUser = Annotated[User, Depends(current_user)]
OptionalUser = Annotated[User | None, Depends(optional_user)]


async def request_user(request: Request) -> User | None:
    """optional_user, asked by the endpoint itself: a hot public read (nearby) saves FastAPI's solving of
    the two nested dependencies, about 6 % of its CPU under load. Document it with OPTIONAL_TOKEN_READ."""
    return await optional_user(request, await USER_TOKEN(request))


class WeChatLogin(BaseModel):
    """The code from the mini-program's `wx.login` (valid 5 minutes, once)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "0c3Xy9Ga1AbCdEfGh"}]})
    code: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


def _user_out(row: UserRow, state: AppState) -> dict[str, Any]:
    tz = state.region.tz
    return {
        "id": row.id,
        "created_at": row.created_at.astimezone(tz).isoformat(),
        "last_login_at": row.last_login_at.astimezone(tz).isoformat(),
        "unionid_known": row.unionid is not None,
        "phone_known": row.phone is not None,
    }


_LOGIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **error_responses(400, 413, 422, 429, 503),
    401: {
        **error_responses(401)[401],
        "description": "The login code is invalid, expired or used already: call wx.login again",
        "content": {
            "application/json": {
                "example": {
                    "error": {
                        "code": "InvalidLoginCode",
                        "message": "the login code is invalid, expired or used already: call wx.login again",
                    }
                }
            }
        },
        "headers": {},
    },
    403: {
        **error_responses(403)[403],
        "description": "WeChat's risk control blocked this user's login, or the account was deleted",
    },
}


class DemoLogin(BaseModel):
    """Which fake WeChat user to log in as (a new one when left out)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"openid": "oDemoUser01"}]})
    # what the fake WeChat server takes (a real openid is 28 characters)
    openid: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


@router.post("/v1/auth/wechat", response_model=LoginPublic, responses=_LOGIN_ERRORS)
def auth_wechat(body: WeChatLogin, request: Request, state: AppState = Depends(get_state)) -> dict[str, Any]:
    """Log in with the code of the mini-program's `wx.login`: our session token for this WeChat user."""
    address = _login_limit(request, state)
    return _login(body.code, state, address=address, via="wechat")


@router.post(
    "/v1/auth/demo",
    response_model=LoginPublic,
    responses={**_LOGIN_ERRORS, **error_responses(404)},
)
def auth_demo(
    request: Request, body: DemoLogin | None = None, state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """Development and tests only: log in as a fake WeChat user (the service asks the fake server for
    the code). 404 outside FUEL_ENV=development|test."""
    if not state.settings.demo_enabled:
        raise NotFound("no such endpoint: demo login is for development and tests only")
    address = _login_limit(request, state)  # before the fake server is asked for a code
    code = wechat_client(state).fake_code(None if body is None else body.openid)
    return _login(code, state, address=address, via="demo")


def _login_limit(request: Request, state: AppState) -> str | None:
    """The client's address after counting this login against FUEL_LOGINS_PER_MINUTE (429 past it)."""
    s = state.settings
    limits = limits_of(request.app)
    if limits is not None:
        address = limits.address(request.scope)
        wait = limits.limiter.hit(LOGINS, address, limit=s.logins_per_minute)
        if wait is not None:
            raise RateLimited(
                f"more than {s.logins_per_minute} logins a minute from {address}; retry in {math.ceil(wait)} s",
                wait,
            )
        return address
    return None


def _login(code: str, state: AppState, *, address: str | None, via: str) -> dict[str, Any]:
    """Our session token for the WeChat user of `code` (created on the first login; audited)."""
    s = state.settings
    who = wechat_client(state).code_to_session(code)
    with state.db.connection() as conn:
        row, created = login(conn, openid=who.openid, unionid=who.unionid, address=address, via=via)
    token, expires = _tokens.issue(row.user, secret_key=s.secret_key, ttl_s=s.user_token_ttl_s)
    return {
        "token": token,
        "token_type": "Bearer",
        "expires_at": expires.astimezone(state.region.tz).isoformat(),
        "expires_in": max(0, int((expires - datetime.now(UTC)).total_seconds())),
        "created": created,
        "user": _user_out(row, state),
    }


def _own_account(user: User, state: AppState) -> UserRow:
    with state.db.connection() as conn:
        row = get_user(conn, user.id)
    if row is None or row.deleted_at is not None:
        raise UserUnauthorized("this account no longer exists: log in again")
    return row


@router.get("/v1/me", response_model=UserPublic, responses=error_responses(401, 429, 503, user=True))
def me(user: CurrentUser, state: AppState = Depends(get_state)) -> dict[str, Any]:
    """The caller's own account."""
    return _user_out(_own_account(user, state), state)


@router.get(
    "/v1/users/{user_id}",
    response_model=UserPublic,
    responses=error_responses(401, 403, 422, 429, 503, user=True),
)
def user_by_id(
    user_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="user id")],
    user: CurrentUser,
    state: AppState = Depends(get_state),
) -> dict[str, Any]:
    """A user's account: the caller's own only (403 for another user's)."""
    require_owner(user, user_id, f"user {user_id}")
    return _user_out(_own_account(user, state), state)
