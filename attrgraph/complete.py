"""Completion runs: one call from the graph to validated, explained predictions written back to Neo4j.

``complete()`` (and ``attrgraph complete``) runs these stages, each timed:

1. **lock** — take the completion lock in the database, record a ``(:CompletionRun)``, and recover
   runs that died (marked failed, their uncommitted writes undone: :func:`graph.writeback.undo_run_writes`);
2. **snapshot** — export the graph (``graph.export``) into the work directory;
3. **plan** — per product, a signature of its inputs (content hash, category, brand, asserted facts,
   review rejections); products whose signature changed since the last committed run, plus their
   neighbours through rare shared brands or values, are scored (all with ``full=True``);
4. **features** — text embeddings when the model uses them (cached: only new or changed texts are encoded);
5. **model** — reuse the saved predictor (rebound to the new snapshot) while the share of asserted
   facts it has not seen is below ``retrain_share``, else retrain (policy ``auto``; or ``reuse`` /
   ``retrain``); a retrained model rescores every product unless ``rescore_on_retrain`` is off;
6. **predict** — top-k calibrated candidates of every missing applicable slot of the scored products;
   **extract** (with ``extractor`` configured) — spans of the scored products' titles and descriptions join
   each slot's candidates (``attrgraph.openworld``): a span naming a known value adds to it, a new one is a
   candidate of its own (``new``), proposed to the graph if chosen (``graph.proposals``), always for review
   unless ``accept_new_values``;
7. **validate** — candidates rejected in review are dropped; ``kb.validate`` judges the rest; per
   slot the best candidate that no rule rejects is kept: ``accept`` when the rules accept it and its
   probability reaches the attribute's threshold, ``needs_review`` when a review rule fired or its
   probability is only above ``review_min_p``; otherwise the slot is left empty (abstained);
8. **explain** — neighbouring products that carry the value, the rules passed, the text evidence;
9. **write** — the predictions are staged in batched, lock-fenced transactions (``graph.writeback``),
   then made current, with the earlier predictions they replace and those of scored products that
   this run did not renew retired, in bounded transactions; readers see all of it at once when the
   last transaction marks the run committed (until then the run is pending: none of it is shown);
10. **report** — Markdown + PNG plots and ``predictions.jsonl`` in the run directory.

``engine="spark"`` (``attrgraph complete --engine spark --master local[2]``) runs the snapshot, the text
features, the prediction and the staging of the write on Spark (:mod:`attrgraph.spark`); the rest, and the
commit, stay here; the committed run is the same as with the default ``engine="local"``.

``dry_run=True`` does every stage but takes no lock and writes nothing to the graph (the report
and the would-be predictions still go to the run directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import kb
from graph import ProductGraph
from graph import runs as runs_db
from graph import writeback as wb
from graph.errors import GraphError
from graph.export import export_snapshot, replace_dir
from graph.settings import attrgraph_home, private_dir

Progress = Callable[[str], None]

MODEL_POLICIES = ("auto", "reuse", "retrain")
ENGINES = ("local", "spark")
STAGES = ("lock", "snapshot", "plan", "features", "model", "predict", "extract", "validate", "explain", "write", "report")


class CompleteError(Exception):
    """A completion run could not start or did not finish (the message says which stage and why)."""


class CompletionConfigError(CompleteError):
    """The completion configuration is invalid (the message names the key, the value and what is valid)."""


@dataclass
class CompletionConfig:
    """Everything that defines a completion run; saved (resolved) with every run and every model."""

    # model
    model: str = "gnn"  # a name in gnn.completion.MODELS: gnn | tfidf | majority
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    model_policy: str = "auto"  # auto | reuse | retrain
    retrain_share: float = 0.05  # auto: retrain when this share of asserted facts is new to the model
    rescore_on_retrain: bool = True  # a retrained model rescores every product (not only the changed ones)
    valid_share: float = 0.1
    seed: int = 0
    calibration: str = "isotonic"
    target_precision: float = 0.98
    applicability: str = "learn"  # learn: share threshold chosen on held-out facts (gnn.applicability); fixed
    applicability_recall: float = 0.995  # learn: this share of held-out facts must be deemed applicable
    min_share: float = 0.1  # applicability: an attribute applies where this share of products have it (learn: at most)
    min_products: int = 20  # fixed: a category with fewer products borrows its parent's decision
    include_brand: bool = True
    threads: int | None = None  # torch threads (None: leave as is)
    # text features (for models that read them: gnn)
    text_features: str = "auto"  # auto | always | never
    encoder: str = "minilm"  # minilm | static | char-svd
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    # prediction and validation
    top_k: int = 5
    review_min_p: float = 0.5  # a candidate below the attribute's threshold is stored for review above this
    rules: list[str] = field(default_factory=list)  # rule files or shipped names, e.g. [myntra]
    default_rules: bool = True
    attributes: list[str] | None = None  # only these attributes (None: all)
    # open world: an extractor (``extract.load(path)``) adds spans of the product texts as candidates;
    # a value new to the graph is proposed (graph.proposals) and goes to review unless accept_new_values
    extractor: str | None = None
    extract_top_k: int = 1  # spans per (product, attribute)
    accept_new_values: bool = False
    # explanations
    evidence_neighbours: int = 3
    # incremental
    neighbour_max_degree: int = 50  # a shared brand/value with more products does not make them neighbours
    # write-back and locking
    batch_size: int = 2000
    lock_stale_seconds: float = 120.0
    heartbeat_seconds: float = 15.0
    # where runs, the model, the snapshot and the incremental state live (default $ATTRGRAPH_HOME/completion)
    work_dir: str | None = None
    # where the bulk stages run: local (this process) or spark (attrgraph.spark: snapshot, text features,
    # prediction and write-back staging on a Spark master; the same committed run)
    engine: str = "local"
    spark_master: str = "local[2]"
    spark_partitions: int = 2
    spark_driver_memory: str = "512m"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "configuration") -> None:
        from gnn.completion import MODELS

        def bad(key: str, msg: str) -> CompletionConfigError:
            return CompletionConfigError(f"{where}: {key} = {getattr(self, key)!r}: {msg}")

        if self.model not in MODELS:
            raise bad("model", f"unknown model; valid: {', '.join(MODELS)}")
        if self.engine not in ENGINES:
            raise bad("engine", f"valid: {', '.join(ENGINES)}")
        if not isinstance(self.spark_master, str) or not self.spark_master:
            raise bad("spark_master", "must be a Spark master URL such as local[2] or spark://host:7077")
        if self.model_policy not in MODEL_POLICIES:
            raise bad("model_policy", f"valid: {', '.join(MODEL_POLICIES)}")
        if self.text_features not in ("auto", "always", "never"):
            raise bad("text_features", "valid: auto, always, never")
        from gnn.metrics import CALIBRATIONS

        if self.calibration not in CALIBRATIONS:
            raise bad("calibration", f"valid: {', '.join(CALIBRATIONS)}")
        if self.applicability not in ("learn", "fixed"):
            raise bad("applicability", "valid: learn, fixed")
        for k, lo, hi in (("applicability_recall", 0.5, 1.0), ("retrain_share", 0.0, 1.0), ("valid_share", 0.0, 1.0), ("target_precision", 0.0, 1.0),
                          ("review_min_p", 0.0, 1.0), ("min_share", 0.0, 1.0)):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
                raise bad(k, f"must be a number in [{lo}, {hi}]")
        if not 0 < self.valid_share < 1:
            raise bad("valid_share", "must be in (0, 1)")
        if self.extractor is not None and (not isinstance(self.extractor, str) or not self.extractor.strip()):
            raise bad("extractor", "must be the path of a saved extractor (or null)")
        if not isinstance(self.accept_new_values, bool):
            raise bad("accept_new_values", "must be true or false")
        for k in ("top_k", "batch_size", "min_products", "neighbour_max_degree", "extract_top_k", "spark_partitions"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(k, "must be a positive integer")
        if not isinstance(self.evidence_neighbours, int) or self.evidence_neighbours < 0:
            raise bad("evidence_neighbours", "must be a non-negative integer")
        for k in ("lock_stale_seconds", "heartbeat_seconds"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or v <= 0:
                raise bad(k, "must be a positive number of seconds")
        if self.heartbeat_seconds * 2 > self.lock_stale_seconds:
            raise bad("heartbeat_seconds", f"must be at most half of lock_stale_seconds ({self.lock_stale_seconds})")
        if not isinstance(self.model_kwargs, dict) or not isinstance(self.encoder_kwargs, dict):
            raise CompletionConfigError(f"{where}: model_kwargs and encoder_kwargs must be mappings")
        if not isinstance(self.rules, list) or not all(isinstance(r, str) for r in self.rules):
            raise bad("rules", "must be a list of rule files or shipped rule names")
        if self.attributes is not None and (not isinstance(self.attributes, list)
                                            or not all(isinstance(a, str) for a in self.attributes)):
            raise bad("attributes", "must be a list of attribute names")

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "configuration") -> "CompletionConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CompletionConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                                        f"valid keys: {', '.join(sorted(known))}")
        try:
            cfg = cls.__new__(cls)
            for f in fields(cls):
                default = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
                setattr(cfg, f.name, d.get(f.name, default))
            cfg.validate(where)
        except TypeError as e:
            raise CompletionConfigError(f"{where}: {e}") from None
        return cfg

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "CompletionConfig":
        """A YAML file (``key: value`` per option), then ``overrides`` (None values are ignored)."""
        data: dict[str, Any] = {}
        where = "configuration"
        if path is not None:
            import yaml

            p = Path(path)
            where = str(p)
            if not p.exists():
                raise CompletionConfigError(f"{p}: no such configuration file")
            try:
                loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
            except yaml.YAMLError as e:
                raise CompletionConfigError(f"{p}: not valid YAML: {e}") from None
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise CompletionConfigError(f"{p}: expected a mapping of options, got {type(loaded).__name__}")
            data.update(loaded)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data, where=where)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_signature(self) -> str:
        """What decides whether a saved model fits this configuration."""
        keys = ("model", "model_kwargs", "valid_share", "seed", "calibration", "target_precision", "min_share",
                "min_products", "applicability", "applicability_recall", "include_brand", "text_features", "encoder", "encoder_kwargs")
        d = {k: getattr(self, k) for k in keys}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _work_dir(cfg: CompletionConfig, graph: ProductGraph) -> Path:
    if cfg.work_dir:
        return Path(cfg.work_dir)
    s = graph.client.settings
    key = hashlib.sha256(f"{s.uri}|{s.database or ''}".encode()).hexdigest()[:10]
    return attrgraph_home() / "completion" / key


# -- results -------------------------------------------------------------------------------------------
@dataclass
class WrittenPrediction:
    product: str
    title: str | None
    category: str | None
    attribute: str
    value: str
    norm: str
    p: float
    rank: int
    threshold: float | None
    verdict: str
    rules: list[str]
    violations: list[str]
    neighbours: list[dict[str, Any]]
    support: dict[str, Any]
    text_evidence: str | None
    model_used: dict[str, Any] | None = None  # the model's own account of its score (model_explanations)
    new: bool = False  # a value the graph does not hold yet, extracted from the product's text (a proposal)
    evidence: dict[str, Any] | None = None  # the extracted span: field, start, end, text, confidence, model


@dataclass
class CompletionResult:
    run_id: str
    status: str  # committed | dry_run | failed
    mode: str  # full | incremental
    dry_run: bool
    run_dir: Path
    model: str
    model_version: str
    model_action: str  # trained | reused | rebound
    counts: dict[str, int]
    metrics: dict[str, Any]
    stages: dict[str, float]
    notes: list[str]
    predictions: list[WrittenPrediction]
    report: Path | None = None

    @property
    def seconds(self) -> float:
        return float(sum(self.stages.values()))

    def top(self, n: int = 10, verdict: str | None = "accept") -> list[WrittenPrediction]:
        rows = [p for p in self.predictions if verdict is None or p.verdict == verdict]
        return sorted(rows, key=lambda p: (-p.p, p.product, p.attribute))[:n]

    def showcase(self, n: int = 5, verdict: str | None = "accept", max_share: float = 0.9) -> list[WrittenPrediction]:
        """A spread of ``n`` predictions worth showing: one per attribute, the attributes whose predictions
        in this run take the most distinct values first (a colour, a pattern, a brand before an attribute
        that is nearly always the same), skipping a value that ``max_share`` or more of its category
        already carries; the most probable prediction of each attribute."""
        rows = [p for p in self.predictions if verdict is None or p.verdict == verdict]
        distinct: dict[str, set[str]] = defaultdict(set)
        for p in rows:
            distinct[p.attribute].add(p.norm)

        def trivial(p: WrittenPrediction) -> bool:
            s = p.support or {}
            n_cat = s.get("category_products") or 0
            return bool(n_cat) and (s.get("with_value_in_category") or 0) / n_cat >= max_share

        best: dict[str, WrittenPrediction] = {}
        for p in sorted(rows, key=lambda p: (-p.p, p.product)):
            if p.attribute not in best and not trivial(p):
                best[p.attribute] = p
        order = sorted(best, key=lambda a: (-len(distinct[a]), a))
        return [best[a] for a in order[:n]]


# -- snapshot -> kb catalog -------------------------------------------------------------------------------
def catalog_from_snapshot(snap: Any) -> kb.Catalog:
    """The snapshot's products, leaf categories, brands and asserted facts as a :class:`kb.Catalog`
    (the same facts the model saw: no second read of Neo4j)."""
    from gnn.protocol import leaf_categories

    b = kb.CatalogBuilder()
    cats = snap.nodes["category"]
    sc = snap.edges.get("subcategory_of", np.zeros((2, 0), np.int64))
    parent = {int(c): int(p) for c, p in zip(sc[0].tolist(), sc[1].tolist())}
    for i, c in enumerate(cats):
        b.add_category(c["key"], cats[parent[i]]["key"] if i in parent else None)
    leaf = leaf_categories(snap)
    pbrand = _product_brand(snap)
    brands = snap.nodes["brand"]
    prods = snap.nodes["product"]
    for i, p in enumerate(prods):
        cat = cats[leaf[i]]["key"] if leaf[i] >= 0 else None
        br = brands[pbrand[i]] if pbrand[i] >= 0 else None
        b.add_product(p["key"], cat, br["key"] if br else None, (br.get("name") or br["key"]) if br else None,
                      title=p.get("title") or "")
    vals = snap.nodes["value"]
    hv = snap.edges["has_value"]
    for pi, vi in zip(hv[0].tolist(), hv[1].tolist()):
        v = vals[vi]
        b.add_fact(prods[pi]["key"], v["attribute"], v.get("value") or v["norm"], norm=v["norm"],
                   quantity=v.get("quantity"), unit=v.get("unit"))
    return b.build()


def _product_brand(snap: Any) -> np.ndarray:
    out = np.full(snap.num_nodes("product"), -1, np.int64)
    hb = snap.edges.get("has_brand")
    if hb is not None and hb.shape[1]:
        out[hb[0]] = hb[1]
    return out


# -- incremental planning --------------------------------------------------------------------------------
def product_signatures(snap: Any, rejected: set[tuple[str, str, str]]) -> list[str]:
    """A hash of each product's inputs: content hash, leaf category, brand, asserted facts, review rejections."""
    from gnn.protocol import leaf_categories

    N = snap.num_nodes("product")
    leaf = leaf_categories(snap)
    pbrand = _product_brand(snap)
    hv = snap.edges["has_value"]
    facts: list[list[int]] = [[] for _ in range(N)]
    for pi, vi in zip(hv[0].tolist(), hv[1].tolist()):
        facts[pi].append(vi)
    vals, cats, brands = snap.nodes["value"], snap.nodes["category"], snap.nodes["brand"]
    rej: dict[str, list[str]] = defaultdict(list)
    for p, a, n in rejected:
        rej[p].append(f"{a}\x1f{n}")
    out = []
    for i, rec in enumerate(snap.nodes["product"]):
        h = hashlib.sha1()
        parts = [str(rec.get("hash") or ""), str(rec.get("title") or "") if not rec.get("hash") else "",
                 cats[leaf[i]]["key"] if leaf[i] >= 0 else "", brands[pbrand[i]]["key"] if pbrand[i] >= 0 else ""]
        parts += sorted(f"{vals[v]['attribute']}\x1f{vals[v]['norm']}" for v in facts[i])
        parts += sorted(rej.get(rec["key"], ()))
        h.update("\x1e".join(parts).encode("utf-8", "surrogatepass"))
        out.append(h.hexdigest())
    return out


