"""A station's devices: the receipt printer (ESC/POS over raw TCP 9100, GB18030 Chinese, python-escpos)
and the payment announcements for its speaker ("微信到账 X 元": cn2an, espeak-ng, MQTT). The jobs run on
the payments queue (devices/_jobs.py); register_device_hooks wires them to paid sales."""

from devices._jobs import ANNOUNCE, PRINT_RECEIPT, on_sale_paid, register_device_hooks, reprint
from devices._printer import PrinterUnreachable, check_printer, send
from devices._receipt import GRADE_NAMES, REPRINT_MARK, Receipt, invoice_url, render
from devices._voice import (
    Announcement,
    SpeakerUnreachable,
    SpeechUnavailable,
    announcement_text,
    publish,
    synthesize,
    topic_for,
)

__all__ = [
    "ANNOUNCE",
    "GRADE_NAMES",
    "PRINT_RECEIPT",
    "REPRINT_MARK",
    "Announcement",
    "PrinterUnreachable",
    "Receipt",
    "SpeakerUnreachable",
    "SpeechUnavailable",
    "announcement_text",
    "check_printer",
    "invoice_url",
    "on_sale_paid",
    "publish",
    "register_device_hooks",
    "render",
    "reprint",
    "send",
    "synthesize",
    "topic_for",
]
