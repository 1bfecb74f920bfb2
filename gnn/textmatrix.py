"""The sparse text matrix of a large catalog, built in chunks and kept on disk.

* :func:`fit_tfidf` fits a scikit-learn ``TfidfVectorizer`` from documents read chunk by chunk and gives
  the transformed rows block by block, equal to ``fit_transform`` (vocabulary, ``idf_``, every row and
  the order of its entries: tests/test_scale.py). scikit-learn's own fit holds a Python int per
  (document, term) -- several GB for a million products.
* :class:`CsrParts` collects the rows of a CSR matrix chunk by chunk into ``.npy`` parts on disk and
  assembles them into one ``data``/``indices``/``indptr`` triple of ``.npy`` files, opened as read-only
  memory maps (:func:`load_csr`). Row blocks are transformed independently, so the matrix equals the
  one built at once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    from itertools import islice

    it = iter(items)
    while True:
        part = list(islice(it, size))
        if not part:
            return
        yield part


def fit_tfidf(vectorizer: Any, documents: Callable[[], Iterable[str]], *, chunk: int = 100_000
              ) -> tuple[Any, Iterator[Any]]:
    """Fit ``vectorizer`` (an unfitted ``TfidfVectorizer``) on ``documents()``, reading ``chunk`` documents at a
    time, as ``vectorizer.fit_transform`` would: returns the fitted vectorizer and an iterator over the
    transformed rows, one csr block per chunk.

    One pass of the analyzer, as scikit-learn's: term ids in order of first appearance, a row's counts in
    that order (sorted ids), stored per chunk on disk (a temporary 0700 directory, removed once the blocks
    are read); then the features sorted by name, pruned by ``max_df``/``min_df``, the ``max_features`` most
    frequent kept (by total count in the counts' float dtype, the same ties), IDF from the document
    frequencies; each block is the pruned counts through the fitted ``TfidfTransformer``. The vocabulary,
    ``idf_`` and every row, entries in the same order, equal ``fit_transform``'s (tests/test_scale.py)."""
    import scipy.sparse as sps
    from sklearn.feature_extraction.text import TfidfTransformer

    v = vectorizer
    if v.vocabulary is not None or v.binary or v.max_df is None:
        raise ValueError("fit_tfidf: a fixed vocabulary, binary counts or no max_df are not supported")
    analyze = v.build_analyzer()
    vocab: dict[str, int] = {}
    df = np.zeros(1024, np.int64)
    tf = np.zeros(1024, np.int64)
    tmp = Path(tempfile.mkdtemp(prefix="attrgraph-tfidf-"))
    parts: list[tuple[Path, int]] = []
    n_doc = 0
    try:
        for k, part in enumerate(chunks(documents(), chunk)):
            n_doc += len(part)
            j: list[int] = []
            vals: list[int] = []
            indptr = [0]
            for doc in part:  # (scikit-learn's _count_vocab loop)
                counter: dict[int, int] = {}
                for feature in analyze(doc):
                    idx = vocab.get(feature)
                    if idx is None:
                        idx = vocab[feature] = len(vocab)
                    counter[idx] = counter.get(idx, 0) + 1
                j.extend(counter.keys())
                vals.extend(counter.values())
                indptr.append(len(j))
            X = sps.csr_matrix((np.asarray(vals, np.int64), np.asarray(j, np.int64), np.asarray(indptr, np.int64)),
                               shape=(len(part), len(vocab)))
            X.sort_indices()
            if len(vocab) > len(df):
                grow = max(len(vocab) - len(df), len(df))
                df = np.concatenate([df, np.zeros(grow, np.int64)])
                tf = np.concatenate([tf, np.zeros(grow, np.int64)])
            df[: len(vocab)] += np.bincount(X.indices, minlength=len(vocab))
            tf[: len(vocab)] += np.bincount(X.indices, weights=X.data, minlength=len(vocab)).astype(np.int64)
            f = tmp / f"counts{k}.npz"
            np.savez(f, indices=X.indices, data=X.data, indptr=X.indptr)
            parts.append((f, len(part)))
        if not vocab:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        df, tf = df[: len(vocab)], tf[: len(vocab)]
        names = sorted(vocab)
        order = np.fromiter((vocab[t] for t in names), np.int64, len(names))  # name rank -> first-appearance id
        dfs, tfs = df[order], tf[order]
        max_doc = v.max_df if isinstance(v.max_df, Integral) else v.max_df * n_doc
        min_doc = v.min_df if isinstance(v.min_df, Integral) else v.min_df * n_doc
        if max_doc < min_doc:
            raise ValueError("max_df corresponds to < documents than min_df")
        mask = np.ones(len(dfs), dtype=bool)
        mask &= dfs <= max_doc
        mask &= dfs >= min_doc
        if v.max_features is not None and mask.sum() > v.max_features:
            ftf = tfs.astype(v.dtype)  # (CountVectorizer sums its float counts: exact below 2^24)
            mask_inds = (-ftf[mask]).argsort()[: v.max_features]
            new_mask = np.zeros(len(dfs), dtype=bool)
            new_mask[np.where(mask)[0][mask_inds]] = True
            mask = new_mask
        kept = np.where(mask)[0]
        if len(kept) == 0:
            raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
        new_indices = np.cumsum(mask) - 1
        v.vocabulary_ = {names[i]: new_indices[i] for i in kept.tolist()}
        v.fixed_vocabulary_ = False
        del vocab, names
        remap = np.full(len(order), -1, np.int64)  # first-appearance id -> column (or -1: pruned)
        remap[order[kept]] = new_indices[kept]
        dtype = v.dtype if v.dtype in (np.float64, np.float32) else np.float64
        t = TfidfTransformer(norm=v.norm, use_idf=v.use_idf, smooth_idf=v.smooth_idf, sublinear_tf=v.sublinear_tf)
        if v.use_idf:  # TfidfTransformer.fit
            d = dfs[kept].astype(dtype, copy=False)
            d += float(v.smooth_idf)
            n = n_doc + int(v.smooth_idf)
            idf = np.full_like(d, fill_value=n, dtype=dtype)
            idf /= d
            np.log(idf, out=idf)
            idf += 1.0
            t.idf_ = idf
        t.n_features_in_ = len(kept)
        v._tfidf = t
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    def blocks() -> Iterator[Any]:
        try:
            for f, n_rows in parts:
                with np.load(f, allow_pickle=False) as z:
                    ind, data, ptr = remap[z["indices"]], z["data"], z["indptr"]
                f.unlink()
                keep = ind >= 0
                row = np.repeat(np.arange(n_rows), np.diff(ptr))[keep]
                ptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=n_rows))])
                counts = sps.csr_matrix((data[keep].astype(dtype), ind[keep].astype(np.int32), ptr.astype(np.int32)),
                                        shape=(n_rows, len(kept)), dtype=dtype)
                yield t.transform(counts, copy=False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    return v, blocks()


class CsrParts:
    """Rows of a CSR matrix appended block by block (:meth:`add`), assembled on disk by :meth:`finish`.

    ``directory`` (created 0700; default a temporary directory removed when the returned matrix is
    garbage-collected) holds ``data.npy`` (float32), ``indices.npy`` (int32, or int64 past 2^31 entries),
    ``indptr.npy`` (int64) and, while building, one part per block.
    """

    def __init__(self, n_cols: int | None = None, directory: str | Path | None = None) -> None:
        self.own = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="attrgraph-csr-")) if directory is None else Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.n_cols = n_cols
        self.parts: list[tuple[Path, Path, int]] = []
        self.row_nnz: list[np.ndarray] = []

    def add(self, X: Any) -> None:
        X = X.tocsr()
        if self.n_cols is None:
            self.n_cols = X.shape[1]
        elif X.shape[1] != self.n_cols:
            raise ValueError(f"a block of {X.shape[1]} columns for a matrix of {self.n_cols}")
        k = len(self.parts)
        d, i = self.dir / f"part{k}.data.npy", self.dir / f"part{k}.indices.npy"
        np.save(d, np.asarray(X.data, np.float32))
        np.save(i, np.asarray(X.indices, np.int64))
        self.parts.append((d, i, X.nnz))
        self.row_nnz.append(np.diff(X.indptr).astype(np.int64))

    def finish(self) -> Any:
        """The whole matrix, its arrays memory-mapped from ``directory`` (the parts are deleted)."""
        nnz = np.concatenate(self.row_nnz) if self.row_nnz else np.zeros(0, np.int64)
        indptr = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
        total = int(indptr[-1])
        idx_dtype = np.int32 if total < 2**31 and (self.n_cols or 0) < 2**31 else np.int64
        data = np.lib.format.open_memmap(self.dir / "data.npy", mode="w+", dtype=np.float32, shape=(total,))
        ind = np.lib.format.open_memmap(self.dir / "indices.npy", mode="w+", dtype=idx_dtype, shape=(total,))
        at = 0
        for d, i, n in self.parts:
            data[at: at + n] = np.load(d)
            ind[at: at + n] = np.load(i)
            at += n
            d.unlink()
            i.unlink()
        data.flush()
        ind.flush()
        del data, ind
        np.save(self.dir / "indptr.npy", indptr)
        X = load_csr(self.dir, (len(nnz), int(self.n_cols or 0)))
        if self.own:
            _cleanup_with(X, self.dir)
        return X


