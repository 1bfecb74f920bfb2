"""One answer per slot: the completion model's ranked known values and the extractor's spans compete, and come
out as one ranked list with one calibrated probability each.

A candidate is a known value (possibly also read in the text: a span that resolves to it) or a new value
(a span that resolves to nothing). Its features are ``[logit p_model, logit p_span, agree, span_new,
has_model, has_span]``; a logistic regression (:class:`Stacker`) fitted on validation slots where both
sources answered maps them to the probability that the candidate is the slot's value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .api import Span
from .resolve import span_norm


@dataclass(frozen=True)
class Choice:
    value: str  # display spelling: the known value, or the span's text when new
    norm: str
    p: float  # calibrated probability that this is the slot's value
    new: bool  # a value the graph does not hold for the attribute (from a span)
    p_model: float  # the completion model's calibrated probability (0: not ranked by it)
    p_span: float  # the best span's confidence (0: not read in the text)
    span: Span | None = None  # the evidence, when read in the text


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _features(p_model: float, p_span: float, new: bool) -> list[float]:
    hm, hs = float(p_model > 0), float(p_span > 0)
    return [_logit(p_model) if hm else -10.0, _logit(p_span) if hs else -10.0, hm * hs, float(new), hm, hs]


def candidates(known: Sequence[tuple[str, float]], spans: Sequence[Span]) -> list[tuple[str, str, float, float, bool, Span | None]]:
    """The union of a slot's known-value ranking ``[(display, p)]`` and its spans, one row per norm:
    (display, norm, p_model, p_span, new, span)."""
    rows: dict[str, list[Any]] = {}
    for v, p in known:
        n = span_norm(v)[0]
        if n not in rows:
            rows[n] = [v, n, float(p), 0.0, False, None]
    for s in sorted(spans, key=lambda s: -s.confidence):
        n = span_norm(s.value)[0] if s.value is not None else s.norm
        r = rows.get(n)
        if r is None:
            rows[n] = [s.value if s.value is not None else s.text, n, 0.0, float(s.confidence), s.value is None, s]
        elif r[5] is None:
            r[3], r[5] = float(s.confidence), s
    return [tuple(r) for r in rows.values()]  # type: ignore[misc]


class Stacker:
    """Logistic regression over candidate features, fitted on validation slots (never test)."""

    def __init__(self, coef: Sequence[float] | None = None, intercept: float = 0.0):
        self.coef = None if coef is None else np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)

    def fit(self, slots: Sequence[tuple[Sequence[tuple[str, float]], Sequence[Span], set[str]]]) -> "Stacker":
        """``slots``: (known ranking, spans, true norms) per validation slot."""
        from sklearn.linear_model import LogisticRegression

        X, y = [], []
        for known, spans, truth in slots:
            for _, n, pm, ps, new, _ in candidates(known, spans):
                X.append(_features(pm, ps, new))
                y.append(int(n in truth))
        if len(set(y)) < 2:
            raise ValueError("the stacker needs validation candidates of both classes")
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(np.array(X), np.array(y))
        self.coef, self.intercept = lr.coef_[0], float(lr.intercept_[0])
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"coef": None if self.coef is None else self.coef.tolist(), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stacker":
        return cls(d.get("coef"), d.get("intercept", 0.0))

    def prob(self, p_model: float, p_span: float, new: bool) -> float:
        if self.coef is None:  # unfitted: noisy-or of the two sources
            return 1 - (1 - p_model) * (1 - p_span)
        z = float(np.dot(self.coef, _features(p_model, p_span, new)) + self.intercept)
        return 1 / (1 + math.exp(-z))


def combine(known: Sequence[tuple[str, float]], spans: Sequence[Span], stacker: Stacker | None = None) -> list[Choice]:
    """One ranked candidate list for a slot from the model's known values ``[(display, p)]`` (calibrated)
    and the slot's spans; new values are marked ``new``. Best first."""
    st = stacker or Stacker()
    out = [Choice(v, n, st.prob(pm, ps, new), new, pm, ps, s) for v, n, pm, ps, new, s in candidates(known, spans)]
    return sorted(out, key=lambda c: (-c.p, c.norm))
