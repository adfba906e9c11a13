"""WeChat Pay API v3 for a mini-program merchant, through the `wechatpayv3` SDK in public-key mode.

The SDK signs every request (Authorization: WECHATPAY2-SHA256-RSA2048) and verifies every answer with the
platform public key; this module adds what it leaves to its caller: a configurable gateway, money as
integer fen, order numbers derived from the sale, typed results and errors, and the checks on
notifications it does not make (the timestamp window; the notification id is deduplicated by the store).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core
from wechatpayv3.utils import load_public_key, rsa_verify

from payments._bill import TradeBill, parse_trade_bill
from payments._errors import (
    BadCiphertext,
    BillIntegrityError,
    ForgedSignature,
    GatewayError,
    PaymentsNotConfigured,
    StaleTimestamp,
    UnknownSerial,
)
from payments._fapiao import FuelInvoice, application_request
from payments._keys import load_dev_keys

log = logging.getLogger("payments")
SHANGHAI = ZoneInfo("Asia/Shanghai")
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"


@dataclass(frozen=True)
class PayConfig:
    base_url: str
    mchid: str
    appid: str
    apiv3_key: str
    merchant_private_pem: str
    merchant_serial_no: str
    public_key_pem: str
    public_key_id: str
    notify_url: str
    timeout_s: float = 10.0
    order_ttl_s: int = 900
    notify_skew_s: int = 300

    @classmethod
    def from_settings(cls, settings: Any) -> PayConfig:
        """From FUEL_WECHATPAY_*; in development, unset keys come from the dev keys folder that the fake
        gateway fills (settings.wechatpay_dev_keys_dir)."""
        s = settings
        values: dict[str, Any] = {
            "mchid": s.wechatpay_mchid,
            "appid": s.wechatpay_appid,
            "apiv3_key": s.wechatpay_apiv3_key,
            "merchant_private_pem": _read(s.wechatpay_merchant_key_file),
            "merchant_serial_no": s.wechatpay_merchant_serial_no,
            "public_key_pem": _read(s.wechatpay_public_key_file),
            "public_key_id": s.wechatpay_public_key_id,
        }
        missing = [k for k, v in values.items() if not v]
        if (
            missing
            and s.env in ("development", "test")
            and (Path(s.wechatpay_dev_keys_dir) / "keys.json").exists()
        ):
            dev = load_dev_keys(Path(s.wechatpay_dev_keys_dir))
            fallback = {
                "mchid": dev.mchid,
                "appid": dev.appid,
                "apiv3_key": dev.apiv3_key,
                "merchant_private_pem": dev.merchant_private_pem,
                "merchant_serial_no": dev.merchant_serial_no,
                "public_key_pem": dev.platform_public_pem,
                "public_key_id": dev.public_key_id,
            }
            values = {k: v or fallback[k] for k, v in values.items()}
            missing = [k for k, v in values.items() if not v]
        if missing:
            raise PaymentsNotConfigured(
                "WeChat Pay is not configured: set "
                + ", ".join(f"FUEL_WECHATPAY_{k.upper().replace('_PEM', '_FILE')}" for k in missing)
            )
        if len(values["apiv3_key"].encode()) != 32:
            raise PaymentsNotConfigured("FUEL_WECHATPAY_APIV3_KEY must be 32 bytes")
        return cls(
            base_url=s.wechatpay_base_url,
            notify_url=s.wechatpay_notify_url,
            timeout_s=s.wechatpay_timeout_s,
            order_ttl_s=s.wechatpay_order_ttl_s,
            notify_skew_s=s.wechatpay_notify_skew_s,
            **values,
        )


def _read(path: Path | None) -> str:
    return Path(path).read_text() if path else ""


class _GatewayCore(Core):
    """The SDK's Core with the gateway's base URL as a constructor argument.

    wechatpayv3 2.0.4 has no parameter for the gateway: Core.__init__ sets the production host
    (https://api.mch.weixin.qq.com) and Core.request and download_bill read it back. This subclass is the
    one place that sets another, right after the SDK's own constructor; everything else (signing,
    verification, transport) is the SDK's. tests/test_payments_gateway.py fails if a new SDK stops
    honouring it, since every test call goes to the local fake gateway."""

    def __init__(self, *, gateway: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate_way = gateway.rstrip("/")


class _WeChatPay(WeChatPay):
    """WeChatPay on a _GatewayCore."""

    def __init__(self, *, gateway: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._core = _GatewayCore(
            gateway=gateway,
            mchid=kwargs["mchid"],
            cert_serial_no=kwargs["cert_serial_no"],
            private_key=kwargs["private_key"],
            apiv3_key=kwargs["apiv3_key"],
            timeout=kwargs["timeout"],
            public_key=kwargs["public_key"],
            public_key_id=kwargs["public_key_id"],
        )


# ---- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JsapiOrder:
    out_trade_no: str
    prepay_id: str
    amount_fen: int
    expires_at: datetime
    description: str


@dataclass(frozen=True)
class OrderStatus:
    out_trade_no: str
    trade_state: str  # SUCCESS, REFUND, NOTPAY, CLOSED, REVOKED, USERPAYING, PAYERROR
    transaction_id: str | None
    amount_fen: int | None  # amount.total
    payer_total_fen: int | None
    openid: str | None
    success_time: datetime | None

    @classmethod
    def from_resource(cls, r: Mapping[str, Any]) -> OrderStatus:
        amount = r.get("amount") or {}
        success = r.get("success_time")
        return cls(
            out_trade_no=str(r.get("out_trade_no", "")),
            trade_state=str(r.get("trade_state", "")),
            transaction_id=r.get("transaction_id") or None,
            amount_fen=_int_or_none(amount.get("total")),
            payer_total_fen=_int_or_none(amount.get("payer_total")),
            openid=(r.get("payer") or {}).get("openid"),
            success_time=datetime.fromisoformat(success) if success else None,
        )


@dataclass(frozen=True)
class RefundStatus:
    out_refund_no: str
    out_trade_no: str
    refund_id: str | None
    status: str  # PROCESSING, SUCCESS, CLOSED, ABNORMAL
    refund_fen: int
    total_fen: int

    @classmethod
    def from_resource(cls, r: Mapping[str, Any]) -> RefundStatus:
        amount = r.get("amount") or {}
        return cls(
            out_refund_no=str(r.get("out_refund_no", "")),
            out_trade_no=str(r.get("out_trade_no", "")),
            refund_id=r.get("refund_id") or None,
            status=str(r.get("status") or r.get("refund_status") or ""),
            refund_fen=int(amount.get("refund", 0)),
            total_fen=int(amount.get("total", 0)),
        )


@dataclass(frozen=True)
class Notification:
    """A verified, decrypted notification. `id` is WeChat's notification id: the same for a redelivery."""

    id: str
    create_time: str
    event_type: str  # TRANSACTION.SUCCESS, REFUND.SUCCESS, REFUND.ABNORMAL, REFUND.CLOSED, ...
    summary: str
    original_type: str  # transaction, refund
    resource: dict[str, Any]
    raw_body: bytes

    @property
    def is_payment(self) -> bool:
        return self.event_type.startswith("TRANSACTION.")

    @property
    def is_refund(self) -> bool:
        return self.event_type.startswith("REFUND.")


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def out_trade_no_for(sale_ref: str, attempt: int = 0) -> str:
    """The merchant order number of a sale's payment attempt: the same sale and attempt always give the
    same number (so a retried request can never create a second order), different ones never collide.
    WeChat allows 6-32 characters of [0-9A-Za-z_-|*]: 'LF', 26 hex digits of SHA-256, 'A', the attempt."""
    if attempt < 0 or attempt > 999:
        raise ValueError("attempt must be between 0 and 999")
    digest = hashlib.sha256(f"sale:{sale_ref}".encode()).hexdigest()[:26].upper()
    return f"LF{digest}A{attempt}"


