"""Metrics of attribute completion: filtered schema-restricted ranking, precision–coverage, calibration.

Scores come per attribute (:class:`AttributeScores`): for ``M`` pairs of one attribute, a score for
each of that attribute's ``C`` candidates only (its values; all brands for ``@brand``), plus the
pairs' true candidates in CSR form. :class:`PairScores` holds one block per attribute.

* Ranking (:func:`filtered_ranks`, :func:`evaluate`): each true value is ranked against the
  attribute's candidates; the pair's *other* true values are removed first (filtered); ties count
  half ("realistic" rank, as in :func:`gnn.kge.evaluate_ranking`). Hits@k and MRR are means over
  true values (facts).
* Top-1 decisions (precision–coverage, ECE, abstention) are per pair: the top-scored candidate and
  its probability; the decision is correct when it is any true value of the pair.
* Calibration on validation pairs: :class:`TemperatureScaling` (one temperature over log-scores,
  fitted by NLL) and :class:`IsotonicCalibration` (a monotone map of the top-1 probability);
  :func:`abstention_thresholds` picks, per attribute, the lowest top-1 probability whose
  validation precision reaches a target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GnnError, MissingExtra


class MetricsError(GnnError):
    """Scores and truths that do not fit together (shapes, empty sets, bad settings)."""


@dataclass
class AttributeScores:
    """Scores of ``M`` pairs of one attribute over its ``C`` candidates."""

    attribute: int
    pairs: np.ndarray  # int64 [M]: pair ids (rows of a FactSplit)
    scores: np.ndarray  # float [M, C]: probabilities (rows sum to 1) or any scores, higher = better
    true_indptr: np.ndarray  # int64 [M + 1]
    true_local: np.ndarray  # int64 [F]: candidate positions of the true values

    def __post_init__(self) -> None:
        M = len(self.pairs)
        if self.scores.ndim != 2 or self.scores.shape[0] != M:
            raise MetricsError(f"attribute {self.attribute}: scores have shape {self.scores.shape}, expected ({M}, C)")
        if len(self.true_indptr) != M + 1 or self.true_indptr[-1] != len(self.true_local):
            raise MetricsError(f"attribute {self.attribute}: true_indptr does not describe true_local")
        if len(self.true_local) and (self.true_local.min() < 0 or self.true_local.max() >= self.scores.shape[1]):
            raise MetricsError(f"attribute {self.attribute}: a true value is not among the {self.scores.shape[1]} candidates")

    def take(self, rows: np.ndarray) -> "AttributeScores":
        rows = np.asarray(rows, dtype=np.int64)
        lo, hi = self.true_indptr[rows], self.true_indptr[rows + 1]
        counts = hi - lo
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        idx = np.repeat(lo - indptr[:-1], counts) + np.arange(indptr[-1])
        return AttributeScores(self.attribute, self.pairs[rows], self.scores[rows], indptr, self.true_local[idx])


@dataclass
class PairScores:
    """Per-attribute score blocks for a set of pairs (``blocks[attribute id]``)."""

    blocks: dict[int, AttributeScores]
    attribute_names: list[str] = field(default_factory=list)

    @property
    def num_pairs(self) -> int:
        return sum(len(b.pairs) for b in self.blocks.values())

    def name(self, a: int) -> str:
        return self.attribute_names[a] if a < len(self.attribute_names) else str(a)

    def subset(self, pair_mask: np.ndarray) -> "PairScores":
        """Only the pairs ``p`` with ``pair_mask[p]`` (a bool array over all pair ids)."""
        out = {}
        for a, b in self.blocks.items():
            rows = np.flatnonzero(pair_mask[b.pairs])
            if len(rows):
                out[a] = b.take(rows)
        return PairScores(out, self.attribute_names)

    def map(self, fn: Callable[[AttributeScores], np.ndarray]) -> "PairScores":
        """New scores ``fn(block)`` [M, C] per block (e.g. a calibration)."""
        return PairScores({a: AttributeScores(a, b.pairs, fn(b), b.true_indptr, b.true_local)
                           for a, b in self.blocks.items()}, self.attribute_names)

    def top1(self) -> "Top1":
        """The top candidate of every pair, blocks in attribute order."""
        parts = [(b.attribute, b.pairs, *top1(b.scores, b.true_indptr, b.true_local)) for _, b in sorted(self.blocks.items())]
        if not parts:
            z = np.zeros(0, np.int64)
            return Top1(z, z, z, np.zeros(0), np.zeros(0, bool))
        return Top1(np.concatenate([np.full(len(p[1]), p[0], np.int64) for p in parts]),
                    np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
                    np.concatenate([p[3] for p in parts]), np.concatenate([p[4] for p in parts]))


@dataclass
class Top1:
    attribute: np.ndarray  # int64 [M]
    pairs: np.ndarray  # int64 [M]
    choice: np.ndarray  # int64 [M]: candidate position of the top score
    confidence: np.ndarray  # float64 [M]: its score (the top-1 probability)
    correct: np.ndarray  # bool [M]: the choice is a true value of the pair


# -- ranking -------------------------------------------------------------------------------------
def filtered_ranks(scores: np.ndarray, true_indptr: np.ndarray, true_local: np.ndarray) -> np.ndarray:
    """Filtered rank of every true value among its row's candidates.

    ``scores`` float [M, C]; the true values of row i are ``true_local[true_indptr[i]:true_indptr[i+1]]``.
    A true value's rank is 1 + (candidates scoring higher) + (candidates scoring equal) / 2, where
    the row's other true values are not counted. Returns float64 [F].
    """
    scores = np.asarray(scores, dtype=np.float64)
    M = scores.shape[0]
    counts = np.diff(true_indptr)
    rows = np.repeat(np.arange(M), counts)
    if len(rows) == 0:
        return np.zeros(0)
    true_s = scores[rows, true_local]
    higher = np.zeros(len(rows))
    equal = np.zeros(len(rows))
    step = max(1, 4_000_000 // max(1, scores.shape[1]))
    for s in range(0, len(rows), step):
        r, ts = rows[s : s + step], true_s[s : s + step, None]
        sc = scores[r]
        higher[s : s + step] = (sc > ts).sum(1)
        equal[s : s + step] = (sc == ts).sum(1) - 1  # minus itself
    if (counts > 1).any():  # remove the other true values of the same row
        for i in np.flatnonzero(counts > 1):
            lo, hi = true_indptr[i], true_indptr[i + 1]
            t = scores[i, true_local[lo:hi]]
            for j in range(lo, hi):
                others = np.delete(t, j - lo)
                higher[j] -= (others > t[j - lo]).sum()
                equal[j] -= (others == t[j - lo]).sum()
    return 1.0 + higher + equal / 2.0


def rank_summary(ranks: np.ndarray, ks: Sequence[int] = (1, 3)) -> dict[str, float]:
    """``count``, ``mrr`` and ``hits@k`` of float ranks [F] (NaN when empty)."""
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {"count": int(len(r)), "mrr": float(np.mean(1.0 / r)) if len(r) else float("nan")}
    for k in ks:
        out[f"hits@{k}"] = float(np.mean(r <= k)) if len(r) else float("nan")
    return out


def top1(scores: np.ndarray, true_indptr: np.ndarray, true_local: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top candidate per row: (choice int64 [M], confidence float64 [M], correct bool [M]).

    Ties go to the lowest candidate position (so a tie is a decision, and it is graded)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
    choice = scores.argmax(1)
    conf = scores[np.arange(len(choice)), choice]
    rows = np.repeat(np.arange(len(choice)), np.diff(true_indptr))
    correct = np.zeros(len(choice), bool)
    correct[rows[true_local == choice[rows]]] = True
    return choice.astype(np.int64), conf, correct


# -- precision–coverage and calibration -------------------------------------------------------------
@dataclass
class PrecisionCoverage:
    """Accept the pairs whose confidence is at least ``threshold[i]``: ``coverage[i]`` of all pairs,
    with precision ``precision[i]``. Points are sorted by decreasing threshold (increasing coverage)."""

    threshold: np.ndarray  # float64 [K]: distinct confidences, decreasing
    coverage: np.ndarray  # float64 [K]
    precision: np.ndarray  # float64 [K]

    def coverage_at(self, precision: float) -> float:
        """The largest coverage whose precision is at least ``precision`` (0 when none)."""
        ok = self.precision >= precision - 1e-12
        return float(self.coverage[ok].max()) if ok.any() else 0.0

    def threshold_at(self, precision: float) -> float:
        """The lowest threshold whose precision is at least ``precision`` (inf when none: abstain)."""
        ok = self.precision >= precision - 1e-12
        return float(self.threshold[ok].min()) if ok.any() else float("inf")

    def precision_at(self, coverage: float) -> float:
        """Precision of the smallest accepted set covering at least ``coverage`` (NaN when none)."""
        ok = self.coverage >= coverage - 1e-12
        return float(self.precision[np.argmax(ok)]) if ok.any() else float("nan")


def precision_coverage(confidence: np.ndarray, correct: np.ndarray) -> PrecisionCoverage:
    """The precision–coverage curve of top-1 decisions (float [M] confidences, bool [M] correct).

    Pairs with equal confidence are accepted or abstained together (one point per distinct value)."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if len(conf) == 0:
        return PrecisionCoverage(np.zeros(0), np.zeros(0), np.zeros(0))
    order = np.argsort(-conf, kind="stable")
    c, k = conf[order], ok[order]
    hits = np.cumsum(k)
    n = np.arange(1, len(c) + 1)
    last = np.flatnonzero(np.concatenate([c[1:] != c[:-1], [True]]))  # last index of each tie group
    return PrecisionCoverage(c[last], n[last] / len(c), hits[last] / n[last])


