"""Request guards: header and body size limits, rate limits shared by every worker, security headers,
no development secrets on a public address, CORS from settings.

Rate limits (api/_limits.py: a moving one-minute window in Redis) apply to every method under /v1/ and
/route/v1/. The client is a validated API key's principal (keys are checked against the database and
remembered for settings.api_key_cache_s in a bounded cache; an unknown key creates no state of its
own and counts as its address), else a mini-program user with a valid session token (checked without
the database: phones behind one carrier NAT address are limited each on its own), else the client address (X-Forwarded-For only from
settings.trusted_proxies). A request costs 1; expensive ones charge more from inside the endpoint
with `charge()` (matrix cells, route points).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import psycopg
import psycopg_pool
from cachetools import TTLCache
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import _tokens
from api._auth import KEY_REFUSED, failures_wait, principal_for, record_failure
from api._limits import Limiter, Limits, RateLimited, parse_networks
from config import Settings, is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Everything but the ops probes, the page and its static files is limited per client: the API under
# /v1/ and the OSRM services (/route, /table, /nearest and the unknown ones answered with OSRM errors).
_UNLIMITED_PREFIXES = ("/health", "/ready", "/static/", "/docs", "/redoc", "/openapi.json")


def _limited(path: str) -> bool:
    return path != "/" and not path.startswith(_UNLIMITED_PREFIXES)


REQUESTS = "requests"  # the limiter's kind for the per-client request budget
Cost = Literal["matrix_cells", "route_points"]

# The map page loads its script, styles, icons and data from this server only; Leaflet positions
# elements with inline style attributes, which is all that is allowed inline.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


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


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# ---- body size --------------------------------------------------------------------------------------


class BodySizeLimit:
    """413 for bodies above the limit, by Content-Length or by counting a streamed (chunked) body.

    The body parser turns any error while reading into a 400, so once the count passes the limit
    the app's own answer is replaced by the 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_json(send, 413, self._body(), [])
                return
        seen = 0
        too_large = False
        started = False

        async def counted() -> Message:
            nonlocal seen, too_large
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if too_large:
                if msg["type"] == "http.response.start" and not started:
                    started = True
                    await _send_json(send, 413, self._body(), [])
                return  # the app's own answer to a body it could not read is dropped
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, guarded_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, self._body(), [])

    def _body(self) -> dict[str, Any]:
        return _error("PayloadTooLarge", f"request body above {self.max_bytes} bytes")


class _TooLarge(Exception):
    pass


# ---- rate limits: who is asking, and what it costs -------------------------------------------------


@dataclass(frozen=True)
class _Budget:
    """The current request's client and limits, for charge()."""

    limiter: Limiter
    client: str
    settings: Settings


_budget: ContextVar[_Budget | None] = ContextVar("fuel_rate_budget", default=None)
_settings: ContextVar[Settings | None] = ContextVar("fuel_request_settings", default=None)


def request_settings() -> Settings | None:
    """The settings of the app serving the current request (None outside a request)."""
    return _settings.get()


def charge(count: int, what: Cost) -> None:
    """Charge the current request for its work: `count` matrix cells or route points, one request
    per settings.rate_cost_matrix_cells / rate_cost_route_points (the request itself already paid 1).
    Over the client's budget: RateLimited (429). A no-op outside a rate-limited request."""
    budget = _budget.get()
    if budget is None:
        return
    s = budget.settings
    per = s.rate_cost_matrix_cells if what == "matrix_cells" else s.rate_cost_route_points
    cost = math.ceil(max(1, count) / per)
    extra = min(cost, s.rate_limit_per_minute) - 1
    if extra <= 0:
        return
    wait = budget.limiter.hit(REQUESTS, budget.client, limit=s.rate_limit_per_minute, cost=extra)
    if wait is not None:
        noun = "matrix cells" if what == "matrix_cells" else "route points"
        raise RateLimited(
            f"{count} {noun} cost {cost} of your {s.rate_limit_per_minute} requests a minute; "
            f"retry in {math.ceil(wait)} s",
            wait,
        )


def count_points(geometry: object) -> int:
    """How many points a route geometry has (a GeoJSON LineString or a list of points); 0 if neither."""
    if isinstance(geometry, dict):
        geometry = geometry.get("coordinates")
    return len(geometry) if isinstance(geometry, list) else 0


