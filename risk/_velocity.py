"""Velocity facts: sliding windows in Redis sorted sets (score = time), shared by every API worker.

One window is a sorted set `risk:v:<name>:<subject>`; an observation adds a member and trims what left the
window, and the window's size is the fact. The member decides what is counted: a fresh event id counts
events (payments per payer per hour), a user id counts distinct users (different users binding one
nozzle). All windows of one evaluation go in one pipelined round trip. The Redis client is injected.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("risk.velocity")
PREFIX = "risk:v:"
MAX_WINDOW_S = 7 * 86_400


@dataclass(frozen=True)
class Window:
    fact: str  # the fact's name, e.g. "user_binds_1h"
    subject: str  # e.g. "user:42" (hashes for devices and plates)
    window_s: int
    member: str | None = None  # None: every observation counts (a fresh id)
    observe: bool = True  # False: read the window without adding to it


def observe(redis: Any, windows: Sequence[Window], now_s: float, *, namespace: str = "") -> dict[str, int]:
    """The size of every window after this observation, by fact name; {} when Redis cannot answer (the
    velocity rules then do not fire, and the decision's facts say velocity_available=false). `namespace`
    prefixes every key (the deployment's Redis prefix, FUEL_RATE_LIMIT_PREFIX)."""
    if not windows:
        return {}
    try:
        pipe = redis.pipeline(transaction=False)
        for w in windows:
            if not 0 < w.window_s <= MAX_WINDOW_S:
                raise ValueError(f"window {w.fact}: 1 s to 7 days")
            key = f"{namespace}{PREFIX}{w.fact}:{w.subject}"
            if w.observe:
                pipe.zadd(key, {w.member or uuid.uuid4().hex: now_s})
            pipe.zremrangebyscore(key, "-inf", now_s - w.window_s)
            pipe.zcard(key)
            if w.observe:
                pipe.expire(key, w.window_s + 60)
        answers = pipe.execute()
    except RedisError as exc:
        log.warning("velocity windows unavailable: %s", exc)
        return {}
    out: dict[str, int] = {}
    i = 0
    for w in windows:
        i += 1 if w.observe else 0
        out[w.fact] = int(answers[i + 1])
        i += 3 if w.observe else 2
    return out


def redeem_windows(
    *,
    user: str,
    device: str | None,
    plate: str | None,
    day: str,
    kind: str = "redemptions",
    event: str | None = None,
) -> list[Window]:
    """The windows of the `redeem` caps (per user, device and plate per local day `day`, e.g.
    "2026-11-26"): pass keyed hashes, never raw identifiers. `kind` names what is counted: "redemptions"
    (promotions: facts user_redemptions_1d ...) or "point_redemptions" (points at pay: facts
    user_point_redemptions_1d ...). `event` (e.g. the sale) makes a retry of the same redemption count once.
    For the points/promotions redemption path:
    risk.evaluate(conn, "redeem", {"station_redemption_ratio": ...}, windows=redeem_windows(...), ...)."""
    out = [Window(f"user_{kind}_1d", f"{user}:{day}", 86_400, member=event)]
    if device is not None:
        out.append(Window(f"device_{kind}_1d", f"{device}:{day}", 86_400, member=event))
    if plate is not None:
        out.append(Window(f"plate_{kind}_1d", f"{plate}:{day}", 86_400, member=event))
    return out
