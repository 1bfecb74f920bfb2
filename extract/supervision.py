"""Distant supervision: find each asserted value in its product's title and description, and tag the tokens
B / I / O. Matching is token-wise on case-folded tokens (so case- and space-insensitive, word-aligned), and
unit-aware for measures: "0.5 kg" is found as "500g" or "500 gm" (``ingest.normalize.parse_quantity``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ingest.normalize import format_quantity, parse_quantity
from kb.units import norm_key

from .text import Token, has_cjk, jieba_tags, token_keys, tokenize

BRAND = "brand"  # the brand slot's attribute name (as in extract.api.Span)
MAX_VALUE_TOKENS = 12
# Measured on a Taobao validation split (brand exact 0.710 without both, 0.699 with both, 0.693 with the
# dictionary flag alone; differences within noise): off.
TRIGRAMS = False  # CJK character trigrams around each token
JIEBA_DICT = False  # whether jieba's word is in its dictionary, and the word's length


@dataclass
class Example:
    """A product's texts and (for training) its asserted values: attribute -> display spellings."""

    id: str
    title: str
    description: str = ""
    facts: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Doc:
    """A product's tokens: the title's, then the description's first ``max_desc_tokens``."""

    id: str
    fields: dict[str, str]  # field name -> raw text
    tokens: list[Token]
    keys: list[str]  # case-folded token texts
    cjk: bool
    _measures: dict[str, list[tuple[int, int]]] | None = None
    _index: dict[tuple[str, ...], list[int]] | None = None

    def measures(self) -> dict[str, list[tuple[int, int]]]:
        """Measure mentions: canonical norm ("500 g") -> token ranges [i, j) of number + unit."""
        if self._measures is None:
            out: dict[str, list[tuple[int, int]]] = {}
            toks = self.tokens
            for i, t in enumerate(toks):
                if not t.text[0].isdigit():
                    continue
                for n in (2, 3):  # number + one or two unit tokens ("fl oz")
                    j = i + n
                    if j > len(toks) or toks[j - 1].field != t.field:
                        break
                    q = parse_quantity(self.fields[t.field][t.start:toks[j - 1].end])
                    if q is not None:
                        out.setdefault(format_quantity(*q), []).append((i, j))
            self._measures = out
        return self._measures

    def find(self, value: str) -> list[tuple[int, int]]:
        """Token ranges [i, j) where ``value`` stands (measures by their quantity), non-overlapping."""
        q = parse_quantity(value)
        if q is not None:
            return list(self.measures().get(format_quantity(*q), []))
        vk = token_keys(value)
        if not vk or len(vk) > MAX_VALUE_TOKENS:
            return []
        if self._index is None:
            idx: dict[tuple[str, ...], list[int]] = {}
            for i, k in enumerate(self.keys):
                idx.setdefault((k,), []).append(i)
            self._index = idx
        out, last = [], -1
        n = len(vk)
        for i in self._index.get((vk[0],), []):
            if i < last or i + n > len(self.keys):
                continue
            if tuple(self.keys[i:i + n]) == vk and self.tokens[i].field == self.tokens[i + n - 1].field:
                out.append((i, i + n))
                last = i + n
        return out

    def span_text(self, i: int, j: int) -> tuple[str, str, int, int]:
        """(text, field, start, end) of the token range [i, j)."""
        a, b = self.tokens[i], self.tokens[j - 1]
        return self.fields[a.field][a.start:b.end], a.field, a.start, b.end


def make_doc(id: str, title: str | None, description: str | None = None, *, max_desc_tokens: int = 60) -> Doc:
    title, description = title or "", description or ""
    toks = tokenize(title, "title") + (tokenize(description, "description", max_desc_tokens) if max_desc_tokens else [])
    return Doc(id, {"title": title, "description": description}, toks, [norm_key(t.text) for t in toks],
               has_cjk(title) or has_cjk(description[:500]))


def bio(n: int, ranges: Iterable[tuple[int, int]]) -> list[str]:
    y = ["O"] * n
    for i, j in sorted(ranges):
        if any(y[k] != "O" for k in range(i, j)):
            continue  # overlaps an earlier range: keep the first
        y[i] = "B"
        for k in range(i + 1, j):
            y[k] = "I"
    return y


def locate(doc: Doc, values: Sequence[str]) -> list[tuple[int, int]]:
    """Every occurrence of any of ``values`` in ``doc`` (token ranges)."""
    out: list[tuple[int, int]] = []
    for v in values:
        out.extend(doc.find(v))
    return sorted(set(out))


# -- token features ---------------------------------------------------------------------------------------------
def _shape(s: str) -> str:
    c = s[0]
    if len(s) == 1 and has_cjk(c):
        return "C"
    if c.isdigit():
        return "d"
    if c.isalpha():
        if s.isupper():
            return "X"
        if s[0].isupper():
            return "Xx"
        return "x" if s.islower() else "m"
    return "p"


