"""Rule type ``category_value``: a value never seen in the product's part of the tree, where it would be expected.

For a row (product ``p`` in category path root → … → leaf, attribute ``A``, value ``v``), walk down the path
from the root: the first category ``C`` whose (other) products with ``A`` never have ``v`` is where ``v`` is
foreign. Its parent ``P`` (the whole catalog when ``C`` is a root) has ``v`` on ``k`` of its ``m`` products
with ``A``; if ``C``'s ``n`` products with ``A`` drew their values like ``P``'s, about ``E = n k / m`` of them
would have ``v``, and none would with probability ``(1 - k/m)^n`` (about ``exp(-E)``). The rule fires when
``E >= min_expected`` (and ``k >= min_support``): the absence is too systematic to be chance, so ``v``
belongs to other parts of the tree (a sandal's ``Type`` on a shirt, a watch strap material on a saree).

Values no other product has are not judged here (``domain`` with ``known`` is for them). In an audit every
count leaves the audited product out, so a fact is judged as a prediction of it would be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import unique_counts, unique_inverse
from .context import Context, Rows, search
from .registry import Compiled, Rule, RuleType, register_rule_type
from .spec import Spec
from .values import attributes_mask, dump_attributes, parse_attributes, rows_with_attributes


@dataclass(frozen=True)
class CategoryValueParams:
    attributes: tuple[str, ...] | str  # names, or "*"
    min_expected: float  # fire when at least this many (other) products were expected to have the value
    min_support: int  # ... and the parent scope has the value on at least this many (other) products


@register_rule_type
class CategoryValue(RuleType):
    """``attributes`` (default ``"*"``), ``min_expected`` (default 10: P(absent by chance) about e^-10),
    ``min_support`` (default 3): see the module docstring."""

    name = "category_value"
    summary = ("A value never seen among the products of the product's category that have the attribute, "
               "although the parent category's share of it makes many expected, needs review.")
    template = ("{attribute} = {value!r} is foreign to {where}: {evidence}")
    fields = ("where", "evidence", "expected", "parent")
    keys = ("attribute", "attributes", "min_expected", "min_support")
    default_severity = "review"

    @classmethod
    def parse(cls, spec: Spec) -> CategoryValueParams:
        attrs = parse_attributes(spec, required=False)
        return CategoryValueParams("*" if attrs is None else attrs,
                                   float(spec.number("min_expected", 10.0, minimum=0)),
                                   spec.number("min_support", 3, minimum=1, integer=True))

    @classmethod
    def dump(cls, p: CategoryValueParams) -> dict[str, Any]:
        return {**dump_attributes(p.attributes), "min_expected": p.min_expected, "min_support": p.min_support}

    @classmethod
    def mentions(cls, p: CategoryValueParams):
        return [] if p.attributes == "*" else [(a, None) for a in p.attributes]

    @classmethod
    def compile(cls, rule: Rule, ctx: Context) -> Compiled:
        return _CategoryValue(rule, ctx)


@dataclass
class Foreign:
    """Per row: where the value is first absent and what was expected there."""

    fires: np.ndarray  # (M,) bool
    node: np.ndarray  # (M,) int64 category where the value is first absent (-1: nowhere)
    parent: np.ndarray  # (M,) int64 its parent (-1: the whole catalog)
    n: np.ndarray  # (M,) int64 (other) products of ``node`` with the attribute
    k: np.ndarray  # (M,) int64 (other) products of ``parent`` with the value
    m: np.ndarray  # (M,) int64 (other) products of ``parent`` with the attribute
    expected: np.ndarray  # (M,) float64 n * k / m


class _CategoryValue(Compiled):
    def __init__(self, rule: Rule, ctx: Context):
        super().__init__(rule, ctx)
        self.p: CategoryValueParams = rule.params
        self.attrs = attributes_mask(ctx, self.p.attributes, rule)
        cat = ctx.catalog
        self.anc = cat.category_ancestors.astype(np.int64)
        self.V = max(ctx.n_values, 1)
        self.A = max(len(ctx.attributes), 1)
        fp, fv = cat.fact_product, cat.fact_value.astype(np.int64)
        leaf = cat.product_category[fp].astype(np.int64)
        ok = leaf >= 0
        # products with the value under each category (a product asserts a value once)
        keys = [self.anc[leaf[ok], d] * self.V + fv[ok] for d in range(self.anc.shape[1])]
        k = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        self.nv_keys, self.nv_counts = unique_counts(k[k >= 0])
        # products with the attribute under each category, and in the whole catalog
        pa_keys, _ = ctx._pa  # (product * A + attribute), one per product and attribute
        prods, attrs = pa_keys // self.A, pa_keys % self.A
        pc = cat.product_category[prods].astype(np.int64)
        ok = pc >= 0
        keys = [self.anc[pc[ok], d] * self.A + attrs[ok] for d in range(self.anc.shape[1])]
        k = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        self.na_keys, self.na_counts = unique_counts(k[k >= 0])
        self.attr_total = np.bincount(attrs, minlength=self.A).astype(np.int64)

    @staticmethod
    def _lookup(keys: np.ndarray, counts: np.ndarray, q: np.ndarray) -> np.ndarray:
        out = np.zeros(len(q), np.int64)
        if len(keys) and len(q):
            pos = np.minimum(search(keys, q), len(keys) - 1)
            hit = (q >= 0) & (keys[pos] == q)
            out[hit] = counts[pos[hit]]
        return out

    def foreign(self, category: np.ndarray, attribute: np.ndarray, value: np.ndarray, loo: int) -> Foreign:
        """The rule's evidence for M (leaf category, attribute code, value code) triples of known values;
        ``loo`` products (the audited one) are left out of every count."""
        ctx = self.ctx
        M = len(category)
        category, attribute, value = (np.asarray(x, np.int64) for x in (category, attribute, value))
        node = np.full(M, -1, np.int64)
        parent = np.full(M, -1, np.int64)
        # the whole catalog first: the parent of a root
        k_par = ctx.values.count[value].astype(np.int64) - loo if M else np.zeros(0, np.int64)
        m_par = self.attr_total[attribute] - loo if M else np.zeros(0, np.int64)
        k_at, m_at, n_at = np.zeros(M, np.int64), np.zeros(M, np.int64), np.zeros(M, np.int64)
        open_ = (category >= 0) & (k_par >= 1)
        prev = np.full(M, -1, np.int64)
        for d in range(self.anc.shape[1]):
            if not open_.any():
                break
            nd = np.where(category >= 0, self.anc[np.maximum(category, 0), d], -1)
            live = open_ & (nd >= 0)
            idx = np.flatnonzero(live)
            if not len(idx):
                break
            c_v = self._lookup(self.nv_keys, self.nv_counts, nd[idx] * self.V + value[idx]) - loo
            n_a = self._lookup(self.na_keys, self.na_counts, nd[idx] * self.A + attribute[idx]) - loo
            absent = c_v <= 0
            hit = idx[absent]
            node[hit], parent[hit] = nd[hit], prev[hit]
            k_at[hit], m_at[hit], n_at[hit] = k_par[hit], m_par[hit], n_a[absent]
            open_[hit] = False
            # still present here: this category is the next one's parent
            go = idx[~absent]
            k_par[go], m_par[go], prev[go] = c_v[~absent], n_a[~absent], nd[go]
            open_ &= nd >= 0
        expected = np.where(m_at > 0, n_at * k_at / np.maximum(m_at, 1), 0.0)
        fires = (node >= 0) & (expected >= self.p.min_expected) & (k_at >= self.p.min_support)
        return Foreign(fires, node, parent, n_at, k_at, m_at, expected)

    def _selected(self, rows: Rows) -> np.ndarray:
        sel = rows_with_attributes(rows, self.p.attributes, self.attrs)
        return sel & (rows.category >= 0) & (rows.attribute >= 0) & (rows.value >= 0) & (rows.value < self.ctx.n_values)

    def _check(self, rows: Rows) -> np.ndarray:
        out = np.zeros(len(rows), bool)
        idx = np.flatnonzero(self._selected(rows))
        if len(idx):
            out[idx] = self.foreign(rows.category[idx], rows.attribute[idx], rows.value[idx],
                                    1 if rows.audit else 0).fires
        return out

    def _could_fire(self, rows: Rows) -> np.ndarray:
        """Rows whose (category, attribute) has some known value the rule would call foreign there."""
        ctx = self.ctx
        sel = rows_with_attributes(rows, self.p.attributes, self.attrs) & (rows.category >= 0) & (rows.attribute >= 0)
        idx = np.flatnonzero(sel)
        out = np.zeros(len(rows), bool)
        if not len(idx):
            return out
        va = ctx.values
        known = np.flatnonzero((va.attr >= 0) & (va.count > 0))
        order = np.argsort(va.attr[known], kind="stable")
        known = known[order]
        ptr = np.searchsorted(va.attr[known], np.arange(len(ctx.attributes) + 1))
        pairs, inv = unique_inverse(rows.category[idx].astype(np.int64) * self.A + rows.attribute[idx])
        teeth = np.zeros(len(pairs), bool)
        cs, as_ = pairs // self.A, pairs % self.A
        sizes = ptr[as_ + 1] - ptr[as_]
        budget = 2_000_000  # triples per batch
        start = 0
        while start < len(pairs):
            stop, total = start, 0
            while stop < len(pairs) and (total == 0 or total + sizes[stop] <= budget):
                total += int(sizes[stop])
                stop += 1
            sz = sizes[start:stop]
            if total:
                owner = np.repeat(np.arange(start, stop), sz)
                offs = np.arange(total) - np.repeat(np.cumsum(sz) - sz, sz)
                vals = known[ptr[as_[owner]] + offs]
                f = self.foreign(cs[owner], as_[owner], vals, 0)
                teeth[np.unique(owner[f.fires])] = True
            start = stop
        out[idx] = teeth[inv]
        return out

    def details(self, rows: Rows, i: int) -> dict[str, Any]:
        r = rows.row(i)
        loo = 1 if rows.audit else 0
        f = self.foreign(r.category, r.attribute, r.value, loo)
        cats = self.ctx.catalog.categories
        attr = self.ctx.attributes[int(r.attribute[0])] if r.attribute[0] >= 0 else "?"
        other = "other " if loo else ""
        node, par = int(f.node[0]), int(f.parent[0])
        if node < 0:
            return {"where": cats[int(r.category[0])], "evidence": "it was seen there", "expected": 0.0, "parent": ""}
        n, k, m, e = int(f.n[0]), int(f.k[0]), int(f.m[0]), float(f.expected[0])
        where_par = cats[par] if par >= 0 else "the whole catalog"
        share = k / m if m else 0.0
        chance = math.exp(n * math.log1p(-share)) if share < 1 else 0.0
        evidence = (f"none of its {n:,} {other}products with {attr} has it, while {k:,} of the {m:,} {other}products "
                    f"with {attr} under {where_par} do ({share:.1%}): about {e:.1f} were expected there, and "
                    f"none by chance has probability {chance:.1g} (the rule needs {self.p.min_expected:g} expected)")
        return {"where": cats[node], "evidence": evidence, "expected": round(e, 2), "parent": where_par}


__all__ = ["CategoryValue", "CategoryValueParams"]
