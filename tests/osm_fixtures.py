"""Small hand-written OSM XML fixtures, written to a temporary folder by tests/conftest.py.

Kept as Python strings so that no OSM data file is committed.
"""

from __future__ import annotations

OSM_FIXTURES: dict[str, str] = {
    "missing_refs.osm": """\
<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="hand-written test fixture">
  <node id="1" version="1" lat="26.8700000" lon="100.2310000"/>
  <node id="2" version="1" lat="26.8700000" lon="100.2320000"/>
  <node id="3" version="1" lat="26.8700000" lon="100.2330000"/>
  <node id="4" version="1" lat="26.8700000" lon="100.2340000"/>
  <node id="5" version="1" lat="26.8700000" lon="100.2350000"/>
  <way id="201" version="1">
    <nd ref="1"/>
    <nd ref="2"/>
    <nd ref="999"/>
    <nd ref="3"/>
    <nd ref="4"/>
    <tag k="highway" v="residential"/>
  </way>
  <way id="202" version="1">
    <nd ref="2"/>
    <nd ref="3"/>
    <tag k="highway" v="residential"/>
  </way>
  <way id="203" version="1">
    <nd ref="4"/>
    <nd ref="5"/>
    <nd ref="998"/>
    <tag k="highway" v="residential"/>
  </way>
  <way id="204" version="1">
    <nd ref="997"/>
    <nd ref="996"/>
    <tag k="highway" v="residential"/>
  </way>
  <way id="205" version="1">
    <nd ref="1"/>
    <nd ref="4"/>
    <tag k="highway" v="residential"/>
  </way>
</osm>
""",
    "network.osm": """\
<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="hand-written test fixture">
  <node id="1" version="1" lat="26.8700000" lon="100.2300000"/>
  <node id="2" version="1" lat="26.8700000" lon="100.2310000"/>
  <node id="3" version="1" lat="26.8710000" lon="100.2310000"/>
  <node id="4" version="1" lat="26.8710000" lon="100.2300000"/>
  <node id="5" version="1" lat="26.8720000" lon="100.2310000"/>
  <node id="6" version="1" lat="26.8730000" lon="100.2315000"/>
  <node id="7" version="1" lat="26.8730000" lon="100.2305000"/>
  <node id="8" version="1" lat="26.8710000" lon="100.2290000"/>
  <node id="9" version="1" lat="26.8690000" lon="100.2300000"/>
  <node id="10" version="1" lat="26.8690000" lon="100.2310000"/>
  <node id="11" version="1" lat="26.8700000" lon="100.2290000"/>
  <node id="12" version="1" lat="26.8720000" lon="100.2300000"/>
  <node id="14" version="1" lat="26.8710000" lon="100.2320000"/>
  <node id="15" version="1" lat="26.8700000" lon="100.2320000"/>
  <way id="101" version="1">
    <nd ref="1"/>
    <nd ref="2"/>
    <tag k="highway" v="primary"/>
    <tag k="name" v="古城路"/>
    <tag k="name:zh" v="古城路"/>
    <tag k="name:en" v="Gucheng Road"/>
    <tag k="maxspeed" v="60"/>
    <tag k="maxspeed:backward" v="40"/>
    <tag k="lanes" v="4"/>
  </way>
  <way id="102" version="1">
    <nd ref="2"/>
    <nd ref="3"/>
    <tag k="highway" v="residential"/>
    <tag k="oneway" v="-1"/>
  </way>
  <way id="103" version="1">
    <nd ref="3"/>
    <nd ref="4"/>
    <tag k="highway" v="residential"/>
    <tag k="access" v="destination"/>
  </way>
  <way id="104" version="1">
    <nd ref="4"/>
    <nd ref="1"/>
    <tag k="highway" v="residential"/>
    <tag k="maxspeed" v="CN:urban"/>
  </way>
  <way id="105" version="1">
    <nd ref="5"/>
    <nd ref="6"/>
    <nd ref="7"/>
    <nd ref="5"/>
    <tag k="highway" v="tertiary"/>
    <tag k="junction" v="roundabout"/>
  </way>
  <way id="106" version="1">
    <nd ref="3"/>
    <nd ref="5"/>
    <tag k="highway" v="tertiary"/>
    <tag k="maxspeed" v="35 mph"/>
  </way>
  <way id="107" version="1">
    <nd ref="4"/>
    <nd ref="8"/>
    <tag k="highway" v="residential"/>
    <tag k="access" v="private"/>
  </way>
  <way id="108" version="1">
    <nd ref="1"/>
    <nd ref="9"/>
    <tag k="highway" v="service"/>
    <tag k="service" v="parking_aisle"/>
  </way>
  <way id="109" version="1">
    <nd ref="2"/>
    <nd ref="10"/>
    <tag k="highway" v="service"/>
  </way>
  <way id="110" version="1">
    <nd ref="1"/>
    <nd ref="11"/>
    <tag k="highway" v="footway"/>
  </way>
  <way id="111" version="1">
    <nd ref="4"/>
    <nd ref="12"/>
    <tag k="highway" v="residential"/>
    <tag k="area" v="yes"/>
  </way>
  <way id="112" version="1">
    <nd ref="3"/>
    <nd ref="14"/>
    <tag k="highway" v="residential"/>
    <tag k="access" v="no"/>
    <tag k="motorcar" v="yes"/>
  </way>
  <way id="113" version="1">
    <nd ref="2"/>
    <nd ref="15"/>
    <tag k="highway" v="residential"/>
    <tag k="vehicle" v="yes"/>
    <tag k="motor_vehicle" v="private"/>
  </way>
</osm>
""",
    "restriction.osm": """\
<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="hand-written test fixture">
<!-- 3x3 grid, 0.001 degree blocks near Lijiang; relation 900 forbids W1->W3 left turn at 111,
     relation 901 forces straight on from W4 at 111. -->
  <node id="100" version="1" lat="26.8700000" lon="100.2300000"/>
  <node id="101" version="1" lat="26.8700000" lon="100.2310000"/>
  <node id="102" version="1" lat="26.8700000" lon="100.2320000"/>
  <node id="110" version="1" lat="26.8710000" lon="100.2300000"/>
  <node id="111" version="1" lat="26.8710000" lon="100.2310000"/>
  <node id="112" version="1" lat="26.8710000" lon="100.2320000"/>
  <node id="120" version="1" lat="26.8720000" lon="100.2300000"/>
  <node id="121" version="1" lat="26.8720000" lon="100.2310000"/>
  <node id="122" version="1" lat="26.8720000" lon="100.2320000"/>
  <node id="99" version="1" lat="26.8710000" lon="100.2290000"/>
  <way id="1" version="1">
    <nd ref="99"/>
    <nd ref="110"/>
    <nd ref="111"/>
    <tag k="highway" v="residential"/>
    <tag k="name" v="West Street"/>
  </way>
  <way id="2" version="1">
    <nd ref="111"/>
    <nd ref="112"/>
    <tag k="highway" v="residential"/>
  </way>
  <way id="3" version="1">
    <nd ref="111"/>
    <nd ref="121"/>
    <tag k="highway" v="residential"/>
    <tag k="name" v="North Street"/>
  </way>
  <way id="4" version="1">
    <nd ref="101"/>
    <nd ref="111"/>
    <tag k="highway" v="residential"/>
    <tag k="name" v="South Street"/>
  </way>
  <way id="5" version="1">
    <nd ref="100"/>
    <nd ref="101"/>
    <nd ref="102"/>
    <tag k="highway" v="residential"/>
  </way>
  <way id="6" version="1">
    <nd ref="121"/>
    <nd ref="122"/>
    <tag k="highway" v="residential"/>
  </way>
  <way id="7" version="1">
    <nd ref="100"/>
    <nd ref="110"/>
    <tag k="highway" v="residential"/>
  </way>
  <way id="8" version="1">
    <nd ref="112"/>
    <nd ref="122"/>
    <tag k="highway" v="residential"/>
  </way>
  <relation id="900" version="1">
    <member type="way" ref="1" role="from"/>
    <member type="node" ref="111" role="via"/>
    <member type="way" ref="3" role="to"/>
    <tag k="type" v="restriction"/>
    <tag k="restriction" v="no_left_turn"/>
  </relation>
  <relation id="901" version="1">
    <member type="way" ref="4" role="from"/>
    <member type="node" ref="111" role="via"/>
    <member type="way" ref="3" role="to"/>
    <tag k="type" v="restriction"/>
    <tag k="restriction" v="only_straight_on"/>
  </relation>
  <relation id="902" version="1">
    <member type="way" ref="2" role="from"/>
    <member type="node" ref="111" role="via"/>
    <member type="way" ref="3" role="to"/>
    <tag k="type" v="restriction"/>
    <tag k="restriction" v="no_right_turn"/>
    <tag k="except" v="motorcar"/>
  </relation>
  <relation id="903" version="1">
    <member type="way" ref="7" role="from"/>
    <member type="way" ref="1" role="via"/>
    <member type="way" ref="3" role="to"/>
    <tag k="type" v="restriction"/>
    <tag k="restriction" v="no_u_turn"/>
  </relation>
  <relation id="904" version="1">
    <member type="way" ref="2" role="from"/>
    <member type="node" ref="111" role="via"/>
    <member type="way" ref="6" role="to"/>
    <tag k="type" v="restriction"/>
    <tag k="restriction" v="no_left_turn"/>
  </relation>
  <relation id="905" version="1">
    <member type="way" ref="2" role="from"/>
    <member type="node" ref="111" role="via"/>
    <member type="way" ref="77777" role="to"/>
    <tag k="type" v="restriction"/>
    <tag k="restriction" v="no_left_turn"/>
  </relation>
</osm>
""",
    # a one-way street (way 10, listed first so the junction snap picks it) leaving junction 2; the
    # direct road back to 1 is way 11; the long way round is way 12 (3-4-5-1)
    "junction_oneway.osm": """\
<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="hand-written test fixture">
  <node id="1" version="1" lat="26.8700000" lon="100.2300000"/>
  <node id="2" version="1" lat="26.8700000" lon="100.2310000"/>
  <node id="3" version="1" lat="26.8700000" lon="100.2320000"/>
  <node id="4" version="1" lat="26.8710000" lon="100.2320000"/>
  <node id="5" version="1" lat="26.8710000" lon="100.2300000"/>
  <way id="10" version="1">
    <nd ref="2"/><nd ref="3"/>
    <tag k="highway" v="residential"/><tag k="oneway" v="yes"/><tag k="name" v="单行街"/>
  </way>
  <way id="11" version="1">
    <nd ref="1"/><nd ref="2"/>
    <tag k="highway" v="residential"/><tag k="name" v="直行路"/>
  </way>
  <way id="12" version="1">
    <nd ref="3"/><nd ref="4"/><nd ref="5"/><nd ref="1"/>
    <tag k="highway" v="residential"/><tag k="name" v="环路"/>
  </way>
</osm>
""",
    # a small extract: a two-way square (ways 1-4), a lone one-way street (way 20) 222 m north of it and
    # an isolated two-way road (way 30) 99 m east of it: three parts that no road joins
    "small_parts.osm": """\
<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="hand-written test fixture">
  <node id="1" version="1" lat="26.8700000" lon="100.2300000"/>
  <node id="2" version="1" lat="26.8700000" lon="100.2310000"/>
  <node id="3" version="1" lat="26.8710000" lon="100.2310000"/>
  <node id="4" version="1" lat="26.8710000" lon="100.2300000"/>
  <node id="10" version="1" lat="26.8730000" lon="100.2300000"/>
  <node id="11" version="1" lat="26.8730000" lon="100.2310000"/>
  <node id="12" version="1" lat="26.8714000" lon="100.2320000"/>
  <node id="13" version="1" lat="26.8724000" lon="100.2320000"/>
  <way id="1" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="residential"/></way>
  <way id="2" version="1"><nd ref="2"/><nd ref="3"/><tag k="highway" v="residential"/></way>
  <way id="3" version="1"><nd ref="3"/><nd ref="4"/><tag k="highway" v="residential"/></way>
  <way id="4" version="1"><nd ref="4"/><nd ref="1"/><tag k="highway" v="residential"/></way>
  <way id="20" version="1">
    <nd ref="10"/><nd ref="11"/><tag k="highway" v="residential"/><tag k="oneway" v="yes"/>
  </way>
  <way id="30" version="1"><nd ref="12"/><nd ref="13"/><tag k="highway" v="service"/></way>
</osm>
""",
    "lone_oneway.osm": """\
<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="hand-written test fixture">
  <node id="10" version="1" lat="26.8730000" lon="100.2300000"/>
  <node id="11" version="1" lat="26.8730000" lon="100.2310000"/>
  <way id="20" version="1">
    <nd ref="10"/><nd ref="11"/><tag k="highway" v="residential"/><tag k="oneway" v="yes"/>
  </way>
</osm>
""",
}


