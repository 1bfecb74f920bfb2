"""Rule type ``cardinality``: functional attributes take at most ``max`` values per product."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .context import Context, Rows
from .registry import Compiled, Rule, RuleType, register_rule_type
from .spec import Spec
from .values import attributes_mask, dump_attributes, parse_attributes


@dataclass(frozen=True)
class CardinalityLearn:
    min_products: int = 20  # judge an attribute only when this many products have it
    min_share: float = 0.98  # ... and call it functional when this share of them has at most `max` values


@dataclass(frozen=True)
class CardinalityParams:
    attributes: tuple[str, ...] | str | None  # declared functional (None: only learned)
    max: int
    learn: CardinalityLearn | None


@register_rule_type
class Cardinality(RuleType):
    """Declared (``attributes``) and/or learned (``learn``) functional attributes. A prediction of
    another value for a product that already has ``max`` asserted values of the attribute contradicts
    them and violates the rule; in an audit, a fact violates it when the product has ``max`` other
    values of the attribute."""

    name = "cardinality"
    summary = ("A functional attribute takes at most one value (or `max`) per product; declared, or "
               "learned from how many products have a single value.")
    template = "{attribute} takes at most {max} value{plural} per product; the product already has {existing}"
    fields = ("max", "plural", "existing")
    keys = ("attribute", "attributes", "max", "learn")

    @classmethod
    def parse(cls, spec: Spec) -> CardinalityParams:
        attrs = parse_attributes(spec, required=False)
        mx = spec.number("max", 1, minimum=1, integer=True)
        learn = None
        lk = spec.sub("learn", "learn", None)
        if lk is not None:
            d = CardinalityLearn()
            learn = CardinalityLearn(lk.number("min_products", d.min_products, minimum=1, integer=True),
                                     lk.number("min_share", d.min_share, minimum=0, maximum=1))
            lk.done()
        if attrs is None and learn is None:
            raise spec.error(None, "declare `attributes` (functional attributes), `learn` ({min_products, "
                             "min_share}), or both")
        return CardinalityParams(attrs, mx, learn)

    @classmethod
    def dump(cls, p: CardinalityParams) -> dict[str, Any]:
        out = dump_attributes(p.attributes)
        if p.max != 1:
            out["max"] = p.max
        if p.learn:
            out["learn"] = {"min_products": p.learn.min_products, "min_share": p.learn.min_share}
        return out

    @classmethod
    def mentions(cls, p: CardinalityParams):
        return [] if p.attributes in (None, "*") else [(a, None) for a in p.attributes]

    @classmethod
    def message_fields(cls, p: CardinalityParams) -> dict[str, Any]:
        return {"max": p.max, "plural": "" if p.max == 1 else "s"}

    @classmethod
    def compile(cls, rule: Rule, ctx: Context) -> Compiled:
        return _Cardinality(rule, ctx)


def learn_functional(ctx: Context, max_values: int, learn: CardinalityLearn) -> np.ndarray:
    """(A,) bool: attributes that at least ``min_products`` products have, ``min_share`` of them with at
    most ``max_values`` values."""
    keys, counts = ctx._pa
    A = max(len(ctx.attributes), 1)
    attr = keys % A
    having = np.bincount(attr, minlength=len(ctx.attributes))
    few = np.bincount(attr[counts <= max_values], minlength=len(ctx.attributes))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(having > 0, few / np.maximum(having, 1), 0.0)
    return (having >= learn.min_products) & (share >= learn.min_share)


class _Cardinality(Compiled):
    def __init__(self, rule: Rule, ctx: Context):
        super().__init__(rule, ctx)
        p: CardinalityParams = rule.params
        self.p = p
        self.functional = (attributes_mask(ctx, p.attributes, rule) if p.attributes is not None
                           else np.zeros(len(ctx.attributes), bool))
        if p.learn is not None:
            self.functional |= learn_functional(ctx, p.max, p.learn)

    def _check(self, rows: Rows) -> np.ndarray:
        out = rows.is_value & rows.take_attribute(self.functional, False)
        idx = np.flatnonzero(out)  # look up only the rows of functional attributes
        n = self.ctx.n_asserted(rows.product[idx], rows.attribute[idx])
        if rows.audit:
            out[idx] = n - 1 >= self.p.max
            return out
        bad = n >= self.p.max
        j = idx[bad]
        bad[bad] = ~self.ctx.asserted(rows.product[j], rows.value[j])
        out[idx] = bad
        return out

    def _could_fire(self, rows: Rows) -> np.ndarray:
        """Only where the product already holds as many values of the functional attribute as allowed."""
        out = rows.is_value & rows.take_attribute(self.functional, False)
        idx = np.flatnonzero(out)
        n = self.ctx.n_asserted(rows.product[idx], rows.attribute[idx])
        out[idx] = (n - 1 if rows.audit else n) >= self.p.max
        return out

    def details(self, rows: Rows, i: int) -> dict[str, Any]:
        v = int(rows.value[i])
        facts = self.ctx.product_facts(int(rows.product[i]), int(rows.attribute[i]))
        others = [self.ctx.values.display[x] for x in facts if x != v]
        return {"existing": ", ".join(repr(x) for x in others)}
