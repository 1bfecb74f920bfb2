"""The pure-torch neighbour sampler behind PyG's NodeLoader / LinkLoader."""

from __future__ import annotations

from collections import Counter

import pytest

from tests._deps import need

torch = need("torch")
need("torch_geometric")

import torch_geometric.transforms as T  # noqa: E402
from torch_geometric.data import Data, HeteroData  # noqa: E402
from torch_geometric.loader import LinkLoader, NodeLoader  # noqa: E402

from gnn.errors import GnnError  # noqa: E402
from gnn.sampler import TorchNeighborSampler  # noqa: E402


def catalog(n_products: int = 600, n_values: int = 40, n_brands: int = 15, seed: int = 0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    d = HeteroData()
    d["product"].x = torch.randn(n_products, 8, generator=g)
    d["value"].x = torch.randn(n_values, 8, generator=g)
    d["brand"].x = torch.randn(n_brands, 8, generator=g)
    ei = torch.stack([torch.randint(0, n_products, (4 * n_products,), generator=g),
                      torch.randint(0, n_values, (4 * n_products,), generator=g)])
    d["product", "has_value", "value"].edge_index = torch.unique(ei, dim=1)
    d["product", "has_brand", "brand"].edge_index = torch.stack([torch.arange(n_products),
                                                                 torch.arange(n_products) % n_brands])
    return T.ToUndirected()(d)


def edge_set(d: HeteroData, et: tuple) -> set[tuple[int, int]]:
    return set(map(tuple, d[et].edge_index.t().tolist()))


def test_sampled_edges_are_real_and_seeds_come_first() -> None:
    d = catalog()
    loader = NodeLoader(d, node_sampler=TorchNeighborSampler(d, num_neighbors=[6, 3], seed=0),
                        input_nodes=("product", torch.arange(200)), batch_size=50)
    batches = list(loader)
    assert len(batches) == 4
    for i, b in enumerate(batches):
        assert b["product"].n_id[:50].tolist() == list(range(50 * i, 50 * i + 50))
        assert b["product"].batch_size == 50
        for t in b.node_types:
            assert len(set(b[t].n_id.tolist())) == len(b[t].n_id)  # no node twice
        for et in b.edge_types:
            e = b[et].edge_index
            pairs = zip(b[et[0]].n_id[e[0]].tolist(), b[et[2]].n_id[e[1]].tolist())
            assert set(pairs) <= edge_set(d, et), et
            assert torch.equal(b[et].e_id.sort().values, b[et].e_id.unique())  # distinct edges
        assert torch.equal(b["value"].x, d["value"].x[b["value"].n_id])  # features follow


def test_fanout_is_respected_and_small_neighbourhoods_are_taken_whole() -> None:
    d = catalog()
    k = 3
    s = TorchNeighborSampler(d, num_neighbors={et: [k] for et in d.edge_types}, seed=1)
    b = next(iter(NodeLoader(d, node_sampler=s, input_nodes=("product", torch.arange(100)), batch_size=100)))
    et = ("value", "rev_has_value", "product")
    deg = Counter(d[et].edge_index[1].tolist())
    got = Counter(b["product"].n_id[b[et].edge_index[1]].tolist())
    for p in range(100):
        assert got[p] == min(k, deg[p]), p  # exactly k when it has more, all when fewer


def test_all_neighbours_match_the_full_two_hop_neighbourhood() -> None:
    d = catalog(n_products=80, n_values=10, n_brands=4)
    s = TorchNeighborSampler(d, num_neighbors=[-1, -1])
    b = next(iter(NodeLoader(d, node_sampler=s, input_nodes=("product", torch.tensor([7])), batch_size=1)))
    hop1 = {("value", v) for p, v in edge_set(d, ("product", "has_value", "value")) if p == 7} | \
           {("brand", x) for p, x in edge_set(d, ("product", "has_brand", "brand")) if p == 7}
    hop2 = {("product", p) for p, v in edge_set(d, ("product", "has_value", "value")) if ("value", v) in hop1} | \
           {("product", p) for p, x in edge_set(d, ("product", "has_brand", "brand")) if ("brand", x) in hop1}
    sampled = {(t, int(i)) for t in b.node_types for i in b[t].n_id}
    assert sampled == hop1 | hop2 | {("product", 7)}


def test_dense_nodes_and_determinism() -> None:
    d = HeteroData()
    d["product"].num_nodes = 6000
    d["value"].num_nodes = 2
    d["product", "has_value", "value"].edge_index = torch.stack([torch.arange(6000), torch.zeros(6000, dtype=torch.long)])
    d = T.ToUndirected()(d)
    mk = lambda: TorchNeighborSampler(d, num_neighbors=[10], seed=5)  # noqa: E731
    run = lambda s: next(iter(NodeLoader(d, node_sampler=s, input_nodes=("value", torch.tensor([0])), batch_size=1)))  # noqa: E731
    b1, b2 = run(mk()), run(mk())
    et = ("product", "has_value", "value")
    assert 1 <= b1[et].edge_index.shape[1] <= 10  # a node with 6,000 neighbours: at most k drawn
    assert set(b1["product"].n_id.tolist()) <= set(range(6000))
    assert torch.equal(b1["product"].n_id, b2["product"].n_id)  # same seed, same sample


def test_homogeneous_graphs() -> None:
    g = torch.Generator().manual_seed(0)
    ei = torch.unique(torch.randint(0, 300, (2, 1500), generator=g), dim=1)
    d = Data(x=torch.randn(300, 4), edge_index=ei, num_nodes=300)
    b = next(iter(NodeLoader(d, node_sampler=TorchNeighborSampler(d, num_neighbors=[4, 2], seed=0),
                             input_nodes=torch.arange(20), batch_size=20)))
    full = set(map(tuple, ei.t().tolist()))
    assert set(zip(b.n_id[b.edge_index[0]].tolist(), b.n_id[b.edge_index[1]].tolist())) <= full
    assert b.n_id[:20].tolist() == list(range(20)) and len(set(b.n_id.tolist())) == len(b.n_id)


def test_link_loader_batches_train_a_hetero_gnn() -> None:
    from torch_geometric.nn import SAGEConv, to_hetero

    d = catalog()
    et = ("product", "has_value", "value")
    loader = LinkLoader(d, link_sampler=TorchNeighborSampler(d, num_neighbors=[5, 3], seed=0),
                        edge_label_index=(et, d[et].edge_index[:, :256]), batch_size=64, neg_sampling_ratio=1.0,
                        shuffle=True)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = SAGEConv((-1, -1), 16), SAGEConv((-1, -1), 16)

        def forward(self, x, edge_index):
            return self.c2(self.c1(x, edge_index).relu(), edge_index)

    model = to_hetero(Net(), d.metadata(), aggr="sum")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    n = 0
    for b in loader:
        h = model(b.x_dict, b.edge_index_dict)
        eli, y = b[et].edge_label_index, b[et].edge_label
        assert eli.shape[1] == len(y) and set(y.tolist()) == {0.0, 1.0}
        logit = (h["product"][eli[0]] * h["value"][eli[1]]).sum(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
        n += 1
    assert n == 4


def test_unsupported_options_are_clear() -> None:
    d = catalog(n_products=10, n_values=3, n_brands=2)
    with pytest.raises(GnnError, match="disjoint"):
        TorchNeighborSampler(d, num_neighbors=[2], disjoint=True)
    with pytest.raises(GnnError, match="weight_attr"):
        TorchNeighborSampler(d, num_neighbors=[2], weight_attr="w")
