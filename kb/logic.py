"""Rule types ``exclusion`` and ``implication``: facts that cannot go together, facts that imply others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .context import Context, Rows
from .registry import Compiled, Rule, RuleType, register_rule_type
from .spec import Spec
from .values import CompiledMatcher, Matcher


@dataclass(frozen=True)
class PairParams:
    condition: Matcher  # `if`
    consequence: Matcher  # `then`


def _parse_pair(spec: Spec, *, same_attribute_ok: bool) -> PairParams:
    cond = Matcher.parse(spec.sub("if", "`if` condition"), allow_category=True)
    cons = Matcher.parse(spec.sub("then", "`then` side"), allow_category=False)
    if cond.attribute is not None and cond.attribute == cons.attribute:
        if not same_attribute_ok:
            raise spec.error("then", f"`if` and `then` are both about {cond.attribute!r}; "
                             "an attribute cannot imply itself (use a domain rule)")
        a, b = cond.test, cons.test
        if a.kind == "values" and b.kind == "values" and a.norms & b.norms:
            raise spec.error("then", f"{sorted(a.norms & b.norms)[0]!r} is on both sides")
    return PairParams(cond, cons)


def _dump_pair(p: PairParams) -> dict[str, Any]:
    return {"if": p.condition.dump(), "then": p.consequence.dump()}


def _fields(p: PairParams) -> dict[str, Any]:
    return {"condition": p.condition.subject(), "consequence": p.consequence.object()}


class _PairRuleType(RuleType):
    """What exclusion and implication share: ``if`` / ``then`` parameters, dumped and described alike."""

    fields = ("condition", "consequence", "other")
    keys = ("if", "then")

    @classmethod
    def dump(cls, p: PairParams) -> dict[str, Any]:
        return _dump_pair(p)

    @classmethod
    def mentions(cls, p: PairParams):
        return p.condition.mentions() + p.consequence.mentions()

    @classmethod
    def message_fields(cls, p: PairParams) -> dict[str, Any]:
        return _fields(p)


@register_rule_type
class Exclusion(_PairRuleType):
    """``if`` (a category, or an attribute with values/pattern/range) excludes ``then`` (an attribute
    with values/pattern/range, or any value of it): no product may have both. A prediction matching one
    side for a product asserting the other contradicts an asserted fact."""

    name = "exclusion"
    summary = "Two facts cannot go together (e.g. an age group of kids excludes adult sizes)."
    template = "{attribute} = {value!r} conflicts with {other}: {condition} cannot have {consequence}"
    fields = ("condition", "consequence", "other")
    keys = ("if", "then")

    @classmethod
    def parse(cls, spec: Spec) -> PairParams:
        return _parse_pair(spec, same_attribute_ok=True)

    @classmethod
    def compile(cls, rule: Rule, ctx: Context) -> Compiled:
        return _Exclusion(rule, ctx)


class _Exclusion(Compiled):
    def __init__(self, rule: Rule, ctx: Context):
        super().__init__(rule, ctx)
        self.a = CompiledMatcher(rule.params.condition, ctx, rule)
        self.b = CompiledMatcher(rule.params.consequence, ctx, rule)

    def _check(self, rows: Rows) -> np.ndarray:
        ma, mb = self.a.rows(rows), self.b.rows(rows)
        viol = mb & (self.a.others(rows, ma) > 0)
        if self.a.is_fact:
            viol |= ma & (self.b.others(rows, mb) > 0)
        return viol & rows.is_value

    def details(self, rows: Rows, i: int) -> dict[str, Any]:
        p, v = int(rows.product[i]), int(rows.value[i])
        own = v if rows.audit else None
        if self.b.rows(rows.row(i))[0]:
            other = self.a.product_examples(p, own)
        else:
            other = self.b.product_examples(p, own)
        return {"other": ", ".join(other) or "an asserted fact"}


@register_rule_type
class Implication(_PairRuleType):
    """``if`` (a category, or a fact) implies ``then`` (an attribute whose values must pass the test):
    a product matching ``if`` may only have ``then``-passing values of that attribute. A value of the
    attribute that fails it, or a fact matching ``if`` on a product whose asserted value fails it,
    violates the rule. A missing value is not a violation (it is what the model predicts)."""

    name = "implication"
    summary = "A fact or a category implies a value (e.g. a category of women's wear implies gender Women)."
    template = "{condition} must have {consequence}, but {problem}"
    fields = ("condition", "consequence", "problem")
    keys = ("if", "then")

    @classmethod
    def parse(cls, spec: Spec) -> PairParams:
        p = _parse_pair(spec, same_attribute_ok=False)
        if p.consequence.test.kind == "any":
            raise spec.error("then", "`then` needs values, a pattern or a range (a rule that only says the "
                             "attribute exists is an applicability rule)")
        return p

    @classmethod
    def compile(cls, rule: Rule, ctx: Context) -> Compiled:
        return _Implication(rule, ctx)


class _Implication(Compiled):
    def __init__(self, rule: Rule, ctx: Context):
        super().__init__(rule, ctx)
        self.a = CompiledMatcher(rule.params.condition, ctx, rule)
        self.b = CompiledMatcher(rule.params.consequence, ctx, rule)
        # facts of the consequence's attribute that fail it, per product
        self.b_attr = self.b.attr
        cat = ctx.catalog
        if self.b_attr is not None:
            fails = (ctx.values.attr == self.b_attr) & ~self.b.vocab
            self.fails_vocab = fails
            f = fails[cat.fact_value]
            self.fails_per_product = np.bincount(cat.fact_product[f], minlength=len(cat)).astype(np.int64)
        else:
            self.fails_vocab = np.zeros(ctx.n_values, bool)
            self.fails_per_product = np.zeros(len(cat), np.int64)

    def _fails(self, rows: Rows) -> np.ndarray:
        if self.b_attr is None:
            return np.zeros(len(rows), bool)
        return rows.is_value & (rows.attribute == self.b_attr) & ~self.b.rows(rows)

    def _check(self, rows: Rows) -> np.ndarray:
        ma, fb = self.a.rows(rows), self._fails(rows)
        viol = fb & (self.a.others(rows, ma) > 0)
        if self.a.is_fact:
            others_fail = rows.take_product(self.fails_per_product, 0) - (fb if rows.audit else 0)
            viol |= ma & (others_fail > 0)
        return viol & rows.is_value

    def details(self, rows: Rows, i: int) -> dict[str, Any]:
        f = self.ctx.row_fields(rows, i)
        p, v = int(rows.product[i]), int(rows.value[i])
        if self._fails(rows.row(i))[0]:
            has = self.a.product_examples(p, v if rows.audit else None)
            return {"problem": f"{f['attribute']} = {f['value']!r} while the product has {', '.join(has)}"}
        bad = [self.ctx.value_label(x) for x in self.ctx.product_facts(p, self.b_attr) if self.fails_vocab[x]]
        return {"problem": f"{f['attribute']} = {f['value']!r} on a product that has {', '.join(bad)}"}