def ladder(way_tags: str = "", node_tags: str = "", *, highway: str = "residential") -> str:
    """Two parallel streets (south 1-2-3, north 4-5-6, 222 m apart) joined by three rungs: west 1-4,
    east 3-6, and the middle one 2-7-5 (way 30, node 7 halfway) carrying `way_tags` (and `highway`)
    and `node_tags` on node 7. Direct 2 -> 5 is 222 m; around a closed middle rung it is about 421 m."""
    nodes = {
        1: (26.870, 100.230), 2: (26.870, 100.231), 3: (26.870, 100.232),
        4: (26.872, 100.230), 5: (26.872, 100.231), 6: (26.872, 100.232), 7: (26.871, 100.231),
    }  # fmt: skip
    ways = {10: ([1, 2, 3], ""), 20: ([4, 5, 6], ""), 40: ([1, 4], ""), 50: ([3, 6], "")}
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<osm version="0.6" generator="hand-written test fixture">',
    ]
    for i, (la, lo) in nodes.items():
        extra = node_tags if i == 7 else ""
        out.append(f'  <node id="{i}" version="1" lat="{la:.7f}" lon="{lo:.7f}">{extra}</node>')
    for w, (refs, _) in ways.items():
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        out.append(f'  <way id="{w}" version="1">{nds}<tag k="highway" v="residential"/></way>')
    mid = '<nd ref="2"/><nd ref="7"/><nd ref="5"/>'
    out.append(f'  <way id="30" version="1">{mid}<tag k="highway" v="{highway}"/>{way_tags}</way>')
    out.append("</osm>")
    return "\n".join(out) + "\n"


