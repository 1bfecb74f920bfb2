"""Product properties as model inputs: the mapping's ``properties`` (price, year, a variant name,
flags, tag lists ...) turned into sparse tokens, for any catalog and without knowing its schema.

A property becomes tokens by what its values look like on the training snapshot:

- strings (and lists of strings): one token per value, ``name=value`` (case-folded, cut to
  ``max_token_chars``), kept when at least ``min_count`` products share it;
- numbers with few distinct values (at most ``max_levels``: a year, a pack count): one token per value;
- other numbers (a price): the bin of the value among ``bins`` quantile bins of the training values;
- booleans: ``name=#true`` / ``name=#false``.

A value that fewer than ``min_count`` products share (an identifier, a URL, a style code) gives
no token. The token table and bin edges are fitted once and saved with the model, so a later
snapshot is encoded in the same columns; an unknown value gives no token. Rows are L2-normalised,
like the TF-IDF rows they sit beside.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ingest.normalize import match_key

VERSION = 1


def _text(v: Any, n: int) -> str:
    return match_key(str(v))[:n]  # NFKC, no control characters, whitespace collapsed, case-folded


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


class PropertyTokens:
    def __init__(self, *, min_count: int = 2, max_levels: int = 64, bins: int = 16, max_token_chars: int = 64) -> None:
        self.min_count, self.max_levels, self.bins = min_count, max_levels, bins
        self.max_token_chars = max_token_chars
        self.vocabulary: dict[str, int] = {}
        self.edges: dict[str, np.ndarray] = {}  # numeric property binned by quantiles -> inner bin edges
        self.kinds: dict[str, str] = {}  # property -> "levels" | "bins"
        self.version = VERSION

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, props: Sequence[dict[str, Any] | None]) -> "PropertyTokens":
        nums: dict[str, list[float]] = defaultdict(list)
        for p in props:
            for k, v in (p or {}).items():
                if _is_number(v):
                    nums[k].append(float(v))
        for k, vals in nums.items():
            a = np.asarray(vals)
            levels = np.unique(a)
            if len(levels) < 2:
                continue
            if len(levels) <= self.max_levels:
                self.kinds[k] = "levels"
            else:
                self.kinds[k] = "bins"
                self.edges[k] = np.unique(np.quantile(a, np.linspace(0, 1, self.bins + 1)[1:-1]))
        counts: Counter[str] = Counter()
        for p in props:
            counts.update(set(self._tokens(p)))
        # a value fewer than min_count products share (an identifier, a URL, a style code) is no signal
        kept = sorted(t for t, c in counts.items() if c >= self.min_count)
        self.vocabulary = {t: i for i, t in enumerate(kept)}
        return self

    @property
    def properties(self) -> list[str]:
        """The property names that gave at least one token."""
        return sorted({t.split("=", 1)[0] for t in self.vocabulary})

    def _tokens(self, p: dict[str, Any] | None) -> Iterable[str]:
        for k, v in (p or {}).items():
            name = _text(k, self.max_token_chars).replace("=", " ")
            if isinstance(v, bool):
                yield f"{name}=#{str(v).lower()}"
            elif _is_number(v):
                kind = self.kinds.get(k)
                if kind == "levels":
                    f = float(v)
                    yield f"{name}=#{int(f) if f.is_integer() else f}"
                elif kind == "bins":
                    yield f"{name}=#q{int(np.searchsorted(self.edges[k], float(v), side='right'))}"
            elif isinstance(v, str):
                t = _text(v, self.max_token_chars)
                if t:
                    yield f"{name}={t}"
            elif isinstance(v, (list, tuple)):
                for x in v:
                    if isinstance(x, str) and (t := _text(x, self.max_token_chars)):
                        yield f"{name}={t}"

    # -- encoding --------------------------------------------------------------------------------
    def transform(self, props: Sequence[dict[str, Any] | None]) -> Any:
        """csr float32 [N, len(vocabulary)]: the known tokens of each product, rows L2-normalised."""
        import scipy.sparse as sps

        indptr, indices = [0], []
        for p in props:
            cols = sorted({self.vocabulary[t] for t in self._tokens(p) if t in self.vocabulary})
            indices.extend(cols)
            indptr.append(len(indices))
        indptr_a = np.asarray(indptr, np.int64)
        nnz = np.diff(indptr_a)
        data = np.repeat((1.0 / np.sqrt(np.maximum(nnz, 1))).astype(np.float32), nnz)
        return sps.csr_matrix((data, np.asarray(indices, np.int64), indptr_a),
                              shape=(len(props), len(self.vocabulary)), dtype=np.float32)

    def append_to(self, X: Any, props: Sequence[dict[str, Any] | None], weight: float = 1.0) -> Any:
        """csr float32: the rows of ``X`` (one per product) with these products' tokens beside them, scaled
        by ``weight``; ``X`` itself when the vocabulary is empty."""
        import scipy.sparse as sps

        if not len(self):
            return X
        return sps.hstack([X, self.transform(props) * np.float32(weight)], format="csr", dtype=np.float32)

    def __len__(self) -> int:
        return len(self.vocabulary)
