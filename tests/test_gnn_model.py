"""The heterogeneous GNN on tiny seeded graphs with planted answers: it learns what the graph and the
text determine, never sees the facts it is graded on, trains in mini-batches too, and a checkpoint
scores a later snapshot without retraining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._deps import need

need("torch")
need("torch_geometric")

from gnn.baselines import _fit_pairs  # noqa: E402
from gnn.completion import CompletionPredictor, get_model  # noqa: E402
from gnn.metrics import evaluate  # noqa: E402
from gnn.model import CONVS, GnnCompletionModel, GnnConfig, ModelError  # noqa: E402
from gnn.protocol import SPLITS, make_split  # noqa: E402
from gnn.snapshot import Snapshot, load_snapshot  # noqa: E402
from tests.test_protocol import write_snapshot  # noqa: E402

# no dropout: on 320 products it only slows the planted signal down
FAST = dict(text_feature=None, hidden=32, epochs=60, eval_every=5, patience=4, lr=0.02, dropout=0.0, threads=1, seed=0,
            batch_size=0, layers=2, candidate_mp=True, text_prior=False,
            title_char_ngrams=None)  # full batch; mini-batches tested below. The titles here are random numbers:
# noise to character n-grams, which test_title_character_ngrams_read_values_inside_words switches on
COLOURS = ["red", "blue", "green", "black"]


def brand_catalog(n: int = 320, seed: int = 0) -> list[dict[str, Any]]:
    """The colour is decided by the brand (8 brands, 2 per colour); titles are random words, so only
    the graph (product -> brand) carries the answer. A word in the title decides the size."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        b = int(rng.integers(8))
        k = int(rng.integers(3))
        out.append({"key": f"p{i:04d}", "title": f"w{int(rng.integers(10**6))} zq{k} w{int(rng.integers(10**6))}",
                    "brand": f"brand{b}", "category": ["A > X", "B > Y"][i % 2],
                    "facts": {"colour": [COLOURS[b % 4]], "size": [["s", "m", "l"][k]]}})
    return out


def hits1(model: Any, split: Any, pairs: np.ndarray, attribute: str) -> float:
    a = split.attribute_id(attribute)
    sel = pairs[split.attribute[pairs] == a]
    return evaluate(model.score(sel), per_attribute=False)["hits@1"]


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return load_snapshot(write_snapshot(tmp_path_factory.mktemp("g") / "snap", brand_catalog()))


@pytest.fixture(scope="module")
def split(snap: Snapshot) -> Any:
    return make_split(snap, seed=0, cold_share=0.0, include_brand=False)


@pytest.fixture(scope="module")
def trained(snap: Snapshot, split: Any) -> GnnCompletionModel:
    return GnnCompletionModel(**FAST).fit(snap, split)


def test_graph_signal_is_learned_and_needs_message_passing(snap: Snapshot, split: Any, trained: GnnCompletionModel) -> None:
    test = split.pairs("test")
    assert hits1(trained, split, test, "colour") >= 0.9  # decided by the brand: graph only
    assert hits1(trained, split, test, "size") >= 0.9  # decided by a title word: text only
    flat = GnnCompletionModel(**{**FAST, "message_passing": False}).fit(snap, split)
    assert hits1(flat, split, test, "colour") <= 0.6  # without the graph the brand is invisible
    assert hits1(flat, split, test, "size") >= 0.9


def test_probabilities_are_over_the_attribute_candidates_only(split: Any, trained: GnnCompletionModel) -> None:
    a = split.attribute_id("colour")
    s = trained._score_attribute(a, np.arange(5))
    assert s.shape == (5, split.num_candidates(a)) == (5, 4)
    np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-5)


def test_no_leakage_of_graded_facts(snap: Snapshot, split: Any, trained: GnnCompletionModel) -> None:
    with pytest.raises(ModelError, match="trained on"):
        trained.score(split.pairs("train")[:3])
    # the graph used for valid pairs holds no valid fact; the one for test pairs no test fact
    rt = trained._runtime
    for hidden in (("valid",), ()):
        keep = np.isin(split.split, [SPLITS.index(s) for s in ("train", "valid") if s not in hidden])
        g = trained._graph(keep[rt["pair_of_fact"]])
        hv = g[("product", "has_value", "value")].numpy()
        seen = {(int(p), int(v)) for p, v in hv.T}
        for pr in split.pairs("test", *hidden):
            for v in split.values_of(pr).tolist():
                assert (int(split.product[pr]), v) not in seen


