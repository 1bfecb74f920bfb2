"""PyKEEN KG embeddings: planted structure is learned, evaluation is filtered and type-restricted,
the wiring agrees with pykeen.pipeline on Nations, models round-trip, unseen entities are flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests._deps import need

need("pykeen")

from gnn.errors import KgeError  # noqa: E402
from gnn.kge import KgeConfig, KgeModel, evaluate_ranking, split_triples, train_kge, triples_from_snapshot  # noqa: E402
from gnn.snapshot import NODE_TYPES, load_snapshot  # noqa: E402

N_BRANDS, N_PRODUCTS = 8, 240


def make_snapshot(root: Path, seed: int = 0) -> Path:
    """A tiny snapshot on disk (the format graph.export writes): each brand has one signature style."""
    rng = np.random.default_rng(seed)
    products = [f"p{i:03d}" for i in range(N_PRODUCTS)]
    brands = [f"b{j}" for j in range(N_BRANDS)]
    values = [["style", f"s{j}"] for j in range(N_BRANDS)] + [["colour", f"c{k}"] for k in range(4)]
    nodes = {
        "product": [{"key": p, "title": p} for p in products],
        "brand": [{"key": b, "name": b} for b in brands],
        "category": [{"key": "All", "name": "All", "level": 1}],
        "attribute": [{"key": "colour"}, {"key": "style"}],
        "value": [{"key": v, "attribute": v[0], "norm": v[1], "value": v[1]} for v in sorted(values)],
    }
    vix = {tuple(v["key"]): i for i, v in enumerate(nodes["value"])}
    hv, hb, ic = [], [], []
    for i in range(N_PRODUCTS):
        b = i % N_BRANDS
        hb.append((i, b))
        ic.append((i, 0))
        hv.append((i, vix[("style", f"s{b}")]))
        hv.append((i, vix[("colour", f"c{rng.integers(4)}")]))  # noise
    oa = [(i, 0 if v["attribute"] == "colour" else 1) for i, v in enumerate(nodes["value"])]
    edges = {"has_value": hv, "has_brand": hb, "in_category": ic, "subcategory_of": [], "of_attribute": oa}
    types = {"has_value": ("product", "value"), "has_brand": ("product", "brand"), "in_category": ("product", "category"),
             "subcategory_of": ("category", "category"), "of_attribute": ("value", "attribute")}
    (root / "nodes").mkdir(parents=True)
    (root / "edges").mkdir()
    for t in NODE_TYPES:
        (root / "nodes" / f"{t}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in nodes[t]))
    for rel, e in edges.items():
        np.save(root / "edges" / f"{rel}.npy", np.array(e, dtype=np.int64).reshape(-1, 2).T.copy())
    manifest = {"format": 1, "fingerprint": "test", "source": {}, "nodes": {t: len(nodes[t]) for t in NODE_TYPES},
                "edges": {r: {"source": types[r][0], "target": types[r][1], "count": len(e)} for r, e in edges.items()}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture()
def planted(tmp_path: Path):
    snap = load_snapshot(make_snapshot(tmp_path / "snap"))
    kg = triples_from_snapshot(snap)
    style = kg.relation_labels.index("has_value")
    style_values = {kg.offsets["value"] + i for i, r in enumerate(snap.nodes["value"]) if r["attribute"] == "style"}
    is_style = (kg.triples[:, 1] == style) & np.isin(kg.triples[:, 2], list(style_values))
    held = np.flatnonzero(is_style)[::7]  # every 7th product's style is hidden (7 and 8 coprime: all brands)
    mask = np.ones(len(kg.triples), bool)
    mask[held] = False
    return snap, kg, kg.triples[mask], kg.triples[held]


# TransE cannot express a one-to-many relation (has_value also points at a random colour), so it
# is held to a weaker bar; chance is Hits@1 = 1/8 among the 8 style values (the type restriction).
@pytest.mark.parametrize("model,min_hits1", [("DistMult", 0.9), ("RotatE", 0.9), ("TransE", 0.5)])
def test_planted_value_is_ranked_first(planted, model: str, min_hits1: float) -> None:
    snap, kg, train, test = planted
    cfg = KgeConfig(model=model, embedding_dim=32, epochs=30, batch_size=256, learning_rate=0.05, seed=1, threads=2)
    m = train_kge(kg.factory(train), cfg)
    res = evaluate_ranking(m.model, test, [kg.triples], groups=kg.groups)
    assert res["count"] == len(test) == len(range(0, N_PRODUCTS, 7))
    assert res["hits@1"] >= min_hits1, res


def test_type_restriction_and_filtering() -> None:
    """A hand-made scorer: ranks must count only same-group candidates, never other true answers."""
    torch = need("torch")

    class Fixed:
        num_entities = 6

        def eval(self):
            return self

        def score_t(self, hr, tails):
            base = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 9.0])  # entity 5 scores highest but is another type
            return base[tails].expand(len(hr), -1)

    groups = np.array([0, 0, 0, 0, 0, 1])
    test = np.array([[9, 0, 2]])  # true tail 2: entities 0 and 1 score higher
    assert evaluate_ranking(Fixed(), test, [test], groups=groups)["mrr"] == pytest.approx(1 / 3)
    known = np.array([[9, 0, 0], [9, 0, 2]])  # 0 is also a true tail of (9, 0): filtered out
    res = evaluate_ranking(Fixed(), test, [known], groups=groups)
    assert res["mrr"] == pytest.approx(1 / 2) and res["hits@1"] == 0.0 and res["hits@3"] == 1.0
    # without the type restriction entity 5 (score 9) would count too
    assert evaluate_ranking(Fixed(), test, [known], groups=None)["mrr"] == pytest.approx(1 / 3)


def test_matches_pykeen_pipeline_on_nations() -> None:
    from pykeen.datasets import Nations
    from pykeen.pipeline import pipeline

    d = Nations()
    cfg = KgeConfig(model="TransE", embedding_dim=50, epochs=20, batch_size=256, learning_rate=0.01, seed=0, threads=2)
    ours = train_kge(d.training, cfg)
    parts = [d.training.mapped_triples.numpy(), d.validation.mapped_triples.numpy(), d.testing.mapped_triples.numpy()]
    mrr_ours = evaluate_ranking(ours.model, parts[2], parts, sides=("head", "tail"))["mrr"]
    ref = pipeline(dataset=d, model="TransE", model_kwargs={"embedding_dim": 50}, optimizer="adam",
                   optimizer_kwargs={"lr": 0.01}, negative_sampler="basic", random_seed=0,
                   training_kwargs={"num_epochs": 20, "batch_size": 256, "use_tqdm": False},
                   evaluation_kwargs={"use_tqdm": False})
    mrr_ref = ref.metric_results.get_metric("both.realistic.inverse_harmonic_mean_rank")
    assert abs(mrr_ours - mrr_ref) <= 0.02, (mrr_ours, mrr_ref)
    # and our evaluator on PyKEEN's model agrees with PyKEEN's evaluator
    assert evaluate_ranking(ref.model, parts[2], parts, sides=("head", "tail"))["mrr"] == pytest.approx(mrr_ref, abs=1e-4)


def test_save_load_and_features(planted, tmp_path: Path) -> None:
    from attrgraph.features import compute_kge_features

    snap, kg, train, test = planted
    # every fact of product p000 is excluded: it must get no KG embedding
    p0 = kg.offsets["product"]
    exclude = kg.triples[kg.triples[:, 0] == p0]
    rep = compute_kge_features(snap, KgeConfig(epochs=5, embedding_dim=16, batch_size=64, seed=0, threads=2),
                               model_dir=tmp_path / "kge", exclude=exclude, holdout=0.1)
    assert rep.train_triples + rep.test_triples == len(kg.triples) - len(exclude)
    assert set(rep.per_relation) <= set(kg.relation_labels) and 0 < rep.metrics["mrr"] <= 1
    emb, mask = snap.features.get("kge.product"), snap.features.get("kge_mask.product")
    assert emb.shape == (N_PRODUCTS, 16) and mask[0] == 0 and not emb[0].any()
    assert mask[1:].sum() >= N_PRODUCTS - 1 - rep.entities_without_training_fact
    back = KgeModel.load(tmp_path / "kge")
    assert np.allclose(back.entity_embeddings(), KgeModel.load(tmp_path / "kge").entity_embeddings())
    assert back.config.embedding_dim == 16 and len(back.entity_labels) == kg.num_entities
    saved = json.loads((tmp_path / "kge" / "config.json").read_text())
    assert saved["model"] == "TransE" and saved["seed"] == 0


def test_config_errors(planted) -> None:
    snap, kg, train, _ = planted
    with pytest.raises(KgeError, match="unknown KG embedding setting"):
        KgeConfig.from_dict({"modle": "TransE"})
    with pytest.raises(KgeError, match="unknown PyKEEN model 'NoSuchModel'"):
        train_kge(kg.factory(train), KgeConfig(model="NoSuchModel", epochs=1))
    with pytest.raises(KgeError, match="unknown relation"):
        triples_from_snapshot(snap, ["likes"])
    a, b = split_triples(kg.triples, (0.9, 0.1), seed=3)
    c, d = split_triples(kg.triples, (0.9, 0.1), seed=3)
    assert np.array_equal(a, c) and len(a) + len(b) == len(kg.triples)
