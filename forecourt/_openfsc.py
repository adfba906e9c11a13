"""OpenFSC 1.0 plain-text protocol: parse and format every message (pure: no I/O).

A message is `<tag> <METHOD> <arg0> ... <argN> [<argV>]\\r\\n` (OpenFSC 1.0 section 4.1): the tag is `*`
(a notification) or an identifier (a request, its answers carry the same tag); arguments are separated
by one space and contain no space or control character, except a last variadic argument (argV) that
runs to the end of the line. The default encoding is ASCII; `CHARSET` switches to WINDOWS-1252,
ISO-8859-1 or UTF-8.

Besides the core methods and the Receipt Information extension (RECEIPTINFO), the service declares its
own extensions in CAPABILITY (see README, "The station link"):
- `PROGRESS` (site -> server notification): live volume and amount of a running fuelling, with a
  sequence number that never goes backwards;
- `SALE` (site -> server notification): a finished sale as the site's transaction buffer holds it, with
  its nozzle, its buffer state (payable, locked, cleared), who cleared it, whether it was written while
  the link was down, and the nozzle's volume totaliser at the start and the end;
- `FPSTATE` (site -> server notification): the IFSF fuelling-point state (1-9) of a pump;
- `LOCKTX` / `UNLOCKTX` (server -> site requests): lock a finished sale for mobile payment (the cashier
  cannot take it then) and release it again; answers OK, ERR 404 (unknown sale), ERR 409 (locked by
  another payment), ERR 410 (already cleared);
- `RECONCILE` (server -> site request): after a reconnect, the site sends a SALE line for every sale
  that ended since the given time (those written as cleared while offline included), then OK.

Parsing is strict: anything off the grammar raises `ProtocolError` with the OpenFSC error code the
receiver answers (400 bad request, 405 unknown method, 406 wrong encoding).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

CRLF = "\r\n"
MAX_LINE_BYTES = 4096  # a longer line is refused: every line has a bounded cost
# CHARSET names (OpenFSC) -> Python codecs; ASCII is the default before any CHARSET.
ENCODINGS: dict[str, str] = {
    "ASCII": "ascii",
    "WINDOWS-1252": "cp1252",
    "ISO-8859-1": "latin-1",
    "UTF-8": "utf-8",
}
PUMP_STATES = ("free", "in-use", "in-transaction", "ready-to-pay", "locked", "out-of-order")
TRANSACTION_STATES = ("open", "deferred")
SALE_STATES = ("payable", "locked", "cleared")
LOCKEDPUMP_REASONS = ("aborted", "timeout")
UNITS = ("LTR",)

# OpenFSC error codes used by the core (section 4.1.2) and by the extensions.
BAD_REQUEST = 400
UNAUTHORIZED = 401
WRONG_STATE = 403
NOT_FOUND = 404
UNKNOWN_METHOD = 405
WRONG_ENCODING = 406
CONFLICT = 409
GONE = 410
OUT_OF_RANGE = 416
UNPROCESSABLE = 422
INTERNAL = 500

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9]*\Z")
_NUMBER = re.compile(r"(?:0|[1-9][0-9]*)\Z")
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)\.[0-9]+\Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_CURRENCY = re.compile(r"[A-Z]{3}\Z")


class ProtocolError(ValueError):
    """A line that breaks the protocol. `code` is the OpenFSC error code to answer with, `tag` the
    line's tag when it could be read (the ERR answer carries it), else `*`."""

    def __init__(self, code: int, message: str, *, tag: str = "*") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.tag = tag


# ---------------------------------------------------------------------------------------------------
# Argument kinds: each parses one token (or the rest of the line) and formats it back.


@dataclass(frozen=True)
class _Kind:
    name: str
    parse: Callable[[str], Any]
    format: Callable[[Any], str]


def _string(token: str) -> str:
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError("a string of printable characters without spaces")
    return token


def _number(token: str) -> int:
    if not _NUMBER.match(token):
        raise ValueError("a whole number")
    return int(token)


def _pump(token: str) -> int:
    n = _number(token)
    if n < 1:
        raise ValueError("a pump number, 1 or more")
    return n


def _decimal(token: str) -> Decimal:
    if not _DECIMAL.match(token):
        raise ValueError("a decimal such as 12.34")
    return Decimal(token)


