"""Baselines for attribute completion, graded by the same protocol as the GNN (``gnn.protocol``).

Registry ``BASELINES`` (resolve with :func:`get_baseline`):

* ``majority`` — the most frequent value of the attribute among the training facts of the product's
  leaf category, ties broken (and empty categories filled) by the attribute's global frequencies.
* ``tfidf`` — TF-IDF word 1–2-grams of the title + the first 300 characters of the description,
  one multinomial logistic regression (scikit-learn, saga) per attribute.
* ``kge`` — PyKEEN embeddings alone: a KG model (TransE by default, any PyKEEN name) trained on
  the static edges (categories, tree, value -> attribute) and the training facts only; a pair is
  scored by ``score_t(product, has_value | has_brand, candidate)`` over its attribute's candidates
  (softmax). Products whose facts are all hidden (cold start) keep only their category edge.

Every baseline learns only from the facts of the splits it is fitted ``on`` (train by default) and
scores a pair over *all* candidates of its attribute (values never seen in training get 0).
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import GnnError, MissingExtra
from .metrics import AttributeScores, PairScores
from .protocol import FactSplit, ProtocolError, leaf_categories
from .snapshot import Snapshot

_TAG = re.compile(r"<[^>]{0,2000}>")


class BaselineError(GnnError):
    """A baseline is unknown, misconfigured or used before it is fitted."""


def _fit_pairs(split: FactSplit, on: Sequence[str]) -> np.ndarray:
    bad = [s for s in on if s not in ("train", "valid")]
    if bad:
        raise ProtocolError(f"a baseline may be fitted on 'train' and 'valid' facts only, not {bad}")
    return split.pairs(*on)


def _fact_rows(split: FactSplit, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pair id per fact, value node per fact) for the facts of ``pairs``: int64 [F], int64 [F]."""
    counts = split.indptr[pairs + 1] - split.indptr[pairs]
    starts = np.repeat(split.indptr[pairs] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    idx = starts + np.arange(counts.sum())
    return np.repeat(pairs, counts), split.values[idx]


class Baseline:
    """Interface: ``fit(snap, split, on=...)`` then ``score(pairs)`` -> :class:`PairScores`."""

    name = "baseline"

    def fit(self, snap: Snapshot, split: FactSplit, *, on: Sequence[str] = ("train",)) -> "Baseline":
        raise NotImplementedError

    def score(self, pairs: np.ndarray) -> PairScores:
        """Probabilities over each pair's attribute candidates, one block per attribute."""
        if getattr(self, "split", None) is None:
            raise BaselineError(f"{self.name}: call fit() before score()")
        split: FactSplit = self.split
        pairs = np.asarray(pairs, dtype=np.int64)
        blocks = {}
        for a in np.unique(split.attribute[pairs]).tolist():
            pa = pairs[split.attribute[pairs] == a]
            ip, tl = split.truth(pa)
            blocks[a] = AttributeScores(a, pa, self._score_attribute(a, split.product[pa]), ip, tl)
        return PairScores(blocks, split.attribute_names)

    def _score_attribute(self, attribute: int, products: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


class MajorityBaseline(Baseline):
    """Most frequent value per (leaf category, attribute); the attribute's global frequencies break
    ties and fill categories without training facts.

    Probabilities: ``(n_leaf + alpha * global_share) / (N_leaf + alpha)`` with ``alpha`` <= 1, so a
    value more frequent in the leaf always wins.
    """

    name = "majority"

    def __init__(self, *, alpha: float = 1.0) -> None:
        if not 0 < alpha <= 1:
            raise BaselineError(f"majority: alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.split: FactSplit | None = None

    def fit(self, snap: Snapshot, split: FactSplit, *, on: Sequence[str] = ("train",)) -> "MajorityBaseline":
        self.split = split
        self.leaf = leaf_categories(snap)
        pair_of_fact, val = _fact_rows(split, _fit_pairs(split, on))
        attr = split.attribute[pair_of_fact]
        cat = self.leaf[split.product[pair_of_fact]]
        self.global_counts: dict[int, np.ndarray] = {}
        self.leaf_counts: dict[int, dict[int, np.ndarray]] = {}
        for a in range(split.num_attributes):
            m = attr == a
            C = split.num_candidates(a)
            loc = split.local(a, val[m])
            self.global_counts[a] = np.bincount(loc, minlength=C).astype(np.float64)
            per: dict[int, np.ndarray] = {}
            cm = cat[m]
            for c in np.unique(cm[cm >= 0]).tolist():
                per[c] = np.bincount(loc[cm == c], minlength=C).astype(np.float64)
            self.leaf_counts[a] = per
        return self

    def _score_attribute(self, attribute: int, products: np.ndarray) -> np.ndarray:
        g = self.global_counts[attribute]
        C = len(g)
        gshare = g / g.sum() if g.sum() > 0 else np.full(C, 1.0 / max(C, 1))
        out = np.empty((len(products), C))
        cats = self.leaf[products]
        per = self.leaf_counts[attribute]
        for c in np.unique(cats).tolist():
            n = per.get(c)
            row = gshare if n is None else (n + self.alpha * gshare) / (n.sum() + self.alpha)
            out[cats == c] = row
        return out

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "alpha": self.alpha}


# Word tokens for TF-IDF in any script: a run of letters/digits (2+ characters) as scikit-learn's default, but
# every Han, kana or Hangul character a token of its own -- those scripts do not separate words with spaces,
# and the default pattern would make a whole Chinese title one token (word bigrams then give character bigrams).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
TOKEN_PATTERN = rf"(?u)[{_CJK}]|[^\W{_CJK}]{{2,}}"


def description_text(record: dict[str, Any], chars: int) -> str:
    """The product's description, HTML tags stripped, whitespace collapsed, its first ``chars`` characters."""
    return " ".join(_TAG.sub(" ", str(record.get("description") or "")).split())[:chars]


def product_text(record: dict[str, Any], description_chars: int = 300) -> str:
    """Title + the first ``description_chars`` characters of the (HTML-stripped) description."""
    return f"{record.get('title') or ''} {description_text(record, description_chars)}".strip()


class TfidfBaseline(Baseline):
    """TF-IDF word n-grams of title + the start of the description, one multinomial logistic
    regression per attribute (scikit-learn, saga solver).

    The vectoriser is fitted on every product's text (text is an input, never a label: cold and test
    products have theirs too); each classifier only on the facts it is fitted ``on``. An attribute
    with a single training value always predicts it; one without training facts is uniform.
    """

    name = "tfidf"
    properties = False  # product-property tokens (gnn.properties) beside the n-grams

    def __init__(self, *, ngram_range: tuple[int, int] = (1, 2), description_chars: int = 300, min_df: int = 2,
                 C: float = 20.0, max_iter: int = 30, tol: float = 1e-3, n_jobs: int = 2, seed: int = 0,
                 properties: bool | None = None) -> None:
        self.ngram_range = tuple(ngram_range)
        self.properties = type(self).properties if properties is None else properties
        self.description_chars = description_chars
        self.min_df = min_df
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.n_jobs = n_jobs
        self.seed = seed
        self.split: FactSplit | None = None
        self.fit_seconds = 0.0

    def fit(self, snap: Snapshot, split: FactSplit, *, on: Sequence[str] = ("train",)) -> "TfidfBaseline":
        try:
            from joblib import Parallel, delayed
            from sklearn.feature_extraction.text import TfidfVectorizer
        except ImportError:
            raise MissingExtra("the tfidf baseline needs scikit-learn: pip install 'attrgraph[ml]'") from None
        t0 = time.perf_counter()
        self.split = split
        texts = [product_text(r, self.description_chars) for r in snap.nodes["product"]]
        self.vectorizer = TfidfVectorizer(ngram_range=self.ngram_range, min_df=self.min_df, sublinear_tf=True,
                                          token_pattern=TOKEN_PATTERN,
                                          dtype=np.float32)
        self.X = self.vectorizer.fit_transform(texts).tocsr()
        if self.properties:
            from .properties import PropertyTokens

            props = [r.get("props") for r in snap.nodes["product"]]
            self.X = PropertyTokens().fit(props).append_to(self.X, props)
        pair_of_fact, val = _fact_rows(split, _fit_pairs(split, on))
        attr = split.attribute[pair_of_fact]
        jobs = []
        for a in np.unique(attr).tolist():
            m = attr == a
            jobs.append((a, split.product[pair_of_fact[m]], split.local(a, val[m])))
        # largest first, so the two workers finish together; saga runs without the GIL
        jobs.sort(key=lambda j: -len(j[1]) * len(np.unique(j[2])))
        fitted = Parallel(n_jobs=self.n_jobs, backend="threading")(delayed(self._fit_one)(p, y) for _, p, y in jobs)
        self.models: dict[int, Any] = {a: m for (a, _, _), m in zip(jobs, fitted)}
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _fit_one(self, products: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression

        classes = np.unique(y)
        if len(classes) == 1:
            return int(classes[0])
        clf = LogisticRegression(solver="saga", C=self.C, max_iter=self.max_iter, tol=self.tol, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # saga's ConvergenceWarning at max_iter: a budget, on purpose
            clf.fit(self.X[products], y)
        return clf

    def _score_attribute(self, attribute: int, products: np.ndarray) -> np.ndarray:
        C = self.split.num_candidates(attribute)
        m = self.models.get(attribute)
        if m is None:
            return np.full((len(products), C), 1.0 / max(C, 1))
        out = np.zeros((len(products), C))
        if isinstance(m, int):
            out[:, m] = 1.0
            return out
        out[:, m.classes_] = m.predict_proba(self.X[products])
        return out

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "ngram_range": list(self.ngram_range), "description_chars": self.description_chars,
                "min_df": self.min_df, "C": self.C, "max_iter": self.max_iter, "tol": self.tol, "solver": "saga",
                "seed": self.seed, "properties": self.properties}


class TfidfPropsBaseline(TfidfBaseline):
    """The TF-IDF classifier reading the product-property tokens too (the same tokens as the GNN's):
    how much of what properties add a linear model gets."""

    name = "tfidf-props"
    properties = True


class KgeBaseline(Baseline):
    """PyKEEN knowledge-graph embeddings alone, trained on the visible graph (see the module doc)."""

    name = "kge"

    def __init__(self, *, model: str = "TransE", embedding_dim: int = 64, epochs: int = 30, batch_size: int = 1024,
                 learning_rate: float = 0.01, seed: int = 0, threads: int | None = None,
                 model_kwargs: dict[str, Any] | None = None) -> None:
        from .kge import KgeConfig

        self.kcfg = KgeConfig(model=model, embedding_dim=embedding_dim, epochs=epochs, batch_size=batch_size,
                              learning_rate=learning_rate, seed=seed, threads=threads, model_kwargs=model_kwargs or {})
        self.split: FactSplit | None = None

    def fit(self, snap: Snapshot, split: FactSplit, *, on: Sequence[str] = ("train",), dist: Any = None) -> "KgeBaseline":
        """``dist`` (a ``gnn.distributed.DistContext``): train through PyKEEN's Lightning DDP path, each rank
        on its own shard of the triples (``gnn.kge.train_kge_distributed``)."""
        from .kge import train_kge, triples_from_snapshot

        pairs = _fit_pairs(split, on)
        pair_rels = ("has_value", "has_brand") if split.config.get("include_brand", True) else ("has_value",)
        static = [r for r in snap.edge_types if r not in pair_rels]
        kg = triples_from_snapshot(snap, static + [r for r in pair_rels if r in snap.edge_types])
        rel_id = {r: i for i, r in enumerate(kg.relation_labels)}
        keep = np.isin(kg.triples[:, 1], [rel_id[r] for r in static])
        pf, fv = _fact_rows(split, pairs)
        is_brand = split.attribute[pf] == split.brand_attribute
        parts = [kg.triples[keep]]
        for rel, mask, tail_type in (("has_value", ~is_brand, "value"), ("has_brand", is_brand, "brand")):
            if rel in rel_id and mask.any():
                parts.append(np.stack([split.product[pf[mask]] + kg.offsets["product"],
                                       np.full(int(mask.sum()), rel_id[rel]), fv[mask] + kg.offsets[tail_type]], 1))
        triples = np.concatenate(parts).astype(np.int64)
        self.kge = train_kge(kg.factory(triples), self.kcfg, dist=dist)
        self.kg, self.split, self.rel_id, self.train_triples = kg, split, rel_id, triples
        self.fit_seconds = self.kge.seconds
        return self

    def _score_attribute(self, attribute: int, products: np.ndarray) -> np.ndarray:
        import torch

        sp, kg = self.split, self.kg
        is_brand = attribute == sp.brand_attribute
        cand = sp.candidates(attribute) + kg.offsets["brand" if is_brand else "value"]
        if len(cand) == 0:
            return np.zeros((len(products), 0))
        rel = self.rel_id["has_brand" if is_brand else "has_value"]
        out = np.empty((len(products), len(cand)))
        model = self.kge.model
        model.eval()
        with torch.no_grad():
            ct = torch.as_tensor(cand)
            for lo in range(0, len(products), 4096):
                h = torch.as_tensor(np.asarray(products[lo: lo + 4096], dtype=np.int64) + kg.offsets["product"])
                hr = torch.stack([h, torch.full_like(h, rel)], 1)
                out[lo: lo + len(h)] = torch.softmax(model.score_t(hr, tails=ct).reshape(len(h), len(cand)), 1).numpy()
        return out

    def config(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"name": self.name, **asdict(self.kcfg)}


BASELINES: dict[str, type[Baseline]] = {"majority": MajorityBaseline, "tfidf": TfidfBaseline,
                                        "tfidf-props": TfidfPropsBaseline, "kge": KgeBaseline}


def get_baseline(name: str, **kwargs: Any) -> Baseline:
    """A baseline by registry name, constructed with ``kwargs``."""
    if name not in BASELINES:
        raise BaselineError(f"unknown baseline {name!r}; valid: {', '.join(BASELINES)}")
    try:
        return BASELINES[name](**kwargs)
    except TypeError as e:
        raise BaselineError(f"baseline {name!r}: {e}") from None
