"""Completion: learn from the asserted facts (90% by default; the rest are held out), calibrate on the held-out
facts, rank what is missing.

:func:`fit_predictor` is the production counterpart of the evaluation protocol (``gnn.protocol``):

1. the snapshot's asserted (product, attribute) pairs are split, seeded, into *train* and *valid*
   (``valid_share``, 10% by default; no test, no cold products: nothing is graded here);
2. a completion model chosen by name from :data:`MODELS` (``gnn``, ``tfidf``, ``majority``) is
   fitted on the train pairs (the GNN also early-stops on the valid ones);
3. the valid pairs are scored, a calibrator (isotonic by default) maps top-1 scores to
   probabilities, and per-attribute abstention thresholds reach ``target_precision`` on them; the
   calibration figures reported (ECE, precision and coverage at threshold) are cross-fitted on them
   (5 folds by product: each fold calibrated and thresholded by the others), not the fit's own residue;
4. :meth:`CompletionPredictor.predict` ranks, for every product and every attribute that applies
   to its category (learned from the asserted facts, walking up the tree when the leaf is sparse)
   but has no asserted value, the attribute's candidate values (all brands for ``@brand``), top-k
   with calibrated probabilities and the attribute's threshold.

A model is any object with ``fit(snap, split, *, on=("train",))`` and
``_score_attribute(attribute, products) -> float [M, C_a]`` (probabilities over the attribute's
candidates, as ``gnn.baselines.Baseline``); models that can score a later snapshot without
retraining also have ``rebind(snap) -> model`` (see :meth:`CompletionPredictor.rebind`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GnnError
from .metrics import CALIBRATIONS, Abstention, CrossFitted, PairScores, abstention_thresholds, cross_fitted_top1, evaluate, get_calibrator
from .applicability import applicability_at, learn_applicability
from graph.settings import private_dir

from .safeio import SafeIOError, load_tree, save_tree
from .protocol import BRAND, Applicability, FactSplit, applicable_attributes, make_split
from .snapshot import Snapshot

FORMAT = 2  # 2: gnn.safeio files (1 was a pickle, no longer read)
APPLICABILITY = ("learn", "fixed")  # how a predictor decides which missing slots apply (gnn.applicability)
SCOPES = ("applicable", "all")  # which missing slots predict() ranks


class CompletionError(GnnError):
    """A completion model is unknown, misconfigured, or cannot be applied to a snapshot."""


def _baseline(name: str) -> Callable[..., Any]:
    def make(**kwargs: Any) -> Any:
        from .baselines import get_baseline

        return get_baseline(name, **kwargs)

    return make


def _gnn(**kwargs: Any) -> Any:
    from .model import GnnCompletionModel

    return GnnCompletionModel(**kwargs)


MODELS: dict[str, Callable[..., Any]] = {"gnn": _gnn, "tfidf": _baseline("tfidf"), "majority": _baseline("majority"),
                                         "kge": _baseline("kge")}


def get_model(name: str, **kwargs: Any) -> Any:
    """A completion model by registry name, constructed with ``kwargs``."""
    if name not in MODELS:
        raise CompletionError(f"unknown completion model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


@dataclass
class Candidates:
    """Ranked candidates of ``M`` missing (product, attribute) slots of one snapshot.

    ``candidate[i, j]`` is a node id in the snapshot (a ``value`` node, or a ``brand`` node when
    ``attribute_names[attribute[i]] == "@brand"``); ``-1`` pads rows with fewer than k candidates.
    """

    product: np.ndarray  # int64 [M]: product node ids
    attribute: np.ndarray  # int64 [M]: attribute ids (positions in attribute_names; "@brand" is last)
    candidate: np.ndarray  # int64 [M, k]
    prob: np.ndarray  # float32 [M, k]: calibrated probabilities, best first (NaN for padding)
    threshold: np.ndarray  # float64 [M]: the attribute's abstention threshold (inf: always abstain)
    attribute_names: list[str]

    def __len__(self) -> int:
        return len(self.product)

    @property
    def confident(self) -> np.ndarray:
        """bool [M]: the top candidate reaches the attribute's threshold (target precision)."""
        return self.prob[:, 0] >= self.threshold if len(self) else np.zeros(0, bool)

    def slots(self, snap: Snapshot, *, min_prob: float = 0.0) -> Iterator[dict[str, Any]]:
        """One dict per slot, with keys and display names instead of node ids::

            {"product": "10004", "attribute": "Pattern", "threshold": 0.93,
             "candidates": [{"value": "Solid", "norm": "solid", "p": 0.97}, ...]}

        (for ``@brand`` the candidate's ``norm`` is the brand key). The shape of
        ``kb.Predictions.from_ranked`` (use ``norm`` as the value)."""
        pkeys, brand = snap.nodes["product"], len(self.attribute_names) - 1
        for i in range(len(self)):
            a = int(self.attribute[i])
            recs = snap.nodes["brand" if a == brand else "value"]
            cands = []
            for c, p in zip(self.candidate[i].tolist(), self.prob[i].tolist()):
                if c < 0 or p < min_prob:
                    continue
                r = recs[c]
                if a == brand:
                    cands.append({"value": r.get("name") or r["key"], "norm": r["key"], "p": float(p)})
                else:
                    cands.append({"value": r.get("value") or r["norm"], "norm": r["norm"], "p": float(p)})
            if cands:
                yield {"product": pkeys[int(self.product[i])]["key"], "attribute": self.attribute_names[a],
                       "threshold": float(self.threshold[i]), "candidates": cands}


