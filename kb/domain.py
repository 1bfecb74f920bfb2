"""Rule type ``domain``: the value must be allowed for its attribute."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .context import Context, Rows, ValueArrays
from .registry import Compiled, Rule, RuleType, register_rule_type
from .spec import Spec
from .values import ValueTest, attributes_mask, dump_attributes, parse_attributes, rows_with_attributes


@dataclass(frozen=True)
class DomainParams:
    attributes: tuple[str, ...] | str  # names, or "*"
    test: ValueTest | None  # None: `known`
    known_min_count: int | None = None


@register_rule_type
class Domain(RuleType):
    """``values: [..]`` (a list), ``pattern: regex``, ``range: {min, max, unit}`` or ``known: {min_count}``
    (the value is asserted for the attribute on at least ``min_count`` products; in an audit, other
    products)."""

    name = "domain"
    summary = ("The value must be allowed for its attribute: one of a list, matching a pattern, a measure "
               "in a range (after unit normalisation), or a value the catalog already knows.")
    template = "{attribute} = {value!r} is not allowed: it must be {requirement}"
    fields = ("requirement",)
    keys = ("attribute", "attributes", "values", "value", "pattern", "range", "known")

    @classmethod
    def parse(cls, spec: Spec) -> DomainParams:
        attrs = parse_attributes(spec)
        test = ValueTest.parse(spec, allow_any=False, extra_kinds=("known",))
        if test is not None:
            spec.raw("known", None)
            return DomainParams(attrs, test)
        known = spec.raw("known")
        if known is True:
            n = 1
        elif isinstance(known, dict):
            k = spec.sub("known", "known")
            n = k.number("min_count", 1, minimum=1, integer=True)
            k.done()
        else:
            raise spec.error("known", "expected true or a mapping {min_count: N}")
        return DomainParams(attrs, None, n)

    @classmethod
    def dump(cls, p: DomainParams) -> dict[str, Any]:
        out = dump_attributes(p.attributes)
        if p.test is None:
            out["known"] = {"min_count": p.known_min_count}
        else:
            out.update(p.test.dump())
        return out

    @classmethod
    def mentions(cls, p: DomainParams):
        if p.attributes == "*":
            return []
        out = [(a, None) for a in p.attributes]
        if p.test is not None:
            out += [(a, n) for a in p.attributes for n in sorted(p.test.norms)]
        return out

    @classmethod
    def message_fields(cls, p: DomainParams) -> dict[str, Any]:
        if p.test is None:
            n = p.known_min_count
            return {"requirement": f"a value the catalog already asserts for it on at least {n} "
                                   f"product{'s' if n != 1 else ''}"}
        return {"requirement": p.test.describe()}

    @classmethod
    def compile(cls, rule: Rule, ctx: Context) -> Compiled:
        return _Domain(rule, ctx)


class _Domain(Compiled):
    def __init__(self, rule: Rule, ctx: Context):
        super().__init__(rule, ctx)
        p: DomainParams = rule.params
        self.p = p
        self.attrs = attributes_mask(ctx, p.attributes, rule)
        if p.test is None:
            self.vocab = ctx.values.count
        else:
            self.vocab = self._ok(ctx.values)

    def _candidates(self, va: ValueArrays) -> np.ndarray:
        if self.p.attributes == "*":
            return np.ones(len(va), bool)
        ok = va.attr >= 0
        out = np.zeros(len(va), bool)
        out[ok] = self.attrs[va.attr[ok]]
        return out

    def _ok(self, va: ValueArrays) -> np.ndarray:
        return self.p.test.evaluate(va, self._candidates(va))

    def _check(self, rows: Rows) -> np.ndarray:
        sel = rows_with_attributes(rows, self.p.attributes, self.attrs)
        if self.p.test is None:
            count = rows.per_value(self.vocab, lambda e: e.count, 0)
            if rows.audit:
                count = count - 1
            ok = count >= self.p.known_min_count
        else:
            ok = rows.per_value(self.vocab, self._ok, False)
        return sel & ~ok

    def _could_fire(self, rows: Rows) -> np.ndarray:
        """Only on attributes with at least one value of the catalog that fails the rule (a count-based rule
        with min_count 1 fails no value the catalog has: a model choosing among known values cannot break it)."""
        va = self.ctx.values
        bad = (va.count < self.p.known_min_count) if self.p.test is None else ~np.asarray(self.vocab, bool)
        has_bad = np.zeros(len(self.ctx.attributes), bool)
        ok = (va.attr >= 0) & bad
        has_bad[va.attr[ok]] = True
        return rows_with_attributes(rows, self.p.attributes, self.attrs) & rows.take_attribute(has_bad, False)

    def details(self, rows: Rows, i: int) -> dict[str, Any]:
        if self.p.test is not None:
            return {}
        v = int(rows.value[i])
        n = int(self.vocab[v]) if v < self.ctx.n_values else 0
        if rows.audit:
            n -= 1
        m = self.p.known_min_count
        other = "other " if rows.audit else ""
        seen = f"it is asserted on {n} {other}product{'s' if n != 1 else ''}" if n else f"no {other}product has it"
        return {"requirement": f"a value the catalog already asserts for it on at least {m} {other}"
                               f"product{'s' if m != 1 else ''}; {seen}"}
