"""A cross-fitted text prior for the GNN decoder: per attribute, a TF-IDF logistic regression whose
log-probabilities the GNN adds to its scores (learned weight per attribute), so that message
passing learns what the text alone does not say.

Cross-fitting keeps it honest: products are cut into two folds by a hash of their key; the
classifiers of fold *f* are fitted on the training facts of the *other* fold's products only, and a
product is always scored by the classifiers that never saw it -- in training, validation, test and
on a later snapshot alike, so the GNN learns how far to trust a prior of exactly the quality it
will meet at prediction time.

Cost grows with facts, not with attributes x products: a classifier is fitted on the products that
have the attribute only, and a multinomial logistic regression costs (facts x classes), so an
attribute with more than ``max_lr_classes`` values (brand on a marketplace: thousands) gets a
class-centroid classifier instead (cosine to each value's mean TF-IDF row, one sparse product,
scaled by ``centroid_scale``). A ``deadline`` bounds the whole fit: the costliest classifiers start
first, and one that would start after the deadline is a centroid classifier too. Which method each
attribute got is kept in ``methods``.

Each classifier keeps its largest weights (a sparse ``[V, C]`` matrix): ``budget`` weights per
classifier shared by its classes, at least ``top_k`` per class. An attribute with few values (season,
gender) keeps every weight it learned; one with hundreds (brand) its strongest per class -- the
checkpoint stays bounded (a dense brand classifier alone would be 50M weights) and scoring is a
sparse product. A checkpoint keeps only the refitted classifiers: the two folds' exist for the
out-of-fold scores of training facts, which nothing needs after training.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .protocol import FactSplit

FLOOR = float(np.log(1e-6))  # the lowest log-probability the prior states


def key_folds(keys: Sequence[Any], n_folds: int = 2) -> np.ndarray:
    """int8 [N]: a product's fold from a hash of its key (stable across snapshots)."""
    return np.fromiter((hashlib.blake2b(str(k).encode("utf-8", "surrogatepass"), digest_size=2).digest()[0] % n_folds
                        for k in keys), np.int8, len(keys))


