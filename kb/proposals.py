"""Rule type ``new_value``: a value (or brand) the catalog has never seen, proposed by extraction, must
look like a value.

Completion can propose values that no product asserts yet (open-world extraction from titles and
descriptions: ``extract.api.Span`` with ``value = None``). The closed-world rules have little to say
about them (``known-value`` only sends them to review). A ``new_value`` rule checks one thing about
such a row, chosen by ``check``:

``length``
    at least ``min_length`` characters, and at most the attribute's longest known value times
    ``length_factor`` (never more than ``max_length``; ``max_length`` for an attribute without values).
``marketing``
    not made only of marketing words: words the catalog's **titles** use everywhere and that name no
    value (新款, 包邮, "new arrival", "free shipping"). Learned from the catalog (``learn``), plus ``words``.
    A token -- a word of letters, or a character bigram inside a run of Han/kana/Hangul characters --
    is a marketing word when it occurs in the titles of at least ``min_products`` products, spread over
    at least ``min_categories`` leaf categories with no leaf category holding more than ``max_share`` of
    those products (a catalog without a category tree: over the values of its most asserted attribute,
    :func:`spread_groups`), and it is no token of any value, brand, category name or attribute name of the
    catalog (a word that names a value, such as "men" or "cotton", is never one). A proposal is marketing
    when every word of it is a marketing word (digits aside) and every Han/kana/Hangul character of it
    lies inside a marketing bigram. Needs the catalog's titles (``Catalog.product_titles``); without
    them only ``words`` count.
``digits``
    not only digits (and separators) for an attribute whose known values are not numbers (fewer than
    ``numeric_share``, default 1 in 10, of them are numbers, measures or digit strings); a brand is never
    only digits.
``conflict``
    not in conflict with the product's asserted brand or category: a new value equal to the product's
    own brand, to another brand of the catalog, or to the name of a category off the product's own path;
    a new brand equal to a category name or to a known value of an attribute.

Only rows whose value is new to the catalog are checked (a value row whose value no product asserts
and no rule names; a brand row whose brand the catalog does not have), so an audit of the asserted
facts never trips it, nor does a closed-world prediction.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .context import Context, Rows
from .registry import Compiled, Rule, RuleType, register_rule_type
from .spec import Spec
from .tree import PATH_SEP
from .units import norm_key, parse_canonical, parse_number
from .values import attributes_mask, dump_attributes, parse_attributes

CHECKS = ("length", "marketing", "digits", "conflict")

# a run of letters (any script) or of digits; Han/kana/Hangul runs are cut into character bigrams
_RUN = re.compile(r"[^\W\d_]+|\d+")
_DIGITS = re.compile(r"^[\d\s.,:/+×x%#-]*\d[\d\s.,:/+×x%#-]*$")


def _cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF
            or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F)


def _pieces(run: str) -> list[tuple[str, bool]]:
    """A letter run split into (piece, is_cjk) parts: Han/kana/Hangul characters apart from the rest."""
    out: list[tuple[str, bool]] = []
    for ch in run:
        c = _cjk(ch)
        if out and out[-1][1] == c:
            out[-1] = (out[-1][0] + ch, c)
        else:
            out.append((ch, c))
    return out


def tokens(text: str) -> set[str]:
    """Word tokens of ``text`` (case-folded): words of letters, digit runs, and character bigrams (a
    lone character as itself) inside Han/kana/Hangul runs."""
    out: set[str] = set()
    for m in _RUN.finditer(unicodedata.normalize("NFKC", text or "").casefold()):
        for piece, cjk in _pieces(m.group()):
            if not cjk:
                out.add(piece)
            elif len(piece) == 1:
                out.add(piece)
            else:
                out.update(piece[i:i + 2] for i in range(len(piece) - 1))
    return out


@dataclass(frozen=True)
class MarketingWord:
    word: str
    products: int  # products whose title has it
    categories: int  # leaf categories of those products
    top_share: float  # the largest share of them in one leaf category

    def why(self) -> str:
        return (f"{self.word!r} is in the titles of {self.products} products across {self.categories} categories "
                f"(at most {self.top_share:.0%} in one) and names no value, brand or category")


def learn_marketing_words(titles: Sequence[str], product_category: Sequence[int] | np.ndarray,
                          vocabulary: Iterable[str], *, min_products: int = 20, min_categories: int = 5,
                          max_share: float = 0.5) -> dict[str, MarketingWord]:
    """Marketing words of a catalog (see the module docstring): tokens of the ``titles`` spread over many
    leaf categories (``product_category``: the leaf of each title's product, -1 unknown) that are no token
    of any string in ``vocabulary`` (values, brands, category and attribute names)."""
    never: set[str] = set()
    for v in vocabulary:
        never |= tokens(v)
    df: Counter = Counter()
    per_cat: dict[str, Counter] = defaultdict(Counter)
    for t, c in zip(titles, np.asarray(product_category).tolist()):
        for w in tokens(t):
            if w in never or w.isdigit():
                continue
            df[w] += 1
            per_cat[w][int(c)] += 1
    out: dict[str, MarketingWord] = {}
    for w, n in df.items():
        if n < min_products:
            continue
        cats = per_cat[w]
        known = {c: k for c, k in cats.items() if c >= 0}
        if len(known) < min_categories:
            continue
        top = max(known.values()) / n
        if top > max_share:
            continue
        out[w] = MarketingWord(w, n, len(known), top)
    return out


def marketing_cover(text: str, words: dict[str, Any] | set[str]) -> list[str] | None:
    """The marketing words that make up all of ``text`` (digit runs aside), or None when some part of it is
    not a marketing word (or nothing but digits is there)."""
    used: list[str] = []
    seen_word = False
    for m in _RUN.finditer(unicodedata.normalize("NFKC", text or "").casefold()):
        for piece, cjk in _pieces(m.group()):
            if piece.isdigit():
                continue
            seen_word = True
            if not cjk or len(piece) == 1:
                if piece not in words:
                    return None
                used.append(piece)
                continue
            covered = [False] * len(piece)
            for i in range(len(piece) - 1):
                bg = piece[i:i + 2]
                if bg in words:
                    covered[i] = covered[i + 1] = True
                    used.append(bg)
            if not all(covered):
                return None
    return list(dict.fromkeys(used)) if seen_word else None


def spread_groups(cat: Any) -> np.ndarray:
    """(P,) int: what a marketing word must spread over. The leaf category, when at least half of the
    products have one; otherwise (a catalog without a category tree, such as Taobao's titles) the product's
    value of the attribute most products assert (a product type), -1 where it has none."""
    P = len(cat)
    if P == 0 or (cat.product_category >= 0).sum() * 2 >= P:
        return cat.product_category
    out = np.full(P, -1, np.int64)
    if not cat.n_facts:
        return out
    fa = cat.fact_attribute
    per_attr = np.bincount(fa, minlength=len(cat.attributes))
    a = int(np.argmax(per_attr))
    sel = fa == a
    out[cat.fact_product[sel]] = cat.fact_value[sel]  # the last value of a product with several: any one will do
    return out


@dataclass(frozen=True)
class NewValueParams:
    check: str  # length | marketing | digits | conflict
    attributes: tuple[str, ...] | str  # "*" (default): every attribute; brands are checked unless `brands: false`
    brands: bool = True
    min_length: int = 2
    max_length: int = 60
    length_factor: float = 2.0
    words: tuple[str, ...] = ()
    learn: dict[str, Any] | None = field(default=None)  # marketing: {min_products, min_categories, max_share}
    numeric_share: float = 0.1


_LEARN_DEFAULTS = {"min_products": 20, "min_categories": 5, "max_share": 0.5}


@register_rule_type
class NewValue(RuleType):
    """Checks only values and brands new to the catalog (see the module docstring)."""

    name = "new_value"
    summary = ("A value or brand new to the catalog (proposed by extraction) must look like one: length bounds, "
               "no learned marketing words, no bare digits for a non-numeric attribute, no conflict with the "
               "product's brand or category.")
    template = "new {attribute} {value!r} {why}"
    fields = ("why",)
    keys = ("check", "attribute", "attributes", "brands", "min_length", "max_length", "length_factor", "words",
            "learn", "numeric_share")
    default_severity = "reject"
    scoped = True

    @classmethod
    def parse(cls, spec: Spec) -> NewValueParams:
        check = spec.choice("check", CHECKS)
        attrs = parse_attributes(spec, required=False) or "*"
        brands = spec.bool("brands", True)
        p: dict[str, Any] = {}
        if check == "length":
            p["min_length"] = spec.number("min_length", 2, minimum=1, integer=True)
            p["max_length"] = spec.number("max_length", 60, minimum=1, integer=True)
            p["length_factor"] = float(spec.number("length_factor", 2.0, minimum=1.0))
            if p["max_length"] < p["min_length"]:
                raise spec.error("max_length", f"must be at least min_length ({p['min_length']})")
        elif check == "marketing":
            p["words"] = tuple(norm_key(w) for w in (spec.str_list("words", None) or ()))
            learn = spec.raw("learn", True)
            if learn is False:
                p["learn"] = None
            elif learn is True:
                p["learn"] = dict(_LEARN_DEFAULTS)
            elif isinstance(learn, dict):
                sub = spec.sub("learn", "learn")
                p["learn"] = {"min_products": sub.number("min_products", 20, minimum=1, integer=True),
                              "min_categories": sub.number("min_categories", 5, minimum=1, integer=True),
                              "max_share": float(sub.number("max_share", 0.5, minimum=0.0))}
                sub.done()
            else:
                raise spec.error("learn", "expected true, false or a mapping {min_products, min_categories, max_share}")
        elif check == "digits":
            p["numeric_share"] = float(spec.number("numeric_share", 0.1, minimum=0.0))
        return NewValueParams(check, attrs, brands, **p)

    @classmethod
    def dump(cls, p: NewValueParams) -> dict[str, Any]:
        out: dict[str, Any] = {"check": p.check}
        if p.attributes != "*":
            out.update(dump_attributes(p.attributes))
        if not p.brands:
            out["brands"] = False
        if p.check == "length":
            out.update(min_length=p.min_length, max_length=p.max_length, length_factor=p.length_factor)
        elif p.check == "marketing":
            if p.words:
                out["words"] = list(p.words)
            out["learn"] = dict(p.learn) if p.learn is not None else False
        elif p.check == "digits":
            out["numeric_share"] = p.numeric_share
        return out

    @classmethod
    def compile(cls, rule: Rule, ctx: Context) -> Compiled:
        return _NewValue(rule, ctx)


class _NewValue(Compiled):
    def __init__(self, rule: Rule, ctx: Context):
        super().__init__(rule, ctx)
        self.p: NewValueParams = rule.params
        self.attrs = None if self.p.attributes == "*" else attributes_mask(ctx, self.p.attributes, rule)

    # -- which rows are new, and their strings ---------------------------------------------------
    def _new(self, rows: Rows) -> np.ndarray:
        if rows.audit:
            return np.zeros(len(rows), bool)
        known_p = rows.product >= 0
        val = rows.is_value & (rows.value >= self.ctx.n_values)
        if self.attrs is not None:
            val &= rows.take_attribute(self.attrs, False)
        brand = rows.is_brand & (rows.brand < 0) & self.p.brands
        return known_p & (val | brand)

    def _text(self, rows: Rows, i: int) -> tuple[str, str]:
        """(norm, display) of row ``i``'s new value or brand."""
        if rows.is_brand[i]:
            pred = rows.predictions
            norm = str(pred.value[i]) if pred is not None else ""
            disp = str(pred.display[i]) if pred is not None and pred.display is not None else norm
            return norm, disp
        j = int(rows.value[i]) - self.ctx.n_values
        return str(rows.ext.norm[j]), str(rows.ext.display[j])

    def _why(self, rows: Rows, i: int) -> str | None:
        norm, disp = self._text(rows, i)
        return getattr(self, f"_{self.p.check}")(rows, i, norm, disp)

    def _check(self, rows: Rows) -> np.ndarray:
        out = np.zeros(len(rows), bool)
        idx = np.flatnonzero(self._new(rows))
        cache: dict[tuple[int, int, int, int, str], bool] = {}
        for i in idx.tolist():
            key = (int(rows.attribute[i]), int(rows.product[i]) if self.p.check == "conflict" else -1,
                   int(rows.value[i]), int(rows.brand[i]), self._text(rows, i)[0])
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self._why(rows, i) is not None
            out[i] = hit
        return out

    def _could_fire(self, rows: Rows) -> np.ndarray:
        return self._new(rows)

    def details(self, rows: Rows, i: int) -> dict[str, Any]:
        return {"why": self._why(rows, i) or "passes"}

    # -- the checks --------------------------------------------------------------------------------
    @cached_property
    def _known_len(self) -> tuple[np.ndarray, int]:
        """(longest known value per attribute code, longest brand name)."""
        va = self.ctx.values
        longest = np.zeros(len(self.ctx.attributes), np.int64)
        n = len(self.ctx.catalog.value_norm)
        if n:
            lens = np.fromiter((len(s) for s in va.norm[:n].tolist()), np.int64, n)
            np.maximum.at(longest, va.attr[:n], lens)
        brands = max((len(b) for b in self.ctx.catalog.brand_names), default=0)
        return longest, brands

    def _length(self, rows: Rows, i: int, norm: str, disp: str) -> str | None:
        n = len(norm)
        if n < self.p.min_length:
            return f"is {n} character{'s' if n != 1 else ''} long: shorter than {self.p.min_length}"
        longest, brand_max = self._known_len
        a = int(rows.attribute[i])
        known = brand_max if rows.is_brand[i] else (int(longest[a]) if 0 <= a < len(longest) else 0)
        limit = min(self.p.max_length, math.ceil(known * self.p.length_factor)) if known else self.p.max_length
        if n > limit:
            basis = (f"{self.p.length_factor:g} x the longest known {'brand' if rows.is_brand[i] else 'value'} "
                     f"({known} characters)" if known and limit < self.p.max_length else f"max_length {self.p.max_length}")
            return f"is {n} characters long: longer than {limit} ({basis})"
        return None

    @cached_property
    def marketing_words(self) -> dict[str, Any]:
        """word -> MarketingWord (learned) or None (declared in ``words``)."""
        out: dict[str, Any] = {}
        cat = self.ctx.catalog
        if self.p.learn is not None and cat.product_titles is not None:
            names = set()
            for c in cat.categories:
                names.update(c.split(PATH_SEP))
            vocab = list(cat.value_norm.tolist()) + list(cat.brands) + list(cat.brand_names) + sorted(names) \
                + list(self.ctx.attributes)
            out.update(learn_marketing_words(cat.product_titles.tolist(), spread_groups(cat), vocab, **self.p.learn))
        for w in self.p.words:  # a declared phrase counts word by word ("hot sale": hot, sale)
            out.update(dict.fromkeys(tokens(w)))
        return out

    def _marketing(self, rows: Rows, i: int, norm: str, disp: str) -> str | None:
        words = self.marketing_words
        if not words:
            return None
        used = marketing_cover(norm, words)
        if used is None:
            return None
        why = [words[w].why() if words.get(w) is not None else f"{w!r} is a declared marketing word"
               for w in used[:3]]
        return "is marketing wording, not a value: " + "; ".join(why)

    @cached_property
    def _numeric(self) -> np.ndarray:
        """(A,) bool: attributes whose known values are mostly numbers or measures."""
        va = self.ctx.values
        n = len(self.ctx.catalog.value_norm)
        A = len(self.ctx.attributes)
        num = np.zeros(A, np.int64)
        tot = np.zeros(A, np.int64)
        for a, s in zip(va.attr[:n].tolist(), va.norm[:n].tolist()):
            tot[a] += 1
            if parse_number(s) is not None or parse_canonical(s) is not None or _DIGITS.match(s):
                num[a] += 1
        return (tot > 0) & (num >= self.p.numeric_share * np.maximum(tot, 1))

    def _digits(self, rows: Rows, i: int, norm: str, disp: str) -> str | None:
        if not _DIGITS.match(norm):
            return None
        if rows.is_brand[i]:
            return "is only digits: a brand is a name"
        a = int(rows.attribute[i])
        if 0 <= a < len(self._numeric) and self._numeric[a]:
            return None
        if not (0 <= a < len(self.ctx.catalog.attributes)):
            return None  # an attribute without known values: numeric or not, nothing says
        return "is only digits, and the attribute's known values are not numbers"

    @cached_property
    def _category_names(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        for c, path in enumerate(self.ctx.catalog.categories):
            out[norm_key(path.rsplit(PATH_SEP, 1)[-1])].append(c)
        return out

    @cached_property
    def _value_attributes(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        va, n = self.ctx.values, len(self.ctx.catalog.value_norm)
        for a, s in zip(va.attr[:n].tolist(), va.norm[:n].tolist()):
            out[s].append(self.ctx.attributes[a])
        return out

    def _conflict(self, rows: Rows, i: int, norm: str, disp: str) -> str | None:
        cat = self.ctx.catalog
        cats = self._category_names.get(norm, [])
        if rows.is_brand[i]:
            if cats:
                return f"is the name of the category {cat.categories[cats[0]]!r}, not a brand"
            attrs = self._value_attributes.get(norm)
            if attrs:
                return f"is a known value of {', '.join(sorted(set(attrs))[:3])}, not a brand"
            return None
        b = int(rows.brand[i])
        if b >= 0 and norm_key(cat.brands[b]) == norm:
            return f"is the product's own brand ({cat.brand_names[b]!r}), not a value of {self.ctx.row_fields(rows, i)['attribute']}"
        ob = cat.brand_index.get(norm)
        if ob is not None:
            own = f"the product's brand is {cat.brand_names[b]!r}" if b >= 0 else "the product has no brand"
            return f"names the brand {cat.brand_names[ob]!r}, and {own}"
        c = int(rows.category[i])
        if cats and c >= 0:
            path = set(cat.category_path(c))
            off = [k for k in cats if k not in path]
            if off and len(off) == len(cats):
                return (f"names the category {cat.categories[off[0]]!r}, but the product is in "
                        f"{cat.categories[c]!r}")
        return None


__all__ = ["CHECKS", "MarketingWord", "NewValue", "learn_marketing_words", "marketing_cover", "tokens"]