def test_seeded_training_is_deterministic(snap: Snapshot, split: Any) -> None:
    cfg = {**FAST, "epochs": 6, "eval_every": 3}
    a = GnnCompletionModel(**cfg).fit(snap, split)
    b = GnnCompletionModel(**cfg).fit(snap, split)
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-4)


def test_minibatch_training_with_the_pure_torch_sampler(snap: Snapshot, split: Any) -> None:
    m = GnnCompletionModel(**{**FAST, "batch_size": 64, "num_neighbors": (8, 4), "epochs": 30, "candidate_mp": False}).fit(snap, split)
    assert hits1(m, split, split.pairs("test"), "colour") >= 0.85


@pytest.mark.parametrize("conv", sorted(CONVS))
def test_every_registered_conv_trains(conv: str, snap: Snapshot, split: Any) -> None:
    m = GnnCompletionModel(**{**FAST, "conv": conv, "epochs": 40}).fit(snap, split)
    assert hits1(m, split, split.pairs("test"), "colour") >= 0.75, conv


def test_bad_configuration_is_clear() -> None:
    with pytest.raises(ModelError, match="valid: gat, hgt, sage|valid: sage"):
        GnnConfig(conv="nope")
    with pytest.raises(ModelError, match="unknown GNN option"):
        GnnConfig.from_dict({"hiden": 3})
    with pytest.raises(ModelError, match="supervision_share"):
        GnnConfig(supervision_share=1.5)
    with pytest.raises(ModelError, match="call fit"):
        GnnCompletionModel(**FAST).score(np.arange(2))


def test_missing_text_features_are_named(snap: Snapshot, split: Any) -> None:
    with pytest.raises(ModelError, match="text.product.*attrgraph features"):
        GnnCompletionModel(**{**FAST, "text_feature": "text"}).fit(snap, split)


def test_checkpoint_scores_a_later_snapshot_inductively(tmp_path: Path) -> None:
    base = brand_catalog(200, seed=1)
    s1 = load_snapshot(write_snapshot(tmp_path / "s1", base))
    pred = CompletionPredictor.fit(s1, model="gnn", model_kwargs={**FAST, "epochs": 80, "patience": 20}, valid_share=0.2, include_brand=False)
    saved = CompletionPredictor.load(pred.save(tmp_path / "model"))
    # the same snapshot: identical predictions after the round trip
    c1, c2 = pred.predict(s1, top_k=2), saved.predict(s1, top_k=2)
    np.testing.assert_array_equal(c1.candidate, c2.candidate)
    np.testing.assert_allclose(c1.prob, c2.prob, rtol=1e-5)
    # a later snapshot: new products (no facts yet but their brand and title) and a new colour value
    new = [{"key": f"new{b}", "title": f"fresh zq{b % 3}", "brand": f"brand{b}", "category": "A > X",
            "facts": {}} for b in range(8)]
    extra = [{"key": "odd", "title": "zq0", "brand": "brand0", "category": "A > X", "facts": {"colour": ["purple"]}}]
    root = write_snapshot(tmp_path / "s2", base + new + extra)
    mf = json.loads((root / "manifest.json").read_text())
    mf["fingerprint"] = "later"
    (root / "manifest.json").write_text(json.dumps(mf))
    s2 = load_snapshot(root)
    with pytest.raises(Exception, match="rebind"):
        saved.predict(s2)
    later = saved.rebind(s2)
    c = later.predict(s2, products=np.array([s2.index["product"][f"new{b}"] for b in range(8)]), top_k=3)
    slots = {(x["product"], x["attribute"]): x for x in c.slots(s2)}
    right = sum(slots[(f"new{b}", "colour")]["candidates"][0]["norm"] == COLOURS[b % 4] for b in range(8))
    assert right >= 6  # chance: 2 of 8
    sizes = sum(slots[(f"new{b}", "size")]["candidates"][0]["norm"] == ["s", "m", "l"][b % 3] for b in range(8))
    assert sizes >= 7
    # the unseen value is a candidate (scored from its text/unknown row), never a crash
    assert any(x["norm"] == "purple" for x in slots[("new0", "colour")]["candidates"]) or c.candidate.shape[1] == 3


