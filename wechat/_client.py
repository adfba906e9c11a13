"""A client for the WeChat server API the service uses: `jscode2session` (mini-program login).

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