def _fmt_decimal(value: Decimal) -> str:
    text = format(value, "f")
    return text if "." in text else text + ".0"


def _uuid(token: str) -> str:
    if not _UUID.match(token):
        raise ValueError("a lower-case UUID")
    return token


def _currency(token: str) -> str:
    if not _CURRENCY.match(token):
        raise ValueError("an ISO 4217 currency code")
    return token


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(token: str) -> str:
        if token not in allowed:
            raise ValueError("one of " + ", ".join(allowed))
        return token

    return parse


def _timestamp(token: str) -> datetime:
    if "T" not in token:
        raise ValueError("an RFC 3339 time")
    at = datetime.fromisoformat(token)
    if at.tzinfo is None:
        raise ValueError("an RFC 3339 time with its offset")
    return at


def _fmt_timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("a time needs its offset")
    text = at.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _dash_or(kind: _Kind) -> _Kind:
    return _Kind(
        kind.name + " or -",
        lambda t: None if t == "-" else kind.parse(t),
        lambda v: "-" if v is None else kind.format(v),
    )


def _flag(token: str) -> bool:
    if token not in ("0", "1"):
        raise ValueError("0 or 1")
    return token == "1"


STRING = _Kind("string", _string, str)
NUMBER = _Kind("number", _number, str)
PUMP = _Kind("pump", _pump, str)
DECIMAL = _Kind("decimal", _decimal, _fmt_decimal)
UUID = _Kind("uuid", _uuid, str)
CURRENCY = _Kind("currency", _currency, str)
TIMESTAMP = _Kind("timestamp", _timestamp, _fmt_timestamp)
FLAG = _Kind("flag", _flag, lambda v: "1" if v else "0")


def _enum(*allowed: str) -> _Kind:
    return _Kind("|".join(allowed), _choice(*allowed), str)


ARGV = _Kind("text", lambda t: t, str)  # the variadic last argument: the rest of the line

Spec = tuple[tuple[str, _Kind, bool], ...]  # (field, kind, optional)


# ---------------------------------------------------------------------------------------------------
# Messages. Each class names its method, its arguments in order (optional ones last) and whether its
# last argument is variadic (argV). `Body` is the union of them all.


@dataclass(frozen=True)
class _Body:
    METHOD: ClassVar[str]
    ARGS: ClassVar[Spec] = ()
    VARIADIC: ClassVar[bool] = False  # the last argument takes the rest of the line
    REPEAT: ClassVar[int] = 0  # the last field is a tuple of 0..REPEAT tokens of its kind

    def args(self) -> list[str]:
        out: list[str] = []
        for (name, kind, optional), f in zip(self.ARGS, fields(self), strict=True):
            value = getattr(self, f.name)
            assert name == f.name
            if self.REPEAT and name == self.ARGS[-1][0]:
                out.extend(kind.format(v) for v in value)
            elif value is None and optional:
                continue
            else:
                out.append(kind.format(value))
        return out


# --- handshake --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Capability(_Body):
    METHOD = "CAPABILITY"
    ARGS: ClassVar[Spec] = (("methods", STRING, False),)
    REPEAT = 64
    methods: tuple[str, ...]


@dataclass(frozen=True)
class Charset(_Body):
    METHOD = "CHARSET"
    ARGS: ClassVar[Spec] = (("name", STRING, False),)
    name: str


@dataclass(frozen=True)
class PlainAuth(_Body):
    METHOD = "PLAINAUTH"
    ARGS: ClassVar[Spec] = (("site_access_key", UUID, False), ("secret", STRING, False))
    site_access_key: str
    secret: str


# --- authenticated: server -> site requests ---------------------------------------------------------
@dataclass(frozen=True)
class Clear(_Body):
    METHOD = "CLEAR"
    ARGS: ClassVar[Spec] = (
        ("pump", PUMP, False),
        ("site_tx_id", STRING, False),
        ("fsc_tx_id", UUID, False),
        ("payment_method", STRING, False),
    )
    pump: int
    site_tx_id: str
    fsc_tx_id: str
    payment_method: str


@dataclass(frozen=True)
class Heartbeat(_Body):
    METHOD = "HEARTBEAT"
    ARGS: ClassVar[Spec] = (("timestamp", STRING, False),)
    timestamp: str  # RFC 3339; a receiver that cannot read it answers ERR 422


