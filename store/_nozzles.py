"""Nozzle tokens: the opaque value in a nozzle sticker's QR code (the mini-program's `scene`).

A token is 27 characters of base64url (WeChat allows at most 32 visible characters in a scene): 8 random
bytes, the row id in nozzle_tokens, then the first 12 bytes of HMAC-SHA256 over the id and the nozzle it
is bound to (station, pump, nozzle), under a key derived from FUEL_SECRET_KEY. So:
- a token cannot be guessed or forged (a 96-bit MAC), and it is checked against its row: a sticker copied
  to another station still names its own station, and a row changed behind our back no longer verifies;
- it reveals nothing (no station id, no count of nozzles);
- it is revocable: `revoked_at` on its row (`python -m ingest qr --revoke TOKEN`); an old sticker then
  gets a clear "revoked" (410), not "unknown";
- it is derived, not stored: issuing the QR codes again for a station re-creates the same tokens until
  they are rotated (`--rotate`). Changing FUEL_SECRET_KEY invalidates every sticker: print them again.

`resolve(conn, token)` is the one check every caller goes through.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from dataclasses import dataclass
from typing import Any

import psycopg

from geo._errors import Conflict, FuelError, NotFound
from store._audit import record

TOKEN_CHARS = 27  # base64url of 8 + 12 bytes, unpadded
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{27}$"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_MAC_BYTES = 12
_KEY_LABEL = b"lijiang-fuel nozzle token v1"


class NozzleTokenInvalid(NotFound):
    """Not a token of ours: malformed, unknown or forged (404)."""


class Gone(FuelError, LookupError):
    """It existed and is no longer valid (410)."""


class NozzleTokenRevoked(Gone):
    """The token was revoked (its sticker replaced): 410."""


class NozzleInactive(Gone):
    """The nozzle is out of service (nozzles.active = false): 410."""


class StationClosed(Conflict):
    """The token is valid but its station cannot sell now (closed, temporarily closed, outside its
    opening hours): 409. `reason` is closed, temporarily_closed or outside_opening_hours."""

    def __init__(self, station_id: int, reason: str) -> None:
        words = {
            "closed": "is closed",
            "temporarily_closed": "is temporarily closed",
            "outside_opening_hours": "is outside its opening hours",
        }.get(reason, "is closed")
        super().__init__(f"station {station_id} {words}: fuelling there is not possible now")
        self.station_id = station_id
        self.reason = reason


@dataclass(frozen=True)
class Nozzle:
    station_id: int
    pump_no: int
    nozzle_no: int
    grade: str
    token_id: int = 0
    pump_label: str = ""


def token_key(secret_key: str) -> bytes:
    """The nozzle tokens' own key, derived from FUEL_SECRET_KEY (never the secret itself)."""
    return hmac.new(secret_key.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _mac(key: bytes, token_id: int, station_id: int, pump_no: int, nozzle_no: int) -> bytes:
    msg = struct.pack(">qqii", token_id, station_id, pump_no, nozzle_no)
    return hmac.new(key, msg, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(key: bytes, token_id: int, station_id: int, pump_no: int, nozzle_no: int) -> str:
    raw = struct.pack(">q", token_id) + _mac(key, token_id, station_id, pump_no, nozzle_no)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse_token(token: str) -> tuple[int, bytes]:
    """(row id, MAC) of a well-formed token; NozzleTokenInvalid otherwise (no database look-up)."""
    if not isinstance(token, str) or not _TOKEN_RE.match(token):
        raise NozzleTokenInvalid(f"not a nozzle token: expected {TOKEN_CHARS} characters of A-Z a-z 0-9 _ -")
    try:
        raw = base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError):
        raise NozzleTokenInvalid("not a nozzle token") from None
    # 27 characters carry 162 bits for 160: the decoder ignores the last two, so four spellings decode to
    # the same bytes. Only the one we issue (those bits zero) is a token.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
        raise NozzleTokenInvalid("not a nozzle token")
    return struct.unpack(">q", raw[:8])[0], raw[8:]


def _key(secret_key: str | None) -> bytes:
    if secret_key is None:
        from config import get_settings

        secret_key = get_settings().secret_key
    return token_key(secret_key)


def _row(conn: psycopg.Connection, token_id: int) -> dict[str, Any] | None:
    cur = conn.execute(
        "SELECT t.id, t.station_id, t.pump_no, t.nozzle_no, t.revoked_at, n.grade, n.active,"
        " p.label AS pump_label, s.status"
        " FROM nozzle_tokens t"
        " JOIN nozzles n USING (station_id, pump_no, nozzle_no)"
        " JOIN pumps p USING (station_id, pump_no)"
        " JOIN stations s ON s.id = t.station_id"
        " WHERE t.id = %s",
        (token_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    names = [d.name for d in cur.description or ()]
    return row if isinstance(row, dict) else dict(zip(names, row, strict=True))


def verified(conn: psycopg.Connection, token: str, *, secret_key: str | None = None) -> dict[str, Any]:
    """The token's row once its MAC checks out against the row's binding (revoked ones included);
    NozzleTokenInvalid for anything else."""
    token_id, mac = parse_token(token)
    row = _row(conn, token_id)
    if row is None:
        raise NozzleTokenInvalid("unknown nozzle token")
    expected = _mac(_key(secret_key), token_id, row["station_id"], row["pump_no"], row["nozzle_no"])
    if not hmac.compare_digest(mac, expected):
        raise NozzleTokenInvalid("unknown nozzle token")  # forged: said in the same words as unknown
    return row


def resolve(conn: psycopg.Connection, token: str, *, secret_key: str | None = None) -> Nozzle:
    """The nozzle a token names. NozzleTokenInvalid (404) for malformed, unknown or forged tokens,
    NozzleTokenRevoked / NozzleInactive (410), StationClosed (409) when the station is closed (opening
    hours are the caller's to check, with the region's holidays: geo._hours.can_fill_up)."""
    row = verified(conn, token, secret_key=secret_key)
    if row["revoked_at"] is not None:
        raise NozzleTokenRevoked(
            f"this nozzle code was revoked on {row['revoked_at']:%Y-%m-%d}: scan the code on the nozzle again, "
            "or ask the station staff"
        )
    if not row["active"]:
        raise NozzleInactive(f"pump {row['pump_no']} nozzle {row['nozzle_no']} is out of service")
    if row["status"] != "open":
        raise StationClosed(int(row["station_id"]), row["status"])
    return Nozzle(
        station_id=int(row["station_id"]),
        pump_no=int(row["pump_no"]),
        nozzle_no=int(row["nozzle_no"]),
        grade=row["grade"],
        token_id=int(row["id"]),
        pump_label=row["pump_label"] or "",
    )


@dataclass(frozen=True)
class IssuedToken:
    station_id: int
    pump_no: int
    nozzle_no: int
    grade: str
    token: str
    created: bool  # issued now (False: the nozzle's active token, derived again)


def issue_tokens(
    conn: psycopg.Connection,
    station_id: int,
    *,
    actor: str,
    secret_key: str | None = None,
    rotate: bool = False,
) -> list[IssuedToken]:
    """The active token of every active nozzle of the station, issuing one where there is none (and, with
    `rotate`, revoking the old ones first). Audited; run inside the caller's transaction."""
    key = _key(secret_key)
    if conn.execute("SELECT 1 FROM stations WHERE id = %s", (station_id,)).fetchone() is None:
        raise NotFound(f"station {station_id} not found")
    if rotate:
        cur = conn.execute(
            "UPDATE nozzle_tokens SET revoked_at = now() WHERE station_id = %s AND revoked_at IS NULL"
            " RETURNING id, pump_no, nozzle_no",
            (station_id,),
        )
        for r in cur.fetchall():
            rid, pump_no, nozzle_no = (r["id"], r["pump_no"], r["nozzle_no"]) if isinstance(r, dict) else r
            record(
                conn,
                actor=actor,
                action="update",
                entity="nozzle_token",
                entity_id=f"{station_id}:{pump_no}:{nozzle_no}:{rid}",
                old={"revoked": False},
                new={"revoked": True, "why": "rotated"},
            )
    cur = conn.execute(
        "SELECT n.pump_no, n.nozzle_no, n.grade, t.id AS token_id FROM nozzles n"
        " LEFT JOIN nozzle_tokens t ON (t.station_id, t.pump_no, t.nozzle_no) = (n.station_id, n.pump_no,"
        " n.nozzle_no) AND t.revoked_at IS NULL"
        " WHERE n.station_id = %s AND n.active ORDER BY n.pump_no, n.nozzle_no",
        (station_id,),
    )
    names = [d.name for d in cur.description or ()]
    out: list[IssuedToken] = []
    for r in cur.fetchall():
        d = r if isinstance(r, dict) else dict(zip(names, r, strict=True))
        token_id, created = d["token_id"], False
        if token_id is None:
            token_id, created = _new_token_row(conn, station_id, d["pump_no"], d["nozzle_no"]), True
            record(
                conn,
                actor=actor,
                action="create",
                entity="nozzle_token",
                entity_id=f"{station_id}:{d['pump_no']}:{d['nozzle_no']}:{token_id}",
                old=None,
                new={"station_id": station_id, "pump_no": d["pump_no"], "nozzle_no": d["nozzle_no"]},
            )
        out.append(
            IssuedToken(
                station_id=station_id,
                pump_no=int(d["pump_no"]),
                nozzle_no=int(d["nozzle_no"]),
                grade=d["grade"],
                token=make_token(key, int(token_id), station_id, int(d["pump_no"]), int(d["nozzle_no"])),
                created=created,
            )
        )
    return out


def _new_token_row(conn: psycopg.Connection, station_id: int, pump_no: int, nozzle_no: int) -> int:
    while True:  # 64 random bits: a collision is astronomically rare, and then we draw again
        token_id = struct.unpack(">q", secrets.token_bytes(8))[0]
        cur = conn.execute(
            "INSERT INTO nozzle_tokens (id, station_id, pump_no, nozzle_no) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            (token_id, station_id, pump_no, nozzle_no),
        )
        if cur.fetchone() is not None:
            return token_id


def revoke_token(conn: psycopg.Connection, token: str, *, actor: str, secret_key: str | None = None) -> bool:
    """Revoke one token (its row is kept); False when it was revoked already. NozzleTokenInvalid for a
    token that is not ours. Audited; run inside the caller's transaction."""
    row = verified(conn, token, secret_key=secret_key)
    if row["revoked_at"] is not None:
        return False
    conn.execute("UPDATE nozzle_tokens SET revoked_at = now() WHERE id = %s", (row["id"],))
    record(
        conn,
        actor=actor,
        action="update",
        entity="nozzle_token",
        entity_id=f"{row['station_id']}:{row['pump_no']}:{row['nozzle_no']}:{row['id']}",
        old={"revoked": False},
        new={"revoked": True},
    )
    return True


def active_tokens(
    conn: psycopg.Connection, station_id: int, *, secret_key: str | None = None
) -> dict[tuple[int, int], str]:
    """The active token of each nozzle of the station that has one, by (pump_no, nozzle_no): derived
    again, nothing written (issuing is `issue_tokens`). For the development page's pump picker."""
    key = _key(secret_key)
    cur = conn.execute(
        "SELECT t.id, t.pump_no, t.nozzle_no FROM nozzle_tokens t JOIN nozzles n USING"
        " (station_id, pump_no, nozzle_no) WHERE t.station_id = %s AND t.revoked_at IS NULL AND n.active",
        (station_id,),
    )
    out: dict[tuple[int, int], str] = {}
    for r in cur.fetchall():
        rid, pump_no, nozzle_no = (r["id"], r["pump_no"], r["nozzle_no"]) if isinstance(r, dict) else r
        out[(int(pump_no), int(nozzle_no))] = make_token(
            key, int(rid), station_id, int(pump_no), int(nozzle_no)
        )
    return out
