"""The points ledger (migration 0020): double-entry accounts, transfers and entries, earned lots with
rolling expiry, and two-phase redemption holds behind a barrier table.

Every write runs in the caller's transaction and writes its audit row there. Every operation that
touches a user's points locks that user's account first, then the system accounts in id order, so two
phones redeeming at once are serialised and no two writers wait on each other in a cycle.

A user's balance is the points they can use; it equals the sum of their lots' remaining points, except
after a refund took back points already spent: the balance is then negative (a debt that the next
earnings repay first) and every lot is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from loyalty import HoldState, Lot, expiry_for, next_hold_state, refund_share, take_fifo
from store import _audit

SYSTEM = ("issued", "held", "redeemed", "expired", "reversed")


def _x(conn: psycopg.Connection, query: Any, params: Any = None) -> psycopg.Cursor[Any]:
    """Run a statement with tuple rows, whatever row factory the caller's connection has."""
    return conn.cursor(row_factory=tuple_row).execute(query, params)


class InsufficientPoints(ValueError):
    """A redemption asks for more unexpired points than the user has."""


# ---- accounts and transfers ---------------------------------------------------------------------------


def system_account(conn: psycopg.Connection, kind: str) -> int:
    row = _x(conn, "SELECT id FROM ledger_accounts WHERE name = %s", (f"system:{kind}",)).fetchone()
    assert row is not None, f"system account {kind} missing (migration 0020)"
    return int(row[0])


