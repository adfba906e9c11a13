"""What can go wrong asking WeChat; the API maps each to a status in api/_errors.py."""

from __future__ import annotations

from geo._errors import FuelError


class WeChatError(FuelError):
    """WeChat refused or could not answer; `errcode` is its error code (None: no answer at all)."""

    def __init__(self, message: str, errcode: int | None = None) -> None:
        super().__init__(message)
        self.errcode = errcode


class InvalidLoginCode(WeChatError, PermissionError):
    """The wx.login code is invalid, expired, used already or from another mini-program (401)."""


class WeChatRateLimited(WeChatError, RuntimeError):
    """WeChat's per-user login frequency limit (45011): retry in `retry_after_s` (429)."""

    retry_after_s = 60


class WeChatUserBlocked(WeChatError, PermissionError):
    """WeChat's risk control blocked this user's login (40226): 403."""


class WeChatUnavailable(WeChatError, ConnectionError):
    """WeChat is busy (-1), unreachable, answered something unreadable, or login is not configured: 503."""

    retry_after_s = 5