def neighbours_of(snap: Any, changed: np.ndarray, max_degree: int) -> np.ndarray:
    """bool [N]: products sharing a brand or a value node of at most ``max_degree`` products with a
    changed product (their message-passing inputs changed noticeably; hubs such as ``gender = Men``
    are left out: one more product barely moves a mean over thousands)."""
    N = snap.num_nodes("product")
    out = np.zeros(N, bool)
    for rel in ("has_value", "has_brand"):
        e = snap.edges.get(rel)
        if e is None or not e.shape[1]:
            continue
        deg = np.bincount(e[1], minlength=int(e[1].max()) + 1)
        touched = np.unique(e[1][changed[e[0]]])
        touched = touched[deg[touched] <= max_degree]
        out[e[0][np.isin(e[1], touched)]] = True
    return out & ~changed


@dataclass
class Plan:
    products: np.ndarray  # int64: product ids to score
    mode: str  # full | incremental
    changed: int
    neighbours: int
    skipped: int
    reason: str


def _state_path(work: Path) -> Path:
    return work / "state.json"


def load_state(work: Path) -> dict[str, Any] | None:
    p = _state_path(work)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def save_state(work: Path, run_id: str, keys: Sequence[str], sigs: Sequence[str], model_version: str) -> None:
    p = _state_path(work)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "model_version": model_version,
                               "signatures": dict(zip(keys, sigs))}), encoding="utf-8")
    tmp.replace(p)


