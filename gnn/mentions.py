"""Which candidate values a product's text mentions: a sparse [products x candidates] indicator.

A value (or brand) is *mentioned* when its name, as a token sequence, occurs in the product's title, or
in its description (HTML stripped; two separate matrices, two sources for the model). Text and names
are case-folded and cut into tokens the way the TF-IDF features are: words of letters and digits, and every Han, kana or Hangul
character a token of its own, so ``连衣裙`` is found inside a Chinese title that has no spaces, and
``red`` is found in "a red shirt" but not in "shredded". Names of up to ``max_tokens`` tokens are
looked up: at each token of the text, the names starting with that token are probed (one dictionary
probe per name length), so the cost grows with the text, not with products x candidates.

The GNN adds ``mention_w[attribute, source] * mentioned`` to each candidate's score, the title and
the description (its first ``mention_description_chars``: specification text such as "Body Material
COPPER") being two sources with a weight each, learned per attribute: where a catalog's values are
spans of its titles (extraction sets, brands in titles) the model reads them directly; where they are
not, the weight stays near zero.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .baselines import _CJK, description_text

_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}_]+")


def tokens(text: str) -> list[str]:
    """Case-folded tokens: words of letters and digits, each Han/kana/Hangul character alone."""
    return _TOKEN.findall(text.casefold())


def mention_matrix(texts: Sequence[str], names: Sequence[Sequence[str]], *, max_tokens: int = 8) -> Any:
    """csr float32 [len(texts), len(names)]: 1 where text i contains one of the name forms of candidate j
    as a whole token sequence. ``names[j]`` lists the forms of candidate j (display name, normal form);
    forms longer than ``max_tokens`` tokens (or with none) are never matched."""
    import scipy.sparse as sps

    index: dict[tuple[str, ...], list[int]] = {}
    lengths: dict[str, set[int]] = {}  # first token -> lengths of the names that start with it
    for j, forms in enumerate(names):
        for f in {tuple(tokens(str(f))) for f in forms if f}:
            if 0 < len(f) <= max_tokens:
                index.setdefault(f, []).append(j)
                lengths.setdefault(f[0], set()).add(len(f))
    starts = {t: sorted(v) for t, v in lengths.items()}
    rows: list[int] = []
    cols: list[int] = []
    for i, text in enumerate(texts):
        toks = tokens(text)
        found: set[int] = set()
        for s, t in enumerate(toks):
            for n in starts.get(t, ()):
                hit = index.get(tuple(toks[s: s + n])) if s + n <= len(toks) else None
                if hit:
                    found.update(hit)
        rows.extend([i] * len(found))
        cols.extend(found)
    # one entry per (text, candidate): ``found`` is a set
    return sps.csr_matrix((np.ones(len(rows), np.float32), (np.asarray(rows, np.int64), np.asarray(cols, np.int64))),
                          shape=(len(texts), len(names)), dtype=np.float32)


def candidate_forms(snap: Any, split: Any) -> list[tuple[str, ...]]:
    """The name forms of every candidate of ``split``, in its global candidate order (``split.cand``):
    a value's display form and normal form, a brand's name and key."""
    b0 = int(split.cand_indptr[split.brand_attribute])
    out: list[tuple[str, ...]] = []
    values, brands = snap.nodes["value"], snap.nodes["brand"]
    for pos, node in enumerate(split.cand.tolist()):
        if pos < b0:
            r = values[node]
            out.append((str(r.get("value") or ""), str(r.get("norm") or "")))
        else:
            r = brands[node]
            out.append((str(r.get("name") or ""), str(r.get("key") or "")))
    return out


__all__ = ["candidate_forms", "mention_matrix", "tokens"]
