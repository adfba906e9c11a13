"""Request guards: body size limit, per-client rate limits on public endpoints, CORS from settings."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from config import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Public read endpoints are rate-limited per client; writes are authenticated instead.
_LIMITED_PREFIXES = ("/v1/", "/route/v1/")


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodySizeLimit:
    """413 for bodies above the limit, by Content-Length or by counting a streamed body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_json(send, 413, self._error(), [])
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _send_json(send, 413, self._error(), [])

    def _error(self) -> dict[str, Any]:
        return {"error": {"code": "PayloadTooLarge", "message": f"request body above {self.max_bytes} bytes"}}


class _TooLarge(Exception):
    pass


class RateLimiter:
    """Fixed one-minute windows per client (API key, else address), in this process.

    Each worker limits on its own, so with N workers a client gets at most N x the limit; that bound
    is stated in the README. A shared Redis counter would be exact but adds a network round trip to
    every public request.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._window = 0
        self._counts: dict[str, int] = {}

    def hit(self, client: str, now: float | None = None) -> float | None:
        """Count one request; return the seconds to wait when over the limit, else None."""
        now = time.time() if now is None else now
        window = int(now // 60)
        with self._lock:
            if window != self._window:
                self._window, self._counts = window, {}
            count = self._counts.get(client, 0) + 1
            self._counts[client] = count
        if count > self.per_minute:
            return max(1.0, (window + 1) * 60 - now)
        return None


class RateLimit:
    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") == "GET"
            and scope["path"].startswith(_LIMITED_PREFIXES)
        ):
            headers = dict(scope.get("headers", []))
            key = headers.get(b"x-api-key")
            client = (
                ("key:" + key.decode(errors="replace")) if key else str((scope.get("client") or ("?",))[0])
            )
            wait = self.limiter.hit(client)
            if wait is not None:
                retry = str(math.ceil(wait))
                body = {
                    "error": {
                        "code": "RateLimited",
                        "message": f"more than {self.limiter.per_minute} requests a minute; retry in {retry} s",
                    }
                }
                await _send_json(send, 429, body, [(b"retry-after", retry.encode())])
                return
        await self.app(scope, receive, send)


def install(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(RateLimit, limiter=RateLimiter(settings.rate_limit_per_minute))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["*"],
        expose_headers=["ETag", "Retry-After"],
    )
