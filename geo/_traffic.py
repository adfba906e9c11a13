"""Traffic model: historical speed profile (15-minute bins, weekday/weekend/holiday) + live overlay.

Speed of road edge `e` at absolute time `t` (Unix seconds) is ``edge_speed_mps[e] * factor(e, t)`` with
``factor`` in (0, 1]: the free-flow speed is the upper bound. That keeps the landmark lower bounds
(free-flow times) admissible. Live observations faster than free flow are clamped to 1.

Time is cut into absolute 15-minute bins ``B = floor(t / 900)``. Every region time zone has an offset
that is a multiple of 15 minutes, so absolute bins coincide with local 15-minute bins. The factor is
CONSTANT inside a bin (piecewise-constant speed):

- profile part: ``P(e, B) = profile[day_type(local date of B), class or edge override, local bin of B]``
  with the day type from ``Holidays.day_type`` on the local date in the region time zone;
- live part (if the edge has an observation with value ``x`` observed at ``o`` expiring at ``x_t``):
  for bins with ``floor(o/900) <= B`` and ``B*900 < x_t`` the weight is evaluated at the bin START
  (``w = 1`` in the bin containing ``o``, else ``w = max(0, 1 - (B*900 - o) / decay_s)``) and
  ``factor = w*min(x, 1) + (1 - w)*P``; otherwise ``factor = P``.
- closures: an edge with a ``closed`` observation is impassable for a query whose departure time
  ``t0`` satisfies ``floor(o/900)*900 <= t0 < x_t``. The closure is evaluated once per query at the
  departure time (see "Closures" below).

FIFO (leaving later never arrives earlier). The travel time of an edge (or part of one, length ``d``)
entered at ``t`` follows Ichoua-Gendreau-Potvin: the arrival ``a(t)`` solves
``integral_t^a(t) v(s) ds = d`` with ``v(s) = speed * factor(e, bin(s)) > 0``. ``v`` depends on the
absolute time only (not on the query or when the vehicle entered the edge). For ``t1 < t2``,
``integral_t1^a(t2) v = integral_t1^t2 v + d > d``, hence ``a(t1) < a(t2)`` because the integral is
strictly increasing in its upper limit: FIFO holds strictly, on every edge, and therefore along every
path (compositions of increasing functions are increasing). Time-dependent Dijkstra/A* with labels =
earliest arrival is thus exact (no waiting needed).

Closures. A closure that could start or end mid-trip would break label-setting optimality (arriving
earlier could be worse). Closures cannot start in the future (``observed_at <= now``), so we
evaluate them at departure: closed for the whole query. The only approximation is a closure that
ends mid-trip, treated as lasting the trip (conservative; a trip in one region takes hours at most).

Per-query table. For a query departing in bin ``B0`` the router builds ``table[k, key]`` for bins
``B0 .. B0+K-1`` (``K = 192``, two days: enough for any route in a region; bins beyond the horizon
repeat the table's last day). Keys are the road classes, then one key per edge with a per-edge profile
override. The live arrays are read by the kernel directly, so a query needs no Python callbacks.

Live updates come in batches, all-or-nothing, in two steps. `prepare` checks every item against the
intake rules (known edge, finite values, observed no later than now + ``skew_s`` and closures not after
now at all, not older than ``max_age_s``, expiring after the observation and at most ``max_ahead_s``
ahead, closures at most ``max_closure_s`` long); if any item is bad, `InvalidInput` lists all bad items
(index and reason) and nothing is returned. It returns the items as they are stored (edge id, Unix
times, a factor or a closure). `apply_stored` applies stored batches, each under its batch id.

Order. Per edge the observation with the greatest key ``(observed_at, batch id, index in the batch)``
wins; anything else is skipped (counted as ``stale``). Applying is therefore idempotent and does not
depend on the order batches arrive in: every worker that applies the same batches holds the same
overlay. `rebuild(through, batches)` replaces the overlay by the given batches after a clear (batch ids
up to ``through`` are then ignored for good). State is copy-on-write: a batch copies the arrays, writes,
and swaps one reference, so a reader that took ``snapshot()`` never sees half a batch.
"""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from config._region import Holidays
from geo._errors import InvalidInput
from geo._graph import CLASS_INDEX, ROAD_CLASSES, CompiledGraph