def _bucket(n: int) -> str:
    return str(n) if n < 4 else "4-7" if n < 8 else "8-15" if n < 16 else "16+"


def base_features(doc: Doc) -> list[list[str]]:
    """The attribute-independent features of each token (strings ``name=value``)."""
    toks, keys = doc.tokens, doc.keys
    n = len(toks)
    shapes = [_shape(t.text) for t in toks]
    jt: list[tuple[str, str, str, bool] | None] = [None] * n
    if doc.cjk:
        for fname in ("title", "description"):
            text = doc.fields[fname]
            if not has_cjk(text):
                continue
            idx = [i for i, t in enumerate(toks) if t.field == fname]
            if not idx:
                continue
            last = toks[idx[-1]].end
            tags = jieba_tags(text[:last])
            for i in idx:
                jt[i] = tags[toks[i].start]
    n_title = sum(1 for t in toks if t.field == "title")
    out: list[list[str]] = []
    for i, t in enumerate(toks):
        k = keys[i]
        f = ["b", f"w={k}", f"s={shapes[i]}", f"f={t.field[0]}", f"sp={int(t.space_before)}",
             f"len={_bucket(len(t.text))}"]
        if t.field == "title":
            f.append(f"p={_bucket(i)}")
            f.append(f"pe={_bucket(n_title - 1 - i)}")
        for d in (-2, -1, 1, 2):
            j = i + d
            if 0 <= j < n and toks[j].field == t.field:
                f.append(f"w{d:+d}={keys[j]}")
                f.append(f"s{d:+d}={shapes[j]}")
            else:
                f.append(f"w{d:+d}=#")
        if i > 0 and toks[i - 1].field == t.field:
            f.append(f"w-1|w={keys[i - 1]}|{k}")
            f.append(f"s-1|s={shapes[i - 1]}{shapes[i]}")
        if i + 1 < n and toks[i + 1].field == t.field:
            f.append(f"w|w+1={k}|{keys[i + 1]}")
            f.append(f"s|s+1={shapes[i]}{shapes[i + 1]}")
            f.append(f"sp+1={int(toks[i + 1].space_before)}")
        if 0 < i < n - 1:
            f.append(f"w-1|w+1={keys[i - 1]}|{keys[i + 1]}")
        if doc.cjk and TRIGRAMS:  # character trigrams around the token
            if i > 1:
                f.append(f"w-2..w={keys[i - 2]}{keys[i - 1]}{k}")
            if i + 2 < n:
                f.append(f"w..w+2={k}{keys[i + 1]}{keys[i + 2]}")
        if shapes[i] in ("x", "X", "Xx", "m") and len(k) > 3:
            f.append(f"pre3={k[:3]}")
            f.append(f"suf3={k[-3:]}")
        if jt[i] is not None:
            w, pos, bm, indict = jt[i]
            f.extend((f"jw={w}", f"jp={pos}", f"jb={bm}", f"jpb={pos}|{bm}"))
            if JIEBA_DICT:
                f.extend((f"jd={int(indict)}", f"jl={_bucket(len(w))}", f"jdb={int(indict)}|{bm}"))
            if i > 0 and jt[i - 1] is not None:
                f.append(f"jp-1={jt[i - 1][1]}")
            if i + 1 < n and jt[i + 1] is not None:
                f.append(f"jp+1={jt[i + 1][1]}")
        out.append(f)
    for i, j in (r for rs in doc.measures().values() for r in rs):
        out[i].append("qty=B")
        for k in range(i + 1, j):
            out[k].append("qty=I")
    return out


class Gazetteer:
    """Known values of one attribute as token tuples; marks their longest matches in a doc (a feature only)."""

    def __init__(self, values: Iterable[str] = ()):
        self.keys: set[tuple[str, ...]] = set()
        self.lengths: dict[str, set[int]] = {}
        for v in values:
            self.add(v)

    def add(self, value: str) -> None:
        k = token_keys(value)
        if not k or len(k) > MAX_VALUE_TOKENS or k in self.keys:
            return
        self.keys.add(k)
        self.lengths.setdefault(k[0], set()).add(len(k))

    def features(self, doc: Doc) -> list[list[str]]:
        n = len(doc.keys)
        out: list[list[str]] = [[] for _ in range(n)]
        i = 0
        while i < n:
            best = 0
            for L in sorted(self.lengths.get(doc.keys[i], ()), reverse=True):
                if i + L <= n and tuple(doc.keys[i:i + L]) in self.keys:
                    best = L
                    break
            if best:
                out[i].append("gz=B")
                for k in range(i + 1, i + best):
                    out[k].append("gz=I")
                if i + best < n:
                    out[i + best].append("gz=after")
                if i > 0:
                    out[i - 1].append("gz=before")
                i += best
            else:
                i += 1
        return out