@dataclass
class ReliabilityBins:
    """Equal-width confidence bins over [0, 1]; bin b holds confidences in (b/n, (b+1)/n] (0 in bin 0)."""

    edges: np.ndarray  # float64 [n + 1]
    count: np.ndarray  # int64 [n]
    confidence: np.ndarray  # float64 [n]: mean confidence (NaN when empty)
    accuracy: np.ndarray  # float64 [n]: share correct (NaN when empty)

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over bins of (share of pairs) * |accuracy - confidence|."""
        n = self.count.sum()
        if n == 0:
            return float("nan")
        used = self.count > 0
        return float(np.sum(self.count[used] / n * np.abs(self.accuracy[used] - self.confidence[used])))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> ReliabilityBins:
    """Bin top-1 confidences (float [M] in [0, 1]) with their correctness (bool [M])."""
    if n_bins < 1:
        raise MetricsError(f"n_bins must be at least 1, got {n_bins}")
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    ok = np.asarray(correct, dtype=np.float64)
    b = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mc = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=ok, minlength=n_bins) / count
    return ReliabilityBins(np.linspace(0, 1, n_bins + 1), count, mc, acc)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """ECE of top-1 decisions with ``n_bins`` equal-width bins (see :class:`ReliabilityBins`)."""
    return reliability_bins(confidence, correct, n_bins).ece


def _log_scores(scores: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return np.log(np.clip(scores, eps, None))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class TemperatureScaling:
    """One temperature ``T`` for every attribute: ``softmax(logits / T)``, fitted by the NLL of the
    validation pairs' true values (a pair's probability is the mass on all its true values).

    ``from_probabilities=True`` (default) treats scores as probabilities and uses their logs as logits.
    """

    def __init__(self, *, from_probabilities: bool = True) -> None:
        self.from_probabilities = from_probabilities
        self.temperature = 1.0

    def _logits(self, s: np.ndarray) -> np.ndarray:
        return _log_scores(s) if self.from_probabilities else np.asarray(s, dtype=np.float64)

    def fit(self, scores: PairScores) -> "TemperatureScaling":
        from scipy.optimize import minimize_scalar

        data = [(self._logits(b.scores), b.true_indptr, b.true_local) for b in scores.blocks.values() if len(b.pairs)]
        if not data:
            raise MetricsError("temperature scaling needs at least one validation pair")

        def nll(log_t: float) -> float:
            t, tot, n = float(np.exp(log_t)), 0.0, 0
            for z, ip, tl in data:
                p = _softmax(z / t)
                rows = np.repeat(np.arange(len(p)), np.diff(ip))
                mass = np.bincount(rows, weights=p[rows, tl], minlength=len(p))
                tot -= np.log(np.clip(mass, 1e-300, None)).sum()
                n += len(p)
            return tot / n

        res = minimize_scalar(nll, bounds=(np.log(0.02), np.log(50.0)), method="bounded", options={"xatol": 1e-4})
        self.temperature = float(np.exp(res.x))
        return self

    def transform(self, scores: PairScores) -> PairScores:
        return scores.map(lambda b: _softmax(self._logits(b.scores) / self.temperature))


class IsotonicCalibration:
    """A monotone map of the top-1 probability to the validation accuracy (scikit-learn isotonic
    regression). :meth:`transform` sets the chosen candidate's probability to the mapped value and
    scales the others by one factor per row (so that they share the rest, and stay strictly below
    the top): the order of the candidates, hence every rank, is unchanged. In the vector the mapped
    probability is kept within [1e-6, 1 - 1e-6]; :meth:`confidence` gives it unclipped."""

    def __init__(self, *, bounded: bool | str = "bayes", min_block: int = 50, bound: float = 0.95, slack: float = 0.02
                 ) -> None:
        self.model: Any = None
        # bounded: "bayes" (pooled blocks, each (k + 1) / (n + 2): the default, chosen on the cross-fitted ECE of
        # the held-out pairs of every shared catalog), True or "lower" (pooled blocks, each at most its one-sided
        # lower bound + slack), False (scikit-learn's map as it is)
        self.bounded, self.min_block, self.bound, self.slack = bounded, min_block, bound, slack
        self.x_: np.ndarray | None = None  # knots of the final map (confidence -> probability)
        self.y_: np.ndarray | None = None
        self.blocks: list[dict[str, float]] = []  # per block: x range, n, correct, lower bound, stated p

    def fit(self, scores: PairScores) -> "IsotonicCalibration":
        """Isotonic regression of correctness on the top-1 probability, then no block states more than its
        evidence supports: blocks of fewer than ``min_block`` validation pairs are pooled with a neighbour;
        a block of ``n`` pairs with ``k`` right states (k + 1) / (n + 2) (``bounded="bayes"``: 50 of 50 right
        is 0.981, not 1.0) or at most the one-sided ``bound`` Clopper-Pearson lower bound of k/n plus ``slack``
        (``"lower"``: 33 of 33 right: 0.933); blocks whose stated p would fall out of order are pooled (so the
        map stays monotone). Between blocks the map is linear, as scikit-learn's."""
        from scipy.stats import beta
        from sklearn.isotonic import IsotonicRegression

        t = scores.top1()
        if len(t.confidence) == 0:
            raise MetricsError("isotonic calibration needs at least one validation pair")
        order = np.argsort(t.confidence, kind="stable")
        x, ok = np.asarray(t.confidence, np.float64)[order], t.correct.astype(float)[order]
        self.model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, ok)
        if not self.bounded:  # scikit-learn's map as it is
            self.x_, self.y_ = None, None
            return self
        fitted = self.model.predict(x)
        starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])  # contiguous runs of one fitted value
        # blocks as [lo index, hi index (exclusive)], pooled while any is smaller than min_block
        bl = [[int(a), int(b)] for a, b in zip(starts, np.r_[starts[1:], len(x)])]

        def mean(b: list[int]) -> float:
            return float(ok[b[0]:b[1]].mean())

        while len(bl) > 1:
            sizes = [b[1] - b[0] for b in bl]
            i = int(np.argmin(sizes))
            if sizes[i] >= self.min_block:
                break
            if i == 0:
                j = 1
            elif i == len(bl) - 1:
                j = i - 1
            else:  # the neighbour whose accuracy is closer
                j = i - 1 if abs(mean(bl[i - 1]) - mean(bl[i])) <= abs(mean(bl[i + 1]) - mean(bl[i])) else i + 1
            lo, hi = min(i, j), max(i, j)
            bl[lo:hi + 1] = [[bl[lo][0], bl[hi][1]]]

        def lower(n: int, k: int) -> float:
            return float(beta.ppf(1 - self.bound, k, n - k + 1)) if k > 0 else 0.0

        memo: dict[tuple[int, int], float] = {}

        def stated(b: list[int]) -> float:
            key = (b[0], b[1])
            if key not in memo:
                n, k = b[1] - b[0], int(ok[b[0]:b[1]].sum())
                memo[key] = (k + 1) / (n + 2) if self.bounded == "bayes" else min(k / n, lower(n, k) + self.slack)
            return memo[key]

        changed = True
        while changed and len(bl) > 1:  # pool adjacent blocks out of order after the cap (PAVA on stated p)
            changed = False
            for i in range(len(bl) - 1):
                if stated(bl[i]) > stated(bl[i + 1]):
                    bl[i:i + 2] = [[bl[i][0], bl[i + 1][1]]]
                    changed = True
                    break
        xs, ys = [], []
        self.blocks = []
        for b in bl:
            p, n, k = stated(b), b[1] - b[0], int(ok[b[0]:b[1]].sum())
            xs += [x[b[0]], x[b[1] - 1]]
            ys += [p, p]
            self.blocks.append({"x_min": float(x[b[0]]), "x_max": float(x[b[1] - 1]), "n": n, "correct": k,
                                "lower_bound": lower(n, k), "p": p})
        self.x_, self.y_ = np.asarray(xs), np.asarray(ys)
        return self

    def confidence(self, confidence: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise MetricsError("IsotonicCalibration is not fitted")
        c = np.asarray(confidence, dtype=np.float64)
        if getattr(self, "x_", None) is None:  # unbounded, or fitted before the bound existed
            return np.asarray(self.model.predict(c), dtype=np.float64)
        return np.interp(c, self.x_, self.y_)  # clips outside the knots, as out_of_bounds="clip"

    def transform(self, scores: PairScores) -> PairScores:
        def one(b: AttributeScores) -> np.ndarray:
            s = np.asarray(b.scores, dtype=np.float64)
            if len(s) == 0:
                return s.copy()
            r = np.arange(len(s))
            ch = s.argmax(1)
            top = s[r, ch]
            # kept inside (0, 1) in the vector so that no other candidate is scaled to 0 (ties)
            new_top = np.clip(self.confidence(top), 1e-6, 1 - 1e-6)
            rest = np.clip(1.0 - top, 1e-12, None)
            others = s.copy()
            others[r, ch] = -np.inf
            runner = np.clip(others.max(1), 1e-300, None) if s.shape[1] > 1 else np.ones(len(s))
            # share the rest, but keep every other candidate strictly below the new top
            scale = np.minimum(np.clip(1.0 - new_top, 0, 1) / rest, new_top * (1 - 1e-9) / runner)
            out = s * scale[:, None]
            out[r, ch] = new_top
            return out

        return scores.map(one)


CALIBRATORS: dict[str, Any] = {"temperature": TemperatureScaling, "isotonic": IsotonicCalibration,
                               # every block states at most its one-sided 95% lower bound + 0.02: conservative
                               "isotonic-lower": lambda **kw: IsotonicCalibration(**{"bounded": "lower", **kw})}
CALIBRATIONS = ("none", *CALIBRATORS)  # the names a completion model's calibration may take


def get_calibrator(name: str, **kwargs: Any) -> Any:
    """A calibrator by name (``none`` gives None)."""
    if name == "none":
        return None
    if name not in CALIBRATORS:
        raise MetricsError(f"unknown calibrator {name!r}; valid: {', '.join(CALIBRATIONS)}")
    return CALIBRATORS[name](**kwargs)


# -- abstention ------------------------------------------------------------------------------------------
@dataclass
class Abstention:
    """Per-attribute minimum top-1 probability; an attribute without its own uses ``default``."""

    thresholds: dict[int, float]
    default: float
    target: float

    def threshold(self, attribute: np.ndarray) -> np.ndarray:
        return np.array([self.thresholds.get(int(a), self.default) for a in np.asarray(attribute)], dtype=np.float64)

    def apply(self, t: Top1) -> dict[str, float]:
        """Coverage and precision of the accepted decisions of ``t``."""
        acc = t.confidence >= self.threshold(t.attribute)
        n = int(acc.sum())
        return {"coverage": float(acc.mean()) if len(acc) else float("nan"),
                "precision": float(t.correct[acc].mean()) if n else float("nan"), "accepted": n}


def abstention_thresholds(validation: Top1, target: float = 0.98, *, min_pairs: int = 50) -> Abstention:
    """Per attribute, the lowest top-1 probability at which the validation precision reaches ``target``.

    Attributes with fewer than ``min_pairs`` validation pairs share a threshold chosen on all of
    them together (``default``); an attribute that never reaches the target abstains always (inf).
    """
    default = precision_coverage(validation.confidence, validation.correct).threshold_at(target)
    th: dict[int, float] = {}
    for a in np.unique(validation.attribute):
        m = validation.attribute == a
        if m.sum() >= min_pairs:
            th[int(a)] = precision_coverage(validation.confidence[m], validation.correct[m]).threshold_at(target)
    return Abstention(th, default, target)


@dataclass
class CrossFitted:
    """Out-of-fold decisions on held-out pairs: each pair's top-1 probability comes from a calibrator, and its
    accept/abstain decision from thresholds, that were both fitted on the *other* folds' pairs -- so the ECE
    and the precision at threshold they give are measurements, not the fit's own residue."""

    attribute: np.ndarray  # int64 [M]
    pairs: np.ndarray  # int64 [M]
    confidence: np.ndarray  # float64 [M]: out-of-fold calibrated top-1 probability
    correct: np.ndarray  # bool [M]
    accepted: np.ndarray  # bool [M]: it reaches the threshold its fold's complement chose
    pooled: np.ndarray  # bool [M]: that threshold was the pooled one (an attribute with few held-out pairs)
    fold: np.ndarray  # int64 [M]
    folds: int
    calibration: str
    target: float

    def summary(self, n_bins: int = 15) -> dict[str, Any]:
        n, k = len(self.confidence), int(self.accepted.sum())
        return {"folds": self.folds, "calibration": self.calibration, "pairs": n,
                "ece": expected_calibration_error(self.confidence, self.correct, n_bins) if n else float("nan"),
                "top1_accuracy": float(self.correct.mean()) if n else float("nan"),
                "target_precision": self.target, "coverage_at_threshold": k / n if n else float("nan"),
                "precision_at_threshold": float(self.correct[self.accepted].mean()) if k else float("nan"),
                "accepted": k, "pooled_pairs": int(self.pooled.sum()),
                "pooled_precision_at_threshold": (float(self.correct[self.accepted & self.pooled].mean())
                                                  if (self.accepted & self.pooled).any() else float("nan")),
                "pooled_accepted": int((self.accepted & self.pooled).sum())}


def cross_fitted_top1(scores: PairScores, calibration: str = "isotonic", target: float = 0.98, *, folds: int = 5,
                      groups: np.ndarray | None = None, seed: int = 0, min_pairs: int = 50) -> CrossFitted:
    """K-fold cross-fitting of calibration and abstention thresholds on held-out ``scores``.

    Pairs are cut into ``folds`` folds by ``groups[pair]`` (e.g. the pair's product, so that one product's
    pairs stay together; default: the pair itself), seeded. For each fold a calibrator (``calibration``:
    isotonic, temperature or none) and :func:`abstention_thresholds` are fitted on the other folds and
    applied to it. The production calibrator is still the one fitted on all pairs; this measures how such
    a calibrator does on pairs it never saw."""
    raw = scores.top1()
    n = len(raw.pairs)
    g = np.asarray(groups)[raw.pairs] if groups is not None else raw.pairs
    uniq, inv = np.unique(g, return_inverse=True)
    fold = (np.random.default_rng(seed).permutation(len(uniq)) % max(1, folds))[inv].astype(np.int64)
    conf = raw.confidence.astype(np.float64).copy()
    correct = raw.correct.copy()
    accepted = np.zeros(n, bool)
    pooled = np.zeros(n, bool)
    top_pair = int(raw.pairs.max()) + 1 if n else 0
    sorter = np.argsort(raw.pairs, kind="stable")
    for k in range(folds):
        held = fold == k
        if not held.any():
            continue
        rest_mask = np.zeros(top_pair, bool)
        rest_mask[raw.pairs[~held]] = True
        held_mask = np.zeros(top_pair, bool)
        held_mask[raw.pairs[held]] = True
        rest, part = scores.subset(rest_mask), scores.subset(held_mask)
        cal = get_calibrator(calibration)
        if rest.num_pairs == 0:  # a single fold: nothing to fit on; nothing is accepted
            continue
        if cal is not None:
            cal.fit(rest)
            rest, part = cal.transform(rest), cal.transform(part)
        abst = abstention_thresholds(rest.top1(), target, min_pairs=min_pairs)
        t = part.top1()
        at = sorter[np.searchsorted(raw.pairs, t.pairs, sorter=sorter)]
        conf[at], correct[at] = t.confidence, t.correct
        accepted[at] = t.confidence >= abst.threshold(t.attribute)
        pooled[at] = ~np.isin(t.attribute, np.fromiter(abst.thresholds, np.int64, len(abst.thresholds)))
    return CrossFitted(raw.attribute, raw.pairs, conf, correct, accepted, pooled, fold, folds, calibration, target)


# -- one report ----------------------------------------------------------------------------------------
def evaluate(scores: PairScores, *, ks: Sequence[int] = (1, 3), n_bins: int = 15, target_precision: float = 0.98,
             per_attribute: bool = True) -> dict[str, Any]:
    """Filtered ranking, ECE and coverage at ``target_precision`` (on this set's own curve), overall
    and per attribute name. Hits/MRR count facts; ECE and coverage count pairs."""
    ranks, attrs = [], []
    for a, b in sorted(scores.blocks.items()):
        r = filtered_ranks(b.scores, b.true_indptr, b.true_local)
        ranks.append(r)
        attrs.append(np.full(len(r), a, np.int64))
    r = np.concatenate(ranks) if ranks else np.zeros(0)
    ra = np.concatenate(attrs) if attrs else np.zeros(0, np.int64)
    t = scores.top1()

    def one(rr: np.ndarray, conf: np.ndarray, ok: np.ndarray) -> dict[str, Any]:
        d: dict[str, Any] = rank_summary(rr, ks)
        d["pairs"] = int(len(conf))
        d["top1_accuracy"] = float(ok.mean()) if len(ok) else float("nan")
        d["ece"] = expected_calibration_error(conf, ok, n_bins) if len(conf) else float("nan")
        d[f"coverage@{target_precision:g}"] = precision_coverage(conf, ok).coverage_at(target_precision)
        return d

    out = one(r, t.confidence, t.correct)
    if per_attribute:
        out["per_attribute"] = {scores.name(a): one(r[ra == a], t.confidence[t.attribute == a], t.correct[t.attribute == a])
                                for a in sorted(scores.blocks)}
    return out


# -- plots (matplotlib, the `ml` extra) ------------------------------------------------------------------
def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra("plots need matplotlib: pip install 'attrgraph[ml]'") from None
    return plt


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, n_bins: int = 15,
                     target_precision: float = 0.98, title: str = "") -> Path:
    """One PNG with a reliability diagram and a precision–coverage curve per named method.

    ``curves[name] = (confidence float [M], correct bool [M])`` of top-1 decisions.
    """
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    ax1.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    for name, (conf, ok) in curves.items():
        rb = reliability_bins(conf, ok, n_bins)
        used = rb.count > 0
        ax1.plot(rb.confidence[used], rb.accuracy[used], marker="o", ms=3, label=f"{name} (ECE {rb.ece:.3f})")
        pc = precision_coverage(conf, ok)
        ax2.plot(pc.coverage, pc.precision, label=f"{name} (cov@{target_precision:g} {pc.coverage_at(target_precision):.2f})")
    ax1.set(xlabel="top-1 probability", ylabel="accuracy", title="reliability", xlim=(0, 1), ylim=(0, 1))
    ax2.axhline(target_precision, color="grey", lw=1, ls="--")
    ax2.set(xlabel="coverage", ylabel="precision", title="precision–coverage", xlim=(0, 1), ylim=(0.5, 1.005))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if ax is ax1 else "lower left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
