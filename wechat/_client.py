"""A client for the WeChat server API the service uses: `jscode2session` (mini-program login) and
`getuserriskrank` (WeChat's risk rank of a user, 0 lowest to 4 highest, for risk control; it needs the
app's access_token from `cgi-bin/token`, kept until shortly before it expires).

The base URL is a setting (FUEL_WECHAT_API_BASE_URL): https://api.weixin.qq.com in production, the fake
server (wechat/_fake.py) in development and tests. WeChat answers HTTP 200 with a JSON body (served as
text/plain) that carries `errcode`/`errmsg` on failure; the codes handled:

- 40029 invalid code, 40163 code been used: the client must call wx.login again (InvalidLoginCode);
- 45011 frequency limit (per user, per minute): WeChatRateLimited;
- 40226 high-risk user blocked by WeChat's risk control: WeChatUserBlocked;
- -1 system busy, any other code, a timeout, a network error or an unreadable body: WeChatUnavailable.

The session_key WeChat returns is never stored nor returned to the client: the service does not use it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import httpx

from wechat._errors import (
    InvalidLoginCode,
    WeChatRateLimited,
    WeChatUnavailable,
    WeChatUserBlocked,
)

log = logging.getLogger("wechat")
PRODUCTION_BASE_URL = "https://api.weixin.qq.com"
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class CodeSession:
    """What jscode2session tells us about the user: openid, and unionid when the app is in an open platform."""

    openid: str
    unionid: str | None


RISK_SCENES = {"register": 0, "marketing": 1}  # getuserriskrank's scene: 0 sign-up/login, 1 marketing
TOKEN_MARGIN_S = 300.0


class WeChatClient:
    """One per process (it pools connections); thread-safe like the httpx.Client it wraps."""

    def __init__(
        self,
        base_url: str,
        appid: str,
        secret: str,
        *,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.appid = appid
        self._secret = secret
        self._token: tuple[str, float] | None = None
        self._token_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "lijiang-fuel"},
        )

    def close(self) -> None:
        self._http.close()

    def fake_code(self, openid: str | None = None) -> str:
        """A login code from the fake WeChat server (`python -m wechat fake`, its `/fake/codes`): what
        wx.login would give `openid` (a new user when None) on a phone. Development and tests only."""
        try:
            resp = self._http.post("/fake/codes", json={} if openid is None else {"openid": openid})
        except httpx.HTTPError as exc:
            log.warning("fake codes failed: %s", type(exc).__name__)
            raise WeChatUnavailable(
                "the fake WeChat server cannot be reached: start python -m wechat fake"
            ) from None
        code = None
        if resp.status_code == 200 and len(resp.content) <= MAX_ANSWER_BYTES:
            try:
                body = json.loads(resp.content)
            except ValueError:
                body = None
            code = body.get("code") if isinstance(body, dict) else None
        if not isinstance(code, str):
            raise WeChatUnavailable(f"the fake WeChat server answered HTTP {resp.status_code} without a code")
        return code

    def code_to_session(self, code: str) -> CodeSession:
        """jscode2session: the openid (and unionid) of the user who called wx.login and got `code`."""
        if not self.appid or not self._secret:
            raise WeChatUnavailable("WeChat login is not configured on this server")
        params = {
            "appid": self.appid,
            "secret": self._secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        try:
            resp = self._http.get("/sns/jscode2session", params=params)
        except httpx.TimeoutException:
            raise WeChatUnavailable("WeChat did not answer in time; retry shortly") from None
        except httpx.HTTPError as exc:
            log.warning("jscode2session failed: %s", type(exc).__name__)
            raise WeChatUnavailable("WeChat cannot be reached; retry shortly") from None
        if resp.status_code != 200 or len(resp.content) > MAX_ANSWER_BYTES:
            log.warning("jscode2session: HTTP %s, %d bytes", resp.status_code, len(resp.content))
            raise WeChatUnavailable(f"WeChat answered HTTP {resp.status_code}; retry shortly")
        try:
            body = json.loads(resp.content)
        except ValueError:
            raise WeChatUnavailable("WeChat's answer could not be read; retry shortly") from None
        if not isinstance(body, dict):
            raise WeChatUnavailable("WeChat's answer could not be read; retry shortly")
        errcode = body.get("errcode", 0)
        if errcode not in (0, None):
            raise _error(errcode, str(body.get("errmsg", "")))
        openid, unionid = body.get("openid"), body.get("unionid")
        if not isinstance(openid, str) or not 1 <= len(openid) <= 128:
            raise WeChatUnavailable("WeChat's answer has no openid; retry shortly")
        if not isinstance(unionid, str) or not 1 <= len(unionid) <= 128:
            unionid = None
        return CodeSession(openid=openid, unionid=unionid)


def _error(errcode: object, errmsg: str) -> Exception:
    log.info("jscode2session errcode %s: %s", errcode, errmsg[:200])
    code = errcode if isinstance(errcode, int) else None
    if code in (40029, 40163):
        return InvalidLoginCode(
            "the login code is invalid, expired or used already: call wx.login again and send the new code",
            code,
        )
    if code == 45011:
        return WeChatRateLimited("too many logins for this user this minute; retry in a minute", code)
    if code == 40226:
        return WeChatUserBlocked("WeChat's risk control refused this user's login", code)
    if code == -1:
        return WeChatUnavailable("WeChat is busy; retry shortly", code)
    return WeChatUnavailable(f"WeChat refused the login (errcode {errcode}); retry later", code)


def _read(resp: httpx.Response, what: str) -> dict[str, object]:
    if resp.status_code != 200 or len(resp.content) > MAX_ANSWER_BYTES:
        raise WeChatUnavailable(f"WeChat answered HTTP {resp.status_code} to {what}")
    try:
        body = json.loads(resp.content)
    except ValueError:
        raise WeChatUnavailable(f"WeChat's answer to {what} could not be read") from None
    if not isinstance(body, dict):
        raise WeChatUnavailable(f"WeChat's answer to {what} could not be read")
    return body


def access_token(client: WeChatClient) -> str:
    """The app's access_token (cgi-bin/token, client_credential), cached until TOKEN_MARGIN_S before expiry."""
    with client._token_lock:
        now = time.monotonic()
        if client._token is not None and client._token[1] > now:
            return client._token[0]
        params = {"grant_type": "client_credential", "appid": client.appid, "secret": client._secret}
        try:
            resp = client._http.get("/cgi-bin/token", params=params)
        except httpx.HTTPError as exc:
            raise WeChatUnavailable(f"WeChat cannot be reached for a token: {type(exc).__name__}") from None
        body = _read(resp, "cgi-bin/token")
        token, ttl = body.get("access_token"), body.get("expires_in", 7200)
        if not isinstance(token, str) or not isinstance(ttl, int):
            raise WeChatUnavailable(f"WeChat gave no access_token (errcode {body.get('errcode')})")
        client._token = (token, now + max(ttl - TOKEN_MARGIN_S, 30.0))
        return token


