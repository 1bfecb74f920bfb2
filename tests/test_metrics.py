"""Metrics on hand-computed examples: filtered ranks, precision–coverage, ECE, calibration, abstention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests._deps import need

from gnn.metrics import (
    AttributeScores, IsotonicCalibration, MetricsError, PairScores, TemperatureScaling, Top1, abstention_thresholds,
    cross_fitted_top1, evaluate, expected_calibration_error, filtered_ranks, get_calibrator, plot_reliability, precision_coverage,
    rank_summary, reliability_bins,
)


def block(a: int, scores: list[list[float]], truth: list[list[int]], first_pair: int = 0) -> AttributeScores:
    ip = np.concatenate([[0], np.cumsum([len(t) for t in truth])]).astype(np.int64)
    return AttributeScores(a, np.arange(first_pair, first_pair + len(scores)), np.array(scores, dtype=float), ip,
                           np.array([x for t in truth for x in t], dtype=np.int64))


def test_filtered_ranks_by_hand() -> None:
    s = [[0.5, 0.3, 0.2],   # true 2: two candidates above -> 3
         [0.5, 0.3, 0.2],   # true {0, 2}: 0 is first; 2 has only 1 above once 0 is filtered -> 2
         [0.4, 0.4, 0.2],   # true 1 ties with 0 -> 1.5
         [0.1, 0.2, 0.7]]   # true {2, 1}: 2 first; 1 -> 1 (2 filtered)
    b = block(0, s, [[2], [0, 2], [1], [2, 1]])
    r = filtered_ranks(b.scores, b.true_indptr, b.true_local)
    assert r.tolist() == [3.0, 1.0, 2.0, 1.5, 1.0, 1.0]
    summ = rank_summary(r, ks=(1, 3))
    assert summ["count"] == 6
    assert summ["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 2 + 1 / 1.5 + 1 + 1) / 6)
    assert summ["hits@1"] == pytest.approx(3 / 6) and summ["hits@3"] == 1.0
    # a tie is never a hit at 1, even when it would be picked by argmax
    assert rank_summary(filtered_ranks(np.array([[0.5, 0.5]]), np.array([0, 1]), np.array([0])))["hits@1"] == 0.0


def test_evaluate_per_attribute_and_subset() -> None:
    ps = PairScores({0: block(0, [[0.9, 0.1], [0.6, 0.4]], [[0], [1]]),
                     1: block(1, [[0.2, 0.7, 0.1]], [[1]], first_pair=2)}, ["colour", "size"])
    ev = evaluate(ps, n_bins=10, target_precision=0.98)
    assert ev["count"] == 3 and ev["hits@1"] == pytest.approx(2 / 3) and ev["mrr"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert ev["per_attribute"]["colour"]["hits@1"] == 0.5 and ev["per_attribute"]["size"]["hits@1"] == 1.0
    # top-1: 0.9 right, 0.7 right, 0.6 wrong -> coverage 2/3 at precision 1
    assert ev["coverage@0.98"] == pytest.approx(2 / 3)
    sub = ps.subset(np.array([False, True, True]))
    assert sub.num_pairs == 2 and evaluate(sub, per_attribute=False)["hits@1"] == 0.5
    with pytest.raises(MetricsError, match="not among"):
        block(0, [[0.5, 0.5]], [[2]])


def test_precision_coverage_by_hand() -> None:
    pc = precision_coverage(np.array([0.6, 0.8, 0.9, 0.8]), np.array([True, False, True, True]))
    assert pc.threshold.tolist() == [0.9, 0.8, 0.6]  # the two 0.8s are accepted together
    assert pc.coverage.tolist() == [0.25, 0.75, 1.0]
    assert pc.precision.tolist() == pytest.approx([1.0, 2 / 3, 0.75])
    assert pc.coverage_at(0.98) == 0.25 and pc.coverage_at(0.7) == 1.0 and pc.coverage_at(0.5) == 1.0
    assert pc.threshold_at(0.98) == 0.9 and pc.threshold_at(0.7) == 0.6
    assert pc.precision_at(0.5) == pytest.approx(2 / 3)
    none = precision_coverage(np.array([0.9]), np.array([False]))
    assert none.coverage_at(0.5) == 0.0 and none.threshold_at(0.5) == float("inf")


def test_ece_by_hand() -> None:
    conf = np.array([0.9, 0.9, 0.2, 0.3, 0.5])
    ok = np.array([True, False, False, True, True])
    # two bins, (0, .5] and (.5, 1]: {0.2, 0.3, 0.5} mean .3333 acc 2/3; {0.9, 0.9} mean .9 acc .5
    rb = reliability_bins(conf, ok, n_bins=2)
    assert rb.count.tolist() == [3, 2]
    assert rb.ece == pytest.approx(3 / 5 * abs(2 / 3 - 1 / 3) + 2 / 5 * abs(0.5 - 0.9))
    # fifteen bins: 0.2 -> (0.1333, 0.2], 0.3 -> (0.2667, 0.3333], 0.5 -> (0.4667, 0.5333], 0.9 -> (0.8667, 0.9333]
    e15 = (abs(0.9 - 0.5) * 2 + abs(0.2 - 0) + abs(0.3 - 1) + abs(0.5 - 1)) / 5
    assert expected_calibration_error(conf, ok) == pytest.approx(e15)
    assert expected_calibration_error(np.array([0.75] * 4), np.array([1, 1, 1, 0], bool)) == pytest.approx(0.0)
    with pytest.raises(MetricsError):
        reliability_bins(conf, ok, n_bins=0)


def _synthetic(n: int, temperature: float, seed: int) -> PairScores:
    """Scores softmax(z) whose truths are drawn from softmax(z / temperature): over-confident if T > 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, size=(n, 5))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(z / temperature - (z / temperature).max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    y = (q.cumsum(1) > rng.random((n, 1))).argmax(1)
    return PairScores({0: AttributeScores(0, np.arange(n), p, np.arange(n + 1), y.astype(np.int64))}, ["a"])


def test_temperature_scaling_recovers_the_planted_temperature() -> None:
    val, test = _synthetic(4000, 2.0, seed=0), _synthetic(4000, 2.0, seed=1)
    ts = TemperatureScaling().fit(val)
    assert ts.temperature == pytest.approx(2.0, rel=0.1)
    before, after = evaluate(test, per_attribute=False), evaluate(ts.transform(test), per_attribute=False)
    assert after["ece"] < before["ece"] / 2 and after["ece"] < 0.03
    assert after["mrr"] == pytest.approx(before["mrr"])  # order unchanged
    rows = ts.transform(test).blocks[0].scores
    assert np.allclose(rows.sum(1), 1.0)


def test_isotonic_calibration_keeps_ranks_and_fixes_confidence() -> None:
    val, test = _synthetic(4000, 2.0, seed=2), _synthetic(4000, 2.0, seed=3)
    iso = get_calibrator("isotonic").fit(val)
    assert isinstance(iso, IsotonicCalibration)
    out = iso.transform(test)
    before, after = evaluate(test, per_attribute=False), evaluate(out, per_attribute=False)
    assert after["ece"] < 0.03 < before["ece"]
    b0, b1 = test.blocks[0].scores, out.blocks[0].scores
    assert np.array_equal(np.argsort(-b0, 1, kind="stable"), np.argsort(-b1, 1, kind="stable"))
    assert all(b["n"] >= 50 and b["p"] == pytest.approx((b["correct"] + 1) / (b["n"] + 2)) for b in iso.blocks)
    assert b1.max() <= max(b["p"] for b in iso.blocks) + 1e-9  # no top of 1 from a block of right answers
    sk = IsotonicCalibration(bounded=False).fit(val).transform(test).blocks[0].scores  # scikit-learn's map as is
    assert (sk.max(1) > 1 - 1e-5).any()  # some tops map to ~1: the others still keep their order
    assert np.array_equal(np.argsort(-b0, 1, kind="stable"), np.argsort(-sk, 1, kind="stable"))
    assert after["mrr"] == pytest.approx(before["mrr"]) and (b1.sum(1) <= 1 + 1e-9).all()
    assert get_calibrator("none") is None
    with pytest.raises(MetricsError, match="valid: none, temperature, isotonic"):
        get_calibrator("platt")


def test_isotonic_blocks_state_no_more_than_their_evidence() -> None:
    """33 of 33 right at the top is not p = 1: with ``bounded="lower"`` a block states at most its 95% lower
    bound + 0.02; blocks have at least ``min_block`` pairs and the map stays monotone."""
    rng = np.random.default_rng(0)
    conf = np.r_[rng.uniform(0.3, 0.9, 600), np.full(33, 0.99)]
    ok = np.r_[rng.random(600) < np.linspace(0.3, 0.9, 600)[np.argsort(np.argsort(conf[:600]))], np.ones(33, bool)]
    n = len(conf)
    sc = np.c_[conf, 1 - conf]
    truth = np.where(ok, 0, 1)
    ps = PairScores({0: AttributeScores(0, np.arange(n), sc, np.arange(n + 1), truth.astype(np.int64))}, ["a"])
    iso = IsotonicCalibration(bounded="lower", min_block=50).fit(ps)
    by_name = get_calibrator("isotonic-lower").fit(ps)  # the name a completion config gives
    assert [b["p"] for b in by_name.blocks] == [b["p"] for b in iso.blocks]
    assert all(b["n"] >= 50 for b in iso.blocks) and sum(b["n"] for b in iso.blocks) == n
    assert all(b["p"] <= b["lower_bound"] + 0.02 + 1e-12 for b in iso.blocks)
    assert all(b["p"] <= b["correct"] / b["n"] + 1e-12 for b in iso.blocks)
    assert np.all(np.diff([b["p"] for b in iso.blocks]) >= 0)
    top = iso.confidence(np.array([0.99, 1.0]))
    assert top.max() == pytest.approx(iso.blocks[-1]["p"]) and top.max() < 0.99  # pooled, bounded: not 1
    small = IsotonicCalibration(bounded="lower", min_block=1).fit(ps)  # no pooling: the top block holds the 33 (and any run
    b = small.blocks[-1]  # of right answers below them); all right: p = 0.05 ** (1/n) + 0.02, not 1
    assert b["n"] >= 33 and b["correct"] == b["n"]
    assert small.confidence(np.array([0.99]))[0] == pytest.approx(0.05 ** (1 / b["n"]) + 0.02, abs=1e-6)
    assert np.all(np.diff(iso.confidence(np.linspace(0, 1, 101))) >= -1e-12)


def test_cross_fitted_calibration_measures_what_an_in_sample_fit_hides() -> None:
    """Isotonic regression fitted and graded on the same 1,000 pairs reports an ECE near 0; cross-fitted, each
    pair is calibrated by the other folds only, and the ECE it reports is that of unseen pairs."""
    val, test = _synthetic(1000, 2.0, seed=4), _synthetic(20000, 2.0, seed=5)
    in_sample = evaluate(get_calibrator("isotonic").fit(val).transform(val), per_attribute=False)["ece"]
    unseen = evaluate(get_calibrator("isotonic").fit(val).transform(test), per_attribute=False)["ece"]
    groups = np.arange(1000) // 2  # two pairs per "product": they stay in one fold
    cf = cross_fitted_top1(val, "isotonic", 0.9, folds=5, groups=groups, seed=0)
    s = cf.summary()
    assert in_sample < s["ece"] and abs(s["ece"] - unseen) < 0.03, (in_sample, s["ece"], unseen)
    assert (cf.fold[0::2] == cf.fold[1::2]).all() and set(cf.fold.tolist()) == set(range(5))
    # fold 0 by hand: calibrator and thresholds fitted on folds 1-4 only
    held = cf.fold == 0
    rest = np.ones(1000, bool)
    rest[cf.pairs[held]] = False
    cal = get_calibrator("isotonic").fit(val.subset(rest))
    mine = cal.transform(val.subset(~rest)).top1()
    at = np.searchsorted(cf.pairs, mine.pairs)
    assert np.allclose(cf.confidence[at], mine.confidence)
    th = abstention_thresholds(cal.transform(val.subset(rest)).top1(), 0.9).threshold(mine.attribute)
    assert (cf.accepted[at] == (mine.confidence >= th)).all()
    assert s["accepted"] == int(cf.accepted.sum()) and 0 < s["coverage_at_threshold"] < 1
    assert s["precision_at_threshold"] == pytest.approx(cf.correct[cf.accepted].mean())
    assert s["pooled_pairs"] == 0  # one attribute with 800 pairs in each fit: its own threshold
    few = cross_fitted_top1(val, "isotonic", 0.9, folds=5, min_pairs=10_000)  # every threshold is the pooled one
    assert few.pooled.all() and few.summary()["pooled_accepted"] == few.summary()["accepted"]
    # no calibration: the raw confidences, thresholds still out of fold
    raw = cross_fitted_top1(val, "none", 0.9, folds=5)
    assert np.allclose(raw.confidence, val.top1().confidence)


def test_abstention_thresholds_per_attribute() -> None:
    # attribute 0: right at 0.9, 0.8, 0.7, wrong at 0.6 -> threshold 0.7 for precision 1
    # attribute 1: wrong at its top 0.95 -> never reaches 0.98: abstains (inf)
    # attribute 2: right at 0.99 and 0.4 -> 0.4; with min_pairs=3 attributes 1 and 2 (2 pairs each)
    # share the default threshold, chosen on all pairs together
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.95, 0.5, 0.99, 0.4])
    ok = np.array([1, 1, 1, 0, 0, 1, 1, 1], bool)
    attr = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    t = Top1(attr, np.arange(8), np.zeros(8, np.int64), conf, ok)
    ab = abstention_thresholds(t, 0.98, min_pairs=2)
    assert ab.thresholds == {0: 0.7, 1: float("inf"), 2: 0.4}
    ab3 = abstention_thresholds(t, 0.98, min_pairs=3)
    assert set(ab3.thresholds) == {0} and ab3.default == 0.99  # all together: only 0.99 stays at precision 1
    res = ab3.apply(t)  # accepted: 0.9, 0.8, 0.7 (attr 0) and 0.99 (attr 2)
    assert res["accepted"] == 4 and res["coverage"] == 0.5 and res["precision"] == 1.0


def test_reliability_plot_is_written(tmp_path: Path) -> None:
    need("matplotlib")
    t = _synthetic(500, 1.0, seed=4).top1()
    p = plot_reliability({"m": (t.confidence, t.correct)}, tmp_path / "r.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
