"""Snapshot export and node features (text embeddings, PyKEEN KG embeddings): the app-level steps.

Data flows one way: Neo4j -> snapshot (graph.export) -> features (gnn) -> feature store beside the
snapshot; optionally KG vectors back to Neo4j as ``kge`` properties.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gnn.kge import KgeConfig, evaluate_ranking, split_triples, train_kge, triples_from_snapshot
from gnn.snapshot import NODE_TYPES, Snapshot
from gnn.text import EmbeddingCache, get_encoder
from graph.export import ExportSummary, export_snapshot
from graph.settings import attrgraph_home

ProgressFn = Callable[[int, int], None]


def default_snapshot_dir() -> Path:
    return attrgraph_home() / "snapshots" / "current"


@dataclass
class TextFeatureConfig:
    encoder: str = "minilm"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    max_chars: int = 1000
    cache_path: str | None = None  # default: $ATTRGRAPH_HOME/cache/text-embeddings.sqlite
    node_types: tuple[str, ...] = NODE_TYPES
    # where an encoder that is fitted on the catalog (char-svd) keeps its fit; default: beside the
    # snapshot. Completion runs keep it in their work directory, so that every run (and a model
    # reused across runs) sees features in one basis, and the cache keeps hitting.
    fitted_dir: str | None = None
    # the matrices are written chunk by chunk into a memory-mapped file (nothing catalog-sized is held);
    # float16 halves them (the GNN reads them as float32)
    dtype: str = "float32"  # float32 | float16
    chunk: int = 65536  # texts encoded and written per step (a multiple of the cache's 4096)


@dataclass
class TextFeatureReport:
    encoder: str
    version: str
    dim: int
    texts: int
    encoded: int  # cache misses: texts actually run through the encoder
    cached: int
    seconds: float


def compute_text_features(snap: Snapshot, cfg: TextFeatureConfig, *, progress: ProgressFn | None = None
                          ) -> TextFeatureReport:
    """Encode every node's text (cached) and store ``text.<node type>`` in the snapshot's feature store."""
    from itertools import islice

    t0 = time.perf_counter()
    if cfg.dtype not in ("float32", "float16"):
        raise ValueError(f"text feature dtype must be float32 or float16, not {cfg.dtype!r}")
    enc = get_encoder(cfg.encoder, **cfg.encoder_kwargs)
    if hasattr(enc, "fit") and not getattr(enc, "fitted", True):
        fitted = (Path(cfg.fitted_dir) if cfg.fitted_dir else snap.features.root) / f"{cfg.encoder}.npz"
        if fitted.exists():
            enc = type(enc).load(fitted)
        else:  # (an encoder fitted on the catalog reads every text at once)
            enc.fit([x for t in cfg.node_types for x in snap.iter_texts(t, max_chars=cfg.max_chars)])
            fitted.parent.mkdir(parents=True, exist_ok=True)
            enc.save(fitted)
    cache = EmbeddingCache(cfg.cache_path or attrgraph_home() / "cache" / "text-embeddings.sqlite")
    step = max(1, int(cfg.chunk))
    try:
        total = 0
        for t in cfg.node_types:
            n = snap.num_nodes(t)
            texts = snap.iter_texts(t, max_chars=cfg.max_chars)
            with snap.features.writer(f"text.{t}", t, enc.dim, np.dtype(cfg.dtype), encoder=enc.name,
                                      version=enc.version) as m:
                for lo in range(0, n, step):
                    part = list(islice(texts, step))
                    p = (lambda d, _tot, lo=lo, n=n: progress(min(lo + d, n), n)) if progress else None
                    m[lo: lo + len(part)] = cache.encode(enc, part, p)
            total += n
        return TextFeatureReport(enc.name, enc.version, enc.dim, total, cache.misses, cache.hits,
                                 time.perf_counter() - t0)
    finally:
        cache.close()


@dataclass
class KgeFeatureReport:
    model: str
    triples: int
    train_triples: int
    test_triples: int
    metrics: dict[str, Any]  # filtered, type-restricted tail ranking on the held-out triples
    per_relation: dict[str, float]
    entities_without_training_fact: int
    seconds: float
    model_dir: str


def compute_kge_features(
    snap: Snapshot,
    cfg: KgeConfig,
    *,
    model_dir: str | Path | None = None,
    holdout: float = 0.1,
    exclude: np.ndarray | None = None,
    progress: bool = False,
) -> KgeFeatureReport:
    """Train a PyKEEN model on the snapshot's facts and store ``kge.<type>`` + ``kge_mask.<type>``.

    ``holdout`` of the triples (seeded) are kept out of training and used for the reported metrics.
    ``exclude`` (int64 [N, 3] in this snapshot's triple ids) are facts that must never be trained on,
    e.g. the test facts of a GNN evaluation. Entities with no training triple get a zero vector and
    mask 0: they have no KG embedding.
    """
    t0 = time.perf_counter()
    kg = triples_from_snapshot(snap, cfg.relations)
    trip = kg.triples
    if exclude is not None and len(exclude):
        ex = {tuple(x) for x in np.asarray(exclude).tolist()}
        keep = np.array([tuple(x) not in ex for x in trip.tolist()], dtype=bool)
        trip = trip[keep]
    train, test = split_triples(trip, (1 - holdout, holdout), seed=cfg.seed) if holdout > 0 else (trip, trip[:0])
    model = train_kge(kg.factory(train), cfg, progress=progress)
    metrics = evaluate_ranking(model.model, test, [kg.triples], groups=kg.groups, sides=("tail",)) if len(test) else {}
    per_rel = {kg.relation_labels[r]: v for r, v in metrics.pop("per_relation_mrr", {}).items()}
    emb = model.entity_embeddings()
    seen = np.zeros(kg.num_entities, dtype=bool)
    seen[train[:, 0]] = True
    seen[train[:, 2]] = True
    emb[~seen] = 0.0
    for t in NODE_TYPES:
        lo, n = kg.offsets[t], snap.num_nodes(t)
        snap.features.put(f"kge.{t}", t, emb[lo : lo + n], model=cfg.model, config=asdict(cfg))
        snap.features.put(f"kge_mask.{t}", t, seen[lo : lo + n].astype(np.float32), model=cfg.model)
    out = Path(model_dir) if model_dir else snap.path / "kge_model"
    model.save(out)
    (out / "metrics.json").write_text(json.dumps({"test": metrics, "per_relation_mrr": per_rel}, indent=1))
    return KgeFeatureReport(cfg.model, len(kg.triples), len(train), len(test), metrics, per_rel,
                            int((~seen).sum()), time.perf_counter() - t0, str(out))


def write_kge_to_neo4j(client: Any, snap: Snapshot, node_types: tuple[str, ...] = ("product",)) -> dict[str, int]:
    """Copy ``kge.<type>`` vectors into Neo4j as the ``kge`` property (skipping nodes without one)."""
    from graph.vectors import ensure_vector_index, write_node_vectors

    if "product" in node_types:
        ensure_vector_index(client, int(snap.features.get("kge.product").shape[1]))
    return {t: write_node_vectors(client, t, snap.keys(t), snap.features.get(f"kge.{t}"), prop="kge",
                                  mask=snap.features.get(f"kge_mask.{t}") > 0)
            for t in node_types}


def export(graph: Any, out_dir: str | Path | None = None) -> ExportSummary:
    return export_snapshot(graph.client, out_dir or default_snapshot_dir())
