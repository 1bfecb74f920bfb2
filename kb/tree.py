"""The category tree checked as a tree (a forest: several roots are fine) with networkx."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

PATH_SEP = " > "


@dataclass(frozen=True)
class TreeProblem:
    kind: str  # "cycle" | "multiple_parents" | "path_mismatch"
    nodes: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class TreeReport:
    nodes: int
    edges: int
    roots: tuple[str, ...]
    depth: int  # levels of the deepest path (1 = roots only)
    problems: tuple[TreeProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_category_tree(
    edges: Iterable[tuple[str, str]],
    nodes: Iterable[str] = (),
    *,
    check_paths: bool = True,
    max_cycles: int = 20,
) -> TreeReport:
    """Check ``(child, parent)`` edges form a forest: no cycles, at most one parent per node.

    With ``check_paths``, a child whose path is ``"A > B > C"`` must have ``"A > B"`` as its
    parent (the graph stores full paths; a different parent means the tree and the paths disagree).
    """
    g = nx.DiGraph()  # child -> parent
    g.add_nodes_from(nodes)
    edge_list = list(edges)
    g.add_edges_from(edge_list)
    problems: list[TreeProblem] = []
    for n in sorted(g.nodes):
        parents = sorted(g.successors(n))
        if len(parents) > 1:
            problems.append(TreeProblem("multiple_parents", (n, *parents),
                                        f"category {n!r} has {len(parents)} parents: {', '.join(map(repr, parents))}"))
    for cyc in itertools.islice(nx.simple_cycles(g), max_cycles):
        ring = " -> ".join(repr(c) for c in cyc + [cyc[0]])
        problems.append(TreeProblem("cycle", tuple(cyc), f"cycle in the category tree: {ring}"))
    if check_paths:
        for child, parent in sorted(set(edge_list)):
            if PATH_SEP in child and child.rsplit(PATH_SEP, 1)[0] != parent:
                problems.append(TreeProblem("path_mismatch", (child, parent),
                                            f"category {child!r} is under {parent!r}, but its path says "
                                            f"{child.rsplit(PATH_SEP, 1)[0]!r}"))
    roots = tuple(sorted(n for n in g.nodes if g.out_degree(n) == 0))
    depth = 0
    if not problems and g.number_of_nodes():
        # longest child->parent chain, in nodes
        order = list(nx.topological_sort(g.reverse(copy=False)))  # parents before children
        level: dict[str, int] = {}
        for n in order:
            ps = list(g.successors(n))
            level[n] = level[ps[0]] + 1 if ps else 1
        depth = max(level.values())
    return TreeReport(g.number_of_nodes(), g.number_of_edges(), roots, depth, tuple(problems))
