"""Baselines on tiny seeded catalogs with known answers; they learn from the allowed facts only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._deps import need

from gnn.baselines import BASELINES, BaselineError, MajorityBaseline, _fact_rows, get_baseline
from gnn.metrics import evaluate
from gnn.protocol import TEST, TRAIN, ProtocolError, make_split
from gnn.snapshot import Snapshot, load_snapshot
from tests.test_protocol import write_snapshot

need("sklearn")


def planted(n: int = 240, seed: int = 0) -> list[dict[str, Any]]:
    """A word in the title decides the size (zq0 -> s, zq1 -> m, zq2 -> l) and the brand; the colour
    follows the category (X: mostly red, Z: mostly blue); titles share no other signal."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(3))
        cat = "A > X" if i % 2 else "B > Z"
        main, other = ("red", "blue") if cat == "A > X" else ("blue", "red")
        out.append({"key": f"p{i:04d}", "title": f"item zq{k} n{int(rng.integers(10**6))}", "category": cat,
                    "brand": ["acme", "bolt", "corr"][k],
                    "facts": {"size": [["s", "m", "l"][k]], "colour": [main if rng.random() < 0.8 else other]}})
    # a value only one product has: it can only ever be in one split
    out.append({"key": "rare", "title": "item zq0", "category": "A > X", "brand": "acme",
                "facts": {"size": ["xxl"], "colour": ["red"]}})
    return out


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return load_snapshot(write_snapshot(tmp_path_factory.mktemp("b") / "snap", planted()))


