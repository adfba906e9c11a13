"""Simulated sites: a `Site` model (forecourt/_site.py) behind a real OpenFSC client connection.

Each simulated site connects out to a link server (TCP `HOST:PORT`, or `ws://HOST:PORT/ws/text`),
announces its CAPABILITY (core methods plus the service's extensions), switches to UTF-8, authenticates
with its site key, answers the server's requests (PRICES, PUMPS, PUMPSTATUS, TRANSACTIONS, CLEAR,
UNLOCKPUMP, LOCKPUMP, HEARTBEAT, LOCKTX, UNLOCKTX, RECONCILE) and reports pump states, progress and
sales as they happen. When the link drops it keeps selling (offline sales are written as cleared) and
reconnects; the server's RECONCILE then brings those sales over.

A control interface on loopback HTTP drives the forecourt: lift a nozzle, fuel N litres, preset, hang
up, pay at the cashier, drop the link, go offline and online (see `control_app`, and the `ctl` command).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from forecourt import _openfsc as o
from forecourt._site import (
    BufferedSale,
    Event,
    FpEvent,
    ProgressEvent,
    PumpEvent,
    SaleEvent,
    Site,
    SiteError,
)

log = logging.getLogger("forecourt.simulator")
GRADE_NAMES = {"89": "89号汽油", "92": "92号汽油", "95": "95号汽油", "98": "98号汽油", "0": "0号柴油"}
PAYMENT_METHODS = ("wechat", "pace")


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def sale_lines(s: BufferedSale) -> list[o.Body]:
    """A buffered sale as the site reports it: SALE (with totalisers), plus the core TRANSACTION while
    it is unpaid (open)."""
    volume, amount, price = (
        o.ml_to_litres(s.volume_ml),
        o.fen_to_money(s.amount_fen),
        o.fen_to_money(s.price_fen),
    )
    out: list[o.Body] = [
        o.Sale(
            s.pump,
            s.nozzle,
            s.site_tx_id,
            s.state,
            s.cleared_by,
            s.offline,
            s.grade,
            "LTR",
            volume,
            "CNY",
            amount,
            price,
            o.ml_to_litres(s.totaliser_start_ml),
            o.ml_to_litres(s.totaliser_end_ml),
            s.ended_at,
        )
    ]
    if s.state != "cleared":
        vat = (amount * Decimal(13) / Decimal(113)).quantize(Decimal("0.01"))  # China's VAT on fuel: 13 %
        out.append(
            o.Transaction(
                s.pump,
                s.site_tx_id,
                "open",
                s.grade,
                "CNY",
                amount,
                amount - vat,
                Decimal("13.0"),
                vat,
                "LTR",
                volume,
                price,
            )
        )
    return out


def event_lines(events: list[Event]) -> list[o.Body]:
    out: list[o.Body] = []
    for e in events:
        if isinstance(e, PumpEvent):
            out.append(o.Pump(e.pump, e.status))
        elif isinstance(e, FpEvent):
            out.append(o.FpState(e.pump, str(e.state)))
        elif isinstance(e, ProgressEvent):
            out.append(
                o.Progress(
                    e.pump,
                    e.nozzle,
                    e.site_tx_id,
                    e.grade,
                    e.seq,
                    o.ml_to_litres(e.volume_ml),
                    o.fen_to_money(e.amount_fen),
                    "LTR",
                    "CNY",
                )
            )
        elif isinstance(e, SaleEvent):
            out.extend(sale_lines(e.sale))
    return out


class SimulatedSite:
    """One site: the model, its link connection and its tick loop."""

    def __init__(
        self,
        station_id: int,
        site: Site,
        *,
        link: str,
        key: str,
        secret: str,
        reconnect_s: float = 1.0,
        tick_s: float = 0.1,
        on_progress_sent: Callable[[ProgressEvent, float], None] | None = None,
    ) -> None:
        self.station_id = station_id
        self.site = site
        self.link = link
        self.key = key
        self.secret = secret
        self.reconnect_s = reconnect_s
        self.tick_s = tick_s
        self.on_progress_sent = on_progress_sent
        self.want_online = True
        self.connected = asyncio.Event()
        self.charset = "ASCII"
        self.auth_error: str | None = None
        self.connections = 0
        self._writer: asyncio.StreamWriter | None = None
        self._ws: ClientConnection | None = None
        self._send_lock = asyncio.Lock()
        self._tags = 0
        self._answers: dict[str, asyncio.Future[o.Body]] = {}
        self._drop = asyncio.Event()
        self._wake = asyncio.Event()
        self.lock = asyncio.Lock()  # one operation on the model at a time

    # --- link ----------------------------------------------------------------------------------------
    async def _open(self) -> None:
        if self.link.startswith(("ws://", "wss://")):
            self._ws = await ws_connect(
                self.link, max_size=o.MAX_LINE_BYTES + 2, compression=None, ping_interval=None
            )
            self._writer = None
        else:
            host, _, port = self.link.rpartition(":")
            reader, writer = await asyncio.open_connection(
                host or "127.0.0.1", int(port), limit=o.MAX_LINE_BYTES + 2
            )
            self._reader, self._writer, self._ws = reader, writer, None

    async def _read(self) -> str | None:
        if self._ws is not None:
            try:
                frame = await self._ws.recv()
            except ConnectionClosed:
                return None
            return frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        try:
            raw = await self._reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return raw.decode(o.ENCODINGS[self.charset], "replace").rstrip("\r\n")

    async def send(self, tag: str, body: o.Body) -> float:
        """Send one line; returns the time it was written (perf_counter)."""
        text = o.format_line(tag, body)
        async with self._send_lock:
            if self._ws is not None:
                await self._ws.send(text)
            elif self._writer is not None:
                self._writer.write((text + o.CRLF).encode(o.ENCODINGS[self.charset]))
                await self._writer.drain()
            else:
                raise ConnectionError("not connected")
        return time.perf_counter()

    async def _close(self) -> None:
        self.connected.clear()
        self.site.online = False
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._ws, self._writer = None, None
        for fut in self._answers.values():
            if not fut.done():
                fut.set_exception(ConnectionError("link dropped"))
        self._answers.clear()

    async def _ask(self, body: o.Body, timeout_s: float = 10.0) -> o.Body:
        self._tags += 1
        tag = f"C{self._tags}"
        fut: asyncio.Future[o.Body] = asyncio.get_running_loop().create_future()
        self._answers[tag] = fut
        await self.send(tag, body)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._answers.pop(tag, None)

    async def run(self) -> None:
        """Connect, serve, reconnect after a drop, forever (until cancelled)."""
        ticker = asyncio.create_task(self._ticker())
        try:
            while True:
                if not self.want_online:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                try:
                    await self._session()
                except (OSError, ConnectionError, TimeoutError, ConnectionClosed) as exc:
                    log.info("site %s: link down: %s", self.station_id, exc)
                finally:
                    await self._close()
                if self.auth_error:
                    await asyncio.sleep(max(self.reconnect_s, 5.0))
                else:
                    await asyncio.sleep(self.reconnect_s)
        finally:
            ticker.cancel()
            await self._close()

    async def _session(self) -> None:
        self.charset = "ASCII"
        self._drop.clear()
        await self._open()
        reader = asyncio.create_task(self._reader_loop())
        try:
            await self.send("*", o.Capability(o.SITE_CAPABILITY))
            answer = await self._ask(o.Charset("UTF-8"))
            if isinstance(answer, o.Ok):
                self.charset = "UTF-8"
            answer = await self._ask(o.PlainAuth(self.key, self.secret))
            if not isinstance(answer, o.Ok):
                self.auth_error = answer.message if isinstance(answer, o.Err) else "no answer"
                log.warning("site %s: PLAINAUTH refused: %s", self.station_id, self.auth_error)
                return
            self.auth_error = None
            self.connections += 1
            self.site.online = True
            self.connected.set()
            dropped = asyncio.create_task(self._drop.wait())
            await asyncio.wait({reader, dropped}, return_when=asyncio.FIRST_COMPLETED)
            dropped.cancel()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _reader_loop(self) -> None:
        while True:
            text = await self._read()
            if text is None:
                return
            try:
                line = o.parse_line(text)
            except o.ProtocolError as exc:
                if exc.tag != "*":
                    await self.send(exc.tag, o.Err(exc.code, exc.message))
                continue
            body = line.body
            if line.tag in self._answers and isinstance(body, o.Ok | o.Err):
                fut = self._answers[line.tag]
                if not fut.done():
                    fut.set_result(body)
                continue
            if isinstance(body, o.Quit):
                log.info("site %s: server QUIT: %s", self.station_id, body.message)
                return
            if line.is_notification:
                if isinstance(body, o.Err):
                    log.warning(
                        "site %s: server refused a line: %s %s", self.station_id, body.code, body.message
                    )
                continue  # the server's CAPABILITY
            await self._serve(line.tag, body)

    # --- the server's requests -----------------------------------------------------------------------
    async def _serve(self, tag: str, body: o.Body) -> None:
        async with self.lock:
            try:
                notes = self._answer(body)
            except SiteError as exc:
                await self.send(tag, o.Err(exc.code, exc.message))
                return
        for note in notes:
            await self.send("*" if not isinstance(note, o.Beat) else tag, note)
        await self.send(tag, o.Ok())

    def _answer(self, body: o.Body) -> list[o.Body]:
        site = self.site
        if isinstance(body, o.Heartbeat):
            try:
                o.TIMESTAMP.parse(body.timestamp)
            except ValueError:
                raise SiteError(o.UNPROCESSABLE, "timestamp invalid") from None
            return [o.Beat(_stamp(_now().astimezone()))]
        if isinstance(body, o.Prices):
            return [
                o.Price(g, "LTR", "CNY", o.fen_to_money(p), GRADE_NAMES.get(g, g))
                for g, p in sorted(site.prices().items())
            ]
        if isinstance(body, o.Pumps):
            return [o.Pump(p, site.status(p)) for p in site.points]
        if isinstance(body, o.PumpStatus):
            if body.ttl is not None and not 30 <= body.ttl <= 300:
                raise SiteError(o.OUT_OF_RANGE, "UpdateTTL valid range 30 - 300")
            return [o.Pump(body.pump, site.status(body.pump))]
        if isinstance(body, o.Transactions):
            if body.ttl is not None and not 30 <= body.ttl <= 300:
                raise SiteError(o.OUT_OF_RANGE, "UpdateTTL valid range 30 - 300")
            return [line for s in site.open_sales(body.pump) for line in sale_lines(s)]
        if isinstance(body, o.Reconcile):
            return [sale_lines(s)[0] for s in site.sales_since(body.since)]
        if isinstance(body, o.LockTx):
            return event_lines(site.lock(body.pump, body.site_tx_id, body.fsc_tx_id))
        if isinstance(body, o.UnlockTx):
            return event_lines(site.unlock(body.pump, body.site_tx_id, body.fsc_tx_id))
        if isinstance(body, o.Clear):
            if body.payment_method not in PAYMENT_METHODS:
                raise SiteError(403, f"payment method {body.payment_method} not permitted")
            return event_lines(site.clear(body.pump, body.site_tx_id, body.fsc_tx_id))
        if isinstance(body, o.UnlockPump):
            if body.currency != "CNY":
                raise SiteError(422, f"currency {body.currency} unknown")
            return event_lines(site.unlock_pump(body.pump, o.money_to_fen(body.credit)))
        if isinstance(body, o.LockPump):
            fp = site.point(body.pump)
            if fp.fuelling is not None:
                raise SiteError(402, "pump can't be locked: fuelling")
            if fp.preset_fen is None:
                raise SiteError(423, "already locked")
            fp.preset_fen = None
            return event_lines(site._move(fp, "terminate"))
        raise SiteError(o.UNKNOWN_METHOD, f"{body.METHOD} is not served by this site")

    # --- the forecourt's clock and the control operations ----------------------------------------------
    async def _ticker(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_s)
            now_m = time.monotonic()
            async with self.lock:
                events = self.site.tick(_now(), now_m - last)
            last = now_m
            await self.report(events)

    async def report(self, events: list[Event]) -> None:
        """Send the events' lines while connected (a site that is offline reports nothing: the server
        asks again after the reconnect)."""
        if not self.connected.is_set():
            return
        for event, body in ((e, b) for e in events for b in event_lines([e])):
            try:
                sent = await self.send("*", body)
            except (ConnectionError, ConnectionClosed, OSError):
                return
            if self.on_progress_sent is not None and isinstance(event, ProgressEvent):
                self.on_progress_sent(event, sent)

    async def operate(self, fn: Callable[[], list[Event]]) -> list[Event]:
        async with self.lock:
            events = fn()
        await self.report(events)
        return events

    async def drop_link(self, *, stay_offline: bool = False) -> None:
        """Cut the connection (as a network fault would); reconnect unless `stay_offline`."""
        self.want_online = not stay_offline
        self.site.online = False
        self.connected.clear()
        self._drop.set()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.transport.abort()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.transport.abort()

    def go_online(self) -> None:
        self.want_online = True
        self._wake.set()

    def snapshot(self) -> dict[str, Any]:
        return {
            "station_id": self.station_id,
            "online": self.connected.is_set(),
            "connections": self.connections,
            "auth_error": self.auth_error,
            "pumps": [
                {
                    "pump": fp.number,
                    "fp_state": int(fp.state),
                    "fp_state_name": fp.state.name,
                    "status": self.site.status(fp.number),
                    "lifted": fp.lifted,
                    "fuelling": None
                    if fp.fuelling is None
                    else {k: v for k, v in asdict(fp.fuelling).items() if k != "last_progress"},
                    "nozzles": [asdict(n) for n in fp.nozzles.values()],
                    "buffer": [{**asdict(s), "ended_at": _stamp(s.ended_at)} for s in fp.buffer],
                }
                for fp in self.site.points.values()
            ],
        }
