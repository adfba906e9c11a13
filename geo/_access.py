"""The car profile: which OSM ways and nodes a motor car may use, and in which direction (pure tables).

Access hierarchy, least to most specific: `access` < `vehicle` < `motor_vehicle` < `motorcar`; at each
level the directional variant (`<key>:forward` / `<key>:backward`, relative to the way's node order)
is more specific than the plain key. The most specific key tagged decides, per direction.

A value is read as a whole list (`forestry;permissive` is permissive): the most permissive of its items
counts. Each item is one of
- `ALLOWED`: yes, permissive, designated, ... (and unknown values, as other car profiles do);
- `RESTRICTED`: destination, private, customers, delivery: the road may start or end a route but
  carries no through traffic (the router adds `Settings.route_restricted_penalty_s` per restricted road
  edge driven, so it is used only where it cannot be avoided);
- `DENIED`: no, agricultural, forestry, psv, bus, taxi, foot, bicycle, emergency, military, ...: a value
  naming another kind of traffic keeps cars out.
A non-road way (footway, cycleway, ...) is never opened by `access=yes`: only `geo._graph.ROAD_CLASSES`.

Excluded ways: `area=yes`; `highway=construction`; `construction=*` other than no/minor/widening;
`smoothness=impassable`; `impassable=yes`; `oneway=reversible`/`alternating` (direction changes by time)
unless `oneway:conditional` says when, in which case the way is two-way.

One-way: `oneway:motorcar` < ... the most specific of `oneway`, `oneway:vehicle`, `oneway:motor_vehicle`,
`oneway:motorcar` decides; `yes/1/true` is +1, `-1/reverse` -1; `junction=roundabout/circular` and
`highway=motorway` imply +1 unless `oneway=no`. A direction denied by access tags is removed too.

Nodes (`node_blocks`): a `barrier` blocks cars unless it is in `PASSABLE_BARRIERS` (gates, lift gates,
toll booths, entrances, border controls, cattle grids, ...); node access tags (same hierarchy) then
decide: a passable barrier or a plain node with access denied blocks, a blocking barrier with access
explicitly allowing cars does not. Restricted node access (private gates) lets cars through.
"""

from __future__ import annotations

ACCESS_KEYS = ("access", "vehicle", "motor_vehicle", "motorcar")  # least to most specific
ONEWAY_KEYS = ("oneway", "oneway:vehicle", "oneway:motor_vehicle", "oneway:motorcar")
ALLOWED = frozenset({"yes", "permissive", "designated", "official", "motorcar", "motor_vehicle", "vehicle"})
RESTRICTED = frozenset({"destination", "private", "customers", "delivery", "permit"})
DENIED = frozenset(
    {
        "no", "agricultural", "forestry", "psv", "bus", "taxi", "minibus", "share_taxi", "coach", "foot",
        "bicycle", "emergency", "military", "hgv", "goods", "disabled", "use_sidepath", "discouraged",
        "hov", "motorcycle", "moped", "mofa", "horse", "agricultural;forestry", "unknown",
    }
)  # fmt: skip
PASSABLE_BARRIERS = frozenset(
    {
        "gate", "lift_gate", "swing_gate", "sliding_gate", "toll_booth", "entrance", "border_control",
        "cattle_grid", "checkpoint", "sally_port", "height_restrictor", "no",
    }
)  # fmt: skip
CONSTRUCTION_OK = frozenset({"no", "minor", "widening"})

ALLOW, RESTRICT, DENY = 2, 1, 0  # per-direction decision, most to least permissive


def classify(value: str) -> int:
    """ALLOW, RESTRICT or DENY for one access value, the list read as a whole (the best item)."""
    best = -1
    for item in value.split(";"):
        v = item.strip().lower()
        if not v:
            continue
        best = max(best, DENY if v in DENIED else (RESTRICT if v in RESTRICTED else ALLOW))
    return ALLOW if best < 0 else best


def access(tags: dict[str, str], direction: str | None = None) -> int | None:
    """The decision of the most specific access key tagged (for `direction` "forward"/"backward" the
    directional variants count too), None when no access key is tagged."""
    decided: int | None = None
    for key in ACCESS_KEYS:
        for k in (key, f"{key}:{direction}") if direction else (key,):
            if k in tags:
                decided = classify(tags[k])
    return decided


def excluded(tags: dict[str, str]) -> bool:
    """Whether the way is out of the car network whatever the access tags (module doc)."""
    if tags.get("area") == "yes" or tags.get("highway") == "construction":
        return True
    if "construction" in tags and tags["construction"].strip().lower() not in CONSTRUCTION_OK:
        return True
    if tags.get("smoothness") == "impassable" or tags.get("impassable") == "yes":
        return True
    return oneway_value(tags) in ("reversible", "alternating") and "oneway:conditional" not in tags


def oneway_value(tags: dict[str, str]) -> str:
    """The most specific of the oneway keys tagged, lower case ("" when none)."""
    value = ""
    for key in ONEWAY_KEYS:
        if key in tags:
            value = tags[key].strip().lower()
    return value


def directions(tags: dict[str, str]) -> tuple[int, int]:
    """(forward, backward) decisions for a car on a way already known to be a road."""
    value = oneway_value(tags)
    fwd_tag, bwd_tag = access(tags, "forward"), access(tags, "backward")
    fw = fwd_tag if fwd_tag is not None else ALLOW
    bw = bwd_tag if bwd_tag is not None else ALLOW
    if value in ("yes", "1", "true"):
        bw = DENY
    elif value in ("-1", "reverse"):
        fw = DENY
    elif value not in ("no", "0", "false", "reversible", "alternating") and (
        tags.get("junction") in ("roundabout", "circular") or tags.get("highway") == "motorway"
    ):
        bw = DENY
    return fw, bw


def node_blocks(tags: dict[str, str]) -> bool:
    """Whether a node with these tags stops cars passing through it (module doc)."""
    barrier = tags.get("barrier", "").strip().lower()
    decided = access(tags)
    if barrier and barrier not in PASSABLE_BARRIERS:
        return decided is None or decided == DENY
    return decided == DENY


__all__ = [
    "ACCESS_KEYS",
    "ALLOW",
    "ALLOWED",
    "DENIED",
    "DENY",
    "PASSABLE_BARRIERS",
    "RESTRICT",
    "RESTRICTED",
    "access",
    "classify",
    "directions",
    "excluded",
    "node_blocks",
]