@dataclass(frozen=True)
class LockPump(_Body):
    # The prose names one argument (Pump); the EBNF adds a string: accepted, and sent without it.
    METHOD = "LOCKPUMP"
    ARGS: ClassVar[Spec] = (("pump", PUMP, False), ("extra", STRING, True))
    pump: int
    extra: str | None = None


@dataclass(frozen=True)
class Prices(_Body):
    METHOD = "PRICES"


@dataclass(frozen=True)
class Pumps(_Body):
    METHOD = "PUMPS"


@dataclass(frozen=True)
class PumpStatus(_Body):
    METHOD = "PUMPSTATUS"
    ARGS: ClassVar[Spec] = (("pump", PUMP, False), ("ttl", NUMBER, True))
    pump: int
    ttl: int | None = None


@dataclass(frozen=True)
class Transactions(_Body):
    METHOD = "TRANSACTIONS"
    ARGS: ClassVar[Spec] = (("pump", PUMP, True), ("ttl", NUMBER, True))
    pump: int | None = None
    ttl: int | None = None


@dataclass(frozen=True)
class UnlockPump(_Body):
    METHOD = "UNLOCKPUMP"
    ARGS: ClassVar[Spec] = (
        ("pump", PUMP, False),
        ("currency", CURRENCY, False),
        ("credit", DECIMAL, False),
        ("fsc_tx_id", UUID, False),
        ("payment_method", STRING, False),
        ("products", STRING, False),
    )
    REPEAT = 8
    pump: int
    currency: str
    credit: Decimal
    fsc_tx_id: str
    payment_method: str
    products: tuple[str, ...] = ()


# --- authenticated: site -> server -----------------------------------------------------------------
@dataclass(frozen=True)
class Price(_Body):
    METHOD = "PRICE"
    ARGS: ClassVar[Spec] = (
        ("product", STRING, False),
        ("unit", _enum(*UNITS), False),
        ("currency", CURRENCY, False),
        ("price", DECIMAL, False),
        ("description", ARGV, False),
    )
    VARIADIC = True
    product: str
    unit: str
    currency: str
    price: Decimal
    description: str


@dataclass(frozen=True)
class Pump(_Body):
    METHOD = "PUMP"
    ARGS: ClassVar[Spec] = (("pump", PUMP, False), ("status", _enum(*PUMP_STATES), False))
    pump: int
    status: str


@dataclass(frozen=True)
class Transaction(_Body):
    METHOD = "TRANSACTION"
    # PricePerUnit (arg11) is in the core EBNF; the extension documents' transcripts omit it: optional.
    ARGS: ClassVar[Spec] = (
        ("pump", PUMP, False),
        ("site_tx_id", STRING, False),
        ("status", _enum(*TRANSACTION_STATES), False),
        ("product", STRING, False),
        ("currency", CURRENCY, False),
        ("price_with_vat", DECIMAL, False),
        ("price_without_vat", DECIMAL, False),
        ("vat_rate", DECIMAL, False),
        ("vat_amount", DECIMAL, False),
        ("unit", _enum(*UNITS), False),
        ("volume", DECIMAL, False),
        ("price_per_unit", DECIMAL, True),
    )
    pump: int
    site_tx_id: str
    status: str
    product: str
    currency: str
    price_with_vat: Decimal
    price_without_vat: Decimal
    vat_rate: Decimal
    vat_amount: Decimal
    unit: str
    volume: Decimal
    price_per_unit: Decimal | None = None


@dataclass(frozen=True)
class LockedPump(_Body):
    METHOD = "LOCKEDPUMP"
    ARGS: ClassVar[Spec] = (("pump", PUMP, False), ("fsc_tx_id", UUID, False), ("reason", STRING, False))
    pump: int
    fsc_tx_id: str
    reason: str  # aborted | timeout; anything else is answered ERR 400 (the spec's own error)


@dataclass(frozen=True)
class ReceiptInfo(_Body):
    METHOD = "RECEIPTINFO"
    ARGS: ClassVar[Spec] = (("fsc_tx_id", UUID, False), ("key", STRING, False), ("value", STRING, False))
    fsc_tx_id: str
    key: str
    value: str


# --- always valid -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Beat(_Body):
    METHOD = "BEAT"
    ARGS: ClassVar[Spec] = (("timestamp", STRING, False),)
    timestamp: str


