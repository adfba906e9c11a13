"""The station devices' queue jobs, on the payments queue (payments/_queue.py: same procrastinate app, same
worker process, `python -m payments worker`): print the receipt, announce the payment.

A paid controller sale adds its deliveries in the payment's own transaction (the `on_paid` hook, registered
by register_device_hooks next to store._sessions.register_payment_hooks), so the jobs exist if and only if
the payment is recorded. Each job delivers one device_deliveries row and marks it done in the transaction
that holds the row's lock: a retried or repeated job finds it done and sends nothing (a reprint is a new
row). A printer or broker that does not answer fails the attempt (recorded on the row) and the queue tries
again with growing waits. At least once: a worker killed between the printer taking the bytes and the
commit prints that copy again on its retry.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from procrastinate import RetryStrategy

from devices import _printer, _receipt, _voice
from payments import _hooks, _queue
from store import _devices

log = logging.getLogger("devices")

PRINT_RECEIPT = "devices.print_receipt"
ANNOUNCE = "devices.announce_payment"
ACTOR = "payments-worker"
# A printer that is off or out of paper: 2 s, 4 s, 8 s ... about 2.3 hours in all.
_PRINT_RETRY = RetryStrategy(max_attempts=12, exponential_wait=2)
# "微信到账" an hour late only confuses the cashier: about a minute of retries.
_VOICE_RETRY = RetryStrategy(max_attempts=5, exponential_wait=2)


class _Runtime:
    def __init__(self) -> None:
        from config import get_settings, load_region

        self.settings = get_settings()
        self.tz: ZoneInfo = load_region(self.settings.region, self.settings).tz

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.settings.service_url, application_name="lijiang-fuel-devices")


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> _Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = _Runtime()
        return _runtime


def receipt_for(facts: dict[str, Any], invoice_base: str, *, copy_no: int, now: datetime) -> _receipt.Receipt:
    return _receipt.Receipt(
        station_name=facts["station_name"] or f"加油站 {facts['station_id']}",
        station_address=facts["station_address"],
        pump_no=facts["pump_no"],
        nozzle_no=facts["nozzle_no"],
        grade=facts["grade"],
        volume_ml=facts["volume_ml"],
        unit_price_fen=facts["unit_price_fen"],
        sale_amount_fen=facts["sale_amount_fen"],
        discount_fen=facts["discount_fen"],
        paid_fen=facts["paid_fen"],
        out_trade_no=facts["out_trade_no"],
        transaction_id=facts["transaction_id"],
        paid_at=facts["paid_at"],
        invoice_url=_receipt.invoice_url(invoice_base, facts["out_trade_no"]),
        copy_no=copy_no,
        printed_at=now if copy_no else None,
    )


@_queue.app.task(name=PRINT_RECEIPT, queue=_queue.QUEUE, retry=_PRINT_RETRY)
def print_receipt(delivery_id: int) -> str:
    """Print one receipt copy on the station's printer, once."""
    rt = runtime()
    error: Exception | None = None
    with rt.connect() as conn, conn.transaction():
        d = _devices.get_delivery(conn, delivery_id, lock=True)
        if d is None:
            return "busy or unknown"  # another run holds it (and retries itself when it fails)
        if d.state == "done":
            return "already printed"
        devices = _devices.get_devices(conn, d.station_id)
        if devices.printer_host is None or devices.printer_port is None:
            _devices.mark_failed(conn, d.id, target=None, error="the station has no printer configured")
            return "no printer"
        facts = _devices.receipt_facts(conn, d.out_trade_no)
        if facts is None:
            return "not paid"
        job = _receipt.render(
            receipt_for(facts, rt.settings.devices_invoice_url, copy_no=d.copy_no, now=datetime.now(rt.tz)),
            rt.tz,
        )
        target = f"{devices.printer_host}:{devices.printer_port}"
        try:
            _printer.send(
                devices.printer_host,
                devices.printer_port,
                job,
                timeout_s=rt.settings.devices_printer_timeout_s,
            )
        except _printer.PrinterUnreachable as exc:
            error = exc
            _devices.mark_failed(conn, d.id, target=target, error=str(exc))
        else:
            _devices.mark_done(conn, d.id, target=target)
            return "printed"
    assert error is not None  # every other path returned
    log.warning("receipt %s: %s", delivery_id, error)
    raise error


