"""Rule type ``domain``: the value must be allowed for its attribute."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import unique_counts
from .context import Context, Rows, ValueArrays
from .registry import Compiled, Rule, RuleType, register_rule_type
from .spec import Spec
from .values import ValueTest, attributes_mask, dump_attributes, parse_attributes, rows_with_attributes


def value_shape(norm: str) -> str:
    """A value's form: digits as ``9``, latin letters as ``a``, other letters as ``字``, runs collapsed
    (``"gtx1060"`` -> ``"a9"``, ``"04cj01-3"`` -> ``"9a9-9"``)."""
    out: list[str] = []
    for ch in norm:
        c = "9" if ch.isdigit() else ("a" if ch.isascii() and ch.isalpha() else ("字" if ch.isalpha() else ch))
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


@dataclass(frozen=True)
class DomainParams:
    attributes: tuple[str, ...] | str  # names, or "*"
    test: ValueTest | None  # None: `known`
    known_min_count: int | None = None
    # `known` judges only attributes where at most this share of the facts have a value no other product has
    # (the Good-Turing estimate of the chance that a correct value is new); None: every attribute
    known_max_new_share: float | None = None


@register_rule_type
class Domain(RuleType):
    """``values: [..]`` (a list), ``pattern: regex``, ``range: {min, max, unit}`` or ``known: {min_count,
    max_new_share}`` (the value is asserted for the attribute on at least ``min_count`` products; in an audit,
    other products). With ``max_new_share``, ``known`` judges only attributes where new values are rare: at most
    that share of the attribute's facts have a value no other product has (Good-Turing: the chance that a
    correct value is new, so about the rule's false-alarm rate there). On the other attributes a new value
    fails only when the catalog knows it (on ``min_count`` facts) as the value of another attribute, or when
    its form (:func:`value_shape`: ``a9`` for ``gtx1060``) is new to the attribute where new forms are rare
    (the same share)."""

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
        share = None
        if known is True:
            n = 1
        elif isinstance(known, dict):
            k = spec.sub("known", "known")
            n = k.number("min_count", 1, minimum=1, integer=True)
            share = k.number("max_new_share", None, minimum=0, maximum=1)
            k.done()
        else:
            raise spec.error("known", "expected true or a mapping {min_count: N, max_new_share: X}")
        return DomainParams(attrs, None, n, share)

    @classmethod
    def dump(cls, p: DomainParams) -> dict[str, Any]:
        out = dump_attributes(p.attributes)
        if p.test is None:
            out["known"] = {"min_count": p.known_min_count}
            if p.known_max_new_share is not None:
                out["known"]["max_new_share"] = p.known_max_new_share
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
            self._known_setup()
        else:
            self.vocab = self._ok(ctx.values)

    def _known_setup(self) -> None:
        """Per attribute, the share of facts whose value no other product has (judged where it is at most
        ``max_new_share``); per key, how many facts of any attribute have it (``_elsewhere``)."""
        ctx, cat = self.ctx, self.ctx.catalog
        A = len(ctx.attributes)
        va = ctx.values
        fa = va.attr[cat.fact_value]
        single = va.count[cat.fact_value] <= 1
        n = np.bincount(fa, minlength=A).astype(np.float64)
        self.new_share = np.bincount(fa[single], minlength=A) / np.maximum(n, 1)
        mx = self.p.known_max_new_share
        self.judged = np.ones(A, bool) if mx is None else (self.new_share <= mx)
        if mx is None:
            return
        self.norm_code: dict[str, int] = {}
        code = np.fromiter((self.norm_code.setdefault(x, len(self.norm_code)) for x in va.norm.tolist()), np.int64,
                           len(va))
        self.key_facts = np.bincount(code, weights=va.count, minlength=len(self.norm_code)).astype(np.int64)
        self.value_key = code
        # facts per (product, key): in an audit, the product's own facts with the key are left out
        fk = cat.fact_product.astype(np.int64) * max(len(self.norm_code), 1) + code[cat.fact_value]
        self.pk_keys, self.pk_counts = unique_counts(fk)
        # forms: facts per (attribute, form), and the share of each attribute's facts whose form is on no other
        self.shape_code: dict[str, int] = {}
        self.value_shape = np.fromiter((self.shape_code.setdefault(value_shape(x), len(self.shape_code))
                                        for x in va.norm.tolist()), np.int64, len(va))
        S = max(len(self.shape_code), 1)
        self.S = S
        ak = va.attr.astype(np.int64) * S + self.value_shape
        ok = va.attr >= 0
        self.as_keys, self.as_counts = unique_counts(np.repeat(ak[ok], va.count[ok]))
        fshape = self.as_counts[np.searchsorted(self.as_keys, ak[cat.fact_value])] if len(fa) else np.zeros(0, np.int64)
        self.new_shape_share = np.bincount(fa[fshape <= 1], minlength=A) / np.maximum(n, 1)
        self.judged_shape = self.new_shape_share <= mx

    def _shape_facts(self, rows: Rows) -> np.ndarray:
        """(N,) facts of the row's attribute whose value has the row's form (in an audit, other facts)."""
        def ext_shape(e: ValueArrays) -> np.ndarray:
            return np.fromiter((self.shape_code.get(value_shape(x), -1) for x in e.norm.tolist()), np.int64, len(e))
        sh = rows.per_value(self.value_shape, ext_shape, -1)
        q = rows.attribute.astype(np.int64) * self.S + sh
        out = np.zeros(len(rows), np.int64)
        ok = (sh >= 0) & (rows.attribute >= 0)
        if len(self.as_keys) and ok.any():
            pos = np.minimum(np.searchsorted(self.as_keys, q[ok]), len(self.as_keys) - 1)
            out[ok] = np.where(self.as_keys[pos] == q[ok], self.as_counts[pos], 0)
        return out - (1 if rows.audit else 0)

    def _new_shape(self, rows: Rows) -> np.ndarray:
        """(N,) bool: the row's form is new to its attribute, where new forms are rare."""
        return rows.take_attribute(self.judged_shape, False) & (self._shape_facts(rows) < 1)

    def _other_facts(self, rows: Rows) -> np.ndarray:
        """(N,) facts of other attributes with the row's key (in an audit, of other products)."""
        ctx = self.ctx
        def ext_key(e: ValueArrays) -> np.ndarray:
            return np.fromiter((self.norm_code.get(x, -1) for x in e.norm.tolist()), np.int64, len(e))
        key = rows.per_value(self.value_key, ext_key, -1)
        own_count = rows.per_value(ctx.values.count, lambda e: e.count, 0)
        out = np.zeros(len(rows), np.int64)
        ok = key >= 0
        out[ok] = self.key_facts[key[ok]] - own_count[ok]  # facts with the key, minus the attribute's own
        if rows.audit and ok.any():
            q = rows.product[ok].astype(np.int64) * max(len(self.norm_code), 1) + key[ok]
            pos = np.minimum(np.searchsorted(self.pk_keys, q), max(len(self.pk_keys) - 1, 0))
            same = np.where(self.pk_keys[pos] == q, self.pk_counts[pos], 0) if len(self.pk_keys) else np.zeros(len(q))
            out[ok] -= (same - 1).astype(np.int64)  # the product's facts with the key, other than the row's own
        return out

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
            if self.p.known_max_new_share is not None:
                ok |= ~rows.take_attribute(self.judged, True) & ~self._elsewhere(rows) & ~self._new_shape(rows)
        else:
            ok = rows.per_value(self.vocab, self._ok, False)
        return sel & ~ok

    def _elsewhere(self, rows: Rows) -> np.ndarray:
        """(N,) bool: the catalog knows the row's key as another attribute's value, on ``min_count`` (other)
        facts."""
        return self._other_facts(rows) >= self.p.known_min_count

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
        if self.p.known_max_new_share is not None:
            a = int(rows.attribute[i])
            share = float(self.new_share[a]) if 0 <= a < len(self.new_share) else 0.0
            if 0 <= a < len(self.judged) and self.judged[a]:
                seen += (f" (and new values are rare for it: {share:.2%} of its facts have a value no other product "
                         f"has, at most {self.p.known_max_new_share:.2%} judged)")
            else:
                r = rows.row(i)
                k = int(self._other_facts(r)[0])
                va = self.ctx.values
                norm = va.norm[v] if v < self.ctx.n_values else r.ext.norm[0]
                names = sorted({self.ctx.attributes[x] for x in va.attr[(va.norm == norm) & (va.count > 0)].tolist()
                                if x != a})
                if k >= m:
                    seen += (f"; new values are common for it ({share:.1%}), but the catalog knows it as a value of "
                             f"{', '.join(names)} ({k} {other}fact{'s' if k != 1 else ''})")
                else:
                    seen += (f"; new values are common for it ({share:.1%}), but its form "
                             f"{value_shape(str(norm))!r} is new to it, and new forms are rare "
                             f"({self.new_shape_share[a]:.2%} of its facts)")
        return {"requirement": f"a value the catalog already asserts for it on at least {m} {other}"
                               f"product{'s' if m != 1 else ''}; {seen}"}