BIN_S = 900
BINS_PER_DAY = 96
DAY_TYPES: tuple[str, ...] = ("weekday", "weekend", "holiday")
DAY_TYPE_INDEX = {d: i for i, d in enumerate(DAY_TYPES)}
TABLE_BINS = 2 * BINS_PER_DAY
MAX_LIVE_FACTOR = 1.5


def _hm(h: int, m: int = 0) -> int:
    return (h * 60 + m) // 15


def _default_factors() -> np.ndarray:
    """[3, n_classes, 96] documented defaults (see module doc of `TrafficProfile`)."""
    f = np.ones((3, len(ROAD_CLASSES), BINS_PER_DAY))
    arterial = [
        CLASS_INDEX[c] for c in ROAD_CLASSES if c.startswith(("trunk", "primary", "secondary", "tertiary"))
    ]
    motorway = [CLASS_INDEX["motorway"], CLASS_INDEX["motorway_link"]]
    minor = [CLASS_INDEX[c] for c in ("unclassified", "residential", "living_street", "service", "road")]

    def band(row: np.ndarray, a: int, b: int, v: float) -> None:
        row[a:b] = np.minimum(row[a:b], v)

    for c in arterial:
        wd = f[0, c]
        band(wd, _hm(6, 30), _hm(22), 0.85)  # daytime
        band(wd, _hm(7), _hm(7, 30), 0.75)  # shoulders
        band(wd, _hm(7, 30), _hm(9, 30), 0.6)  # morning peak
        band(wd, _hm(9, 30), _hm(10), 0.75)
        band(wd, _hm(16, 30), _hm(17), 0.75)
        band(wd, _hm(17), _hm(19, 30), 0.6)  # evening peak
        band(wd, _hm(19, 30), _hm(20), 0.75)
        for d, bump in ((1, 0.75), (2, 0.65)):  # weekend / holiday: flatter, midday tourist bump
            row = f[d, c]
            band(row, _hm(7), _hm(22), 0.9)
            band(row, _hm(10), _hm(16), bump)
    for c in minor:
        band(f[0, c], _hm(6, 30), _hm(22), 0.92)
        band(f[0, c], _hm(7, 30), _hm(9, 30), 0.8)
        band(f[0, c], _hm(17), _hm(19, 30), 0.8)
        for d in (1, 2):
            band(f[d, c], _hm(8), _hm(22), 0.92)
            band(f[d, c], _hm(10), _hm(16), 0.85)
    for c in motorway:
        band(f[0, c], _hm(6, 30), _hm(22), 0.95)
        band(f[0, c], _hm(7, 30), _hm(9, 30), 0.85)
        band(f[0, c], _hm(17), _hm(19, 30), 0.85)
        for d in (1, 2):
            band(f[d, c], _hm(9), _hm(18), 0.9)
    return f


