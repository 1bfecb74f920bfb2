"""What the demo shows: a spread across informative attributes, not the most probable trivial facts."""

from __future__ import annotations

from pathlib import Path

from attrgraph.complete import CompletionResult, WrittenPrediction


def _p(product: str, attribute: str, value: str, p: float, carried: int, verdict: str = "accept") -> WrittenPrediction:
    return WrittenPrediction(product, None, "Tshirts", attribute, value, value.lower(), p, 0, 0.5, verdict, [], [], [],
                             {"category": "Tshirts", "with_value_in_category": carried, "category_products": 100}, None)


def test_showcase_spreads_over_attributes_and_skips_values_nearly_everyone_has() -> None:
    preds = [_p("1", "Power Source", "Battery", 1.0, 99), _p("2", "Shoe Width", "Regular", 1.0, 97),
             _p("3", "baseColour", "Blue", 0.93, 20), _p("4", "baseColour", "Red", 0.97, 15),
             _p("5", "baseColour", "Black", 0.91, 30), _p("6", "Pattern", "Striped", 0.95, 10),
             _p("7", "Pattern", "Solid", 0.99, 60), _p("8", "@brand", "Roadster", 0.9, 5, verdict="needs_review")]
    res = CompletionResult("r", "committed", "full", False, Path("."), "gnn", "v", "trained", {}, {}, {}, [], preds)
    assert [p.p for p in res.top(2)] == [1.0, 1.0]  # the most probable: the trivial ones
    show = res.showcase(5)
    assert [(p.attribute, p.value) for p in show] == [("baseColour", "Red"), ("Pattern", "Solid")]
    assert [p.attribute for p in res.showcase(5, verdict=None)] == ["baseColour", "Pattern", "@brand"]


def test_print_top_shows_what_the_model_used_and_labels_examples(capsys) -> None:
    from attrgraph.cli_complete import print_top

    p = _p("9", "Pattern", "Striped", 0.95, 10)
    p.model_used = {"runner_up": "Solid", "margin": 2.5, "parts": {"gnn": 1.0, "text_prior": 1.5},
                    "text_features": [["stripes", 0.8], ["title~ str", 0.3]]}
    p.neighbours = [{"id": "12", "title": "Striped polo", "why": "same category"}]
    p.rules = ["known-value"]
    res = CompletionResult("r", "committed", "full", False, Path("."), "gnn", "v", "trained", {}, {}, {}, [], [p])
    print_top(res, 3, spread=True)
    out = capsys.readouterr().out
    assert "margin +2.50 over 'Solid' (gnn +1.00, text_prior +1.50)" in out
    assert "text features it used: stripes (+0.80), title~ str (+0.30)" in out
    assert "examples carrying it (not model inputs): 12 Striped polo" in out and "supported by" not in out
    assert "rules that could have fired and passed: known-value" in out
