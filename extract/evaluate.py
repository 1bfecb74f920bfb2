"""Grading an extractor on held-out products: exact match of the first span per slot, span precision / recall
/ F1 against where the true value stands in the text, and precision / coverage above a confidence threshold."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .api import Span
from .resolve import span_norm
from .supervision import Example, locate, make_doc


def correct(span: Span | None, truth: Sequence[str]) -> bool:
    """The span names one of the slot's true values (by its norm, or by the known value it resolves to)."""
    if span is None:
        return False
    t = {span_norm(v)[0] for v in truth}
    return span.norm in t or (span.value is not None and span_norm(span.value)[0] in t)


def grade(model: Any, examples: Sequence[Example], attributes: Sequence[str] | None = None, *,
          threshold: float = 0.5, known_values: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """Metrics per attribute and overall on ``examples`` (their asserted values are the truth; the model
    reads only their texts). ``known_values``: per attribute, the norms a graph already holds, so that the
    "unseen" subset (true value not among them) is graded separately (default: the model's training values).

    Returns ``{"overall": {...}, "per_attribute": {attr: {...}}}`` with, per group: ``slots`` (slots with a
    true value), ``exact`` (first span correct), ``unseen_slots`` / ``exact_unseen``, ``kept`` and
    ``precision_at_threshold`` (first spans with confidence >= threshold), and ``span_precision`` /
    ``span_recall`` / ``span_f1`` (first spans whose offsets equal an occurrence of the true value, over the
    first spans predicted and over the slots whose true value stands in the text)."""
    attrs = [a for a in (attributes or model.attributes) if a in set(model.attributes)]
    if known_values is None:
        known_values = {a: {span_norm(v)[0] for v in model.known.get(a, ())} for a in attrs}
    slots = {e.id: [a for a in attrs if e.facts.get(a)] for e in examples}
    spans = model.predict_slots(examples, slots, top_k=1)
    first = {(s.product_id, s.attribute): s for s in spans}
    rows: dict[str, list[tuple[bool, bool, float, int, int, int]]] = defaultdict(list)
    for e in examples:
        doc = None
        for a in slots[e.id]:
            truth = e.facts[a]
            s = first.get((e.id, a))
            ok = correct(s, truth)
            unseen = not ({span_norm(v)[0] for v in truth} & known_values.get(a, set()))
            if doc is None:
                doc = make_doc(e.id, e.title, e.description, max_desc_tokens=model.config.max_desc_tokens)
            occ = {doc.span_text(i, j)[1:] for i, j in locate(doc, truth)}
            hit = s is not None and (s.field, s.start, s.end) in occ
            rows[a].append((ok, unseen, s.confidence if s else 0.0, int(s is not None), int(hit), int(bool(occ))))
    out: dict[str, Any] = {"per_attribute": {a: _summary(r, threshold) for a, r in rows.items()}}
    out["overall"] = _summary([x for r in rows.values() for x in r], threshold)
    out["threshold"] = threshold
    return out


def _summary(r: list[tuple[bool, bool, float, int, int, int]], threshold: float) -> dict[str, Any]:
    if not r:
        return {"slots": 0}
    ok, unseen, conf, pred, hit, gold = (np.array(c) for c in zip(*r))
    keep = conf >= threshold
    sp = hit.sum() / max(pred.sum(), 1)
    sr = hit.sum() / max(gold.sum(), 1)
    return {"slots": int(len(ok)), "exact": float(ok.mean()),
            "unseen_slots": int(unseen.sum()), "exact_unseen": float(ok[unseen].mean()) if unseen.any() else None,
            "exact_seen": float(ok[~unseen].mean()) if (~unseen).any() else None,
            "kept": float(keep.mean()), "precision_at_threshold": float(ok[keep].mean()) if keep.any() else None,
            "span_precision": float(sp), "span_recall": float(sr),
            "span_f1": float(2 * sp * sr / (sp + sr)) if sp + sr else 0.0}


def threshold_for_precision(conf: np.ndarray, ok: np.ndarray, target: float, min_kept: int = 10, z: float = 0.0) -> float:
    """The lowest confidence threshold whose kept predictions reach ``target`` precision (on the data given:
    call it on validation, apply it to test); 1.0 (keep nothing) when none does. ``z > 0``: the precision
    must reach ``target`` at its Wilson lower bound (z = 1.2816: one-sided 90%), so a small validation set
    does not pick a threshold that reaches the target only by chance."""
    order = np.argsort(-conf, kind="stable")
    c, o = conf[order], ok[order].astype(float)
    n = np.arange(1, len(o) + 1)
    prec = np.cumsum(o) / n
    if z > 0:
        prec = (prec + z * z / (2 * n) - z * np.sqrt(prec * (1 - prec) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    good = [k for k in range(len(o)) if prec[k] >= target and k + 1 >= min_kept and (k + 1 == len(o) or c[k + 1] < c[k])]
    return float(c[good[-1]]) if good else 1.0