class Guard:
    """Header size (431), development secrets on a public address (503), rate limits (429) and
    the security headers of every answer."""

    def __init__(self, app: ASGIApp, settings: Settings, limits: Limits) -> None:
        self.app = app
        self.settings = settings
        self.limits = limits
        # validated API keys by their SHA-256 (a long made-up key is never held) -> principal name
        self.keys: TTLCache[bytes, str] = TTLCache(
            maxsize=settings.api_key_cache_size, ttl=settings.api_key_cache_s
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        page = path in ("/", "/console/") or path.startswith("/static/")

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                extra = list(_COMMON_HEADERS)
                if page:
                    extra.append((b"content-security-policy", PAGE_CSP.encode()))
                msg["headers"] = [*msg.get("headers", []), *extra]
            await send(msg)

        refusal = self._refusal(scope)
        if refusal is not None:
            if scope["type"] == "http":
                status, body, headers = refusal
                await _send_json(send_with_headers, status, body, headers)
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        budget_token = None
        settings_token = _settings.set(self.settings)
        try:
            if scope["type"] == "http" and scope.get("method") != "OPTIONS" and _limited(path):
                client = await self._client(scope)
                limit = self.settings.rate_limit_per_minute
                wait = await self.limits.limiter.ahit(REQUESTS, client, limit=limit)
                if wait is not None:
                    retry = max(1, math.ceil(wait))
                    body = _error("RateLimited", f"more than {limit} requests a minute; retry in {retry} s")
                    await _send_json(send_with_headers, 429, body, [(b"retry-after", str(retry).encode())])
                    return
                budget_token = _budget.set(_Budget(self.limits.limiter, client, self.settings))
            await self.app(scope, receive, send_with_headers)
        finally:
            if budget_token is not None:
                _budget.reset(budget_token)
            _settings.reset(settings_token)

    def _refusal(self, scope: Scope) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]] | None:
        size = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", []))
        if size > self.settings.max_header_bytes:
            return (
                431,
                _error(
                    "HeadersTooLarge",
                    f"request headers are {size} bytes, above the limit of {self.settings.max_header_bytes}",
                ),
                [(b"connection", b"close")],
            )
        if self.settings.uses_dev_secrets:
            server = str((scope.get("server") or ("",))[0])
            if not is_loopback(server):
                return (
                    503,
                    _error(
                        "UnsafeSettings",
                        "this server runs with the development secrets and answers on loopback "
                        "addresses only; set FUEL_SECRET_KEY and FUEL_ADMIN_API_KEY to serve elsewhere",
                    ),
                    [],
                )
        return None

    async def _client(self, scope: Scope) -> str:
        """`key:<principal>` for a valid API key, `user:<id>` for a valid session token, else `ip:<address>`."""
        address = "ip:" + self.limits.address(scope)
        key = next((v for k, v in scope.get("headers", []) if k == b"x-api-key"), None)
        if not key or not key.strip():
            auth = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
            token = _tokens.bearer(auth.decode("latin-1")) if auth else None
            user = _tokens.verify(token, secret_key=self.settings.secret_key) if token else None
            return f"user:{user.id}" if user is not None else address
        digest = hashlib.sha256(key.strip()).digest()
        name = self.keys.get(digest)
        if name is not None:
            return "key:" + name
        # A key not seen lately is looked up in the database; one that fails counts as a failed
        # authentication of its address, and an address out of those gets no more look-ups.
        state = getattr(scope["app"].state, "fuel", None) if "app" in scope else None
        ip = address.removeprefix("ip:")
        if state is None or failures_wait(self.limits, self.settings, ip) is not None:
            return address
        text = key.decode("latin-1")
        try:
            principal = await anyio.to_thread.run_sync(principal_for, self.settings, state.db, text)
        except (psycopg.Error, psycopg_pool.PoolTimeout):  # database down: the address limits
            return address
        if principal is None:
            record_failure(self.limits, self.settings, ip, text)
            scope.setdefault("state", {})[KEY_REFUSED] = True  # authenticate() need not look again
            return address
        self.keys[digest] = principal.name
        return "key:" + principal.name


def install(app: FastAPI, settings: Settings) -> None:
    limiter = Limiter(settings.redis_url, prefix=settings.rate_limit_prefix, retry_s=settings.redis_retry_s)
    limits = Limits(limiter, parse_networks(settings.trusted_proxies))
    app.state.limits = limits  # read by api/_auth.py (failed authentications) through limits_of
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Guard, settings=settings, limits=limits)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["*"],
        expose_headers=["ETag", "Retry-After"],
    )
