"""Rule mining: applicability and implication rules learned from asserted facts, association-rule style.

Per category (each node of the tree with enough products, the subtree included):

- applicability: "products of C have attribute A" with support = products of C having A and
  confidence = that share of C's products;
- category implication: "products of C have A = v" with support = products of C with A = v and
  confidence = support / products of C having any value of A;
- value implication: "in C, A1 = v1 implies A2 = v2" with support = products of C with both and
  confidence = support / products of C with A1 = v1 and any value of A2.

Confidence ignores products that lack the implied attribute: a missing value is what the model will
predict, not evidence against the rule. Rules already implied higher up (an ancestor category has
the same rule, or the category alone implies the value) are left out. The result is a
:class:`RuleSet` that writes itself as YAML a person can read, edit and keep.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .arrays import unique, unique_counts
from .applicability import ApplicabilityParams, Declared, Learn
from .catalog import Catalog
from .context import Context
from .errors import KBError
from .logic import PairParams
from .registry import SEVERITIES, Rule, RuleSet
from .units import norm_key
from .values import Matcher, ValueTest


@dataclass(frozen=True)
class MiningConfig:
    # Defaults chosen on validation facts (bench/bench_rules.py --clean-from valid): at confidence 0.95 the
    # mined implications alone sent 2.4% of correct values to review; with no exception allowed, 0.1%.
    min_products: int = 30  # a category (with its subtree) needs this many products to get rules
    min_support: int = 30  # implications: products with condition and consequence
    min_confidence: float = 1.0  # implications (1.0: no product of the category breaks it)
    min_lift: float = 1.2  # value implications: confidence / the implied value's share in the category
    applicability_min_support: int = 1  # products of the category with the attribute
    applicability_min_share: float = 0.005  # share of the category's products with it
    levels: tuple[int, ...] | None = None  # tree levels to mine at (1 = roots); None: all
    value_implications: bool = True  # also "A1 = v1 implies A2 = v2", not only "category implies A = v"
    severity: str = "review"  # of the mined rules; promote to reject by editing the file

    def __post_init__(self) -> None:
        if self.min_lift < 0:
            raise KBError(f"mining: min_lift must be at least 0, got {self.min_lift}")
        for name in ("min_products", "min_support", "applicability_min_support"):
            if getattr(self, name) < 1:
                raise KBError(f"mining: {name} must be at least 1, got {getattr(self, name)}")
        for name in ("min_confidence", "applicability_min_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise KBError(f"mining: {name} must be between 0 and 1, got {getattr(self, name)}")
        if self.severity not in SEVERITIES:
            raise KBError(f"mining: severity must be one of {', '.join(SEVERITIES)}")
        if self.levels is not None and any(lv < 1 for lv in self.levels):
            raise KBError("mining: levels start at 1 (the roots)")


@dataclass(frozen=True)
class MinedImplication:
    category: str
    condition: tuple[str, str] | None  # (attribute, value display) or None: the category itself
    consequence: tuple[str, str]
    support: int
    confidence: float
    condition_products: int  # products with the condition and a value of the consequence's attribute
    lift: float | None = None  # value implications: confidence / share of the value in the category


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.casefold()).strip("-") or "x"


def _spelling(ctx: Context, v: int) -> str:
    """How to write a value in YAML so that it loads back as the same value."""
    d = str(ctx.values.display[v])
    return d if norm_key(d) == ctx.values.norm[v] else str(ctx.values.norm[v])


def mine(catalog: Catalog, config: MiningConfig = MiningConfig()) -> tuple[dict[str, Any], list[MinedImplication]]:
    """The raw mining results: (applicability per category, implications). See :func:`mine_rules`."""
    ctx = Context(catalog, RuleSet())
    cat = catalog
    A = max(len(ctx.attributes), 1)
    N = ctx.subtree_products
    K = ctx.subtree_attribute_products
    depth = cat.category_depth
    levels = set(range(int(depth.max(initial=-1)) + 1)) if config.levels is None else {lv - 1 for lv in config.levels}
    eligible = (N >= config.min_products) & np.isin(depth, list(levels))

    # -- applicability --------------------------------------------------------------------------
    applicability: dict[str, Any] = {}
    by_node: dict[int, dict[str, int]] = {}
    for (n, a), k in K.items():
        if eligible[n] and k >= config.applicability_min_support and k / N[n] >= config.applicability_min_share:
            by_node.setdefault(n, {})[ctx.attributes[a]] = int(k)
    for n in sorted(np.flatnonzero(eligible).tolist(), key=lambda n: cat.categories[n]):
        support = dict(sorted(by_node.get(n, {}).items()))
        applicability[cat.categories[n]] = {"products": int(N[n]), "support": support}

    # -- implications ------------------------------------------------------------------------------
    fp, fv = cat.fact_product, cat.fact_value
    fa = ctx.values.attr[fv]
    leaf = cat.product_category[fp]
    has_leaf = leaf >= 0
    anc = cat.category_ancestors
    found: list[MinedImplication] = []
    cat_rules: set[tuple[int, int]] = set()  # (node, value) implied by the category
    val_rules: set[tuple[int, int, int]] = set()  # (node, v1, v2)
    V = max(ctx.n_values, 1)
    for d in sorted(levels):
        node = np.where(has_leaf, anc[np.maximum(leaf, 0), d], -1)
        ok = (node >= 0)
        ok[ok] = eligible[node[ok]]
        if not ok.any():
            continue
        # category implies value
        keys, counts = unique_counts(node[ok].astype(np.int64) * V + fv[ok])
        item_count = dict(zip(keys.tolist(), counts.tolist()))
        frequent = {k for k, c in item_count.items() if c >= config.min_support}
        for k in sorted(frequent):
            n, v = divmod(k, V)
            c = item_count[k]
            m = K.get((n, int(ctx.values.attr[v])), 0)
            if c / m >= config.min_confidence:
                cat_rules.add((n, v))
                if any((a, v) in cat_rules for a in cat.category_path(n)[1:]):
                    continue
                found.append(MinedImplication(cat.categories[n], None,
                                              (ctx.attributes[ctx.values.attr[v]], _spelling(ctx, v)), c, c / m, m))
        if not config.value_implications or not frequent:
            continue
        # value implies value: pairs (left fact, right fact) of the same product, different attributes
        item_key = node.astype(np.int64) * V + fv
        left = np.flatnonzero(ok & np.isin(item_key, np.fromiter(frequent, np.int64, len(frequent))))
        ptr = ctx.product_fact_ptr
        lp = fp[left]
        nright = (ptr[lp + 1] - ptr[lp]).astype(np.int64)
        total = int(nright.sum())
        if not total:
            continue
        li = np.repeat(left, nright)
        start = np.repeat(ptr[lp].astype(np.int64), nright)
        offs = np.arange(total) - np.repeat(np.cumsum(nright) - nright, nright)
        ri = start + offs
        diff = fa[li] != fa[ri]
        li, ri = li[diff], ri[diff]
        nd = node[li].astype(np.int64)
        # denominators: products of the node with the left value and any value of the right attribute
        den_keys = unique(li * A + fa[ri])  # one per (left fact, right attribute): per product
        dl = den_keys // A
        dkey = (node[dl].astype(np.int64) * V + fv[dl]) * A + den_keys % A
        du, dc = unique_counts(dkey)
        den = dict(zip(du.tolist(), dc.tolist()))
        # supports: right value frequent in the node too
        rfreq = np.isin(nd * V + fv[ri], np.fromiter(frequent, np.int64, len(frequent)))
        skey = (nd[rfreq] * V + fv[li[rfreq]]) * V + fv[ri[rfreq]]
        su, sc = unique_counts(skey)
        for k, s in zip(su.tolist(), sc.tolist()):
            if s < config.min_support:
                continue
            nv1, v2 = divmod(k, V)
            n, v1 = divmod(nv1, V)
            a2 = int(ctx.values.attr[v2])
            m = den[(n * V + v1) * A + a2]
            if s / m < config.min_confidence:
                continue
            base = item_count[n * V + v2] / K[(n, a2)]  # share of the implied value in the category
            lift = (s / m) / base
            if lift < config.min_lift:
                continue
            val_rules.add((n, v1, v2))
            path = cat.category_path(n)
            if any((x, v2) in cat_rules for x in path):  # the category alone implies it
                continue
            if any((x, v1, v2) in val_rules for x in path[1:]):  # an ancestor has the same rule
                continue
            found.append(MinedImplication(cat.categories[n], (ctx.attributes[ctx.values.attr[v1]], _spelling(ctx, v1)),
                                          (ctx.attributes[a2], _spelling(ctx, v2)), s, s / m, m, lift))
    found.sort(key=lambda r: (r.category, r.condition is not None, r.condition or ("", ""), r.consequence))
    return applicability, found


def mine_rules(catalog: Catalog, config: MiningConfig = MiningConfig()) -> RuleSet:
    """Mined rules as a :class:`RuleSet`: one ``applicability`` rule (a closed list of attributes per
    category with enough products, ``default: applies`` elsewhere) and one ``implication`` rule per
    mined implication, with their evidence under ``mined:``. ``rules.dump(path, header=...)`` writes them."""
    applicability, implications = mine(catalog, config)
    out = RuleSet()
    if applicability:
        cats = tuple((path, Declared(frozenset(info["support"]), frozenset(), True,
                                     {"products": info["products"], "support": info["support"]}))
                     for path, info in applicability.items())
        out.append(Rule("mined.applicability", "applicability", ApplicabilityParams("applies", Learn(), cats),
                        config.severity, description="attributes seen on enough products of each category",
                        source="mined",
                        evidence={"min_support": config.applicability_min_support,
                                  "min_share": config.applicability_min_share, "min_products": config.min_products}))
    used: set[str] = set(out.ids())
    for r in implications:
        if r.condition is None:
            rid = f"mined.{_slug(r.category)}.{_slug(r.consequence[0])}-{_slug(r.consequence[1])}"
            cond = Matcher(category=r.category)
            scope: tuple[str, ...] = ()
        else:
            rid = (f"mined.{_slug(r.category)}.{_slug(r.condition[0])}-{_slug(r.condition[1])}"
                   f".implies.{_slug(r.consequence[0])}-{_slug(r.consequence[1])}")
            cond = Matcher(attribute=r.condition[0], test=ValueTest("values", values=(r.condition[1],)))
            scope = (r.category,)
        base, i = rid, 2
        while rid in used:
            rid, i = f"{base}-{i}", i + 1
        used.add(rid)
        cons = Matcher(attribute=r.consequence[0], test=ValueTest("values", values=(r.consequence[1],)))
        out.append(Rule(rid, "implication", PairParams(cond, cons), config.severity, scope=scope, source="mined",
                        evidence={"support": r.support, "confidence": round(r.confidence, 4),
                                  "products_with_condition": r.condition_products,
                                  **({"lift": round(r.lift, 3)} if r.lift is not None else {})}))
    return out


def mining_header(catalog: Catalog, config: MiningConfig) -> str:
    s = catalog.summary()
    cfg = ", ".join(f"{k}={v}" for k, v in asdict(config).items())
    return (f"Rules mined by `attrgraph rules mine` from {s.products} products, {s.facts} facts, "
            f"{s.categories} categories.\n"
            f"Thresholds: {cfg}.\n"
            "Edit freely: delete rules you disagree with, set severity: reject on the ones you trust,\n"
            "extend `applies` lists. `mined:` holds the evidence (support = products, confidence = share).")
