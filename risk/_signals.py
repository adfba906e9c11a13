"""Pure signals that become facts: tank capacity by vehicle class, unusual hours, keyed hashes of client
identifiers, promotion redemption against peers, and price changes against history and neighbours."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo

# The largest common tank of each vehicle class, litres (a passenger car is 40-70 L, an SUV up to 100 L).
# A fill-up above the tank of the class the driver declared is either a wrong class or fuel for someone
# else (cash-out). An undeclared class counts as the largest passenger class.
TANK_LITRES: Mapping[str, int] = {
    "motorcycle": 25,
    "car": 70,
    "suv": 100,
    "van": 120,
    "truck": 600,
}
UNDECLARED_CLASS = "suv"
VEHICLE_CLASSES = tuple(TANK_LITRES)

# Hours (local, Asia/Shanghai in Lijiang) when few honest drivers fill up: 01:00 to 05:00.
UNUSUAL_HOURS = frozenset(range(1, 5))


def tank_litres(vehicle_class: str | None) -> int:
    return TANK_LITRES.get(vehicle_class or UNDECLARED_CLASS, TANK_LITRES[UNDECLARED_CLASS])


def unusual_hour(at: datetime, tz: tzinfo) -> bool:
    """Whether `at` (timezone-aware) falls in the unusual hours at the station's time zone."""
    if at.tzinfo is None:
        raise ValueError("a naive time: risk facts are timezone-aware")
    return at.astimezone(tz).hour in UNUSUAL_HOURS


def keyed_hash(key: str, subject: str, value: str) -> str:
    """HMAC-SHA256 of an identifier (a device fingerprint, a plate) under the server's secret: the same
    value maps to the same hash so windows and lists work, but the raw value is never stored."""
    msg = f"{subject}:{value}".encode()
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


def peer_ratio(mine: float, peers: Sequence[float]) -> float:
    """How many times the peers' median `mine` is (1.0: typical). With no or only idle peers, 1.0."""
    positive = [p for p in peers if p > 0]
    if not positive:
        return 1.0
    med = statistics.median(positive)
    return round(mine / med, 3)


def price_change_facts(
    new_fen: int, history_fen: Sequence[int], neighbours_fen: Sequence[int]
) -> dict[str, float | int]:
    """Facts of a price change for the `price` rules:
    - change_ratio: |new - last| / last;
    - history_z: the change in units of the station's typical step (the median absolute step of its own
      history, at least 5 fen), 0 with under 3 past prices;
    - neighbour_deviation: |new - median of neighbours| / that median, 0 with no neighbours."""
    facts: dict[str, float | int] = {"new_fen": new_fen, "change_ratio": 0.0, "history_z": 0.0}
    facts["neighbour_deviation"] = 0.0
    if history_fen:
        last = history_fen[-1]
        facts["last_fen"] = last
        facts["change_ratio"] = round(abs(new_fen - last) / last, 4) if last > 0 else 0.0
        steps = [abs(b - a) for a, b in itertools.pairwise(history_fen)]
        if len(history_fen) >= 3:
            typical = max(statistics.median(steps), 5)
            facts["history_z"] = round(abs(new_fen - last) / typical, 2)
    if neighbours_fen:
        med = statistics.median(neighbours_fen)
        facts["neighbour_deviation"] = round(abs(new_fen - med) / med, 4) if med > 0 else 0.0
    return facts