@dataclass(frozen=True)
class Err(_Body):
    METHOD = "ERR"
    ARGS: ClassVar[Spec] = (("code", NUMBER, False), ("message", ARGV, False))
    VARIADIC = True
    code: int
    message: str


@dataclass(frozen=True)
class Ok(_Body):
    METHOD = "OK"


@dataclass(frozen=True)
class Quit(_Body):
    METHOD = "QUIT"
    ARGS: ClassVar[Spec] = (("message", ARGV, False),)
    VARIADIC = True
    message: str


# --- the service's extensions -----------------------------------------------------------------------
@dataclass(frozen=True)
class Progress(_Body):
    """`* PROGRESS <pump> <nozzle> <SiteTxID|-> <product> <seq> <volume> <amount> LTR <currency>`."""

    METHOD = "PROGRESS"
    ARGS: ClassVar[Spec] = (
        ("pump", PUMP, False),
        ("nozzle", PUMP, False),
        ("site_tx_id", _dash_or(STRING), False),
        ("product", STRING, False),
        ("seq", NUMBER, False),
        ("volume", DECIMAL, False),
        ("amount", DECIMAL, False),
        ("unit", _enum(*UNITS), False),
        ("currency", CURRENCY, False),
    )
    pump: int
    nozzle: int
    site_tx_id: str | None
    product: str
    seq: int
    volume: Decimal
    amount: Decimal
    unit: str
    currency: str


@dataclass(frozen=True)
class Sale(_Body):
    """`* SALE <pump> <nozzle> <SiteTxID> <state> <clearedBy|-> <offline 0|1> <product> LTR <volume>
    <currency> <amount> <pricePerUnit> <totaliserStart> <totaliserEnd> <endedAt>`: clearedBy is
    `cashier` or the FSCTransactionID of the CLEAR that paid it; totalisers are the nozzle's volume
    totaliser (litres) before and after the sale."""

    METHOD = "SALE"
    ARGS: ClassVar[Spec] = (
        ("pump", PUMP, False),
        ("nozzle", PUMP, False),
        ("site_tx_id", STRING, False),
        ("state", _enum(*SALE_STATES), False),
        ("cleared_by", _dash_or(STRING), False),
        ("offline", FLAG, False),
        ("product", STRING, False),
        ("unit", _enum(*UNITS), False),
        ("volume", DECIMAL, False),
        ("currency", CURRENCY, False),
        ("amount", DECIMAL, False),
        ("price_per_unit", DECIMAL, False),
        ("totaliser_start", DECIMAL, False),
        ("totaliser_end", DECIMAL, False),
        ("ended_at", TIMESTAMP, False),
    )
    pump: int
    nozzle: int
    site_tx_id: str
    state: str
    cleared_by: str | None
    offline: bool
    product: str
    unit: str
    volume: Decimal
    currency: str
    amount: Decimal
    price_per_unit: Decimal
    totaliser_start: Decimal
    totaliser_end: Decimal
    ended_at: datetime


@dataclass(frozen=True)
class FpState(_Body):
    """`* FPSTATE <pump> <state>`: IFSF fuelling-point state 1 Inoperative .. 9 Suspended Fuelling."""

    METHOD = "FPSTATE"
    ARGS: ClassVar[Spec] = (("pump", PUMP, False), ("state", _enum(*"123456789"), False))
    pump: int
    state: str


@dataclass(frozen=True)
class _SaleLock(_Body):
    ARGS: ClassVar[Spec] = (("pump", PUMP, False), ("site_tx_id", STRING, False), ("fsc_tx_id", UUID, False))
    pump: int
    site_tx_id: str
    fsc_tx_id: str


@dataclass(frozen=True)
class LockTx(_SaleLock):
    """`Sx LOCKTX <pump> <SiteTxID> <FSCTransactionID>`: OK, or ERR 404 / 409 / 410."""

    METHOD = "LOCKTX"


@dataclass(frozen=True)
class UnlockTx(_SaleLock):
    """`Sx UNLOCKTX <pump> <SiteTxID> <FSCTransactionID>`: OK, or ERR 404 / 409 / 410."""

    METHOD = "UNLOCKTX"


