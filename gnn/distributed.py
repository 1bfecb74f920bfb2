"""Data-parallel training of the completion GNN on ``torch.distributed`` (DDP).

Every rank holds the whole snapshot (inputs and graph: this is data parallelism, not a partitioned
graph) and trains a replica of the network on its own share of each mini-batch's seed products;
``DistributedDataParallel`` averages the gradients after every backward pass, so the replicas take
the same optimizer step and stay equal.

How a run is laid out (``fit_gnn``, called by ``GnnCompletionModel.fit(..., dist=ctx)``):

* **Fitted once, on rank 0, then broadcast**: the TF-IDF and character vectorizers, the property
  tokens, the learnable-embedding key tables and the text prior (``gnn.prior``, the costly part).
  The other ranks wait, receive them, and transform the same snapshot with them, so every rank's
  inputs are identical.
* **Each epoch** every rank draws the same message / supervision cut and the same product order
  (the same seeded ``numpy`` generator). A step takes the next ``batch_size`` products (the
  *global* batch, as in one process) and gives rank ``r`` the sorted chunk's ``r::world`` share; a
  rank with no product in a short last chunk trains on one product with weight 0, so every rank
  takes the same number of steps (nothing waits for a rank that has stopped). Each rank's loss is
  scaled by ``world * n_rank / n_global`` (``n``: the true values graded, summed over ranks by one
  small all-reduce per step that also carries the ranks' out-of-time flags), so DDP's gradient
  mean is exactly the gradient of the mean loss over the combined batch, as one process computes it.
* **One module computes the loss** (``_TrainStep``: the network, the candidate biases, the graph
  head's loss and the text head's loss), wrapped once in DDP with ``find_unused_parameters=True``
  (a batch need not touch every parameter: the KG default vector, an attribute's biases). The
  TF-IDF ``EmbeddingBag(sparse=True)`` gets sparse gradients, all-reduced by gloo and stepped by
  ``SparseAdam``; the dense ones by ``Adam``, clipped after the average (equal on every rank).
* **Early stopping, ``select_by_valid``, calibration and saving** happen once, on rank 0; its
  decision (improved, stop) is broadcast after every evaluation, every rank keeps its copy of the
  best state, and all restore it at the end, so the replicas end equal.

Launch: ``attrgraph train --nproc N`` starts N local ranks through torch's elastic launcher
(``torch.distributed.run``, what ``torchrun`` runs); the same command runs under ``torchrun
--nnodes ... --rdzv-endpoint ...`` on several hosts, under Slurm (``srun ... torchrun ...``, or
``srun`` alone with ``MASTER_ADDR``/``MASTER_PORT`` set: the ``SLURM_*`` variables are read), and
under Ray Train's ``TorchTrainer`` (which makes the process group itself: :func:`init` adopts it).
Backend: ``gloo`` for the GNN (it trains on CPU); ``nccl`` is chosen for PyKEEN's Lightning path on
a CUDA host (``gnn.kge``). Threads per rank: the usable CPUs divided by the ranks on this host.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from .errors import GnnError


class DistributedError(GnnError):
    """A distributed run is misconfigured (world size, backend, a model that cannot train distributed)."""


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_rank(local_world_size: int) -> int:
    """Torch threads for each of ``local_world_size`` ranks sharing this host: cores // ranks, at least 1."""
    return max(1, usable_cpus() // max(1, local_world_size))


def default_backend(device: str = "cpu") -> str:
    """``nccl`` for CUDA tensors, ``gloo`` for CPU ones (the GNN trains on CPU)."""
    return "nccl" if device == "cuda" else "gloo"


@dataclass
class DistContext:
    """This process's place in a distributed run, and the few collectives training needs.

    ``no_sync`` (a control for tests only): skip the gradient all-reduce, so the replicas drift apart.
    ``grad_probe(step, named_grads)``: called after every backward pass (before clipping) with the
    averaged gradients, for tests."""

    rank: int
    world_size: int
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = "gloo"
    threads: int = 1
    owns_group: bool = True  # False when the process group was made by someone else (Ray Train)
    no_sync: bool = False
    grad_probe: Callable[[int, dict[str, Any]], None] | None = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any = None, src: int = 0) -> Any:
        """``obj`` of rank ``src`` on every rank (pickled; rank ``src`` passes it, the others anything)."""
        import torch.distributed as dist

        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def all_sum(self, values: Sequence[float]) -> np.ndarray:
        """The element-wise sum of ``values`` over the ranks (float64)."""
        import torch
        import torch.distributed as dist

        t = torch.as_tensor(np.asarray(values, dtype=np.float64))
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.numpy()

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist

        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def in_launched_rank() -> bool:
    """True in a process started by a launcher as one of several ranks (torchrun / the elastic agent,
    Slurm with several tasks, or a process group already made by Ray Train)."""
    env = os.environ
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return True
    except ImportError:
        return False
    if int(env.get("WORLD_SIZE", "1") or 1) > 1:
        return True
    return "RANK" not in env and int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "MASTER_ADDR" in env


