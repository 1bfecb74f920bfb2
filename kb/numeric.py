"""Rule type ``numeric``: measures must be sane after unit normalisation, per attribute and category."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import unique, unique_inverse
from .context import Context, Rows, ValueArrays
from .registry import Compiled, Rule, RuleType, register_rule_type
from .spec import Spec
from .units import UNITS
from .values import _fmt_num, attributes_mask, dump_attributes, parse_attributes, rows_with_attributes


@dataclass(frozen=True)
class Range:
    category: str | None  # None: everywhere
    min: float | None
    max: float | None


@dataclass(frozen=True)
class NumericLearn:
    min_count: int = 20  # measured values a category needs for a learned range
    low: float = 0.05  # quantiles of the bulk ...
    high: float = 0.95
    factor: float = 10.0  # ... widened by this factor: [q_low / factor, q_high * factor]


@dataclass(frozen=True)
class NumericParams:
    attributes: tuple[str, ...] | str
    unit: str | None  # canonical unit, "none" for plain numbers, None: learned (the attribute's usual unit)
    ranges: tuple[Range, ...]
    learn: NumericLearn | None


@register_rule_type
class Numeric(RuleType):
    """Values that are measures (``"8.89 cm"``; with ``unit: none``, plain numbers) must be in the
    expected unit and inside a range: the declared range of the nearest category on the product's path
    (a range without ``category`` applies everywhere), else a range learned from the nearest category
    with ``min_count`` measured values: ``[q_low / factor, q_high * factor]``. Values that are not
    numbers are left to ``domain`` rules.

    Without a declared ``unit``, an attribute whose numeric facts are plain numbers (at least ``min_count``
    of them, and at most 5% measures with a unit: a count, a shelf life in months) is judged as plain
    numbers: its range is learned from them, and a measure with a unit ("3 kg" for a number of pockets) is
    reported as not a plain number."""

    name = "numeric"
    summary = ("A measure must be sane after unit normalisation: the expected unit, within a range "
               "declared or learned per attribute and category.")
    template = "{attribute} = {value!r} fails the sanity check: {problem}"
    fields = ("problem",)
    keys = ("attribute", "attributes", "unit", "ranges", "learn")

    @classmethod
    def parse(cls, spec: Spec) -> NumericParams:
        attrs = parse_attributes(spec)
        unit = spec.raw("unit", None)
        if unit is not None:
            u = str(unit).strip().lower()
            if u != "none" and u not in UNITS:
                raise spec.error("unit", f"{unit!r} is not a canonical unit; use one of {', '.join(UNITS)} or none")
            unit = u
        ranges = []
        items = spec.raw("ranges", [])
        if not isinstance(items, list):
            raise spec.error("ranges", "expected a list of {category, min, max}")
        for i, _ in enumerate(items):
            r = Spec(spec.doc, spec.path + ("ranges", i), items[i], "range")
            rg = Range(r.str("category", None), r.number("min", None), r.number("max", None))
            r.done()
            if rg.min is None and rg.max is None:
                raise r.error(None, "a range needs `min`, `max` or both")
            if rg.min is not None and rg.max is not None and rg.min > rg.max:
                raise r.error("min", f"min ({rg.min}) is above max ({rg.max})")
            ranges.append(rg)
        cats = [r.category for r in ranges]
        dup = {c for c in cats if cats.count(c) > 1}
        if dup:
            raise spec.error("ranges", f"two ranges for the same category {sorted(map(str, dup))[0]!r}")
        learn = None
        lk = spec.sub("learn", "learn", None)
        if lk is not None:
            d = NumericLearn()
            learn = NumericLearn(lk.number("min_count", d.min_count, minimum=2, integer=True),
                                 lk.number("low", d.low, minimum=0, maximum=1),
                                 lk.number("high", d.high, minimum=0, maximum=1),
                                 lk.number("factor", d.factor, minimum=1))
            lk.done()
            if learn.low > learn.high:
                raise lk.error("low", "low quantile is above the high one")
        if not ranges and learn is None:
            raise spec.error(None, "give `ranges` (declared), `learn` ({min_count, low, high, factor}), or both")
        if ranges and unit is None:
            raise spec.error("ranges", "declared ranges need a `unit` (a canonical unit, or none for plain numbers)")
        return NumericParams(attrs, unit, tuple(ranges), learn)

    @classmethod
    def dump(cls, p: NumericParams) -> dict[str, Any]:
        out = dump_attributes(p.attributes)
        if p.unit:
            out["unit"] = p.unit
        if p.ranges:
            out["ranges"] = [{k: v for k, v in (("category", r.category), ("min", r.min), ("max", r.max))
                              if v is not None} for r in p.ranges]
        if p.learn:
            out["learn"] = {"min_count": p.learn.min_count, "low": p.learn.low, "high": p.learn.high,
                            "factor": p.learn.factor}
        return out

    @classmethod
    def mentions(cls, p: NumericParams):
        return [] if p.attributes == "*" else [(a, None) for a in p.attributes]

    @classmethod
    def compile(cls, rule: Rule, ctx: Context) -> Compiled:
        return _Numeric(rule, ctx)


class _Numeric(Compiled):
    def __init__(self, rule: Rule, ctx: Context):
        super().__init__(rule, ctx)
        p: NumericParams = rule.params
        self.p = p
        self.attrs = attributes_mask(ctx, p.attributes, rule)
        self.plain = p.unit == "none"
        self.declared: dict[int | None, Range] = {}
        for r in p.ranges:
            if r.category is None:
                self.declared[None] = r
            else:
                c = ctx.resolve_category(r.category, rule)
                if c is not None:
                    self.declared[c] = r
        self._unit_cache: dict[int, int] = {}
        self._plain_cache: dict[int, bool] = {}
        self._measured: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._range_cache: dict[tuple[int, int], tuple[float, float, str] | None] = {}

    # -- units -----------------------------------------------------------------------------
    def expected_unit(self, a: int) -> int:
        """Unit code the attribute must use: declared, else its most common unit (-1: any / plain)."""
        if self.plain:
            return -1
        if self.p.unit is not None:
            return UNITS.index(self.p.unit)
        if self.plain_attribute(a):
            return -1
        if a not in self._unit_cache:
            cat, va = self.ctx.catalog, self.ctx.values
            fv = cat.fact_value[va.attr[cat.fact_value] == a]
            units = va.unit[fv]
            units = units[units >= 0]
            self._unit_cache[a] = int(np.bincount(units).argmax()) if len(units) else -1
        return self._unit_cache[a]

    def plain_attribute(self, a: int) -> bool:
        """Without a declared unit: the attribute's numeric facts are plain numbers (at least the learned
        ``min_count`` of them, at most 5% measures with a unit)."""
        if self.plain or self.p.unit is not None or a < 0:
            return False
        if a not in self._plain_cache:
            cat, va = self.ctx.catalog, self.ctx.values
            fv = cat.fact_value[va.attr[cat.fact_value] == a]
            n_unit = int((va.unit[fv] >= 0).sum())
            n_plain = int((~np.isnan(va.number[fv]) & np.isnan(va.qty[fv])).sum())
            need = self.p.learn.min_count if self.p.learn is not None else 1
            self._plain_cache[a] = n_plain >= need and n_unit <= 0.05 * (n_plain + n_unit)
        return self._plain_cache[a]

    @staticmethod
    def _as_plain(va: ValueArrays) -> tuple[np.ndarray, np.ndarray]:
        """(number, unit code) per value read as a plain number: -1 for a plain number, the unit of a
        measure (its quantity), -2 for neither."""
        num = va.number
        plain = ~np.isnan(num) & np.isnan(va.qty)
        q = np.where(plain, num, va.qty)
        u = np.where(plain, -1, np.where(np.isnan(va.qty), -2, va.unit)).astype(np.int8)
        return q, u

    def _measure(self, va: ValueArrays) -> tuple[np.ndarray, np.ndarray]:
        """(quantity, unit code) per value; plain numbers when ``unit: none``."""
        if self.plain:  # a measure with a unit is kept, to be reported as not a plain number
            return self._as_plain(va)
        return va.qty, va.unit

    # -- ranges ------------------------------------------------------------------------------
    def _measured_facts(self, a: int) -> tuple[np.ndarray, np.ndarray]:
        """(leaf category, quantity) of the asserted facts of attribute ``a`` in its expected unit."""
        if a not in self._measured:
            cat, va = self.ctx.catalog, self.ctx.values
            q, u = self._as_plain(va) if self.plain_attribute(a) else self._measure(va)
            fv = cat.fact_value
            ok = (va.attr[fv] == a) & ~np.isnan(q[fv]) & (u[fv] == self.expected_unit(a))
            leaf = cat.product_category[cat.fact_product[ok]]
            self._measured[a] = (leaf, q[cat.fact_value[ok]])
        return self._measured[a]

    def range_for(self, c: int, a: int) -> tuple[float, float, str] | None:
        """(low, high, where it comes from) for leaf ``c`` and attribute ``a``; None: no range."""
        key = (c, a)
        if key in self._range_cache:
            return self._range_cache[key]
        cat = self.ctx.catalog
        path = cat.category_path(c) if c >= 0 else []
        res = None
        for n in path + [None]:
            r = self.declared.get(n)
            if r is not None:
                where = f"declared for {cat.categories[n]}" if n is not None else "declared"
                res = (-np.inf if r.min is None else r.min, np.inf if r.max is None else r.max, where)
                break
        if res is None and self.p.learn is not None and a >= 0:
            L = self.p.learn
            leaf, q = self._measured_facts(a)
            anc, depth = cat.category_ancestors, cat.category_depth
            for n in path:
                sel = q[anc[leaf, depth[n]] == n] if len(leaf) else q
                if len(sel) < L.min_count:
                    continue
                lo, hi = np.quantile(sel, [L.low, L.high])
                lo = lo / L.factor if lo > 0 else lo * L.factor
                hi = hi * L.factor if hi > 0 else hi / L.factor
                res = (float(lo), float(hi), f"learned from {len(sel)} values under {cat.categories[n]}")
                break
        self._range_cache[key] = res
        return res

    def _rows_state(self, rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row: (targeted, quantity, unit code, expected unit code)."""
        sel = rows_with_attributes(rows, self.p.attributes, self.attrs) & (rows.attribute >= 0)
        q_vocab, u_vocab = self._measure(self.ctx.values)
        q = rows.per_value(q_vocab, lambda e: self._measure(e)[0], np.nan)
        u = rows.per_value(u_vocab.astype(np.int8), lambda e: self._measure(e)[1].astype(np.int8), -2)
        plain_attrs = [a for a in unique(rows.attribute[sel]).tolist() if self.plain_attribute(a)]
        if plain_attrs:  # rows of attributes judged as plain numbers read their value as one
            pq, pu = self._as_plain(self.ctx.values)
            rp = sel & np.isin(rows.attribute, plain_attrs)
            q = np.where(rp, rows.per_value(pq, lambda e: self._as_plain(e)[0], np.nan), q)
            u = np.where(rp, rows.per_value(pu, lambda e: self._as_plain(e)[1], -2), u).astype(np.int8)
        sel &= ~np.isnan(q)
        table = np.full(len(self.ctx.attributes), -1, np.int8)
        for a in unique(rows.attribute[sel]).tolist():
            table[a] = self.expected_unit(a)
        return sel, q, u, rows.take_attribute(table, -1)

    def _could_fire(self, rows: Rows) -> np.ndarray:
        """Only on rows whose value is a quantity of a targeted attribute."""
        return self._rows_state(rows)[0]

    def _check(self, rows: Rows) -> np.ndarray:
        sel, q, u, exp = self._rows_state(rows)
        wrong_unit = sel & (exp >= 0) & (u != exp)
        if self.plain:
            wrong_unit = sel & (u != -1)
        elif self.p.unit is None:  # attributes judged as plain numbers: a measure with a unit is wrong
            table = np.zeros(len(self.ctx.attributes), bool)
            for a in unique(rows.attribute[sel]).tolist():
                table[a] = self.plain_attribute(a)
            wrong_unit |= sel & rows.take_attribute(table, False) & (u != -1)
        check = sel & ~wrong_unit
        idx = np.flatnonzero(check)
        out = wrong_unit
        if len(idx):
            A1 = len(self.ctx.attributes) + 1
            keys = (rows.category[idx].astype(np.int64) + 1) * A1 + rows.attribute[idx]
            uniq, inv = unique_inverse(keys)
            lo = np.full(len(uniq), -np.inf)
            hi = np.full(len(uniq), np.inf)
            for j, k in enumerate(uniq.tolist()):
                r = self.range_for(k // A1 - 1, k % A1)
                if r is not None:
                    lo[j], hi[j] = r[0], r[1]
            qq = q[idx]
            out[idx] = (qq < lo[inv]) | (qq > hi[inv])
        return out

    def details(self, rows: Rows, i: int) -> dict[str, Any]:
        r = rows.row(i)
        sel, q, u, exp = self._rows_state(r)
        a, c = int(r.attribute[0]), int(r.category[0])
        if (self.plain or self.plain_attribute(a)) and u[0] != -1:
            return {"problem": "it should be a plain number without a unit"}
        if exp[0] >= 0 and u[0] != exp[0]:
            got = UNITS[u[0]] if u[0] >= 0 else "no unit"
            return {"problem": f"it is measured in {got}, but {self.ctx.attributes[a]} is measured in {UNITS[exp[0]]}"}
        rg = self.range_for(c, a)
        unit = f" {UNITS[exp[0]]}" if exp[0] >= 0 else ""
        lo = "" if rg is None or np.isinf(rg[0]) else _fmt_num(round(rg[0], 6))
        hi = "" if rg is None or np.isinf(rg[1]) else _fmt_num(round(rg[1], 6))
        span = f"between {lo} and {hi}" if lo and hi else (f"at least {lo}" if lo else f"at most {hi}")
        return {"problem": f"{_fmt_num(round(float(q[0]), 6))}{unit} is not {span}{unit} ({rg[2] if rg else ''})"}
