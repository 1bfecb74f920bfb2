"""The evaluation protocol of attribute completion: which facts a model may see, and which it is graded on.

A *pair* is a (product, attribute) with at least one asserted value: ``attribute`` is a ``has_value``
attribute (an ``attribute`` node of the snapshot) or the pseudo-attribute ``@brand`` for
``has_brand``. All values of a pair are masked together, so a model never sees one colour of a
product and is asked for the other.

* :func:`make_split` — seeded split of the pairs into train / valid / test (80/10/10 by default),
  after a *cold-start* share of products (5% by default) has been set aside: every pair of a cold
  product is hidden; only its title, description and category remain.
* :func:`visible_edges` — copies of the snapshot's edges with the hidden facts removed (test and
  cold always; valid unless asked for), the only graph a model may message-pass over.
* :func:`applicable_attributes` — which attributes apply to a product's category, learned from
  the visible facts only, walking up the category tree when the leaf is sparse.
* :func:`value_in_text` — whether a pair's true value literally occurs in the product's text (the
  "easy" facts that a string matcher gets; metrics are also reported without them).

Attribute ids are the snapshot's ``attribute`` node ids; ``@brand`` is the last id
(``num_nodes("attribute")``). Candidates of an attribute are all its ``value`` nodes (all brands
for ``@brand``) — the schema-restricted candidate set every model ranks over.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import GnnError
from .snapshot import Snapshot

BRAND = "@brand"
SPLITS = ("train", "valid", "test", "cold")
TRAIN, VALID, TEST, COLD = range(4)
_TAG = re.compile(r"<[^>]{0,2000}>")


class ProtocolError(GnnError):
    """A split, an edge selection or an applicability setting is invalid."""


@dataclass
class FactSplit:
    """The asserted (product, attribute) pairs of a snapshot and the split each one belongs to.

    Pairs are sorted by (product, attribute). ``P`` pairs, ``F`` facts (values), ``A`` attributes
    (the snapshot's attribute nodes, then ``@brand``).
    """

    product: np.ndarray  # int64 [P]: product node id
    attribute: np.ndarray  # int64 [P]: attribute id (``@brand`` = A - 1)
    indptr: np.ndarray  # int64 [P + 1]: the values of pair i are values[indptr[i]:indptr[i + 1]]
    values: np.ndarray  # int64 [F]: value node ids (brand node ids for ``@brand``)
    split: np.ndarray  # int8 [P]: TRAIN, VALID, TEST or COLD
    cold_products: np.ndarray  # int64 [n_cold]: products whose facts are all hidden, sorted
    attribute_names: list[str]  # [A]
    cand_indptr: np.ndarray  # int64 [A + 1]: candidates of attribute a are cand[cand_indptr[a]:cand_indptr[a + 1]]
    cand: np.ndarray  # int64 [sum C_a]: value node ids (brand ids for ``@brand``), sorted per attribute
    value_local: np.ndarray  # int64 [num value nodes]: position of each value node among its attribute's candidates
    num_products: int
    config: dict[str, Any] = field(default_factory=dict)  # seed, fractions, cold_share: what made the split

    # -- sizes and lookups --------------------------------------------------------------------
    @property
    def num_pairs(self) -> int:
        return len(self.product)

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    @property
    def brand_attribute(self) -> int:
        return len(self.attribute_names) - 1

    def attribute_id(self, name: str) -> int:
        try:
            return self.attribute_names.index(name)
        except ValueError:
            raise ProtocolError(f"unknown attribute {name!r}; e.g. {', '.join(self.attribute_names[:10])}") from None

    def mask(self, *names: str) -> np.ndarray:
        """bool [P]: pairs in any of the named splits (``train``, ``valid``, ``test``, ``cold``)."""
        bad = [n for n in names if n not in SPLITS]
        if bad:
            raise ProtocolError(f"unknown split(s) {bad}; valid: {', '.join(SPLITS)}")
        return np.isin(self.split, [SPLITS.index(n) for n in names])

    def pairs(self, *names: str) -> np.ndarray:
        """int64 [M]: ids of the pairs in any of the named splits."""
        return np.flatnonzero(self.mask(*names))

    def values_of(self, pair: int) -> np.ndarray:
        return self.values[self.indptr[pair] : self.indptr[pair + 1]]

    def num_candidates(self, attribute: int) -> int:
        return int(self.cand_indptr[attribute + 1] - self.cand_indptr[attribute])

    def candidates(self, attribute: int) -> np.ndarray:
        """int64 [C_a]: node ids of the candidates of ``attribute`` (value ids, or brand ids)."""
        return self.cand[self.cand_indptr[attribute] : self.cand_indptr[attribute + 1]]

    def local(self, attribute: int, nodes: np.ndarray) -> np.ndarray:
        """Positions of value (or brand) node ids among the candidates of ``attribute``: int64 [len(nodes)]."""
        nodes = np.asarray(nodes, dtype=np.int64)
        return nodes.copy() if attribute == self.brand_attribute else self.value_local[nodes]

    def truth(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The true values of ``pairs`` (all of one attribute) as candidate positions, CSR-like.

        Returns ``indptr`` int64 [M + 1] and ``local`` int64 [F_M].
        """
        pairs = np.asarray(pairs, dtype=np.int64)
        if len(pairs) == 0:
            return np.zeros(1, np.int64), np.zeros(0, np.int64)
        attrs = np.unique(self.attribute[pairs])
        if len(attrs) != 1:
            raise ProtocolError(f"truth() takes the pairs of one attribute, got attributes {attrs.tolist()[:5]}")
        lo, hi = self.indptr[pairs], self.indptr[pairs + 1]
        counts = hi - lo
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        idx = np.repeat(lo - indptr[:-1], counts) + np.arange(indptr[-1])
        return indptr, self.local(int(attrs[0]), self.values[idx])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pairs": self.num_pairs, "facts": int(len(self.values)),
                               "cold_products": int(len(self.cold_products)), **self.config}
        for i, n in enumerate(SPLITS):
            out[f"{n}_pairs"] = int((self.split == i).sum())
        return out


