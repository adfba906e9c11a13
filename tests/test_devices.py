"""The station devices without the payment stack: the receipt as ESC/POS bytes read back to text, sent to
a printer over TCP, the printer address checks; the announcement's words, its audio checked with sox, and
its delivery over MQTT (Mosquitto at 127.0.0.1:1883) to a subscriber of the station's topic."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import (
    REPRINT_MARK,
    Announcement,
    PrinterUnreachable,
    Receipt,
    announcement_text,
    check_printer,
    invoice_url,
    publish,
    render,
    send,
    synthesize,
    topic_for,
)
from devices._receipt import printable
from geo import ImplausibleValue
from tests._escpos import PrinterListener, decode
from tests._servers import free_port

TZ = ZoneInfo("Asia/Shanghai")
PAID_AT = datetime(2026, 11, 26, 12, 30, 5, tzinfo=UTC)  # 20:30:05 in Lijiang


def _receipt(**kw: object) -> Receipt:
    values: dict[str, object] = dict(
        station_name="中国石化丽江古城加油站",
        station_address="古城区香格里大道",
        pump_no=3,
        nozzle_no=2,
        grade="95",
        volume_ml=20_004,
        unit_price_fen=818,
        sale_amount_fen=16_363,
        discount_fen=300,
        paid_fen=16_063,
        out_trade_no="LJ20261126abc123",
        transaction_id="4200002026112612345678",
        paid_at=PAID_AT,
        invoice_url=invoice_url("https://fuel.example.cn/fapiao", "LJ20261126abc123"),
    )
    values.update(kw)
    return Receipt(**values)  # type: ignore[arg-type]


def test_a_receipt_reads_back_to_its_fields() -> None:
    data = render(_receipt(), TZ)
    assert "加油".encode("gb18030") in data and "加油".encode() not in data  # GB18030, not UTF-8
    job = decode(data)
    assert job.lines[0] == "中国石化丽江古城加油站" and "古城区香格里大道" in job.lines
    assert job.field("油站") == "中国石化丽江古城加油站"
    assert job.field("油枪") == "3号油机 / 2号油枪"
    assert job.field("油品") == "95号汽油"
    assert job.field("升数") == "20.00 升"  # 20.004 L rounds to the centilitre
    assert job.field("单价") == "8.18 元/升"
    assert job.field("金额") == "163.63 元"
    assert job.field("优惠") == "-3.00 元"
    assert job.field("实付") == "160.63 元"
    assert job.field("支付方式") == "微信支付"
    assert job.field("交易单号") == "4200002026112612345678"
    assert job.field("商户单号") == "LJ20261126abc123"
    assert job.field("支付时间") == "2026-11-26 20:30:05"  # Asia/Shanghai
    assert job.qr == ["https://fuel.example.cn/fapiao?out_trade_no=LJ20261126abc123"]
    assert job.cut
    assert REPRINT_MARK not in job.text


def test_a_reprint_is_marked_and_dated() -> None:
    job = decode(render(_receipt(copy_no=2, printed_at=datetime(2026, 11, 27, 1, 0, tzinfo=UTC)), TZ))
    assert "** 重印 第2次 **" in job.lines
    assert job.field("重印时间") == "2026-11-27 09:00:00"
    assert job.field("支付时间") == "2026-11-26 20:30:05"  # the payment's own time is kept


def test_diesel_without_nozzle_and_without_discount() -> None:
    job = decode(render(_receipt(grade="0", nozzle_no=None, discount_fen=0, paid_fen=16_363), TZ))
    assert job.field("油品") == "0号柴油" and job.field("油枪") == "3号油机"
    assert not any(line.startswith("优惠") for line in job.lines)


def test_a_job_reaches_a_network_printer_whole() -> None:
    printer = PrinterListener()
    try:
        data = render(_receipt(), TZ)
        send("127.0.0.1", printer.port, data, timeout_s=5)
        import time

        for _ in range(100):
            if printer.jobs:
                break
            time.sleep(0.05)
        assert printer.jobs == [data]
        assert printer.decoded()[0].field("实付") == "160.63 元"
    finally:
        printer.close()


def test_an_unreachable_printer_is_reported() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(PrinterUnreachable, match=f"127.0.0.1:{port}"):
        send("127.0.0.1", port, b"x", timeout_s=2)


@pytest.mark.parametrize(
    ("host", "port", "param"),
    [
        ("0.0.0.0", 9100, "printer_host"),
        ("255.255.255.255", 9100, "printer_host"),
        ("224.0.0.1", 9100, "printer_host"),
        ("printer..local", 9100, "printer_host"),
        ("bad host", 9100, "printer_host"),
        ("10.0.0.300", 9100, "printer_host"),
        ("192.168.1.50", 80, "printer_port"),
        ("192.168.1.50", 70_000, "printer_port"),
    ],
)
def test_implausible_printer_addresses(host: str, port: int, param: str) -> None:
    with pytest.raises(ImplausibleValue) as exc:
        check_printer(host, port)
    assert exc.value.param == param


def test_plausible_printer_addresses() -> None:
    assert check_printer(" 192.168.1.50 ", 9100) == ("192.168.1.50", 9100)
    assert check_printer("Printer-1.station.lan.", 9101) == ("printer-1.station.lan", 9101)
    assert check_printer("fe80::1", 9100) == ("fe80::1", 9100)


def test_announcement_words() -> None:
    assert announcement_text(16_360) == "微信到账一百六十三点六元"
    assert announcement_text(10_000, 3) == "微信到账一百元，三号油枪"
    assert announcement_text(5, 12) == "微信到账零点零五元，十二号油枪"
    assert announcement_text(100_001) == "微信到账一千点零一元"


needs_speech = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed (make speech)",
)


def _sox_stat(path: Path) -> dict[str, float]:
    out = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, timeout=30).stderr
    stats = {}
    for line in out.splitlines():
        m = re.match(r"^(.+?):\s+(-?[0-9.]+)$", line.strip())
        if m:
            stats[m.group(1).strip()] = float(m.group(2))
    return stats


@needs_speech
def test_the_announcement_is_speech_of_a_plausible_length(tmp_path: Path) -> None:
    short = tmp_path / "short.wav"
    long = tmp_path / "long.wav"
    short.write_bytes(synthesize(announcement_text(500)))
    long.write_bytes(synthesize(announcement_text(16_360, 3)))
    s, lo = _sox_stat(short), _sox_stat(long)
    assert 0.8 < s["Length (seconds)"] < 6, s
    assert s["Length (seconds)"] < lo["Length (seconds)"] < 10, lo  # more words, longer
    for stat in (s, lo):
        assert stat["RMS     amplitude"] > 0.02, stat  # not silent
        assert stat["Maximum amplitude"] > 0.2, stat


@needs_speech
def test_the_announcement_reaches_the_station_topic() -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    topic = topic_for(prefix, 42)
    assert topic == f"{prefix}/stations/42/voice"
    got: list[bytes] = []
    subscribed, received = threading.Event(), threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"speaker-{uuid.uuid4().hex[:8]}")
    sub.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        received.set()

    sub.on_message = on_message
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        text = announcement_text(16_360, 3)
        wav = synthesize(text)
        a = Announcement(42, "spk-1", "LJ20261126abc123", 16_360, 3, 2, text, datetime.now(TZ))
        publish("127.0.0.1", 1883, topic, a.payload(wav), client_id=f"t-{uuid.uuid4().hex[:8]}", timeout_s=10)
        assert received.wait(10)
    finally:
        sub.disconnect()
        sub.loop_stop()
    body = json.loads(got[0])
    assert body["text"] == "微信到账一百六十三点六元，三号油枪"
    assert (body["station_id"], body["device_id"], body["amount_fen"], body["pump_no"]) == (
        42,
        "spk-1",
        16_360,
        3,
    )
    assert body["format"] == "wav" and base64.b64decode(body["audio_base64"]) == wav
    assert body["created_at"].endswith("+08:00")


_NAME = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
        st.sampled_from("\x1b\x1c\x1d\u2028\u3000\r加油站𠀀"),
    ),
    min_size=1,
    max_size=24,
).filter(lambda s: s.strip() != "" and "\n" not in s)


@settings(max_examples=40, deadline=None)
@given(
    name=_NAME,
    volume_ml=st.integers(1, 200_000),
    unit_price_fen=st.integers(1, 2_000),
    discount_fen=st.integers(0, 5_000),
    copy_no=st.integers(0, 99),
)
def test_any_receipt_reads_back(
    name: str, volume_ml: int, unit_price_fen: int, discount_fen: int, copy_no: int
) -> None:
    """Whatever a station is called (any script, even control characters, which must not become printer
    commands), the job reads back to the same fields."""
    amount = volume_ml * unit_price_fen // 1000
    r = _receipt(
        station_name=name,
        volume_ml=volume_ml,
        unit_price_fen=unit_price_fen,
        sale_amount_fen=amount,
        discount_fen=discount_fen,
        paid_fen=amount - discount_fen,
        copy_no=copy_no,
        printed_at=PAID_AT,
    )
    job = decode(render(r, TZ))
    shown = printable(name)
    if shown.strip():
        assert job.field("油站") == shown.strip() or job.field("油站") == shown
    assert job.field("金额") == f"{amount // 100}.{amount % 100:02d} 元"
    assert job.field("单价") == f"{unit_price_fen // 100}.{unit_price_fen % 100:02d} 元/升"
    assert (REPRINT_MARK in job.text) == (copy_no > 0)
    assert job.qr == [r.invoice_url] and job.cut