def test_registry_resolves_gnn() -> None:
    assert isinstance(get_model("gnn", **FAST), GnnCompletionModel)


def test_rebind_refuses_text_features_of_another_encoder_version(tmp_path: Path) -> None:
    def with_text(root: Path, version: str) -> Snapshot:
        s = load_snapshot(root)
        rng = np.random.default_rng(0)
        for t in ("product", "brand", "category", "attribute", "value"):
            s.features.put(f"text.{t}", t, rng.normal(size=(s.num_nodes(t), 8)).astype(np.float32), encoder="x", version=version)
        return s

    base = brand_catalog(80, seed=2)
    s1 = with_text(write_snapshot(tmp_path / "s1", base), "1")
    split = make_split(s1, seed=0, cold_share=0.0)
    m = GnnCompletionModel(**{**FAST, "text_feature": "text", "epochs": 2}).fit(s1, split)
    root = write_snapshot(tmp_path / "s2", base)
    s2 = with_text(root, "2")
    with pytest.raises(ModelError, match="version"):
        m.rebind(s2, make_split(s2, seed=0, cold_share=0.0))
    s3 = with_text(write_snapshot(tmp_path / "s3", base), "1")
    assert m.rebind(s3, make_split(s3, seed=0, cold_share=0.0)).split is not None


def test_text_prior_is_cross_fitted_and_survives_a_checkpoint(snap: Snapshot, split: Any, tmp_path: Path) -> None:
    from gnn.prior import key_folds

    m = GnnCompletionModel(**{**FAST, "text_prior": True, "epochs": 30}).fit(snap, split)
    assert hits1(m, split, split.pairs("test"), "size") >= 0.9
    # a product is scored by the classifiers of its fold, which were fitted on the other fold only
    folds = key_folds(snap.keys("product"))
    a = split.attribute_id("size")
    for f in (0, 1):
        W, b, classes = m.prior.models[f][a]
        assert W.shape[1] == len(classes)
    import pickle

    again = pickle.loads(pickle.dumps(m))
    again._rebuild_runtime()
    np.testing.assert_allclose(again._score_attribute(a, np.arange(10)), m._score_attribute(a, np.arange(10)), rtol=1e-4, atol=1e-6)
    assert set(np.unique(folds)) == {0, 1}
    with pytest.raises(ModelError, match="tfidf"):
        GnnConfig(text_prior=True, tfidf=False)


def test_prior_refit_scores_unseen_facts_with_classifiers_fitted_on_all_training_facts(snap: Snapshot, split: Any) -> None:
    m = GnnCompletionModel(**{**FAST, "text_prior": True, "epochs": 5}).fit(snap, split)
    a = split.attribute_id("size")
    assert len(m.prior.models) == 3 and a in m.prior.models[2]
    X = m._runtime["tfidf_csr"][np.arange(20)]
    unseen = m.prior.logp(a, X, None)
    np.testing.assert_allclose(unseen, m.prior.logp(a, X, np.full(20, 2, np.int8)))  # the refitted classifiers
    assert not np.allclose(unseen, m.prior.logp(a, X, np.zeros(20, np.int8)))  # not fold 0's
    # without refit, unseen facts get the average of both folds (the older behaviour, still loadable)
    m2 = GnnCompletionModel(**{**FAST, "text_prior": True, "prior_refit": False, "epochs": 5}).fit(snap, split)
    assert len(m2.prior.models) == 2
    p0, p1 = (np.exp(m2.prior.logp(a, X, np.full(20, f, np.int8))) for f in (0, 1))
    np.testing.assert_allclose(np.exp(m2.prior.logp(a, X, None)), (p0 + p1) / 2, rtol=1e-4, atol=1e-6)