def test_majority_by_hand(tmp_path: Path) -> None:
    prods = ([{"key": f"x{i}", "title": "t", "category": "A > X", "facts": {"colour": [c]}}
              for i, c in enumerate(["red", "red", "blue"])]
             + [{"key": f"z{i}", "title": "t", "category": "B > Z", "facts": {"colour": [c]}}
                for i, c in enumerate(["blue", "green", "blue", "blue", "green", "green"])]
             + [{"key": "t0", "title": "t", "category": "B > T", "facts": {"colour": ["green"]}},
                {"key": "t1", "title": "t", "category": "B > T", "facts": {"colour": ["red"]}},
                {"key": "t2", "title": "t", "category": "B > T", "facts": {"colour": ["green"]}},
                {"key": "w0", "title": "t", "category": "C > W", "facts": {"colour": ["red"]}}])
    s = load_snapshot(write_snapshot(tmp_path / "s", prods))
    sp = make_split(s, cold_share=0.0)
    pix, colour = s.index["product"], sp.attribute_id("colour")
    # train on everything but t2 (B > T has a green/red tie) and w0 (C > W has no training fact)
    held = np.isin(sp.product, [pix["t2"], pix["w0"]])
    sp.split[:] = TRAIN
    sp.split[held] = TEST
    m = MajorityBaseline(alpha=1.0).fit(s, sp)
    ps = m.score(sp.pairs("train", "test"))
    b = ps.blocks[colour]
    cands = [s.keys("value")[v][1] for v in sp.candidates(colour)]
    row = {s.keys("product")[sp.product[p]]: b.scores[i] for i, p in enumerate(b.pairs)}
    glob = np.array([4, 4, 3]) / 11  # training colours: blue 4, green 4, red 3
    assert cands == ["blue", "green", "red"]
    assert row["x0"] == pytest.approx((np.array([1, 0, 2]) + glob) / 4)  # red wins in A > X
    assert row["z0"] == pytest.approx((np.array([3, 3, 0]) + glob) / 7)
    assert row["t2"] == pytest.approx((np.array([0, 1, 1]) + glob) / 3)  # the tie goes to the global favourite
    assert row["w0"] == pytest.approx(glob)  # no training fact in C > W: the global distribution
    assert np.allclose(b.scores.sum(1), 1.0)
    ev = evaluate(ps.subset(sp.mask("test")), per_attribute=False)
    # t2 (green) first: rank 1; w0 (red, 3/11) behind blue and green (4/11): rank 3
    assert ev["hits@1"] == 0.5 and ev["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    with pytest.raises(BaselineError, match="alpha"):
        MajorityBaseline(alpha=2.0)


def test_majority_follows_the_category(snap: Snapshot) -> None:
    sp = make_split(snap, seed=0, cold_share=0.1)
    m = get_baseline("majority").fit(snap, sp)
    colour = sp.attribute_id("colour")
    for which in ("test", "cold"):
        pairs = sp.pairs(which)
        b = m.score(pairs[sp.attribute[pairs] == colour]).blocks[colour]
        top = [snap.keys("value")[v][1] for v in sp.candidates(colour)[b.scores.argmax(1)]]
        want = ["red" if c == snap.index["category"]["A > X"] else "blue"
                for c in snap.edges["in_category"][1][sp.product[b.pairs]]]
        assert top == want, which


def test_tfidf_learns_the_planted_words(snap: Snapshot) -> None:
    sp = make_split(snap, seed=0, cold_share=0.1)
    m = get_baseline("tfidf", n_jobs=1, max_iter=50).fit(snap, sp)
    size, brand = sp.attribute_id("size"), sp.brand_attribute
    for which in ("test", "cold"):
        pairs = sp.pairs(which)
        pairs = pairs[np.isin(sp.attribute[pairs], [size, brand]) & (sp.product[pairs] != snap.index["product"]["rare"])]
        ev = evaluate(m.score(pairs))
        assert ev["per_attribute"]["size"]["hits@1"] == 1.0 and ev["per_attribute"]["@brand"]["hits@1"] == 1.0, which
    ps = m.score(sp.pairs("test", "cold"))
    for b in ps.blocks.values():
        assert b.scores.shape[1] == sp.num_candidates(b.attribute) and np.allclose(b.scores.sum(1), 1.0)
    # the rare value "xxl" is a candidate, but no training fact has it: probability 0, ranked last
    rare_pair = int(np.flatnonzero((sp.product == snap.index["product"]["rare"]) & (sp.attribute == size))[0])
    sp.split[rare_pair] = TEST
    m = get_baseline("tfidf", n_jobs=1, max_iter=50).fit(snap, sp)
    b = m.score(np.array([rare_pair])).blocks[size]
    xxl = int(sp.local(size, np.array([snap.index["value"][("size", "xxl")]]))[0])
    assert b.true_local.tolist() == [xxl] and b.scores[0, xxl] == 0.0
    assert evaluate(m.score(np.array([rare_pair])))["mrr"] == pytest.approx(1 / 4)  # last of 4 sizes


def test_baselines_never_learn_hidden_facts(snap: Snapshot) -> None:
    """Rewriting every test and cold fact (to the wrong answer) changes no score: they are not read."""
    sp = make_split(snap, seed=1, cold_share=0.1)
    graded = sp.pairs("test", "cold")
    lied = make_split(snap, seed=1, cold_share=0.1)
    size = sp.attribute_id("size")
    hidden_sizes = graded[sp.attribute[graded] == size]
    vals = sp.candidates(size)
    # shift each hidden size to the next candidate value (the split keeps its structure)
    for p in hidden_sizes.tolist():
        lo = sp.indptr[p]
        lied.values[lo] = vals[(int(sp.local(size, sp.values[lo : lo + 1])[0]) + 1) % len(vals)]
    assert len(hidden_sizes) and not np.array_equal(lied.values, sp.values)
    for name, kw in (("majority", {}), ("tfidf", {"n_jobs": 1}), ("kge", {"epochs": 3, "threads": 1})):
        a = get_baseline(name, **kw).fit(snap, sp).score(graded)
        b = get_baseline(name, **kw).fit(snap, lied).score(graded)
        for k in a.blocks:
            assert np.allclose(a.blocks[k].scores, b.blocks[k].scores), (name, k)
        with pytest.raises(ProtocolError, match="train"):
            get_baseline(name, **kw).fit(snap, sp, on=("train", "test"))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_registered_baseline_scores_valid_probabilities(snap: Snapshot, name: str) -> None:
    sp = make_split(snap, seed=2)
    kw = {"tfidf": {"n_jobs": 1}, "kge": {"epochs": 5, "threads": 1}}.get(name, {})
    with pytest.raises(BaselineError, match="fit"):
        get_baseline(name, **kw).score(sp.pairs("test"))
    m = get_baseline(name, **kw).fit(snap, sp, on=("train", "valid"))
    ps = m.score(sp.pairs("test"))
    assert ps.num_pairs == len(sp.pairs("test"))
    for b in ps.blocks.values():
        assert (b.scores >= 0).all() and np.allclose(b.scores.sum(1), 1.0)
    # deterministic: the same split gives the same scores
    again = get_baseline(name, **kw).fit(snap, sp, on=("train", "valid")).score(sp.pairs("test"))
    assert all(np.array_equal(ps.blocks[k].scores, again.blocks[k].scores) for k in ps.blocks)
    assert m.config()["name"] == name


def test_kge_learns_the_graph_structure(snap: Snapshot) -> None:
    """PyKEEN alone (no text): the size is decided by the brand, which the graph shows."""
    sp = make_split(snap, seed=0, cold_share=0.0)
    m = get_baseline("kge", model="DistMult", epochs=60, embedding_dim=32, threads=1, batch_size=128).fit(snap, sp)
    test = sp.pairs("test")
    size = test[sp.attribute[test] == sp.attribute_id("size")]
    assert evaluate(m.score(size), per_attribute=False)["hits@1"] >= 0.8
    # its training triples hold no fact of a graded pair, and every training fact
    pf, fv = _fact_rows(sp, sp.pairs("test", "cold"))
    hidden = {(int(sp.product[p]) + m.kg.offsets["product"], int(v)) for p, v in zip(pf, fv)
              if sp.attribute[p] != sp.brand_attribute}
    seen = {(h, t - m.kg.offsets["value"]) for h, r, t in m.train_triples.tolist() if r == m.rel_id["has_value"]}
    assert hidden and not hidden & seen
    assert len(seen) == sum(1 for a in sp.attribute[_fact_rows(sp, sp.pairs("train"))[0]] if a != sp.brand_attribute)


def test_registry_names_the_valid_choices() -> None:
    with pytest.raises(BaselineError, match="valid: majority, tfidf"):
        get_baseline("knn")
    with pytest.raises(BaselineError, match="tfidf"):
        get_baseline("tfidf", bogus=1)


def test_tfidf_props_reads_the_product_properties(tmp_path: Path) -> None:
    """A season decided by the ``year`` property alone: the text-only classifier cannot know it."""
    from tests.test_gnn_model import property_catalog

    snap = load_snapshot(write_snapshot(tmp_path / "snap", property_catalog()))
    sp = make_split(snap, seed=0, cold_share=0.0, include_brand=False)
    test = sp.pairs("test")
    season = test[sp.attribute[test] == sp.attribute_id("season")]
    with_props = get_baseline("tfidf-props", n_jobs=1, max_iter=50).fit(snap, sp)
    text_only = get_baseline("tfidf", n_jobs=1, max_iter=50).fit(snap, sp)
    assert evaluate(with_props.score(season), per_attribute=False)["hits@1"] >= 0.9
    assert evaluate(text_only.score(season), per_attribute=False)["hits@1"] <= 0.6
    assert with_props.config()["properties"] is True and text_only.config()["properties"] is False
