"""A catalog plus compiled rules: the ``context`` of :func:`kb.validate`, and the rows it judges.

Rows are what rules check in bulk: either predictions (candidate facts) or the asserted facts
themselves (an audit). An audited fact is judged exactly like a prediction of it would be, against
the rest of the catalog: counts that a rule learns from the catalog leave the fact itself out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Any

import numpy as np

from .arrays import first_index, unique_counts
from .catalog import Catalog
from .predictions import BRAND_ATTRIBUTE, Predictions
from .registry import Compiled, Rule, RuleSet, default_rules
from .tree import PATH_SEP
from .units import UNITS, parse_canonical, parse_number, unit_code

BRAND_CODE = -2  # attribute code of a brand row
UNKNOWN = -1  # code of an unknown product, attribute, category or brand
SEVERITY_CODE = {"review": 1, "reject": 2}
STATUS = ("accept", "needs_review", "reject")


def search(hay: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.searchsorted(hay, q)``, several times faster on large random ``q`` (sorted queries stay in cache)."""
    if len(q) < 4096:
        return np.searchsorted(hay, q)
    order = np.argsort(q)
    pos = np.empty(len(q), np.int64)
    pos[order] = np.searchsorted(hay, q[order])
    return pos


def take(table: np.ndarray, idx: np.ndarray, fill: Any) -> np.ndarray:
    """``table[idx]`` with ``fill`` where ``idx`` is negative (unknown)."""
    ok = idx >= 0
    out = np.full(len(idx), fill, dtype=table.dtype)
    out[ok] = table[idx[ok]]
    return out


@dataclass
class ValueArrays:
    """Distinct values (of the catalog plus those rules name, or a batch's new ones), as columns."""

    attr: np.ndarray  # (V,) int32 attribute code, -1 when the attribute is unknown
    norm: np.ndarray  # (V,) object
    display: np.ndarray  # (V,) object
    qty: np.ndarray  # (V,) float64, NaN when not a measure
    unit: np.ndarray  # (V,) int8 index into UNITS, -1 none
    count: np.ndarray  # (V,) int64 products asserting the value

    def __len__(self) -> int:
        return len(self.norm)

    @cached_property
    def number(self) -> np.ndarray:
        """(V,) float64: the value as a plain number (``"3"``), NaN otherwise."""
        out = np.full(len(self), np.nan)
        for i, n in enumerate(self.norm.tolist()):
            if n and (n[0].isdigit() or n[0] in "+-."):
                q = parse_number(n)
                if q is not None:
                    out[i] = q
        return out

    @classmethod
    def empty(cls) -> "ValueArrays":
        return cls(np.zeros(0, np.int32), np.zeros(0, object), np.zeros(0, object), np.zeros(0),
                   np.zeros(0, np.int8), np.zeros(0, np.int64))


class Rows:
    """N rows to judge. ``product``, ``category``, ``attribute``, ``value``, ``brand``: (N,) int32 codes
    (``value`` indexes the context's values, then this batch's new values ``ext``; -1 on brand rows).
    ``audit``: the rows are asserted facts (``fact`` gives each one's index; -1 for brand rows)."""

    def __init__(self, ctx: "Context", product: np.ndarray, attribute: np.ndarray, value: np.ndarray,
                 brand: np.ndarray, *, audit: bool, ext: ValueArrays | None = None,
                 predictions: Predictions | None = None, fact: np.ndarray | None = None):
        self.ctx = ctx
        self.product = product.astype(np.int32, copy=False)
        self.attribute = attribute.astype(np.int32, copy=False)
        self.value = value.astype(np.int32, copy=False)
        self.brand = brand.astype(np.int32, copy=False)
        self.category = take(ctx.catalog.product_category, self.product, UNKNOWN)
        self.audit = audit
        self.ext = ext if ext is not None else ValueArrays.empty()
        self.predictions = predictions
        self.fact = fact

    def __len__(self) -> int:
        return len(self.product)

    def row(self, i: int) -> "Rows":
        """Row ``i`` alone (for explaining one verdict without re-checking the whole batch)."""
        s = slice(i, i + 1)
        value, ext = self.value[s], None
        V = self.ctx.n_values
        if value[0] >= V:  # keep only this row's new value, so explaining stays O(1)
            j = int(value[0]) - V
            ext = ValueArrays(*(getattr(self.ext, f)[j:j + 1] for f in ("attr", "norm", "display", "qty", "unit", "count")))
            value = np.array([V], np.int32)
        return Rows(self.ctx, self.product[s], self.attribute[s], value, self.brand[s], audit=self.audit,
                    ext=ext, fact=None if self.fact is None else self.fact[s])

    @cached_property
    def is_brand(self) -> np.ndarray:
        return self.attribute == BRAND_CODE

    @cached_property
    def is_value(self) -> np.ndarray:
        """(N,) bool: rows about an attribute value of a known product."""
        return (self.attribute != BRAND_CODE) & (self.product >= 0)

    def take_category(self, table: np.ndarray, fill: Any) -> np.ndarray:
        return take(table, self.category, fill)

    def take_product(self, table: np.ndarray, fill: Any) -> np.ndarray:
        return take(table, self.product, fill)

    def take_attribute(self, table: np.ndarray, fill: Any) -> np.ndarray:
        return take(table, self.attribute, fill)

    def per_value(self, vocab_result: np.ndarray, ext_fn: Callable[[ValueArrays], np.ndarray] | None,
                  fill: Any = False) -> np.ndarray:
        """(N,) the per-value ``vocab_result`` looked up for each row; for this batch's new values
        ``ext_fn(self.ext)`` computes the same thing (``None``: ``fill``)."""
        if len(self.ext):
            extra = ext_fn(self.ext) if ext_fn is not None else np.full(len(self.ext), fill, vocab_result.dtype)
            vocab_result = np.concatenate([vocab_result, np.asarray(extra, vocab_result.dtype)])
        return take(vocab_result, self.value, fill)