def test_prior_budget_and_checkpoint_keep_what_scoring_needs(snap: Snapshot, split: Any) -> None:
    import pickle

    from gnn.prior import TextPrior, key_folds

    m = GnnCompletionModel(**{**FAST, "text_prior": False}).fit(snap, split)  # for its TF-IDF rows
    X = m._runtime["tfidf_csr"]
    folds = key_folds(snap.keys("product"))
    fit = _fit_pairs(split, ("train",))
    a = split.attribute_id("size")
    tiny = TextPrior(top_k=2, budget=0).fit(X, split, fit, folds)
    wide = TextPrior(top_k=2, budget=10**9).fit(X, split, fit, folds)
    W_tiny, W_wide = tiny.models[2][a][0], wide.models[2][a][0]
    n_classes = W_wide.shape[1]
    assert (np.diff(W_tiny.tocsc().indptr) <= 2).all()  # top_k per class when the budget is smaller
    # a budget above V x C keeps every weight the classifier learned: as many as its fitted features
    seen = np.unique(X[split.product[fit[split.attribute[fit] == a]]].indices)
    assert W_wide.nnz == len(seen) * n_classes > W_tiny.nnz
    assert wide.num_weights > tiny.num_weights
    # a checkpoint keeps the refitted classifiers only: unseen facts score the same, training folds refuse
    loaded = pickle.loads(pickle.dumps(wide))
    rows = X[np.arange(30)]
    np.testing.assert_allclose(loaded.logp(a, rows, None), wide.logp(a, rows, None))
    assert loaded.models[0] == loaded.models[1] == {}
    assert loaded.num_weights == sum(w[0].nnz for w in wide.models[2].values() if isinstance(w, tuple))
    with pytest.raises(ValueError, match="only the refitted classifiers"):
        loaded.logp(a, rows, np.zeros(30, np.int8))


def property_catalog(n: int = 320, seed: int = 0) -> list[dict[str, Any]]:
    """The season is decided by a product property (``year``) and by nothing else: titles are random
    words, no brand. A price property is noise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        y = int(rng.integers(2010, 2014))
        out.append({"key": f"q{i:04d}", "title": f"item w{int(rng.integers(10**6))} w{int(rng.integers(10**6))}",
                    "category": "A > X", "props": {"year": y, "price": float(rng.integers(100, 5000)), "code": f"c{i}"},
                    "facts": {"season": [["summer", "fall", "winter", "spring"][y - 2010]],
                              "colour": [COLOURS[int(rng.integers(4))]]}})
    return out


def test_product_properties_are_inputs(tmp_path: Path) -> None:
    snap = load_snapshot(write_snapshot(tmp_path / "snap", property_catalog()))
    split = make_split(snap, seed=0, cold_share=0.0, include_brand=False)
    opts = {**FAST, "text_prior": True, "epochs": 30, "layers": 1}
    with_props = GnnCompletionModel(**opts).fit(snap, split)
    without = GnnCompletionModel(**{**opts, "properties": False}).fit(snap, split)
    test = split.pairs("test")
    assert hits1(with_props, split, test, "season") >= 0.9
    assert hits1(without, split, test, "season") <= 0.6  # 4 seasons, nothing else says which
    pt = with_props.property_tokens
    assert "year" in pt.properties and "code" not in pt.properties  # a unique code gives no token
    assert with_props.feature_versions["properties"]["tokens"] == len(pt)
    # a checkpoint encodes a later snapshot's properties in the columns it was trained with
    later = property_catalog(40, seed=1)
    for r in later:
        r["key"] = "new-" + r["key"]
    snap2 = load_snapshot(write_snapshot(tmp_path / "snap2", property_catalog() + later))
    split2 = make_split(snap2, seed=0, cold_share=0.0, include_brand=False)
    rebound = with_props.rebind(snap2, split2)
    assert rebound._runtime["tfidf_csr"].shape[1] == with_props._runtime["tfidf_csr"].shape[1]
    new_ids = np.array([snap2.index["product"][r["key"]] for r in later])
    a = split2.attribute_id("season")
    probs = rebound._score_attribute(a, new_ids)
    cand = [snap2.keys("value")[int(c)][1] for c in split2.candidates(a)]
    truth = [["summer", "fall", "winter", "spring"][r["props"]["year"] - 2010] for r in later]
    acc = np.mean([cand[int(np.argmax(p))] == t for p, t in zip(probs, truth)])
    assert acc >= 0.9


def compound_catalog(n: int = 320, seed: int = 0, prefix: str = "c") -> list[dict[str, Any]]:
    """The colour is spelt only inside a one-off compound word of the title (``zqblue483920``): no
    word n-gram of it occurs twice, its character n-grams do."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = COLOURS[int(rng.integers(4))]
        out.append({"key": f"{prefix}{i:04d}", "title": f"item zq{c}{int(rng.integers(10**6)):06d}", "category": "A > X",
                    "facts": {"colour": [c], "size": [["s", "m"][int(rng.integers(2))]]}})
    return out