class TrafficProfile:
    """Historical factors per (day type, road class, 15-minute local bin), with per-edge overrides.

    Defaults (`TrafficProfile.default()`), night (22:00-06:30) 1.0 everywhere:
    - trunk/primary/secondary/tertiary (+ links), weekdays: 0.85 by day, peaks 07:30-09:30 and
      17:00-19:30 at 0.6 with 0.75 half-hour shoulders; weekends 0.9 by day and a 10:00-16:00 tourist
      bump at 0.75 (holidays 0.65).
    - motorway: 0.95 by day, 0.85 at the peaks; weekends/holidays 0.9 from 09:00 to 18:00.
    - residential and other minor roads: 0.92 by day, 0.8 at the peaks; weekends 0.92, 0.85 midday.
    """

    def __init__(self, factors: np.ndarray, edge_factors: Mapping[int, np.ndarray] | None = None) -> None:
        factors = np.array(factors, dtype=np.float64)
        if factors.shape != (3, len(ROAD_CLASSES), BINS_PER_DAY):
            raise InvalidInput("profile", f"factors must have shape (3, {len(ROAD_CLASSES)}, 96)")
        self.factors = factors
        self.edge_factors: dict[int, np.ndarray] = {}
        for e, arr in (edge_factors or {}).items():
            a = np.array(arr, dtype=np.float64)
            if a.shape != (3, BINS_PER_DAY):
                raise InvalidInput("profile", f"edge {e}: factors must have shape (3, 96)")
            self.edge_factors[int(e)] = a
        bad = [a for a in [self.factors, *self.edge_factors.values()] if not np.all((a > 0) & (a <= 1))]
        if bad:
            raise InvalidInput("profile", "every factor must be in (0, 1]")

    @classmethod
    def default(cls) -> TrafficProfile:
        return cls(_default_factors())

    @classmethod
    def flat(cls) -> TrafficProfile:
        """Free flow at all times (factor 1)."""
        return cls(np.ones((3, len(ROAD_CLASSES), BINS_PER_DAY)))

    @classmethod
    def from_file(cls, path: str | Path) -> TrafficProfile:
        """Defaults overridden by a JSON or CSV file.

        JSON: ``{"classes": {day_type: {road_class: [96 factors]}}, "edges": {edge_id: {day_type: [96]}}}``
        (either key optional). CSV with header ``day_type,road_class,bin,factor[,edge_id]``: one factor
        per row; rows with a non-empty ``edge_id`` set a per-edge factor (starting from its class
        profile; give ``road_class`` for such rows so the start is known, else ``residential``).
        Every bad row is reported together in one `InvalidInput` (param "profile").
        """
        path = Path(path)
        base = _default_factors()
        edges: dict[int, np.ndarray] = {}
        errors: list[str] = []

        def set_one(where: str, dt: str, cls_name: str, b: Any, v: Any, edge: Any = None) -> None:
            if dt not in DAY_TYPE_INDEX:
                errors.append(f"{where}: unknown day_type {dt!r}")
                return
            if edge is None and cls_name not in CLASS_INDEX:
                errors.append(f"{where}: unknown road_class {cls_name!r}")
                return
            try:
                bi, fv = int(b), float(v)
            except (TypeError, ValueError):
                errors.append(f"{where}: bin/factor not numeric")
                return
            if not 0 <= bi < BINS_PER_DAY:
                errors.append(f"{where}: bin {bi} outside 0..95")
                return
            if not (0 < fv <= 1) or math.isnan(fv):
                errors.append(f"{where}: factor {fv} outside (0, 1]")
                return
            if edge is None:
                base[DAY_TYPE_INDEX[dt], CLASS_INDEX[cls_name], bi] = fv
            else:
                try:
                    eid = int(edge)
                except (TypeError, ValueError):
                    errors.append(f"{where}: edge_id {edge!r} not an integer")
                    return
                if eid not in edges:
                    c = CLASS_INDEX.get(cls_name, CLASS_INDEX["residential"])
                    edges[eid] = base[:, c, :].copy()
                edges[eid][DAY_TYPE_INDEX[dt], bi] = fv

        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput("profile", f"cannot read {path}: {exc}") from exc
        if path.suffix.lower() == ".json":
            try:
                doc = json.loads(text)
            except ValueError as exc:
                raise InvalidInput("profile", f"{path} is not JSON: {exc}") from exc
            for dt, per_cls in (doc.get("classes") or {}).items():
                for cn, values in per_cls.items():
                    if not isinstance(values, list) or len(values) != BINS_PER_DAY:
                        errors.append(f"classes.{dt}.{cn}: need a list of 96 factors")
                        continue
                    for b, v in enumerate(values):
                        set_one(f"classes.{dt}.{cn}[{b}]", dt, cn, b, v)
            for eid, per_dt in (doc.get("edges") or {}).items():
                for dt, values in per_dt.items():
                    if not isinstance(values, list) or len(values) != BINS_PER_DAY:
                        errors.append(f"edges.{eid}.{dt}: need a list of 96 factors")
                        continue
                    for b, v in enumerate(values):
                        set_one(f"edges.{eid}.{dt}[{b}]", dt, "", b, v, eid)
        else:
            rows = list(csv.DictReader(text.splitlines()))
            for i, row in enumerate(rows, start=2):
                edge = (row.get("edge_id") or "").strip() or None
                set_one(
                    f"line {i}",
                    (row.get("day_type") or "").strip(),
                    (row.get("road_class") or "").strip(),
                    row.get("bin"),
                    row.get("factor"),
                    edge,
                )
        if errors:
            raise InvalidInput("profile", f"{len(errors)} bad entries: " + "; ".join(errors[:50]))
        return cls(base, edges)

    # ---- tables for the kernel -----------------------------------------------------------------
    def edge_keys(self, n_edges: int, edge_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(key per road edge int32, override edge ids): key = class, or n_classes + i for override i."""
        keys = edge_class.astype(np.int32).copy()
        ids = np.array(sorted(e for e in self.edge_factors if 0 <= e < n_edges), dtype=np.int64)
        keys[ids] = len(ROAD_CLASSES) + np.arange(len(ids), dtype=np.int32)
        return keys, ids

    def table(
        self, b0: int, holidays: Holidays, tz: ZoneInfo, override_ids: np.ndarray, n_bins: int = TABLE_BINS
    ) -> np.ndarray:
        """table[k, key] = profile factor for absolute bin b0 + k (k < n_bins)."""
        dts, lbins = local_bins(b0, n_bins, holidays, tz)
        out = np.empty((n_bins, len(ROAD_CLASSES) + len(override_ids)))
        out[:, : len(ROAD_CLASSES)] = self.factors[dts, :, lbins]
        for i, e in enumerate(override_ids.tolist()):
            out[:, len(ROAD_CLASSES) + i] = self.edge_factors[e][dts, lbins]
        return np.ascontiguousarray(out)


def local_bins(b0: int, n_bins: int, holidays: Holidays, tz: ZoneInfo) -> tuple[np.ndarray, np.ndarray]:
    """(day-type index, local bin of day) for absolute bins b0 .. b0+n_bins-1."""
    dts = np.empty(n_bins, np.int64)
    lbins = np.empty(n_bins, np.int64)
    cache: dict[Any, int] = {}
    for k in range(n_bins):
        loc = datetime.fromtimestamp((b0 + k) * BIN_S, tz)
        d = loc.date()
        if d not in cache:
            cache[d] = DAY_TYPE_INDEX[holidays.day_type(d)]
        dts[k] = cache[d]
        lbins[k] = (loc.hour * 60 + loc.minute) // 15
    return dts, lbins


def to_epoch(value: datetime | float | int, tz: ZoneInfo, param: str) -> float:
    """Unix seconds from an aware datetime, a naive one (taken as region-local time) or a number."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        try:
            return value.timestamp()
        except (OverflowError, ValueError, OSError) as exc:
            raise InvalidInput(param, f"{value.isoformat()} is out of range") from exc
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise InvalidInput(param, f"expected a datetime or Unix seconds, got {value!r}")


# ---- live overlay --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveUpdate:
    """One observation. Address the edge by `edge_id` or by (`way_id`, `u_osm`, `v_osm`); give the
    observed `speed_kmh` / `speed_mps` or the congestion `factor` (observed / free-flow speed) or
    `closed=True`. `expires_at` defaults to observed_at + decay_s."""

    observed_at: datetime | float
    edge_id: int | None = None
    way_id: int | None = None
    u_osm: int | None = None
    v_osm: int | None = None
    speed_kmh: float | None = None
    speed_mps: float | None = None
    factor: float | None = None
    closed: bool = False
    expires_at: datetime | float | None = None


@dataclass(frozen=True)
class LiveState:
    """Immutable snapshot of the overlay (arrays are never written after publication)."""

    flag: np.ndarray  # uint8 [m]: 0 no observation, 1 live factor, 2 closure
    data: np.ndarray  # float64 [m, 3]: factor, observed_at, expires_at (Unix seconds)
    version: int
    fmax: float = 0.0  # largest live factor held (bounds the overlay from above)
    # largest live factor held per road class (0 where none): class_fmax[edge_class[e]] >= factor of e
    class_fmax: np.ndarray = field(default_factory=lambda: np.zeros(len(ROAD_CLASSES)))

    @classmethod
    def empty(cls, m: int, version: int = 0) -> LiveState:
        data = np.zeros((m, 3))
        data[:, 2] = -np.inf
        return cls(np.zeros(m, np.uint8), data, version)

    @property
    def factor(self) -> np.ndarray:
        return self.data[:, 0]

    @property
    def observed(self) -> np.ndarray:
        return self.data[:, 1]

    @property
    def expires(self) -> np.ndarray:
        return self.data[:, 2]

    def closed_at(self, t0: float) -> np.ndarray:
        """Mask of edges closed for a query departing at t0 (Unix seconds)."""
        return (self.flag == 2) & (np.floor(self.observed / BIN_S) * BIN_S <= t0) & (t0 < self.expires)


@dataclass(frozen=True)
class ApplyResult:
    applied: int
    stale: int  # behind the observation already held for the edge, or cleared: skipped
    version: int
    rejected: tuple[int, ...] = ()  # stored batches refused whole because an item is malformed


# (batch id, index in batch, edge, factor, observed_at, expires_at, closed)
_Row = tuple[int, int, int, float, float, float, bool]


class LiveTraffic:
    """Live overlay on top of a `TrafficProfile`; thread-safe batch updates (see module doc)."""

    def __init__(
        self,
        g: CompiledGraph,
        profile: TrafficProfile,
        holidays: Holidays,
        tz: ZoneInfo,
        *,
        decay_s: float = 3600.0,
        max_ahead_s: float = 7 * 86400.0,
        skew_s: float = 60.0,
        max_closure_s: float | None = None,
        max_age_s: float | None = None,
        clock: Any = time.time,
    ) -> None:
        if decay_s <= 0:
            raise InvalidInput("decay_s", "must be positive")
        self._g = g
        self.profile = profile
        self.holidays = holidays
        self.tz = tz
        self.decay_s = float(decay_s)
        self.max_ahead_s = float(max_ahead_s)
        self.skew_s = float(skew_s)
        self.max_closure_s = max_closure_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        m = g.n_road_edges
        self._keys, self._override_ids = profile.edge_keys(m, g.edge_class)
        self._state = LiveState.empty(m)
        self._rank = np.zeros((m, 2), np.int64)  # (batch id, index in batch) of the observation held
        self._cleared_through = 0  # batches up to this id were cleared: never applied again
        self._last_id = 0  # the largest batch id seen (in-process batches number on from it)
        # (way, u_osm, v_osm) -> edge, as a sorted hash array (built once, no per-edge Python objects)
        u_osm = g.node_osm[g.edge_u].astype(np.uint64)
        v_osm = g.node_osm[g.edge_v].astype(np.uint64)
        h = _osm_hash(g.edge_way.astype(np.uint64), u_osm, v_osm)
        self._hash_order = np.argsort(h, kind="stable")
        self._hash_sorted = h[self._hash_order]

    def set_limits(
        self,
        *,
        skew_s: float | None = None,
        max_ahead_s: float | None = None,
        max_closure_s: float | None = None,
        max_age_s: float | None = None,
    ) -> None:
        """Intake rules of `prepare` (seconds; None keeps the current value)."""
        for name, value in (
            ("skew_s", skew_s),
            ("max_ahead_s", max_ahead_s),
            ("max_closure_s", max_closure_s),
            ("max_age_s", max_age_s),
        ):
            if value is None:
                continue
            if not math.isfinite(value) or value < 0:
                raise InvalidInput(name, f"must be a finite number of seconds >= 0, got {value}")
            setattr(self, name, float(value))

    @property
    def cleared_through(self) -> int:
        """Batch ids up to this one were cleared (0: never cleared)."""
        return self._cleared_through

    def snapshot(self) -> LiveState:
        return self._state

    def resolve_osm(self, way_id: int, u_osm: int, v_osm: int) -> int:
        """Road edge id of the OSM segment (way, u -> v) between two junctions; -1 if none."""
        if min(way_id, u_osm, v_osm) < 0 or max(way_id, u_osm, v_osm) >= 2**63:
            return -1
        with np.errstate(over="ignore"):
            h = _osm_hash(
                np.array([way_id], np.uint64), np.array([u_osm], np.uint64), np.array([v_osm], np.uint64)
            )[0]
        i = int(np.searchsorted(self._hash_sorted, h))
        g = self._g
        while i < len(self._hash_sorted) and self._hash_sorted[i] == h:
            e = int(self._hash_order[i])
            if (
                int(g.edge_way[e]) == way_id
                and int(g.node_osm[g.edge_u[e]]) == u_osm
                and int(g.node_osm[g.edge_v[e]]) == v_osm
            ):
                return e
            i += 1
        return -1

    # ---- intake ---------------------------------------------------------------------------------
    def prepare(self, batch: Iterable[LiveUpdate | Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Check every item against the intake rules; return them as stored, or raise InvalidInput
        listing every bad item (nothing is returned then, so nothing can be stored or applied)."""
        items = list(batch)
        now = float(self._clock())
        m = self._g.n_road_edges
        errors: list[str] = []
        out: list[dict[str, Any]] = []
        for i, raw in enumerate(items):
            try:
                it = raw if isinstance(raw, LiveUpdate) else LiveUpdate(**dict(raw))
            except TypeError as exc:
                errors.append(f"updates[{i}]: malformed item: {exc}")
                continue
            reason, row = self._check(it, now, m)
            if reason or row is None:
                errors.append(f"updates[{i}]: {reason}")
                continue
            e, f, o, x, closed = row
            item: dict[str, Any] = {"edge_id": e, "observed_at": o, "expires_at": x}
            if closed:
                item["closed"] = True
            else:
                item["factor"] = f
            out.append(item)
        if errors:
            shown = "; ".join(errors[:100]) + (f"; and {len(errors) - 100} more" if len(errors) > 100 else "")
            raise InvalidInput(
                "updates", f"{len(errors)} of {len(items)} items rejected, none applied: {shown}"
            )
        return out

    def _check(
        self, it: LiveUpdate, now: float, m: int
    ) -> tuple[str, tuple[int, float, float, float, bool] | None]:
        g = self._g
        if it.edge_id is not None:
            e = int(it.edge_id)
            if not 0 <= e < m:
                return f"unknown edge {it.edge_id}", None
        elif it.way_id is not None and it.u_osm is not None and it.v_osm is not None:
            e = self.resolve_osm(int(it.way_id), int(it.u_osm), int(it.v_osm))
            if e < 0:
                return f"unknown OSM segment way {it.way_id} {it.u_osm}->{it.v_osm}", None
        else:
            return "needs edge_id or way_id + u_osm + v_osm", None
        try:
            o = to_epoch(it.observed_at, self.tz, "observed_at")
            x = o + self.decay_s if it.expires_at is None else to_epoch(it.expires_at, self.tz, "expires_at")
        except InvalidInput as exc:
            return f"{exc.param} {exc.message}", None
        if it.closed and o > now:
            return f"a closure cannot start in the future (observed_at is {o - now:.1f} s ahead)", None
        if o > now + self.skew_s:
            return f"observed_at is {o - now:.0f} s in the future (at most {self.skew_s:.0f} s allowed)", None
        if self.max_age_s is not None and o < now - self.max_age_s:
            return f"observed_at is {now - o:.0f} s old, above the limit of {self.max_age_s:.0f} s", None
        if x <= o:
            return "expires_at is not after observed_at", None
        if x > now + self.max_ahead_s:
            return f"expires_at more than {self.max_ahead_s:.0f} s ahead", None
        if it.closed:
            if self.max_closure_s is not None and x - o > self.max_closure_s:
                return f"a closure of {x - o:.0f} s is above the cap of {self.max_closure_s:.0f} s", None
            return "", (e, 1.0, o, x, True)
        given = [v for v in (it.speed_kmh, it.speed_mps, it.factor) if v is not None]
        if len(given) != 1:
            return "give exactly one of speed_kmh, speed_mps, factor (or closed=true)", None
        # messages name the field the client sent, in its unit (km/h or m/s), with the value as sent
        if it.factor is not None:
            f = float(it.factor)
            if not (0 < f <= MAX_LIVE_FACTOR) or not math.isfinite(f):
                return f"factor must be above 0 and at most {MAX_LIVE_FACTOR:g}, got {f:g}", None
        else:
            key, unit, per_mps = (
                ("speed_kmh", "km/h", 3.6) if it.speed_kmh is not None else ("speed_mps", "m/s", 1.0)
            )
            given_speed = float(getattr(it, key))
            if not given_speed > 0 or not math.isfinite(given_speed):
                return f"{key} must be positive, got {given_speed:g}", None
            free = float(g.edge_speed_mps[e]) * per_mps  # the road's free-flow speed in the client's unit
            f = given_speed / free
            if f > MAX_LIVE_FACTOR:
                return (
                    f"{key} must be at most {MAX_LIVE_FACTOR:g} x the road's free-flow speed "
                    f"({MAX_LIVE_FACTOR * free:.0f} {unit}), got {given_speed:g}",
                    None,
                )
        return "", (e, min(f, 1.0), o, x, False)

    # ---- applying ---------------------------------------------------------------------------------
    def apply(self, batch: Iterable[LiveUpdate | Mapping[str, Any]]) -> ApplyResult:
        """`prepare` then apply in this process only, numbered after every batch seen (tests, tools)."""
        items = self.prepare(batch)
        with self._lock:
            self._last_id = max(self._last_id, self._cleared_through) + 1
            batch_id = self._last_id
        return self.apply_stored([(batch_id, items)])

    def apply_stored(self, batches: Iterable[tuple[int, Sequence[Mapping[str, Any]]]]) -> ApplyResult:
        """Apply stored batches (id, items as `prepare` returns them) in one step. A batch with a
        malformed item is refused whole (listed in `rejected`); one cleared already is stale."""
        rows, rejected, n = self._rows(batches)
        with self._lock:
            cur = self._state
            flag, data, rank = cur.flag.copy(), cur.data.copy(), self._rank.copy()
            applied = self._merge(flag, data, rank, rows)
            stale = n - applied
            if applied == 0:
                return ApplyResult(0, stale, cur.version, rejected)
            self._publish(flag, data, rank, cur.version + 1)
            return ApplyResult(applied, stale, cur.version + 1, rejected)

    def rebuild(
        self, through: int, batches: Iterable[tuple[int, Sequence[Mapping[str, Any]]]]
    ) -> ApplyResult:
        """Replace the overlay by `batches` after a clear of every batch id up to `through`."""
        rows, rejected, n = self._rows(batches)
        with self._lock:
            m = self._g.n_road_edges
            empty = LiveState.empty(m)
            flag, data, rank = empty.flag, empty.data, np.zeros((m, 2), np.int64)
            self._cleared_through = int(through)
            self._last_id = max(self._last_id, int(through))
            applied = self._merge(flag, data, rank, rows)
            version = self._state.version + 1
            self._publish(flag, data, rank, version)
            return ApplyResult(applied, n - applied, version, rejected)

    def clear(self) -> None:
        """Drop every observation held (in this process only)."""
        with self._lock:
            m = self._g.n_road_edges
            self._rank = np.zeros((m, 2), np.int64)
            self._state = LiveState.empty(m, self._state.version + 1)

    def _rows(
        self, batches: Iterable[tuple[int, Sequence[Mapping[str, Any]]]]
    ) -> tuple[list[_Row], tuple[int, ...], int]:
        m = self._g.n_road_edges
        rows: list[_Row] = []
        rejected: list[int] = []
        n = 0
        for batch_id, items in batches:
            try:
                parsed = [(int(batch_id), i, *_stored_row(it, m)) for i, it in enumerate(items)]
            except (KeyError, TypeError, ValueError):
                rejected.append(int(batch_id))
                continue
            rows.extend(parsed)
            n += len(parsed)
        return rows, tuple(rejected), n

    def _merge(self, flag: np.ndarray, data: np.ndarray, rank: np.ndarray, rows: list[_Row]) -> int:
        """Write rows into the arrays where their key beats the one held; return how many won."""
        applied = 0
        for b, i, e, f, o, x, c in rows:
            self._last_id = max(self._last_id, b)
            if b <= self._cleared_through:
                continue
            if flag[e] and (o, b, i) <= (float(data[e, 1]), int(rank[e, 0]), int(rank[e, 1])):
                continue
            flag[e] = 2 if c else 1
            data[e, 0], data[e, 1], data[e, 2] = f, o, x
            rank[e, 0], rank[e, 1] = b, i
            applied += 1
        return applied

    def _publish(self, flag: np.ndarray, data: np.ndarray, rank: np.ndarray, version: int) -> None:
        live = flag == 1
        fl = data[live, 0]
        cmax = np.zeros(len(ROAD_CLASSES))
        np.maximum.at(cmax, self._g.edge_class[live].astype(np.int64), fl)
        self._rank = rank
        self._state = LiveState(flag, data, version, float(fl.max()) if fl.size else 0.0, cmax)

    def congestion(self, edge_ids: Sequence[int] | np.ndarray, t: datetime | float) -> np.ndarray:
        """Current factor per edge at time t (profile + live, same bin rules as routing); 0 = closed."""
        ts = to_epoch(t, self.tz, "t")
        e = np.asarray(edge_ids, dtype=np.int64)
        if e.size and (e.min() < 0 or e.max() >= self._g.n_road_edges):
            raise InvalidInput("edge_ids", "unknown edge id")
        b = int(ts // BIN_S)
        tab = self.profile.table(b, self.holidays, self.tz, self._override_ids, n_bins=1)[0]
        p = tab[self._keys[e]]
        st = self._state
        return live_factor(p, st, e, b, self.decay_s, ts)


def _stored_row(item: Mapping[str, Any], m: int) -> tuple[int, float, float, float, bool]:
    """(edge, factor, observed_at, expires_at, closed) of a stored item; ValueError if malformed."""
    e = int(item["edge_id"])
    o, x = float(item["observed_at"]), float(item["expires_at"])
    if not 0 <= e < m or not (math.isfinite(o) and math.isfinite(x)) or x <= o:
        raise ValueError(f"bad stored item {dict(item)!r}")
    if item.get("closed"):
        return e, 1.0, o, x, True
    f = float(item["factor"])
    if not (0 < f <= MAX_LIVE_FACTOR) or not math.isfinite(f):
        raise ValueError(f"bad stored factor {f!r}")
    return e, min(f, 1.0), o, x, False


def live_factor(p: np.ndarray, st: LiveState, e: np.ndarray, b: int, decay_s: float, t0: float) -> np.ndarray:
    """Vectorised factor for edges `e` in absolute bin `b` (profile values `p`); closed at t0 -> 0."""
    fl, lf, lo, lx = st.flag[e], st.data[e, 0], st.data[e, 1], st.data[e, 2]
    obin = np.floor(lo / BIN_S)
    start = b * float(BIN_S)
    active = (fl == 1) & (obin <= b) & (start < lx)
    w = np.where(obin == b, 1.0, np.clip(1.0 - (start - lo) / decay_s, 0.0, 1.0))
    out = np.where(active, w * lf + (1 - w) * p, p)
    closed = (fl == 2) & (obin * BIN_S <= t0) & (t0 < lx)
    return np.where(closed, 0.0, out)


def _osm_hash(way: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = way * np.uint64(0x9E3779B97F4A7C15)
        h ^= u * np.uint64(0xC2B2AE3D27D4EB4F) + np.uint64(0x165667B19E3779F9)
        h ^= v * np.uint64(0x27D4EB2F165667C5)
        h ^= h >> np.uint64(29)
    return h


__all__ = [
    "BIN_S",
    "DAY_TYPES",
    "ApplyResult",
    "LiveState",
    "LiveTraffic",
    "LiveUpdate",
    "TrafficProfile",
    "local_bins",
    "to_epoch",
]
