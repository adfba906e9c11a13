"""`evaluate(conn, point, facts)`: one risk evaluation, logged. The connection (and Redis, for velocity
windows) is injected by the caller; the decision itself is risk._engine.decide (pure)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import psycopg

from risk._engine import decide
from risk._errors import RiskDenied, RiskHeld
from risk._model import Decision, Fired
from risk._velocity import Window, observe
from store import _risk


def evaluate(
    conn: psycopg.Connection,
    point: str,
    facts: Mapping[str, Any],
    *,
    subject: Mapping[str, Any] | None = None,
    hashes: Mapping[str, str] | None = None,
    redis: Any = None,
    windows: Sequence[Window] = (),
    approved_keys: Iterable[str] = (),
    action: Mapping[str, Any] | None = None,
    pending_keys: Sequence[str] = (),
    now_s: float | None = None,
    namespace: str = "",
) -> Decision:
    """Evaluate the rules of `point` ('bind', 'pay', 'redeem', 'price') on `facts`, plus the velocity
    `windows` counted in `redis` and the deny/allow lists checked for `hashes` ({subject: keyed hash});
    log the decision in `conn`'s transaction and return it (with its id). `approved_keys`: subject keys
    under which an operator's earlier review at this point answers a retry (approved: allow, rejected:
    deny) instead of holding it again. `action`: what approving the decision does (a held price to
    publish). `pending_keys`: subject keys under which a decision still awaiting review at this point
    answers a repeat held again (that decision comes back; nothing new is logged: store._risk.log_decision)."""
    all_facts: dict[str, Any] = dict(facts)
    if windows:
        counts = (
            observe(redis, windows, time.time() if now_s is None else now_s, namespace=namespace)
            if redis is not None
            else {}
        )
        all_facts["velocity_available"] = bool(counts)
        all_facts.update(counts)
    deny, allow = _risk.listed(conn, hashes or {})
    d = decide(_risk.current_ruleset(conn), point, all_facts, deny_listed=deny, allow_listed=allow)
    subj = dict(subject or {})
    keys = list(approved_keys)
    if d.outcome == "review" and keys and all(k in subj for k in keys):
        reviewed = _risk.reviewed_for(conn, point, subj, keys)
        if reviewed is not None:
            rid, state = reviewed
            outcome = "allow" if state == "approved" else "deny"
            note = Fired(f"review_{state}", outcome, f"an operator {state} decision {rid}", state)
            d = replace(d, outcome=outcome, fired=(*d.fired, note))
    return _risk.log_decision(conn, d, subject=subj, action=action, pending_keys=pending_keys)


def enforce(d: Decision) -> Decision:
    """Raise RiskDenied on deny and RiskHeld on review (the message names the reasons and the decision);
    the decision otherwise."""
    if d.outcome == "deny":
        raise RiskDenied(f"refused by risk control (decision {d.id}): {'; '.join(d.reasons)}", d.id)
    if d.outcome == "review":
        raise RiskHeld(
            f"held for review by an operator (decision {d.id}): {'; '.join(d.reasons)}; retry once approved",
            d.id,
        )
    return d