def order_expiry(now: datetime, ttl_s: int) -> datetime:
    """time_expire of an order created at `now`: whole seconds, in Asia/Shanghai (+08:00)."""
    return (now + timedelta(seconds=ttl_s)).astimezone(SHANGHAI).replace(microsecond=0)


class WeChatPayClient:
    """One merchant's WeChat Pay v3 API. Thread-safe (the SDK keeps no per-call state); blocking."""

    def __init__(self, config: PayConfig) -> None:
        self.config = config
        self._pay = _WeChatPay(
            gateway=config.base_url,
            wechatpay_type=WeChatPayType.MINIPROG,
            mchid=config.mchid,
            private_key=config.merchant_private_pem,
            cert_serial_no=config.merchant_serial_no,
            appid=config.appid,
            apiv3_key=config.apiv3_key,
            notify_url=config.notify_url or None,
            timeout=(config.timeout_s, config.timeout_s),
            public_key=config.public_key_pem,
            public_key_id=config.public_key_id,
        )
        self._platform_key = load_public_key(config.public_key_pem)

    # ---- calls ----------------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., tuple[int, Any]], *args: Any, **kwargs: Any) -> tuple[int, Any]:
        """(status, body) of a 2xx answer (body: JSON as dict, '' when empty, bytes for a file); any other
        answer, an unverifiable one or no answer raises GatewayError."""
        try:
            status, body = fn(*args, **kwargs)
        except requests.RequestException as exc:
            raise GatewayError(0, "NETWORK", f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # the SDK raises bare Exception, e.g. for an answer whose signature fails
            if "verify the signature" in str(exc):
                raise GatewayError(
                    502, "INVALID_RESPONSE_SIGNATURE", "the answer's signature does not verify"
                ) from exc
            raise
        if 200 <= status < 300:
            if isinstance(body, str):
                return status, json.loads(body) if body.strip() else ""
            return status, body
        err: dict[str, Any] = {}
        if isinstance(body, str | bytes):
            try:
                parsed = json.loads(body)
                err = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                err = {}
        raise GatewayError(status, str(err.get("code", "HTTP_ERROR")), str(err.get("message", body))[:300])

    def create_jsapi_order(
        self,
        *,
        out_trade_no: str,
        amount_fen: int,
        openid: str,
        expires_at: datetime,
        station_id: int,
        station_name: str,
        goods: str,
        client_ip: str,
    ) -> JsapiOrder:
        """A JSAPI (mini-program) order; the same arguments before expiry give the same prepay_id, so a
        retry is safe as long as the caller passes the stored out_trade_no and expires_at."""
        if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
            raise ValueError(f"amount_fen must be a positive integer, got {amount_fen!r}")
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be time-zone aware")
        description = f"{station_name}-{goods}"[:127]  # the payee the user sees: the station
        _, body = self._call(
            self._pay.pay,
            description=description,
            out_trade_no=out_trade_no,
            amount={"total": amount_fen, "currency": "CNY"},
            payer={"openid": openid},
            time_expire=expires_at.astimezone(SHANGHAI).isoformat(timespec="seconds"),
            scene_info={
                "payer_client_ip": client_ip,
                "store_info": {"id": str(station_id), "name": station_name[:256]},
            },
            support_fapiao=True,
            pay_type=WeChatPayType.JSAPI,
        )
        prepay_id = body.get("prepay_id") if isinstance(body, dict) else None
        if not prepay_id:
            raise GatewayError(502, "NO_PREPAY_ID", "the order answer has no prepay_id")
        return JsapiOrder(out_trade_no, str(prepay_id), amount_fen, expires_at, description)

    def request_payment_params(self, prepay_id: str, *, now: float | None = None) -> dict[str, str]:
        """The parameters of the mini-program's wx.requestPayment: paySign is SHA256withRSA with the
        merchant key over `appId\\ntimeStamp\\nnonceStr\\nprepay_id=...\\n`."""
        stamp = str(int(time.time() if now is None else now))
        nonce = secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        sign = self._pay.sign([self.config.appid, stamp, nonce, package])
        return {"timeStamp": stamp, "nonceStr": nonce, "package": package, "signType": "RSA", "paySign": sign}

    def query_order(self, out_trade_no: str) -> OrderStatus:
        """The order's state at WeChat Pay (GatewayError 404 ORDER_NOT_EXIST when it never got there)."""
        _, body = self._call(self._pay.query, out_trade_no=out_trade_no)
        return OrderStatus.from_resource(body)

    def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order (idempotent: closing a closed order is fine). A paid one raises
        GatewayError(400, 'ORDERPAID')."""
        self._call(self._pay.close, out_trade_no=out_trade_no)

    def refund(
        self, *, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, reason: str
    ) -> RefundStatus:
        """Refund all or part of a paid order; idempotent per out_refund_no (the same number never refunds
        twice)."""
        if refund_fen <= 0 or refund_fen > total_fen:
            raise ValueError(f"refund_fen must be in 1..{total_fen}, got {refund_fen}")
        _, body = self._call(
            self._pay.refund,
            out_refund_no=out_refund_no,
            amount={"refund": refund_fen, "total": total_fen, "currency": "CNY"},
            out_trade_no=out_trade_no,
            reason=reason[:80],
        )
        return RefundStatus.from_resource(body)

    def query_refund(self, out_refund_no: str) -> RefundStatus:
        _, body = self._call(self._pay.query_refund, out_refund_no=out_refund_no)
        return RefundStatus.from_resource(body)

    def download_trade_bill(self, bill_date: date) -> TradeBill:
        """The day's trade bill (all transactions and refunds), gzip-decompressed, SHA1-checked, parsed."""
        _, info = self._call(
            self._pay.trade_bill, bill_date=bill_date.isoformat(), bill_type="ALL", tar_type="GZIP"
        )
        if not isinstance(info, dict) or not info.get("download_url"):
            raise BillIntegrityError("the trade bill answer has no download_url")
        _, data = self._call(self._pay.download_bill, info["download_url"])
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        try:
            text_bytes = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise BillIntegrityError(f"the bill is not gzip: {exc}") from None
        if str(info.get("hash_type", "")).upper() != "SHA1":
            raise BillIntegrityError(f"unexpected bill hash type {info.get('hash_type')!r}")
        if hashlib.sha1(text_bytes).hexdigest() != str(info.get("hash_value", "")).lower():
            raise BillIntegrityError("the bill does not match its SHA1 hash")
        return parse_trade_bill(text_bytes.decode("utf-8"))

    def apply_invoice(self, inv: FuelInvoice) -> None:
        """Ask WeChat Pay to issue a fuel e-invoice (accepted: issued later, see query_invoice)."""
        buyer, fapiao = application_request(inv)
        self._call(self._pay.fapiao_applications, inv.fapiao_apply_id, dict(buyer), fapiao)

    def query_invoice(self, fapiao_apply_id: str, fapiao_id: str | None = None) -> list[dict[str, Any]]:
        """The invoices of an application with their status (ISSUE_ACCEPTED, ISSUED, REVERSE_ACCEPTED,
        REVERSED, ...)."""
        _, body = self._call(self._pay.fapiao_query, fapiao_apply_id, fapiao_id)
        return list(body.get("fapiao_information") or []) if isinstance(body, dict) else []

    def reverse_invoice(
        self, fapiao_apply_id: str, *, reason: str, fapiao_id: str, fapiao_code: str, fapiao_number: str
    ) -> None:
        """Red-letter reversal (红冲) of an issued invoice, e.g. after the sale was refunded."""
        self._call(
            self._pay.fapiao_reverse,
            fapiao_apply_id,
            reason,
            [{"fapiao_id": fapiao_id, "fapiao_code": fapiao_code, "fapiao_number": fapiao_number}],
        )

    # ---- notifications --------------------------------------------------------------------------------

    def verify_notification(
        self, headers: Mapping[str, str], raw_body: bytes, *, now: float | None = None
    ) -> Notification:
        """Believe a notification only if its signature over `timestamp\\nnonce\\nbody\\n` verifies with the
        platform public key, its timestamp is within ±notify_skew_s of our clock, and its resource
        decrypts with the APIv3 key. Raises ForgedSignature, UnknownSerial, StaleTimestamp, BadCiphertext.
        The caller deduplicates on Notification.id (store._payments.record_notification)."""
        h = {k.lower(): v for k, v in headers.items()}
        needed = ("wechatpay-signature", "wechatpay-timestamp", "wechatpay-nonce", "wechatpay-serial")
        absent = [k for k in needed if not h.get(k)]
        if absent:
            raise ForgedSignature(f"missing header {', '.join(absent)}")
        if h.get("wechatpay-signature-type", SIGNATURE_TYPE) != SIGNATURE_TYPE:
            raise ForgedSignature(f"unsupported signature type {h['wechatpay-signature-type']!r}")
        if h["wechatpay-serial"] != self.config.public_key_id:
            raise UnknownSerial(f"Wechatpay-Serial {h['wechatpay-serial'][:64]!r} is not our platform key")
        try:
            body = raw_body.decode("utf-8")
        except UnicodeDecodeError:
            raise ForgedSignature("the body is not UTF-8") from None
        if not rsa_verify(
            h["wechatpay-timestamp"], h["wechatpay-nonce"], body, h["wechatpay-signature"], self._platform_key
        ):
            raise ForgedSignature("the signature does not verify with the platform public key")
        try:
            stamp = int(h["wechatpay-timestamp"])
        except ValueError:
            raise StaleTimestamp(
                f"Wechatpay-Timestamp {h['wechatpay-timestamp'][:20]!r} is not a number"
            ) from None
        clock = time.time() if now is None else now
        if abs(clock - stamp) > self.config.notify_skew_s:
            raise StaleTimestamp(
                f"Wechatpay-Timestamp is {int(clock - stamp)} s from our clock, the limit is ±{self.config.notify_skew_s} s"
            )
        sdk_headers = {
            "wechatpay-signature": h["wechatpay-signature"],
            "wechatpay-timestamp": h["wechatpay-timestamp"],
            "wechatpay-nonce": h["wechatpay-nonce"],
            "wechatpay-serial": h["wechatpay-serial"],
            "wechatpay-signature-type": SIGNATURE_TYPE,
        }
        try:
            data = self._pay.callback(sdk_headers, raw_body)  # the SDK verifies again, then decrypts
        except Exception as exc:  # unsupported algorithm, malformed JSON
            raise BadCiphertext(f"the resource cannot be decrypted: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("resource"), dict):
            raise BadCiphertext("the resource does not decrypt with the APIv3 key (AEAD_AES_256_GCM)")
        if not data.get("id") or not data.get("event_type"):
            raise BadCiphertext("the notification has no id or event_type")
        original = json.loads(body).get("resource", {}).get("original_type", "")
        return Notification(
            id=str(data.get("id", "")),
            create_time=str(data.get("create_time", "")),
            event_type=str(data.get("event_type", "")),
            summary=str(data.get("summary", "")),
            original_type=str(original),
            resource=data["resource"],
            raw_body=raw_body,
        )
