"""The seam between the extractor's spans and the model's ranked values (``attrgraph.openworld``), no Neo4j."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import extract
from attrgraph.openworld import OpenWorldError, combine_slot, extract_spans, jsonable, with_spans, ProductText
from extract.api import Span

CANDS = [{"value": "Blue", "norm": "blue", "p": 0.6}, {"value": "Navy Blue", "norm": "navy blue", "p": 0.3}]


def span(text: str, value: str | None, conf: float, alias: bool = False, start: int = 0) -> Span:
    return Span("p1", "baseColour", text, "title", start, start + len(text), conf, text.casefold(), value=value,
                alias=alias, model="m1")


def test_the_documented_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(extract, "combine", raising=False)
    out = combine_slot(CANDS, [span("Navyblue", "Navy Blue", 0.8, alias=True), span("Zorblue", None, 0.5),
                               span("Teal", "Teal", 0.4)])
    by = {c["value"]: c for c in out}
    # a span naming a known value is evidence for it: the value keeps the model's calibrated p (no noisy-or
    # of two calibrated sources, which states more than either supports), with the span and the alias
    assert by["Navy Blue"]["p"] == 0.3 and by["Navy Blue"]["extracted"]
    assert by["Navy Blue"]["alias"] == {"text": "Navyblue", "norm": "navyblue"}
    assert by["Navy Blue"]["evidence"] == {"field": "title", "start": 0, "end": 8, "text": "Navyblue", "confidence": 0.8,
                                           "model": "m1"}
    # a new span is its own candidate; a known value the model did not rank enters with the span's confidence
    assert by["Zorblue"]["new"] and by["Zorblue"]["p"] == 0.5 and by["Teal"]["p"] == 0.4 and "new" not in by["Teal"]
    assert [c["value"] for c in out] == ["Blue", "Zorblue", "Teal", "Navy Blue"]
    assert jsonable(by["Navy Blue"])["new"] is False and "new" not in jsonable(by["Blue"])
    assert CANDS[0] == {"value": "Blue", "norm": "blue", "p": 0.6}  # the model's candidates are not changed


def test_the_extract_packages_combiner_is_used_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def combine(known, spans, **kw):
        if kw:
            raise TypeError(f"unexpected {sorted(kw)}")
        seen["known"] = known
        s = spans[0]
        return [SimpleNamespace(value="Zorblue", norm="zorblue", p=0.7, new=True, span=s),
                SimpleNamespace(value="Blue", norm="blue", p=0.2, new=False, span=None)]

    monkeypatch.setattr(extract, "combine", combine, raising=False)
    # without a fitted stacker the package's combiner is not used (its unfitted default is a noisy-or)
    assert "known" not in seen and combine_slot(CANDS, [span("Zorblue", None, 0.9)])[0]["value"] == "Zorblue"
    assert "known" not in seen
    fitted = SimpleNamespace(coef=[1.0])
    with pytest.raises(TypeError):  # a fitted stacker is passed on (this stand-in takes none)
        combine_slot(CANDS, [span("Zorblue", None, 0.9)], stacker=fitted)
    monkeypatch.setattr(extract, "combine", lambda known, spans, stacker=None: combine(known, spans), raising=False)
    out = combine_slot(CANDS, [span("Zorblue", None, 0.9)], stacker=fitted)
    assert seen["known"] == [("Blue", 0.6), ("Navy Blue", 0.3)]
    assert out[0]["new"] and out[0]["p"] == 0.7 and out[0]["evidence"]["text"] == "Zorblue"
    assert out[1] == {"value": "Blue", "norm": "blue", "p": 0.2}


class Fixed:
    attributes = ["baseColour", "brand"]

    def __init__(self, spans):
        self.spans = spans

    def predict(self, products, attributes=None, top_k=1):
        return [s for s in self.spans if attributes is None or s.attribute in attributes]


def test_spans_are_checked_and_joined_to_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(extract, "combine", raising=False)
    texts = [ProductText("p1", "Zorblue tee", "")]
    good = Span("p1", "brand", "Zorblue", "title", 0, 7, 0.9, "zorblue", model="m1")
    spans = extract_spans(Fixed([good]), texts, ["@brand", "baseColour"])
    assert list(spans) == [("p1", "@brand")]  # the extractor's brand slot is the graph's @brand
    slots = with_spans([{"product": "p1", "attribute": "@brand", "threshold": 0.9, "candidates": []},
                        {"product": "p1", "attribute": "baseColour", "threshold": 0.9, "candidates": CANDS}], spans)
    assert slots[0]["candidates"][0]["new"] and slots[1]["candidates"] == CANDS
    bad = Span("p1", "brand", "Zorblue", "title", 1, 8, 0.9, "zorblue")
    with pytest.raises(OpenWorldError, match="not at title\\[1:8\\]"):
        extract_spans(Fixed([bad]), texts)
    with pytest.raises(OpenWorldError, match="was not given"):
        extract_spans(Fixed([Span("p9", "brand", "x", "title", 0, 1, 0.9, "x")]), texts)


class Slotted(Fixed):
    def __init__(self, spans):
        super().__init__(spans)
        self.calls = []

    def predict_slots(self, products, slots, top_k=1, known=None):
        self.calls.append((slots, known))
        return [s for s in self.spans if s.attribute in slots.get(s.product_id, ())]


def test_only_the_missing_slots_are_read_with_the_graphs_values() -> None:
    texts = [ProductText("p1", "Zorblue tee", "")]
    ex = Slotted([Span("p1", "brand", "Zorblue", "title", 0, 7, 0.9, "zorblue")])
    spans = extract_spans(ex, texts, ["@brand"], slots={"p1": ["@brand"]}, known={"brand": ["Acme"]})
    assert ex.calls == [({"p1": ["brand"]}, {"brand": ["Acme"]})] and list(spans) == [("p1", "@brand")]
    assert extract_spans(ex, texts, ["baseColour"], slots={"p1": ["baseColour"]}) == {}
