"""Pieces shared by rule types: which attributes a rule targets, tests on values, fact matchers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .spec import Spec
from .units import UNITS, norm_key

if TYPE_CHECKING:
    from .context import Context, Rows, ValueArrays
    from .registry import Rule


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _list_words(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


# -- target attributes ------------------------------------------------------------------------
def parse_attributes(spec: Spec, *, allow_star: bool = True, required: bool = True) -> tuple[str, ...] | str | None:
    """``attribute: X`` or ``attributes: [X, Y]`` (or ``"*"``: every attribute)."""
    if spec.has("attribute") and spec.has("attributes"):
        raise spec.error("attributes", "give either `attribute` or `attributes`, not both")
    if spec.has("attribute"):
        return (spec.str("attribute"),)
    if spec.has("attributes"):
        v = spec.str_list("attributes", allow_star=allow_star)
        return v if v == "*" else tuple(v)
    if required:
        raise spec.error(None, "missing `attribute` (or `attributes`: a list" + (", or \"*\"" if allow_star else "") + ")")
    spec.raw("attribute", None)
    spec.raw("attributes", None)
    return None


def dump_attributes(attrs: tuple[str, ...] | str | None) -> dict[str, Any]:
    if attrs is None:
        return {}
    if attrs == "*":
        return {"attributes": "*"}
    return {"attribute": attrs[0]} if len(attrs) == 1 else {"attributes": list(attrs)}


def attributes_mask(ctx: "Context", attrs: tuple[str, ...] | str | None, rule: "Rule") -> np.ndarray:
    return ctx.attribute_codes(attrs if attrs is not None else (), rule)


def rows_with_attributes(rows: "Rows", attrs: tuple[str, ...] | str | None, mask: np.ndarray) -> np.ndarray:
    """(N,) bool: value rows whose attribute is targeted (``"*"``: every value row, unknown attributes too)."""
    if attrs == "*":
        return rows.is_value.copy()
    return rows.is_value & rows.take_attribute(mask, False)


# -- value tests ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ValueTest:
    """A test on one value: ``values`` (a list), ``pattern`` (a regular expression, matched in full
    against the case-folded value), ``range`` (a measure in ``unit`` between ``min`` and ``max``;
    unit ``none`` for a plain number) or ``any`` (every value passes)."""

    kind: str  # "values" | "pattern" | "range" | "any"
    values: tuple[str, ...] = ()
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    unit: str | None = None  # canonical unit, or None for a plain number

    @property
    def norms(self) -> frozenset[str]:
        return frozenset(norm_key(v) for v in self.values)

    KEYS = ("values", "value", "pattern", "range")

    @classmethod
    def parse(cls, spec: Spec, *, allow_any: bool, extra_kinds: tuple[str, ...] = ()) -> "ValueTest | None":
        given = [k for k in cls.KEYS + extra_kinds if spec.has(k)]
        for k in cls.KEYS:
            spec.used.add(k)
        if len(given) > 1:
            raise spec.error(given[1], f"give only one of {', '.join(cls.KEYS + extra_kinds)} (found {', '.join(given)})")
        if not given:
            if allow_any:
                return cls("any")
            raise spec.error(None, f"missing one of: {', '.join(cls.KEYS + extra_kinds)}{spec._found()}")
        k = given[0]
        if k in extra_kinds:
            return None
        if k in ("values", "value"):
            return cls("values", values=tuple(dict.fromkeys(spec.str_list(k))))
        if k == "pattern":
            return cls("pattern", pattern=spec.regex("pattern"))
        r = spec.sub("range", "range")
        lo = r.number("min", None)
        hi = r.number("max", None)
        unit = r.raw("unit")
        r.done()
        if lo is None and hi is None:
            raise r.error(None, "a range needs `min`, `max` or both")
        if lo is not None and hi is not None and lo > hi:
            raise r.error("min", f"min ({lo}) is above max ({hi})")
        if unit is not None and unit != "none":
            u = str(unit).strip().lower()
            if u not in UNITS:
                raise r.error("unit", f"{unit!r} is not a canonical unit; use one of {', '.join(UNITS)} "
                              "(values are normalised to these), or none for a plain number")
            unit = u
        else:
            unit = None
        return cls("range", min=lo, max=hi, unit=unit)

    def dump(self) -> dict[str, Any]:
        if self.kind == "values":
            return {"value": self.values[0]} if len(self.values) == 1 else {"values": list(self.values)}
        if self.kind == "pattern":
            return {"pattern": self.pattern}
        if self.kind == "range":
            r: dict[str, Any] = {}
            if self.min is not None:
                r["min"] = self.min
            if self.max is not None:
                r["max"] = self.max
            r["unit"] = self.unit or "none"
            return {"range": r}
        return {}

    def describe(self) -> str:
        """As a requirement: "one of A, B", "matching the pattern 'x'", "a measure in cm between 0 cm and 3 cm"."""
        if self.kind == "values":
            return f"one of {_list_words(list(self.values))}" if len(self.values) > 1 else f"{self.values[0]}"
        if self.kind == "pattern":
            return f"matching the pattern {self.pattern!r}"
        if self.kind == "range":
            return ("a measure in " + self.unit if self.unit else "a number") + " " + self._span()
        return "any value"

    def phrase(self) -> str:
        """As an object: "Men or Women", "matching 'x'", "between 0 and 30 cm", "any value"."""
        if self.kind == "values":
            vs = list(self.values)
            return vs[0] if len(vs) == 1 else f"{_list_words(vs[:-1])} or {vs[-1]}" if len(vs) <= 8 else \
                f"one of {_list_words(vs)}"
        if self.kind == "pattern":
            return f"matching {self.pattern!r}"
        if self.kind == "range":
            return self._span()
        return "any value"

    def _span(self) -> str:
        u = f" {self.unit}" if self.unit else ""
        if self.min is not None and self.max is not None:
            return f"between {_fmt_num(self.min)} and {_fmt_num(self.max)}{u}"
        if self.min is not None:
            return f"of at least {_fmt_num(self.min)}{u}"
        return f"of at most {_fmt_num(self.max)}{u}"

    def evaluate(self, va: "ValueArrays", candidates: np.ndarray | None = None) -> np.ndarray:
        """(V,) bool: which values pass (only ``candidates`` are examined when given; others False)."""
        n = len(va)
        if self.kind == "any":
            return np.ones(n, bool) if candidates is None else candidates.copy()
        idx = np.arange(n) if candidates is None else np.flatnonzero(candidates)
        out = np.zeros(n, bool)
        if not len(idx):
            return out
        if self.kind == "values":
            allowed = self.norms
            out[idx] = [x in allowed for x in va.norm[idx].tolist()]
        elif self.kind == "pattern":
            rx = re.compile(self.pattern, re.IGNORECASE)
            out[idx] = [rx.fullmatch(x) is not None for x in va.norm[idx].tolist()]
        else:
            if self.unit is None:
                q = va.number[idx]
                ok = ~np.isnan(q)
            else:
                q = va.qty[idx]
                ok = (va.unit[idx] == UNITS.index(self.unit)) & ~np.isnan(q)
            with np.errstate(invalid="ignore"):
                if self.min is not None:
                    ok &= q >= self.min
                if self.max is not None:
                    ok &= q <= self.max
            out[idx] = ok
        return out


# -- fact matchers (the two sides of exclusion and implication) ------------------------------------
@dataclass(frozen=True)
class Matcher:
    """Either "the product is in category X" or "the product has attribute A with a value passing a test"."""

    attribute: str | None = None
    test: ValueTest = ValueTest("any")
    category: str | None = None

    @classmethod
    def parse(cls, spec: Spec, *, allow_category: bool) -> "Matcher":
        if spec.has("category"):
            if not allow_category:
                raise spec.error("category", "this side must name an `attribute` (a category is not a fact to imply)")
            c = spec.str("category")
            for k in ("attribute",) + ValueTest.KEYS:
                if spec.has(k):
                    raise spec.error(k, "a category condition takes no attribute or value; write two rules")
            spec.done()
            return cls(category=c)
        a = spec.str("attribute")
        t = ValueTest.parse(spec, allow_any=True)
        spec.done()
        return cls(attribute=a, test=t)

    def dump(self) -> dict[str, Any]:
        if self.category is not None:
            return {"category": self.category}
        return {"attribute": self.attribute, **self.test.dump()}

    def subject(self) -> str:
        """As the ``if`` side: "a product in Footwear", "a product whose ageGroup matches 'kids-.*'"."""
        if self.category is not None:
            return f"a product in {self.category}"
        t = self.test
        if t.kind == "any":
            return f"a product with a {self.attribute}"
        if t.kind == "pattern":
            return f"a product whose {self.attribute} matches {t.pattern!r}"
        return f"a product whose {self.attribute} is {t.phrase()}"

    def object(self) -> str:
        """As the ``then`` side: "gender Men or Women", "any Sleeve Length"."""
        if self.test.kind == "any":
            return f"any {self.attribute}"
        return f"{self.attribute} {self.test.phrase()}"

    def mentions(self) -> list[tuple[str, str | None]]:
        if self.attribute is None:
            return []
        return [(self.attribute, None)] + [(self.attribute, n) for n in sorted(self.test.norms)]


class CompiledMatcher:
    """A matcher against a context: per value (does a value match?) and per product (how many
    asserted facts match? for a category condition: 1 if the product is in it)."""

    def __init__(self, m: Matcher, ctx: "Context", rule: "Rule"):
        self.m, self.ctx = m, ctx
        cat = ctx.catalog
        if m.category is not None:
            c = ctx.resolve_category(m.category, rule)
            in_cat = cat.subtree(c) if c is not None else np.zeros(len(cat.categories), bool)
            self.per_product = cat.products_in(in_cat).astype(np.int64)
            self.vocab = np.zeros(ctx.n_values, bool)
            self.attr = None
            return
        self.attr = ctx.attribute_code.get(m.attribute)
        self.vocab = self._match(ctx.values)
        facts = self.vocab[cat.fact_value]
        self.per_product = np.bincount(cat.fact_product[facts], minlength=len(cat)).astype(np.int64)

    @property
    def is_fact(self) -> bool:
        return self.m.category is None

    def _match(self, va: "ValueArrays") -> np.ndarray:
        if self.attr is None:
            return np.zeros(len(va), bool)
        return self.m.test.evaluate(va, va.attr == self.attr)

    def rows(self, rows: "Rows") -> np.ndarray:
        """(N,) bool: rows whose fact matches (always False for a category matcher)."""
        if not self.is_fact:
            return np.zeros(len(rows), bool)
        return rows.per_value(self.vocab, self._match, False) & rows.is_value

    def others(self, rows: "Rows", row_matches: np.ndarray) -> np.ndarray:
        """(N,) int: asserted facts of each row's product that match, the row's own fact left out."""
        n = rows.take_product(self.per_product, 0)
        if rows.audit and self.is_fact:
            n = n - row_matches
        return n

    def product_examples(self, p: int, exclude: int | None = None) -> list[str]:
        if not self.is_fact:
            return [f"category {self.ctx.catalog.categories[self.ctx.catalog.product_category[p]]}"]
        return [self.ctx.value_label(v) for v in self.ctx.product_facts(p) if self.vocab[v] and v != exclude]