@dataclass(frozen=True)
class Reconcile(_Body):
    """`Sx RECONCILE [<since>]`: SALE lines for every sale that ended at or after `since`, then OK."""

    METHOD = "RECONCILE"
    ARGS: ClassVar[Spec] = (("since", TIMESTAMP, True),)
    since: datetime | None = None


Body = (
    Capability
    | Charset
    | PlainAuth
    | Clear
    | Heartbeat
    | LockPump
    | Prices
    | Pumps
    | PumpStatus
    | Transactions
    | UnlockPump
    | Price
    | Pump
    | Transaction
    | LockedPump
    | ReceiptInfo
    | Beat
    | Err
    | Ok
    | Quit
    | Progress
    | Sale
    | FpState
    | LockTx
    | UnlockTx
    | Reconcile
)
MESSAGES: dict[str, type[_Body]] = {
    cls.METHOD: cls
    for cls in (
        Capability,
        Charset,
        PlainAuth,
        Clear,
        Heartbeat,
        LockPump,
        Prices,
        Pumps,
        PumpStatus,
        Transactions,
        UnlockPump,
        Price,
        Pump,
        Transaction,
        LockedPump,
        ReceiptInfo,
        Beat,
        Err,
        Ok,
        Quit,
        Progress,
        Sale,
        FpState,
        LockTx,
        UnlockTx,
        Reconcile,
    )
}
EXTENSIONS = ("PROGRESS", "SALE", "FPSTATE", "LOCKTX", "UNLOCKTX", "RECONCILE")


@dataclass(frozen=True)
class Line:
    """One message: its tag (`*` for a notification) and its body."""

    tag: str
    body: Body

    @property
    def is_notification(self) -> bool:
        return self.tag == "*"

    def __str__(self) -> str:
        return format_line(self.tag, self.body)


def valid_tag(tag: str) -> bool:
    return tag == "*" or bool(_IDENT.match(tag))


def format_line(tag: str, body: Body, *, crlf: bool = False) -> str:
    """The line of `body` under `tag` (with the CRLF terminator when `crlf`). Values are checked: a line
    that `parse_line` would refuse is never produced."""
    if not valid_tag(tag):
        raise ValueError(f"invalid tag {tag!r}")
    parts = [tag, body.METHOD, *body.args()]
    text = " ".join(parts)
    parsed = parse_line(text)  # the round trip is the check
    if parsed.body != body:
        raise ValueError(f"{body!r} does not survive formatting as {text!r}")
    return text + CRLF if crlf else text


def decode(raw: bytes, charset: str = "ASCII") -> str:
    """A received line's bytes (with or without CRLF) as text in the connection's charset (406 when the
    bytes do not comply)."""
    if len(raw) > MAX_LINE_BYTES + 2:
        raise ProtocolError(BAD_REQUEST, f"line longer than {MAX_LINE_BYTES} bytes")
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    try:
        return raw.decode(ENCODINGS[charset])
    except UnicodeDecodeError:
        tag = raw.split(b" ", 1)[0].decode("ascii", "replace")
        raise ProtocolError(
            WRONG_ENCODING, f"bytes do not comply with {charset}", tag=tag if valid_tag(tag) else "*"
        ) from None


def parse_line(text: str) -> Line:
    """One line of text (the CRLF already removed, or present) as a `Line`; `ProtocolError` otherwise."""
    if text.endswith(CRLF):
        text = text[:-2]
    if "\r" in text or "\n" in text:
        raise ProtocolError(BAD_REQUEST, "a line ends at its first CRLF")
    if len(text.encode("utf-8")) > MAX_LINE_BYTES:
        raise ProtocolError(BAD_REQUEST, f"line longer than {MAX_LINE_BYTES} bytes")
    head = text.split(" ", 2)
    tag = head[0]
    if not valid_tag(tag):
        raise ProtocolError(BAD_REQUEST, f"invalid tag {tag[:20]!r}: '*' or a letter then letters/digits")
    if len(head) < 2 or not head[1]:
        raise ProtocolError(BAD_REQUEST, "a method follows the tag", tag=tag)
    method = head[1]
    if not _IDENT.match(method):
        raise ProtocolError(BAD_REQUEST, f"invalid method {method[:20]!r}", tag=tag)
    cls = MESSAGES.get(method)
    if cls is None:
        raise ProtocolError(UNKNOWN_METHOD, f"method {method[:20]} unknown", tag=tag)
    rest = head[2] if len(head) > 2 else None
    try:
        body = _parse_args(cls, rest)
    except ValueError as exc:
        raise ProtocolError(BAD_REQUEST, f"{method}: {exc}", tag=tag) from None
    return Line(tag, body)  # type: ignore[arg-type]


