"""Which attributes apply to a product, learned so that held-out facts are (almost) never left out.

A fixed share ("an attribute applies where 10% of the category's products have it") leaves out the
long tail: on a marketplace catalog with 2,000 attribute names it called 5% of real held-out facts
"not applicable" (warranty, dimensions, design), so a completion run never proposed them.

:func:`learn_applicability` instead

1. estimates, for every category ``c`` and attribute ``a``, the probability that a product of
   ``c`` has ``a``, smoothed down the category tree: ``p(c, a) = (n(c, a) + alpha * p(parent, a)) /
   (n(c) + alpha)`` with counts over the products of ``c``'s subtree that have a visible fact, and
   the whole catalog's share at the top -- a leaf with few products borrows its parent's estimate,
   an attribute never seen in a category keeps a small probability inherited from above;
2. chooses the threshold on held-out pairs: shares estimated from the ``train`` facts only, the
   threshold is the largest one (at most ``max_share``) under which at least ``target_recall`` of the
   ``valid`` pairs are deemed applicable -- the facts the threshold is chosen on were not counted;
3. estimates the shares again from train + valid facts and applies the chosen threshold.

The result is a :class:`gnn.protocol.Applicability` (so ``for_products`` / ``applies`` work as for
the fixed rule), with ``min_share`` the learned threshold and ``share`` the smoothed estimates.
Applicability decides which *missing* slots a completion run fills on its own; a slot asked for
by name is ranked whatever it says (``CompletionPredictor.predict(scope="all")``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .protocol import (
    Applicability, FactSplit, ProtocolError, _value_attributes, category_tree, leaf_categories, visible_edges,
)
from .snapshot import Snapshot


@dataclass
class LearnedThreshold:
    """How the threshold was chosen: on which pairs, with what recall."""

    threshold: float
    target_recall: float
    valid_pairs: int
    valid_recall: float  # share of the valid pairs deemed applicable under ``threshold`` (shares from train facts)
    max_share: float
    alpha: float

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "target_recall": self.target_recall, "valid_pairs": self.valid_pairs,
                "valid_recall": self.valid_recall, "max_share": self.max_share, "alpha": self.alpha}


def smoothed_shares(snap: Snapshot, split: FactSplit, edges: dict[str, np.ndarray], *, alpha: float = 5.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per category and attribute, the smoothed probability that a product there has the attribute.

    Returns ``share`` float64 [C + 1, A] (row ``C``: the whole catalog, for products without a
    category) and ``observed`` int64 [C + 1] (products with a visible fact in each subtree).
    Counted from ``edges`` (the facts a caller may see), each product at its leaf and every ancestor.
    """
    A, C, N = split.num_attributes, snap.num_nodes("category"), snap.num_nodes("product")
    parent, depth = category_tree(snap, edges)
    order = np.argsort(depth, kind="stable")  # parents before children
    pcat = leaf_categories(snap, edges)
    v_attr = _value_attributes(snap)
    hv = edges["has_value"]
    pa = [np.stack([hv[0], v_attr[hv[1]]])]
    if "has_brand" in edges and edges["has_brand"].shape[1]:
        hb = edges["has_brand"]
        pa.append(np.stack([hb[0], np.full(hb.shape[1], A - 1, np.int64)]))
    pa_ = np.unique(np.concatenate(pa, axis=1), axis=1)
    observed_p = np.zeros(N, bool)
    observed_p[pa_[0]] = True
    counts = np.zeros((C + 1, A), np.float64)
    observed = np.zeros(C + 1, np.int64)
    x = pcat.copy()
    levels = [np.full(N, C, np.int64)]
    while (x >= 0).any():
        levels.append(x.copy())
        x = np.where(x >= 0, parent[np.maximum(x, 0)], -1)
    for level in levels:
        ok = (level >= 0) & observed_p
        np.add.at(observed, level[ok], 1)
        sel = ok[pa_[0]]
        np.add.at(counts, (level[pa_[0][sel]], pa_[1][sel]), 1)
    share = np.zeros((C + 1, A), np.float64)
    share[C] = counts[C] / max(observed[C], 1)
    for c in order.tolist():  # parents first
        base = share[parent[c]] if parent[c] >= 0 else share[C]
        share[c] = (counts[c] + alpha * base) / (observed[c] + alpha)
    return share, observed


def _pair_shares(share: np.ndarray, pcat: np.ndarray, products: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    C = share.shape[0] - 1
    c = pcat[products]
    return share[np.where(c >= 0, c, C), attributes]


def applicability_at(snap: Snapshot, split: FactSplit, threshold: float, *, alpha: float = 5.0,
                     keep: Sequence[str] = ("train", "valid")) -> Applicability:
    """Applicability of every category under a given ``threshold`` of the smoothed shares, counted from the
    ``keep`` facts (a rebound predictor keeps the threshold it learned and recounts on the new snapshot)."""
    edges = visible_edges(snap, split, keep=keep)
    share, observed = smoothed_shares(snap, split, edges, alpha=alpha)
    C = snap.num_nodes("category")
    return Applicability(share[:C] >= threshold, share[:C].astype(np.float32), observed[:C], np.arange(C, dtype=np.int64),
                         share[C] >= threshold, leaf_categories(snap, edges), float(threshold), 0)


def learn_applicability(
    snap: Snapshot,
    split: FactSplit,
    *,
    target_recall: float = 0.995,
    max_share: float = 0.1,
    alpha: float = 5.0,
    fit_on: Sequence[str] = ("train",),
    select_on: str = "valid",
    final_on: Sequence[str] = ("train", "valid"),
) -> tuple[Applicability, LearnedThreshold]:
    """Applicability with a threshold chosen on held-out pairs (see the module docstring).

    ``fit_on`` facts estimate the shares the threshold is chosen with; the ``select_on`` pairs choose it
    (at least ``target_recall`` of them applicable, the threshold at most ``max_share``); ``final_on``
    facts estimate the shares of the result. Without ``select_on`` pairs the threshold is ``max_share``.
    """
    if not 0 < target_recall <= 1:
        raise ProtocolError(f"target_recall must be in (0, 1], got {target_recall}")
    if not 0 < max_share <= 1:
        raise ProtocolError(f"max_share must be in (0, 1], got {max_share}")
    if alpha < 0:
        raise ProtocolError(f"alpha must be >= 0, got {alpha}")
    held = split.pairs(select_on)
    threshold, recall = max_share, float("nan")
    if len(held):
        share_fit, _ = smoothed_shares(snap, split, visible_edges(snap, split, keep=fit_on), alpha=alpha)
        s = _pair_shares(share_fit, leaf_categories(snap), split.product[held], split.attribute[held])
        # the largest threshold keeping target_recall of the held-out pairs: a lower quantile of their shares
        q = float(np.quantile(s, 1 - target_recall, method="lower")) if target_recall < 1 else float(s.min())
        # (> 0: an attribute never seen above a product's category is never applicable by itself)
        threshold = max(min(max_share, q), float(np.nextafter(0.0, 1.0)))
        recall = float((s >= threshold).mean())
    appl = applicability_at(snap, split, threshold, alpha=alpha, keep=final_on)
    return appl, LearnedThreshold(float(threshold), target_recall, int(len(held)), recall, max_share, alpha)


__all__ = ["LearnedThreshold", "applicability_at", "learn_applicability", "smoothed_shares"]