def ladders(cases: list[tuple[str, str, str, str]]) -> str:
    """One ladder per case, side by side (ladder k is `ladder()` shifted 0.004 deg east, its node and way
    ids + 100 k), ladder k's node 3 joined to ladder k+1's node 1 by a street. Each ladder also has a
    south spur 8-2 (way 60, 111 m) and a north spur 5-9 (way 70), so 8 -> 9 is 444 m by the middle rung
    (way 30 carrying the case's `way_tags` and `highway`, node 7 its `node_tags`) and 642 m around it.
    A case's fourth item, when not empty, is a restriction relation's tag value from way 60 via node 2
    to way 30 (relation id 900 + k)."""
    base = {
        1: (26.870, 0.000), 2: (26.870, 0.001), 3: (26.870, 0.002), 4: (26.872, 0.000),
        5: (26.872, 0.001), 6: (26.872, 0.002), 7: (26.871, 0.001), 8: (26.869, 0.001), 9: (26.873, 0.001),
    }  # fmt: skip
    ways = {10: [1, 2, 3], 20: [4, 5, 6], 40: [1, 4], 50: [3, 6], 60: [8, 2], 70: [5, 9]}
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<osm version="0.6" generator="hand-written test fixture">',
    ]
    rels = []
    for k, (way_tags, node_tags, highway, restriction) in enumerate(cases):
        o, lon0 = 100 * k, 100.230 + 0.004 * k
        for i, (la, lo) in base.items():
            extra = node_tags if i == 7 else ""
            out.append(
                f'  <node id="{o + i}" version="1" lat="{la:.7f}" lon="{lon0 + lo:.7f}">{extra}</node>'
            )
        for w, refs in ways.items():
            nds = "".join(f'<nd ref="{o + r}"/>' for r in refs)
            out.append(f'  <way id="{o + w}" version="1">{nds}<tag k="highway" v="residential"/></way>')
        mid = "".join(f'<nd ref="{o + r}"/>' for r in (2, 7, 5))
        out.append(f'  <way id="{o + 30}" version="1">{mid}<tag k="highway" v="{highway}"/>{way_tags}</way>')
        if k:
            join = f'<nd ref="{o - 100 + 3}"/><nd ref="{o + 1}"/>'
            out.append(f'  <way id="{o + 80}" version="1">{join}<tag k="highway" v="residential"/></way>')
        if restriction:
            rels.append(
                f'  <relation id="{900 + k}" version="1"><member type="way" ref="{o + 60}" role="from"/>'
                f'<member type="node" ref="{o + 2}" role="via"/><member type="way" ref="{o + 30}" role="to"/>'
                f'<tag k="type" v="restriction"/><tag k="restriction" v="{restriction}"/></relation>'
            )
    out += [*rels, "</osm>"]
    return "\n".join(out) + "\n"


