"""How a completion run judges a slot's ranked candidates (attrgraph.complete.judge_slots), without a database:
only a calibrated top-1 probability can be accepted on its own."""

from __future__ import annotations

from kb import Catalog, Context, RuleSet

from attrgraph.complete import CompletionConfig, judge_slots


def _ctx() -> Context:
    cat = Catalog.from_dicts([{"id": f"S{i}", "category": "Shirts", "brand": None, "facts": {"colour": c}}
                              for i, c in enumerate(["red", "blue", "red", "green"])]
                             + [{"id": "P1", "category": "Shirts", "brand": None, "facts": {}}])
    return Context(cat, RuleSet([]))


def _slot(p_top: float) -> dict:
    return {"product": "P1", "attribute": "colour", "threshold": 0.6,
            "candidates": [{"value": "red", "norm": "red", "p": p_top}, {"value": "blue", "norm": "blue", "p": 0.7},
                           {"value": "green", "norm": "green", "p": 0.1}]}


def test_the_top_candidate_is_accepted_and_a_lower_ranked_one_only_reviewed() -> None:
    cfg = CompletionConfig()
    top = judge_slots([_slot(0.9)], _ctx(), cfg, set())
    assert [(c.cand["norm"], c.rank, c.verdict) for c in top.chosen] == [("red", 0, "accept")]
    # a reviewer ruled "red" out: "blue" is next, its 0.7 (above the threshold) is not a calibrated top-1
    # probability, so it goes to review, with the reason, and keeps its rank in the model's ranking
    nxt = judge_slots([_slot(0.9)], _ctx(), cfg, {("P1", "colour", "red")})
    (c,) = nxt.chosen
    assert (c.cand["norm"], c.rank, c.verdict) == ("blue", 1, "needs_review")
    assert any("rank 2" in v and "only top-1 probabilities are calibrated" in v for v in c.violations)
    assert nxt.counts["review_rejected"] == 1
    # below review_min_p a lower-ranked pick is left alone (abstained), as a low top-1 pick is
    both = judge_slots([_slot(0.9)], _ctx(), cfg, {("P1", "colour", "red"), ("P1", "colour", "blue")})
    assert both.chosen == [] and both.counts["abstained"] == 1