def plan_products(snap: Any, sigs: list[str], state: dict[str, Any] | None, last_committed: str | None, *,
                  full: bool, max_degree: int) -> Plan:
    N = snap.num_nodes("product")
    everything = np.arange(N, dtype=np.int64)
    if full:
        return Plan(everything, "full", N, 0, 0, "--full")
    if state is None:
        return Plan(everything, "full", N, 0, 0, "no earlier committed run: everything is new")
    if state.get("run_id") != last_committed:
        return Plan(everything, "full", N, 0, 0,
                    f"the incremental state belongs to run {state.get('run_id')}, the last committed run is "
                    f"{last_committed}: rescoring everything")
    old = state.get("signatures", {})
    keys = [r["key"] for r in snap.nodes["product"]]
    changed = np.fromiter((old.get(k) != s for k, s in zip(keys, sigs)), bool, N)
    nb = neighbours_of(snap, changed, max_degree)
    sel = changed | nb
    return Plan(np.flatnonzero(sel).astype(np.int64), "incremental", int(changed.sum()), int(nb.sum()),
                int(N - sel.sum()), f"{int(changed.sum())} new or changed products, {int(nb.sum())} neighbours")


# -- the model -------------------------------------------------------------------------------------------
def _fact_hashes(snap: Any) -> np.ndarray:
    """uint64 hashes of every asserted (product, attribute, value) and brand fact, sorted."""
    prods, vals, brands = snap.nodes["product"], snap.nodes["value"], snap.nodes["brand"]
    out = []
    hv = snap.edges["has_value"]
    for pi, vi in zip(hv[0].tolist(), hv[1].tolist()):
        out.append(f"{prods[pi]['key']}\x1f{vals[vi]['attribute']}\x1f{vals[vi]['norm']}")
    hb = snap.edges.get("has_brand", np.zeros((2, 0), np.int64))
    for pi, bi in zip(hb[0].tolist(), hb[1].tolist()):
        out.append(f"{prods[pi]['key']}\x1f@brand\x1f{brands[bi]['key']}")
    h = np.fromiter((int.from_bytes(hashlib.blake2b(s.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
                     for s in out), np.uint64, len(out))
    return np.unique(h)


def uses_text_features(cfg: CompletionConfig) -> bool:
    if cfg.text_features == "always":
        return True
    if cfg.text_features == "never":
        return False
    if cfg.model != "gnn":
        return False
    return cfg.model_kwargs.get("text_feature", "text") is not None


def _fit(snap: Any, cfg: CompletionConfig, say: Progress) -> Any:
    from gnn.completion import CompletionPredictor

    kw = dict(cfg.model_kwargs)
    if cfg.model == "gnn" and cfg.threads is not None:
        kw.setdefault("threads", cfg.threads)
    if cfg.model == "gnn" and cfg.text_features == "never":
        kw.setdefault("text_feature", None)
    return CompletionPredictor.fit(snap, model=cfg.model, model_kwargs=kw, valid_share=cfg.valid_share,
                                   seed=cfg.seed, calibration=cfg.calibration,
                                   target_precision=cfg.target_precision, min_share=cfg.min_share,
                                   min_products=cfg.min_products, applicability=cfg.applicability,
                                   applicability_recall=cfg.applicability_recall, include_brand=cfg.include_brand,
                                   progress=say)


def _valid_top1(pred: Any) -> dict[str, np.ndarray]:
    """Top-1 decisions on the held-out (valid) pairs of the fit, never training facts, calibrated and
    thresholded out of fold (``gnn.metrics.cross_fitted_top1``): what the report's ECE, reliability and
    precision-coverage show is measured on pairs the calibrator and the thresholds did not see."""
    from gnn.metrics import cross_fitted_top1

    cf = getattr(pred, "cross_fitted", None)
    if cf is None:  # a predictor saved before cross-fitting: cross-fit now
        valid = pred.split.pairs("valid")
        if not len(valid):
            z = np.zeros(0, bool)
            return {"attribute": np.zeros(0, np.int64), "confidence": np.zeros(0), "correct": z, "accepted": z,
                    "pooled": z}
        cf = cross_fitted_top1(pred.model.score(valid), pred.config.get("calibration", "isotonic"),
                               pred.abstention.target, groups=pred.split.product, seed=pred.config.get("seed", 0))
    return {"attribute": cf.attribute, "confidence": cf.confidence, "correct": cf.correct, "accepted": cf.accepted,
            "pooled": cf.pooled}


def _model_version(cfg: CompletionConfig, fingerprint: str, fitted_at: str) -> str:
    return f"{cfg.model}-{cfg.model_signature()[:8]}-{fingerprint[:8]}-{fitted_at}"


@dataclass
class ModelChoice:
    predictor: Any
    version: str
    action: str  # trained | reused | rebound
    reason: str
    valid_top1: dict[str, np.ndarray]
    new_fact_share: float | None


def choose_model(snap: Any, cfg: CompletionConfig, model_dir: Path, say: Progress) -> ModelChoice:
    """Reuse or retrain, per ``cfg.model_policy`` (see the module docstring). A retrained model is saved
    to ``model_dir`` (replaced whole: a crash leaves the old one)."""
    from gnn.completion import CompletionError, CompletionPredictor
    from gnn.errors import GnnError

    facts = _fact_hashes(snap)
    meta_f = model_dir / "meta.json"
    reason = ""
    share = None
    if cfg.model_policy != "retrain" and meta_f.exists():
        meta = json.loads(meta_f.read_text(encoding="utf-8"))
        if meta.get("signature") != cfg.model_signature():
            reason = "the saved model was made with another configuration"
        else:
            old = np.load(model_dir / "facts.npy", allow_pickle=False)
            share = float(np.isin(facts, old, invert=True).mean()) if len(facts) else 0.0
            if cfg.model_policy == "auto" and share >= cfg.retrain_share:
                reason = f"{share:.1%} of the asserted facts are new to the model (retrain_share {cfg.retrain_share:.1%})"
            else:
                try:
                    pred = CompletionPredictor.load(model_dir)
                    action = "reused" if pred.snapshot_fingerprint == snap.fingerprint else "rebound"
                    say(f"model: {action} {meta['version']} ({share:.1%} new facts)")
                    pred = pred.rebind(snap)
                    vt = dict(np.load(model_dir / "valid_top1.npz", allow_pickle=False))
                    if "accepted" not in vt:  # saved before the calibration was cross-fitted
                        vt = _valid_top1(pred)
                    return ModelChoice(pred, meta["version"], action,
                                       f"{share:.2%} of the facts are new (below {cfg.retrain_share:.1%})", vt, share)
                except (CompletionError, GnnError, OSError, ValueError) as e:
                    if cfg.model_policy == "reuse":
                        raise CompleteError(f"model policy 'reuse': the saved model in {model_dir} cannot be "
                                            f"used: {e}") from None
                    reason = f"the saved model cannot score this snapshot ({e})"
    elif cfg.model_policy == "reuse":
        raise CompleteError(f"model policy 'reuse' but there is no saved model in {model_dir}; "
                            f"run once with model_policy auto or retrain")
    else:
        reason = "no saved model" if cfg.model_policy != "retrain" else "model policy 'retrain'"
    say(f"model: training {cfg.model} ({reason})")
    pred = _fit(snap, cfg, say)
    fitted_at = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    version = _model_version(cfg, snap.fingerprint, fitted_at)
    vt = _valid_top1(pred)
    tmp = model_dir.with_name(model_dir.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    pred.save(tmp)
    np.save(tmp / "facts.npy", facts)
    np.savez(tmp / "valid_top1.npz", **vt)
    (tmp / "meta.json").write_text(json.dumps({"version": version, "signature": cfg.model_signature(),
                                               "snapshot": snap.fingerprint, "config": cfg.to_dict()},
                                              indent=1, default=str), encoding="utf-8")
    private_dir(model_dir.parent)
    replace_dir(tmp, model_dir)
    return ModelChoice(pred, version, "trained", reason, vt, share)


# -- validation and choice per slot ------------------------------------------------------------------------
@dataclass
class Chosen:
    slot: dict[str, Any]  # from Candidates.slots (product, attribute, threshold, candidates)
    cand: dict[str, Any]  # the chosen candidate (value, norm, p)
    rank: int
    verdict: str
    violations: list[str]
    row: int  # row in the validated Predictions


@dataclass
class Judgement:
    chosen: list[Chosen]
    counts: Counter
    verdicts: Any  # kb.Verdicts
    candidate_counts: dict[str, int]
    # extracted candidates new to the graph that a rule rejected: product, attribute, value, evidence, reasons
    rejected_new: list[dict[str, Any]] = field(default_factory=list)


def judge_slots(slots: list[dict[str, Any]], ctx: kb.Context, cfg: CompletionConfig,
                rejected: set[tuple[str, str, str]]) -> Judgement:
    counts: Counter = Counter()
    kept_slots = []
    for s in slots:
        ranks = [j for j, c in enumerate(s["candidates"]) if (s["product"], s["attribute"], c["norm"]) not in rejected]
        cands = [s["candidates"][j] for j in ranks]
        counts["review_rejected"] += len(s["candidates"]) - len(cands)
        if cands:
            kept_slots.append({**s, "candidates": cands, "ranks": ranks})
        else:
            counts["abstained"] += 1
    preds = kb.Predictions.from_ranked(
        {"product": s["product"], "attribute": s["attribute"], "candidates": [(c["norm"], c["p"]) for c in s["candidates"]]}
        for s in kept_slots)
    verdicts = kb.validate(preds, ctx)
    status = verdicts.status
    chosen: list[Chosen] = []
    rejected_new: list[dict[str, Any]] = []
    row = 0
    for s in kept_slots:
        n = len(s["candidates"])
        for j, c in enumerate(s["candidates"]):
            if c.get("new") and status[row + j] == 2:
                counts["new_rejected"] += 1
                rejected_new.append({"product": s["product"], "attribute": s["attribute"], "value": c["value"],
                                     "p": round(float(c["p"]), 4), "evidence": c.get("evidence"),
                                     "reasons": [{"rule": r.rule, "message": r.message}
                                                 for r in verdicts.reasons(row + j) if r.severity == "reject"]})
        # from_ranked re-sorts by score: candidates are already best first, so rows follow them
        pick = None
        for j in range(n):
            if status[row + j] != 2:
                pick = j
                break
        top_rejected = status[row] == 2
        if top_rejected:
            counts["rejected"] += 1
        if pick is None:
            row += n
            continue
        c = s["candidates"][pick]
        i = row + pick
        rank = s["ranks"][pick]  # in the model's ranking (a reviewer's rejection removes candidates above it)
        th = s["threshold"]
        viol = [r.message for r in verdicts.reasons(i)]
        if rank > 0 and c["p"] >= cfg.review_min_p:
            # only the top-1 probability is calibrated (and thresholded): a lower-ranked pick, after a rule or a
            # reviewer ruled out the candidates above it, is never accepted on its own
            verdict = "needs_review"
            viol.append(f"rank {rank + 1} in the model's ranking: the candidates above it were ruled out, and only "
                        f"top-1 probabilities are calibrated")
        elif rank > 0:
            counts["abstained"] += 1
            row += n
            continue
        elif status[i] == 0 and c["p"] >= th:
            verdict = "accept"
        elif c["p"] >= cfg.review_min_p and (status[i] == 1 or c["p"] < th):
            verdict = "needs_review"
            if c["p"] < th:
                viol.append(f"probability {c['p']:.3f} is below the threshold of {s['attribute']} "
                            f"({'never confident enough' if not np.isfinite(th) else f'{th:.3f}'}, target precision "
                            f"{cfg.target_precision:g})")
        else:
            counts["abstained"] += 1
            row += n
            continue
        if c.get("new") and verdict == "accept" and not cfg.accept_new_values:
            verdict = "needs_review"
            viol.append("a value new to the graph, extracted from the product's text: new values go to review "
                        "(accept_new_values: false)")
        counts[verdict] += 1
        chosen.append(Chosen(s, c, rank, verdict, viol, i))
        row += n
    cc = verdicts.counts() if len(preds) else {"accept": 0, "needs_review": 0, "reject": 0}
    return Judgement(chosen, counts, verdicts, cc, rejected_new)


def rules_passed(ctx: kb.Context, verdicts: Any, rows: Sequence[int], attributes: Sequence[str]) -> list[list[str]]:
    """Per row: the ids of the rules that applied to it (scope and attribute), could have fired on it
    (``Compiled.could_fire``: a rule that no value of the slot could break is no evidence) and were not broken."""
    if not len(rows):
        return []
    krows = verdicts.rows
    violated: dict[int, set[int]] = defaultdict(set)
    for r, k in zip(verdicts.v_rows.tolist(), verdicts.v_rules.tolist()):
        violated[r].add(k)
    info = []
    for k, c in enumerate(ctx.compiled):
        ment = {a for a, _ in c.rule.rule_type.mentions(c.rule.params)}
        scope_ok = krows.take_category(c.scope, False) if c.scope is not None else None
        info.append((k, c.rule.id, c.rule.type, ment, scope_ok, c.could_fire(krows)))
    out = []
    for i, attr in zip(rows, attributes):
        ids = []
        for k, rid, typ, ment, scope_ok, teeth in info:
            if k in violated.get(i, ()):
                continue
            if (scope_ok is not None and not scope_ok[i]) or not teeth[i]:
                continue
            if typ == "brand_category" and attr != wb.BRAND:
                continue
            if ment and attr not in ment:
                continue
            ids.append(rid)
        out.append(ids)
    return out


# -- explanations -----------------------------------------------------------------------------------------
def model_explanations(pred: Any, snap: Any, items: list[tuple[int, str, int]]) -> list[dict[str, Any] | None]:
    """Per (product id, attribute name, chosen value or brand node): the model's own account of its score
    (``GnnCompletionModel.explain``: margin over the runner-up split into decoder, text prior and mentions;
    the text features that moved the prior), with the runner-up named; None for a model without one."""
    from gnn.errors import GnnError

    out: list[dict[str, Any] | None] = [None] * len(items)
    model = getattr(pred, "model", None)
    if model is None or not hasattr(model, "explain") or not items:
        return out
    sp = pred.split
    by_attr: dict[str, list[int]] = defaultdict(list)
    for i, (_, a, _) in enumerate(items):
        by_attr[a].append(i)
    for name, rows in by_attr.items():
        try:
            a = sp.attribute_id(name)
        except GnnError:  # an attribute the model does not know (ProtocolError)
            continue
        cands = np.asarray(sp.candidates(a))
        pos = {int(c): j for j, c in enumerate(cands.tolist())}
        keep = [i for i in rows if int(items[i][2]) in pos]
        if not keep:
            continue
        res = model.explain(a, np.array([items[i][0] for i in keep], np.int64),
                            np.array([pos[int(items[i][2])] for i in keep], np.int64))
        recs = snap.nodes["brand" if name == wb.BRAND else "value"]
        for i, d in zip(keep, res):
            if "runner_up" in d:
                r = recs[int(cands[d["runner_up"]])]
                d["runner_up"] = r.get("name") or r.get("value") or r.get("key") or r.get("norm")
            out[i] = d or None
    return out


class Explainer:
    """Neighbouring products that carry a predicted value, and the text that mentions it."""

    def __init__(self, snap: Any, k: int):
        import scipy.sparse as sp
        from gnn.protocol import leaf_categories

        self.snap, self.k = snap, k
        N, V = snap.num_nodes("product"), snap.num_nodes("value")
        hv = snap.edges["has_value"]
        self.leaf = leaf_categories(snap)
        self.brand = _product_brand(snap)
        self.X = sp.csr_matrix((np.ones(hv.shape[1], np.float32), (hv[0], hv[1])), shape=(N, V))
        self.by_value = self.X.tocsc()
        hb = snap.edges.get("has_brand", np.zeros((2, 0), np.int64))
        self.by_brand = sp.csr_matrix((np.ones(hb.shape[1], np.float32), (hb[1], hb[0])),
                                      shape=(snap.num_nodes("brand"), N))
        self.leaf_size = np.bincount(self.leaf[self.leaf >= 0], minlength=snap.num_nodes("category"))
        self.texts: list[str] | None = None
        self._pats: dict[str, re.Pattern[str]] = {}

    def holders(self, attribute: str, node: int) -> np.ndarray:
        if attribute == wb.BRAND:
            return self.by_brand.indices[self.by_brand.indptr[node]:self.by_brand.indptr[node + 1]]
        return self.by_value.indices[self.by_value.indptr[node]:self.by_value.indptr[node + 1]]

    def neighbours(self, items: list[tuple[int, str, int]]) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """For (product id, attribute, value or brand node id): up to k supporting products, and counts."""
        out: list[Any] = [None] * len(items)
        groups: dict[tuple[str, int, int], list[int]] = defaultdict(list)
        for i, (p, a, node) in enumerate(items):
            groups[(a, node, int(self.leaf[p]))].append(i)
        prods = self.snap.nodes["product"]
        cats = self.snap.nodes["category"]
        for (a, node, leaf), idx in groups.items():
            holders = self.holders(a, node)
            in_leaf = holders[self.leaf[holders] == leaf] if leaf >= 0 else holders[:0]
            support = {"with_value": int(len(holders)), "with_value_in_category": int(len(in_leaf)),
                       "category": cats[leaf]["key"] if leaf >= 0 else None,
                       "category_products": int(self.leaf_size[leaf]) if leaf >= 0 else 0}
            pool = in_leaf if len(in_leaf) >= self.k else holders
            if len(pool) > 2000:  # bounded work per group: a deterministic spread of the holders
                pool = pool[np.linspace(0, len(pool) - 1, 2000).astype(np.int64)]
            ps = np.array([items[i][0] for i in idx], np.int64)
            if len(pool) and self.k:
                shared = (self.X[pool] @ self.X[ps].T).toarray()  # [pool, preds]: shared asserted facts
                score = shared + 2.0 * (self.leaf[pool] == leaf)[:, None] + \
                    1.0 * ((self.brand[pool][:, None] == self.brand[ps][None, :]) & (self.brand[ps][None, :] >= 0))
                score[pool[:, None] == ps[None, :]] = -np.inf
            for j, i in enumerate(idx):
                nb: list[dict[str, Any]] = []
                if len(pool) and self.k:
                    col = score[:, j]
                    top = np.argsort(-col, kind="stable")[: self.k]
                    for t in top.tolist():
                        if not np.isfinite(col[t]):
                            continue
                        q = int(pool[t])
                        why = []
                        if self.leaf[q] == leaf and leaf >= 0:
                            why.append("same category")
                        if self.brand[q] >= 0 and self.brand[q] == self.brand[ps[j]]:
                            why.append("same brand")
                        if shared[t, j] > 0:
                            why.append(f"{int(shared[t, j])} shared facts")
                        nb.append({"id": prods[q]["key"], "title": prods[q].get("title"), "why": ", ".join(why)})
                out[i] = (nb, support)
        return out

    def text_evidence(self, p: int, forms: Iterable[str]) -> str | None:
        if self.texts is None:
            self.texts = self.snap.texts("product", max_chars=10**9)
        text = self.texts[p]
        low = text.casefold()
        for f in forms:
            f = (f or "").strip()
            if len(f) < 2 or f.casefold() not in low:
                continue
            pat = self._pats.get(f)
            if pat is None:
                pat = self._pats[f] = re.compile(r"(?<!\w)" + re.escape(f) + r"(?!\w)", re.IGNORECASE)
            m = pat.search(text)
            if m:
                lo, hi = max(0, m.start() - 40), min(len(text), m.end() + 40)
                return ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else "")
        return None


# -- engines: where the bulk stages run -------------------------------------------------------------------
class LocalEngine:
    """The bulk stages in this process (the default): ``graph.export``, ``attrgraph.features``,
    ``CompletionPredictor.predict``, ``graph.writeback.write_predictions``. ``attrgraph.spark.SparkEngine``
    has the same methods and gives the same results."""

    name = "local"

    def export(self, client: Any, out_dir: Path) -> Any:
        return export_snapshot(client, out_dir)

    def text_features(self, snap: Any, cfg: Any) -> Any:
        from .features import compute_text_features

        return compute_text_features(snap, cfg)

    def predict(self, pred: Any, snap: Any, model_dir: Path, *, products: np.ndarray, top_k: int,
                attributes: Sequence[str] | None) -> Any:
        return pred.predict(snap, products=products, top_k=top_k, attributes=attributes)

    def stage(self, client: Any, run_id: str, rows: Sequence[wb.PredictionRow], *, model: str, model_version: str,
              batch_size: int, on_batch: Callable[[int, int], None] | None = None) -> wb.StageResult:
        return wb.write_predictions(client, run_id, rows, model=model, model_version=model_version,
                                    batch_size=batch_size, on_batch=on_batch)

    def close(self) -> None:
        pass


def get_engine(cfg: CompletionConfig) -> Any:
    """The engine ``cfg.engine`` names (``spark`` needs the ``attrgraph[spark]`` extra)."""
    if cfg.engine == "spark":
        from .spark import SparkEngine, SparkOptions

        return SparkEngine(SparkOptions(master=cfg.spark_master, partitions=cfg.spark_partitions,
                                        driver_memory=cfg.spark_driver_memory))
    return LocalEngine()


# -- the run ---------------------------------------------------------------------------------------------
class _Stages:
    def __init__(self, say: Progress):
        self.times: dict[str, float] = {}
        self.current = "start"
        self.say = say

    def __call__(self, name: str) -> "_Stages":
        self.current = name
        return self

    def __enter__(self) -> "_Stages":
        self.t0 = time.perf_counter()
        self.say(f"[{self.current}]")
        return self

    def __exit__(self, *exc: object) -> None:
        self.times[self.current] = self.times.get(self.current, 0.0) + time.perf_counter() - self.t0


def _redact(msg: str, graph: ProductGraph | None) -> str:
    """Error text without credentials (the password never reaches logs, reports or the run record)."""
    if graph is not None:
        pw = graph.client.settings.password
        if pw:
            msg = msg.replace(pw, "***")
    return msg


def _is_connection_error(e: BaseException) -> bool:
    from neo4j.exceptions import ServiceUnavailable, SessionExpired

    return isinstance(e, (ServiceUnavailable, SessionExpired, ConnectionError, OSError)) or \
        "ServiceUnavailable" in type(e).__name__ or "defunct" in str(e).lower()


def complete(graph: ProductGraph | None = None, *, config: CompletionConfig | str | Path | None = None,
             full: bool = False, dry_run: bool = False, progress: Progress | None = None,
             own_runs: set[str] | None = None, **overrides: Any) -> CompletionResult:
    """Run one completion over ``graph`` (default: ``ProductGraph.connect()``).

    ``config`` is a :class:`CompletionConfig`, or a YAML file; ``overrides`` replace single options
    (``model="majority"``, ``rules=["myntra"]`` ...). Raises :class:`CompleteError` (with the stage
    and the reason) when the run fails; the run is then recorded as failed when the database is
    reachable, and in any case the next run recovers it.
    """
    if isinstance(config, CompletionConfig):
        cfg = CompletionConfig.from_dict({**config.to_dict(), **{k: v for k, v in overrides.items() if v is not None}})
    else:
        cfg = CompletionConfig.load(config, **overrides)
    own = graph is None
    if own:
        graph = ProductGraph.connect()
    try:
        return _Run(graph, cfg, full=full, dry_run=dry_run, say=progress or (lambda _m: None),
                    own_runs=own_runs).run()
    finally:
        if own:
            graph.close()


class _Run:
    def __init__(self, graph: ProductGraph, cfg: CompletionConfig, *, full: bool, dry_run: bool, say: Progress,
                 own_runs: set[str] | None):
        self.g, self.cfg, self.full, self.dry_run, self.say = graph, cfg, full, dry_run, say
        self.client = graph.client
        self.work = _work_dir(cfg, graph)
        self.run_id = runs_db.new_run_id()
        self.run_dir = self.work / "runs" / self.run_id
        self.stages = _Stages(say)
        self.notes: list[str] = []
        self.locked = False
        self.own_runs = own_runs
        self.engine = get_engine(cfg)

    # the whole run ----------------------------------------------------------------------------------------
    def run(self) -> CompletionResult:
        private_dir(self.work)
        private_dir(self.run_dir)
        (self.run_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=1, default=str), encoding="utf-8")
        if self.cfg.threads:
            try:
                import torch

                torch.set_num_threads(self.cfg.threads)
            except ImportError:
                pass
        try:
            return self._run()
        except BaseException as e:  # noqa: BLE001 - record every failure (Ctrl-C and SIGTERM too), then re-raise
            self._fail(e)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(e, CompleteError):
                raise
            stage = self.stages.current
            msg = _redact(f"{type(e).__name__}: {e}", self.g)
            if _is_connection_error(e):
                s = self.client.settings
                msg = (f"Neo4j at {s.uri} became unreachable during stage {stage!r} ({msg}). The run {self.run_id} is "
                       f"{'marked failed' if getattr(self, '_failed_recorded', False) else 'left running in the graph'}; "
                       f"the next run marks it failed and undoes its partial writes, so rerunning converges.")
                raise CompleteError(msg) from None
            raise CompleteError(f"completion run {self.run_id} failed at stage {stage!r}: {msg}") from e

    def _fail(self, e: BaseException) -> None:
        err = _redact(f"{type(e).__name__}: {e}", self.g)
        record = {"run_id": self.run_id, "status": "failed", "stage": self.stages.current, "error": err,
                  "stages": self.stages.times}
        self._failed_recorded = False
        # with the database gone, cleanup would only wait for the driver's retries: the next run recovers
        if self.locked and not _is_connection_error(e):
            try:
                runs_db.finish_run(self.client, self.run_id, status="failed", error=f"stage {self.stages.current}: {err}",
                                   stages=self.stages.times, extra={"cleaned": False})
                self._failed_recorded = True
                wb.undo_run_writes(self.client, self.run_id, holder=self.run_id)
                runs_db.update_run(self.client, self.run_id, {"cleaned": True})
                runs_db.release(self.client, self.run_id)
                record["cleaned"] = True
            except Exception as e2:  # noqa: BLE001 - the database may be the reason of the failure
                record["cleanup_error"] = _redact(f"{type(e2).__name__}: {e2}", self.g)
        runs_db.ACTIVE.discard(self.run_id)
        try:
            (self.run_dir / "run.json").write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
        except OSError:
            pass

    def _recover(self) -> list[str]:
        done = []
        for r in wb.recover_dead_runs(self.client, self.run_id):
            done.append(r.run_id)
            self.notes.append(f"recovered run {r.run_id}: marked failed, {r.deleted} uncommitted predictions removed, "
                              f"{r.restored} earlier predictions it was replacing kept current")
        return done

    def _run(self) -> CompletionResult:
        cfg, st = self.cfg, self.stages
        counts: Counter = Counter()
        with st("lock"):
            self.g.ensure_schema()
            if not self.dry_run:
                acq = runs_db.acquire(self.client, self.run_id, stale_seconds=cfg.lock_stale_seconds,
                                      mode="full" if self.full else "incremental", config=cfg.to_dict(),
                                      run_dir=str(self.run_dir), own_runs=self.own_runs)
                self.locked = True
                if self.own_runs is not None:
                    self.own_runs.add(self.run_id)
                if acq.took_over:
                    self.notes.append(f"took over the stale lock of run {acq.took_over.holder}")
                self._recover()
        hb = runs_db.Heartbeat(self.client, self.run_id, every=cfg.heartbeat_seconds) if self.locked else None
        if hb:
            hb.__enter__()
        try:
            return self._stages(counts, hb)
        finally:
            if hb:
                hb.__exit__(None, None, None)

    def _stages(self, counts: Counter, hb: Any) -> CompletionResult:
        from gnn.snapshot import load_snapshot

        cfg, st, say = self.cfg, self.stages, self.say
        with st("snapshot"):
            snap_dir = self.work / "snapshot"
            self.engine.export(self.client, snap_dir)
            snap = load_snapshot(snap_dir)
            counts["products"] = snap.num_nodes("product")
        with st("plan"):
            rejected = wb.rejected_values(self.client)
            sigs = product_signatures(snap, rejected)
            last = runs_db.last_committed(self.client)
            state = load_state(self.work)
            plan = plan_products(snap, sigs, state, last.id if last else None, full=self.full,
                                 max_degree=cfg.neighbour_max_degree)
        with st("features"):
            if uses_text_features(cfg):
                from .features import TextFeatureConfig

                # a catalog-fitted encoder (char-svd) is fitted once per work directory: a model reused by
                # later runs must see features in the basis it was trained on
                rep = self.engine.text_features(snap, TextFeatureConfig(encoder=cfg.encoder, encoder_kwargs=cfg.encoder_kwargs,
                                                                        fitted_dir=str(self.work / "encoders")))
                self.notes.append(f"text features: {rep.texts} texts, {rep.encoded} encoded, {rep.cached} from the cache")
        with st("model"):
            model_dir = self.work / "model"
            mc = choose_model(snap, cfg, model_dir, say)
            pred = mc.predictor
            self.notes.append(f"model {mc.action}: {mc.reason}")
            if mc.action == "trained" and plan.mode == "incremental" and cfg.rescore_on_retrain:
                plan = Plan(np.arange(snap.num_nodes("product"), dtype=np.int64), "full", plan.changed, 0, 0,
                            "the model was retrained: every product is rescored")
        self.notes.append(f"plan: {plan.mode} — {plan.reason}; {len(plan.products)} products scored, "
                          f"{plan.skipped} skipped")
        counts["products_scored"] = len(plan.products)
        counts["products_skipped"] = plan.skipped
        with st("predict"):
            attrs = None
            if cfg.attributes is not None:
                known = set(pred.split.attribute_names)
                bad = [a for a in cfg.attributes if a not in known]
                if bad:
                    raise CompletionConfigError(f"attributes: unknown attribute(s) {bad}; known: "
                                                f"{', '.join(sorted(known)[:30])}")
                attrs = cfg.attributes
            cands = self.engine.predict(pred, snap, model_dir, products=plan.products, top_k=cfg.top_k, attributes=attrs)
            slots = list(cands.slots(snap))
            counts["slots"] = len(cands)
        spans: dict[tuple[str, str], list[Any]] = {}
        if cfg.extractor:
            with st("extract"):
                from .openworld import extract_spans, known_values, load_extractor, product_texts, with_spans

                extractor = load_extractor(cfg.extractor)
                want: dict[str, list[str]] = defaultdict(list)  # only the slots the model ranks: missing, applicable
                for s in slots:
                    want[s["product"]].append(s["attribute"])
                spans = extract_spans(extractor, product_texts(snap, plan.products),
                                      sorted({s["attribute"] for s in slots}), top_k=cfg.extract_top_k,
                                      slots=dict(want), known=known_values(snap))
                slots = with_spans(slots, spans, stacker=getattr(extractor, "stacker", None))
                counts["spans"] = sum(len(v) for v in spans.values())
                counts["new_candidates"] = sum(1 for s in slots for c in s["candidates"] if c.get("new"))
        counts["candidates"] = sum(len(s["candidates"]) for s in slots)
        with st("validate"):
            ctx = kb.Context(catalog_from_snapshot(snap),
                             kb.load_rules(*(["default"] if cfg.default_rules else []), *cfg.rules))
            jd = judge_slots(slots, ctx, cfg, rejected)
            counts.update({k: jd.counts.get(k, 0) for k in ("accept", "needs_review", "rejected", "abstained",
                                                              "review_rejected")})
            if cfg.extractor:
                counts["new_rejected"] = jd.counts.get("new_rejected", 0)
            counts["accepted"] = counts.pop("accept")
        with st("explain"):
            rows, written_preds = self._explain(snap, ctx, jd, pred)
        model_version = mc.version
        metrics = self._metrics(pred, mc, jd, written_preds)
        if self.dry_run:
            status = "dry_run"
            counts["written"] = 0
        else:
            with st("write"):
                if hb is not None and hb.lost:
                    raise runs_db.LockLost(f"run {self.run_id} lost the completion lock before writing")
                from .openworld import proposals_of

                props, aliases = proposals_of(jd.chosen, spans)
                if props or aliases:
                    from graph.proposals import write_proposals

                    pw = write_proposals(self.client, self.run_id, props, aliases, batch_size=cfg.batch_size)
                    counts["proposed"], counts["aliases"] = pw.proposed, pw.aliases
                    say(f"proposals: {pw.proposed} new values ({pw.created} created), {pw.aliases} aliases")
                # staged (shown to no reader) in batches, then shown all at once when the run commits
                res = self.engine.stage(self.client, self.run_id, rows, model=cfg.model, model_version=model_version,
                                        batch_size=cfg.batch_size, on_batch=lambda d, t: say(f"written {d}/{t}"))
                keep: dict[str, list[str]] = {snap.nodes["product"][int(p)]["key"]: [] for p in plan.products}
                for r in rows:
                    keep.setdefault(r.product, []).append(r.attribute)
                if res.missing:
                    self.notes.append(f"{res.missing} predictions were not written: their product or value left the graph")

                def finish(tx: Any, c: wb.CommitResult) -> None:
                    counts["written"] = c.written
                    counts["superseded"] = c.superseded
                    counts["retired"] = c.retired
                    runs_db.finish_run(self.client, self.run_id, status="committed", counts=dict(counts),
                                       metrics=metrics, stages=self.stages.times,
                                       extra={"model": cfg.model, "model_version": model_version,
                                              "model_action": mc.action, "snapshot": snap.fingerprint,
                                              "mode": plan.mode, "notes": self.notes[:50]}, tx=tx)

                say(f"committing {res.written} predictions")
                com = wb.commit_predictions(self.client, self.run_id, keep, finish=finish,
                                            batch=max(cfg.batch_size, 20_000), on_step=say)
                counts["written"], counts["superseded"], counts["retired"] = com.written, com.superseded, com.retired
                say(f"committed: {com.written} predictions current, {com.superseded} superseded, {com.retired} retired")
                status = "committed"
            save_state(self.work, self.run_id, [r["key"] for r in snap.nodes["product"]], sigs, model_version)
            runs_db.release(self.client, self.run_id)
            self.locked = False
        result = CompletionResult(self.run_id, status, plan.mode, self.dry_run, self.run_dir, cfg.model, model_version,
                                  mc.action, dict(counts), metrics, self.stages.times, self.notes, written_preds)
        with st("report"):
            from .report import write_report

            result.report = write_report(result, mc.valid_top1, pred.split.attribute_names, cfg,
                                         self.client.settings)
        if status == "committed":
            try:
                runs_db.update_run(self.client, self.run_id, {"stages": json.dumps(
                    {k: round(v, 3) for k, v in self.stages.times.items()}), "report": str(result.report)})
            except GraphError:
                pass
        return result

    def _explain(self, snap: Any, ctx: kb.Context, jd: Judgement, pred: Any = None
                 ) -> tuple[list[wb.PredictionRow], list[WrittenPrediction]]:
        cfg = self.cfg
        ex = Explainer(snap, cfg.evidence_neighbours)
        pidx, vidx, bidx = snap.index["product"], snap.index["value"], snap.index["brand"]
        items = []
        for c in jd.chosen:
            p = pidx[c.slot["product"]]
            a = c.slot["attribute"]
            # -1: a value new to the graph (extracted): no node, no holders, nothing the model scored
            node = bidx.get(c.cand["norm"], -1) if a == wb.BRAND else vidx.get((a, c.cand["norm"]), -1)
            items.append((p, a, node))
        known = [i for i, it in enumerate(items) if it[2] >= 0]
        nbs: list[Any] = [([], {"with_value": 0, "with_value_in_category": 0})] * len(items)
        used: list[Any] = [None] * len(items)
        for i, nb, mu in zip(known, ex.neighbours([items[i] for i in known]),
                             model_explanations(pred, snap, [items[i] for i in known])):
            nbs[i], used[i] = nb, mu
        passed = rules_passed(ctx, jd.verdicts, [c.row for c in jd.chosen], [c.slot["attribute"] for c in jd.chosen])
        cats = snap.nodes["category"]
        rows, out = [], []
        from gnn.protocol import leaf_categories

        leaf = leaf_categories(snap)
        for c, (p, a, node), (nb, support), rp, mu in zip(jd.chosen, items, nbs, passed, used):
            forms = [c.cand["value"], c.cand["norm"]]
            ev = c.cand.get("evidence")
            if ev is None:
                text = ex.text_evidence(p, dict.fromkeys(forms))
            else:
                from .openworld import span_context

                text = span_context(snap.nodes["product"][p], ev)
            th = c.slot["threshold"]
            expl = {"value": c.cand["value"], "p": round(c.cand["p"], 4), "rank": c.rank,
                    "threshold": th if np.isfinite(th) else None, "verdict": c.verdict,
                    # what the model computed (gnn: its logit margin over the runner-up, split exactly into its
                    # parts, and the text features that moved its prior most); the neighbours below are
                    # examples of products carrying the value, not what the model read
                    "model_used": mu, "neighbours": nb, "neighbours_are": "examples", "support": support,
                    "rules_passed": rp, "violations": c.violations, "text_evidence": text, "model": cfg.model}
            extra = None
            if ev is not None:
                from .openworld import span_evidence

                expl.update(new=bool(c.cand.get("new")), evidence=ev, alias=c.cand.get("alias"))
                extra = {"new": bool(c.cand.get("new")), **span_evidence(c.slot["product"], ev).edge_props()}
            rec = snap.nodes["product"][p]
            rows.append(wb.PredictionRow(c.slot["product"], a, c.cand["norm"], c.cand["p"], c.rank, c.verdict,
                                         th if np.isfinite(th) else None, tuple(rp), tuple(c.violations),
                                         tuple(n["id"] for n in nb), text,
                                         json.dumps(expl, ensure_ascii=False, default=str), extra))
            out.append(WrittenPrediction(c.slot["product"], rec.get("title"), cats[leaf[p]]["key"] if leaf[p] >= 0 else None,
                                         a, c.cand["value"], c.cand["norm"], float(c.cand["p"]), c.rank,
                                         th if np.isfinite(th) else None, c.verdict, rp, c.violations, nb, support, text,
                                         mu, bool(c.cand.get("new")), ev))
        return rows, out

    def _metrics(self, pred: Any, mc: ModelChoice, jd: Judgement, written: list[WrittenPrediction]) -> dict[str, Any]:
        from gnn.metrics import expected_calibration_error, precision_coverage

        m: dict[str, Any] = {"validation": pred.validation, "model_action": mc.action,
                             "new_fact_share": mc.new_fact_share, "candidate_verdicts": jd.candidate_counts}
        vt = mc.valid_top1
        if len(vt["confidence"]):
            pc = precision_coverage(vt["confidence"], vt["correct"])
            m["valid_pairs"] = int(len(vt["confidence"]))
            m["valid_top1_accuracy"] = float(np.mean(vt["correct"]))
            m["valid_ece"] = expected_calibration_error(vt["confidence"], vt["correct"])  # cross-fitted (_valid_top1)
            m["valid_coverage_at_target"] = pc.coverage_at(self.cfg.target_precision)  # on the out-of-fold curve
            if "accepted" in vt:  # the out-of-fold thresholds' decisions: what acceptance at the target really gives
                ok, acc = np.asarray(vt["correct"], bool), np.asarray(vt["accepted"], bool)
                m["valid_coverage_at_threshold"] = float(acc.mean())
                m["valid_precision_at_threshold"] = float(ok[acc].mean()) if acc.any() else None
                pool = np.asarray(vt.get("pooled", np.zeros(len(acc), bool)), bool) & acc
                m["valid_pooled_accepted"] = int(pool.sum())  # by the shared threshold of the rare attributes
                m["valid_pooled_precision_at_threshold"] = float(ok[pool].mean()) if pool.any() else None
        acc = [w.p for w in written if w.verdict == "accept"]
        if jd.rejected_new:  # why each rejected new value was rejected (the first 200)
            m["new_values_rejected"] = jd.rejected_new[:200]
        m["accepted_mean_p"] = float(np.mean(acc)) if acc else None
        m["expected_correct_accepted"] = float(np.sum(acc)) if acc else 0.0
        return m


# -- rollback -------------------------------------------------------------------------------------------
def rollback(graph: ProductGraph, run_id: str, *, stale_seconds: float = 120.0) -> wb.RollbackResult:
    """Remove exactly ``run_id``'s predictions and make current again what it superseded, under the
    completion lock (no run writes meanwhile). The run is then ``rolled_back`` (a failed run stays
    ``failed``, marked cleaned). The incremental state no longer matches the last committed run, so
    the next run scores everything."""
    rec = runs_db.get_run(graph.client, run_id)
    holder = f"rollback-{run_id}-{os.urandom(3).hex()}"
    runs_db.acquire(graph.client, holder, stale_seconds=stale_seconds, record=False)
    try:
        if rec.status == "running":
            runs_db.finish_run(graph.client, run_id, status="failed", error=f"rolled back while running (dead)",
                               extra={"cleaned": False})
        res = wb.undo_run_writes(graph.client, run_id, holder=holder)
        props: dict[str, Any] = {"cleaned": True}
        if rec.status in ("committed", "rolled_back"):
            props.update({"status": "rolled_back", "rolled_back_at": runs_db.now()})
        runs_db.update_run(graph.client, run_id, props)
        return res
    finally:
        runs_db.release(graph.client, holder)


# -- scheduling -------------------------------------------------------------------------------------------
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """``"6h"``, ``"30m"``, ``"1d"``, ``"90s"`` or a number of seconds -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not m or float(m[1]) <= 0:
        raise CompletionConfigError(f"--every {text!r}: expected a positive interval like 6h, 30m, 1d or 90s")
    return float(m[1]) * _UNITS[m[2] or "s"]


def run_every(interval: float, run_once: Callable[[set[str]], Any], *, max_runs: int | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              sleep: Callable[[float], bool] | None = None) -> int:
    """Call ``run_once`` every ``interval`` seconds (measured start to start) until stopped (SIGTERM,
    Ctrl-C, or ``max_runs``). A failed run is reported and the schedule goes on: the next run recovers it.
    Returns the number of runs started."""
    stop = threading.Event()
    own_runs: set[str] = set()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, handler)
    wait = sleep or (lambda s: stop.wait(s))
    n = 0
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            n += 1
            try:
                run_once(own_runs)
            except CompleteError as e:
                if on_error:
                    on_error(e)
            if max_runs is not None and n >= max_runs:
                break
            left = interval - (time.monotonic() - t0)
            if left > 0 and wait(left):
                break
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    return n


__all__ = [
    "CompleteError", "CompletionConfig", "CompletionConfigError", "CompletionResult", "WrittenPrediction",
    "catalog_from_snapshot", "complete", "parse_interval", "rollback", "product_signatures", "run_every",
]
