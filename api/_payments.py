"""WeChat Pay calls us here: payment and refund notifications.

The body is verified as the raw bytes WeChat Pay signed (never a re-serialised JSON), then stored and
applied in one transaction with its follow-up jobs (payments/_flow.py, the outbox). A redelivered
notification answers 204 at once; a forged, stale or undecryptable one is refused with a 4xx, logged,
and leaves no trace in the database. Not part of the clients' OpenAPI contract: only WeChat Pay calls it.
"""

from __future__ import annotations

import logging
import threading

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api._state import AppState, get_state
from payments import NotificationRejected, PayConfig, WeChatPayClient
from payments._flow import handle_notification

log = logging.getLogger("api.payments")
router = APIRouter(tags=["payments"])
_client_lock = threading.Lock()


def wechatpay_client(state: AppState) -> WeChatPayClient:
    """The app's WeChat Pay client, built on first use (PaymentsNotConfigured when settings are missing)."""
    with _client_lock:
        client = state.extras.get("wechatpay")
        if client is None:
            client = state.extras["wechatpay"] = WeChatPayClient(PayConfig.from_settings(state.settings))
        return client


@router.post("/v1/payments/wechat/notify", status_code=204, include_in_schema=False)
async def wechat_notify(request: Request, state: AppState = Depends(get_state)) -> Response:
    """Verify, store (deduplicated on the notification id) and apply a WeChat Pay notification."""
    limit = state.settings.wechatpay_notify_max_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return Response(
                content=b'{"code":"FAIL","message":"body too large"}',
                status_code=413,
                media_type="application/json",
            )
    headers = dict(request.headers)
    peer = request.client.host if request.client else "-"

    def work() -> str:
        client = wechatpay_client(state)
        try:
            notification = client.verify_notification(headers, bytes(body))
            with state.db.transaction() as conn:
                return handle_notification(conn, notification)
        except NotificationRejected as exc:
            log.warning("refused a WeChat Pay notification from %s: %s: %s", peer, type(exc).__name__, exc)
            raise

    outcome = await run_in_threadpool(work)
    log.info("WeChat Pay notification: %s", outcome)
    return Response(status_code=204)
