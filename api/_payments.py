"""Paying a controller sale, and WeChat Pay's notifications.

- `POST /v1/sales/{sale_id}/pay` (user token, `Idempotency-Key` header): lock the sale at its site and
  create its WeChat Pay order (payments/_sale.py); the answer carries wx.requestPayment's parameters.
  A retry with the same key gets the same answer (or resumes a request that died); 409 when the sale is
  under review, paid, or held by another payment; 410 when the station settled it another way; 503 when
  the station's link is down (retry); 403 RiskDenied / RiskHeld when risk control refuses or holds the
  payment for an operator's review (nothing is locked or ordered; retry once approved).

WeChat Pay calls us here: payment and refund notifications.

The body is verified as the raw bytes WeChat Pay signed (never a re-serialised JSON), then stored and
applied in one transaction with its follow-up jobs (payments/_flow.py, the outbox). A redelivered
notification answers 204 at once; a forged, stale or undecryptable one is refused with a 4xx, logged,
and leaves no trace in the database. Not part of the clients' OpenAPI contract: only WeChat Pay calls it.
"""

from __future__ import annotations

import logging
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api._fuelling import SessionId
from api._models import SalePaymentPublic, error_responses
from api._risk_checks import pay_screen
from api._state import AppState, get_state
from api._users import CurrentUser, require_owner
from geo._errors import Conflict
from payments import NotificationRejected, PayConfig, WeChatPayClient, pay_for_sale
from payments._flow import handle_notification
from store import _sessions as sessions
from store._users import User

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


SaleId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the controller sale's id")]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        pattern=r"^[\x21-\x7e]+$",
        description="a key of the client's choosing (a UUID): the same key never pays twice",
    ),
]


RedeemPoints = Annotated[
    int,
    Query(
        ge=0,
        le=100_000,
        description="points to redeem on this order (a multiple of the redemption unit, 1,000 by default;"
        " never more than the unexpired balance, and at least 1 fen is left to pay)",
    ),
]


def _pay(
    sale_id: int, idempotency_key: str, user: User, request: Request, state: AppState, redeem_points: int = 0
) -> dict[str, object]:
    s = state.settings
    result = pay_for_sale(
        state.db,
        sale_id=sale_id,
        user=user,
        idempotency_key=idempotency_key,
        client=wechatpay_client(state),
        tz=state.region.tz,
        holidays=state.region.holidays,
        client_ip=request.client.host if request.client else "127.0.0.1",
        max_fen=s.payments_max_fen,
        site_timeout_s=s.payments_site_timeout_s,
        key_lock_s=s.payments_idempotency_lock_s,
        redeem_points=redeem_points,
        screen=pay_screen(state, user, redeem_points=redeem_points),
    )
    return {
        "out_trade_no": result.out_trade_no,
        "sale_id": result.sale_id,
        "amount_fen": result.amount_fen,
        "sale_amount_fen": result.sale_amount_fen,
        "discount_fen": result.discount_fen,
        "redeemed_points": result.redeemed_points,
        "redemption_fen": result.redemption_fen,
        "expires_at": result.expires_at,
        "request_payment": result.request_payment(),
    }


@router.post(
    "/v1/sales/{sale_id}/pay",
    response_model=SalePaymentPublic,
    responses=error_responses(401, 403, 404, 409, 410, 422, 429, 503, user=True),
)
def pay_sale(
    sale_id: SaleId,
    idempotency_key: IdempotencyKey,
    user: CurrentUser,
    request: Request,
    state: AppState = Depends(get_state),
    redeem_points: RedeemPoints = 0,
) -> dict[str, object]:
    """Pay a finished sale with WeChat Pay: the sale is locked at the station first, then ordered;
    `redeem_points` come off the amount (held until the payment is recorded)."""
    return _pay(sale_id, idempotency_key, user, request, state, redeem_points)


@router.post(
    "/v1/fuelling/sessions/{session_id}/pay",
    response_model=SalePaymentPublic,
    responses=error_responses(401, 403, 404, 409, 410, 422, 429, 503, user=True),
)
def pay_session(
    session_id: SessionId,
    idempotency_key: IdempotencyKey,
    user: CurrentUser,
    request: Request,
    state: AppState = Depends(get_state),
    redeem_points: RedeemPoints = 0,
) -> dict[str, object]:
    """Pay the session's completed sale with WeChat Pay (the same payment as `POST /v1/sales/{id}/pay`):
    403 for someone else's session, 409 while there is no final sale yet (or it is under review)."""
    with state.db.connection() as conn:
        row = sessions.get(conn, session_id)
    if row is None:
        raise sessions.SessionNotFound(f"fuelling session {session_id} not found")
    require_owner(user, int(row["user_id"]), f"fuelling session {session_id}")
    if row["sale_id"] is None or row["state"] not in ("completed", "locked", "paid"):
        raise Conflict(f"fuelling session {session_id} has no sale to pay yet (state {row['state']})")
    return _pay(int(row["sale_id"]), idempotency_key, user, request, state, redeem_points)
