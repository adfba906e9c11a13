"""One pipelined Redis connection per event loop, for the per-request rate limit (api/_limits.py).

Written here rather than taken whole from redis-py: through redis-py's asyncio client and the `limits`
library a hit cost about 60 µs of CPU at 16 in flight (a pool checkout, a retry wrapper, layers of
calls), on one connection that all requests in flight share, its reply read by hiredis's parser, 13 µs.
Every rate-limited request sends one: under load nearby went from 2,763 to 3,160 req/s and route from
1,618 to 1,831 (2 workers, the same order of runs). This does only what that needs: scripts (EVALSHA,
and EVAL when Redis has not loaded the script), replies taken in order, and a deadline per command past
which the connection is dropped (its reply would otherwise be taken for the next command's). Errors are
redis-py's, so the limiter's handling of an unreachable Redis stays the same. URLs are parsed by
redis-py.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, cast

import hiredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            fut = self.pending.popleft()
            if fut.done():  # its waiter gave up (the connection is being dropped)
                continue
            if isinstance(reply, hiredis.ReplyError):
                text = str(reply)
                fut.set_exception(NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(RedisConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        assert self.transport is not None
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        self.transport.write(hiredis.pack_command(args))
        return fut

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class PipelinedRedis:
    """Commands of every coroutine of one event loop on one connection, opened on first use and again
    after it is lost. `timeout_s` bounds connecting and each command."""

    @staticmethod
    def supports(url: str) -> bool:
        """Plain TCP URLs (redis://); TLS and unix sockets are left to redis-py."""
        return url.startswith("redis://")

    def __init__(self, url: str, *, timeout_s: float) -> None:
        params = parse_url(url)
        self.host = str(params.get("host", "localhost"))
        self.port = int(params.get("port", 6379))
        self.db = int(params.get("db", 0) or 0)
        self.username = params.get("username")
        self.password = params.get("password")
        self.timeout_s = timeout_s
        self._proto: _Protocol | None = None
        self._opening: asyncio.Future[_Protocol] | None = None

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.lost:
            return proto
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        opening = self._opening
        try:
            return await asyncio.shield(opening)
        finally:
            if opening.done() and self._opening is opening:
                self._opening = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(_Protocol, self.host, self.port), self.timeout_s
            )
        except (TimeoutError, OSError) as exc:
            raise RedisConnectionError(
                f"Redis at {self.host}:{self.port}: {exc or type(exc).__name__}"
            ) from exc
        hello: list[asyncio.Future[Any]] = []
        if self.password is not None:
            auth = (self.username, self.password) if self.username else (self.password,)
            hello.append(proto.send(("AUTH", *auth)))
        if self.db:
            hello.append(proto.send(("SELECT", self.db)))
        if hello:
            try:
                await asyncio.wait_for(asyncio.gather(*hello), self.timeout_s)
            except BaseException:
                proto.close()
                raise
        self._proto = proto
        return proto

    async def execute(self, *args: Any) -> Any:
        """One command; its reply (bytes, int, list or None). Raises redis-py's ConnectionError,
        TimeoutError (the connection is then dropped) or ResponseError (NoScriptError)."""
        proto = await self._connection()
        fut = proto.send(args)
        timer = asyncio.get_running_loop().call_later(self.timeout_s, self._expire, proto, fut)
        try:
            return await fut
        finally:
            timer.cancel()

    async def script(self, sha: str, text: str | bytes | memoryview, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its SHA1, loading it (EVAL) when Redis does not have it."""
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", text, len(keys), *keys, *args)

    def _expire(self, proto: _Protocol, fut: asyncio.Future[Any]) -> None:
        if not fut.done():
            fut.set_exception(RedisTimeoutError(f"Redis did not answer within {self.timeout_s} s"))
            proto.close()  # the late reply must not be read as the next command's

    def close(self) -> None:
        if self._proto is not None:
            self._proto.close()
            self._proto = None


__all__ = ["PipelinedRedis"]