def _parse_args(cls: type[_Body], rest: str | None) -> _Body:
    spec = cls.ARGS
    if rest is not None and rest == "":
        raise ValueError("a space ends the line")
    if cls.VARIADIC:
        fixed = len(spec) - 1
        tokens = [] if rest is None else rest.split(" ", fixed)
        if len(tokens) < len(spec):
            raise ValueError(f"expects {len(spec)} arguments ({', '.join(n for n, _, _ in spec)})")
    else:
        tokens = [] if rest is None else rest.split(" ")
    if any(t == "" for t in (tokens[:-1] if cls.VARIADIC else tokens)):
        raise ValueError("arguments are separated by exactly one space")
    values: list[Any] = []
    if cls.REPEAT:
        fixed_spec, (last_name, last_kind, _) = spec[:-1], spec[-1]
        head, tail = tokens[: len(fixed_spec)], tokens[len(fixed_spec) :]
        if len(head) < len(fixed_spec):
            raise ValueError(f"expects at least {len(fixed_spec)} arguments")
        if len(tail) > cls.REPEAT:
            raise ValueError(f"at most {cls.REPEAT} {last_name}")
        values = [_one(name, kind, t) for (name, kind, _), t in zip(fixed_spec, head, strict=True)]
        values.append(tuple(_one(last_name, last_kind, t) for t in tail))
        return cls(*values)
    required = sum(1 for _, _, optional in spec if not optional)
    if not required <= len(tokens) <= len(spec):
        names = " ".join(n if not o else f"[{n}]" for n, _, o in spec) or "no arguments"
        raise ValueError(f"expects {names}; got {len(tokens)} arguments")
    for (name, kind, _), token in zip(spec, tokens, strict=False):
        values.append(_one(name, kind, token))
    return cls(*values)


def _one(name: str, kind: _Kind, token: str) -> Any:
    if not token:
        raise ValueError(f"{name}: empty")
    if kind is not ARGV and any(c.isspace() for c in token):
        raise ValueError(f"{name}: with spaces")
    try:
        return kind.parse(token)
    except ValueError as exc:
        raise ValueError(f"{name} {token[:40]!r} is not {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Units: litres and money as decimals on the wire, integer millilitres and fen inside.


def litres_to_ml(volume: Decimal, *, name: str = "volume") -> int:
    """Litres with at most 3 decimals -> millilitres (exact); finer volumes are refused."""
    ml = volume * 1000
    if ml != ml.to_integral_value():
        raise ProtocolError(BAD_REQUEST, f"{name} {volume} L is finer than a millilitre")
    return int(ml)


def money_to_fen(amount: Decimal, *, name: str = "amount") -> int:
    """CNY with at most 2 decimals -> fen (exact); finer amounts are refused."""
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ProtocolError(BAD_REQUEST, f"{name} {amount} is finer than a fen")
    return int(fen)


def ml_to_litres(ml: int) -> Decimal:
    return (Decimal(ml) / 1000).quantize(Decimal("0.001"))


def fen_to_money(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def capability(methods: Sequence[str]) -> Capability:
    return Capability(tuple(methods))


Role = Literal["server", "site"]
# What each side announces in CAPABILITY: the methods it handles (OpenFSC 4.1.5: both sides announce
# the extension for it to be used).
SERVER_CAPABILITY = (
    "BEAT",
    "CHARSET",
    "PLAINAUTH",
    "PRICE",
    "PUMP",
    "TRANSACTION",
    "LOCKEDPUMP",
    "QUIT",
    "RECEIPTINFO",
    "PROGRESS",
    "SALE",
    "FPSTATE",
)
SITE_CAPABILITY = (
    "PROGRESS",
    "SALE",
    "FPSTATE",
    "CLEAR",
    "HEARTBEAT",
    "LOCKPUMP",
    "PRICES",
    "PUMPS",
    "PUMPSTATUS",
    "QUIT",
    "TRANSACTIONS",
    "UNLOCKPUMP",
    "LOCKTX",
    "UNLOCKTX",
    "RECONCILE",
)