def user_risk_rank(client: WeChatClient, openid: str, *, scene: str = "marketing", client_ip: str) -> int:
    """WeChat's risk rank of the user (0-4) via POST /wxa/getuserriskrank; WeChatUnavailable when WeChat
    cannot say (risk control then decides without it)."""
    if not client.appid or not client._secret:
        raise WeChatUnavailable("WeChat is not configured on this server")
    body = {"appid": client.appid, "openid": openid, "scene": RISK_SCENES[scene], "client_ip": client_ip}
    for attempt in (1, 2):
        try:
            resp = client._http.post(
                "/wxa/getuserriskrank", params={"access_token": access_token(client)}, json=body
            )
        except httpx.HTTPError as exc:
            raise WeChatUnavailable(f"getuserriskrank: {type(exc).__name__}") from None
        answer = _read(resp, "getuserriskrank")
        errcode = answer.get("errcode", 0)
        if errcode in (40001, 42001) and attempt == 1:  # the token expired early: fetch a new one once
            with client._token_lock:
                client._token = None
            continue
        rank = answer.get("risk_rank")
        if errcode not in (0, None) or not isinstance(rank, int) or not 0 <= rank <= 4:
            raise WeChatUnavailable(
                f"getuserriskrank errcode {errcode}: {str(answer.get('errmsg', ''))[:100]}"
            )
        return rank
    raise WeChatUnavailable("getuserriskrank: no valid access_token")