def _value_attributes(snap: Snapshot) -> np.ndarray:
    """int64 [num value nodes]: attribute node id of each value."""
    aix = snap.index["attribute"]
    try:
        return np.array([aix[r["attribute"]] for r in snap.nodes["value"]], dtype=np.int64)
    except KeyError as e:
        raise ProtocolError(f"{snap.path}: a value names attribute {e.args[0]!r}, which has no attribute node") from None


def make_split(
    snap: Snapshot,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    cold_share: float = 0.05,
    seed: int = 0,
    include_brand: bool = True,
    group_by: str | None = None,
) -> FactSplit:
    """Split the snapshot's asserted pairs, seeded.

    First ``cold_share`` of the products that have any fact become cold (all their pairs COLD);
    the other pairs are permuted and cut into train / valid / test by ``fractions``. The same
    snapshot, fractions and seed always give the same split.

    ``group_by="title"``: products whose case-folded, whitespace-collapsed titles are equal form a
    group (a product without a title is a group of its own). Cold products are chosen as whole
    groups (the prefix of a seeded group order whose product count is nearest ``cold_share``), and
    all the warm pairs of a group go to one split: groups are permuted (seeded) and cut by their
    cumulative pair counts (a group goes where the middle of its pairs falls), so no product has a
    title twin in another split and the fractions hold roughly. ``None`` (default): pairs are split
    independently, as above.
    """
    if group_by not in (None, "title"):
        raise ProtocolError(f"group_by must be None or 'title', got {group_by!r}")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ProtocolError(f"fractions must be three non-negative shares (train, valid, test) summing to 1, got {tuple(fractions)}")
    if not 0 <= cold_share < 1:
        raise ProtocolError(f"cold_share must be in [0, 1), got {cold_share}")
    n_attr_nodes = snap.num_nodes("attribute")
    A = n_attr_nodes + 1
    v_attr = _value_attributes(snap)
    hv = snap.edges["has_value"]
    prod = [hv[0]]
    attr = [v_attr[hv[1]]]
    vals = [hv[1]]
    if include_brand and "has_brand" in snap.edges:
        hb = snap.edges["has_brand"]
        prod.append(hb[0])
        attr.append(np.full(hb.shape[1], n_attr_nodes, np.int64))
        vals.append(hb[1])
    p, a, v = (np.concatenate(x).astype(np.int64) for x in (prod, attr, vals))
    order = np.lexsort((v, a, p))
    p, a, v = p[order], a[order], v[order]
    key = p * A + a
    # duplicate edges (the same fact twice) count once
    keep = np.ones(len(key), bool)
    keep[1:] = (key[1:] != key[:-1]) | (v[1:] != v[:-1])
    p, a, v, key = p[keep], a[keep], v[keep], key[keep]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    indptr = np.concatenate([starts, [len(key)]]).astype(np.int64)
    pair_p, pair_a = p[starts], a[starts]

    rng = np.random.default_rng(seed)
    with_facts = np.unique(pair_p)
    split = np.full(len(pair_p), TRAIN, np.int8)
    extra: dict[str, Any] = {}
    if group_by is None:
        n_cold = int(round(cold_share * len(with_facts)))
        cold = np.sort(rng.choice(with_facts, size=n_cold, replace=False)) if n_cold else np.zeros(0, np.int64)
        is_cold = np.isin(pair_p, cold)
        split[is_cold] = COLD
        warm = np.flatnonzero(~is_cold)
        perm = warm[rng.permutation(len(warm))]
        n_train = int(round(fractions[0] * len(warm)))
        n_valid = int(round(fractions[1] * len(warm)))
        split[perm[n_train : n_train + n_valid]] = VALID
        split[perm[n_train + n_valid :]] = TEST
    else:
        # group id per product: equal titles (case-folded, whitespace collapsed) share one; no title: alone
        ids: dict[str, int] = {}
        group = np.empty(snap.num_nodes("product"), np.int64)
        for i, r in enumerate(snap.nodes["product"]):
            t = " ".join(str(r.get("title") or "").casefold().split())
            group[i] = ids.setdefault(t, len(ids)) if t else -1 - i
        gids, g_products = np.unique(group[with_facts], return_counts=True)
        order = rng.permutation(len(gids))
        reach = np.concatenate([[0], np.cumsum(g_products[order])])
        k = int(np.argmin(np.abs(reach - cold_share * len(with_facts))))  # nearest prefix of whole groups
        cold = np.sort(with_facts[np.isin(group[with_facts], gids[order[:k]])])
        is_cold = np.isin(pair_p, cold)
        split[is_cold] = COLD
        warm = np.flatnonzero(~is_cold)
        wg, inv, n_pairs = np.unique(group[pair_p[warm]], return_inverse=True, return_counts=True)
        order = rng.permutation(len(wg))
        mid = np.cumsum(n_pairs[order]) - n_pairs[order] / 2  # the middle of each group's pairs in that order
        total = float(len(warm))
        lab = np.where(mid < fractions[0] * total, TRAIN,
                       np.where(mid < (fractions[0] + fractions[1]) * total, VALID, TEST)).astype(np.int8)
        g_split = np.empty(len(wg), np.int8)
        g_split[order] = lab
        split[warm] = g_split[inv.ravel()]
        extra = {"group_by": group_by, "groups": int(len(gids))}

    # candidates: every value node of each attribute, then every brand
    cand_parts = [np.flatnonzero(v_attr == i) for i in range(n_attr_nodes)] + [np.arange(snap.num_nodes("brand"))]
    sizes = np.array([len(c) for c in cand_parts], np.int64)
    cand_indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    value_local = np.zeros(len(v_attr), np.int64)
    for c in cand_parts[:-1]:
        value_local[c] = np.arange(len(c))
    names = [str(k) for k in snap.keys("attribute")] + [BRAND]
    return FactSplit(pair_p, pair_a, indptr, v, split, cold, names, cand_indptr,
                     np.concatenate(cand_parts).astype(np.int64), value_local, snap.num_nodes("product"),
                     {"seed": seed, "fractions": list(fractions), "cold_share": cold_share, "include_brand": include_brand,
                      **extra})