def osm_xml(
    nodes: dict[int, tuple[float, float]],
    ways: dict[int, tuple[list[int], dict[str, str]]],
    relations: list[tuple[int, list[tuple[str, int, str]], dict[str, str]]] = (),  # type: ignore[assignment]
) -> str:
    """An OSM XML document: nodes {id: (lat, lon)}, ways {id: (node ids, tags)} (highway=residential
    unless tagged), relations [(id, [(member type, ref, role)], tags)]."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<osm version="0.6" generator="hand-written test fixture">',
    ]
    for i, (la, lo) in nodes.items():
        out.append(f'  <node id="{i}" version="1" lat="{la:.7f}" lon="{lo:.7f}"/>')
    for w, (refs, tags) in ways.items():
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        t = {"highway": "residential"} | tags
        tg = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in t.items())
        out.append(f'  <way id="{w}" version="1">{nds}{tg}</way>')
    for rid, members, tags in relations:
        ms = "".join(f'<member type="{ty}" ref="{ref}" role="{role}"/>' for ty, ref, role in members)
        tg = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        out.append(f'  <relation id="{rid}" version="1">{ms}{tg}</relation>')
    out.append("</osm>")
    return "\n".join(out) + "\n"


def median_end() -> str:
    """A dual carriageway's end: one-way 21 (1 -> 2) east, one-way 22 (2 -> 3) back west 10 m north of
    it, street 23 from junction 2 north to 4 (so 2 is no dead end), streets 24 (4-5) and 25 (5-3) round
    to the west carriageway's end, a long road 26 from 5 back to 1 (so every road is reachable), spurs
    60 (8-1) and 70 (3-9). 8 -> 9 is about 397 m with the U-turn at 2 across the median, about 603 m
    round by 4 and 5."""
    u = 0.001  # about 100 m
    grid = {
        1: (0.0, 0.0), 2: (1.0, 0.05), 3: (0.0, 0.1), 4: (1.0, 1.0), 5: (0.0, 1.0), 6: (0.0, 3.0),
        7: (-1.0, 3.0), 8: (-1.0, 0.0), 9: (-1.0, 0.1),
    }  # fmt: skip
    carriageway = {"highway": "primary", "oneway": "yes"}
    return osm_xml(
        {i: (26.87 + y * u, 100.23 + x * u) for i, (x, y) in grid.items()},
        {
            21: ([1, 2], carriageway),
            22: ([2, 3], carriageway),
            23: ([2, 4], {}),
            24: ([4, 5], {}),
            25: ([5, 3], {}),
            26: ([5, 6, 7, 1], {}),
            60: ([8, 1], {}),
            70: ([3, 9], {}),
        },
    )