def test_title_character_ngrams_read_values_inside_words(tmp_path: Path) -> None:
    snap = load_snapshot(write_snapshot(tmp_path / "snap", compound_catalog()))
    split = make_split(snap, seed=0, cold_share=0.0, include_brand=False)
    opts = {**FAST, "text_prior": True, "epochs": 30, "layers": 1, "title_char_ngrams": (2, 4)}
    chars = GnnCompletionModel(**opts).fit(snap, split)
    words = GnnCompletionModel(**{**opts, "title_char_ngrams": None}).fit(snap, split)
    test = split.pairs("test")
    assert hits1(chars, split, test, "colour") >= 0.9
    assert hits1(words, split, test, "colour") <= 0.6  # 4 colours, no reusable word says which
    assert chars.char_vectorizer is not None and words.char_vectorizer is None
    # a checkpoint encodes a later snapshot's titles in the columns it was trained with
    later = compound_catalog(40, seed=1, prefix="new")
    snap2 = load_snapshot(write_snapshot(tmp_path / "snap2", compound_catalog() + later))
    split2 = make_split(snap2, seed=0, cold_share=0.0, include_brand=False)
    import pickle

    rebound = pickle.loads(pickle.dumps(chars)).rebind(snap2, split2)  # as a checkpoint does
    assert rebound._runtime["tfidf_csr"].shape[1] == chars._runtime["tfidf_csr"].shape[1]
    a = split2.attribute_id("colour")
    probs = rebound._score_attribute(a, np.array([snap2.index["product"][r["key"]] for r in later]))
    cand = [snap2.keys("value")[int(c)][1] for c in split2.candidates(a)]
    assert np.mean([cand[int(np.argmax(p))] == r["facts"]["colour"][0] for p, r in zip(probs, later)]) >= 0.9
    for bad in ((3, 2), (2,), (0, 3), ("a", "b")):
        with pytest.raises(ModelError, match="title_char_ngrams"):
            GnnConfig(title_char_ngrams=bad)


def test_many_valued_attributes_and_late_classifiers_get_a_class_centroid_prior(snap: Snapshot, split: Any) -> None:
    """Cost grows with facts: above ``max_lr_classes`` values (or after the deadline) no logistic regression
    is fitted; the centroid classifier still ranks a value its products' text states."""
    import time

    from gnn.prior import TextPrior, key_folds

    m = GnnCompletionModel(**{**FAST, "text_prior": False}).fit(snap, split)
    X, folds, fit = m._runtime["tfidf_csr"], key_folds(snap.keys("product")), _fit_pairs(split, ("train",))
    a = split.attribute_id("size")  # 3 values, decided by a title word
    lr = TextPrior().fit(X, split, fit, folds)
    cen = TextPrior(max_lr_classes=2).fit(X, split, fit, folds)
    late = TextPrior().fit(X, split, fit, folds, deadline=time.perf_counter() - 1)
    assert lr.methods[a] == "lr" and cen.methods[a] == "centroid" and late.methods[a] == "centroid"
    W = cen.models[2][a][0]
    assert W.nnz <= X[split.product[fit[split.attribute[fit] == a]]].nnz  # no more weights than the rows' non-zeros
    test = split.pairs("test")
    pa = test[split.attribute[test] == a]
    ip, tl = split.truth(pa)
    for prior in (lr, cen):
        top = prior.logp(a, X[split.product[pa]], None).argmax(1)
        assert (top == tl[ip[:-1]]).mean() >= 0.9
    with pytest.raises(ModelError, match="prior_share"):
        GnnConfig(prior_share=0)


