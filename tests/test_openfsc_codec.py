"""The OpenFSC 1.0 codec against the specification's own transcripts, its grammar, and the service's
extensions (forecourt/_openfsc.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecourt import _openfsc as o

TRANSCRIPTS = sorted((Path(__file__).parent / "openfsc").glob("*.txt"))
# Extensions of the specification the service does not implement (their lines are refused: 405 for an
# unknown method, 400 for a multiplexed session tag).
NOT_IMPLEMENTED = {
    "NEWSESSION",
    "SESSIONS",
    "SESSION",
    "SESSIONMODE",
    "PAN",
    "PRODUCT",
    "PRODUCTS",
    "PUSH",
    "PUSHING",
    "TRANSACTIONINFO",
}


def _lines(path: Path) -> list[tuple[str, str]]:
    return [
        (line[0], line[3:]) for line in path.read_text(encoding="utf-8").splitlines() if line[1:3] == ": "
    ]


def test_transcripts_are_there() -> None:
    names = {p.name for p in TRANSCRIPTS}
    assert "openfsc-spec-4.txt" in names and "receipt-information-1.txt" in names
    assert sum(len(_lines(p)) for p in TRANSCRIPTS) > 300


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_every_transcript_line_parses_and_formats_back_identically(path: Path) -> None:
    parsed = 0
    for _side, text in _lines(path):
        tag, method = text.split(" ", 2)[:2]
        if "." in tag or method in NOT_IMPLEMENTED:
            with pytest.raises(o.ProtocolError) as exc:
                o.parse_line(text)
            assert exc.value.code == (o.BAD_REQUEST if "." in tag else o.UNKNOWN_METHOD)
            continue
        line = o.parse_line(text + "\r\n")
        assert line.tag == tag and method == line.body.METHOD
        assert str(line) == text  # exact round trip
        assert o.format_line(line.tag, line.body, crlf=True) == text + "\r\n"
        parsed += 1
    assert parsed > 0


def test_the_post_pay_session_of_the_spec_reads_as_typed_messages() -> None:
    lines = {
        t: o.parse_line(t).body for _, t in _lines(Path(__file__).parent / "openfsc" / "openfsc-spec-4.txt")
    }
    auth = lines["C1 PLAINAUTH 9eb56d5e-6563-430a-9d39-5ddf567e73d5 1d3b755d3bce8f09b4f8ff08dabf1796"]
    assert auth == o.PlainAuth("9eb56d5e-6563-430a-9d39-5ddf567e73d5", "1d3b755d3bce8f09b4f8ff08dabf1796")
    price = lines["* PRICE 0300 LTR EUR 1.499 Super 95 e5"]
    assert price == o.Price("0300", "LTR", "EUR", Decimal("1.499"), "Super 95 e5")
    tx = lines["* TRANSACTION 3 c71b9838ad3dfc15 open 0100 EUR 86.83 72.978 19.0 13.65 LTR 54.40 1.339"]
    assert isinstance(tx, o.Transaction)
    assert (tx.pump, tx.site_tx_id, tx.volume, tx.price_per_unit) == (
        3,
        "c71b9838ad3dfc15",
        Decimal("54.40"),
        Decimal("1.339"),
    )
    assert lines["S3 PUMPSTATUS 3 30"] == o.PumpStatus(3, 30)
    assert lines["S2 PUMPSTATUS 3"] == o.PumpStatus(3)
    clear = lines["S5 CLEAR 3 c71b9838ad3dfc15 e2f74ef5-f427-4ae6-bdd3-70a96709992f pace"]
    assert clear == o.Clear(3, "c71b9838ad3dfc15", "e2f74ef5-f427-4ae6-bdd3-70a96709992f", "pace")
    assert lines["C: * QUIT bye bye"[3:]] == o.Quit("bye bye")
    cap = lines["S: * CAPABILITY BEAT CHARSET PLAINAUTH PRICE PUMP TRANSACTION LOCKEDPUMP QUIT"[3:]]
    assert isinstance(cap, o.Capability) and "PLAINAUTH" in cap.methods


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", o.BAD_REQUEST),
        ("PUMPS", o.BAD_REQUEST),  # no tag
        ("1S PUMPS", o.BAD_REQUEST),  # a tag starts with a letter
        ("S-1 PUMPS", o.BAD_REQUEST),
        ("S1  PUMPS", o.BAD_REQUEST),  # two spaces
        ("S1 pumps!", o.BAD_REQUEST),
        ("S1 FOO 1", o.UNKNOWN_METHOD),
        ("* PUMP 0 free", o.BAD_REQUEST),  # pumps start at 1
        ("* PUMP 01 free", o.BAD_REQUEST),  # a number has no leading zero
        ("* PUMP 1 broken", o.BAD_REQUEST),
        ("* PUMP 1 free extra", o.BAD_REQUEST),
        ("* PUMP 1", o.BAD_REQUEST),
        ("* PUMP 1 free ", o.BAD_REQUEST),  # a space ends the line
        ("* PRICE 0100 LTR EUR 1 Super", o.BAD_REQUEST),  # a decimal has a point
        ("* PRICE 0100 GAL EUR 1.339 Super", o.BAD_REQUEST),
        ("* PRICE 0100 LTR EUR 1.339", o.BAD_REQUEST),  # the description is required
        ("C1 PLAINAUTH 9EB56D5E-6563-430A-9D39-5DDF567E73D5 secret", o.BAD_REQUEST),  # lower-case uuid
        ("C1 PLAINAUTH not-a-uuid secret", o.BAD_REQUEST),
        ("* TRANSACTION 3 t1 paid 0100 EUR 1.0 1.0 19.0 0.1 LTR 1.0 1.0", o.BAD_REQUEST),
        ("S1 OK now", o.BAD_REQUEST),
        ("S1 ERR 400", o.BAD_REQUEST),  # the message is required
        ("S1 ERR 4x0 bad", o.BAD_REQUEST),
        (
            "S1 UNLOCKPUMP 1 EUR 10.0 70644955-ef32-4d33-a88b-67b500a7c00d pace 1 2 3 4 5 6 7 8 9",
            o.BAD_REQUEST,
        ),
        ("* PROGRESS 1 1 - 92 -1 1.000 7.65 LTR CNY", o.BAD_REQUEST),
        ("* SALE 1 1 T1 sold - 0 92 LTR 1.000 CNY 7.65 7.65 0.0 1.0 2026-01-01T00:00:00Z", o.BAD_REQUEST),
        ("* SALE 1 1 T1 payable - 2 92 LTR 1.000 CNY 7.65 7.65 0.0 1.0 2026-01-01T00:00:00Z", o.BAD_REQUEST),
        ("* SALE 1 1 T1 payable - 0 92 LTR 1.000 CNY 7.65 7.65 0.0 1.0 2026-01-01T00:00:00", o.BAD_REQUEST),
        ("* FPSTATE 1 0", o.BAD_REQUEST),
        ("S1 RECONCILE yesterday", o.BAD_REQUEST),
        ("* PUMP 1 fr\x00ee", o.BAD_REQUEST),
        ("* PUMP 1 free\r\n* PUMP 2 free", o.BAD_REQUEST),
        ("S1 PUMPS " + "x" * 5000, o.BAD_REQUEST),
    ],
)
def test_malformed_lines_are_refused_with_their_error_code(text: str, code: int) -> None:
    with pytest.raises(o.ProtocolError) as exc:
        o.parse_line(text)
    assert exc.value.code == code
    assert exc.value.message


def test_the_error_carries_the_tag_when_it_can_be_read() -> None:
    with pytest.raises(o.ProtocolError) as exc:
        o.parse_line("C7 PLAINAUTH nope")
    assert exc.value.tag == "C7"
    with pytest.raises(o.ProtocolError) as exc:
        o.parse_line("7C PUMPS")
    assert exc.value.tag == "*"


def test_decoding_follows_the_charset() -> None:
    assert o.decode(b"* PRICE 92 LTR CNY 7.65 92\xe5\x8f\xb7\r\n", "UTF-8").endswith("92号")
    with pytest.raises(o.ProtocolError) as exc:
        o.decode(b"C3 PRICE 92 LTR CNY 7.65 92\xe5\x8f\xb7", "ASCII")
    assert (exc.value.code, exc.value.tag) == (o.WRONG_ENCODING, "C3")
    assert o.decode(b"* PRICE 0100 LTR EUR 1.339 Stra\xdfe", "ISO-8859-1").endswith("Straße")


def test_extension_lines_round_trip() -> None:
    ended = datetime(2026, 3, 4, 8, 0, 12, tzinfo=UTC)
    sale = o.Sale(
        2, 1, "T000012", "payable", None, False, "92", "LTR", Decimal("40.125"), "CNY", Decimal("306.96"),
        Decimal("7.65"), Decimal("123456.789"), Decimal("123496.914"), ended,
    )  # fmt: skip
    text = o.format_line("*", sale)
    assert text == (
        "* SALE 2 1 T000012 payable - 0 92 LTR 40.125 CNY 306.96 7.65 123456.789 123496.914 2026-03-04T08:00:12Z"
    )
    assert o.parse_line(text).body == sale
    local = ended.astimezone(timezone(timedelta(hours=8)))
    assert (
        o.parse_line(o.format_line("*", o.Sale(**{**sale.__dict__, "ended_at": local}))).body.ended_at
        == ended
    )
    progress = o.Progress(2, 1, None, "92", 7, Decimal("3.500"), Decimal("26.78"), "LTR", "CNY")
    assert o.format_line("*", progress) == "* PROGRESS 2 1 - 92 7 3.500 26.78 LTR CNY"
    assert o.parse_line("* PROGRESS 2 1 - 92 7 3.500 26.78 LTR CNY").body == progress
    for body in (
        o.LockTx(2, "T000012", "e2f74ef5-f427-4ae6-bdd3-70a96709992f"),
        o.UnlockTx(2, "T000012", "e2f74ef5-f427-4ae6-bdd3-70a96709992f"),
        o.Reconcile(ended),
        o.Reconcile(),
        o.FpState(3, "8"),
    ):
        assert o.parse_line(o.format_line("S9", body)).body == body
    assert set(o.EXTENSIONS) <= set(o.SERVER_CAPABILITY) | set(o.SITE_CAPABILITY)


def test_format_refuses_what_parse_would_refuse() -> None:
    with pytest.raises(ValueError):
        o.format_line("*", o.Pump(1, "broken"))
    with pytest.raises(ValueError):
        o.format_line("S 1", o.Pumps())
    with pytest.raises(ValueError):
        o.format_line("*", o.Transactions(None, 30))  # a TTL needs its pump


def test_units_are_exact_integers() -> None:
    assert o.litres_to_ml(Decimal("54.40")) == 54_400
    assert o.money_to_fen(Decimal("86.83")) == 8_683
    assert o.ml_to_litres(40_125) == Decimal("40.125")
    assert o.fen_to_money(30_696) == Decimal("306.96")
    with pytest.raises(o.ProtocolError):
        o.litres_to_ml(Decimal("1.0005"))
    with pytest.raises(o.ProtocolError):
        o.money_to_fen(Decimal("1.005"))


@given(
    pump=st.integers(1, 99),
    nozzle=st.integers(1, 9),
    tx=st.one_of(
        st.none(),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=20).filter(lambda t: t != "-"),
    ),
    seq=st.integers(0, 10**9),
    ml=st.integers(0, 2_000_000),
    fen=st.integers(0, 10**8),
)
def test_progress_round_trips_for_any_figures(
    pump: int, nozzle: int, tx: str | None, seq: int, ml: int, fen: int
) -> None:
    body = o.Progress(pump, nozzle, tx, "95", seq, o.ml_to_litres(ml), o.fen_to_money(fen), "LTR", "CNY")
    back = o.parse_line(o.format_line("*", body)).body
    assert back == body
    assert isinstance(back, o.Progress)
    assert (o.litres_to_ml(back.volume), o.money_to_fen(back.amount)) == (ml, fen)


@given(st.binary(max_size=200))
def test_any_bytes_either_parse_or_raise_a_protocol_error(raw: bytes) -> None:
    try:
        line = o.parse_line(o.decode(raw, "UTF-8"))
    except o.ProtocolError as exc:
        assert exc.code in (o.BAD_REQUEST, o.UNKNOWN_METHOD, o.WRONG_ENCODING)
    else:
        assert o.parse_line(str(line)) == line
