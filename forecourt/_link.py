"""The station link server: OpenFSC 1.0 sites connect out to it over TCP (plain lines) or a WebSocket
(`/ws/text`, one line per text frame).

It keeps no state but its connections. Per line a site sends: the raw line is appended to
`forecourt_events` first, then parsed and acted on (pump_status, pump_progress, fcc_sales), each change
committed with its NOTIFY on channel `forecourt` (store/_forecourt.py). A malformed line is answered
with an ERR line under its tag (`*` when the tag cannot be read) and changes nothing.

Connection life: both sides send CAPABILITY first; the site may switch CHARSET, then authenticates
with PLAINAUTH (a site key, `python -m ingest keys create --role site`). A newer authenticated
connection for the same station replaces the older one wherever it is held (the older one gets QUIT):
a site that reconnects after a half-open TCP link must not wait for the old link to time out. Then the
server asks for PRICES, PUMPS, TRANSACTIONS and, when the site supports it, RECONCILE since the last
sale it had stored when the site authenticated (read then: a sale the site sends live before RECONCILE is
asked must not move the start past one it wrote while the link was down); it sends HEARTBEAT every
`link_heartbeat_s` and drops the link after `link_heartbeat_misses` unanswered ones. Commands from the API
(`forecourt.send_command`) arrive as rows of forecourt_commands with a NOTIFY on `forecourt_cmd`; the server
holding the station sends them, one request at a time per connection, and stores the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from forecourt import _openfsc as o
from forecourt._sales import OPEN, SaleFigures, plausibility_problem
from geo._pricing import KNOWN_GRADES
from store import _forecourt as db
from store import _sessions as sessions

log = logging.getLogger("forecourt.link")
WS_PATH = "/ws/text"
LIVE = (o.Progress, o.Pump, o.FpState)  # live telemetry: one statement each, on the live pool (see _live)
NOZZLE_CACHE_S = 30.0  # a re-onboarded nozzle's grade is seen by live connections within this


class LineTooLong(Exception):
    pass


class TcpTransport:
    kind = "tcp"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def read_line(self) -> bytes | None:
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial or None
        except asyncio.LimitOverrunError:
            raise LineTooLong from None
        return raw

    async def write_line(self, text: str, charset: str) -> None:
        self.writer.write((text + o.CRLF).encode(o.ENCODINGS[charset], "replace"))
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class WsTransport:
    kind = "ws"

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        peer = ws.remote_address
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def read_line(self) -> bytes | None:
        try:
            frame = await self.ws.recv()
        except ConnectionClosed:
            return None
        if isinstance(frame, bytes):
            return b"\x01 binary frame"  # refused by the parser as a bad request (no valid tag)
        return frame.encode("utf-8")

    async def write_line(self, text: str, charset: str) -> None:
        await self.ws.send(text)

    async def close(self) -> None:
        await self.ws.close()


Transport = TcpTransport | WsTransport


@dataclass
class Reply:
    ok: bool | None  # None: no answer in time
    code: int | None = None
    text: str = ""
    lines: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    tag: str
    future: asyncio.Future[Reply]
    lines: list[str] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


class SiteSession:
    """One site connection."""

    def __init__(self, server: LinkServer, transport: Transport) -> None:
        self.server = server
        self.transport = transport
        self.connection_id = str(uuid.uuid4())
        self.station_id: int | None = None
        self.key_name = ""
        self.charset = "ASCII"
        self.site_capability: set[str] | None = None
        self.reconcile_since: datetime | None = None  # the last sale stored before this site's PLAINAUTH
        self.auth_failures = 0
        self.closed = False
        self._tags = itertools.count(1)
        self._request_lock = asyncio.Lock()
        self._pending: _Pending | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._window = (0.0, 0)  # (second, lines in it): the per-connection line rate
        self._nozzles: dict[tuple[int, int], tuple[str, float]] = {}  # (pump, nozzle) -> (grade, when)
        self._pumps: dict[int, float] = {}  # pump -> when it was seen onboarded

    # --- sending -------------------------------------------------------------------------------------
    async def send(self, tag: str, body: o.Body) -> None:
        if self.closed:
            return
        try:
            await self.transport.write_line(o.format_line(tag, body), self.charset)
        except (ConnectionError, ConnectionClosed, RuntimeError):
            self.closed = True

    async def quit(self, reason: str) -> None:
        log.info("station %s connection %s: QUIT %s", self.station_id, self.connection_id, reason)
        await self.send("*", o.Quit(reason))
        await self.close()

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
        with contextlib.suppress(Exception):
            await self.transport.close()

    async def request(self, body: o.Body, *, timeout_s: float, tag: str | None = None) -> Reply:
        """Send a request and wait for its OK or ERR (one request at a time on a connection); the
        notifications received meanwhile are the reply's lines."""
        async with self._request_lock:
            if self.closed:
                return Reply(None, None, "connection closed")
            tag = tag or f"S{next(self._tags)}"
            loop = asyncio.get_running_loop()
            self._pending = _Pending(tag, loop.create_future())
            try:
                await self.send(tag, body)
                return await asyncio.wait_for(asyncio.shield(self._pending.future), timeout_s)
            except TimeoutError:
                return Reply(None, None, f"no answer within {timeout_s:.0f} s", list(self._pending.lines))
            finally:
                self._pending = None

    def next_tag(self) -> str:
        return f"S{next(self._tags)}"

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the connection ----------------------------------------------------------------------------
    async def run(self) -> None:
        s = self.server
        await self.send("*", o.Capability(o.SERVER_CAPABILITY))
        deadline = time.monotonic() + s.auth_timeout_s
        try:
            while not self.closed:
                timeout = None if self.station_id is not None else max(0.0, deadline - time.monotonic())
                try:
                    raw = await asyncio.wait_for(self.transport.read_line(), timeout)
                except TimeoutError:
                    await self.quit("no authentication in time")
                    break
                except LineTooLong:
                    await self.send("*", o.Err(o.BAD_REQUEST, f"line longer than {o.MAX_LINE_BYTES} bytes"))
                    await self.quit("line too long")
                    break
                if raw is None:
                    break
                if not self._within_rate():
                    await self.quit(f"more than {s.max_lines_per_s} lines a second")
                    break
                await self.handle(raw)
        except (ConnectionError, ConnectionClosed):
            pass
        finally:
            await self.close()
            for task in list(self._tasks):
                task.cancel()
            if self._pending is not None and not self._pending.future.done():
                self._pending.future.set_result(Reply(None, None, "connection closed", self._pending.lines))
            await s.forget(self)

    def _within_rate(self) -> bool:
        second = int(time.monotonic())
        start, n = self._window
        self._window = (second, n + 1) if start == second else (second, 1)
        return self._window[1] <= self.server.max_lines_per_s

    async def handle(self, raw: bytes) -> None:
        """One raw line: logged, then acted on, in one transaction (its NOTIFYs go out at the commit). The
        effects run under a savepoint, so a refused or failing line still leaves its raw log row. Live
        telemetry (PROGRESS, PUMP, FPSTATE of an authenticated site) takes `_live`: one statement each."""
        s = self.server
        text = raw.decode(o.ENCODINGS[self.charset], "backslashreplace").rstrip("\r\n")
        logged = _mask_secret(text).replace("\x00", "\\x00")  # PostgreSQL text holds no NUL
        try:
            line: o.Line | None = o.parse_line(o.decode(raw, self.charset))
            error = None
        except o.ProtocolError as exc:
            line, error = None, exc
        if (
            line is not None
            and line.tag == "*"
            and isinstance(line.body, LIVE)
            and self.station_id is not None
        ):
            await self._live(line.body, logged)
            return
        try:
            async with s.pool.connection() as conn, conn.transaction():
                event_id = await db.log_line(
                    conn,
                    connection_id=self.connection_id,
                    link_id=s.link_id,
                    station_id=self.station_id,
                    line=logged,
                )
                if line is None:
                    assert error is not None
                    log.info(
                        "station %s: %s %s: %r", self.station_id, error.code, error.message, logged[:200]
                    )
                    await self.send(error.tag, o.Err(error.code, error.message))
                    return
                try:
                    async with conn.transaction():
                        await self.act(conn, line, event_id, logged)
                except o.ProtocolError as exc:
                    log.info("station %s: refused %r: %s", self.station_id, logged[:200], exc.message)
                    await self.send(exc.tag if exc.tag != "*" else line.tag, o.Err(exc.code, exc.message))
                except psycopg.Error as exc:
                    log.warning("station %s: database error on %r: %s", self.station_id, logged[:200], exc)
                    await self.send(
                        line.tag, o.Err(o.INTERNAL, "the line could not be stored; send it again")
                    )
        except psycopg.Error as exc:  # store first: a line that cannot be logged is not acted on
            log.warning("station %s: could not log %r: %s", self.station_id, logged[:200], exc)
            tag = line.tag if line is not None else logged.split(" ", 1)[0]
            await self.send(
                tag if o.valid_tag(tag) else "*", o.Err(o.INTERNAL, "the line could not be stored")
            )

    async def act(self, conn: psycopg.AsyncConnection[Any], line: o.Line, event_id: int, text: str) -> None:
        body, tag = line.body, line.tag
        pending = self._pending
        # Answers to the server's own request (same tag), and what the site sends meanwhile.
        if pending is not None and tag == pending.tag:
            if isinstance(body, o.Ok):
                if not pending.future.done():
                    pending.future.set_result(Reply(True, None, "", pending.lines))
                return
            if isinstance(body, o.Err):
                if not pending.future.done():
                    pending.future.set_result(Reply(False, body.code, body.message, pending.lines))
                return
            if isinstance(body, o.Beat):
                pending.lines.append(text)
                return
        if pending is not None and tag == "*":
            pending.lines.append(text)

        if self.site_capability is None:
            if not isinstance(body, o.Capability):
                await self.send(tag, o.Err(o.WRONG_STATE, "the first message is CAPABILITY"))
                await self.quit("no CAPABILITY")
                return
            self.site_capability = set(body.methods)
            return
        if isinstance(body, o.Capability):
            raise o.ProtocolError(o.WRONG_STATE, "CAPABILITY was sent already", tag=tag)
        if isinstance(body, o.Quit):
            await self.close()
            return
        if isinstance(body, o.Ok | o.Err | o.Beat):
            raise o.ProtocolError(o.BAD_REQUEST, f"{body.METHOD} answers no open request", tag=tag)
        if isinstance(body, o.Charset | o.PlainAuth):
            if tag == "*":
                raise o.ProtocolError(o.BAD_REQUEST, f"{body.METHOD} is a request: it needs a tag")
            if self.station_id is not None:
                raise o.ProtocolError(o.WRONG_STATE, f"{body.METHOD} after authentication", tag=tag)
            if isinstance(body, o.Charset):
                await self._charset(tag, body)
            else:
                await self._plainauth(conn, tag, body, event_id)
            return
        if self.station_id is None:
            raise o.ProtocolError(o.WRONG_STATE, f"{body.METHOD} before PLAINAUTH", tag=tag)
        station = self.station_id
        if isinstance(body, o.LockedPump):
            await self._lockedpump(conn, tag, body)
            return
        if tag != "*":
            raise o.ProtocolError(
                o.BAD_REQUEST, f"{body.METHOD} from a site is a notification (tag *)", tag=tag
            )
        if isinstance(body, LIVE):
            raise o.ProtocolError(o.BAD_REQUEST, f"{body.METHOD} is a notification")  # handled by _live
        elif isinstance(body, o.Sale):
            await self._sale(conn, station, body)
        elif isinstance(body, o.Transaction):
            await self._transaction(conn, station, body)
        elif isinstance(body, o.Price | o.ReceiptInfo):
            pass  # kept in the raw log: the station's own price feed stays the source of prices
        else:
            raise o.ProtocolError(o.BAD_REQUEST, f"{body.METHOD} is not sent by a site")

    # --- handshake -----------------------------------------------------------------------------------
    async def _charset(self, tag: str, body: o.Charset) -> None:
        if body.name not in o.ENCODINGS:
            await self.send(tag, o.Err(o.NOT_FOUND, f"unknown encoding {body.name}"))
            return
        if self.transport.kind == "ws" and body.name not in ("UTF-8", "ASCII"):
            await self.send(tag, o.Err(o.NOT_FOUND, "WebSocket text frames are UTF-8"))
            return
        await self.send(tag, o.Ok())  # the answer still in the old encoding
        self.charset = body.name

    async def _plainauth(
        self, conn: psycopg.AsyncConnection[Any], tag: str, body: o.PlainAuth, event_id: int
    ) -> None:
        s = self.server
        found = await db.authenticate_site(conn, body.site_access_key, body.secret, secret_key=s.secret_key)
        if found is None:
            self.auth_failures += 1
            log.warning("PLAINAUTH refused for key %s from %s", body.site_access_key, self.transport.peer)
            await asyncio.sleep(s.auth_failure_delay_s)
            await self.send(tag, o.Err(o.UNAUTHORIZED, "SiteAccessKey and/or secret are not valid"))
            if self.auth_failures >= s.auth_failures:
                await self.quit("too many failed authentications")
            return
        station, self.key_name = found
        try:
            replaced = await db.claim_link(
                conn,
                station_id=station,
                link_id=s.link_id,
                connection_id=self.connection_id,
                transport=self.transport.kind,
                peer=self.transport.peer,
                event_id=event_id,
            )
        except psycopg.errors.ForeignKeyViolation:
            await self.send(tag, o.Err(o.UNAUTHORIZED, "the key's station does not exist"))
            return
        self.station_id = station
        # RECONCILE's start, read before the site can send anything on this connection: a sale it sends
        # live before RECONCILE is asked must not move the start past one it wrote while the link was down
        self.reconcile_since = await db.latest_sale_end(conn, station)
        await s.adopt(self, replaced)
        await self.send(tag, o.Ok())
        log.info(
            "station %s connected over %s from %s (key %s)",
            station,
            self.transport.kind,
            self.transport.peer,
            self.key_name,
        )
        self.spawn(self._after_auth())

    async def _after_auth(self) -> None:
        s = self.server
        caps = self.site_capability or set()
        t = s.request_timeout_s
        for method, body in (
            ("PRICES", o.Prices()),
            ("PUMPS", o.Pumps()),
            ("TRANSACTIONS", o.Transactions()),
        ):
            if method in caps and not self.closed:
                await self.request(body, timeout_s=t)
        if "RECONCILE" in caps and "SALE" in o.SERVER_CAPABILITY and not self.closed:
            since = self.reconcile_since
            reply = await self.request(o.Reconcile(since), timeout_s=t)
            log.info(
                "station %s: RECONCILE since %s: %s, %d lines",
                self.station_id,
                since,
                reply.ok,
                len(reply.lines),
            )
        async with s.pool.connection() as conn:
            pending = await db.pending_commands(conn, self.station_id or 0)
        for command_id in pending:
            self.spawn(self.run_command(command_id))
        await self._heartbeats()

    async def _heartbeats(self) -> None:
        s = self.server
        misses = 0
        while not self.closed:
            await asyncio.sleep(s.heartbeat_s)
            if self.closed:
                return
            stamp = _now().isoformat(timespec="seconds").replace("+00:00", "Z")
            reply = await self.request(o.Heartbeat(stamp), timeout_s=s.heartbeat_timeout_s)
            if reply.ok:
                misses = 0
                async with s.pool.connection() as conn:
                    if not await db.touch_link(conn, self.station_id or 0, self.connection_id):
                        await self.quit("replaced by a newer connection")
                        return
                    await db.refresh_status_validity(
                        conn, self.station_id or 0, _now() + timedelta(seconds=s.status_ttl_s)
                    )
            else:
                misses += 1
                log.warning(
                    "station %s: heartbeat %s (%d in a row)",
                    self.station_id,
                    reply.text or reply.code,
                    misses,
                )
                if misses >= s.heartbeat_misses:
                    await self.quit("heartbeat not answered")
                    return

    # --- effects -------------------------------------------------------------------------------------
    async def _lockedpump(self, conn: psycopg.AsyncConnection[Any], tag: str, body: o.LockedPump) -> None:
        if tag == "*":
            raise o.ProtocolError(o.BAD_REQUEST, "LOCKEDPUMP is a request: it needs a tag")
        if body.reason not in o.LOCKEDPUMP_REASONS:
            raise o.ProtocolError(o.BAD_REQUEST, f"invalid reason {body.reason}", tag=tag)
        if not await db.fsc_unlock_known(conn, self.station_id or 0, body.fsc_tx_id):
            raise o.ProtocolError(o.NOT_FOUND, "invalid transaction and/or pump combination", tag=tag)
        await self.send(tag, o.Ok())

    async def _nozzle(
        self, conn: psycopg.AsyncConnection[Any], station: int, pump: int, nozzle: int, product: str
    ) -> None:
        """The nozzle is onboarded with this grade (remembered per connection for NOZZLE_CACHE_S)."""
        now = time.monotonic()
        cached = self._nozzles.get((pump, nozzle))
        if cached is not None and now - cached[1] < NOZZLE_CACHE_S:
            grade: str | None = cached[0]
        else:
            grade = await db.nozzle_grade(conn, station, pump, nozzle)
            if grade is not None:
                self._nozzles[(pump, nozzle)] = (grade, now)
        if grade is None:
            raise o.ProtocolError(
                o.NOT_FOUND, f"pump {pump} nozzle {nozzle} is not onboarded for this station"
            )
        if grade != product:
            raise o.ProtocolError(
                o.BAD_REQUEST, f"pump {pump} nozzle {nozzle} delivers {grade}, not {product}"
            )

    async def _live(self, body: o.Progress | o.Pump | o.FpState, logged: str) -> None:
        """A live report of an authenticated site: checked, then logged and stored with its NOTIFY in one
        statement on the live pool, whose commits do not wait for the WAL flush (`synchronous_commit =
        off`): a database crash may lose the last fraction of a second of live telemetry (the next report,
        or the PUMPS after a reconnect, restores it), never a sale, an answer or any other line."""
        s, station = self.server, self.station_id or 0
        if self._pending is not None:
            self._pending.lines.append(logged)
        ids = {"connection_id": self.connection_id, "link_id": s.link_id, "line": logged}
        stored = False  # the raw line is in the log
        async with s.live_pool.connection() as conn:
            try:
                try:
                    if isinstance(body, o.Progress):
                        progress = await self._checked_progress(conn, station, body)
                        async with conn.transaction():  # the row and the session it moves: one commit
                            _, row_id, refused = await db.log_progress(conn, p=progress, **ids)
                            if row_id is not None:
                                await sessions.on_progress(conn, progress)
                        stored = True
                        if refused:
                            raise o.ProtocolError(o.BAD_REQUEST, refused)
                        return
                    if not await self._pump(conn, station, body.pump):
                        raise o.ProtocolError(
                            o.NOT_FOUND, f"pump {body.pump} is not onboarded for this station"
                        )
                    now = _now()
                    async with conn.transaction():
                        await db.log_status(
                            conn,
                            station_id=station,
                            pump_no=body.pump,
                            status=body.status if isinstance(body, o.Pump) else None,
                            fp_state=int(body.state) if isinstance(body, o.FpState) else None,
                            reported_at=now,
                            valid_until=now + timedelta(seconds=s.status_ttl_s),
                            **ids,
                        )
                        await sessions.on_status(conn, station, body.pump)
                except o.ProtocolError as exc:
                    if not stored:  # refused before the statement that logs it
                        await db.log_line(conn, station_id=station, **ids)
                    log.info("station %s: refused %r: %s", station, logged[:200], exc.message)
                    await self.send("*", o.Err(exc.code, exc.message))
            except psycopg.Error as exc:
                log.warning("station %s: database error on %r: %s", station, logged[:200], exc)
                await self.send("*", o.Err(o.INTERNAL, "the line could not be stored; send it again"))

    async def _checked_progress(
        self, conn: psycopg.AsyncConnection[Any], station: int, body: o.Progress
    ) -> db.ProgressIn:
        _money(body.currency)
        await self._nozzle(conn, station, body.pump, body.nozzle, body.product)
        volume, amount = o.litres_to_ml(body.volume), o.money_to_fen(body.amount)
        if problem := plausibility_problem(volume, amount):
            raise o.ProtocolError(o.BAD_REQUEST, problem)
        return db.ProgressIn(station, body.pump, body.nozzle, body.site_tx_id, body.seq, volume, amount)

    async def _pump(self, conn: psycopg.AsyncConnection[Any], station: int, pump: int) -> bool:
        """The pump is onboarded (remembered per connection for NOZZLE_CACHE_S)."""
        now = time.monotonic()
        seen = self._pumps.get(pump)
        if seen is not None and now - seen < NOZZLE_CACHE_S:
            return True
        if await db.pump_exists(conn, station, pump):
            self._pumps[pump] = now
            return True
        return False

    async def _sale(self, conn: psycopg.AsyncConnection[Any], station: int, body: o.Sale) -> None:
        _money(body.currency)
        await self._nozzle(conn, station, body.pump, body.nozzle, body.product)
        figures = SaleFigures(
            pump_no=body.pump,
            site_tx_id=body.site_tx_id,
            grade=body.product,
            volume_ml=o.litres_to_ml(body.volume),
            amount_fen=o.money_to_fen(body.amount),
            unit_price_fen=o.money_to_fen(body.price_per_unit, name="price"),
            state=body.state,
            nozzle_no=body.nozzle,
            totaliser_start_ml=o.litres_to_ml(body.totaliser_start, name="totaliser"),
            totaliser_end_ml=o.litres_to_ml(body.totaliser_end, name="totaliser"),
            offline=body.offline,
            cleared_by=body.cleared_by,
            ended_at=body.ended_at,
        )
        await self._store_sale(conn, station, figures, create=True)

    async def _transaction(
        self, conn: psycopg.AsyncConnection[Any], station: int, body: o.Transaction
    ) -> None:
        _money(body.currency)
        if body.product not in KNOWN_GRADES:
            raise o.ProtocolError(
                o.BAD_REQUEST, f"product {body.product} is not a grade ({', '.join(KNOWN_GRADES)})"
            )
        if body.price_per_unit is None:
            raise o.ProtocolError(o.BAD_REQUEST, "TRANSACTION needs its PricePerUnit")
        if not await db.pump_exists(conn, station, body.pump):
            raise o.ProtocolError(o.NOT_FOUND, f"pump {body.pump} is not onboarded for this station")
        figures = SaleFigures(
            pump_no=body.pump,
            site_tx_id=body.site_tx_id,
            grade=body.product,
            volume_ml=o.litres_to_ml(body.volume),
            amount_fen=o.money_to_fen(body.price_with_vat),
            unit_price_fen=o.money_to_fen(body.price_per_unit, name="price"),
            state=OPEN,
        )
        # A site that reports SALE lines gives the totalisers there; its TRANSACTION only cross-checks.
        sends_sales = "SALE" in (self.site_capability or set())
        await self._store_sale(conn, station, figures, create=not sends_sales)

    async def _store_sale(
        self, conn: psycopg.AsyncConnection[Any], station: int, f: SaleFigures, *, create: bool
    ) -> None:
        if f.volume_ml == 0:
            raise o.ProtocolError(o.BAD_REQUEST, "a sale dispensed something (zero volume: LOCKEDPUMP)")
        if problem := plausibility_problem(f.volume_ml, f.amount_fen, f.unit_price_fen):
            raise o.ProtocolError(o.BAD_REQUEST, problem)
        if not await db.pump_exists(conn, station, f.pump_no):
            raise o.ProtocolError(o.NOT_FOUND, f"pump {f.pump_no} is not onboarded for this station")
        sale_id, review = await db.upsert_sale(conn, station, f, create=create)
        if review:
            log.warning("station %s sale %s (%s) for review: %s", station, f.site_tx_id, sale_id, review)
        if sale_id is not None:
            # the fuelling session the sale ends (or that holds it), in the same transaction; under a
            # savepoint: a session that cannot take the sale never makes the site's line fail
            try:
                async with conn.transaction():
                    applied = await sessions.on_sale(conn, sale_id)
                if applied is not None and applied.refused:
                    log.info(
                        "station %s sale %s: session %s unchanged: %s",
                        station,
                        f.site_tx_id,
                        applied.session_id,
                        applied.refused,
                    )
            except psycopg.Error as exc:
                log.error("station %s sale %s: its session could not be updated: %s", station, sale_id, exc)

    # --- commands ------------------------------------------------------------------------------------
    async def run_command(self, command_id: int) -> None:
        s = self.server
        tag = self.next_tag()
        async with s.pool.connection() as conn:
            text = await db.claim_command(
                conn, command_id, station_id=self.station_id or 0, link_id=s.link_id, tag=tag
            )
            if text is None:
                return
            cur = await conn.execute(
                "SELECT extract(epoch FROM deadline - now()) FROM forecourt_commands WHERE id = %s",
                (command_id,),
            )
            row = await cur.fetchone()
        remaining = max(0.5, float(row[0]) if row else s.request_timeout_s)
        body = o.parse_line(f"{tag} {text}").body
        reply = await self.request(body, timeout_s=remaining, tag=tag)
        async with s.pool.connection() as conn:
            await db.finish_command(
                conn,
                command_id,
                station_id=self.station_id or 0,
                ok=reply.ok,
                code=reply.code,
                text=reply.text,
                lines=reply.lines,
            )


