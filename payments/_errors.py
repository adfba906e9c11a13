"""The payments' errors. Each is a project error (geo.FuelError) and a built-in; api/_errors.py maps them."""

from __future__ import annotations

from geo import Conflict, FuelError, InvalidInput


class PaymentError(FuelError):
    """Base class of the payment errors."""


class PaymentsNotConfigured(PaymentError, RuntimeError):
    """The WeChat Pay merchant settings are missing (FUEL_WECHATPAY_*)."""


class GatewayError(PaymentError, RuntimeError):
    """WeChat Pay answered with an error (`status`, its `code` and `message`), or could not be reached
    (status 0). `retryable`: the same call may succeed later (network, 5xx, SYSTEM_ERROR, FREQUENCY_LIMITED)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"WeChat Pay {status or 'unreachable'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status >= 500 or self.code in RETRYABLE_CODES


RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "SYSTEMERROR", "FREQUENCY_LIMITED", "BANKERROR"})


class NotificationRejected(PaymentError, ValueError):
    """A notification that must not be believed; nothing of it is recorded."""


class ForgedSignature(NotificationRejected):
    """The Wechatpay-Signature does not verify with the platform public key (or headers are missing)."""


class StaleTimestamp(NotificationRejected):
    """Wechatpay-Timestamp lies outside the accepted window around our clock (a replay, or a bad clock)."""


class UnknownSerial(NotificationRejected):
    """Wechatpay-Serial names a key we do not hold."""


class BadCiphertext(NotificationRejected):
    """The signed body's resource does not decrypt (AEAD_AES_256_GCM, APIv3 key) or is not a resource."""


class BillIntegrityError(PaymentError, ValueError):
    """A downloaded trade bill does not match its SHA1 hash, or is not in WeChat's bill format."""


class InvalidInvoice(InvalidInput):
    """A fuel e-invoice (电子发票) request breaks a rule: `param` names the field."""


class UnknownOrder(NotificationRejected, LookupError):
    """A notification or query names an out_trade_no we never created."""


class AmountMismatch(NotificationRejected):
    """WeChat Pay reports another amount (or payer) than the payment we created: never believed."""


class SaleNotPayable(PaymentError, Conflict):
    """The controller sale cannot be paid here: under review, figures that disagree with the totaliser,
    already paid, or being paid by someone else (409)."""


class SaleLockedElsewhere(SaleNotPayable):
    """The site answered LOCKTX with 409: another payment holds the sale."""


class SaleTaken(PaymentError, LookupError):
    """The site answered LOCKTX with 410: the sale was settled another way (cashier) (410)."""


class IdempotencyKeyInUse(PaymentError, Conflict):
    """Another request with this Idempotency-Key is still working on it (409: retry shortly)."""
