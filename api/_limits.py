"""Rate limits shared by every worker: a moving window (the `limits` library) in Redis.

A client gets at most `limit` units in any 60 seconds, whichever worker serves it (a moving window
has no edge where two windows' budgets add up). While Redis is unreachable each worker keeps the
same windows in its own memory (so N workers allow up to N times the limit, never unlimited), logs
that once, and tries Redis again every `retry_s` seconds.

Clients are a validated API key's principal or the client address (api/_security.py); the address
honours X-Forwarded-For only from trusted proxies (client_address below).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from api._pipelined_redis import PipelinedRedis
from geo._errors import FuelError

log = logging.getLogger("api.limits")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REDIS_TIMEOUT_S = 0.25  # connecting and each command: an outage costs one slow call per retry_s, not a stall


class RateLimited(FuelError, RuntimeError):
    """Over a rate limit (429); `retry_after_s` is when one more unit fits."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class Limiter:
    """Moving one-minute windows per (kind, client), in Redis, or in this process while Redis is down.

    `ahit` is for the event loop (the per-request budget in api/_security.py): it talks to Redis with
    the asyncio client, so a request waiting on Redis never holds up the others. `hit` and `over` are
    for threads (endpoints charging for their work, failed authentications). Both share the same
    Redis windows (the same keys and scripts of the `limits` library) and the same down/up state."""

    def __init__(self, redis_url: str, *, prefix: str, retry_s: float = 5.0) -> None:
        self.prefix = prefix
        self.retry_s = retry_s
        self.redis_url = redis_url
        # Short timeouts and no retries: a Redis outage costs one failed call per retry_s, not a stall.
        pool = redis.ConnectionPool.from_url(
            redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        shared = RedisStorage(redis_url, connection_pool=pool, wrap_exceptions=True)
        self._shared = MovingWindowRateLimiter(shared)
        # asyncio Redis connections belong to the loop that opened them: one client per event loop
        self._async: tuple[asyncio.AbstractEventLoop, AsyncMovingWindowRateLimiter, redis.asyncio.ConnectionPool] | None = None  # fmt: skip
        self._pipe: PipelinedRedis | None = None  # the hits of that loop (api/_pipelined_redis.py)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0

    @property
    def shared(self) -> bool:
        """Whether the limits are currently kept in Redis (shared by every worker)."""
        return self._down_since is None

    def hit(self, kind: str, client: str, *, limit: int, cost: int = 1) -> float | None:
        """Take `cost` units (at most the whole limit); None if they fit, else the seconds to wait."""
        item = RateLimitItemPerMinute(limit)
        cost = min(max(1, cost), limit)
        ids = (self.prefix, kind, client)
        strategy = self._strategy()
        try:
            ok = strategy.hit(item, *ids, cost=cost)
            wait = None if ok else self._wait(strategy, item, ids)
        except (StorageError, RedisError) as exc:
            self._redis_failed(exc)
            local = self._local
            return None if local.hit(item, *ids, cost=cost) else self._wait(local, item, ids)
        self._reached(strategy)
        return wait

    async def ahit(self, kind: str, client: str, *, limit: int, cost: int = 1) -> float | None:
        """`hit` on the event loop, without blocking it."""
        item = RateLimitItemPerMinute(limit)
        cost = min(max(1, cost), limit)
        ids = (self.prefix, kind, client)
        local = self._local
        if self._strategy() is local:
            return None if local.hit(item, *ids, cost=cost) else self._wait(local, item, ids)
        shared = self._async_shared()
        try:
            ok = await self._acquire(shared, item, ids, cost)
            if ok:
                wait = None
            else:
                stats = await shared.get_window_stats(item, *ids)
                wait = max(1.0, stats.reset_time - time.time())
        except (StorageError, RedisError, OSError) as exc:
            self._redis_failed(exc)
            return None if local.hit(item, *ids, cost=cost) else self._wait(local, item, ids)
        self._reached(self._shared)
        return wait

    async def _acquire(
        self, shared: AsyncMovingWindowRateLimiter, item: RateLimitItem, ids: tuple[str, ...], cost: int
    ) -> bool:
        """`shared.hit`: the same script, key and arguments (the `limits` library's moving window), sent
        on this loop's pipelined connection (api/_pipelined_redis.py) where the URL allows it."""
        pipe = self._pipe
        storage = shared.storage
        bridge = storage.bridge if isinstance(storage, AsyncRedisStorage) else None
        if pipe is None or not isinstance(bridge, RedispyBridge):
            return await shared.hit(item, *ids, cost=cost)
        script = bridge.lua_acquire_moving_window
        key = bridge.prefixed_key(item.key_for(*ids))
        reply = await pipe.script(
            script.sha, script.script, [key], [time.time(), item.amount, item.get_expiry(), cost]
        )
        return bool(reply)

    async def aclose(self) -> None:
        """Close this loop's Redis connections (the pipelined one and redis-py's pool)."""
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._async is not None:
            pool = self._async[2]
            self._async = None
            await pool.disconnect()

    def _async_shared(self) -> AsyncMovingWindowRateLimiter:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            pool = redis.asyncio.ConnectionPool.from_url(
                self.redis_url,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
                retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            )
            options: dict[str, Any] = {"connection_pool": pool}  # handed on to redis.asyncio.Redis
            storage = AsyncRedisStorage(
                "async+" + self.redis_url, implementation="redispy", wrap_exceptions=True, **options
            )
            self._async = (loop, AsyncMovingWindowRateLimiter(storage), pool)
            # (a previous loop's connection closes with that loop)
            pipelined = PipelinedRedis.supports(self.redis_url)
            self._pipe = PipelinedRedis(self.redis_url, timeout_s=REDIS_TIMEOUT_S) if pipelined else None
        return self._async[1]

    def over(self, kind: str, client: str, *, limit: int) -> float | None:
        """Without taking anything: None if one more unit fits, else the seconds to wait."""
        item = RateLimitItemPerMinute(limit)
        ids = (self.prefix, kind, client)
        strategy = self._strategy()
        try:
            wait = None if strategy.test(item, *ids) else self._wait(strategy, item, ids)
        except (StorageError, RedisError) as exc:
            self._redis_failed(exc)
            local = self._local
            return None if local.test(item, *ids) else self._wait(local, item, ids)
        self._reached(strategy)
        return wait

    def _strategy(self) -> MovingWindowRateLimiter:
        if self._down_since is None or time.monotonic() >= self._retry_at:
            return self._shared
        return self._local

    def _wait(self, strategy: MovingWindowRateLimiter, item: RateLimitItem, ids: tuple[str, ...]) -> float:
        stats = strategy.get_window_stats(item, *ids)
        return max(1.0, stats.reset_time - time.time())

    def _redis_failed(self, exc: Exception) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self.retry_s
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "Redis unreachable (%s): rate limits are kept by each worker on its own until it is back",
                    type(exc).__name__,
                )

    def _reached(self, strategy: MovingWindowRateLimiter) -> None:
        if strategy is self._shared and self._down_since is not None:
            with self._lock:
                if self._down_since is not None:
                    log.warning("Redis is back: rate limits are shared by every worker again")
                    self._down_since = None


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in net for net in proxies)


def client_address(scope: MutableMapping[str, Any], proxies: tuple[Network, ...]) -> str:
    """The client's address: the direct peer, or, when that peer is a trusted proxy, the right-most
    X-Forwarded-For address that is not a trusted proxy (earlier entries are the client's own say)."""
    peer = str((scope.get("client") or ("unknown",))[0])
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops: list[str] = []
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            hops.extend(h.strip() for h in value.decode("latin-1").split(","))
    for hop in reversed(hops):
        if _ip(hop) is None:
            return peer  # a malformed chain: the proxy itself is the client we can vouch for
        if not _trusted(hop, proxies):
            return str(_ip(hop))
    return peer


@dataclass(frozen=True)
class Limits:
    """What the app limits with: the limiter and the proxies whose X-Forwarded-For is believed."""

    limiter: Limiter
    proxies: tuple[Network, ...]

    def address(self, scope: MutableMapping[str, Any]) -> str:
        return client_address(scope, self.proxies)


def limits_of(app: Any) -> Limits | None:
    """The app's Limits (set by api/_security.install), or None."""
    limits = getattr(app.state, "limits", None)
    return limits if isinstance(limits, Limits) else None