@_queue.app.task(name=ANNOUNCE, queue=_queue.QUEUE, retry=_VOICE_RETRY)
def announce_payment(delivery_id: int) -> str:
    """Speak "微信到账 X 元" on the station's speaker (MQTT), once."""
    rt = runtime()
    s = rt.settings
    error: Exception | None = None
    with rt.connect() as conn, conn.transaction():
        d = _devices.get_delivery(conn, delivery_id, lock=True)
        if d is None:
            return "busy or unknown"
        if d.state == "done":
            return "already announced"
        devices = _devices.get_devices(conn, d.station_id)
        if devices.speaker_device_id is None:
            _devices.mark_failed(conn, d.id, target=None, error="the station has no speaker configured")
            return "no speaker"
        facts = _devices.receipt_facts(conn, d.out_trade_no)
        if facts is None:
            return "not paid"
        a = _voice.Announcement(
            station_id=d.station_id,
            device_id=devices.speaker_device_id,
            out_trade_no=d.out_trade_no,
            amount_fen=facts["paid_fen"],
            pump_no=facts["pump_no"],
            nozzle_no=facts["nozzle_no"],
            text=_voice.announcement_text(facts["paid_fen"], facts["pump_no"]),
            created_at=datetime.now(rt.tz),
        )
        wav = _voice.synthesize(a.text)
        topic = _voice.topic_for(s.devices_voice_topic_prefix, d.station_id)
        try:
            _voice.publish(
                s.devices_mqtt_host,
                s.devices_mqtt_port,
                topic,
                a.payload(wav),
                client_id=f"lijiang-fuel-voice-{uuid.uuid4().hex[:12]}",
                timeout_s=s.devices_mqtt_timeout_s,
                username=s.devices_mqtt_username,
                password=s.devices_mqtt_password,
            )
        except _voice.SpeakerUnreachable as exc:
            error = exc
            _devices.mark_failed(conn, d.id, target=topic, error=str(exc))
        else:
            _devices.mark_done(conn, d.id, target=topic)
            return "announced"
    assert error is not None  # every other path returned
    log.warning("announcement %s: %s", delivery_id, error)
    raise error


def on_sale_paid(conn: psycopg.Connection[Any], sale_id: int) -> None:
    """In the payment's transaction: a receipt when the station has a printer, an announcement when it has
    a speaker, each deferred as a job (idempotent: a second call adds nothing). In a savepoint: whatever
    goes wrong here is logged and leaves the payment's own records alone (a receipt never blocks a
    payment; the operator reprints)."""
    try:
        with conn.transaction():
            _defer_deliveries(conn, sale_id)
    except Exception:
        log.exception("sale %s: the receipt and announcement could not be queued", sale_id)


def _defer_deliveries(conn: psycopg.Connection[Any], sale_id: int) -> None:
    paid = _devices.paid_payment_of_sale(conn, sale_id)
    if paid is None:
        return
    out_trade_no, station_id = paid
    devices = _devices.get_devices(conn, station_id)
    if devices.printer_host is not None:
        rid = _devices.add_delivery(conn, out_trade_no, "receipt", station_id, requested_by=ACTOR)
        if rid is not None:
            _queue.defer(conn, PRINT_RECEIPT, delivery_id=rid)
    if devices.speaker_device_id is not None:
        vid = _devices.add_delivery(conn, out_trade_no, "voice", station_id, requested_by=ACTOR)
        if vid is not None:
            _queue.defer(conn, ANNOUNCE, delivery_id=vid)


def reprint(
    conn: psycopg.Connection[Any], out_trade_no: str, station_id: int, *, actor: str
) -> _devices.Delivery:
    """A new copy of a paid sale's receipt (marked 重印), its job deferred with it; audited."""
    with conn.transaction():
        d = _devices.add_reprint(conn, out_trade_no, station_id, actor=actor)
        _queue.defer(conn, PRINT_RECEIPT, delivery_id=d.id)
    return d


def register_device_hooks() -> None:
    """Paid sales print and announce: every process that runs payment code calls this once at start (the
    API, the payments worker); a second call changes nothing."""
    if on_sale_paid not in _hooks.on_paid:
        _hooks.on_paid.append(on_sale_paid)