def _slurm_env() -> None:
    """Map Slurm's task variables to torch's env:// ones (``srun`` without torchrun); MASTER_ADDR and
    MASTER_PORT must be set by the job script."""
    env = os.environ
    if "RANK" in env or "SLURM_PROCID" not in env:
        return
    env["RANK"] = env["SLURM_PROCID"]
    env["WORLD_SIZE"] = env.get("SLURM_NTASKS", "1")
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    env["LOCAL_WORLD_SIZE"] = env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0]


def init(*, backend: str | None = None, timeout_s: float = 4 * 3600.0, threads: int | None = None) -> DistContext | None:
    """Join the distributed run this process was launched into; None when it is a lone process.

    Adopts a process group that already exists (Ray Train makes one), else initialises one from the
    ``env://`` variables of torchrun / the elastic agent (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``) or of Slurm. The timeout is long: the other
    ranks wait while rank 0 fits the text prior and evaluates."""
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed")
    env = os.environ
    owns = True
    if dist.is_initialized():
        owns = False
        rank, world = dist.get_rank(), dist.get_world_size()
        be = str(dist.get_backend())
    else:
        _slurm_env()
        world = int(env.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return None
        rank = int(env["RANK"])
        be = backend or env.get("ATTRGRAPH_DIST_BACKEND") or default_backend("cpu")
        if be not in ("gloo", "nccl"):
            raise DistributedError(f"unknown backend {be!r}; valid: gloo, nccl")
        dist.init_process_group(be, init_method="env://", rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    if world <= 1:
        return None
    local_world = int(env.get("LOCAL_WORLD_SIZE", "0") or 0) or world
    local_rank = int(env.get("LOCAL_RANK", str(rank % local_world)) or 0)
    n_threads = threads if threads else threads_per_rank(local_world)
    torch.set_num_threads(n_threads)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world,
                       backend=be, threads=n_threads, owns_group=owns)


def launch(cli_args: Sequence[str], nproc: int, *, module: str = "attrgraph.cli") -> None:
    """Run ``python -m <module> <cli_args>`` as ``nproc`` local ranks through torch's elastic launcher
    (``torch.distributed.run``: what ``torchrun --standalone --nproc-per-node=N`` does; c10d rendezvous
    on a free local port). Raises :class:`DistributedError` naming the failed ranks."""
    if nproc < 1:
        raise DistributedError(f"--nproc must be at least 1, got {nproc}")
    from torch.distributed import run
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        run.main(["--standalone", f"--nproc-per-node={nproc}", "-m", module, *cli_args])
    except ChildFailedError as e:
        raise DistributedError(f"distributed run failed on rank(s) {sorted(e.failures)}: "
                               f"{'; '.join(f.message or str(f.exitcode) for f in e.failures.values())}") from None


# -- the GNN ---------------------------------------------------------------------------------------------
def _train_step_module(model: Any) -> Any:
    """One ``nn.Module`` whose forward computes a rank's training loss, so that DDP sees every parameter
    the loss reads: the network (graph head, text head) and the candidate biases."""
    import torch

    class _TrainStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model.net
            self.cand_bias = model.cand_bias  # the same Parameter the model scores with

        def forward(self, sub_inp: dict[str, Any], sub_edges: dict[Any, Any], pairs: np.ndarray, pos: np.ndarray,
                    scale: float) -> tuple[Any, Any]:
            """(the loss to back-propagate: this rank's mean loss x ``scale``, its unscaled value detached)."""
            m = model
            x = self.net(sub_inp, sub_edges)
            K = m._all_candidates(self.net.encode_inputs(m._runtime["inp"], ("value", "brand")))
            loss = m._loss(x, pairs, product_pos=pos, K=K)
            if self.net.head_text is not None:
                loss = loss + m._loss(x, pairs, product_pos=pos, K=K, text=True)
            if scale == 0.0:  # a padding rank: in the graph with weight 0, so its replica takes part in the all-reduce
                return loss * 0.0 + x["product"].sum() * 0.0, loss.detach()
            return loss * scale, loss.detach()

    return _TrainStep()


def loss_count(model: Any, pairs: np.ndarray) -> int:
    """The number the model's ``_loss`` divides by for ``pairs``: the true values (``per_value``) or the
    pairs (``mass``) of the pairs whose attribute has at least two candidates."""
    sp = model.split
    if not len(pairs):
        return 0
    p = pairs[np.diff(sp.cand_indptr)[sp.attribute[pairs]] >= 2]
    if model.cfg.multi_value_loss == "per_value":
        return int((sp.indptr[p + 1] - sp.indptr[p]).sum())
    return int(len(p))


def _named_grads(step: Any) -> dict[str, Any]:
    out = {}
    for name, p in step.named_parameters():
        if p.grad is None:
            out[name] = None
        else:
            g = p.grad.coalesce().to_dense() if p.grad.is_sparse else p.grad
            out[name] = g.detach().clone()
    return out


_FITTED = ("vectorizer", "char_vectorizer", "property_tokens", "key_tables", "prior_seconds")


def fit_gnn(model: Any, snap: Any, split: Any, *, on: Sequence[str], ctx: DistContext) -> Any:
    """``GnnCompletionModel.fit`` on every rank of ``ctx`` (see the module doc). Mirrors the one-process
    fit step for step (same seeds, same draws, same global batches); returns ``model``."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from .baselines import _fit_pairs
    from .model import ModelError, _build_net, _Optimizers

    cfg = model.cfg
    if cfg.batch_size <= 0:
        raise ModelError("distributed training needs mini-batches (batch_size > 0): full-batch training has one "
                         "step over the whole graph, nothing to share between ranks")
    t_start = time.perf_counter()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, ctx.threads))
    try:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        if ctx.is_main:
            model._prepare(snap, split, fit_vectorizer=True)
        rt = None
        if not ctx.is_main:
            fitted = ctx.broadcast(None)
            for k, v in fitted["attrs"].items():
                setattr(model, k, v)
            model._prepare(snap, split, fit_vectorizer=False)
            deadline = time.perf_counter() + fitted["remaining"]
        rt = model._runtime
        model.net = _build_net(cfg, rt["dims"], rt["rels"])
        model._net_rels = list(rt["rels"])
        if ctx.is_main:
            if cfg.text_prior:
                from .prior import TextPrior

                t_prior = time.perf_counter()
                model.prior = TextPrior(top_k=cfg.prior_top_k, budget=cfg.prior_budget, n_jobs=max(1, ctx.threads),
                                        seed=cfg.seed, refit=cfg.prior_refit, max_lr_classes=cfg.prior_max_classes).fit(
                    rt["tfidf_csr"], split, _fit_pairs(split, on), rt["folds"],
                    deadline=t_start + cfg.prior_share * cfg.max_seconds)
                model.prior_seconds = time.perf_counter() - t_prior
            deadline = t_start + cfg.max_seconds
            attrs = {k: getattr(model, k) for k in _FITTED if hasattr(model, k)}
            if cfg.text_prior:  # its __dict__, not the object: pickling a TextPrior drops the two folds' classifiers
                attrs["_prior_state"] = dict(model.prior.__dict__)
            ctx.broadcast({"attrs": attrs, "remaining": deadline - time.perf_counter()})
        elif cfg.text_prior:
            from .prior import TextPrior

            model.prior = TextPrior.__new__(TextPrior)
            model.prior.__dict__.update(model.__dict__.pop("_prior_state"))
        sizes = np.array([split.num_candidates(a) for a in range(split.num_attributes)])
        model._cand_offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        model.cand_bias = torch.nn.Parameter(torch.zeros(int(model._cand_offset[-1])))
        fit_pairs = _fit_pairs(split, on)
        if model.net.mention_w is not None:
            with torch.no_grad():
                model.net.mention_w.copy_(torch.as_tensor(model._mention_log_odds(fit_pairs)))
        step_module = _train_step_module(model)
        ddp = DDP(step_module, find_unused_parameters=True)
        sparse = [model.net.tfidf.weight] if model.net.tfidf is not None else []
        params = [p for p in model.net.parameters() if all(p is not q for q in sparse)] + [model.cand_bias]
        opt = _Optimizers(torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
                          torch.optim.SparseAdam(sparse, lr=cfg.lr) if sparse else None)
        rt["prior_pad_pairs"] = np.zeros(split.num_pairs, bool)
        rt["prior_pad_pairs"][fit_pairs] = True
        rt.pop("prior_pad", None)
        pof = rt["pair_of_fact"]
        in_fit = np.zeros(split.num_pairs, bool)
        in_fit[fit_pairs] = True
        valid = split.pairs("valid")
        valid_graph = model._graph(in_fit[pof]) if ctx.is_main else None
        best, best_state, bad, ep = -1.0, None, 0, 0
        model.history = []
        products_with_fit = np.unique(split.product[fit_pairs])
        eval_s = 0.02 * cfg.max_seconds
        model.stopped_by_time = False
        step_no = [0]
        for ep in range(cfg.epochs):
            model.net.train()
            sup = np.zeros(split.num_pairs, bool)
            sup[fit_pairs[rng.random(len(fit_pairs)) < cfg.supervision_share]] = True
            if cfg.product_drop > 0:
                dropped = products_with_fit[rng.random(len(products_with_fit)) < cfg.product_drop]
                sup |= in_fit & np.isin(split.product, dropped)
            msg = in_fit & ~sup
            g = model._graph(msg[pof])
            loss_value, done = _minibatch_epoch(model, ddp, ctx, g, np.flatnonzero(sup), opt, params, rng,
                                                stop_at=deadline - eval_s, min_batches=0 if ep else 1, step_no=step_no)
            model.stopped_by_time = done < 1.0
            rec = {"epoch": ep, "loss": loss_value, "seconds": round(time.perf_counter() - t_start, 1)}
            if model.stopped_by_time:
                rec["partial"] = True
            out_of_time = model.stopped_by_time or time.perf_counter() > deadline - eval_s
            improved = stop = False
            if ctx.is_main:
                if len(valid) and (ep % cfg.eval_every == cfg.eval_every - 1 or ep == cfg.epochs - 1 or out_of_time):
                    t_eval = time.perf_counter()
                    acc = model._valid_accuracy(valid, valid_graph)
                    eval_s = time.perf_counter() - t_eval
                    rec["valid_hits@1"] = acc
                    if acc > best + 1e-5:
                        best, bad, model.best_epoch, improved = acc, 0, ep, True
                    else:
                        bad += 1
                out_of_time = out_of_time or time.perf_counter() > deadline - eval_s
                stop = bad >= cfg.patience or out_of_time
                model.stopped_by_time = out_of_time and bad < cfg.patience if stop else model.stopped_by_time
            decision = ctx.broadcast({"improved": improved, "stop": stop, "eval_s": eval_s,
                                      "stopped_by_time": model.stopped_by_time, "best_epoch": model.best_epoch})
            eval_s, model.stopped_by_time, model.best_epoch = decision["eval_s"], decision["stopped_by_time"], decision["best_epoch"]
            if decision["improved"]:  # every rank keeps its (equal) copy, so that all restore the same state
                best_state = ({k: v.detach().clone() for k, v in model.net.state_dict().items()},
                              model.cand_bias.detach().clone())
            model.history.append(rec)
            if cfg.verbose and ctx.is_main:
                print(rec, flush=True)
            if decision["stop"]:
                break
        if best_state is not None:
            model.net.load_state_dict(best_state[0])
            with torch.no_grad():
                model.cand_bias.copy_(best_state[1])
        del ddp, step_module
        model.epochs_run = ep + 1
        model.net.eval()
        model._cache = {}
        model.prior_only = set()
        model.text_only = set()
        model.selection = {}
        model.distributed = {"world_size": ctx.world_size, "backend": ctx.backend, "threads_per_rank": ctx.threads,
                             "steps": step_no[0]}
        if ctx.is_main and cfg.text_prior and cfg.select_by_valid and len(valid):
            model._select_by_valid(valid, valid_graph)
    finally:
        torch.set_num_threads(prev_threads)
    model.fit_seconds = time.perf_counter() - t_start
    return model


def rank_share(chunk: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, bool]:
    """Rank ``rank``'s products of a global batch ``chunk``: the sorted chunk's ``rank::world`` share; a
    rank left without one gets the chunk's first product as padding (``True``: weight 0)."""
    mine = np.sort(chunk)[rank::world]
    if len(mine):
        return mine, False
    return np.sort(chunk)[:1], True


def _minibatch_epoch(model: Any, ddp: Any, ctx: DistContext, graph: dict[Any, Any], sup_pairs: np.ndarray, opt: Any,
                     params: list[Any], rng: np.random.Generator, *, stop_at: float, min_batches: int,
                     step_no: list[int]) -> tuple[float, float]:
    """``GnnCompletionModel._minibatch_epoch`` with each global batch shared between the ranks: the same
    draws from ``rng`` as one process (so the same batches), the same step count on every rank. Returns
    the mean loss over every rank's pairs and the share of the batches done."""
    import contextlib

    import torch
    from torch_geometric.data import HeteroData

    from .sampler import TorchNeighborSampler
    from .snapshot import NODE_TYPES

    cfg, sp, rt = model.cfg, model.split, model._runtime
    data = HeteroData()
    for t in NODE_TYPES:
        data[t].num_nodes = rt["inp"]["n"][t]
    for et, e in graph.items():
        data[et].edge_index = e
    n_hops = max(cfg.layers, 1)
    fan = list(cfg.num_neighbors[:n_hops]) + [cfg.num_neighbors[-1]] * max(0, n_hops - len(cfg.num_neighbors))
    seed = int(rng.integers(2**31))  # the one-process draw, then a rank's own sampling stream
    sampler = TorchNeighborSampler(data, num_neighbors=fan, seed=seed + ctx.rank)
    prods = np.unique(sp.product[sup_pairs])
    prods = prods[rng.permutation(len(prods))]
    sup_prod = sp.product[sup_pairs]
    order = np.argsort(sup_prod, kind="stable")
    sorted_prod = sup_prod[order]
    tot, n = 0.0, 0
    starts = range(0, len(prods), cfg.batch_size)
    done = 0
    for lo in starts:
        late = done >= min_batches and time.perf_counter() > stop_at
        chunk, pad = rank_share(prods[lo: lo + cfg.batch_size], ctx.rank, ctx.world_size)
        a, b = np.searchsorted(sorted_prod, chunk[0]), np.searchsorted(sorted_prod, chunk[-1], side="right")
        pairs = sup_pairs[order[a:b]]
        pairs = pairs[np.isin(sp.product[pairs], chunk)]
        n_local = 0 if pad else loss_count(model, pairs)
        n_global, any_late = ctx.all_sum([n_local, float(late)])
        if any_late > 0:  # one rank out of time: every rank stops here, together
            break
        done += 1
        if n_global == 0:  # no graded value in the whole batch: one process steps on no gradient either
            continue
        out = sampler._sample({"product": torch.as_tensor(chunk)})
        sub_inp = model._slice_inputs(out.node)
        sub_edges = {et: torch.stack([out.row[et], out.col[et]]) for et in out.row}
        pos = np.full(rt["inp"]["n"]["product"], -1, np.int64)
        pos[out.node["product"].numpy()] = np.arange(len(out.node["product"]))
        opt.zero_grad()
        scale = 0.0 if pad else ctx.world_size * n_local / n_global
        with ddp.no_sync() if ctx.no_sync else contextlib.nullcontext():
            loss, raw = ddp(sub_inp, sub_edges, pairs, pos, scale)
            loss.backward()
        if ctx.grad_probe is not None:
            ctx.grad_probe(step_no[0], _named_grads(ddp.module))
        step_no[0] += 1
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        if not pad:
            tot += float(raw) * len(pairs)
            n += len(pairs)
    tot, n = ctx.all_sum([tot, n])
    return float(tot / max(n, 1)), done / max(len(starts), 1)


__all__ = ["DistContext", "DistributedError", "default_backend", "fit_gnn", "in_launched_rank", "init", "launch",
           "loss_count", "rank_share", "threads_per_rank", "usable_cpus"]
