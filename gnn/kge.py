"""Knowledge-graph embeddings of the product graph with PyKEEN.

The snapshot's asserted facts (every relation type) become a PyKEEN ``TriplesFactory``; a model
chosen by name through PyKEEN's own resolvers is trained with an explicit training loop, and
evaluated with *filtered, type-restricted* rank metrics: the candidates for a test triple are
only the entities its relation can point at (the values of that attribute, all brands, all
categories), never every entity of the graph.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KgeError, MissingExtra
from .snapshot import NODE_TYPES, Snapshot


def _torch():
    try:
        import torch
        import pykeen  # noqa: F401
    except ImportError:
        raise MissingExtra("KG embeddings need torch and pykeen: pip install 'attrgraph[ml]'") from None
    return torch


@dataclass
class KgeConfig:
    """Everything that decides a KG embedding run; saved beside the model, resolved."""

    model: str = "TransE"
    embedding_dim: int = 64
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str | None = None
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 50
    batch_size: int = 256
    learning_rate: float = 0.01
    optimizer: str = "adam"
    negative_sampler: str = "basic"
    negative_sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    threads: int | None = None
    relations: tuple[str, ...] | None = None  # snapshot relations to embed (default: all)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KgeConfig":
        known = {f for f in cls.__dataclass_fields__}
        bad = sorted(set(d) - known)
        if bad:
            raise KgeError(f"unknown KG embedding setting(s) {', '.join(bad)}; valid: {', '.join(sorted(known))}")
        return cls(**d)


@dataclass
class KgTriples:
    """Integer triples over one entity space: the node types laid end to end."""

    triples: np.ndarray  # int64 [N, 3] (head, relation, tail)
    entity_labels: list[str]
    relation_labels: list[str]
    offsets: dict[str, int]  # node type -> first entity id of that type
    groups: np.ndarray  # int64 [num_entities]: candidates for a tail are the entities of its group

    @property
    def num_entities(self) -> int:
        return len(self.entity_labels)

    def factory(self, triples: np.ndarray | None = None):
        _torch()
        from pykeen.triples import TriplesFactory

        t = self.triples if triples is None else triples
        return TriplesFactory(
            mapped_triples=np.ascontiguousarray(t, dtype=np.int64),
            entity_to_id={lab: i for i, lab in enumerate(self.entity_labels)},
            relation_to_id={lab: i for i, lab in enumerate(self.relation_labels)},
            num_entities=self.num_entities, num_relations=len(self.relation_labels),
        )


def triples_from_snapshot(snap: Snapshot, relations: Sequence[str] | None = None) -> KgTriples:
    """All asserted facts of the snapshot as triples. Tail groups: a value's attribute; else its type."""
    offsets, labels = {}, []
    for t in NODE_TYPES:
        offsets[t] = len(labels)
        labels.extend(f"{t}:{k[0]}={k[1]}" if t == "value" else f"{t}:{k}" for k in snap.keys(t))
    rels = list(relations) if relations else list(snap.edge_types)
    unknown = [r for r in rels if r not in snap.edge_types]
    if unknown:
        raise KgeError(f"unknown relation(s) {unknown}; the snapshot has {', '.join(snap.edge_types)}")
    parts = []
    for ri, rel in enumerate(rels):
        s_type, d_type = snap.edge_types[rel]
        e = snap.edges[rel]
        parts.append(np.stack([e[0] + offsets[s_type], np.full(e.shape[1], ri), e[1] + offsets[d_type]], axis=1))
    triples = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
    groups = np.zeros(len(labels), dtype=np.int64)
    for gi, t in enumerate(NODE_TYPES):
        groups[offsets[t] : offsets[t] + snap.num_nodes(t)] = gi
    # values: one group per attribute, numbered after the node types
    attr_ids: dict[str, int] = {}
    for i, rec in enumerate(snap.nodes["value"]):
        groups[offsets["value"] + i] = len(NODE_TYPES) + attr_ids.setdefault(rec["attribute"], len(attr_ids))
    return KgTriples(triples.astype(np.int64), labels, rels, offsets, groups)


