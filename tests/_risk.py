"""Risk rules switched off for a test's own database, through the audited override store (the way an
operator does it), when the test compresses into a minute what drivers do over hours or days."""

from __future__ import annotations

import json

import psycopg

from risk import Rule
from store import _risk
from store._risk import RULES_FILE


def switch_off(db_url: str, *names: str) -> None:
    """Switch off the named rules of the versioned rules file in the database at db_url."""
    rules = {r["name"]: r for r in json.loads(RULES_FILE.read_text(encoding="utf-8"))["rules"]}
    with psycopg.connect(db_url) as conn, conn.transaction():
        for name in names:
            r = rules[name]
            rule = Rule(r["name"], r["point"], r["expr"], r["outcome"], r["reason"])
            _risk.put_override(conn, rule, enabled=False, actor="test-setup")
