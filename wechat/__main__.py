"""`python -m wechat fake [--host H] [--port P]`: the fake WeChat server API (development and tests).

Its appid and secret are the service's own (FUEL_WECHAT_APPID, FUEL_WECHAT_APP_SECRET, development
defaults when unset); it listens on loopback only. See wechat/_fake.py for what it answers.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from config import get_settings, is_loopback
from wechat._fake import CODE_TTL_S, create_fake


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m wechat", description=__doc__.split("\n\n", 1)[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fake = sub.add_parser("fake", help="run the fake WeChat server API (development and tests)")
    fake.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    fake.add_argument("--port", type=int, default=8090, help="default 8090")
    fake.add_argument("--code-ttl-s", type=float, default=CODE_TTL_S, help="login codes expire after this")
    fake.add_argument("--logins-per-minute", type=int, default=100, help="per openid, then errcode 45011")
    args = p.parse_args(argv)
    if not is_loopback(args.host):
        print(
            f"wechat fake: {args.host} is not a loopback address; the fake answers locally only",
            file=sys.stderr,
        )
        return 2
    settings = get_settings()
    appid, secret = settings.wechat_appid, settings.wechat_app_secret
    if not appid or not secret:
        print("wechat fake: FUEL_WECHAT_APPID and FUEL_WECHAT_APP_SECRET are not set", file=sys.stderr)
        return 2
    app = create_fake(appid, secret, code_ttl_s=args.code_ttl_s, logins_per_minute=args.logins_per_minute)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
