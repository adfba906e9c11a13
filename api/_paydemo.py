"""Development and tests only: the fake WeChat Pay gateway plays the phone's payment sheet for the web page.

`POST /v1/payments/demo/confirm` (user token) takes the wx.requestPayment parameters of a pay answer and
hands them to the fake gateway (`FUEL_WECHATPAY_BASE_URL` + `/fake/pay`) as the signed-in user confirming
the payment; the gateway then notifies us as WeChat Pay would. 404 outside FUEL_ENV=development|test, and
when the gateway is not on this machine (the real WeChat Pay has no such thing).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api._models import _Public, error_responses
from api._state import AppState, get_state
from api._users import CurrentUser
from geo import Conflict, NotFound
from payments import PaymentsNotConfigured

router = APIRouter(tags=["payments"])
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class DemoPayment(BaseModel):
    """The `request_payment` object of a pay answer, as the mini-program would pass it on."""

    model_config = ConfigDict(extra="forbid")
    timeStamp: str = Field(min_length=1, max_length=20)
    nonceStr: str = Field(min_length=1, max_length=64)
    package: str = Field(min_length=1, max_length=128, pattern=r"^prepay_id=[0-9A-Za-z_-]+$")
    signType: str = Field(min_length=1, max_length=10)
    paySign: str = Field(min_length=1, max_length=1024)


class DemoPaymentResult(_Public):
    errMsg: str = Field(description="what wx.requestPayment would report: requestPayment:ok")


@router.post(
    "/v1/payments/demo/confirm",
    response_model=DemoPaymentResult,
    responses=error_responses(400, 401, 404, 409, 413, 422, 429, 503, user=True),
)
async def demo_confirm(
    body: DemoPayment, user: CurrentUser, state: AppState = Depends(get_state)
) -> dict[str, Any]:
    """Development and tests only: confirm a payment as the signed-in user on the fake WeChat Pay."""
    base = state.settings.wechatpay_base_url.rstrip("/")
    if not state.settings.demo_enabled or urlsplit(base).hostname not in LOOPBACK:
        raise NotFound(
            "no such endpoint: the demo payment is for development and tests with the fake gateway"
        )

    def confirm() -> httpx.Response:
        try:
            return httpx.post(
                f"{base}/fake/pay", json={**body.model_dump(), "openid": user.openid}, timeout=10
            )
        except httpx.HTTPError as exc:
            raise PaymentsNotConfigured(f"the fake gateway is not reachable: {exc}") from None

    r = await run_in_threadpool(confirm)
    answer = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    message = str(answer.get("errMsg", f"requestPayment:fail {r.status_code}"))
    if r.status_code != 200 or not message.endswith(":ok"):
        raise Conflict(f"the payment was not confirmed: {message}")
    return {"errMsg": message}
