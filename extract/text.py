"""Tokens of product texts, in any script: one token per CJK character, one per word (letters), one per
number, one per other symbol; HTML tags are skipped. Offsets always point into the field as it stands.

Text with CJK characters also gets jieba's word segmentation and part-of-speech tags as token features
(jieba ships its dictionary: nothing is downloaded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from kb.units import norm_key

CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(
    rf"<[^<>]{{0,2000}}>"  # an HTML tag: skipped
    rf"|[{CJK_RANGES}]"  # a CJK character
    rf"|\d+(?:[.,]\d+)*"  # a number ("15.6", "1,000")
    rf"|[^\W\d_{CJK_RANGES}]+"  # a word of letters
    rf"|[^\s\w]|_"  # any other symbol
)
_HAS_CJK = re.compile(rf"[{CJK_RANGES}]")


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # offsets in the field's text
    end: int
    field: str  # "title" or "description"
    space_before: bool  # whitespace (or a tag, or the field start) right before it


def has_cjk(text: str) -> bool:
    return bool(_HAS_CJK.search(text))


def is_cjk_char(ch: str) -> bool:
    return len(ch) == 1 and bool(_HAS_CJK.match(ch))


def tokenize(text: str, field: str = "title", max_tokens: int | None = None) -> list[Token]:
    """The tokens of ``text`` (a field's raw text), at most ``max_tokens``."""
    out: list[Token] = []
    prev_end = 0
    for m in _TOKEN.finditer(text or ""):
        s = m.group()
        if s.startswith("<") and len(s) > 1:  # a tag
            prev_end = -1
            continue
        space = prev_end != m.start() or m.start() == 0
        out.append(Token(s, m.start(), m.end(), field, space))
        prev_end = m.end()
        if max_tokens is not None and len(out) >= max_tokens:
            break
    return out


def token_keys(text: str) -> tuple[str, ...]:
    """The case-folded token strings of a value: the unit of case- and space-insensitive matching."""
    return tuple(norm_key(t.text) for t in tokenize(text))


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba
    import jieba.posseg as pseg

    jieba.setLogLevel(logging.WARNING)
    logging.getLogger("jieba").setLevel(logging.WARNING)
    return pseg


@lru_cache(maxsize=1)
def _jieba_freq() -> dict[str, int]:
    import jieba

    jieba.dt.check_initialized()
    return jieba.dt.FREQ


def jieba_tags(text: str) -> list[tuple[str, str, str, bool]]:
    """Per character of ``text``: (jieba word, its part of speech, position in the word B/M/E/S, whether the
    word is in jieba's dictionary: a word found only by its HMM is often a name, e.g. a brand)."""
    pseg = _jieba()
    freq = _jieba_freq()
    out: list[tuple[str, str, str, bool]] = []
    for pair in pseg.lcut(text):
        w, flag = pair.word, pair.flag
        n = len(w)
        known = bool(freq.get(w))
        for i in range(n):
            out.append((w, flag, "S" if n == 1 else "B" if i == 0 else "E" if i == n - 1 else "M", known))
    if len(out) != len(text):  # jieba keeps every character; guard anyway
        out = (out + [("", "x", "S", True)] * len(text))[: len(text)]
    return out
