"""The confirmation split (bench/bench_confirm.py): whole title groups, facts hidden, graded honestly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.bench_confirm import already_confirmed, clopper_pearson_lower, confirmation_products, grade, without_facts_of
from bench.bench_catalogs import title_keys
from gnn.completion import CompletionPredictor
from gnn.snapshot import load_snapshot
from tests.test_protocol import catalog, write_snapshot


def test_confirmation_products_keep_title_groups_together() -> None:
    titles = [f"t{i % 40}" for i in range(400)]
    held = confirmation_products(titles, share=0.1, seed=1)
    assert 0.1 <= held.mean() < 0.15
    by_title = {}
    for t, h in zip(titles, held):
        by_title.setdefault(t, set()).add(bool(h))
    assert all(len(v) == 1 for v in by_title.values())
    assert (confirmation_products(titles, share=0.1, seed=1) == held).all()


def test_hidden_facts_are_graded_against_the_full_snapshot(tmp_path: Path) -> None:
    snap = load_snapshot(write_snapshot(tmp_path / "snap", catalog()))
    held = confirmation_products(title_keys(snap), share=0.2, seed=3)
    reduced = without_facts_of(snap, held)
    hv = reduced.edges["has_value"]
    assert not held[hv[0]].any() and held[snap.edges["has_value"][0]].any()
    assert reduced.fingerprint != snap.fingerprint
    pred = CompletionPredictor.fit(reduced, model="majority", min_products=1)
    g = grade(pred, snap, reduced, held)
    assert g["graded"] > 0 and 0 <= g["top1_accuracy"] <= 1 and g["ranked_share"] <= 1
    assert g["confirmation_products"] == int(held.sum())
    assert sum(b["n"] for b in g["block_table"] if b["overstated"]) == g["predictions_in_overstated_blocks"]
    assert sum(b["n"] for b in g["block_table"]) <= g["graded"]


def test_block_check_groups_by_the_calibrators_blocks() -> None:
    from bench.bench_confirm import block_check

    class Cal:
        blocks = [{"p": 0.5, "n": 60, "lower_bound": 0.39}, {"p": 0.9, "n": 60, "lower_bound": 0.8}]

    conf = np.array([0.5] * 100 + [0.7] * 10 + [0.9] * 100, dtype=np.float32).astype(np.float64)  # as predict gives them
    correct = np.r_[np.arange(100) < 50, np.arange(10) < 7, np.arange(100) < 60]
    rows = {b["block"]: b for b in block_check(Cal(), conf, correct)}
    # exactly calibrated (50 of 100 at p 0.5): above its lower bound + 0.02 by the rule, within sampling noise
    assert rows["0.5000"]["n"] == 100 and rows["0.5000"]["overstated"] and not rows["0.5000"]["above_upper95"]
    assert rows["(0.5000, 0.9000)"]["n"] == 10
    assert rows["0.9000"]["above_upper95"] and rows["0.9000"]["overstated"] and rows["0.9000"]["fit_p_over_lb"]


def test_lower_bound_and_repeat_refusal(tmp_path: Path) -> None:
    assert clopper_pearson_lower(0, 10) == 0.0
    assert 0.60 < clopper_pearson_lower(9, 10) < 0.61  # the exact one-sided 95% bound of 9/10: 0.6058
    log = tmp_path / "confirm.jsonl"
    sig = {"gnn_tree": "abc", "settings": {"x": 1}}
    assert already_confirmed(sig, "myntra", log) is None
    log.write_text('{"signature": {"gnn_tree": "abc", "settings": {"x": 1}}, "date": "d", "commit": "c", '
                   '"catalogs": [{"catalog": "myntra"}]}\n')
    assert already_confirmed(sig, "myntra", log) == "d (commit c)"
    assert already_confirmed(sig, "taobao", log) is None
    assert np.isfinite(clopper_pearson_lower(5, 5))
