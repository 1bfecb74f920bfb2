"""Rule type ``applicability``: the attribute must apply to the product's category."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arrays import unique_inverse
from .context import Context, Rows
from .registry import Compiled, Rule, RuleType, register_rule_type
from .spec import Spec

APPLIES, NOT_APPLIES, UNDECIDED = 1, 0, -1


@dataclass(frozen=True)
class Learn:
    min_products: int = 20  # a category (with its subtree) needs this many products to be judged
    min_count: int = 3  # ... and the attribute at least this many of them
    min_share: float = 0.02  # ... and at least this share of them


@dataclass(frozen=True)
class Declared:
    applies: frozenset[str] = frozenset()
    not_applies: frozenset[str] = frozenset()
    closed: bool = False  # attributes not listed here do not apply (unless a category below says so)
    evidence: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ApplicabilityParams:
    default: str  # "learn" | "applies" | "not_applies": when no category on the path decides
    learn: Learn
    categories: tuple[tuple[str, Declared], ...]


@register_rule_type
class Applicability(RuleType):
    """For a product in leaf category L and an attribute A, walk from L up to the root: the first
    category that declares A (in ``applies`` or ``not_applies``, or that is ``closed``) decides —
    declarations are inherited down the tree and overridden below. If none does, ``default`` decides;
    ``learn`` walks up again: A applies at the first category where at least ``min_count`` products
    (and ``min_share`` of them) have it, and does not apply at the first category with at least
    ``min_products`` products where fewer do."""

    name = "applicability"
    summary = ("The attribute must apply to the product's category: learned from how many products "
               "of the category have it, or declared per category and inherited down the tree.")
    template = "{attribute} does not apply to products in {category}: {reason}"
    fields = ("reason",)
    keys = ("default", "learn", "categories")

    @classmethod
    def parse(cls, spec: Spec) -> ApplicabilityParams:
        default = spec.choice("default", ("learn", "applies", "not_applies"), "learn")
        lk = spec.sub("learn", "learn", None)
        learn = Learn()
        if lk is not None:
            learn = Learn(lk.number("min_products", learn.min_products, minimum=1, integer=True),
                          lk.number("min_count", learn.min_count, minimum=1, integer=True),
                          lk.number("min_share", learn.min_share, minimum=0, maximum=1))
            lk.done()
        cats = []
        cspec = spec.raw("categories", {})
        if not isinstance(cspec, dict):
            raise spec.error("categories", "expected a mapping {category path: {applies: [..], not_applies: [..], "
                             "closed: true|false}}")
        for path, body in cspec.items():
            d = spec.sub("categories", "categories").sub(path, f"category {path!r}")
            applies = frozenset(d.str_list("applies", []))
            not_applies = frozenset(d.str_list("not_applies", []))
            closed = d.bool("closed", False)
            evidence = d.raw("evidence", None)
            d.done()
            both = applies & not_applies
            if both:
                raise d.error("not_applies", f"{sorted(both)[0]!r} is listed both in applies and not_applies")
            if not (applies or not_applies or closed):
                raise d.error(None, "declares nothing: give applies, not_applies or closed: true")
            cats.append((str(path), Declared(applies, not_applies, closed, evidence)))
        if default != "learn" and lk is not None:
            raise spec.error("learn", f"`learn` thresholds need `default: learn` (default is {default!r})")
        return ApplicabilityParams(default, learn, tuple(cats))

    @classmethod
    def dump(cls, p: ApplicabilityParams) -> dict[str, Any]:
        out: dict[str, Any] = {"default": p.default}
        if p.default == "learn":
            out["learn"] = {"min_products": p.learn.min_products, "min_count": p.learn.min_count,
                            "min_share": p.learn.min_share}
        if p.categories:
            cats: dict[str, Any] = {}
            for path, d in p.categories:
                body: dict[str, Any] = {}
                if d.closed:
                    body["closed"] = True
                if d.applies:
                    body["applies"] = sorted(d.applies)
                if d.not_applies:
                    body["not_applies"] = sorted(d.not_applies)
                if d.evidence:
                    body["evidence"] = d.evidence
                cats[path] = body
            out["categories"] = cats
        return out

    @classmethod
    def mentions(cls, p: ApplicabilityParams):
        return [(a, None) for _, d in p.categories for a in sorted(d.applies | d.not_applies)]

    @classmethod
    def compile(cls, rule: Rule, ctx: Context) -> Compiled:
        return _Applicability(rule, ctx)


class _Applicability(Compiled):
    def __init__(self, rule: Rule, ctx: Context):
        super().__init__(rule, ctx)
        self.p: ApplicabilityParams = rule.params
        self.decl: dict[int, tuple[str, Declared]] = {}
        for path, d in self.p.categories:
            c = ctx.resolve_category(path, rule)
            if c is not None:
                if c in self.decl:
                    ctx.warn(rule, f"category {path!r} is declared twice (as {self.decl[c][0]!r} too)")
                self.decl[c] = (path, d)
        self._cache: dict[tuple[int, int, int], tuple[int, str]] = {}

    def decide(self, c: int, a: int, loo: int) -> tuple[int, str]:
        """(APPLIES | NOT_APPLIES | UNDECIDED, reason) for leaf ``c`` and attribute code ``a``
        (-1: unknown attribute); ``loo`` products are left out of the learned counts."""
        key = (c, a, loo)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        ctx = self.ctx
        name = ctx.attributes[a] if a >= 0 else None
        path = ctx.catalog.category_path(c)
        res: tuple[int, str] | None = None
        for n in path:
            d = self.decl.get(n)
            if d is None:
                continue
            where = ctx.catalog.categories[n]
            if name in d[1].applies:
                res = (APPLIES, f"declared to apply under {where}")
            elif name in d[1].not_applies:
                res = (NOT_APPLIES, f"declared not to apply under {where}")
            elif d[1].closed:
                res = (NOT_APPLIES, f"it is not in the list of attributes of {where}")
            if res:
                break
        if res is None:
            if self.p.default == "applies":
                res = (APPLIES, "applies by default")
            elif self.p.default == "not_applies":
                res = (NOT_APPLIES, "no category above it says it applies")
            else:
                res = self._learned(path, a, loo)
        self._cache[key] = res
        return res

    def _learned(self, path: list[int], a: int, loo: int) -> tuple[int, str]:
        """Nearest category first: it applies where at least ``min_count`` products (and ``min_share``)
        have it — even a small category is evidence enough for that; it does not apply where a category
        with at least ``min_products`` products has too few. Otherwise look one level up."""
        ctx, L = self.ctx, self.p.learn
        other = "other " if loo else ""
        for n in path:
            total = int(ctx.subtree_products[n]) - loo
            if total <= 0:
                continue
            k = (ctx.subtree_attribute_products.get((n, a), 0) if a >= 0 else 0) - loo
            if k >= L.min_count and k / total >= L.min_share:
                return APPLIES, f"{k} of {total} {other}products under {ctx.catalog.categories[n]} have it"
            if total >= L.min_products:
                return NOT_APPLIES, (f"only {k} of {total} {other}products under {ctx.catalog.categories[n]} have it "
                                     f"(it applies from {L.min_count} products and {L.min_share:.0%})")
        return UNDECIDED, "no category on the path has enough products to judge"

    def _check(self, rows: Rows) -> np.ndarray:
        sel = rows.is_value & (rows.category >= 0)
        out = np.zeros(len(rows), bool)
        idx = np.flatnonzero(sel)
        if not len(idx):
            return out
        A1 = len(self.ctx.attributes) + 1
        keys = rows.category[idx].astype(np.int64) * A1 + (rows.attribute[idx] + 1)
        uniq, inv = unique_inverse(keys)
        loo = 1 if rows.audit else 0
        bad = np.array([self.decide(int(k // A1), int(k % A1) - 1, loo)[0] == NOT_APPLIES for k in uniq.tolist()],
                       dtype=bool)
        out[idx] = bad[inv]
        return out

    def details(self, rows: Rows, i: int) -> dict[str, Any]:
        return {"reason": self.decide(int(rows.category[i]), int(rows.attribute[i]), 1 if rows.audit else 0)[1]}