def load_csr(directory: str | Path, shape: tuple[int, int]) -> Any:
    """A ``scipy.sparse.csr_matrix`` over the memory-mapped arrays of ``directory`` (no copy)."""
    import scipy.sparse as sps

    p = Path(directory)
    data = np.load(p / "data.npy", mmap_mode="r", allow_pickle=False)
    ind = np.load(p / "indices.npy", mmap_mode="r", allow_pickle=False)
    ptr = np.load(p / "indptr.npy", mmap_mode="r", allow_pickle=False)
    if ind.dtype == np.int32:
        ptr = np.asarray(ptr, np.int32)  # (scipy wants one index dtype; indptr is small: in memory)
    X = sps.csr_matrix(shape, dtype=np.float32)
    X.data, X.indices, X.indptr = data, ind, ptr  # set directly: the constructor would copy read-only arrays
    return X


def _cleanup_with(X: Any, directory: Path) -> None:
    """Remove ``directory`` once the matrix is garbage-collected (open maps stay valid after the unlink)."""
    weakref.finalize(X, shutil.rmtree, str(directory), True)


def build_csr(blocks: Iterable[Any], *, rows: int, in_memory_below: int = 200_000,
              directory: str | Path | None = None) -> Any:
    """The vertical stack of CSR ``blocks``: in memory for fewer than ``in_memory_below`` rows (what
    ``scipy.sparse.vstack`` gives), else assembled on disk and memory-mapped (:class:`CsrParts`).
    Equal either way (float32 data; each row's entries in the block's order)."""
    import scipy.sparse as sps

    if rows < in_memory_below:
        parts = [b.tocsr() for b in blocks]
        return sps.vstack(parts, format="csr", dtype=np.float32) if len(parts) != 1 else parts[0].astype(np.float32)
    cp = CsrParts(directory=directory)
    for b in blocks:
        cp.add(b)
    return cp.finish()


__all__: Sequence[str] = ("CsrParts", "build_csr", "chunks", "fit_tfidf", "load_csr")
