"""A fake WeChat server API for development and tests: `python -m wechat fake` (its own process).

It answers `GET /sns/jscode2session` as WeChat does (HTTP 200, a JSON body served as text/plain, errors
as `errcode`/`errmsg`): the appid and secret must be ours (40013, 40125), `grant_type` must be
authorization_code (40002), a code is single-use (40163 the second time) and expires after 5 minutes
(40029, as an unknown code), and each openid may log in at most `logins_per_minute` times a minute (45011).

Control endpoints, for tests and the development "demo login" (loopback only, never in production):
- `POST /fake/codes` {"openid"?, "unionid"?} -> {"code", "openid", "expires_in"}: what wx.login would
  give that user on a phone (a new openid when none is given);
- `POST /fake/failures` {"errcode", "count"} -> the next `count` jscode2session calls answer that errcode
  (-1 busy, 45011, 40226 ...);
- `POST /fake/risk_ranks` {"openid", "risk_rank"} -> the rank getuserriskrank answers for that user
  (default 0);
- `GET /fake/health`.

It also answers `GET /cgi-bin/token` (client_credential, our appid and secret) and `POST
/wxa/getuserriskrank?access_token=T` {appid, openid, scene, client_ip} as WeChat does (40001 for a token
it did not issue, 61010 for an unknown scene).
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

CODE_TTL_S = 300.0
_ERRMSG = {
    -1: "system error",
    40002: "invalid grant_type",
    40013: "invalid appid",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    40001: "invalid credential, access_token is invalid or not latest",
    40226: "high risk user has been blocked",
    61010: "invalid scene",
    41008: "missing code",
    45011: "api minute-quota reach-limit mustslower retry next minute",
}
_ID = r"^[A-Za-z0-9_-]{1,64}$"


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    openid: str | None = Field(None, pattern=_ID)
    unionid: str | None = Field(None, pattern=_ID)


class RiskRankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    openid: str = Field(pattern=_ID)
    risk_rank: int = Field(ge=0, le=4)


class RiskRankQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    appid: str = ""
    openid: str = ""
    scene: int = -1
    client_ip: str = ""


class FailureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    errcode: int
    count: int = Field(1, ge=1, le=1000)


@dataclass
class _Code:
    openid: str
    unionid: str | None
    expires: float
    used: bool = False


@dataclass
class FakeState:
    appid: str
    secret: str
    code_ttl_s: float = CODE_TTL_S
    logins_per_minute: int = 100
    codes: dict[str, _Code] = field(default_factory=dict)
    failures: deque[int] = field(default_factory=deque)
    logins: dict[str, deque[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    risk_ranks: dict[str, int] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)


def _rid() -> str:
    return secrets.token_hex(6)


def _answer(body: dict[str, object]) -> Response:
    """WeChat's shape: HTTP 200, JSON served as text/plain."""
    return JSONResponse(body, media_type="text/plain")


def _err(errcode: int) -> Response:
    return _answer({"errcode": errcode, "errmsg": f"{_ERRMSG.get(errcode, 'error')}, rid: {_rid()}"})


def new_openid() -> str:
    """28 characters starting with 'o', like WeChat's."""
    alphabet = string.ascii_letters + string.digits + "-_"
    return "o" + "".join(secrets.choice(alphabet) for _ in range(27))


def create_fake(
    appid: str, secret: str, *, code_ttl_s: float = CODE_TTL_S, logins_per_minute: int = 100
) -> FastAPI:
    state = FakeState(appid, secret, code_ttl_s, logins_per_minute)
    app = FastAPI(title="fake WeChat server API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = state

    @app.get("/sns/jscode2session")
    def jscode2session(
        appid: str = "", secret: str = "", js_code: str = "", grant_type: str = ""
    ) -> Response:
        now = time.monotonic()
        with state.lock:
            if state.failures:
                return _err(state.failures.popleft())
            if appid != state.appid:
                return _err(40013)
            if not secrets.compare_digest(secret.encode(), state.secret.encode()):
                return _err(40125)
            if grant_type != "authorization_code":
                return _err(40002)
            if not js_code:
                return _err(41008)
            code = state.codes.get(js_code)
            if code is None or code.expires <= now:
                state.codes.pop(js_code, None)
                return _err(40029)
            if code.used:
                return _err(40163)
            recent = state.logins.setdefault(code.openid, deque())
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if len(recent) >= state.logins_per_minute:
                return _err(45011)
            recent.append(now)
            code.used = True
            body: dict[str, object] = {"session_key": secrets.token_urlsafe(18), "openid": code.openid}
            if code.unionid:
                body["unionid"] = code.unionid
            return _answer(body)

    @app.post("/fake/codes")
    def mint_code(req: CodeRequest) -> dict[str, object]:
        now = time.monotonic()
        openid = req.openid or new_openid()
        code = secrets.token_hex(16)
        with state.lock:
            for c in [c for c, v in state.codes.items() if v.expires <= now]:
                del state.codes[c]  # expired codes do not pile up
            state.codes[code] = _Code(openid, req.unionid, now + state.code_ttl_s)
        return {"code": code, "openid": openid, "expires_in": int(state.code_ttl_s)}

    @app.post("/fake/failures")
    def fail_next(req: FailureRequest) -> dict[str, object]:
        with state.lock:
            state.failures.extend([req.errcode] * req.count)
            return {"queued": len(state.failures)}

    @app.get("/cgi-bin/token")
    def token(grant_type: str = "", appid: str = "", secret: str = "") -> Response:
        if grant_type != "client_credential":
            return _err(40002)
        if appid != state.appid:
            return _err(40013)
        if not secrets.compare_digest(secret.encode(), state.secret.encode()):
            return _err(40125)
        tok = secrets.token_urlsafe(32)
        with state.lock:
            state.tokens.add(tok)
        return _answer({"access_token": tok, "expires_in": 7200})

    @app.post("/wxa/getuserriskrank")
    def getuserriskrank(req: RiskRankQuery, access_token: str = "") -> Response:
        with state.lock:
            if access_token not in state.tokens:
                return _err(40001)
            if req.appid != state.appid:
                return _err(40013)
            if req.scene not in (0, 1):
                return _err(61010)
            rank = state.risk_ranks.get(req.openid, 0)
        return _answer({"errcode": 0, "errmsg": "getuserriskrank succ", "risk_rank": rank, "unoin_id": 0})

    @app.post("/fake/risk_ranks")
    def set_rank(req: RiskRankRequest) -> dict[str, object]:
        with state.lock:
            state.risk_ranks[req.openid] = req.risk_rank
        return {"openid": req.openid, "risk_rank": req.risk_rank}

    @app.get("/fake/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
