"""Section `ledger`: points ledger throughput (transfers per second, one and four writers, against a plain
one-row insert per transaction measured in the same run) and the time to verify every balance of 100k
accounts from their entries (10k with --quick), against a plain scan of the same entries."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg

from benchmarks._common import Ctx, bench_database


def _users(url: str, n: int) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "INSERT INTO users (openid) SELECT 'bench-' || g FROM generate_series(1, %s) g RETURNING id", (n,)
        ).fetchall()
    return [int(r[0]) for r in rows]


def _earn_writer(url: str, users: list[int], n: int, tag: str, seed: int) -> None:
    from store import _ledger

    rng = random.Random(seed)
    at = datetime.now().astimezone() - timedelta(days=1)
    with psycopg.connect(url) as conn:
        for i in range(n):
            with conn.transaction():
                _ledger.earn(
                    conn,
                    user_id=rng.choice(users),
                    out_trade_no=f"{tag}-{i}",
                    points=rng.randint(1, 500),
                    earned_at=at,
                    expiry_months=12,
                    actor="bench",
                )


def _plain_writer(url: str, n: int) -> None:
    with psycopg.connect(url) as conn:
        for i in range(n):
            with conn.transaction():
                conn.execute("INSERT INTO bench_plain (v) VALUES (%s)", (i,))


def _rate(writers: int, total: int, target: Any) -> float:
    errors: list[BaseException] = []

    def run(w: int) -> None:
        try:
            target(w, total // writers)
        except BaseException as exc:  # a writer that fails fails the section (a deadlock, say)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return total / (time.perf_counter() - t0)


def _bulk_accounts(url: str, n: int) -> None:
    """n users, each with an account credited once by one transfer (two entries), in set-based SQL."""
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("INSERT INTO users (openid) SELECT 'verify-' || g FROM generate_series(1, %s) g", (n,))
        conn.execute(
            "INSERT INTO ledger_accounts (name, kind, user_id, balance, version)"
            " SELECT 'user:' || id, 'user', id, 0, 0 FROM users WHERE openid LIKE 'verify-%'"
        )
        conn.execute(
            "CREATE TEMP TABLE b AS SELECT a.id AS account_id, a.user_id, 100 + a.id % 900 AS amount,"
            " row_number() OVER (ORDER BY a.id) AS rn FROM ledger_accounts a"
            " JOIN users u ON u.id = a.user_id WHERE u.openid LIKE 'verify-%'"
        )
        issued = conn.execute(
            "SELECT id, balance, version FROM ledger_accounts WHERE name = 'system:issued'"
        ).fetchone()
        assert issued is not None
        iid, ibal, iver = issued
        conn.execute(
            "INSERT INTO ledger_transfers (ref, kind, from_account_id, to_account_id, amount, user_id)"
            " SELECT 'bulk-' || account_id, 'adjust', %s, account_id, amount, user_id FROM b",
            (iid,),
        )
        conn.execute(
            "INSERT INTO ledger_entries (transfer_id, account_id, amount, previous_balance, current_balance,"
            " account_version) SELECT t.id, b.account_id, b.amount, 0, b.amount, 1 FROM b"
            " JOIN ledger_transfers t ON t.ref = 'bulk-' || b.account_id"
        )
        conn.execute(
            "INSERT INTO ledger_entries (transfer_id, account_id, amount, previous_balance, current_balance,"
            " account_version) SELECT t.id, %s, -b.amount, %s - sum(b.amount) OVER w + b.amount,"
            " %s - sum(b.amount) OVER w, %s + b.rn FROM b JOIN ledger_transfers t ON t.ref = 'bulk-' || b.account_id"
            " WINDOW w AS (ORDER BY b.rn)",
            (iid, ibal, ibal, iver),
        )
        conn.execute(
            "UPDATE ledger_accounts a SET balance = b.amount, version = 1 FROM b WHERE a.id = b.account_id"
        )
        conn.execute(
            "UPDATE ledger_accounts SET balance = balance - (SELECT sum(amount) FROM b),"
            " version = version + (SELECT count(*) FROM b) WHERE id = %s",
            (iid,),
        )
        conn.execute(
            "INSERT INTO points_lots (user_id, source_transfer_id, points, remaining, earned_at, expires_at)"
            " SELECT b.user_id, t.id, b.amount, b.amount, now(), now() + interval '1 year' FROM b"
            " JOIN ledger_transfers t ON t.ref = 'bulk-' || b.account_id"
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def ledger(ctx: Ctx) -> None:
    from store import _ledger

    total = int(ctx.n(2_000, 400))
    accounts = int(ctx.n(100_000, 10_000))
    sec = ctx.report.section("11. Points ledger: transfers per second, verifying every balance")
    sec.text += [
        "Earn transfers (one per transaction: lock the user's account, then the system account; a transfer row,",
        "two entries with previous/current balance and version, a lot, an audit row) by 1 and 4 writers over",
        f"{total} transfers to 200 users (seeded), against a plain one-row INSERT per transaction in the same run.",
        "Every transfer from `issued` locks that one system account: writers queue on it (as pgledger's do).",
        f"Then {accounts} accounts with one transfer each: the time of `store._ledger.verify` (every transfer",
        "sums to zero, every balance and version equals its entries, the entry chain, the lots) against a plain",
        "scan summing the same entries.",
    ]
    with bench_database() as url:
        users = _users(url, 200)
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE bench_plain (id bigserial PRIMARY KEY, v bigint)")
            conn.commit()
        rows = []
        rates: dict[str, float] = {}
        for writers in (1, 4):
            plain = _rate(writers, total, lambda w, n: _plain_writer(url, n))
            led = _rate(
                writers,
                total,
                lambda w, n, writers=writers: _earn_writer(url, users, n, f"w{writers}-{w}", ctx.seed + w),
            )
            rates[f"{writers}"] = led
            rows.append([writers, f"{led:.0f}", f"{plain:.0f}", f"{led / plain:.2f}"])
        with psycopg.connect(url) as conn:
            problems = _ledger.verify(conn)
        sec.tables.append((["writers", "ledger transfers/s", "plain inserts/s", "ratio"], rows))
        _bulk_accounts(url, accounts)
        with psycopg.connect(url) as conn:
            t0 = time.perf_counter()
            problems += _ledger.verify(conn)
            verify_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            conn.execute("SELECT account_id, sum(amount) FROM ledger_entries GROUP BY account_id").fetchall()
            scan_s = time.perf_counter() - t0
        sec.tables.append(
            (
                ["accounts", "verify s", "plain scan s", "ratio"],
                [[accounts, f"{verify_s:.2f}", f"{scan_s:.2f}", f"{verify_s / scan_s:.1f}"]],
            )
        )
        sec.data.update(
            rates=rates, verify_s=verify_s, scan_s=scan_s, accounts=accounts, problems=problems[:5]
        )
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(["1 writer", "4 writers"], [rates["1"], rates["4"]], color=["#4c72b0", "#dd8452"])
    ax.set_ylabel("earn transfers / s")
    ax.set_title("Points ledger throughput")
    ctx.report.save_plot(fig, "ledger_throughput", sec)
    ctx.report.bar("ledger verifies clean", not problems, f"{len(problems)} problems after the runs")
    ctx.report.bar(
        "ledger verify of every balance",
        verify_s < 60,
        f"{accounts} accounts in {verify_s:.2f} s ({verify_s / scan_s:.1f}x a plain scan)",
    )
