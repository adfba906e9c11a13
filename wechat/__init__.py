"""WeChat's server API as the service uses it (mini-program login), and a fake of it for development."""

from wechat._client import PRODUCTION_BASE_URL, RISK_SCENES, CodeSession, WeChatClient, user_risk_rank
from wechat._errors import (
    InvalidLoginCode,
    WeChatError,
    WeChatRateLimited,
    WeChatUnavailable,
    WeChatUserBlocked,
)

__all__ = [
    "PRODUCTION_BASE_URL",
    "RISK_SCENES",
    "CodeSession",
    "InvalidLoginCode",
    "WeChatClient",
    "WeChatError",
    "WeChatRateLimited",
    "WeChatUnavailable",
    "WeChatUserBlocked",
    "user_risk_rank",
]
