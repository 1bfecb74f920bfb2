"""Predictions as plain data: rows of (product, attribute, candidate value, score).

The GNN proposes, for each (product, attribute) slot, a ranked list of candidate values with
probabilities; each candidate is one row here and gets its own verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .errors import PredictionError
from .units import norm_key

BRAND_ATTRIBUTE = "@brand"  # a prediction of the product's brand rather than of an attribute value


def _normalised(values: Sequence[Any]) -> np.ndarray:
    cache: dict[Any, str] = {}
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        n = cache.get(v)
        if n is None:
            n = cache[v] = norm_key(v)
        out[i] = n
    return out


def _strings(values: Sequence[Any], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise PredictionError(f"{name}: expected a flat sequence, got shape {arr.shape}")
    return arr


@dataclass
class Predictions:
    """N candidate rows. Arrays, all of length N:

    - ``product`` (N,) object: product ids;
    - ``attribute`` (N,) object: attribute names (``"@brand"`` for a predicted brand);
    - ``value`` (N,) object: the candidate value's match key (case-folded, whitespace collapsed;
      measures in canonical form, ``"500 g"``);
    - ``score`` (N,) float32: the model's probability (NaN when unknown);
    - ``rank`` (N,) int32: 0 for a slot's best candidate, 1 for the next, ...
    - ``quantity`` (N,) float64 and ``unit`` (N,) object, optional: the measure of a value that is
      not already in the catalog.
    """

    product: np.ndarray
    attribute: np.ndarray
    value: np.ndarray
    score: np.ndarray
    rank: np.ndarray
    quantity: np.ndarray | None = None
    unit: np.ndarray | None = None
    display: np.ndarray | None = field(default=None, repr=False)  # the spelling given, for messages

    def __post_init__(self) -> None:
        n = len(self.product)
        for name in ("attribute", "value", "score", "rank", "quantity", "unit", "display"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise PredictionError(f"{name} has {len(arr)} entries but product has {n}")

    def __len__(self) -> int:
        return len(self.product)

    @classmethod
    def from_arrays(cls, product: Sequence[Any], attribute: Sequence[Any], value: Sequence[Any],
                    score: Sequence[float] | None = None, *, rank: Sequence[int] | None = None,
                    quantity: Sequence[float] | None = None, unit: Sequence[str | None] | None = None,
                    normalized: bool = False) -> "Predictions":
        """Columns of equal length. ``normalized=True`` says ``value`` already holds match keys."""
        if isinstance(product, np.ndarray):
            prod = _strings(product.astype(str).astype(object), "product")
        else:
            prod = _strings([str(p) for p in product], "product")
        attr = _strings(attribute, "attribute")
        raw = _strings(value, "value")
        val = raw if normalized else _normalised(raw)
        n = len(prod)
        sc = np.full(n, np.nan, np.float32) if score is None else np.asarray(score, dtype=np.float32)
        rk = np.zeros(n, np.int32) if rank is None else np.asarray(rank, dtype=np.int32)
        q = None if quantity is None else np.asarray(quantity, dtype=np.float64)
        u = None if unit is None else np.asarray(unit, dtype=object)
        return cls(prod, attr, val, sc, rk, q, u, None if normalized else raw)

    @classmethod
    def from_dicts(cls, rows: Iterable[Mapping[str, Any]]) -> "Predictions":
        """``[{"product": "10004", "attribute": "Pattern", "value": "Solid", "score": 0.91}, ...]``
        (``rank``, ``quantity`` and ``unit`` optional)."""
        cols: dict[str, list] = {k: [] for k in ("product", "attribute", "value", "score", "rank", "quantity", "unit")}
        for i, r in enumerate(rows):
            try:
                cols["product"].append(str(r["product"]))
                cols["attribute"].append(r["attribute"])
                cols["value"].append(r["value"])
            except KeyError as e:
                raise PredictionError(f"prediction {i}: missing key {e.args[0]!r} "
                                      f"(need product, attribute, value; optional score, rank)") from None
            cols["score"].append(r.get("score", np.nan))
            cols["rank"].append(r.get("rank", 0))
            cols["quantity"].append(r.get("quantity", np.nan))
            cols["unit"].append(r.get("unit"))
        has_q = any(u is not None for u in cols["unit"])
        return cls.from_arrays(cols["product"], cols["attribute"], cols["value"], cols["score"], rank=cols["rank"],
                               quantity=cols["quantity"] if has_q else None, unit=cols["unit"] if has_q else None)

    @classmethod
    def from_ranked(cls, slots: Iterable[Mapping[str, Any]]) -> "Predictions":
        """The GNN's shape: ``[{"product": "10004", "attribute": "Pattern", "candidates":
        [("Solid", 0.8), ("Striped", 0.15)]}, ...]``; candidates are ``(value, score)`` pairs or
        ``{"value", "score"}`` dicts, best first (they are re-ranked by score when scores are given)."""
        rows = []
        for i, s in enumerate(slots):
            if "candidates" not in s:
                raise PredictionError(f"slot {i}: missing key 'candidates'")
            cands = []
            for c in s["candidates"]:
                if isinstance(c, Mapping):
                    cands.append((c["value"], c.get("score", np.nan)))
                else:
                    v, sc = c
                    cands.append((v, sc))
            if all(not np.isnan(sc) for _, sc in cands):
                cands.sort(key=lambda vc: -vc[1])
            for r, (v, sc) in enumerate(cands):
                rows.append({"product": s["product"], "attribute": s["attribute"], "value": v, "score": sc, "rank": r})
        return cls.from_dicts(rows)

    @cached_property
    def slot(self) -> np.ndarray:
        """(N,) int64: index of the (product, attribute) slot of each row, in order of first appearance."""
        keys: dict[tuple[str, str], int] = {}
        out = np.empty(len(self), np.int64)
        for i, k in enumerate(zip(self.product.tolist(), self.attribute.tolist())):
            out[i] = keys.setdefault(k, len(keys))
        return out
