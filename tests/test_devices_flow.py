"""Receipts and announcements of paid sales end to end, every part a real process (fake WeChat Pay gateway,
link server, simulated site, API, payments worker): an operator sets the station's printer (a local TCP
listener that keeps the bytes) and speaker (a subscriber of the station's MQTT topic); a driver pays; the
worker prints the receipt once, read back to text, and announces the payment; a repeated job prints nothing;
a reprint is marked 重印; a printer that is off is retried until it answers; bad settings are 4xx."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest

from devices import PRINT_RECEIPT, on_sale_paid
from payments import _queue
from store._audit import audit_rows
from store._auth import create_api_key
from tests._escpos import PrinterListener
from tests._payments import wait_for
from tests._sale_pay import PayStack
from tests._servers import TEST_SECRET_KEY, free_port

pytestmark = pytest.mark.slow  # real processes
PREFIX = f"test-voice-{uuid.uuid4().hex[:8]}"


class Speaker:
    """A station speaker: subscribes to a topic (QoS 1) and keeps the announcements."""

    def __init__(self, topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"spk-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert ready.wait(10), "the speaker did not subscribe"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(json.loads(msg.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def stack(module_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PayStack]:
    os.environ["FUEL_DEVICES_VOICE_TOPIC_PREFIX"] = PREFIX  # this run's topics only
    os.environ["FUEL_DEVICES_PRINTER_TIMEOUT_S"] = "2"
    try:
        s = PayStack(module_db, tmp_path_factory.mktemp("wechatpay-keys"))
    finally:
        del os.environ["FUEL_DEVICES_VOICE_TOPIC_PREFIX"], os.environ["FUEL_DEVICES_PRINTER_TIMEOUT_S"]
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def operator(stack: PayStack) -> dict[str, str]:
    with psycopg.connect(stack.db_url) as conn:
        return {"X-API-Key": create_api_key(conn, "ops-devices", "operator", secret_key=TEST_SECRET_KEY)}


def _api(stack: PayStack, method: str, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
    assert stack.api is not None
    return httpx.request(method, f"{stack.api.base}{path}", headers=headers, timeout=30, **kw)


def _paid(stack: PayStack, site: Any, pump: int, litres: str, nozzle: int = 1) -> str:
    sale_id = stack.fuel(site, pump, litres, nozzle=nozzle)
    _, token = stack.user()
    body = stack.pay(sale_id, token, str(uuid.uuid4())).json()
    status, answer = stack.wx_pay(body)
    assert status == 200, answer
    no = str(body["out_trade_no"])
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=30, what="the payment")
    return no


def _deliveries(stack: PayStack, station: int, no: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = _api(stack, "GET", f"/v1/stations/{station}/payments/{no}/deliveries", headers)
    assert r.status_code == 200, r.text
    return list(r.json()["deliveries"])


def test_a_paid_sale_prints_its_receipt_once_and_is_announced(
    stack: PayStack, operator: dict[str, str], tmp_path: Path
) -> None:
    site = stack.site()
    printer = PrinterListener()
    speaker = Speaker(f"{PREFIX}/stations/{site.station}/voice")
    try:
        r = _api(
            stack,
            "PUT",
            f"/v1/stations/{site.station}/devices",
            operator,
            json={"printer_host": "127.0.0.1", "printer_port": printer.port, "speaker_device_id": "spk-7"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["voice_topic"] == f"{PREFIX}/stations/{site.station}/voice"
        no = _paid(stack, site, 1, "20", nozzle=2)  # 95# at 8.18: 163.60 CNY
        wait_for(lambda: printer.jobs, timeout_s=30, what="the receipt")
        wait_for(lambda: speaker.messages, timeout_s=30, what="the announcement")
        (tx_id,) = stack.sql("SELECT transaction_id FROM payments WHERE out_trade_no = %s", no)[0]
        (name,) = stack.sql("SELECT name FROM stations WHERE id = %s", site.station)[0]
        job = printer.decoded()[0]
        assert job.field("油站") == name
        assert job.field("油枪") == "1号油机 / 2号油枪"
        assert job.field("油品") == "95号汽油"
        assert job.field("升数") == "20.00 升"
        assert job.field("单价") == "8.18 元/升"
        assert job.field("金额") == "163.60 元" and job.field("实付") == "163.60 元"
        assert job.field("支付方式") == "微信支付"
        assert job.field("交易单号") == tx_id and job.field("商户单号") == no
        assert job.field("支付时间").startswith("20")
        assert job.qr == [f"https://fuel.example.cn/fapiao?out_trade_no={no}"]
        assert "重印" not in job.text
        msg = speaker.messages[0]
        assert msg["text"] == "微信到账一百六十三点六元，一号油枪"
        assert (msg["out_trade_no"], msg["device_id"], msg["amount_fen"]) == (no, "spk-7", 16_360)
        wav = tmp_path / "announcement.wav"
        wav.write_bytes(base64.b64decode(msg["audio_base64"]))
        stat = subprocess.run(
            ["sox", str(wav), "-n", "stat"], capture_output=True, text=True, timeout=30
        ).stderr
        seconds = float(re.search(r"Length \(seconds\):\s+([0-9.]+)", stat).group(1))  # type: ignore[union-attr]
        rms = float(re.search(r"RMS\s+amplitude:\s+([0-9.]+)", stat).group(1))  # type: ignore[union-attr]
        assert 1.5 < seconds < 10 and rms > 0.02, stat  # speech of the sentence's length, not silence
        done = wait_for(
            lambda: (
                (d := _deliveries(stack, site.station, no, operator))
                and all(x["state"] == "done" for x in d)
                and d
            ),
            what="both deliveries done",
        )
        assert sorted((d["kind"], d["copy_no"]) for d in done) == [("receipt", 0), ("voice", 0)]
        # the same job again (a retried or duplicated job): nothing is printed twice
        receipt_id = next(d["id"] for d in done if d["kind"] == "receipt")
        with psycopg.connect(stack.db_url) as conn, conn.transaction():
            _queue.defer(conn, PRINT_RECEIPT, delivery_id=receipt_id)
        wait_for(
            lambda: all(j["status"] == "succeeded" for j in _jobs(stack)),
            timeout_s=30,
            what="the repeated job",
        )
        assert len(printer.jobs) == 1
        # a reprint: a second copy, marked
        r = _api(stack, "POST", f"/v1/stations/{site.station}/payments/{no}/reprint", operator)
        assert r.status_code == 202, r.text
        assert r.json()["copy_no"] == 1 and r.json()["state"] == "pending"
        wait_for(lambda: len(printer.jobs) == 2, timeout_s=30, what="the reprint")
        again = printer.decoded()[1]
        assert "** 重印 第1次 **" in again.lines and again.field("交易单号") == tx_id
        assert again.field("重印时间")
        reprints = audit_rows_of(stack, "receipt_reprint")
        assert [(a["actor"], a["new_value"]["copy_no"]) for a in reprints] == [("ops-devices", 1)]
        assert len(speaker.messages) == 1  # a reprint is not announced
    finally:
        speaker.close()
        printer.close()


def _jobs(stack: PayStack) -> list[dict[str, Any]]:
    with psycopg.connect(stack.db_url) as conn:
        return _queue.jobs_of(conn, PRINT_RECEIPT)


def audit_rows_of(stack: PayStack, entity: str) -> list[dict[str, Any]]:
    with psycopg.connect(stack.db_url) as conn:
        return audit_rows(conn, entity=entity)


def test_a_printer_that_is_off_gets_the_receipt_when_it_is_back(
    stack: PayStack, operator: dict[str, str]
) -> None:
    site = stack.site()
    port = free_port()  # the printer is off: nothing listens
    r = _api(
        stack,
        "PUT",
        f"/v1/stations/{site.station}/devices",
        operator,
        json={"printer_host": "127.0.0.1", "printer_port": port},
    )
    assert r.status_code == 200, r.text
    no = _paid(stack, site, 2, "10")
    failed = wait_for(
        lambda: [d for d in _deliveries(stack, site.station, no, operator) if d["attempts"] >= 1],
        timeout_s=30,
        what="a failed attempt",
    )
    assert failed[0]["state"] == "pending" and f"127.0.0.1:{port}" in failed[0]["last_error"]
    printer = PrinterListener(port)  # switched on
    try:
        wait_for(lambda: printer.jobs, timeout_s=60, what="the retried receipt")
        assert printer.decoded()[0].field("商户单号") == no
        d = wait_for(
            lambda: [x for x in _deliveries(stack, site.station, no, operator) if x["state"] == "done"],
            what="done",
        )
        assert d[0]["attempts"] >= 2 and d[0]["last_error"] is None
    finally:
        printer.close()


def test_device_settings_and_reprints_refuse_what_is_wrong(stack: PayStack, operator: dict[str, str]) -> None:
    site = stack.site()
    path = f"/v1/stations/{site.station}/devices"
    with psycopg.connect(stack.db_url) as conn:
        manager = {
            "X-API-Key": create_api_key(
                conn, "mgr-dev", "manager", [site.station], secret_key=TEST_SECRET_KEY
            )
        }
        other = {
            "X-API-Key": create_api_key(
                conn, "mgr-other", "manager", [site.station + 1000], secret_key=TEST_SECRET_KEY
            )
        }
    for body, param in [
        ({"printer_host": "0.0.0.0", "printer_port": 9100}, "printer_host"),
        ({"printer_host": "224.1.1.1", "printer_port": 9100}, "printer_host"),
        ({"printer_host": "192.168.1.9", "printer_port": 80}, "printer_port"),
        ({"printer_host": "192.168.1.9"}, "printer_port"),
        ({"speaker_device_id": "a/b#"}, "speaker_device_id"),
    ]:
        r = _api(stack, "PUT", path, operator, json=body)
        assert r.status_code == 422, (body, r.text)
        assert param in r.text, r.text
    r = _api(
        stack, "PUT", path, operator, json={"printer_host": "192.168.1.9", "printer_port": 9100, "extra": 1}
    )
    assert r.status_code == 422
    assert (
        _api(stack, "PUT", path, manager, json={"speaker_device_id": "x"}).status_code == 403
    )  # operators only
    assert _api(stack, "GET", path, other).status_code == 403
    assert _api(stack, "GET", path, {}).status_code == 401
    assert _api(stack, "PUT", "/v1/stations/999999999/devices", operator, json={}).status_code == 404
    r = _api(stack, "GET", path, manager)  # the station's manager reads them
    assert r.status_code == 200 and r.json()["printer_host"] is None
    # nothing written by the refused requests
    assert stack.sql("SELECT count(*) FROM station_devices WHERE station_id = %s", site.station)[0][0] == 0
    # no printer: a reprint is a 409; an unknown payment a 404
    no = _paid(stack, site, 1, "5")
    assert (
        _api(stack, "POST", f"/v1/stations/{site.station}/payments/{no}/reprint", manager).status_code == 409
    )
    r = _api(stack, "PUT", path, operator, json={"printer_host": "Printer.Station.LAN", "printer_port": 9100})
    assert r.status_code == 200 and r.json()["printer_host"] == "printer.station.lan"
    r = _api(stack, "PUT", path, operator, json={"printer_host": "printer.station.lan", "printer_port": 9101})
    changes = audit_rows_of(stack, "station_devices")
    mine = [a for a in changes if a["entity_id"] == str(site.station)]
    assert [(a["action"], a["new_value"]["printer_port"]) for a in mine] == [
        ("create", 9100),
        ("update", 9101),
    ]
    assert mine[1]["old_value"]["printer_port"] == 9100
    assert (
        _api(stack, "POST", f"/v1/stations/{site.station}/payments/nosuchorder1/reprint", manager).status_code
        == 404
    )
    assert _api(stack, "POST", f"/v1/stations/{site.station}/payments/{no}/reprint", other).status_code == 403
    assert (
        _api(stack, "POST", f"/v1/stations/{site.station}/payments/bad%20no/reprint", manager).status_code
        == 422
    )
    r = _api(stack, "POST", f"/v1/stations/{site.station}/payments/{no}/reprint", manager)
    assert r.status_code == 202 and r.json()["requested_by"] == "mgr-dev"


def test_a_device_error_never_blocks_the_payment(stack: PayStack, caplog: pytest.LogCaptureFixture) -> None:
    """The hook runs in the payment's transaction: when queueing the receipt fails (here its table is
    missing), the error is logged and the payment's transaction goes on."""
    site = stack.site()
    no = _paid(stack, site, 1, "3")
    (sale_id,) = stack.sql("SELECT sale_id FROM sale_payments WHERE out_trade_no = %s", no)[0]
    with psycopg.connect(stack.db_url) as conn, conn.transaction(force_rollback=True):
        conn.execute("ALTER TABLE station_devices RENAME TO station_devices_gone")
        on_sale_paid(conn, sale_id)  # no exception
        assert conn.execute("SELECT state FROM payments WHERE out_trade_no = %s", (no,)).fetchone() == (
            "paid",
        )
    assert stack.sql("SELECT count(*) FROM station_devices")[0][0] >= 0  # rolled back: the table is there
    assert any(f"sale {sale_id}: the receipt" in r.getMessage() for r in caplog.records)