def test_the_time_budget_is_checked_between_mini_batches(snap: Snapshot, split: Any) -> None:
    m = GnnCompletionModel(**{**FAST, "batch_size": 8, "candidate_mp": False, "epochs": 50, "patience": 50,
                              "max_seconds": 1.0}).fit(snap, split)
    assert m.stopped_by_time and m.epochs_run < 50
    last = m.history[-1]
    assert "valid_hits@1" in last  # a stop between batches still evaluates, and keeps the best state


def test_per_attribute_choice_between_the_model_and_its_text_prior_on_valid(snap: Snapshot, split: Any) -> None:
    m = GnnCompletionModel(**{**FAST, "text_prior": True, "epochs": 10}).fit(snap, split)
    valid = split.pairs("valid")
    for name in ("colour", "size"):
        sel = m.selection[name]
        assert sel["valid_pairs"] == int((split.attribute[valid] == split.attribute_id(name)).sum())
        hits = {k: sel[f"{k}_hits"] for k in ("model", "text", "prior")}  # the text head: the model's text part
        assert sel["use"] == max(hits, key=hits.get)
        assert hits[sel["use"]] >= hits["text"]  # never worse than its own text part on validation
    # colour is decided by the brand (graph only): neither the prior nor the text head can beat the model there
    assert m.selection["colour"]["use"] == "model"
    assert m.selection["colour"]["text_hits"] < m.selection["colour"]["model_hits"]
    c = split.attribute_id("colour")
    test = split.pairs("test")
    graph_scores = m._score_attribute(c, split.product[test[split.attribute[test] == c]])
    m.text_only = {c}  # forced: the text head ranks colour -- it reads no neighbour, so it cannot know the brand
    m._cache = {}
    assert hits1(m, split, test, "colour") <= 0.5  # (4 colours: chance is 0.25)
    assert not np.allclose(m._score_attribute(c, split.product[test[split.attribute[test] == c]]), graph_scores)
    assert m.explain(c, np.arange(3), np.zeros(3, np.int64))[0]["text_head"] is True
    m.text_only = set()
    m._cache = {}
    a = split.attribute_id("size")
    m.prior_only = {a}  # forced: the attribute is then ranked by the prior alone
    m._cache = {}
    X = m._runtime["tfidf_csr"][np.arange(6)]
    p = np.exp(m.prior.logp(a, X, None))
    np.testing.assert_allclose(m._score_attribute(a, np.arange(6)), p / p.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    off = GnnCompletionModel(**{**FAST, "text_prior": True, "epochs": 2, "select_by_valid": False}).fit(snap, split)
    assert off.selection == {} and off.prior_only == set()


def test_explain_splits_the_chosen_values_margin_exactly(snap: Snapshot, split: Any) -> None:
    """The explanation is the model's own arithmetic: the chosen value's logit margin over the runner-up is
    the sum of its parts (decoder, weighted prior, weighted mentions), and the text features named are those
    that push the prior's classifier towards the chosen value -- for size, the title word that decides it."""
    m = GnnCompletionModel(**{**FAST, "text_prior": True, "epochs": 10, "select_by_valid": False}).fit(snap, split)
    a = split.attribute_id("size")
    test = split.pairs("test")
    prods = split.product[test[split.attribute[test] == a]][:20]
    probs = m._score_attribute(a, prods)
    chosen = probs.argmax(1)
    ex = m.explain(a, prods, chosen)
    cands = [snap.nodes["value"][c]["norm"] for c in split.candidates(a)]
    for i, d in enumerate(ex):
        r = d["runner_up"]
        assert r != chosen[i] and probs[i, r] == max(probs[i, j] for j in range(len(cands)) if j != chosen[i])
        assert d["margin"] == pytest.approx(np.log(probs[i, chosen[i]] / probs[i, r]), abs=2e-3)
        assert sum(d["parts"].values()) == pytest.approx(d["margin"], abs=2e-3)
        assert set(d["parts"]) == {"gnn", "text_prior", "title_mention", "description_mention"}
        title = snap.nodes["product"][prods[i]]["title"]
        word = next(w for w in title.split() if w.startswith("zq"))
        if cands[chosen[i]] == ["s", "m", "l"][int(word[2])]:  # right: the deciding word is the top feature
            assert d["text_features"] and d["text_features"][0][0] == word and d["text_features"][0][1] > 0
    m.prior_only = {a}
    m._cache = {}
    (d,) = m.explain(a, prods[:1], chosen[:1])
    assert d["prior_only"] and set(d["parts"]) == {"text_prior"}
    assert m.explain(a, np.zeros(0, np.int64), np.zeros(0, np.int64)) == []


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_padded_loss_equals_the_per_attribute_loss(tmp_path: Path, smoothing: float) -> None:
    """Small attributes are scored together over padded candidate lists: the same loss (and gradient) as
    one step per attribute, multi-valued pairs and the text prior included."""
    import torch

    rows = brand_catalog(120)
    rng = np.random.default_rng(1)
    for r in rows:  # a multi-valued attribute, and one with more candidates than the padding
        r["facts"]["tags"] = sorted({f"t{int(x)}" for x in rng.integers(5, size=2)})
        r["facts"]["code"] = [f"k{int(rng.integers(12))}"]
    snap = load_snapshot(write_snapshot(tmp_path / "snap", rows))
    split = make_split(snap, seed=0, cold_share=0.0, include_brand=True)
    m = GnnCompletionModel(**{**FAST, "text_prior": True, "epochs": 1, "label_smoothing": smoothing,
                              "loss_pad": 8}).fit(snap, split)
    fit = _fit_pairs(split, ("train",))
    n_cand = np.diff(split.cand_indptr)
    assert (n_cand > 8).any() and (n_cand <= 8).any() and 2 <= n_cand[split.brand_attribute] <= 8  # brands padded too
    g = m._graph(np.ones(len(m._runtime["pair_of_fact"]), bool))
    losses, grads = [], []
    for pad in (8, 0):
        m.cfg.loss_pad = pad
        m.net.zero_grad()
        m.cand_bias.grad = None
        x = m.net(m._runtime["inp"], g)
        loss = m._loss(x, fit)
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append(torch.cat([m.net.prior_w.grad.ravel(), m.cand_bias.grad.ravel(), m.net.rel.weight.grad.ravel()]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_prior_gives_values_it_never_saw_their_measured_share(tmp_path: Path) -> None:
    """A candidate the classifier never saw is not ruled out: the unseen candidates share the probability
    that a fact's value is new to the classifier (measured on the other fold; Good-Turing for the refit),
    and the log-probabilities still sum to one."""
    from gnn.prior import FLOOR, TextPrior, key_folds

    records = brand_catalog()
    for i, r in enumerate(records):  # a long-tail attribute: most values on one or two products
        r["facts"]["model"] = [f"m{(i * 7) % 200}"]
    snap = load_snapshot(write_snapshot(tmp_path / "snap", records))
    split = make_split(snap, seed=0, cold_share=0.0, include_brand=False)
    m = GnnCompletionModel(**{**FAST, "text_prior": False, "epochs": 1}).fit(snap, split)  # for its TF-IDF rows
    X = m._runtime["tfidf_csr"]
    folds = key_folds(snap.keys("product"))
    fit = _fit_pairs(split, ("train",))
    prior = TextPrior().fit(X, split, fit, folds)
    checked = 0
    for a in range(split.num_attributes):
        C = split.num_candidates(a)
        for f in (0, 1, 2):
            model = prior.models[f].get(a)
            if not isinstance(model, tuple) or C - len(model[2]) == 0:
                continue
            unseen = np.setdiff1d(np.arange(C), model[2])
            lp = prior.logp(a, X[np.arange(12)], np.full(12, f, np.int8), C)
            u = prior.unseen[f][a]
            assert 0 < u < 1
            np.testing.assert_allclose(lp[:, unseen], max(np.log(u / len(unseen)), FLOOR), rtol=1e-5)
            assert (lp[:, unseen] > FLOOR).all()
            np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, atol=1e-3)
            if f == 2:  # what a candidate new since training gets after rebind
                assert prior.unseen_logp(a, C) == pytest.approx(float(lp[0, unseen[0]]), rel=1e-5)
            checked += 1
    assert checked > 0