def split_triples(triples: np.ndarray, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
                  ) -> tuple[np.ndarray, ...]:
    """A seeded random split of the rows of ``triples``."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(triples))
    cuts = np.cumsum([int(round(f * len(triples))) for f in fractions[:-1]])
    return tuple(triples[np.sort(p)] for p in np.split(perm, cuts))


@dataclass
class KgeModel:
    model: Any  # a pykeen Model
    config: KgeConfig
    entity_labels: list[str]
    relation_labels: list[str]
    losses: list[float]
    seconds: float

    def entity_embeddings(self) -> np.ndarray:
        """[num_entities, D] float32; complex embeddings are given as (real, imaginary) halves."""
        torch = _torch()
        with torch.no_grad():
            e = self.model.entity_representations[0](indices=None).detach().cpu()
        if e.is_complex():
            e = torch.cat([e.real, e.imag], dim=-1)
        return e.reshape(e.shape[0], -1).float().numpy()

    def __getstate__(self) -> dict[str, Any]:
        """The pykeen model as its weights (``gnn.safeio`` saves tensors, never a module object)."""
        d = dict(self.__dict__)
        d["model"] = self.model.state_dict()
        d["config"] = asdict(self.config)
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        d = dict(d)
        config = KgeConfig.from_dict(d.pop("config"))
        weights = d.pop("model")
        ents = d["entity_labels"]
        kg = KgTriples(np.zeros((0, 3), np.int64), ents, d["relation_labels"], {}, np.zeros(len(ents), np.int64))
        model = _make_model(config, kg.factory())
        model.load_state_dict(weights)
        self.__dict__.update(d, model=model, config=config)

    def save(self, out_dir: str | Path) -> None:
        torch = _torch()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), out / "model.pt")
        (out / "config.json").write_text(json.dumps(asdict(self.config), indent=1), encoding="utf-8")
        (out / "entities.json").write_text(json.dumps(self.entity_labels, ensure_ascii=False), encoding="utf-8")
        (out / "relations.json").write_text(json.dumps(self.relation_labels, ensure_ascii=False), encoding="utf-8")
        (out / "training.json").write_text(json.dumps({"losses": self.losses, "seconds": self.seconds}), encoding="utf-8")

    @classmethod
    def load(cls, out_dir: str | Path) -> "KgeModel":
        torch = _torch()
        out = Path(out_dir)
        config = KgeConfig.from_dict(json.loads((out / "config.json").read_text(encoding="utf-8")))
        ents = json.loads((out / "entities.json").read_text(encoding="utf-8"))
        rels = json.loads((out / "relations.json").read_text(encoding="utf-8"))
        kg = KgTriples(np.zeros((0, 3), np.int64), ents, rels, {}, np.zeros(len(ents), np.int64))
        model = _make_model(config, kg.factory())
        model.load_state_dict(torch.load(out / "model.pt", weights_only=True))
        tr = json.loads((out / "training.json").read_text(encoding="utf-8"))
        return cls(model, config, ents, rels, tr["losses"], tr["seconds"])


def _make_model(config: KgeConfig, tf: Any) -> Any:
    from pykeen.models import model_resolver

    kwargs = dict(config.model_kwargs)
    kwargs.setdefault("embedding_dim", config.embedding_dim)
    if config.loss:
        kwargs["loss"] = config.loss
        if config.loss_kwargs:
            kwargs["loss_kwargs"] = config.loss_kwargs
    try:
        return model_resolver.make(config.model, triples_factory=tf, random_seed=config.seed, **kwargs)
    except KeyError as e:
        raise KgeError(f"unknown PyKEEN model {config.model!r}: {e}; e.g. {', '.join(sorted(list(model_resolver.lookup_dict)[:12]))}") from None


def train_kge(train_factory: Any, config: KgeConfig, *, progress: bool = False, dist: Any = None,
              trace: list[Any] | None = None) -> KgeModel:
    """Train ``config.model`` on a TriplesFactory with PyKEEN's sLCWA loop (seeded, CPU).

    ``dist`` (a ``gnn.distributed.DistContext`` of several ranks): PyKEEN's PyTorch Lightning DDP path
    instead (:func:`train_kge_distributed`), each rank on its own shard of the triples."""
    if dist is not None and dist.world_size > 1:
        return train_kge_distributed(train_factory, config, dist, progress=progress, trace=trace)
    torch = _torch()
    from pykeen.optimizers import optimizer_resolver
    from pykeen.training import SLCWATrainingLoop
    from pykeen.utils import set_random_seed

    if config.threads:
        torch.set_num_threads(config.threads)
    set_random_seed(config.seed)
    model = _make_model(config, train_factory)
    optimizer = optimizer_resolver.make(config.optimizer, params=model.get_grad_params(), lr=config.learning_rate)
    loop = SLCWATrainingLoop(model=model, triples_factory=train_factory, optimizer=optimizer,
                             negative_sampler=config.negative_sampler,
                             negative_sampler_kwargs=config.negative_sampler_kwargs or None)
    t0 = time.perf_counter()
    losses = loop.train(triples_factory=train_factory, num_epochs=config.epochs, batch_size=config.batch_size,
                        use_tqdm=progress, use_tqdm_batch=False) or []
    return KgeModel(model, config, list(train_factory.entity_id_to_label[i] for i in range(train_factory.num_entities)),
                    list(train_factory.relation_id_to_label[i] for i in range(train_factory.num_relations)),
                    [float(x) for x in losses], time.perf_counter() - t0)


def shard_rows(n: int, rank: int, world: int) -> np.ndarray:
    """Row indices of rank ``rank``'s shard of ``n`` triples: ``rank::world``, padded with its own first rows
    to ``ceil(n / world)`` so every rank has as many batches per epoch (DDP waits for every rank at
    every step; unequal step counts hang). The shards stay disjoint as sets."""
    own = np.arange(rank, n, world, dtype=np.int64)
    size = -(-n // world)
    if 0 < len(own) < size:
        own = np.concatenate([own, own[: size - len(own)]])
    return own


def train_kge_distributed(train_factory: Any, config: KgeConfig, dist: Any, *, progress: bool = False,
                          trace: list[Any] | None = None) -> KgeModel:
    """PyKEEN's Lightning sLCWA module (``pykeen.contrib.lightning``) under Lightning's DDP strategy, on
    the process group of ``dist`` (torchrun, Slurm, Ray Train: ``gnn.distributed.init``).

    Lightning's DDP does not shard PyKEEN's triples by itself (every rank would train on all of them):
    each rank gets ``CoreTriplesFactory(mapped_triples=mapped[rank::world])`` (:func:`shard_rows`) and
    ``batch_size // world`` triples per step, so a step of all ranks covers ``batch_size`` triples, as
    one process does; the learning rate is passed as ``learning_rate=`` (the module ignores the
    optimizer kwargs' ``lr``). ``trace``: a list to which each training batch's positive triples are
    appended (int64 [B, 3]; tests check the shards are disjoint). Every rank returns the same model
    (DDP keeps the replicas equal)."""
    torch = _torch()
    try:
        import pytorch_lightning as pl
        from pykeen.contrib.lightning import SLCWALitModule
    except ImportError:
        raise MissingExtra("distributed KG embeddings need pytorch-lightning: pip install 'attrgraph[ml]'") from None
    from pykeen.datasets import EagerDataset
    from pykeen.triples import CoreTriplesFactory
    from pykeen.utils import set_random_seed
    from pytorch_lightning.strategies import DDPStrategy

    if config.threads:
        torch.set_num_threads(config.threads)
    set_random_seed(config.seed)
    rank, world = dist.rank, dist.world_size
    mapped = train_factory.mapped_triples
    shard = CoreTriplesFactory(mapped_triples=mapped[torch.as_tensor(shard_rows(len(mapped), rank, world))],
                               num_entities=train_factory.num_entities, num_relations=train_factory.num_relations,
                               create_inverse_triples=train_factory.create_inverse_triples)
    model_kwargs = dict(config.model_kwargs)
    model_kwargs.setdefault("embedding_dim", config.embedding_dim)
    model_kwargs.setdefault("random_seed", config.seed)
    if config.loss:
        model_kwargs["loss"] = config.loss
        if config.loss_kwargs:
            model_kwargs["loss_kwargs"] = config.loss_kwargs
    per_rank = max(1, config.batch_size // world)

    class _Traced(SLCWALitModule):
        def training_step(self, batch, batch_idx):  # noqa: ANN001
            if trace is not None:
                trace.append(batch["positives"].detach().cpu().numpy().astype(np.int64).copy())
            return super().training_step(batch, batch_idx)

    lit = _Traced(dataset=EagerDataset(training=shard, testing=shard), model=config.model, model_kwargs=model_kwargs,
                  batch_size=per_rank, learning_rate=config.learning_rate, optimizer=config.optimizer,
                  negative_sampler=config.negative_sampler, negative_sampler_kwargs=config.negative_sampler_kwargs or None)
    gpu = dist.backend == "nccl" and torch.cuda.is_available()
    trainer = pl.Trainer(accelerator="gpu" if gpu else "cpu", devices=dist.local_world_size,
                         num_nodes=max(1, world // dist.local_world_size),
                         strategy=DDPStrategy(process_group_backend=dist.backend, find_unused_parameters=True),
                         max_epochs=config.epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=progress and rank == 0, enable_model_summary=False,
                         use_distributed_sampler=False, num_sanity_val_steps=0, limit_val_batches=0)
    t0 = time.perf_counter()
    trainer.fit(lit)
    model = lit.model.cpu()
    out = KgeModel(model, config, list(train_factory.entity_id_to_label[i] for i in range(train_factory.num_entities)),
                   list(train_factory.relation_id_to_label[i] for i in range(train_factory.num_relations)),
                   [], time.perf_counter() - t0)
    out.__dict__["batch_size_per_rank"] = per_rank
    return out


def evaluate_ranking(
    model: Any,
    test: np.ndarray,
    known: Sequence[np.ndarray],
    *,
    groups: np.ndarray | None = None,
    sides: Sequence[str] = ("tail",),
    batch_size: int = 512,
    ks: Sequence[int] = (1, 3, 10),
) -> dict[str, Any]:
    """Filtered rank metrics of a PyKEEN model on ``test`` triples.

    For each test triple and side, the true entity is ranked against *candidates*: every entity in
    the same group as the true one (all entities when ``groups`` is None), minus the other entities
    that make a known true triple (from any of ``known``, e.g. train, validation and test). Ties count
    half (the "realistic" rank). Only the candidates are scored, group by group, so memory and time
    follow the candidate sets, not the size of the graph.

    Returns MRR, Hits@k, the number of ranks, and the MRR per relation id.
    """
    torch = _torch()
    test = np.asarray(test, dtype=np.int64)
    all_known = np.concatenate([np.asarray(k) for k in known]) if known else test
    truth: dict[str, dict[tuple[int, int], set[int]]] = {"tail": defaultdict(set), "head": defaultdict(set)}
    for h, r, t in all_known.tolist():
        truth["tail"][(h, r)].add(t)
        truth["head"][(r, t)].add(h)
    n_ent = model.num_entities
    grp = np.asarray(groups, dtype=np.int64) if groups is not None else np.zeros(n_ent, np.int64)
    ranks: list[np.ndarray] = []
    rels: list[np.ndarray] = []
    model.eval()
    with torch.no_grad():
        for side in sides:
            if side not in ("head", "tail"):
                raise KgeError(f"side must be 'head' or 'tail', got {side!r}")
            col = 2 if side == "tail" else 0
            for g in np.unique(grp[test[:, col]]):
                rows = test[grp[test[:, col]] == g]
                cand = np.flatnonzero(grp == g)
                pos = {int(e): i for i, e in enumerate(cand)}
                cand_t = torch.as_tensor(cand)
                step = max(1, min(batch_size, 20_000_000 // max(1, len(cand) * 64)))
                for s in range(0, len(rows), step):
                    b = torch.as_tensor(rows[s : s + step])
                    if side == "tail":
                        sc = model.score_t(b[:, :2], tails=cand_t)
                        keys = [(h, r) for h, r in b[:, :2].tolist()]
                    else:
                        sc = model.score_h(b[:, 1:], heads=cand_t)
                        keys = [(r, t) for r, t in b[:, 1:].tolist()]
                    sc = sc.reshape(len(b), len(cand)).clone()
                    target = torch.as_tensor([pos[int(x)] for x in b[:, col].tolist()])
                    true_score = sc[torch.arange(len(b)), target].clone()
                    fr, fc = [], []
                    for i, k in enumerate(keys):  # other true answers do not count against us
                        for e in truth[side][k]:
                            j = pos.get(e)
                            if j is not None:
                                fr.append(i)
                                fc.append(j)
                    if fr:
                        sc[torch.as_tensor(fr), torch.as_tensor(fc)] = float("-inf")
                    sc[torch.arange(len(b)), target] = float("-inf")
                    higher = (sc > true_score[:, None]).sum(1)
                    ties = (sc == true_score[:, None]).sum(1)
                    ranks.append((1 + higher + ties / 2.0).double().numpy())
                    rels.append(b[:, 1].numpy())
    r = np.concatenate(ranks) if ranks else np.zeros(0)
    rel = np.concatenate(rels) if rels else np.zeros(0, np.int64)
    out: dict[str, Any] = {"mrr": float(np.mean(1.0 / r)) if len(r) else float("nan"), "count": int(len(r))}
    for k in ks:
        out[f"hits@{k}"] = float(np.mean(r <= k)) if len(r) else float("nan")
    out["per_relation_mrr"] = {int(x): float(np.mean(1.0 / r[rel == x])) for x in np.unique(rel)}
    return out