class TextPrior:
    def __init__(self, *, C: float = 20.0, max_iter: int = 30, tol: float = 1e-3, top_k: int = 1500,
                 budget: int = 4_000_000, n_jobs: int = 2, seed: int = 0, refit: bool = True,
                 max_lr_classes: int = 200, centroid_scale: float = 10.0) -> None:
        self.C, self.max_iter, self.tol, self.top_k, self.n_jobs, self.seed = C, max_iter, tol, top_k, n_jobs, seed
        self.budget = budget
        self.refit = refit
        self.max_lr_classes, self.centroid_scale = max_lr_classes, centroid_scale
        self.methods: dict[int, str] = {}  # attribute -> "lr" | "centroid" | "constant" (of the refitted set)
        self.folds_dropped = False
        # models[fold][attribute] = (W csr [V, C_seen], b [C_seen], classes [C_seen] local candidate ids) | int | None;
        # models[2]: fitted on every training fact (refit), for facts no classifier saw
        self.models: list[dict[int, Any]] = [{}, {}, {}] if refit else [{}, {}]
        self.num_candidates: dict[int, int] = {}
        # unseen[fold][attribute]: the probability that a fact's value is one this classifier never saw,
        # shared by those candidates (see logp)
        self.unseen: list[dict[int, float]] = [{} for _ in self.models]

    def fit(self, X: Any, split: FactSplit, fit_pairs: np.ndarray, folds: np.ndarray,
            deadline: float | None = None) -> "TextPrior":
        """``X`` csr [N, V] TF-IDF rows of the products; ``folds`` [N] from :func:`key_folds`; ``deadline``
        a ``time.perf_counter()`` value after which no logistic regression starts (centroids instead)."""
        import time

        from joblib import Parallel, delayed

        from .baselines import _fact_rows

        pof, val = _fact_rows(split, fit_pairs)
        attr = split.attribute[pof]
        prod = split.product[pof]
        jobs = []
        for a in np.unique(attr).tolist():
            m = attr == a
            self.num_candidates[a] = split.num_candidates(a)
            y_all = split.local(a, val[m])
            p_all = prod[m]
            for f in (0, 1):
                other = folds[p_all] != f  # fold f's classifiers learn from the other fold's products
                jobs.append((f, a, p_all[other], y_all[other]))
                # measured: the share of fold f's facts whose value the other fold never shows (Jeffreys-smoothed)
                mine = y_all[~other]
                k = int((~np.isin(mine, y_all[other])).sum())
                self.unseen[f][a] = (k + 0.5) / (len(mine) + 1.0)
            if self.refit:
                jobs.append((2, a, p_all, y_all))
                # Good-Turing: the chance that the next fact's value is new is the share of values seen once
                _, counts = np.unique(y_all, return_counts=True)
                self.unseen[2][a] = (int((counts == 1).sum()) + 0.5) / (len(y_all) + 1.0)
        jobs.sort(key=lambda j: -len(j[2]) * max(1, len(np.unique(j[3]))))

        def one(p: np.ndarray, y: np.ndarray) -> tuple[Any, str]:
            late = deadline is not None and time.perf_counter() > deadline
            return self._fit_one(X, p, y, centroid=late)

        fitted = Parallel(n_jobs=self.n_jobs, backend="threading")(delayed(one)(p, y) for _, _, p, y in jobs)
        for (f, a, _, _), (m, method) in zip(jobs, fitted):
            self.models[f][a] = m
            if f == len(self.models) - 1:
                self.methods[a] = method
        return self

    def _fit_one(self, X: Any, products: np.ndarray, y: np.ndarray, *, centroid: bool = False) -> tuple[Any, str]:
        import scipy.sparse as sps
        from sklearn.linear_model import LogisticRegression

        classes = np.unique(y)
        if len(classes) == 0:
            return None, "none"
        if len(classes) == 1:
            return int(classes[0]), "constant"
        if centroid or len(classes) > self.max_lr_classes:
            return self._fit_centroid(X, products, y, classes), "centroid"
        clf = LogisticRegression(solver="saga", C=self.C, max_iter=self.max_iter, tol=self.tol, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # saga's ConvergenceWarning at max_iter: a budget, on purpose
            clf.fit(X[products], y)
        coef = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        icpt = clf.intercept_ if len(clf.classes_) > 2 else np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
        k = min(coef.shape[1], max(self.top_k, self.budget // coef.shape[0]))
        if k < coef.shape[1]:
            keep = np.argpartition(-np.abs(coef), k - 1, axis=1)[:, :k]  # [C, k] largest weights per class
        else:
            keep = np.broadcast_to(np.arange(coef.shape[1]), coef.shape)
        rows = np.repeat(np.arange(coef.shape[0]), keep.shape[1])
        W = sps.csr_matrix((np.take_along_axis(coef, keep, 1).ravel().astype(np.float32), (keep.ravel(), rows)),
                           shape=(coef.shape[1], coef.shape[0]))
        W.eliminate_zeros()  # features absent from the training rows keep a zero weight
        return (W, icpt.astype(np.float32), clf.classes_.astype(np.int64)), "lr"

    def _fit_centroid(self, X: Any, products: np.ndarray, y: np.ndarray, classes: np.ndarray) -> Any:
        """Cosine to each class's mean row, times ``centroid_scale``: W csr [V, C] with at most nnz(X_a) weights
        (cost: one sparse product), intercept 0. Rows of X are L2-normalised blocks, so the score is a cosine."""
        import scipy.sparse as sps

        col = np.searchsorted(classes, y)
        Y = sps.csr_matrix((np.ones(len(y), np.float32), (np.arange(len(y)), col)), shape=(len(y), len(classes)))
        W = (X[products].T @ Y).tocsc().astype(np.float32)  # [V, C] sums of rows per class
        norms = np.sqrt(np.asarray(W.multiply(W).sum(0)).ravel())
        W = W @ sps.diags((self.centroid_scale / np.maximum(norms, 1e-12)).astype(np.float32))
        W = W.tocsr()
        W.eliminate_zeros()
        return W, np.zeros(len(classes), np.float32), classes.astype(np.int64)

    @property
    def num_weights(self) -> int:
        """Weights stored, over every classifier set held."""
        return sum(m[0].nnz for models in self.models for m in models.values() if isinstance(m, tuple))

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if len(self.models) > 2:  # a checkpoint scores unseen facts only: the refitted classifiers suffice
            d["models"] = [{}, {}, self.models[2]]
            d["folds_dropped"] = True
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        d.setdefault("folds_dropped", False)
        d.setdefault("budget", 0)
        d.setdefault("max_lr_classes", 10**9)
        d.setdefault("centroid_scale", 10.0)
        d.setdefault("methods", {})
        d.setdefault("unseen", [{} for _ in d.get("models", ())])  # (a checkpoint from before: FLOOR for unseen values)
        self.__dict__.update(d)

    def _unseen(self, f: int, attribute: int, C: int, n_seen: int) -> float | None:
        """The unseen share u of classifier set ``f`` for the attribute, when some of its ``C`` candidates are
        unseen (None: every candidate seen, or no share: a checkpoint from before)."""
        if C - n_seen <= 0 or f >= len(self.unseen):
            return None
        return self.unseen[f].get(attribute)

    def unseen_logp(self, attribute: int, num_candidates: int | None = None) -> float:
        """The log-probability the refitted classifiers give each candidate they never saw (``FLOOR`` when
        they saw every candidate or carry no unseen share): also what a candidate new since training gets."""
        C = self.num_candidates.get(attribute, 0) if num_candidates is None else num_candidates
        f = len(self.models) - 1
        m = self.models[f].get(attribute)
        seen = 0 if m is None else (1 if isinstance(m, int) else len(m[2]))
        u = self._unseen(f, attribute, C, seen)
        return FLOOR if u is None else max(float(np.log(u / (C - seen))), FLOOR)

    def logp(self, attribute: int, X_rows: Any, folds: np.ndarray | None, num_candidates: int | None = None) -> np.ndarray:
        """float32 [M, C_a]: log-probabilities of the attribute's candidates for M products (their TF-IDF
        rows and folds), each from the classifiers of its own fold (fitted without it).

        ``folds=None`` is for facts no classifier was fitted on (validation, test, missing slots) --
        never for training facts: the refitted classifiers score them, or (a prior without refit)
        the average of both folds' probabilities.

        A candidate the classifier never saw (a value absent from its training facts) is not ruled out:
        the classifier's probabilities are scaled by 1 - u and the unseen candidates share u, the
        probability that a fact's value is one the classifier never saw (``unseen``: measured on the
        other fold for the cross-fitted classifiers, Good-Turing for the refitted ones). Before, such a
        candidate got ``FLOOR``, which on a long-tail attribute (a marketplace's brands) told the model
        in training that a third of the true values were impossible."""
        if folds is None and len(self.models) > 2:
            return self.logp(attribute, X_rows, np.full(X_rows.shape[0], 2, np.int8), num_candidates)
        if folds is None:
            n = X_rows.shape[0]
            a = self.logp(attribute, X_rows, np.zeros(n, np.int8), num_candidates)
            b = self.logp(attribute, X_rows, np.ones(n, np.int8), num_candidates)
            return (np.logaddexp(a, b) - np.log(2.0)).astype(np.float32)
        if self.folds_dropped and bool(np.any(folds < 2)):
            raise ValueError("this prior was loaded from a checkpoint, which keeps only the refitted classifiers: "
                             "out-of-fold scores of training facts exist only during training")
        C = self.num_candidates.get(attribute, 0) if num_candidates is None else num_candidates
        out = np.full((X_rows.shape[0], C), FLOOR, np.float32)
        for f in range(len(self.models)):
            rows = np.flatnonzero(folds == f)
            m = self.models[f].get(attribute)
            if not len(rows) or m is None:
                if not len(rows) or C == 0:
                    continue
                out[rows] = -np.log(C)  # no training fact: uniform
                continue
            n_seen = 1 if isinstance(m, int) else len(m[2])
            u = self._unseen(f, attribute, C, n_seen)
            if u is not None:
                out[rows] = max(float(np.log(u / (C - n_seen))), FLOOR)
            shift = float(np.log1p(-u)) if u is not None else 0.0
            if isinstance(m, int):
                out[rows, m] = shift
                continue
            W, b, classes = m
            z = (X_rows[rows] @ W).toarray() + b
            z = z - z.max(1, keepdims=True)
            lp = z - np.log(np.exp(z).sum(1, keepdims=True))
            out[np.ix_(rows, classes)] = np.maximum(lp + shift, FLOOR)
        return out