@dataclass
class CompletionPredictor:
    """A fitted completion model with its calibration, thresholds and applicability."""

    model_name: str
    model: Any
    snapshot_fingerprint: str
    split: FactSplit
    applicability: Applicability
    calibrator: Any
    abstention: Abstention
    config: dict[str, Any]
    validation: dict[str, Any] = field(default_factory=dict)  # metrics on the valid pairs, calibrated
    fit_seconds: float = 0.0
    cross_fitted: CrossFitted | None = None  # out-of-fold calibrated decisions on the valid pairs

    # -- fitting --------------------------------------------------------------------------------
    @classmethod
    def fit(cls, snap: Snapshot, *, model: str = "gnn", model_kwargs: dict[str, Any] | None = None,
            valid_share: float = 0.1, seed: int = 0, calibration: str = "isotonic",
            target_precision: float = 0.98, min_share: float = 0.1, min_products: int = 20,
            applicability: str = "learn", applicability_recall: float = 0.995,
            include_brand: bool = True, progress: Callable[[str], None] | None = None,
            dist: Any = None) -> "CompletionPredictor":
        """Fit ``model`` on ``1 - valid_share`` of the asserted pairs, calibrate on the rest.

        ``dist`` (a ``gnn.distributed.DistContext``): this process is one rank of a data-parallel fit
        (``gnn`` and ``kge`` models); every rank trains, rank 0 alone calibrates and gets the predictor,
        the other ranks get None.

        ``applicability="learn"`` (``gnn.applicability``) chooses, on the valid pairs, the share threshold
        under which ``applicability_recall`` of them count as applicable (at most ``min_share``);
        ``"fixed"`` uses ``min_share`` and ``min_products`` as they are."""
        if applicability not in APPLICABILITY:
            raise CompletionError(f"unknown applicability {applicability!r}; valid: {', '.join(APPLICABILITY)}")
        if not 0 < valid_share < 1:
            raise CompletionError(f"valid_share must be in (0, 1), got {valid_share}")
        if calibration not in CALIBRATIONS:
            raise CompletionError(f"unknown calibration {calibration!r}; valid: {', '.join(CALIBRATIONS)}")
        t0 = time.perf_counter()
        say = progress or (lambda _m: None)
        split = make_split(snap, fractions=(1 - valid_share, valid_share, 0.0), cold_share=0.0, seed=seed,
                           include_brand=include_brand)
        if split.num_pairs == 0:
            raise CompletionError(f"{snap.path}: the snapshot has no asserted facts to learn from")
        m = get_model(model, **(model_kwargs or {}))
        say(f"fitting {model} on {len(split.pairs('train'))} pairs")
        if dist is None:
            m.fit(snap, split, on=("train",))
        else:
            m.fit(snap, split, on=("train",), dist=dist)
            if not dist.is_main:
                return None  # type: ignore[return-value]
        say("calibrating on the held-out pairs")
        valid = split.pairs("valid")
        raw = m.score(valid)
        cal = get_calibrator(calibration)
        if cal is not None and len(valid):
            cal.fit(raw)
            scored = cal.transform(raw)
        else:
            scored = raw
        abst = abstention_thresholds(scored.top1(), target_precision)
        metrics = evaluate(scored, target_precision=target_precision, per_attribute=False) if len(valid) else {}
        cross = None
        if len(valid):
            # A calibrator fitted on these pairs grades itself on them (isotonic: ECE ~0): the calibration
            # figures reported are cross-fitted (gnn.metrics.cross_fitted_top1), the in-sample ones kept apart.
            say("measuring the calibration out of fold")
            cross = cross_fitted_top1(raw, calibration, target_precision, groups=split.product, seed=seed)
            cov = f"coverage@{target_precision:g}"
            metrics["in_sample"] = {"ece": metrics.pop("ece"), cov: metrics.pop(cov)}
            cf = cross.summary()
            metrics.update({"ece": cf["ece"], "precision_at_threshold": cf["precision_at_threshold"],
                            "coverage_at_threshold": cf["coverage_at_threshold"], "cross_fitted": cf})
        if applicability == "learn":
            appl, learned = learn_applicability(snap, split, target_recall=applicability_recall, max_share=min_share)
            metrics["applicability"] = learned.as_dict()
        else:
            appl = applicable_attributes(snap, split, min_share=min_share, min_products=min_products)
        metrics.setdefault("applicability", {})["attributes_per_product"] = float(
            appl.for_products(np.arange(snap.num_nodes("product"))).sum(1).mean())
        cfg = {"model": model, "model_kwargs": _jsonable(model_kwargs or {}), "valid_share": valid_share, "seed": seed,
               "calibration": calibration, "target_precision": target_precision, "min_share": min_share,
               "min_products": min_products, "applicability": applicability,
               "applicability_recall": applicability_recall, "include_brand": include_brand,
               "model_config": _jsonable(m.config()) if hasattr(m, "config") else {}}
        return cls(model, m, snap.fingerprint, split, appl, cal, abst, cfg, metrics, time.perf_counter() - t0, cross)

    # -- prediction -----------------------------------------------------------------------------
    def missing_slots(self, snap: Snapshot, products: np.ndarray | None = None, *, scope: str = "applicable"
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(product ids, attribute ids) of slots without an asserted value, int64 [M] each: the applicable
        ones (``scope="applicable"``), or every attribute the graph knows (``scope="all"``)."""
        if scope not in SCOPES:
            raise CompletionError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
        self._check(snap)
        N, A = snap.num_nodes("product"), self.split.num_attributes
        prods = np.arange(N, dtype=np.int64) if products is None else np.unique(np.asarray(products, dtype=np.int64))
        if scope == "all":
            appl = np.ones((len(prods), A), bool)
        else:
            appl = self.applicability.for_products(prods)  # bool [len(prods), A]
        has = np.zeros((N, A), bool)
        has[self.split.product, self.split.attribute] = True  # every asserted pair, train and valid
        appl &= ~has[prods]
        for a in range(A):  # an attribute without candidates cannot be predicted
            if self.split.num_candidates(a) == 0:
                appl[:, a] = False
        r, a = np.nonzero(appl)
        return prods[r], a.astype(np.int64)

    def predict(self, snap: Snapshot, *, products: np.ndarray | None = None, top_k: int = 5,
                attributes: Sequence[str] | None = None, scope: str = "applicable") -> Candidates:
        """Top-``top_k`` calibrated candidates of every missing slot (of ``products``, of ``attributes``):
        the applicable ones, or with ``scope="all"`` every one the graph knows -- a slot asked for by
        name gets an answer whatever applicability says."""
        if top_k < 1:
            raise CompletionError(f"top_k must be at least 1, got {top_k}")
        if scope == "all" and products is None and attributes is None:
            raise CompletionError("scope='all' ranks every attribute of every product: name the products or the attributes")
        prods, attrs = self.missing_slots(snap, products, scope=scope)
        if attributes is not None:
            want = [self.split.attribute_id(n) for n in attributes]
            keep = np.isin(attrs, want)
            prods, attrs = prods[keep], attrs[keep]
        M = len(prods)
        cand = np.full((M, top_k), -1, np.int64)
        prob = np.full((M, top_k), np.nan, np.float32)
        for a in np.unique(attrs).tolist():
            rows = np.flatnonzero(attrs == a)
            s = np.asarray(self.model._score_attribute(a, prods[rows]), dtype=np.float64)
            s = self._calibrate(a, s)
            k = min(top_k, s.shape[1])
            top = np.argsort(-s, axis=1, kind="stable")[:, :k]
            cand[rows, :k] = self.split.candidates(a)[top]
            prob[rows, :k] = np.take_along_axis(s, top, 1)
        return Candidates(prods, attrs, cand, prob, self.abstention.threshold(attrs), list(self.split.attribute_names))

    def predict_chunks(self, snap: Snapshot, *, products: np.ndarray | None = None, top_k: int = 5,
                       attributes: Sequence[str] | None = None, scope: str = "applicable",
                       chunk_products: int = 100_000) -> Iterator[Candidates]:
        """:meth:`predict`, ``chunk_products`` products at a time (in id order): one :class:`Candidates` per
        chunk, so that the slots of a catalog of millions of products are never held at once. Their
        concatenation equals :meth:`predict` (tests/test_scale.py)."""
        if chunk_products < 1:
            raise CompletionError(f"chunk_products must be at least 1, got {chunk_products}")
        if scope == "all" and products is None and attributes is None:
            raise CompletionError("scope='all' ranks every attribute of every product: name the products or the attributes")
        self._check(snap)
        prods = (np.arange(snap.num_nodes("product"), dtype=np.int64) if products is None
                 else np.unique(np.asarray(products, dtype=np.int64)))
        for lo in range(0, len(prods), chunk_products):
            yield self.predict(snap, products=prods[lo: lo + chunk_products], top_k=top_k, attributes=attributes,
                               scope=scope)

    def predict_to(self, snap: Snapshot, path: str | Path, *, chunk_products: int = 100_000, **kwargs: Any) -> int:
        """Stream :meth:`predict_chunks` to directory ``path`` (created 0700): ``part-<k>.npz`` per chunk
        (``product``, ``attribute``, ``candidate``, ``prob``, ``threshold``; no pickle) and ``parts.json``,
        written last. Returns the number of slots. Read back with :func:`load_predictions`."""
        p = private_dir(path)
        for old in p.glob("part-*.npz"):
            old.unlink()
        (p / "parts.json").unlink(missing_ok=True)
        parts, total = [], 0
        for k, c in enumerate(self.predict_chunks(snap, chunk_products=chunk_products, **kwargs)):
            f = p / f"part-{k:05d}.npz"
            np.savez(f, product=c.product, attribute=c.attribute, candidate=c.candidate, prob=c.prob,
                     threshold=c.threshold)
            os.chmod(f, 0o600)
            parts.append({"file": f.name, "slots": len(c)})
            total += len(c)
        (p / "parts.json").write_text(json.dumps({"snapshot": snap.fingerprint, "slots": total, "parts": parts,
                                                  "attribute_names": list(self.split.attribute_names)}, indent=1),
                                      encoding="utf-8")
        os.chmod(p / "parts.json", 0o600)
        return total

    def _calibrate(self, attribute: int, s: np.ndarray) -> np.ndarray:
        if self.calibrator is None or len(s) == 0:
            return s
        from .metrics import AttributeScores

        M = len(s)
        dummy = AttributeScores(attribute, np.zeros(M, np.int64), s, np.zeros(M + 1, np.int64), np.zeros(0, np.int64))
        return self.calibrator.transform(PairScores({attribute: dummy})).blocks[attribute].scores

    def _check(self, snap: Snapshot) -> None:
        if snap.fingerprint != self.snapshot_fingerprint:
            raise CompletionError(
                f"this predictor was fitted on snapshot {self.snapshot_fingerprint[:12]}, not {snap.fingerprint[:12]} "
                f"({snap.path}); rebind() it to the new snapshot, or fit again")

    # -- reuse on a later snapshot ----------------------------------------------------------------
    @property
    def can_rebind(self) -> bool:
        return hasattr(self.model, "rebind")

    def rebind(self, snap: Snapshot) -> "CompletionPredictor":
        """The same fitted model, calibration and thresholds, applied to a later snapshot ``snap``
        (new products scored inductively from their text and neighbours, without retraining).

        Applicability and the asserted pairs are recomputed from ``snap``. Raises
        :class:`CompletionError` when the model cannot score another snapshot (retrain instead).
        """
        if snap.fingerprint == self.snapshot_fingerprint:
            return self
        if not self.can_rebind:
            raise CompletionError(f"model {self.model_name!r} cannot score another snapshot without retraining")
        cfg = self.config
        split = make_split(snap, fractions=(1 - cfg["valid_share"], cfg["valid_share"], 0.0), cold_share=0.0,
                           seed=cfg["seed"], include_brand=cfg["include_brand"])
        old_names = self.split.attribute_names
        model = self.model.rebind(snap, split)
        # thresholds follow attribute names: ids may differ in the new snapshot
        th = {split.attribute_names.index(old_names[a]): t for a, t in self.abstention.thresholds.items()
              if old_names[a] in split.attribute_names}
        abst = Abstention(th, self.abstention.default, self.abstention.target)
        if cfg.get("applicability", "fixed") == "learn":  # the threshold learned at fit time, recounted here
            appl = applicability_at(snap, split, self.applicability.min_share)
        else:
            appl = applicable_attributes(snap, split, min_share=cfg["min_share"], min_products=cfg["min_products"])
        return CompletionPredictor(self.model_name, model, snap.fingerprint, split, appl, self.calibrator, abst,
                                   cfg, self.validation, self.fit_seconds, getattr(self, "cross_fitted", None))

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the predictor to directory ``path`` (created 0700): ``predictor.json`` with its arrays
        (``predictor.npz``) and weights (``predictor.safetensors``), checksummed (``gnn.safeio``: loading
        never runs code from the file), and a readable ``config.json``."""
        p = private_dir(path)
        meta = {"format": FORMAT, "model": self.model_name, "snapshot": self.snapshot_fingerprint,
                "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "config": self.config,
                "validation": _jsonable(self.validation), "fit_seconds": round(self.fit_seconds, 2),
                "abstention": {"default": _jsonable(self.abstention.default), "target": self.abstention.target,
                               "per_attribute": {self.split.attribute_names[a]: _jsonable(t)
                                                 for a, t in sorted(self.abstention.thresholds.items())}}}
        try:
            save_tree(self, p, "predictor")
        except SafeIOError as e:
            raise CompletionError(f"{p}: the predictor cannot be saved: {e}") from None
        (p / "config.json").write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
        os.chmod(p / "config.json", 0o600)
        (p / "predictor.pkl").unlink(missing_ok=True)  # an older pickle beside it would never be read again
        return p

    @staticmethod
    def load(path: str | Path) -> "CompletionPredictor":
        """Read a predictor :meth:`save` wrote. Raises :class:`CompletionError` naming the file when it is
        missing, damaged, altered after saving, or an old pickle (never unpickled: refit it)."""
        p = Path(path)
        if not (p / "predictor.json").exists():
            if (p / "predictor.pkl").exists():
                raise CompletionError(f"{p / 'predictor.pkl'}: a pickled predictor of an older attrgraph; pickles can "
                                      f"run code when loaded, so it is not read. Fit it again with `attrgraph train`")
            raise CompletionError(f"{p}: no saved predictor (predictor.json); fit one with `attrgraph train`")
        meta = json.loads((p / "config.json").read_text(encoding="utf-8")) if (p / "config.json").exists() else {}
        if meta.get("format", FORMAT) != FORMAT:
            raise CompletionError(f"{p}: predictor format {meta.get('format')!r} is not supported (expected {FORMAT})")
        try:
            obj = load_tree(p, "predictor")
        except SafeIOError as e:
            raise CompletionError(f"the saved predictor cannot be loaded: {e}; fit it again") from None
        if not isinstance(obj, CompletionPredictor):
            raise CompletionError(f"{p / 'predictor.json'}: not a saved CompletionPredictor")
        return obj


def load_predictions(path: str | Path) -> Candidates:
    """The slots :meth:`CompletionPredictor.predict_to` wrote to ``path``, as one :class:`Candidates`."""
    p = Path(path)
    if not (p / "parts.json").exists():
        raise CompletionError(f"{p}: no parts.json (an unfinished or foreign prediction directory)")
    meta = json.loads((p / "parts.json").read_text(encoding="utf-8"))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("product", "attribute", "candidate", "prob", "threshold")}
    for part in meta["parts"]:
        with np.load(p / part["file"], allow_pickle=False) as z:
            for k in cols:
                cols[k].append(z[k])
    if not meta["parts"]:
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 1), np.int64),
                          np.zeros((0, 1), np.float32), np.zeros(0), list(meta["attribute_names"]))
    return Candidates(*(np.concatenate(cols[k]) for k in cols), list(meta["attribute_names"]))


def fit_predictor(snap: Snapshot, **kwargs: Any) -> CompletionPredictor:
    """Keyword-only shortcut for :meth:`CompletionPredictor.fit`."""
    return CompletionPredictor.fit(snap, **kwargs)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


__all__ = ["BRAND", "Candidates", "CompletionError", "CompletionPredictor", "MODELS", "fit_predictor", "get_model",
           "load_predictions"]
