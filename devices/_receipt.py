"""A fill-up's receipt as ESC/POS bytes, built with python-escpos and sent unchanged to the printer.

Chinese text is sent GB18030-encoded after FS & (the Chinese character mode of the printers sold in China:
Xprinter, Gprinter, Epson's Chinese models); python-escpos' own text() picks single-byte code pages,
which hold no Chinese, so the text goes in through its raw write. Layout, bold, sizes, the native QR code
(GS ( k, drawn by the printer) and the cut are python-escpos' commands. Pure: no I/O.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from escpos.printer import Dummy

ENCODING = "gb18030"
CHINESE_MODE = b"\x1c\x26"  # FS &: two-byte (GB) characters on
GRADE_NAMES = {"89": "89号汽油", "92": "92号汽油", "95": "95号汽油", "98": "98号汽油", "0": "0号柴油"}
REPRINT_MARK = "重印"


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a receipt shows. Money in fen, volume in millilitres."""

    station_name: str
    station_address: str | None
    pump_no: int
    nozzle_no: int | None
    grade: str
    volume_ml: int
    unit_price_fen: int
    sale_amount_fen: int
    discount_fen: int
    paid_fen: int
    out_trade_no: str
    transaction_id: str
    paid_at: datetime
    invoice_url: str
    copy_no: int = 0  # 0: the original; 1, 2 ...: reprints
    printed_at: datetime | None = None  # a reprint's own time


def yuan(fen: int) -> str:
    """12345 -> '123.45' (exact: integer arithmetic)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def litres(ml: int) -> str:
    """12345 -> '12.35' (half up at the centilitre, as pumps display)."""
    cl = (ml + 5) // 10
    return f"{cl // 100}.{cl % 100:02d}"


def lines(r: Receipt, tz: ZoneInfo) -> list[tuple[str, str]]:
    """The receipt's labelled lines, in print order (label, value)."""
    nozzle = f"{r.pump_no}号油机 / {r.nozzle_no}号油枪" if r.nozzle_no else f"{r.pump_no}号油机"
    out = [
        ("油站", r.station_name),
        ("油枪", nozzle),
        ("油品", GRADE_NAMES.get(r.grade, r.grade)),
        ("升数", f"{litres(r.volume_ml)} 升"),
        ("单价", f"{yuan(r.unit_price_fen)} 元/升"),
        ("金额", f"{yuan(r.sale_amount_fen)} 元"),
    ]
    if r.discount_fen:
        out.append(("优惠", f"-{yuan(r.discount_fen)} 元"))
    out += [
        ("实付", f"{yuan(r.paid_fen)} 元"),
        ("支付方式", "微信支付"),
        ("交易单号", r.transaction_id),
        ("商户单号", r.out_trade_no),
        ("支付时间", f"{r.paid_at.astimezone(tz):%Y-%m-%d %H:%M:%S}"),
    ]
    if r.copy_no and r.printed_at is not None:
        out.append(("重印时间", f"{r.printed_at.astimezone(tz):%Y-%m-%d %H:%M:%S}"))
    return out


def render(r: Receipt, tz: ZoneInfo) -> bytes:
    """The whole print job: initialise, Chinese mode, header, lines, QR code of the e-invoice request, cut."""
    p = Dummy()

    def text(s: str) -> None:
        p._raw(printable(s).encode(ENCODING))

    p.hw("INIT")
    p._raw(CHINESE_MODE)
    p.set(align="center", bold=True, double_height=True, double_width=True)
    text(f"{r.station_name}\n")
    p.set_with_default(align="center")
    if r.station_address:
        text(f"{r.station_address}\n")
    text("加油小票\n")
    if r.copy_no:
        p.set(align="center", bold=True, double_height=True, double_width=True)
        text(f"** {REPRINT_MARK} 第{r.copy_no}次 **\n")
    p.set_with_default(align="left")
    text("-" * 32 + "\n")
    for label, value in lines(r, tz):
        text(f"{label}: {value}\n")
    text("-" * 32 + "\n")
    p.set_with_default(align="center")
    text("扫码申请电子发票\n")
    p.qr(r.invoice_url, size=6, native=True)
    text("谢谢惠顾，欢迎再次光临\n")
    p.cut()
    return bytes(p.output)


def printable(s: str) -> str:
    """Text as the printer may receive it: control and other non-printing characters (an ESC in a station's
    name would be a command) and line or paragraph separators (U+2028, U+2029) become spaces; line breaks
    are kept. GB18030 encodes every other character, and none of its bytes is a command byte (0x1B, 0x1C,
    0x1D): those stay text."""
    return "".join(c if c == "\n" or not _hidden(unicodedata.category(c)) else " " for c in s)


def _hidden(category: str) -> bool:
    return category[0] == "C" or category in ("Zl", "Zp")


def invoice_url(base: str, out_trade_no: str) -> str:
    """Where the driver asks for the e-invoice of this payment (the QR code's content)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}out_trade_no={out_trade_no}"