class Context:
    """A :class:`Catalog` with rules compiled against it. Build once, validate many batches.

    ``rules``: a :class:`RuleSet`, a list of rules, or ``None`` for the shipped general rules
    (``kb/rules/default.yaml``). ``warnings`` lists rule parts that match nothing in this catalog
    (a category or attribute it does not have), so that typos do not pass silently.
    """

    def __init__(self, catalog: Catalog, rules: RuleSet | Iterable[Rule] | None = None):
        self.catalog = catalog
        self.rules = default_rules() if rules is None else (rules if isinstance(rules, RuleSet) else RuleSet(rules))
        self.warnings: list[str] = []
        self._build_vocab()
        self.compiled: list[Compiled] = [r.rule_type.compile(r, self) for r in self.rules]
        self.builtin = _UnknownProduct(self)

    # -- vocabulary -------------------------------------------------------------------------
    def _build_vocab(self) -> None:
        cat = self.catalog
        attrs = list(cat.attributes)
        code = {a: i for i, a in enumerate(attrs)}
        new_values: dict[tuple[int, str], None] = {}
        for r in self.rules:
            for attr, norm in r.rule_type.mentions(r.params):
                if attr == BRAND_ATTRIBUTE:
                    continue
                if attr not in code:
                    code[attr] = len(attrs)
                    attrs.append(attr)
                if norm is not None:
                    new_values[(code[attr], norm)] = None
        self.attributes: tuple[str, ...] = tuple(attrs)
        self.attribute_code = code
        known = set(zip(cat.value_attribute.tolist(), cat.value_norm.tolist()))
        extra = [k for k in new_values if k not in known]
        n = len(extra)
        ex_norm = np.array([k[1] for k in extra], dtype=object)
        qs = [parse_canonical(x) for x in ex_norm.tolist()]
        self.values = ValueArrays(
            np.concatenate([cat.value_attribute, np.array([k[0] for k in extra], np.int32)]),
            np.concatenate([cat.value_norm, ex_norm]),
            np.concatenate([cat.value_display, ex_norm]),
            np.concatenate([cat.value_quantity, np.array([q[0] if q else np.nan for q in qs], np.float64)]),
            np.concatenate([cat.value_unit, np.array([UNITS.index(q[1]) if q else -1 for q in qs], np.int8)]),
            np.concatenate([cat.value_count, np.zeros(n, np.int64)]),
        )

    @cached_property
    def value_lookup(self) -> list[dict[str, int]]:
        """Per attribute code: norm -> value code."""
        out: list[dict[str, int]] = [{} for _ in self.attributes]
        for i, (a, n) in enumerate(zip(self.values.attr.tolist(), self.values.norm.tolist())):
            out[a][n] = i
        return out

    @property
    def n_values(self) -> int:
        return len(self.values)

    # -- catalog structure used by many rules --------------------------------------------------
    @cached_property
    def fact_attribute(self) -> np.ndarray:
        return self.catalog.fact_attribute

    @cached_property
    def _fact_keys(self) -> np.ndarray:
        # sorted: catalog facts are sorted by (product, value)
        return self.catalog.fact_product.astype(np.int64) * self.n_values + self.catalog.fact_value

    def asserted(self, product: np.ndarray, value: np.ndarray) -> np.ndarray:
        """(N,) bool: the catalog asserts ``value`` for ``product`` (codes; negative or new: False)."""
        ok = (product >= 0) & (value >= 0) & (value < self.n_values)
        keys = product.astype(np.int64) * self.n_values + value
        hay = self._fact_keys
        if not len(hay):
            return np.zeros(len(keys), bool)
        pos = np.minimum(search(hay, keys), len(hay) - 1)
        return ok & (hay[pos] == keys)

    @cached_property
    def _pa(self) -> tuple[np.ndarray, np.ndarray]:
        A = max(len(self.attributes), 1)
        keys = self.catalog.fact_product.astype(np.int64) * A + self.fact_attribute
        return unique_counts(keys)

    def n_asserted(self, product: np.ndarray, attribute: np.ndarray) -> np.ndarray:
        """(N,) int: how many values the catalog asserts for (product, attribute)."""
        keys_u, counts = self._pa
        A = max(len(self.attributes), 1)
        ok = (product >= 0) & (attribute >= 0)
        keys = product.astype(np.int64) * A + attribute
        out = np.zeros(len(keys), np.int64)
        if len(keys_u):
            pos = np.minimum(search(keys_u, keys), len(keys_u) - 1)
            hit = ok & (keys_u[pos] == keys)
            out[hit] = counts[pos[hit]]
        return out

    @cached_property
    def product_fact_ptr(self) -> np.ndarray:
        """(P+1,) CSR pointers: facts of product p are ``fact_*[ptr[p]:ptr[p+1]]``."""
        return np.searchsorted(self.catalog.fact_product, np.arange(len(self.catalog) + 1))

    def product_facts(self, p: int, attribute: int | None = None) -> list[int]:
        """Value codes the catalog asserts for product ``p`` (of one attribute if given)."""
        if p < 0:
            return []
        lo, hi = self.product_fact_ptr[p], self.product_fact_ptr[p + 1]
        vals = self.catalog.fact_value[lo:hi].tolist()
        if attribute is None:
            return vals
        return [v for v in vals if self.values.attr[v] == attribute]

    @cached_property
    def subtree_products(self) -> np.ndarray:
        """(C,) int64: products whose leaf category is at or below each category."""
        cat = self.catalog
        out = np.zeros(len(cat.categories), np.int64)
        pc = cat.product_category[cat.product_category >= 0]
        anc = cat.category_ancestors
        for d in range(anc.shape[1]):
            a = anc[pc, d]
            a = a[a >= 0]
            out += np.bincount(a, minlength=len(out))
        return out

    @cached_property
    def subtree_attribute_products(self) -> dict[tuple[int, int], int]:
        """(category, attribute) -> products at or below the category with at least one value of it."""
        cat = self.catalog
        keys_u, _ = self._pa
        A = max(len(self.attributes), 1)
        prods, attrs = keys_u // A, keys_u % A
        pc = cat.product_category[prods]
        has = pc >= 0
        pc, attrs = pc[has], attrs[has]
        anc = cat.category_ancestors
        out: dict[tuple[int, int], int] = {}
        for d in range(anc.shape[1]):
            node = anc[pc, d]
            ok = node >= 0
            k, n = unique_counts(node[ok].astype(np.int64) * A + attrs[ok])
            out.update(zip(zip((k // A).tolist(), (k % A).tolist()), n.tolist()))
        return out

    # -- categories -----------------------------------------------------------------------------
    def resolve_category(self, name: str, rule: Rule | None = None) -> int | None:
        """A category by path, or by its own name when that is unique; ``None`` (with a warning) if absent."""
        cat = self.catalog
        c = cat.category_index.get(name)
        if c is not None:
            return c
        if PATH_SEP not in name:
            hits = [i for i, p in enumerate(cat.categories) if p.rsplit(PATH_SEP, 1)[-1] == name]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                self.warn(rule, f"category {name!r} is ambiguous ({', '.join(cat.categories[h] for h in hits)}); "
                                "write its full path")
                return None
        self.warn(rule, f"category {name!r} is not in this catalog")
        return None

    def scope_mask(self, rule: Rule) -> np.ndarray | None:
        """(C,) bool: the subtrees a rule is limited to (``None``: no limit)."""
        if not rule.scope:
            return None
        mask = np.zeros(len(self.catalog.categories), bool)
        for name in rule.scope:
            c = self.resolve_category(name, rule)
            if c is not None:
                mask |= self.catalog.subtree(c)
        return mask

    def warn(self, rule: Rule | None, message: str) -> None:
        where = f"rule {rule.id!r} ({rule.source}): " if rule is not None else ""
        self.warnings.append(where + message)

    def attribute_codes(self, names: Iterable[str] | str, rule: Rule | None = None) -> np.ndarray:
        """(A,) bool over attribute codes: the named attributes (``"*"``: all)."""
        mask = np.zeros(len(self.attributes), bool)
        if names == "*":
            mask[:] = True
            return mask
        for n in names:
            a = self.attribute_code.get(n)
            if a is None:
                self.warn(rule, f"attribute {n!r} is not in this catalog")
                continue
            mask[a] = True
            if a >= len(self.catalog.attributes):
                self.warn(rule, f"attribute {n!r} has no asserted value in this catalog")
        return mask

    # -- rows ------------------------------------------------------------------------------------
    def rows_for(self, predictions: Predictions) -> Rows:
        """Intern prediction strings into codes (one dict lookup per row; values grouped by attribute)."""
        cat = self.catalog
        N = len(predictions)
        pidx = cat.product_index
        # map(d.get, keys, repeat(default)) runs the lookups in C
        product = np.fromiter(map(pidx.get, predictions.product.tolist(), repeat(-1)), np.int32, N)
        acode = dict(self.attribute_code)
        acode[BRAND_ATTRIBUTE] = BRAND_CODE
        attribute = np.fromiter(map(acode.get, predictions.attribute.tolist(), repeat(UNKNOWN)), np.int32, N)
        value = np.full(N, -1, np.int32)
        norms = predictions.value
        names = predictions.attribute
        order = np.argsort(attribute, kind="stable")
        bounds = np.flatnonzero(np.diff(attribute[order])) + 1
        lookup = self.value_lookup
        # values the catalog has never seen get codes after the context's values, one per (attribute, norm)
        new_rows: list[np.ndarray] = []
        new_codes: list[np.ndarray] = []
        n_new = 0
        for grp in np.split(order, bounds) if N else []:
            a = int(attribute[grp[0]])
            if a == BRAND_CODE:
                continue
            keys = norms[grp].tolist()
            if a >= 0:
                codes = np.fromiter(map(lookup[a].get, keys, repeat(-1)), np.int32, len(grp))
            else:  # attributes the context does not know: keep their names apart
                codes = np.full(len(grp), -1, np.int32)
                keys = [f"{x}\x1f{y}" for x, y in zip(names[grp].tolist(), keys)]
            miss = np.flatnonzero(codes < 0)
            if len(miss):
                missing = [keys[i] for i in miss.tolist()]
                local = {k: n_new + j for j, k in enumerate(dict.fromkeys(missing))}
                codes[miss] = self.n_values + np.fromiter(map(local.__getitem__, missing), np.int32, len(miss))
                new_rows.append(grp[miss])
                new_codes.append(codes[miss] - self.n_values)
                n_new += len(local)
            value[grp] = codes
        # brand rows: the predicted brand; value rows: the product's brand
        brand = take(cat.product_brand, product, UNKNOWN)
        is_brand = attribute == BRAND_CODE
        if is_brand.any():
            bidx = cat.brand_index
            brand[is_brand] = np.fromiter(map(bidx.get, norms[is_brand].tolist(), repeat(-1)), np.int32,
                                          int(is_brand.sum()))
        ext = None
        if n_new:
            rows_new, codes_new = np.concatenate(new_rows), np.concatenate(new_codes)
            _, at = first_index(codes_new)
            first = rows_new[at]  # a row of each new value (codes are 0..n_new-1)
            ext_norm = norms[first]
            qty = np.full(n_new, np.nan)
            unit = np.full(n_new, -1, np.int8)
            for j, i in enumerate(first.tolist()):
                q = None
                pq, pu = predictions.quantity, predictions.unit
                if pq is not None and pu is not None and pu[i] is not None and not np.isnan(pq[i]):
                    q = (float(pq[i]), str(pu[i]))
                if q is None:
                    q = parse_canonical(ext_norm[j])
                if q is not None:
                    qty[j], unit[j] = q[0], unit_code(q[1])
            disp = predictions.display[first] if predictions.display is not None else ext_norm
            ext = ValueArrays(attribute[first].astype(np.int32), ext_norm, disp, qty, unit, np.zeros(n_new, np.int64))
        return Rows(self, product, attribute, value, brand, audit=False, ext=ext, predictions=predictions)

    def audit_rows(self, *, brands: bool = True) -> Rows:
        """Every asserted fact as a row (and, with ``brands``, every product's brand)."""
        cat = self.catalog
        fp, fv = cat.fact_product, cat.fact_value
        product, attribute, value = fp, self.values.attr[fv], fv
        brand = cat.product_brand[fp]
        fact = np.arange(len(fp), dtype=np.int64)
        if brands:
            bp = np.flatnonzero(cat.product_brand >= 0).astype(np.int32)
            product = np.concatenate([product, bp])
            attribute = np.concatenate([attribute, np.full(len(bp), BRAND_CODE, np.int32)])
            value = np.concatenate([value, np.full(len(bp), -1, np.int32)])
            brand = np.concatenate([brand, cat.product_brand[bp]])
            fact = np.concatenate([fact, np.full(len(bp), -1, np.int64)])
        return Rows(self, product, attribute, value, brand, audit=True, fact=fact)

    def row_fields(self, rows: Rows, i: int) -> dict[str, Any]:
        """The plain fields of row ``i`` for messages."""
        cat = self.catalog
        p, a, v, b, c = (int(rows.product[i]), int(rows.attribute[i]), int(rows.value[i]), int(rows.brand[i]),
                         int(rows.category[i]))
        pred = rows.predictions
        product = cat.product_ids[p] if p >= 0 else (pred.product[i] if pred is not None else "?")
        if a == BRAND_CODE:
            attribute = "brand"
        elif a >= 0:
            attribute = self.attributes[a]
        else:
            attribute = pred.attribute[i] if pred is not None else "?"
        if a == BRAND_CODE:
            value = cat.brand_names[b] if b >= 0 else (pred.value[i] if pred is not None else "?")
        elif pred is not None and pred.display is not None:
            value = pred.display[i]
        elif 0 <= v < self.n_values:
            value = self.values.display[v]
        elif v >= self.n_values:
            value = rows.ext.display[v - self.n_values]
        else:
            value = "?"
        return {"product": product, "attribute": attribute, "value": value,
                "category": cat.categories[c] if c >= 0 else "(no category)",
                "brand": cat.brand_names[b] if b >= 0 else (value if a == BRAND_CODE else "(no brand)")}

    def value_label(self, v: int) -> str:
        return f"{self.attributes[self.values.attr[v]]} = {self.values.display[v]}"

    # -- judging -----------------------------------------------------------------------------
    def judge(self, rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run every rule: (status (N,) int8 0/1/2, violation rows (M,), violation rule index (M,)).
        Rule index -1 is the built-in check that the product exists."""
        N = len(rows)
        status = np.zeros(N, np.int8)
        v_rows, v_rules = [], []
        checks: list[tuple[int, Compiled]] = [(-1, self.builtin)] + list(enumerate(self.compiled))
        for k, c in checks:
            mask = c.check(rows)
            idx = np.flatnonzero(mask)
            if not len(idx):
                continue
            sev = SEVERITY_CODE[c.rule.severity]
            status[idx] = np.maximum(status[idx], sev)
            v_rows.append(idx)
            v_rules.append(np.full(len(idx), k, np.int32))
        if v_rows:
            r, k = np.concatenate(v_rows), np.concatenate(v_rules)
            order = np.lexsort((k, r))
            return status, r[order], k[order]
        return status, np.zeros(0, np.int64), np.zeros(0, np.int32)

    def compiled_rule(self, k: int) -> Compiled:
        return self.builtin if k < 0 else self.compiled[k]


class _UnknownProduct(Compiled):
    """Built in: a prediction about a product the catalog does not have is rejected."""

    def __init__(self, ctx: Context):
        self.rule = Rule("kb:unknown-product", "builtin", None, "reject", source="(built in)")
        self.ctx = ctx
        self.scope = None

    def _check(self, rows: Rows) -> np.ndarray:
        return rows.product < 0

    def message(self, rows: Rows, i: int) -> str:
        f = self.ctx.row_fields(rows, i)
        return f"product {f['product']!r} is not in the catalog"


__all__ = ["BRAND_CODE", "Context", "Rows", "STATUS", "ValueArrays", "take"]
