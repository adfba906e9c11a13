"""A faithful local WeChat Pay v3 gateway for development and tests (WeChat Pay has no sandbox).

Its own process: `python -m payments fake-gateway --port PORT --keys-dir DIR` (an ASGI app under uvicorn).
Like the real gateway it
- verifies every request's Authorization (WECHATPAY2-SHA256-RSA2048 with the merchant's key: method, path
  and query, timestamp, nonce, body) and refuses a bad one with 401 SIGN_ERROR;
- signs every answer with its own platform key (Wechatpay-Serial = the public key id);
- keeps orders in WeChat's states (NOTPAY, SUCCESS, CLOSED, REFUND, PAYERROR) and returns the same
  prepay_id for the same parameters before expiry;
- posts notifications encrypted with AEAD_AES_256_GCM under the APIv3 key, signed, and retried on the real
  schedule (15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h, times the time factor) until the
  merchant answers 200 or 204;
- refunds (idempotent per out_refund_no) with refund notifications, trade bills (gzip CSV as WeChat
  formats it, SHA1 of the uncompressed bill) and fuel e-invoice applications with their status.
Control endpoints under /fake/ (loopback only, unsigned) play the user and inject faults:
- POST /fake/pay: the user's confirmation in wx.requestPayment (checks paySign with the merchant key);
- POST /fake/faults: the next notifications are duplicated, delayed, reordered or dropped;
- POST /fake/slow: the next answers of an API path prefix come late (a worker can be killed mid-call);
- GET /fake/requests, /fake/notifications, /fake/orders/{out_trade_no}: what happened, for tests.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payments._bill import COLUMNS, SUMMARY_COLUMNS
from payments._keys import DevKeys

log = logging.getLogger("payments.fake")
SHANGHAI = ZoneInfo("Asia/Shanghai")
RETRY_SCHEDULE_S = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
AUTH = re.compile(r'(\w+)="([^"]*)"')
FEE_RATE = Decimal("0.006")  # 0.6 %, the usual rate for fuel
MAX_SKEW_S = 300


def _now() -> datetime:
    return datetime.now(SHANGHAI).replace(microsecond=0)


def _yuan(fen: int) -> str:
    return f"{Decimal(fen) / 100:.2f}"


@dataclass
class Order:
    out_trade_no: str
    params: dict[str, Any]  # the creating request's body: the same again gives the same prepay_id
    prepay_id: str
    expires_at: datetime
    created_at: datetime
    state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    refunded_fen: int = 0

    @property
    def total(self) -> int:
        return int(self.params["amount"]["total"])

    def resource(self, mchid: str, appid: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "appid": appid,
            "mchid": mchid,
            "out_trade_no": self.out_trade_no,
            "trade_type": "JSAPI",
            "trade_state": self.state,
            "trade_state_desc": {
                "NOTPAY": "未支付",
                "SUCCESS": "支付成功",
                "CLOSED": "已关闭",
                "REFUND": "转入退款",
                "PAYERROR": "支付失败",
            }[self.state],
            "attach": "",
            "payer": dict(self.params.get("payer") or {}),
            "amount": {"total": self.total, "currency": "CNY"},
        }
        if self.transaction_id:
            out["transaction_id"] = self.transaction_id
            out["bank_type"] = "OTHERS"
        if self.success_time:
            out["success_time"] = self.success_time.isoformat()
            out["amount"].update(payer_total=self.total, payer_currency="CNY")
        return out


@dataclass
class Refund:
    out_refund_no: str
    refund_id: str
    order: Order
    refund_fen: int
    reason: str
    created_at: datetime
    notify_url: str | None
    status: str = "PROCESSING"
    success_time: datetime | None = None

    def resource(self, mchid: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mchid": mchid,
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "transaction_id": self.order.transaction_id,
            "out_trade_no": self.order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": self.created_at.isoformat(),
            "status": self.status,
            "amount": {
                "total": self.order.total,
                "refund": self.refund_fen,
                "payer_total": self.order.total,
                "payer_refund": self.refund_fen,
                "settlement_refund": self.refund_fen,
                "settlement_total": self.order.total,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }
        if self.success_time:
            out["success_time"] = self.success_time.isoformat()
        return out


@dataclass
class Delivery:
    """One notification: its id, body, where it goes, and what happened to each attempt."""

    id: str
    event_type: str
    url: str
    plaintext: dict[str, Any]
    body: bytes = b""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = False
    fault: str | None = None


class FakeGateway:
    def __init__(self, keys: DevKeys, *, time_factor: float = 1.0) -> None:
        self.keys = keys
        self.time_factor = time_factor
        self._merchant_key = serialization.load_pem_public_key(keys.merchant_public_pem.encode())
        private = serialization.load_pem_private_key(keys.platform_private_pem.encode(), password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        self._platform_key = private
        self.orders: dict[str, Order] = {}
        self.by_prepay: dict[str, Order] = {}
        self.refunds: dict[str, Refund] = {}
        self.fapiao: dict[str, dict[str, Any]] = {}  # fapiao_apply_id -> application
        self.bill_files: dict[str, bytes] = {}
        self.requests: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []
        self.faults: deque[dict[str, Any]] = deque()
        self.refund_outcomes: deque[str] = deque()  # how the next refunds end (else SUCCESS)
        self.slow: list[dict[str, Any]] = []
        self._held: list[Delivery] = []  # reordered: sent after the next notification
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._seq = 0

    # ---- signing ---------------------------------------------------------------------------------------

    def sign(self, message: str) -> str:
        sig = self._platform_key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(sig).decode()

    def signed(
        self, status: int, payload: Any = None, *, raw: bytes | None = None, content_type: str | None = None
    ) -> Response:
        if raw is not None:
            body = raw
        elif payload is None:
            body = b""
        else:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        stamp, nonce = str(int(time.time())), secrets.token_hex(16).upper()
        headers = {
            "Request-ID": secrets.token_hex(12),
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Timestamp": stamp,
            "Wechatpay-Serial": self.keys.public_key_id,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        }
        if raw is None:
            headers["Wechatpay-Signature"] = self.sign(f"{stamp}\n{nonce}\n{body.decode()}\n")
        media = content_type or ("application/json; charset=utf-8" if body else None)
        return Response(body, status_code=status, headers=headers, media_type=media)

    def error(self, status: int, code: str, message: str) -> Response:
        return JSONResponse({"code": code, "message": message}, status_code=status)

    def check_auth(self, request: Request, body: bytes) -> str | None:
        """None when the Authorization header is the merchant's valid signature, else why not."""
        header = request.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme != "WECHATPAY2-SHA256-RSA2048":
            return "Authorization must be WECHATPAY2-SHA256-RSA2048"
        fields = dict(AUTH.findall(rest))
        for name in ("mchid", "nonce_str", "signature", "timestamp", "serial_no"):
            if not fields.get(name):
                return f"Authorization lacks {name}"
        if fields["mchid"] != self.keys.mchid:
            return f"unknown mchid {fields['mchid']}"
        if fields["serial_no"] != self.keys.merchant_serial_no:
            return "serial_no is not the merchant certificate's"
        try:
            if abs(time.time() - int(fields["timestamp"])) > MAX_SKEW_S:
                return "timestamp is more than 5 minutes off"
        except ValueError:
            return "timestamp is not a number"
        path = request.scope.get("raw_path", request.url.path.encode()).decode()
        query = request.scope.get("query_string", b"").decode()
        target = f"{path}?{query}" if query else path
        message = (
            f"{request.method}\n{target}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body.decode()}\n"
        )
        try:
            assert isinstance(self._merchant_key, rsa.RSAPublicKey)
            self._merchant_key.verify(
                base64.b64decode(fields["signature"]), message.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return "signature does not verify with the merchant's key"
        return None

    # ---- notifications ---------------------------------------------------------------------------------

    def encrypt_resource(self, plaintext: dict[str, Any], original_type: str) -> dict[str, Any]:
        nonce = secrets.token_hex(6)  # 12 characters
        associated = original_type
        data = json.dumps(plaintext, ensure_ascii=False, separators=(",", ":")).encode()
        cipher = AESGCM(self.keys.apiv3_key.encode()).encrypt(nonce.encode(), data, associated.encode())
        return {
            "original_type": original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(cipher).decode(),
            "associated_data": associated,
            "nonce": nonce,
        }

    def notify(
        self, url: str | None, event_type: str, summary: str, original_type: str, plaintext: dict[str, Any]
    ) -> None:
        if not url:
            return
        self._seq += 1
        nid = f"{secrets.token_hex(4)}-{self._seq:06d}-{secrets.token_hex(6)}"
        envelope = {
            "id": nid,
            "create_time": _now().isoformat(),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": self.encrypt_resource(plaintext, original_type),
        }
        d = Delivery(
            id=nid,
            event_type=event_type,
            url=url,
            plaintext=plaintext,
            body=json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode(),
        )
        fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            d.fault = fault["fault"]
            if fault.get("count", 1) > 1:
                self.faults.appendleft({**fault, "count": fault["count"] - 1})
        self.deliveries.append(d)
        if d.fault == "reorder":
            self._held.append(d)  # goes after the next notification
            return
        self._spawn(
            self._deliver(
                d, delay_s=float(fault.get("delay_s", 5.0)) if d.fault == "delay" and fault else 0.0
            )
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, d: Delivery) -> int:
        stamp, nonce = str(int(time.time())), secrets.token_hex(16)
        headers = {
            "Content-Type": "application/json",
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Timestamp": stamp,
            "Wechatpay-Serial": self.keys.public_key_id,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
            "Wechatpay-Signature": self.sign(f"{stamp}\n{nonce}\n{d.body.decode()}\n"),
        }
        assert self._client is not None
        try:
            resp = await self._client.post(d.url, content=d.body, headers=headers, timeout=5.0)
            status = resp.status_code
        except httpx.HTTPError as exc:
            status = 0
            log.info("notification %s to %s: %s", d.id, d.url, type(exc).__name__)
        d.attempts.append({"at": time.time(), "status": status})
        return status

    async def _deliver(self, d: Delivery, *, delay_s: float = 0.0) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        if d.fault == "drop":
            d.attempts.append({"at": time.time(), "status": None, "dropped": True})
            self._release_held()
            return
        for i in range(len(RETRY_SCHEDULE_S) + 1):
            if i:
                await asyncio.sleep(RETRY_SCHEDULE_S[i - 1] * self.time_factor)
            status = await self._post(d)
            if i == 0:
                self._release_held()
            if status in (200, 204):
                d.delivered = True
                if d.fault == "duplicate":
                    await self._post(d)  # the same notification again: WeChat does this
                return

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for h in held:
            self._spawn(self._deliver(h))

    # ---- HTTP ------------------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        entry: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "query": request.url.query,
            "at": time.time(),
        }
        self.requests.append(entry)
        why = self.check_auth(request, body)
        entry["verified"] = why is None
        if why is not None:
            return self.error(401, "SIGN_ERROR", why)
        for slow in self.slow:
            if path.startswith(slow["prefix"]) and slow["count"] > 0:
                slow["count"] -= 1
                await asyncio.sleep(slow["delay_s"])
                break
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return self.error(400, "PARAM_ERROR", "the body is not JSON")
        m = request.method
        if m == "POST" and path == "/v3/pay/transactions/jsapi":
            return self.create_order(data)
        if m == "GET" and (mt := re.fullmatch(r"/v3/pay/transactions/out-trade-no/([^/]+)", path)):
            return self.query_order(mt.group(1), request.query_params.get("mchid"))
        if m == "POST" and (mt := re.fullmatch(r"/v3/pay/transactions/out-trade-no/([^/]+)/close", path)):
            return self.close_order(mt.group(1), data)
        if m == "POST" and path == "/v3/refund/domestic/refunds":
            return self.create_refund(data)
        if m == "GET" and (mt := re.fullmatch(r"/v3/refund/domestic/refunds/([^/]+)", path)):
            r = self.refunds.get(mt.group(1))
            return (
                self.signed(200, r.resource(self.keys.mchid))
                if r
                else self.error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            )
        if m == "GET" and path == "/v3/bill/tradebill":
            return self.trade_bill(request)
        if m == "GET" and path == "/v3/billdownload/file":
            data_file = self.bill_files.get(request.query_params.get("token", ""))
            if data_file is None:
                return self.error(404, "NO_STATEMENT_EXIST", "账单文件不存在")
            return self.signed(200, raw=data_file, content_type="application/octet-stream")
        if path.startswith("/v3/new-tax-control-fapiao/fapiao-applications"):
            return self.fapiao_api(request, data)
        return self.error(404, "NOT_FOUND", f"no such API: {m} {path}")

    # ---- orders ----------------------------------------------------------------------------------------

    def create_order(self, data: dict[str, Any]) -> Response:
        for name in ("appid", "mchid", "description", "out_trade_no", "notify_url", "amount", "payer"):
            if not data.get(name):
                return self.error(400, "PARAM_ERROR", f"缺少参数 {name}")
        if data["appid"] != self.keys.appid or data["mchid"] != self.keys.mchid:
            return self.error(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        total = data["amount"].get("total")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            return self.error(400, "PARAM_ERROR", "amount.total 必须为正整数(分)")
        if not re.fullmatch(r"[0-9A-Za-z_\-|*]{6,32}", str(data["out_trade_no"])):
            return self.error(400, "PARAM_ERROR", "out_trade_no 格式错误")
        if len(data["description"]) > 127:
            return self.error(400, "PARAM_ERROR", "description 过长")
        now = _now()
        expire_text = data.get("time_expire")
        try:
            expires = datetime.fromisoformat(expire_text) if expire_text else now + timedelta(hours=2)
        except ValueError:
            return self.error(400, "PARAM_ERROR", "time_expire 格式错误")
        if expires.tzinfo is None:
            return self.error(400, "PARAM_ERROR", "time_expire 缺少时区")
        existing = self.orders.get(data["out_trade_no"])
        if existing is not None:
            if existing.state == "SUCCESS" or existing.state == "REFUND":
                return self.error(400, "ORDERPAID", "该订单已支付")
            if existing.state == "CLOSED":
                return self.error(400, "ORDER_CLOSED", "订单已关闭")
            if existing.params != data:
                return self.error(400, "INVALID_REQUEST", "201 商户订单号重复")
            if existing.expires_at > now:
                return self.signed(200, {"prepay_id": existing.prepay_id})
        prepay_id = "wx" + now.strftime("%d%H%M%S") + secrets.token_hex(13)
        order = Order(data["out_trade_no"], data, prepay_id, expires, now)
        self.orders[order.out_trade_no] = order
        self.by_prepay[prepay_id] = order
        return self.signed(200, {"prepay_id": prepay_id})

    def query_order(self, out_trade_no: str, mchid: str | None) -> Response:
        if mchid != self.keys.mchid:
            return self.error(400, "PARAM_ERROR", "mchid 不匹配")
        order = self.orders.get(out_trade_no)
        if order is None:
            return self.error(404, "ORDER_NOT_EXIST", "订单不存在")
        return self.signed(200, order.resource(self.keys.mchid, self.keys.appid))

    def close_order(self, out_trade_no: str, data: dict[str, Any]) -> Response:
        if data.get("mchid") != self.keys.mchid:
            return self.error(400, "PARAM_ERROR", "mchid 不匹配")
        order = self.orders.get(out_trade_no)
        if order is None:
            return self.error(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.state in ("SUCCESS", "REFUND"):
            return self.error(400, "ORDERPAID", "订单已支付")
        order.state = "CLOSED"
        return self.signed(204)

    def pay(self, data: dict[str, Any]) -> Response:
        """The user confirms wx.requestPayment: check what the mini-program was given, then pay."""
        package = str(data.get("package", ""))
        order = self.by_prepay.get(package.removeprefix("prepay_id="))
        if order is None:
            return JSONResponse({"errMsg": "requestPayment:fail prepay_id unknown"}, status_code=400)
        message = f"{self.keys.appid}\n{data.get('timeStamp')}\n{data.get('nonceStr')}\n{package}\n"
        try:
            assert isinstance(self._merchant_key, rsa.RSAPublicKey)
            if data.get("signType") != "RSA":
                raise ValueError("signType")
            self._merchant_key.verify(
                base64.b64decode(str(data.get("paySign", ""))),
                message.encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (InvalidSignature, ValueError):
            return JSONResponse({"errMsg": "requestPayment:fail paySign 错误"}, status_code=400)
        openid = data.get("openid") or order.params["payer"]["openid"]
        if openid != order.params["payer"]["openid"]:
            return JSONResponse({"errMsg": "requestPayment:fail 用户不匹配"}, status_code=400)
        if order.state != "NOTPAY":
            return JSONResponse({"errMsg": f"requestPayment:fail 订单状态 {order.state}"}, status_code=400)
        if order.expires_at <= _now():
            return JSONResponse({"errMsg": "requestPayment:fail 订单已过期"}, status_code=400)
        if data.get("result", "SUCCESS") == "PAYERROR":
            order.state = "PAYERROR"
            return JSONResponse({"errMsg": "requestPayment:fail 支付失败"}, status_code=200)
        self._succeed(order)
        return JSONResponse({"errMsg": "requestPayment:ok"})

    def _succeed(self, order: Order) -> None:
        order.state = "SUCCESS"
        order.success_time = _now()
        order.transaction_id = (
            "42000" + order.success_time.strftime("%Y%m%d") + f"{secrets.randbelow(10**15):015d}"
        )
        self.notify(
            order.params["notify_url"],
            "TRANSACTION.SUCCESS",
            "支付成功",
            "transaction",
            order.resource(self.keys.mchid, self.keys.appid),
        )

    def late_pay(self, data: dict[str, Any]) -> Response:
        """The payment WeChat Pay took at the last moment while we closed the order: it is paid (and
        notified) although our close went through or its time ran out."""
        order = self.orders.get(str(data.get("out_trade_no", "")))
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        if order.state in ("SUCCESS", "REFUND"):
            return JSONResponse({"error": f"the order is {order.state}"}, status_code=400)
        self._succeed(order)
        return JSONResponse({"errMsg": "requestPayment:ok", "late": True})

    # ---- refunds ---------------------------------------------------------------------------------------

    def create_refund(self, data: dict[str, Any]) -> Response:
        no = data.get("out_refund_no")
        amount = data.get("amount") or {}
        if not no or not isinstance(amount.get("refund"), int) or not isinstance(amount.get("total"), int):
            return self.error(400, "PARAM_ERROR", "缺少 out_refund_no 或 amount")
        order = self.orders.get(str(data.get("out_trade_no", "")))
        if order is None and data.get("transaction_id"):
            order = next(
                (o for o in self.orders.values() if o.transaction_id == data["transaction_id"]), None
            )
        if order is None:
            return self.error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        existing = self.refunds.get(no)
        if existing is not None:  # idempotent per out_refund_no
            if existing.order is not order or existing.refund_fen != amount["refund"]:
                return self.error(400, "INVALID_REQUEST", "退款单号已存在且参数不一致")
            return self.signed(200, existing.resource(self.keys.mchid))
        if order.state not in ("SUCCESS", "REFUND"):
            return self.error(400, "INVALID_REQUEST", "订单未支付")
        if amount["total"] != order.total:
            return self.error(400, "INVALID_REQUEST", "订单金额不一致")
        if amount["refund"] <= 0 or order.refunded_fen + amount["refund"] > order.total:
            return self.error(400, "NOT_ENOUGH", "退款金额超过可退金额")
        refund = Refund(
            out_refund_no=no,
            refund_id="50" + f"{secrets.randbelow(10**26):026d}",
            order=order,
            refund_fen=amount["refund"],
            reason=str(data.get("reason", "")),
            created_at=_now(),
            notify_url=data.get("notify_url") or order.params.get("notify_url"),
        )
        order.refunded_fen += refund.refund_fen
        order.state = "REFUND"
        self.refunds[no] = refund
        self._spawn(self._finish_refund(refund))
        return self.signed(200, refund.resource(self.keys.mchid))

    async def _finish_refund(self, refund: Refund) -> None:
        await asyncio.sleep(2.0 * self.time_factor)
        outcome = self.refund_outcomes.popleft() if self.refund_outcomes else "SUCCESS"
        refund.status = outcome
        refund.success_time = _now() if outcome == "SUCCESS" else None
        r = refund.resource(self.keys.mchid)
        plain = {
            "mchid": r["mchid"],
            "out_trade_no": r["out_trade_no"],
            "transaction_id": r["transaction_id"],
            "out_refund_no": r["out_refund_no"],
            "refund_id": r["refund_id"],
            "refund_status": outcome,
            "success_time": r.get("success_time"),
            "user_received_account": r["user_received_account"],
            "amount": {k: r["amount"][k] for k in ("total", "refund", "payer_total", "payer_refund")},
        }
        if outcome == "SUCCESS":
            self.notify(refund.notify_url, "REFUND.SUCCESS", "退款成功", "refund", plain)
        else:
            del plain["success_time"]
            self.notify(refund.notify_url, f"REFUND.{outcome}", "退款异常", "refund", plain)

    # ---- bills -----------------------------------------------------------------------------------------

    def _bill_row(self, when: datetime, o: Order, **values: str) -> list[str]:
        """One bill row, by column name (COLUMNS); unnamed amounts are 0.00, the rest empty."""
        row = {
            "交易时间": when.strftime("%Y-%m-%d %H:%M:%S"),
            "公众账号ID": self.keys.appid,
            "商户号": self.keys.mchid,
            "特约商户号": "0",
            "微信订单号": o.transaction_id or "",
            "商户订单号": o.out_trade_no,
            "用户标识": o.params["payer"]["openid"],
            "交易类型": "JSAPI",
            "付款银行": "OTHERS",
            "货币种类": "CNY",
            "微信退款单号": "0",
            "商户退款单号": "0",
            "商品名称": o.params["description"],
            "费率": "0.60%",
            **values,
        }
        amounts = ("应结订单金额", "代金券金额", "退款金额", "充值券退款金额", "订单金额", "申请退款金额")
        return [row.get(c, "0.00" if c in amounts else "") for c in COLUMNS]

    def bill_csv(self, day: date) -> str:
        """The day's ALL trade bill as WeChat formats it: payments and refunds by time, then the summary."""
        rows: list[tuple[datetime, list[str]]] = []
        settle = refund_total = order_total = requested = 0
        fees = Decimal(0)
        for o in self.orders.values():
            if o.success_time is None or o.success_time.date() != day:
                continue
            fee = (Decimal(o.total) / 100 * FEE_RATE).quantize(Decimal("0.00001"), ROUND_HALF_UP)
            fees += fee
            settle += o.total
            order_total += o.total
            values = {
                "交易状态": "SUCCESS",
                "应结订单金额": _yuan(o.total),
                "订单金额": _yuan(o.total),
                "手续费": f"{fee:.5f}",
            }
            rows.append((o.success_time, self._bill_row(o.success_time, o, **values)))
        for r in self.refunds.values():
            if r.status != "SUCCESS" or r.success_time is None or r.success_time.date() != day:
                continue
            fee = -(Decimal(r.refund_fen) / 100 * FEE_RATE).quantize(Decimal("0.00001"), ROUND_HALF_UP)
            fees += fee
            refund_total += r.refund_fen
            requested += r.refund_fen
            values = {
                "交易状态": "REFUND",
                "微信退款单号": r.refund_id,
                "商户退款单号": r.out_refund_no,
                "退款金额": _yuan(r.refund_fen),
                "退款类型": "ORIGINAL",
                "退款状态": "SUCCESS",
                "手续费": f"{fee:.5f}",
                "申请退款金额": _yuan(r.refund_fen),
            }
            rows.append((r.success_time, self._bill_row(r.success_time, r.order, **values)))
        rows.sort(key=lambda x: x[0])
        summary = (
            str(len(rows)),
            _yuan(settle),
            _yuan(refund_total),
            "0.00",
            f"{fees:.5f}",
            _yuan(order_total),
            _yuan(requested),
        )
        lines = [",".join(COLUMNS), *(",".join("`" + f for f in fields) for _, fields in rows)]
        lines += [",".join(SUMMARY_COLUMNS), ",".join("`" + v for v in summary)]
        return "\r\n".join(lines) + "\r\n"

    def trade_bill(self, request: Request) -> Response:
        q = request.query_params
        try:
            day = date.fromisoformat(q.get("bill_date", ""))
        except ValueError:
            return self.error(400, "PARAM_ERROR", "bill_date 格式错误")
        if day >= _now().date() + timedelta(days=1):
            return self.error(400, "NO_STATEMENT_EXIST", "账单日期不能晚于今天")
        text = self.bill_csv(day).encode("utf-8")
        token = secrets.token_urlsafe(16)
        self.bill_files[token] = gzip.compress(text) if q.get("tar_type") == "GZIP" else text
        base = f"{request.url.scheme}://{request.url.netloc}"
        return self.signed(
            200,
            {
                "hash_type": "SHA1",
                "hash_value": hashlib.sha1(text).hexdigest(),
                "download_url": f"{base}/v3/billdownload/file?token={token}",
            },
        )

    # ---- e-invoices ------------------------------------------------------------------------------------

    def _decrypt_field(self, value: str) -> str:
        plain = self._platform_key.decrypt(
            base64.b64decode(value),
            padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
        )
        return plain.decode()

    def fapiao_api(self, request: Request, data: dict[str, Any]) -> Response:
        path = request.url.path.removeprefix("/v3/new-tax-control-fapiao/fapiao-applications").strip("/")
        if request.method == "POST" and not path:
            return self.fapiao_apply(request, data)
        parts = path.split("/")
        app = self.fapiao.get(parts[0])
        if app is None:
            return self.error(404, "RESOURCE_NOT_EXISTS", "发票申请单不存在")
        if request.method == "GET" and len(parts) == 1:
            wanted = request.query_params.get("fapiao_id")
            items = [f for f in app["fapiao"] if wanted in (None, f["fapiao_id"])]
            return self.signed(200, {"total_count": len(items), "fapiao_information": items})
        if request.method == "POST" and parts[1:] == ["reverse"]:
            return self.fapiao_reverse(app, data)
        return self.error(404, "NOT_FOUND", "no such API")

    def fapiao_apply(self, request: Request, data: dict[str, Any]) -> Response:
        apply_id = str(data.get("fapiao_apply_id", ""))
        buyer = data.get("buyer_information") or {}
        infos = data.get("fapiao_information") or []
        if not apply_id or not isinstance(infos, list) or not infos:
            return self.error(400, "PARAM_ERROR", "缺少 fapiao_apply_id 或 fapiao_information")
        if buyer.get("type") not in ("INDIVIDUAL", "ORGANIZATION") or not buyer.get("name"):
            return self.error(400, "PARAM_ERROR", "购买方信息不完整")
        if buyer["type"] == "ORGANIZATION" and not buyer.get("taxpayer_id"):
            return self.error(400, "PARAM_ERROR", "单位购买方须填写纳税人识别号")
        for secret_field in ("phone", "email"):
            if buyer.get(secret_field):
                if request.headers.get("wechatpay-serial") != self.keys.public_key_id:
                    return self.error(
                        400, "PARAM_ERROR", "加密字段须使用微信支付公钥加密并传 Wechatpay-Serial"
                    )
                try:
                    self._decrypt_field(buyer[secret_field])
                except ValueError:
                    return self.error(400, "PARAM_ERROR", f"{secret_field} 解密失败")
        for info in infos:
            items = info.get("items") or []
            if not items or sum(int(i.get("total_amount", 0)) for i in items) != info.get("total_amount"):
                return self.error(400, "PARAM_ERROR", "发票金额与明细合计不一致")
            for item in items:
                if not re.fullmatch(r"\d{19}", str(item.get("tax_code", ""))):
                    return self.error(400, "PARAM_ERROR", "tax_code 须为19位税收分类编码")
                if item.get("goods_category") == "成品油" and (
                    not item.get("quantity") or item.get("unit") not in ("升", "吨")
                ):
                    return self.error(400, "PARAM_ERROR", "成品油发票须填写数量，单位为升或吨")
        # encrypted fields differ on every call (RSA-OAEP is randomised): compare the rest
        comparable = {
            **data,
            "buyer_information": {k: v for k, v in buyer.items() if k not in ("phone", "email")},
        }
        existing = self.fapiao.get(apply_id)
        if existing is not None:
            if existing["request"] != comparable:
                return self.error(400, "INVALID_REQUEST", "发票申请单号已存在")
            return self.signed(202)
        app = {
            "request": comparable,
            "fapiao": [
                {
                    "fapiao_id": info["fapiao_id"],
                    "status": "ISSUE_ACCEPTED",
                    "total_amount": info["total_amount"],
                    "items": info["items"],
                    "remark": info.get("remark", ""),
                    "buyer_information": {k: v for k, v in buyer.items() if k not in ("phone", "email")},
                }
                for info in infos
            ],
        }
        self.fapiao[apply_id] = app
        self._spawn(self._fapiao_progress(app, "ISSUE_ACCEPTED", "ISSUED"))
        return self.signed(202)

    def fapiao_reverse(self, app: dict[str, Any], data: dict[str, Any]) -> Response:
        if not data.get("reverse_reason"):
            return self.error(400, "PARAM_ERROR", "缺少冲红原因")
        targets = data.get("fapiao_information") or []
        if isinstance(targets, dict):
            targets = [targets]
        for t in targets:
            f = next((x for x in app["fapiao"] if x["fapiao_id"] == t.get("fapiao_id")), None)
            if f is None or f["status"] not in ("ISSUED", "REVERSE_ACCEPTED", "REVERSED"):
                return self.error(400, "INVALID_REQUEST", "发票未开具，不能冲红")
            blue = f.get("blue_fapiao") or {}
            if (t.get("fapiao_code"), t.get("fapiao_number")) != (
                blue.get("fapiao_code"),
                blue.get("fapiao_number"),
            ):
                return self.error(400, "INVALID_REQUEST", "发票代码或号码不符")
            if f["status"] == "ISSUED":
                f["status"] = "REVERSE_ACCEPTED"
                f["reverse_reason"] = data["reverse_reason"]
        self._spawn(self._fapiao_progress(app, "REVERSE_ACCEPTED", "REVERSED"))
        return self.signed(202)

    async def _fapiao_progress(self, app: dict[str, Any], source: str, target: str) -> None:
        await asyncio.sleep(1.0 * self.time_factor)
        for f in app["fapiao"]:
            if f["status"] != source:
                continue
            f["status"] = target
            stamp = _now()
            number = {
                "fapiao_code": "",
                "fapiao_number": f"{stamp:%y}{secrets.randbelow(10**18):018d}",  # 数电票: a 20-digit number
                "check_code": "",
                "password": "",
                "fapiao_time": stamp.isoformat(),
            }
            f["blue_fapiao" if target == "ISSUED" else "red_fapiao"] = number

    # ---- control ---------------------------------------------------------------------------------------

    async def control(self, request: Request) -> Response:
        if request.client is None or not request.client.host.startswith("127."):
            return JSONResponse({"error": "control endpoints are for loopback only"}, status_code=403)
        name = request.path_params["name"]
        if request.method == "GET":
            if name == "requests":
                return JSONResponse(self.requests[-2000:])
            if name == "notifications":
                return JSONResponse(
                    [
                        {
                            "id": d.id,
                            "event_type": d.event_type,
                            "fault": d.fault,
                            "delivered": d.delivered,
                            "attempts": d.attempts,
                            "resource": d.plaintext,
                        }
                        for d in self.deliveries
                    ]
                )
            return JSONResponse({"error": f"no such control {name}"}, status_code=404)
        data = json.loads(await request.body() or b"{}")
        if name == "pay":
            return self.pay(data)
        if name == "late-pay":
            return self.late_pay(data)
        if name == "faults":
            fault = data.get("fault")
            if fault not in ("duplicate", "delay", "reorder", "drop"):
                return JSONResponse(
                    {"error": "fault must be duplicate, delay, reorder or drop"}, status_code=400
                )
            self.faults.append(
                {
                    "fault": fault,
                    "count": int(data.get("count", 1)),
                    "delay_s": float(data.get("delay_s", 5.0)),
                }
            )
            return JSONResponse({"queued": list(self.faults)})
        if name == "slow":
            self.slow.append(
                {
                    "prefix": str(data["prefix"]),
                    "delay_s": float(data.get("delay_s", 5.0)),
                    "count": int(data.get("count", 1)),
                }
            )
            return JSONResponse({"slow": self.slow})
        if name == "refund-outcome":  # the next `count` refunds end ABNORMAL or CLOSED
            outcome = data.get("status")
            if outcome not in ("ABNORMAL", "CLOSED"):
                return JSONResponse({"error": "status must be ABNORMAL or CLOSED"}, status_code=400)
            self.refund_outcomes.extend([outcome] * int(data.get("count", 1)))
            return JSONResponse({"queued": list(self.refund_outcomes)})
        if name == "reset-faults":
            self.faults.clear()
            self.slow.clear()
            return JSONResponse({"ok": True})
        return JSONResponse({"error": f"no such control {name}"}, status_code=404)

    async def order_state(self, request: Request) -> Response:
        order = self.orders.get(request.path_params["no"])
        if order is None:
            return JSONResponse({"error": "no such order"}, status_code=404)
        return JSONResponse(
            {
                **order.resource(self.keys.mchid, self.keys.appid),
                "prepay_id": order.prepay_id,
                "refunded_fen": order.refunded_fen,
            }
        )


def create_app(keys: DevKeys, *, time_factor: float = 1.0) -> Starlette:
    gw = FakeGateway(keys, time_factor=time_factor)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "mchid": keys.mchid, "public_key_id": keys.public_key_id})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        gw._client = httpx.AsyncClient()
        try:
            yield
        finally:
            for task in list(gw._tasks):
                task.cancel()
            await gw._client.aclose()

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/fake/orders/{no}", gw.order_state),
            Route("/fake/{name}", gw.control, methods=["GET", "POST"]),
            Route("/v3/{rest:path}", gw.handle, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app
