"""Membership (migration 0021): tiers are data (membership_tiers); a user's tier is the highest whose
minimum the user's paid spend over the last 12 months reaches (paid amounts net of refunds, of the user's
paid fill-ups). `tier_of(conn, user_id)` is what points and pricing ask."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

SPEND_WINDOW = "12 months"  # the spend that counts for a tier


@dataclass(frozen=True)
class Tier:
    code: str
    rank: int
    name: str
    name_en: str
    min_spend_fen: int
    earn_multiplier: Decimal


@dataclass(frozen=True)
class Membership:
    tier: Tier
    spend_fen: int  # the last 12 months' paid spend, net of refunds
    next_tier: Tier | None
    tiers_held: frozenset[str]  # the codes of the user's tier and every lower one (promotion conditions)


def tiers(conn: psycopg.Connection) -> list[Tier]:
    """Every tier, lowest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT code, rank, name, name_en, min_spend_fen, earn_multiplier FROM membership_tiers ORDER BY rank"
        )
        return [Tier(**r) for r in cur.fetchall()]


def tier_for_spend(all_tiers: list[Tier], spend_fen: int) -> tuple[Tier, Tier | None]:
    """(the tier a spend reaches, the next tier up or None). `all_tiers` lowest first, the first at 0."""
    reached = [t for t in all_tiers if t.min_spend_fen <= spend_fen]
    tier = reached[-1] if reached else all_tiers[0]
    higher = [t for t in all_tiers if t.rank > tier.rank]
    return tier, (higher[0] if higher else None)


def spend_of(conn: psycopg.Connection, user_id: int, *, at: datetime | None = None) -> int:
    """The user's paid spend (net of refunds) in the 12 months up to `at` (now), in fen."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT coalesce(sum(p.paid_fen - p.refunded_fen), 0) AS spend FROM sale_payments sp"
            " JOIN payments p USING (out_trade_no)"
            " WHERE sp.user_id = %(user)s AND p.state = 'paid'"
            " AND p.paid_at > coalesce(%(at)s, now()) - %(window)s::interval"
            " AND p.paid_at <= coalesce(%(at)s, now())",
            {"user": user_id, "at": at, "window": SPEND_WINDOW},
        )
        row: Any = cur.fetchone()
    return int(row["spend"])


def membership(conn: psycopg.Connection, user_id: int, *, at: datetime | None = None) -> Membership:
    """The user's tier now (or at `at`), the spend it comes from and the next tier."""
    all_tiers = tiers(conn)
    spend = spend_of(conn, user_id, at=at)
    tier, nxt = tier_for_spend(all_tiers, spend)
    held = frozenset(t.code for t in all_tiers if t.rank <= tier.rank)
    return Membership(tier, spend, nxt, held)


def tier_of(conn: psycopg.Connection, user_id: int, *, at: datetime | None = None) -> Tier:
    """The user's membership tier (from the last 12 months' spend up to `at`, default now)."""
    return membership(conn, user_id, at=at).tier