def _edge_pair_split(split: FactSplit, products: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """int8 [E]: the split label of the pair each (product, attribute) edge belongs to."""
    A = split.num_attributes
    pair_key = split.product * A + split.attribute  # sorted (pairs are sorted by product, attribute)
    k = products.astype(np.int64) * A + attributes
    pos = np.searchsorted(pair_key, k)
    pos = np.minimum(pos, len(pair_key) - 1)
    if len(k) and not np.array_equal(pair_key[pos], k):
        raise ProtocolError("the split was not made from this snapshot: it has facts the split does not know")
    return split.split[pos]


def visible_edges(snap: Snapshot, split: FactSplit, *, keep: Iterable[str] = ("train", "valid")) -> dict[str, np.ndarray]:
    """Copies of ``snap.edges`` with the facts of hidden pairs removed.

    Only the ``has_value`` and ``has_brand`` facts of pairs in ``keep`` remain (``train`` and
    ``valid`` by default; pass ``("train",)`` for the graph used while selecting on validation).
    Test and cold facts can never be kept: that is the point of the protocol. Every other relation
    (category, tree, value -> attribute) is copied unchanged: cold products keep their category.
    Returns relation -> int64 [2, E'].
    """
    keep = tuple(keep)
    bad = [k for k in keep if k not in ("train", "valid")]
    if bad:
        raise ProtocolError(f"visible_edges can keep only 'train' and 'valid' facts, not {bad}: test and cold facts stay hidden")
    keep_ids = [SPLITS.index(k) for k in keep]
    out = {rel: e.copy() for rel, e in snap.edges.items()}
    hv = snap.edges["has_value"]
    lab = _edge_pair_split(split, hv[0], _value_attributes(snap)[hv[1]])
    out["has_value"] = hv[:, np.isin(lab, keep_ids)].copy()
    if "has_brand" in snap.edges:
        hb = snap.edges["has_brand"]
        if split.config.get("include_brand", True):
            lab = _edge_pair_split(split, hb[0], np.full(hb.shape[1], split.brand_attribute, np.int64))
            out["has_brand"] = hb[:, np.isin(lab, keep_ids)].copy()
    return out


def category_tree(snap: Snapshot, edges: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The category tree of ``edges``: parent int64 [C] (-1: a root) and depth int64 [C] (0: a root)."""
    edges = snap.edges if edges is None else edges
    C = snap.num_nodes("category")
    parent = np.full(C, -1, np.int64)
    sc = edges.get("subcategory_of", np.zeros((2, 0), np.int64))
    parent[sc[0]] = sc[1]
    depth = np.zeros(C, np.int64)
    for c in range(C):
        x, seen = c, 0
        while parent[x] >= 0 and seen <= C:  # `seen` stops a cyclic tree
            x, seen = parent[x], seen + 1
        depth[c] = seen
    return parent, depth


def leaf_categories(snap: Snapshot, edges: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """int64 [num_products]: each product's leaf category (its deepest ``in_category`` target; -1: none)."""
    edges = snap.edges if edges is None else edges
    N = snap.num_nodes("product")
    _, depth = category_tree(snap, edges)
    ic = edges["in_category"]
    pcat = np.full(N, -1, np.int64)
    if ic.shape[1]:
        order = np.lexsort((depth[ic[1]], ic[0]))  # per product, the deepest category last: it wins
        pcat[ic[0, order]] = ic[1, order]
    return pcat


# -- applicability ------------------------------------------------------------------------------
@dataclass
class Applicability:
    """Which attributes apply to each category (and so to the products in it).

    ``matrix[c, a]`` is decided at category ``decided_at[c]``: ``c`` itself when it has at least
    ``min_products`` observed products (products with at least one visible fact) in its subtree,
    else the nearest ancestor that has, else all observed products (``decided_at = -1``).
    """

    matrix: np.ndarray  # bool [num_categories, A]
    share: np.ndarray  # float32 [num_categories, A]: share of observed products with a visible value of a
    observed: np.ndarray  # int64 [num_categories]: observed products in the category's subtree
    decided_at: np.ndarray  # int64 [num_categories]
    global_matrix: np.ndarray  # bool [A]: for products without a category
    product_category: np.ndarray  # int64 [num_products]: leaf category of each product (-1: none)
    min_share: float
    min_products: int

    def for_products(self, products: np.ndarray) -> np.ndarray:
        """bool [len(products), A]: the attributes that apply to each product."""
        c = self.product_category[np.asarray(products, dtype=np.int64)]
        out = np.empty((len(c), self.matrix.shape[1]), bool)
        has = c >= 0
        out[has] = self.matrix[c[has]]
        out[~has] = self.global_matrix
        return out

    def applies(self, products: np.ndarray, attributes: np.ndarray) -> np.ndarray:
        """bool [M]: whether ``attributes[i]`` applies to ``products[i]``."""
        c = self.product_category[np.asarray(products, dtype=np.int64)]
        a = np.asarray(attributes, dtype=np.int64)
        out = self.global_matrix[a].copy()
        has = c >= 0  # (a catalog without categories has an empty matrix: every product takes the global row)
        out[has] = self.matrix[c[has], a[has]]
        return out


def applicable_attributes(
    snap: Snapshot,
    split: FactSplit,
    edges: dict[str, np.ndarray] | None = None,
    *,
    min_share: float = 0.1,
    min_products: int = 20,
) -> Applicability:
    """Attributes present on at least ``min_share`` of the observed products of a category.

    Counted from ``edges`` (default: :func:`visible_edges` of ``split``, train + valid facts), so
    test and cold facts never decide applicability. A category with fewer than ``min_products``
    observed products in its subtree borrows the decision of its nearest ancestor that has enough.
    ``@brand`` applies wherever products have brands.
    """
    if not 0 < min_share <= 1:
        raise ProtocolError(f"min_share must be in (0, 1], got {min_share}")
    if min_products < 1:
        raise ProtocolError(f"min_products must be at least 1, got {min_products}")
    edges = visible_edges(snap, split) if edges is None else edges
    A, C, N = split.num_attributes, snap.num_nodes("category"), snap.num_nodes("product")
    parent = np.full(C, -1, np.int64)
    sc = edges.get("subcategory_of", np.zeros((2, 0), np.int64))
    parent[sc[0]] = sc[1]
    pcat = leaf_categories(snap, edges)

    # per-product attribute presence from visible facts
    v_attr = _value_attributes(snap)
    hv = edges["has_value"]
    pa = [np.stack([hv[0], v_attr[hv[1]]])]
    if "has_brand" in edges and edges["has_brand"].shape[1]:
        hb = edges["has_brand"]
        pa.append(np.stack([hb[0], np.full(hb.shape[1], A - 1, np.int64)]))
    pa_ = np.unique(np.concatenate(pa, axis=1), axis=1) if pa else np.zeros((2, 0), np.int64)
    observed_p = np.zeros(N, bool)
    observed_p[pa_[0]] = True

    # counts per category subtree: each product counts at its leaf and every ancestor
    counts = np.zeros((C + 1, A), np.int64)  # row C: everything (the global row)
    observed = np.zeros(C + 1, np.int64)
    chain_cat: list[np.ndarray] = []
    x = pcat.copy()
    while True:
        has = x >= 0
        if not has.any():
            break
        chain_cat.append(np.where(has, x, -1))
        x = np.where(has, parent[np.maximum(x, 0)], -1)
    for level in chain_cat + [np.full(N, C, np.int64)]:
        ok = (level >= 0) & observed_p
        np.add.at(observed, level[ok], 1)
        sel = ok[pa_[0]]
        np.add.at(counts, (level[pa_[0][sel]], pa_[1][sel]), 1)
    share = counts / np.maximum(observed, 1)[:, None]
    decided = np.full(C, -1, np.int64)
    for c in range(C):
        x, seen = c, 0
        while x >= 0 and observed[x] < min_products and seen <= C:
            x, seen = parent[x], seen + 1
        decided[c] = x if x >= 0 and observed[x] >= min_products else -1
    row = np.where(decided >= 0, decided, C)
    matrix = share[row] >= min_share
    glob = share[C] >= min_share
    return Applicability(matrix, share[:C].astype(np.float32), observed[:C], decided, glob, pcat, min_share, min_products)


# -- literal occurrence of the value in the text --------------------------------------------------
def product_texts(snap: Snapshot) -> list[str]:
    """Title + description of every product, HTML stripped, case-folded (the whole text, no cap)."""
    return [t.casefold() for t in snap.texts("product", max_chars=10**9)]


def value_in_text(snap: Snapshot, split: FactSplit, pairs: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
    """bool [M]: some true value of the pair occurs literally in its product's title + description.

    Case-insensitive and word-boundary aware: ``red`` is in "a red shirt", not in "shredded". The
    value's normalised form and its display form are both tried; brands by their name and key.
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    texts = product_texts(snap) if texts is None else texts
    names: dict[tuple[int, int], tuple[str, ...]] = {}
    brand = split.brand_attribute
    out = np.zeros(len(pairs), bool)
    pats: dict[str, re.Pattern[str]] = {}
    for i, pr in enumerate(pairs.tolist()):
        text = texts[int(split.product[pr])]
        a = int(split.attribute[pr])
        for v in split.values_of(pr).tolist():
            key = (a, v)
            if key not in names:
                rec = snap.nodes["brand" if a == brand else "value"][v]
                forms = {str(rec.get("name") or rec["key"]).casefold(), str(rec["key"]).casefold()} if a == brand else \
                    {str(rec.get("norm") or "").casefold(), str(rec.get("value") or "").casefold()}
                names[key] = tuple(f.strip() for f in forms if f.strip())
            hit = False
            for form in names[key]:
                if form not in text:  # fast reject before the regular expression
                    continue
                pat = pats.get(form)
                if pat is None:
                    pat = pats[form] = re.compile(r"(?<!\w)" + re.escape(form) + r"(?!\w)")
                if pat.search(text):
                    hit = True
                    break
            if hit:
                out[i] = True
                break
    return out