def user_account(conn: psycopg.Connection, user_id: int, *, lock: bool = False) -> tuple[int, int]:
    """(account id, balance) of the user's points account, created on first use; locked FOR UPDATE when
    asked (the first lock every user operation takes)."""
    _x(
        conn,
        "INSERT INTO ledger_accounts (name, kind, user_id) VALUES (%s, 'user', %s) ON CONFLICT DO NOTHING",
        (f"user:{user_id}", user_id),
    )
    row = _x(
        conn,
        "SELECT id, balance FROM ledger_accounts WHERE user_id = %s" + (" FOR NO KEY UPDATE" if lock else ""),
        (user_id,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def transfer(
    conn: psycopg.Connection,
    *,
    ref: str,
    kind: str,
    from_account: int,
    to_account: int,
    amount: int,
    user_id: int | None,
    out_trade_no: str | None = None,
    actor: str,
) -> int | None:
    """Move `amount` points between two accounts: one transfer, two entries summing to zero, each with
    the account's previous and current balance and new version. None when `ref` was used before (the
    repeat changes nothing). Call with the user's account already locked."""
    if amount <= 0:
        raise ValueError("a transfer moves a positive amount")
    sides = sorted(((from_account, -amount), (to_account, amount)))
    # the accounts first, in id order, FOR NO KEY UPDATE: other transfers' foreign keys take KEY SHARE
    # locks on the same rows, which this lock does not wait for (FOR UPDATE would, and deadlock)
    _x(
        conn,
        "SELECT id FROM ledger_accounts WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
        ([a for a, _ in sides],),
    )
    row = _x(
        conn,
        "INSERT INTO ledger_transfers (ref, kind, from_account_id, to_account_id, amount, user_id, out_trade_no)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (ref) DO NOTHING RETURNING id",
        (ref, kind, from_account, to_account, amount, user_id, out_trade_no),
    ).fetchone()
    if row is None:
        return None
    transfer_id = int(row[0])
    for account, delta in sides:
        _x(
            conn,
            "WITH a AS (UPDATE ledger_accounts SET balance = balance + %(d)s, version = version + 1"
            " WHERE id = %(a)s RETURNING id, balance, version)"
            " INSERT INTO ledger_entries (transfer_id, account_id, amount, previous_balance, current_balance,"
            " account_version) SELECT %(t)s, id, %(d)s, balance - %(d)s, balance, version FROM a",
            {"d": delta, "a": account, "t": transfer_id},
        )
    _audit.record(
        conn,
        actor=actor,
        action="create",
        entity="ledger_transfer",
        entity_id=ref,
        old=None,
        new={"kind": kind, "from": from_account, "to": to_account, "amount": amount, "user_id": user_id},
    )
    return transfer_id


# ---- earning ---------------------------------------------------------------------------------------------


def earned_on_day(conn: psycopg.Connection, user_id: int, *, day_start: datetime, day_end: datetime) -> int:
    """Points the user earned with payments made in [day_start, day_end) (the daily cap's count)."""
    row = _x(
        conn,
        "SELECT coalesce(sum(points), 0) FROM points_lots WHERE user_id = %s AND earned_at >= %s AND earned_at < %s",
        (user_id, day_start, day_end),
    ).fetchone()
    return int(row[0]) if row else 0


def redeemed_on_day(conn: psycopg.Connection, user_id: int, *, day_start: datetime, day_end: datetime) -> int:
    """Points the user redeemed (held or posted, not voided) on orders made in [day_start, day_end)."""
    row = _x(
        conn,
        "SELECT coalesce(sum(points), 0) FROM points_holds WHERE user_id = %s AND state <> 'voided'"
        " AND created_at >= %s AND created_at < %s",
        (user_id, day_start, day_end),
    ).fetchone()
    return int(row[0]) if row else 0


def earn(
    conn: psycopg.Connection,
    *,
    user_id: int,
    out_trade_no: str,
    points: int,
    earned_at: datetime,
    expiry_months: int,
    actor: str,
) -> int:
    """Credit what a payment earned (once per payment: a replay earns nothing and returns 0). The points
    form a lot expiring `expiry_months` later; a debt left by an earlier refund is repaid first."""
    account, _ = user_account(conn, user_id, lock=True)
    if points <= 0:
        return 0
    tid = transfer(
        conn,
        ref=f"earn:{out_trade_no}",
        kind="earn",
        from_account=system_account(conn, "issued"),
        to_account=account,
        amount=points,
        user_id=user_id,
        out_trade_no=out_trade_no,
        actor=actor,
    )
    if tid is None:
        return 0
    balance = int(_x(conn, "SELECT balance FROM ledger_accounts WHERE id = %s", (account,)).fetchone()[0])  # type: ignore[index]
    _x(
        conn,
        "INSERT INTO points_lots (user_id, source_transfer_id, points, remaining, earned_at, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (user_id, tid, points, max(0, min(points, balance)), earned_at, expiry_for(earned_at, expiry_months)),
    )
    return points


def _live_lots(conn: psycopg.Connection, user_id: int) -> list[Lot]:
    rows = _x(
        conn,
        "SELECT id, remaining, expires_at FROM points_lots WHERE user_id = %s AND remaining > 0"
        " ORDER BY expires_at, id FOR UPDATE",
        (user_id,),
    ).fetchall()
    return [Lot(int(r[0]), int(r[1]), r[2]) for r in rows]


def _take_lots(
    conn: psycopg.Connection, user_id: int, points: int, *, now: datetime
) -> list[tuple[int, int]]:
    try:
        taken = take_fifo(_live_lots(conn, user_id), points, now=now)
    except ValueError as exc:
        raise InsufficientPoints(str(exc)) from None
    for lot_id, n in taken:
        _x(conn, "UPDATE points_lots SET remaining = remaining - %s WHERE id = %s", (n, lot_id))
    return taken


def redeemable(conn: psycopg.Connection, user_id: int, *, now: datetime) -> int:
    """Points a redemption can use now: unexpired lots, never more than the balance."""
    row = _x(
        conn,
        "SELECT coalesce(sum(remaining), 0) FROM points_lots WHERE user_id = %s AND remaining > 0"
        " AND expires_at > %s",
        (user_id, now),
    ).fetchone()
    _, balance = user_account(conn, user_id)
    return max(0, min(int(row[0]) if row else 0, balance))


# ---- two-phase holds ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    ref: str
    user_id: int | None
    points: int
    fen_off: int
    state: str


def _barrier(conn: psycopg.Connection, ref: str, phase: str) -> bool:
    """True the first time (ref, phase) runs."""
    cur = _x(
        conn,
        "INSERT INTO points_hold_barriers (ref, phase) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (ref, phase),
    )
    return cur.rowcount == 1


def get_hold(conn: psycopg.Connection, ref: str, *, for_update: bool = False) -> Hold | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT ref, user_id, points, fen_off, state FROM points_holds WHERE ref = %s"
            + (" FOR UPDATE" if for_update else ""),
            (ref,),
        )
        row = cur.fetchone()
    return None if row is None else Hold(**row)


def _set_state(
    conn: psycopg.Connection, hold: Hold, state: HoldState, transfer_id: int | None, actor: str
) -> None:
    _x(
        conn,
        "UPDATE points_holds SET state = %s, resolve_transfer_id = coalesce(%s, resolve_transfer_id),"
        " updated_at = now() WHERE ref = %s",
        (state.value, transfer_id, hold.ref),
    )
    _audit.record(
        conn,
        actor=actor,
        action="update",
        entity="points_hold",
        entity_id=hold.ref,
        old={"state": hold.state},
        new={"state": state.value},
    )


def hold(
    conn: psycopg.Connection, *, user_id: int, ref: str, points: int, fen_off: int, now: datetime, actor: str
) -> Hold:
    """Take `points` from the user's unexpired lots (FIFO) into the held account for the order `ref`.
    A repeat returns the stored hold; a hold whose void came first takes nothing and comes back voided.
    InsufficientPoints when the unexpired lots or the balance hold fewer points."""
    account, balance = user_account(conn, user_id, lock=True)
    existing = get_hold(conn, ref, for_update=True)
    if existing is not None:
        next_hold_state(HoldState(existing.state), "hold")  # every state takes a repeat
        return existing
    _barrier(conn, ref, "hold")
    if points > balance:
        raise InsufficientPoints(f"{points} points asked, the balance is {balance}")
    taken = _take_lots(conn, user_id, points, now=now) if points else []
    _x(
        conn,
        "INSERT INTO points_holds (ref, user_id, points, fen_off, state) VALUES (%s, %s, %s, %s, 'pending')",
        (ref, user_id, points, fen_off),
    )
    for lot_id, n in taken:
        _x(conn, "INSERT INTO points_hold_lots (ref, lot_id, points) VALUES (%s, %s, %s)", (ref, lot_id, n))
    tid = None
    if points:
        tid = transfer(
            conn,
            ref=f"hold:{ref}",
            kind="hold",
            from_account=account,
            to_account=system_account(conn, "held"),
            amount=points,
            user_id=user_id,
            out_trade_no=ref,
            actor=actor,
        )
        _x(conn, "UPDATE points_holds SET hold_transfer_id = %s WHERE ref = %s", (tid, ref))
    _audit.record(
        conn,
        actor=actor,
        action="create",
        entity="points_hold",
        entity_id=ref,
        old=None,
        new={"user_id": user_id, "points": points, "fen_off": fen_off, "state": "pending"},
    )
    return Hold(ref, user_id, points, fen_off, "pending")


def _lock_owner(conn: psycopg.Connection, ref: str) -> Hold | None:
    """The hold, with its user's account locked before the hold row (the one lock order)."""
    found = get_hold(conn, ref)
    if found is not None and found.user_id is not None:
        user_account(conn, found.user_id, lock=True)
    return get_hold(conn, ref, for_update=True)


def post(conn: psycopg.Connection, ref: str, *, actor: str) -> str:
    """The order was paid: the held points are redeemed. 'posted', 'already', 'none' (no hold for the
    order, nothing to post). InvalidHoldTransition for a voided hold."""
    found = _lock_owner(conn, ref)
    if found is None:
        return "none"
    new = next_hold_state(HoldState(found.state), "post")
    if not _barrier(conn, ref, "post") or found.state == new:
        return "already"
    tid = None
    if found.points:
        tid = transfer(
            conn,
            ref=f"post:{ref}",
            kind="post",
            from_account=system_account(conn, "held"),
            to_account=system_account(conn, "redeemed"),
            amount=found.points,
            user_id=found.user_id,
            out_trade_no=ref,
            actor=actor,
        )
    _set_state(conn, found, new, tid, actor)
    return "posted"


def void(conn: psycopg.Connection, ref: str, *, actor: str) -> str:
    """The order failed, expired or was unlocked: the held points go back to the lots they came from.
    'voided', 'already', 'early' (no hold yet: the barrier refuses a later one). InvalidHoldTransition for
    a posted hold (a paid order's points are returned by its refund)."""
    found = _lock_owner(conn, ref)
    if found is None:
        if _barrier(conn, ref, "void"):
            _x(
                conn,
                "INSERT INTO points_holds (ref, user_id, points, fen_off, state) VALUES (%s, NULL, 0, 0, 'voided')"
                " ON CONFLICT DO NOTHING",
                (ref,),
            )
            _audit.record(
                conn, actor=actor, action="create", entity="points_hold", entity_id=ref, old=None,
                new={"state": "voided", "before_hold": True},
            )  # fmt: skip
        return "early"
    new = next_hold_state(HoldState(found.state), "void")
    if not _barrier(conn, ref, "void") or found.state == new:
        return "already"
    tid = None
    if found.points and found.user_id is not None:
        account, _ = user_account(conn, found.user_id)
        tid = transfer(
            conn,
            ref=f"void:{ref}",
            kind="void",
            from_account=system_account(conn, "held"),
            to_account=account,
            amount=found.points,
            user_id=found.user_id,
            out_trade_no=ref,
            actor=actor,
        )
        _x(
            conn,
            "UPDATE points_lots l SET remaining = l.remaining + h.points FROM points_hold_lots h"
            " WHERE h.ref = %s AND h.lot_id = l.id",
            (ref,),
        )
    _set_state(conn, found, new, tid, actor)
    return "voided"


# ---- refunds ------------------------------------------------------------------------------------------


def _payment_sums(conn: psycopg.Connection, out_trade_no: str) -> dict[str, int]:
    rows = _x(
        conn,
        "SELECT kind, coalesce(sum(amount), 0) FROM ledger_transfers WHERE out_trade_no = %s GROUP BY kind",
        (out_trade_no,),
    ).fetchall()
    return {str(k): int(v) for k, v in rows}


def reverse_for_refund(
    conn: psycopg.Connection,
    *,
    out_trade_no: str,
    out_refund_no: str,
    refunded_fen: int,
    paid_fen: int,
    now: datetime,
    actor: str,
) -> tuple[int, int]:
    """After a refund succeeded (refunded_fen: every successful refund of the payment so far): take back
    the share of the points the payment earned and give back the share of the points it redeemed,
    both `points * refunded_fen // paid_fen` in total (so a full refund reverses exactly), less what
    earlier refunds already moved. Once per refund. (points taken back, points given back)."""
    row = _x(
        conn,
        "SELECT user_id FROM ledger_transfers WHERE out_trade_no = %s AND user_id IS NOT NULL LIMIT 1",
        (out_trade_no,),
    ).fetchone()
    if row is None:
        return 0, 0
    user_id = int(row[0])
    account, _ = user_account(conn, user_id, lock=True)
    sums = _payment_sums(conn, out_trade_no)
    take = refund_share(sums.get("earn", 0), refunded_fen=refunded_fen, paid_fen=paid_fen)
    take -= sums.get("reverse_earn", 0)
    give = refund_share(sums.get("post", 0), refunded_fen=refunded_fen, paid_fen=paid_fen)
    give -= sums.get("return_redeemed", 0)
    took = gave = 0
    if take > 0 and transfer(
        conn, ref=f"reverse-earn:{out_refund_no}", kind="reverse_earn", from_account=account,
        to_account=system_account(conn, "reversed"), amount=take, user_id=user_id,
        out_trade_no=out_trade_no, actor=actor,
    ) is not None:  # fmt: skip
        took = take
        _drain_lots(conn, user_id, take, prefer_source=f"earn:{out_trade_no}")
    if give > 0 and transfer(
        conn, ref=f"return-redeemed:{out_refund_no}", kind="return_redeemed",
        from_account=system_account(conn, "redeemed"), to_account=account, amount=give, user_id=user_id,
        out_trade_no=out_trade_no, actor=actor,
    ) is not None:  # fmt: skip
        gave = give
        _refill_lots(conn, user_id, out_trade_no, give)
    return took, gave


def _drain_lots(conn: psycopg.Connection, user_id: int, points: int, *, prefer_source: str) -> None:
    """Empty `points` from the user's lots: the earning's own lot first, then the others by expiry
    (expired ones included: they were never spent). What the lots lack is the account's debt."""
    rows = _x(
        conn,
        "SELECT l.id, l.remaining FROM points_lots l JOIN ledger_transfers t ON t.id = l.source_transfer_id"
        " WHERE l.user_id = %s AND l.remaining > 0 ORDER BY (t.ref = %s) DESC, l.expires_at, l.id FOR UPDATE OF l",
        (user_id, prefer_source),
    ).fetchall()
    need = points
    for lot_id, remaining in rows:
        if need == 0:
            break
        n = min(need, int(remaining))
        _x(conn, "UPDATE points_lots SET remaining = remaining - %s WHERE id = %s", (n, lot_id))
        need -= n


def _refill_lots(conn: psycopg.Connection, user_id: int, ref: str, points: int) -> None:
    """Give redeemed points back to the lots the hold took them from (with their own expiry), as far as
    the balance is not a debt."""
    (balance,) = _x(conn, "SELECT balance FROM ledger_accounts WHERE user_id = %s", (user_id,)).fetchone()  # type: ignore[misc]
    room = max(0, min(points, int(balance) - _lots_total(conn, user_id)))
    for lot_id, n in _x(
        conn, "SELECT lot_id, points FROM points_hold_lots WHERE ref = %s ORDER BY lot_id", (ref,)
    ).fetchall():
        if room == 0:
            break
        k = min(room, int(n))
        _x(
            conn,
            "UPDATE points_lots SET remaining = least(points, remaining + %s) WHERE id = %s",
            (k, lot_id),
        )
        room -= k


def _lots_total(conn: psycopg.Connection, user_id: int) -> int:
    row = _x(
        conn, "SELECT coalesce(sum(remaining), 0) FROM points_lots WHERE user_id = %s", (user_id,)
    ).fetchone()
    return int(row[0]) if row else 0


# ---- expiry ----------------------------------------------------------------------------------------------


def expire_due(conn: psycopg.Connection, *, now: datetime, limit: int = 1_000, actor: str) -> int:
    """Expire the lots due by `now` (at most `limit` lots, oldest first): their remaining points move to
    the expired account. Safe to run again and from two workers (each lot expires once). Points expired."""
    lots = _x(
        conn,
        "SELECT id, user_id FROM points_lots WHERE remaining > 0 AND expires_at <= %s ORDER BY expires_at, id LIMIT %s",
        (now, limit),
    ).fetchall()
    total = 0
    expired = system_account(conn, "expired")
    for lot_id, user_id in lots:
        account, balance = user_account(conn, int(user_id), lock=True)
        row = _x(
            conn, "SELECT remaining FROM points_lots WHERE id = %s AND remaining > 0 FOR UPDATE", (lot_id,)
        ).fetchone()
        if row is None:
            continue
        n = min(int(row[0]), max(0, balance))
        _x(conn, "UPDATE points_lots SET remaining = 0 WHERE id = %s", (lot_id,))
        if n > 0:
            transfer(
                conn, ref=f"expire:{lot_id}", kind="expire", from_account=account, to_account=expired,
                amount=n, user_id=int(user_id), actor=actor,
            )  # fmt: skip
            total += n
    return total


# ---- reading and checking --------------------------------------------------------------------------------


def verify(conn: psycopg.Connection, *, account_ids: list[int] | None = None) -> list[str]:
    """Every way the ledger disagrees with itself (an empty list: it agrees): a transfer whose entries do
    not sum to zero, a stored balance or version other than its entries say, an entry chain with a gap,
    the held account other than the pending holds, a user's lots other than the balance."""
    problems: list[str] = []
    ids = account_ids
    if ids is None:
        for tid, total, n in _x(
            conn,
            "SELECT transfer_id, sum(amount), count(*) FROM ledger_entries GROUP BY transfer_id"
            " HAVING sum(amount) <> 0 OR count(*) <> 2",
        ).fetchall():
            problems.append(f"transfer {tid}: {n} entries summing to {total}")
        row = _x(
            conn,
            "SELECT (SELECT coalesce(sum(balance), 0) FROM ledger_accounts),"
            " (SELECT coalesce(sum(amount), 0) FROM ledger_entries)",
        ).fetchone()
        if row and (int(row[0]) != 0 or int(row[1]) != 0):
            problems.append(f"the ledger does not sum to zero: balances {row[0]}, entries {row[1]}")
    for aid, balance, version, esum, ecount, emax in _x(
        conn,
        "SELECT a.id, a.balance, a.version, coalesce(e.s, 0), coalesce(e.c, 0), coalesce(e.m, 0)"
        " FROM ledger_accounts a LEFT JOIN (SELECT account_id, sum(amount) s, count(*) c, max(account_version) m"
        " FROM ledger_entries WHERE %(ids)s::bigint[] IS NULL OR account_id = ANY(%(ids)s) GROUP BY account_id) e"
        " ON e.account_id = a.id WHERE %(ids)s::bigint[] IS NULL OR a.id = ANY(%(ids)s)",
        {"ids": ids},
    ).fetchall():
        if balance != esum:
            problems.append(f"account {aid}: balance {balance}, entries sum to {esum}")
        if not version == ecount == emax:
            problems.append(f"account {aid}: version {version}, {ecount} entries, last version {emax}")
    for aid, ver in _x(
        conn,
        "SELECT account_id, account_version FROM (SELECT account_id, account_version, previous_balance,"
        " lag(current_balance, 1, 0::bigint) OVER (PARTITION BY account_id ORDER BY account_version) AS before"
        " FROM ledger_entries WHERE %(ids)s::bigint[] IS NULL OR account_id = ANY(%(ids)s)) x"
        " WHERE previous_balance <> before",
        {"ids": ids},
    ).fetchall():
        problems.append(f"account {aid}: entry version {ver} does not follow the previous balance")
    if ids is None:
        row = _x(
            conn,
            "SELECT (SELECT balance FROM ledger_accounts WHERE name = 'system:held'),"
            " (SELECT coalesce(sum(points), 0) FROM points_holds WHERE state = 'pending')",
        ).fetchone()
        if row and int(row[0]) != int(row[1]):
            problems.append(f"held account {row[0]}, pending holds {row[1]}")
        for uid, balance, lots in _x(
            conn,
            "SELECT a.user_id, a.balance, coalesce(sum(l.remaining), 0) FROM ledger_accounts a"
            " LEFT JOIN points_lots l ON l.user_id = a.user_id WHERE a.kind = 'user'"
            " GROUP BY a.user_id, a.balance HAVING coalesce(sum(l.remaining), 0) <> greatest(a.balance, 0)",
        ).fetchall():
            problems.append(f"user {uid}: balance {balance}, lots hold {lots}")
    return problems


def summary(conn: psycopg.Connection, user_id: int, *, now: datetime, soon_until: datetime) -> dict[str, Any]:
    """Balance, redeemable now, pending holds and the lots expiring before soon_until (by date)."""
    _, balance = user_account(conn, user_id)
    held = _x(
        conn,
        "SELECT ref, points, fen_off, created_at FROM points_holds WHERE user_id = %s AND state = 'pending'"
        " AND points > 0 ORDER BY created_at LIMIT 20",
        (user_id,),
    ).fetchall()
    soon = _x(
        conn,
        "SELECT expires_at, sum(remaining) FROM points_lots WHERE user_id = %s AND remaining > 0"
        " AND expires_at > %s AND expires_at <= %s GROUP BY expires_at ORDER BY expires_at LIMIT 50",
        (user_id, now, soon_until),
    ).fetchall()
    return {
        "balance": balance,
        "redeemable": redeemable(conn, user_id, now=now),
        "pending": [
            {"out_trade_no": r[0], "points": int(r[1]), "fen_off": int(r[2]), "held_at": r[3]} for r in held
        ],
        "expiring": [{"expires_at": r[0], "points": int(r[1])} for r in soon],
    }


def history(
    conn: psycopg.Connection, user_id: int, *, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """The user's account entries, newest first, at most `limit`, older than entry `before_id`."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT e.id, t.kind, e.amount, e.current_balance AS balance, t.out_trade_no, e.created_at"
            " FROM ledger_entries e JOIN ledger_transfers t ON t.id = e.transfer_id"
            " JOIN ledger_accounts a ON a.id = e.account_id"
            " WHERE a.user_id = %s AND (%s::bigint IS NULL OR e.id < %s) ORDER BY e.id DESC LIMIT %s",
            (user_id, before_id, before_id, limit),
        )
        return list(cur.fetchall())
