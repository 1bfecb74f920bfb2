"""Neighbour sampling in pure torch, behind PyG's sampler interface.

PyG's ``NeighborSampler`` needs the compiled ``pyg-lib`` or ``torch-sparse`` to draw neighbours;
neither installs here. :class:`TorchNeighborSampler` keeps everything else of it (the CSC
layout built in its constructor, ``NodeLoader``/``LinkLoader`` integration, negative sampling
for link prediction, edge permutations) and replaces only the drawing step, so

    loader = NodeLoader(data, node_sampler=TorchNeighborSampler(data, num_neighbors=[10, 5]),
                        input_nodes=("product", idx), batch_size=512)
    loader = LinkLoader(data, link_sampler=TorchNeighborSampler(data, num_neighbors=[10, 5]),
                        edge_label_index=(("product", "has_value", "value"), pairs), batch_size=1024)

give mini-batches exactly as with the compiled samplers. Supported: homogeneous and
heterogeneous graphs, per-edge-type fan-outs, sampling without replacement (with replacement when
``replace=True``), edge-type-specific fan-outs of 0, and ``-1`` for all neighbours. Not supported
(clear errors): temporal sampling, disjoint subgraphs, weighted sampling and induced subgraphs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.sampler import HeteroSamplerOutput, NeighborSampler, SamplerOutput
from torch_geometric.sampler.base import SubgraphType

from .errors import GnnError

# Above this in-degree, draw k offsets at random (with replacement, then de-duplicated) instead of
# ranking a random key for every neighbour: a value node can have tens of thousands of products.
_DENSE = 2048


def _draw(colptr: Tensor, nodes: Tensor, k: int, replace: bool, gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """For each node in ``nodes`` (positions into ``colptr``), choose up to ``k`` incoming edges.

    Returns ``(edge_pos, owner)``: positions into the CSC ``row`` array and, for each, the index
    into ``nodes`` of the node it was drawn for. ``k < 0`` takes every edge.
    """
    start = colptr[nodes]
    deg = colptr[nodes + 1] - start
    if k < 0:
        take_all = torch.ones_like(deg, dtype=torch.bool)
    elif replace:
        take_all = torch.zeros_like(deg, dtype=torch.bool)
    else:
        take_all = deg <= k
    pos_parts, own_parts = [], []
    # nodes whose edges are all taken: expand the ranges
    idx = take_all.nonzero().flatten()
    if len(idx):
        d = deg[idx]
        owner = torch.repeat_interleave(idx, d)
        offs = torch.arange(int(d.sum())) - torch.repeat_interleave(torch.cumsum(d, 0) - d, d)
        pos_parts.append(start[owner] + offs)
        own_parts.append(owner)
    idx = (~take_all & (deg > 0)).nonzero().flatten()
    if len(idx) and k != 0:
        d = deg[idx]
        sparse = (d <= _DENSE) & (not replace)
        # moderate degree, without replacement: k smallest random keys per node
        i1 = idx[sparse]
        if len(i1):
            d1 = deg[i1]
            owner = torch.repeat_interleave(torch.arange(len(i1)), d1)
            offs = torch.arange(int(d1.sum())) - torch.repeat_interleave(torch.cumsum(d1, 0) - d1, d1)
            keys = torch.rand(len(owner), generator=gen) + owner.to(torch.float64)  # segment, then key
            order = torch.argsort(keys)
            rank = torch.arange(len(owner)) - torch.repeat_interleave(torch.cumsum(d1, 0) - d1, d1)
            chosen = order[rank < k]  # rank within its segment, since keys sort by segment first
            pos_parts.append(start[i1][owner[chosen]] + offs[chosen])
            own_parts.append(i1[owner[chosen]])
        # dense nodes, or sampling with replacement: k random offsets each
        i2 = idx[~sparse]
        if len(i2):
            d2 = deg[i2]
            r = (torch.rand(len(i2), k, generator=gen, dtype=torch.float64) * d2[:, None]).long()
            owner = torch.arange(len(i2)).repeat_interleave(k)
            pos = start[i2][owner] + r.flatten()
            if not replace:  # drop repeats (the price of not ranking 10^4 keys)
                pos, first = torch.unique(pos, return_inverse=True)
                owner = torch.zeros_like(pos).scatter_(0, first, owner)
            pos_parts.append(pos)
            own_parts.append(i2[owner])
    if not pos_parts:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(pos_parts), torch.cat(own_parts)


class _Nodes:
    """The sampled nodes of one type: global ids in order of discovery, and global -> local."""

    def __init__(self, num_nodes: int):
        self.local = torch.full((num_nodes,), -1, dtype=torch.long)
        self.ids: list[Tensor] = []
        self.count = 0

    def add(self, glob: Tensor) -> tuple[Tensor, Tensor]:
        """Add the nodes of ``glob`` not seen yet (in order of first occurrence); return the local ids
        of all of ``glob`` and the newly added global ids."""
        unseen = self.local[glob] < 0
        if bool(unseen.any()):
            new = _first_occurrence(glob[unseen])
            self.local[new] = torch.arange(self.count, self.count + len(new))
            self.count += len(new)
            self.ids.append(new)
        else:
            new = glob[:0]
        return self.local[glob], new

    def tensor(self) -> Tensor:
        return torch.cat(self.ids) if self.ids else torch.zeros(0, dtype=torch.long)


def _first_occurrence(x: Tensor) -> Tensor:
    """Distinct values of ``x`` in the order they first occur."""
    uniq, inv = torch.unique(x, return_inverse=True)
    firsts = torch.full((len(uniq),), len(x), dtype=torch.long).scatter_reduce_(
        0, inv, torch.arange(len(x)), reduce="amin")
    return uniq[torch.argsort(firsts)]


class TorchNeighborSampler(NeighborSampler):
    """``NeighborSampler`` whose neighbour drawing is pure torch (no pyg-lib, no torch-sparse)."""

    def __init__(self, data: Any, num_neighbors: Any, *, seed: int | None = None, **kwargs: Any):
        for bad in ("time_attr", "weight_attr"):
            if kwargs.get(bad) is not None:
                raise GnnError(f"TorchNeighborSampler does not support {bad}")
        if kwargs.get("disjoint"):
            raise GnnError("TorchNeighborSampler does not support disjoint subgraphs")
        if kwargs.get("subgraph_type", SubgraphType.directional) in (SubgraphType.induced, "induced"):
            raise GnnError("TorchNeighborSampler does not support induced subgraphs")
        super().__init__(data, num_neighbors, **kwargs)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def _sample(self, seed: Tensor | dict[str, Tensor], seed_time: Any = None, **kwargs: Any
                ) -> SamplerOutput | HeteroSamplerOutput:
        if seed_time is not None:
            raise GnnError("TorchNeighborSampler does not support temporal sampling")
        if self.sample_direction != "forward":
            raise GnnError("TorchNeighborSampler samples forward (from destination nodes to their sources) only")
        if isinstance(seed, dict):
            return self._hetero(seed)
        return self._homo(seed)

    def _homo(self, seed: Tensor) -> SamplerOutput:
        nodes = _Nodes(int(self.colptr.numel()) - 1)
        _, frontier = nodes.add(seed.long())
        rows, cols, edges = [], [], []
        n_nodes, n_edges = [len(frontier)], []
        for k in self.num_neighbors.get_mapped_values():
            if len(frontier) == 0:
                n_nodes.append(0)
                n_edges.append(0)
                continue
            pos, owner = _draw(self.colptr, frontier, k, self.replace, self.generator)
            src = self.row[pos]
            src_local, new = nodes.add(src)
            rows.append(src_local)
            cols.append(nodes.local[frontier[owner]])
            edges.append(pos)
            n_nodes.append(len(new))
            n_edges.append(len(pos))
            frontier = new
        cat = lambda xs: torch.cat(xs) if xs else torch.zeros(0, dtype=torch.long)  # noqa: E731
        return SamplerOutput(node=nodes.tensor(), row=cat(rows), col=cat(cols), edge=cat(edges), batch=None,
                             num_sampled_nodes=n_nodes, num_sampled_edges=n_edges)

    def _hetero(self, seed: dict[str, Tensor]) -> HeteroSamplerOutput:
        num_nodes = {t: n for t, n in self.num_nodes.items()} if isinstance(self.num_nodes, dict) else {}
        nodes = {t: _Nodes(int(num_nodes[t])) for t in self.node_types}
        frontier: dict[str, Tensor] = {}
        n_nodes: dict[str, list[int]] = {t: [] for t in self.node_types}
        for t in self.node_types:
            new = nodes[t].add(seed[t].long())[1] if t in seed else torch.zeros(0, dtype=torch.long)
            frontier[t] = new
            n_nodes[t].append(len(new))
        fanout = self.num_neighbors.get_mapped_values(self.edge_types)
        num_hops = max((len(v) for v in fanout.values()), default=0)
        rows: dict[str, list[Tensor]] = {k: [] for k in self.colptr_dict}
        cols: dict[str, list[Tensor]] = {k: [] for k in self.colptr_dict}
        edges: dict[str, list[Tensor]] = {k: [] for k in self.colptr_dict}
        n_edges: dict[str, list[int]] = {k: [] for k in self.colptr_dict}
        for hop in range(num_hops):
            added: dict[str, list[Tensor]] = {t: [] for t in self.node_types}
            for key, colptr in self.colptr_dict.items():
                src_t, _, dst_t = self.to_edge_type[key]
                k = fanout[key][hop] if hop < len(fanout[key]) else 0
                dst = frontier[dst_t]
                if k == 0 or len(dst) == 0:
                    n_edges[key].append(0)
                    continue
                pos, owner = _draw(colptr, dst, k, self.replace, self.generator)
                src = self.row_dict[key][pos]
                src_local, new = nodes[src_t].add(src)
                rows[key].append(src_local)
                cols[key].append(nodes[dst_t].local[dst[owner]])
                edges[key].append(pos)
                n_edges[key].append(len(pos))
                added[src_t].append(new)
            for t in self.node_types:
                frontier[t] = torch.cat(added[t]) if added[t] else torch.zeros(0, dtype=torch.long)
                n_nodes[t].append(len(frontier[t]))

        def cat(d: dict[str, list[Tensor]]) -> dict[tuple, Tensor]:
            return {self.to_edge_type[k]: (torch.cat(v) if v else torch.zeros(0, dtype=torch.long)) for k, v in d.items()}

        return HeteroSamplerOutput(
            node={t: nodes[t].tensor() for t in self.node_types}, row=cat(rows), col=cat(cols), edge=cat(edges),
            batch=None, num_sampled_nodes=n_nodes,
            num_sampled_edges={self.to_edge_type[k]: v for k, v in n_edges.items()})
