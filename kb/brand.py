"""Rule type ``brand_category``: a brand never seen in that part of the category tree needs review."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import unique_counts
from .context import Context, Rows, search
from .predictions import BRAND_ATTRIBUTE
from .registry import Compiled, Rule, RuleType, register_rule_type
from .spec import Spec


@dataclass(frozen=True)
class BrandCategoryParams:
    level: int  # the part of the tree: the product's ancestor at this level (1 = root)
    min_products: int  # the brand is "seen" there with at least this many (other) products
    min_brand_products: int  # judge only brands with at least this many (other) products in the catalog
    # a brand the catalog has never seen violates the rule only where new brands are rare: at most this share
    # of the branded products have a brand no other product has (Good-Turing); None: always
    max_new_share: float | None = None


@register_rule_type
class BrandCategory(RuleType):
    """Checks brand rows: predictions of the attribute ``"@brand"`` and, in an audit, every product's
    brand. The part of the tree is the product's ancestor at ``level`` (its leaf if the tree is
    shallower). A brand with fewer than ``min_products`` (other) products there, among brands with at
    least ``min_brand_products`` (other) products overall, violates it; so does a predicted brand the
    catalog has never seen -- with ``max_new_share``, only in a catalog where at most that share of the
    branded products have a brand no other product has (where new brands are common, a new one is no
    evidence of an error)."""

    name = "brand_category"
    summary = "A brand never (or rarely) seen in that part of the category tree needs review."
    template = "brand {brand!r} {seen} under {part}, where products of {category} belong"
    fields = ("seen", "part")
    keys = ("level", "min_products", "min_brand_products", "max_new_share")
    default_severity = "review"

    @classmethod
    def parse(cls, spec: Spec) -> BrandCategoryParams:
        return BrandCategoryParams(spec.number("level", 1, minimum=1, integer=True),
                                   spec.number("min_products", 1, minimum=1, integer=True),
                                   spec.number("min_brand_products", 1, minimum=1, integer=True),
                                   spec.number("max_new_share", None, minimum=0, maximum=1))

    @classmethod
    def dump(cls, p: BrandCategoryParams) -> dict[str, Any]:
        out = {"level": p.level, "min_products": p.min_products, "min_brand_products": p.min_brand_products}
        if p.max_new_share is not None:
            out["max_new_share"] = p.max_new_share
        return out

    @classmethod
    def compile(cls, rule: Rule, ctx: Context) -> Compiled:
        return _BrandCategory(rule, ctx)


class _BrandCategory(Compiled):
    def __init__(self, rule: Rule, ctx: Context):
        super().__init__(rule, ctx)
        self.p: BrandCategoryParams = rule.params
        cat = ctx.catalog
        anc = cat.category_ancestors
        d = np.minimum(cat.category_depth.astype(np.int64), self.p.level - 1)
        self.part = anc[np.arange(len(cat.categories)), d] if len(cat.categories) else np.zeros(0, np.int32)
        ok = (cat.product_brand >= 0) & (cat.product_category >= 0)
        C = max(len(cat.categories), 1)
        keys = cat.product_brand[ok].astype(np.int64) * C + self.part[cat.product_category[ok]]
        self.keys, self.counts = unique_counts(keys)
        self.C = C
        self.totals = np.bincount(cat.product_brand[cat.product_brand >= 0], minlength=len(cat.brands))
        pb = cat.product_brand[cat.product_brand >= 0]
        self.new_share = float((self.totals[pb] == 1).mean()) if len(pb) else 0.0
        self.judge_new = self.p.max_new_share is None or self.new_share <= self.p.max_new_share

    def _counts(self, brand: np.ndarray, part: np.ndarray) -> np.ndarray:
        keys = brand.astype(np.int64) * self.C + part
        out = np.zeros(len(keys), np.int64)
        if len(self.keys):
            pos = np.minimum(search(self.keys, keys), len(self.keys) - 1)
            hit = (brand >= 0) & (part >= 0) & (self.keys[pos] == keys)
            out[hit] = self.counts[pos[hit]]
        return out

    def _check(self, rows: Rows) -> np.ndarray:
        sel = rows.is_brand & (rows.product >= 0) & (rows.category >= 0)
        part = rows.take_category(self.part, -1)
        loo = 1 if rows.audit else 0
        seen = self._counts(rows.brand, part) - loo
        known = rows.brand >= 0
        total = np.zeros(len(rows), np.int64)
        total[known] = self.totals[rows.brand[known]]
        judged = (total - loo) >= self.p.min_brand_products
        unknown = ~known & self.judge_new
        return sel & (unknown | (judged & (seen < self.p.min_products)))

    def _could_fire(self, rows: Rows) -> np.ndarray:
        """Only on brand rows of a categorised product whose brand is unknown or established (enough products
        to judge where it belongs)."""
        sel = rows.is_brand & (rows.product >= 0) & (rows.category >= 0)
        known = rows.brand >= 0
        total = np.zeros(len(rows), np.int64)
        total[known] = self.totals[rows.brand[known]]
        return sel & ((~known & self.judge_new) | ((total - (1 if rows.audit else 0)) >= self.p.min_brand_products))

    def details(self, rows: Rows, i: int) -> dict[str, Any]:
        r = rows.row(i)
        part = int(self.part[r.category[0]])
        b = int(r.brand[0])
        loo = 1 if rows.audit else 0
        if b < 0:
            seen = "is not in the catalog at all, so it was never seen"
            if self.p.max_new_share is not None:
                seen += (f" (new brands are rare here: {self.new_share:.2%} of the branded products have a brand no "
                         f"other product has)")
        else:
            n = int(self._counts(r.brand, np.array([part]))[0]) - loo
            t = int(self.totals[b]) - loo
            other = "other " if loo else ""
            seen = (f"has {n} {other}product{'s' if n != 1 else ''} (of {t} {other}in the catalog)"
                    if n else f"has none of its {t} {other}products")
        return {"seen": seen, "part": self.ctx.catalog.categories[part]}


__all__ = ["BRAND_ATTRIBUTE", "BrandCategory"]
