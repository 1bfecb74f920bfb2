"""Resolution of an extracted string to a known value of its attribute: exact, or nearly so.

"Nearly" is: the same after case folding and dropping spaces and punctuation, or within a small edit
distance of the compacted spelling, bounded relative to its length (no edit below 4 characters, one
below 8, two from 8 on) — a measure only by its normalised quantity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ingest.normalize import format_quantity, parse_quantity
from kb.units import clean, norm_key

_NOT_ALNUM = re.compile(r"[\W_]+")


def compact(s: str) -> str:
    return _NOT_ALNUM.sub("", norm_key(s))


def allowed_edits(n: int) -> int:
    return 0 if n < 4 else 1 if n < 8 else 2


def levenshtein(a: str, b: str, limit: int) -> int:
    """Edit distance of ``a`` and ``b``, or ``limit + 1`` as soon as it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        lo = i
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            lo = min(lo, cur[j])
        if lo > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def span_norm(text: str) -> tuple[str, float | None, str | None]:
    """The normalised key of an extracted string (``"<quantity> <unit>"`` for a measure), quantity, unit."""
    q = parse_quantity(clean(text))
    if q is not None:
        return format_quantity(*q), q[0], q[1]
    return norm_key(text), None, None


class Resolver:
    """The known values of one attribute (display spellings), for resolving extracted strings."""

    def __init__(self, values: Iterable[str] = ()):
        self.by_norm: dict[str, str] = {}
        self.by_compact: dict[str, str] = {}
        self.deletes: dict[str, set[str]] = {}
        for v in values:
            self.add(v)

    def add(self, display: str) -> None:
        norm = span_norm(display)[0]
        if not norm or norm in self.by_norm:
            return
        self.by_norm[norm] = display
        c = compact(display)
        if not c:
            return
        self.by_compact.setdefault(c, display)
        if allowed_edits(len(c)):
            for d in self._deletes(c):
                self.deletes.setdefault(d, set()).add(c)

    @staticmethod
    def _deletes(c: str) -> set[str]:
        return {c[:i] + c[i + 1:] for i in range(len(c))} | {c}

    def __len__(self) -> int:
        return len(self.by_norm)

    def resolve(self, text: str) -> tuple[str | None, bool]:
        """(known display value, alias) for an extracted string; (None, False) when it is new."""
        norm, q, _ = span_norm(text)
        if norm in self.by_norm:
            v = self.by_norm[norm]
            return v, clean(text) != v
        if q is not None:
            return None, False  # a measure resolves by its quantity only
        c = compact(text)
        if not c:
            return None, False
        if c in self.by_compact:
            return self.by_compact[c], True
        k = allowed_edits(len(c))
        if not k:
            return None, False
        best, best_d = None, k + 1
        for d in self._deletes(c):
            for cand in self.deletes.get(d, ()):
                if allowed_edits(len(cand)) == 0:
                    continue
                dist = levenshtein(c, cand, min(k, allowed_edits(len(cand))))
                if dist < best_d or (dist == best_d and best is not None and cand < best):
                    best, best_d = cand, dist
        if best is not None and best_d <= k:
            return self.by_compact[best], True
        return None, False