def _money(currency: str) -> None:
    if currency != "CNY":
        raise o.ProtocolError(o.UNPROCESSABLE, f"currency {currency} unknown here: CNY")


def _mask_secret(text: str) -> str:
    """A PLAINAUTH line without its secret (the raw log keeps the key, never the secret)."""
    parts = text.split(" ")
    if len(parts) >= 4 and parts[1] == "PLAINAUTH":
        return " ".join([*parts[:3], "***", *parts[4:]])
    return text


class LinkServer:
    """The process: listeners, the site sessions it holds, the database pool and the command listener."""

    def __init__(
        self,
        database_url: str,
        *,
        secret_key: str,
        link_id: str | None = None,
        heartbeat_s: float = 15.0,
        heartbeat_timeout_s: float = 20.0,
        heartbeat_misses: int = 2,
        auth_timeout_s: float = 30.0,
        auth_failures: int = 3,
        status_ttl_s: float = 60.0,
        max_lines_per_s: int = 200,
        request_timeout_s: float = 20.0,
        pool_max_size: int = 4,
    ) -> None:
        self.database_url = database_url
        self.secret_key = secret_key
        self.link_id = link_id or f"{socket.gethostname()}:{os.getpid()}"
        self.heartbeat_s = heartbeat_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.heartbeat_misses = heartbeat_misses
        self.auth_timeout_s = auth_timeout_s
        self.auth_failures = auth_failures
        self.auth_failure_delay_s = 0.5
        self.status_ttl_s = status_ttl_s
        self.max_lines_per_s = max_lines_per_s
        self.request_timeout_s = request_timeout_s
        self.pool = AsyncConnectionPool(
            database_url,
            min_size=pool_max_size,
            max_size=pool_max_size,
            kwargs={"autocommit": True},
            open=False,
        )
        # live telemetry: commits that do not wait for the WAL flush (see SiteSession._live)
        self.live_pool = AsyncConnectionPool(
            database_url,
            min_size=pool_max_size,
            max_size=pool_max_size,
            kwargs={"autocommit": True, "options": "-c synchronous_commit=off"},
            open=False,
        )
        self.sessions: dict[int, SiteSession] = {}
        self._all: set[SiteSession] = set()
        self._servers: list[asyncio.Server | WsServer] = []
        self._listener: asyncio.Task[None] | None = None
        self.ports: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> LinkServer:
        kwargs: dict[str, Any] = {
            "secret_key": settings.secret_key,
            "heartbeat_s": settings.link_heartbeat_s,
            "heartbeat_timeout_s": settings.link_heartbeat_timeout_s,
            "heartbeat_misses": settings.link_heartbeat_misses,
            "auth_timeout_s": settings.link_auth_timeout_s,
            "auth_failures": settings.link_auth_failures,
            "status_ttl_s": settings.link_status_ttl_s,
            "max_lines_per_s": settings.link_max_lines_per_s,
        }
        kwargs.update(overrides)
        return cls(settings.service_url, **kwargs)

    async def start(self, host: str, port: int | None, ws_port: int | None) -> None:
        await self.pool.open(wait=True, timeout=10)
        await self.live_pool.open(wait=True, timeout=10)
        self._listener = asyncio.create_task(self._listen())
        if port is not None:
            tcp = await asyncio.start_server(self._on_tcp, host, port, limit=o.MAX_LINE_BYTES + 2)
            self._servers.append(tcp)
            self.ports["tcp"] = tcp.sockets[0].getsockname()[1]
        if ws_port is not None:
            ws = await serve(
                self._on_ws,
                host,
                ws_port,
                max_size=o.MAX_LINE_BYTES + 2,
                process_request=_ws_path,
                compression=None,
                ping_interval=None,  # OpenFSC HEARTBEAT is the liveness check
            )
            self._servers.append(ws)
            self.ports["ws"] = next(iter(ws.sockets)).getsockname()[1]
        log.info("link server %s listening: %s", self.link_id, self.ports)

    async def stop(self) -> None:
        for srv in self._servers:
            srv.close()
        for session in list(self._all):
            await session.quit("link server stopping")
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        await self.pool.close()
        await self.live_pool.close()

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._run(TcpTransport(reader, writer))

    async def _on_ws(self, ws: ServerConnection) -> None:
        await self._run(WsTransport(ws))

    async def _run(self, transport: Transport) -> None:
        session = SiteSession(self, transport)
        self._all.add(session)
        try:
            await session.run()
        except Exception:
            log.exception("connection %s failed", session.connection_id)
        finally:
            self._all.discard(session)

    async def adopt(self, session: SiteSession, replaced: str | None) -> None:
        assert session.station_id is not None
        old = self.sessions.get(session.station_id)
        self.sessions[session.station_id] = session
        if old is not None and old is not session:
            old.station_id = None  # it no longer speaks for the station
            await old.quit("replaced by a newer connection")

    async def forget(self, session: SiteSession) -> None:
        station = session.station_id
        if station is None:
            return
        if self.sessions.get(station) is session:
            del self.sessions[station]
        try:
            async with self.pool.connection() as conn:
                await db.release_link(conn, station, session.connection_id)
        except (psycopg.Error, Exception) as exc:  # the pool may be closing
            log.warning("station %s: could not release the link: %s", station, exc)
        log.info("station %s disconnected (connection %s)", station, session.connection_id)

    async def _listen(self) -> None:
        """LISTEN forecourt_cmd: new commands for stations held here, and takeovers by other servers."""
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {db.CMD_CHANNEL}")
                    backoff = 0.5
                    for session in list(self.sessions.values()):  # commands sent while not listening
                        async with self.pool.connection() as c:
                            for command_id in await db.pending_commands(c, session.station_id or 0):
                                session.spawn(session.run_command(command_id))
                    async for note in conn.notifies():
                        self._on_command(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("command listener: %s; again in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _on_command(self, text: str) -> None:
        try:
            note = json.loads(text)
            station = int(note["station_id"])
        except (ValueError, KeyError, TypeError):
            return
        session = self.sessions.get(station)
        if session is None or session.closed:
            return
        if note.get("kind") == "replaced":
            if note.get("connection_id") != session.connection_id:
                session.station_id = None
                del self.sessions[station]
                session.spawn(session.quit("replaced by a newer connection"))
            return
        if "id" in note:
            session.spawn(session.run_command(int(note["id"])))


def _ws_path(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?", 1)[0] != WS_PATH:
        return Response(
            404,
            "Not Found",
            Headers({"Content-Type": "text/plain"}),
            f"OpenFSC text frames are served at {WS_PATH}\n".encode(),
        )
    return None


async def serve_forever(
    server: LinkServer,
    host: str,
    port: int | None,
    ws_port: int | None,
    *,
    ready: Callable[[dict[str, int]], None] | None = None,
) -> None:
    await server.start(host, port, ws_port)
    if ready is not None:
        ready(server.ports)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
