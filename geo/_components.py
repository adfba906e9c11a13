"""Strongly connected components of the arc graph, per road edge (computed once at load).

Every road of an extract is kept (small or one-way-heavy areas too). The *main* component is the
largest strongly connected component of the arc graph (split copies included). A road edge belongs to
it when the head node of its arcs does and its tail junction does (the junction itself or one of its
split copies: a junction whose every incoming road is restricted has no arc into its plain node, yet
it is a valid origin). `edge_component` labels each road edge with the component of its head node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from geo._graph import CompiledGraph


@dataclass(frozen=True)
class Components:
    edge_main: np.ndarray  # bool [m]: road edge in the main component
    edge_component: np.ndarray  # int64 [m]: component label of the edge's head node
    count: int  # number of strongly connected components (nodes, split copies included)


def components(g: CompiledGraph) -> Components:
    n, m = g.n_nodes, g.n_road_edges
    if n == 0 or m == 0:
        return Components(np.zeros(m, bool), np.zeros(m, np.int64), 0)
    tail = np.repeat(np.arange(n, dtype=np.int64), np.diff(g.offsets))
    mat = csr_matrix((np.ones(len(tail), np.int8), (tail, g.arc_head.astype(np.int64))), shape=(n, n))
    count, labels = connected_components(mat, directed=True, connection="strong")
    main = int(np.bincount(labels).argmax())
    in_main = labels == main
    junction_main = np.zeros(n, bool)
    junction_main[g.node_base[in_main]] = True
    head = np.full(m, -1, np.int64)
    plain = g.node_base[tail] == tail  # the arc of each road edge that leaves its junction
    head[g.arc_edge[plain]] = g.arc_head[plain]
    comp = labels[np.maximum(head, 0)].astype(np.int64)
    edge_main = (head >= 0) & in_main[np.maximum(head, 0)] & junction_main[g.edge_u]
    return Components(edge_main, comp, int(count))


__all__ = ["Components", "components"]
