"""Learned applicability (gnn.applicability): a threshold chosen on held-out pairs keeps the long tail
applicable, shares are smoothed down the category tree, and a slot asked for by name is always ranked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gnn.applicability import applicability_at, learn_applicability, smoothed_shares
from gnn.completion import CompletionError, CompletionPredictor
from gnn.protocol import ProtocolError, applicable_attributes, make_split, visible_edges
from gnn.snapshot import Snapshot, load_snapshot

from .test_protocol import write_snapshot


def long_tail_catalog(n: int = 900, seed: int = 0) -> list[dict[str, Any]]:
    """Gadgets (G > Phones, G > Cases): every product has a colour; 6% of phones state a warranty
    (a long-tail attribute a 10% share rule never calls applicable); one case states a warranty too.
    Kitchen (K > Pots) products have a material, never a warranty."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cat = ["G > Phones", "G > Cases", "K > Pots"][i % 3]
        facts: dict[str, list[str]] = {"colour": [str(rng.choice(["red", "blue", "black"]))]}
        if cat == "G > Phones" and rng.random() < 0.06:
            facts["warranty"] = [str(rng.choice(["1 year", "2 years"]))]
        if cat == "K > Pots":
            facts["material"] = [str(rng.choice(["steel", "iron"]))]
        out.append({"key": f"p{i:04d}", "title": f"item {i}", "brand": f"b{i % 5}", "category": cat, "facts": facts})
    out[1]["facts"]["warranty"] = ["1 year"]  # a case (i % 3 == 1) with a warranty
    return out


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return load_snapshot(write_snapshot(tmp_path_factory.mktemp("appl") / "s", long_tail_catalog()))


def test_the_learned_threshold_keeps_held_out_long_tail_facts_applicable(snap: Snapshot) -> None:
    sp = make_split(snap, seed=1, fractions=(0.5, 0.5, 0.0), cold_share=0.0)
    w = sp.attribute_id("warranty")
    fixed = applicable_attributes(snap, sp)  # 10% share rule: warranty (6% of phones, 2% of gadgets) never applies
    valid = sp.pairs("valid")
    assert not fixed.applies(sp.product[valid], sp.attribute[valid])[sp.attribute[valid] == w].any()
    appl, th = learn_applicability(snap, sp, target_recall=1.0)
    assert th.valid_pairs == len(valid) and th.valid_recall == 1.0
    assert 0 < th.threshold <= 0.1 and appl.min_share == th.threshold
    assert appl.applies(sp.product[valid], sp.attribute[valid]).all()
    cix = snap.index["category"]
    # ... but only where it belongs: pots never had a warranty, and a phone's share is far above a pot's
    assert not appl.matrix[cix["K > Pots"], w]
    assert appl.matrix[cix["G > Phones"], w]
    assert appl.share[cix["G > Phones"], w] > 10 * appl.share[cix["K > Pots"], w]


def test_the_threshold_is_chosen_with_shares_that_never_counted_the_held_out_pairs(snap: Snapshot) -> None:
    sp = make_split(snap, seed=2, fractions=(0.5, 0.5, 0.0), cold_share=0.0)
    _, th = learn_applicability(snap, sp, target_recall=0.9)
    share_train, _ = smoothed_shares(snap, sp, visible_edges(snap, sp, keep=("train",)))
    from gnn.protocol import leaf_categories

    valid = sp.pairs("valid")
    s = share_train[leaf_categories(snap)[sp.product[valid]], sp.attribute[valid]]
    assert th.valid_recall == pytest.approx(float((s >= th.threshold).mean()))
    assert th.valid_recall >= 0.9
    # a looser recall target never lowers the threshold
    _, th2 = learn_applicability(snap, sp, target_recall=0.5)
    assert th2.threshold >= th.threshold


def test_shares_are_smoothed_down_the_tree(snap: Snapshot) -> None:
    sp = make_split(snap, seed=0, fractions=(1.0, 0.0, 0.0), cold_share=0.0)
    share, observed = smoothed_shares(snap, sp, visible_edges(snap, sp), alpha=5.0)
    cix, w = snap.index["category"], sp.attribute_id("warranty")
    n_cases = observed[cix["G > Cases"]]
    # one case in n has a warranty: its estimate is pulled towards the parent's (G) share
    assert share[cix["G > Cases"], w] == pytest.approx((1 + 5.0 * share[cix["G"], w]) / (n_cases + 5.0))
    assert 0 < share[cix["K > Pots"], w] < share[cix["G > Cases"], w]
    # alpha = 0: raw shares
    raw, _ = smoothed_shares(snap, sp, visible_edges(snap, sp), alpha=0.0)
    assert raw[cix["G > Cases"], w] == pytest.approx(1 / n_cases) and raw[cix["K > Pots"], w] == 0


def test_applicability_at_reuses_a_threshold_and_bad_settings_are_errors(snap: Snapshot) -> None:
    sp = make_split(snap, seed=0, fractions=(0.8, 0.2, 0.0), cold_share=0.0)
    appl, th = learn_applicability(snap, sp)
    again = applicability_at(snap, sp, th.threshold)
    assert np.array_equal(again.matrix, appl.matrix)
    for kw, msg in (({"target_recall": 0}, "target_recall"), ({"max_share": 2}, "max_share"), ({"alpha": -1}, "alpha")):
        with pytest.raises(ProtocolError, match=msg):
            learn_applicability(snap, sp, **kw)


def test_a_predictor_answers_every_requested_slot(snap: Snapshot) -> None:
    pred = CompletionPredictor.fit(snap, model="majority", valid_share=0.3, applicability="learn")
    info = pred.validation["applicability"]
    assert info["valid_recall"] >= 0.995 and info["attributes_per_product"] > 0
    pot = snap.index["product"]["p0002"]  # K > Pots: warranty does not apply
    w = pred.split.attribute_id("warranty")
    assert not pred.applicability.applies(np.array([pot]), np.array([w]))[0]
    assert len(pred.predict(snap, products=np.array([pot]), attributes=["warranty"])) == 0
    got = pred.predict(snap, products=np.array([pot]), attributes=["warranty"], scope="all", top_k=2)
    assert len(got) == 1 and got.attribute[0] == w and np.isfinite(got.prob[0, 0])
    with pytest.raises(CompletionError, match="scope"):
        pred.predict(snap, scope="all")
    with pytest.raises(CompletionError, match="applicability"):
        CompletionPredictor.fit(snap, model="majority", applicability="sometimes")
    fixed = CompletionPredictor.fit(snap, model="majority", valid_share=0.3, applicability="fixed")
    assert fixed.applicability.min_share == 0.1

