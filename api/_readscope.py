"""Read-your-writes per request: every request runs in its own `store.request_scope()`, so once it used
the primary database, its later reads (`Database.read()`) go to the primary too."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from store import request_scope


class ReadYourWrites:
    """Pure ASGI middleware. Installed innermost: the API-key lookup of the security middleware (a
    read of the primary) does not move a public request's reads off the replicas."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        with request_scope():
            await self.app(scope, receive, send)
