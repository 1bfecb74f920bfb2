"""One rank of the distributed tests (tests/test_distributed.py launches it with torchrun).

    torchrun ... tests/_dist_worker.py OUT_DIR SNAPSHOT_DIR

On every rank: (1) the GNN trained data-parallel (``gnn.distributed``), every step's averaged gradients and
the final parameters recorded; (2) the same with the all-reduce switched off (``no_sync``: the control);
(3) PyKEEN through its Lightning DDP path on per-rank triple shards, the positive triples each rank trained
on recorded. Rank 0 also records the one-process gradient of step 0 (``GnnCompletionModel`` without
``dist``) on the same global batch. Writes ``OUT_DIR/rank<r>.npz`` and ``OUT_DIR/rank<r>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# tiny, exact: no dropout and every neighbour (no sampling noise), so a product's representation does not
# depend on which other products share its batch, and DDP's step equals one process's step on the whole batch
CFG = dict(text_feature=None, hidden=16, layers=1, dropout=0.0, epochs=2, eval_every=1, patience=10, lr=0.02,
           batch_size=64, num_neighbors=(-1,), seed=0, threads=1, title_char_ngrams=None, max_seconds=10_000.0)


class _Stop(Exception):
    pass


def _flat(grads: dict, names: list[str]) -> np.ndarray:
    return np.concatenate([grads[n].reshape(-1).numpy().astype(np.float64) for n in names])


def main(out_dir: str, snap_dir: str) -> None:
    import torch

    from gnn import distributed
    from gnn.model import GnnCompletionModel
    from gnn.protocol import make_split
    from gnn.snapshot import load_snapshot

    ctx = distributed.init()
    assert ctx is not None and ctx.world_size == 2, "launch two ranks"
    out = Path(out_dir)
    snap = load_snapshot(snap_dir)
    split = make_split(snap, seed=0, cold_share=0.0, include_brand=True)
    rec: dict[str, np.ndarray] = {}
    meta: dict = {"rank": ctx.rank, "world_size": ctx.world_size, "threads": ctx.threads, "backend": ctx.backend}

    def zeros_for_none(model, grads):
        shapes = {f"net.{n}": p for n, p in model.net.named_parameters()}
        shapes["cand_bias"] = model.cand_bias
        return {n: (g if g is not None else torch.zeros_like(shapes[n])) for n, g in grads.items()}, \
            sorted(n for n, g in grads.items() if g is None)

    # (1) synchronised
    steps: list[np.ndarray] = []
    m = GnnCompletionModel(**CFG)
    names_box: list[list[str]] = []

    def probe(step, grads):
        g, _ = zeros_for_none(m, grads)
        if not names_box:
            names_box.append(sorted(g))
        steps.append(_flat(g, names_box[0]))

    ctx.grad_probe = probe
    m.fit(snap, split, dist=ctx)
    names = names_box[0]
    rec["sync_grads"] = np.stack(steps)
    rec["sync_params"] = np.concatenate([p.detach().reshape(-1).numpy().astype(np.float64) for p in m.net.parameters()]
                                        + [m.cand_bias.detach().numpy().astype(np.float64)])
    meta.update(steps=len(steps), epochs_run=m.epochs_run, history=m.history, names=names,
                distributed=m.distributed, selection_rank0=bool(m.selection) if ctx.rank == 0 else None)
    if ctx.rank == 0:
        # the one-process gradient of step 0: same seed, same global batch, no dist
        ref = GnnCompletionModel(**CFG)
        got: list[np.ndarray] = []

        def ref_probe(model):
            grads = {f"net.{n}": (None if p.grad is None else (p.grad.coalesce().to_dense() if p.grad.is_sparse else p.grad))
                     for n, p in model.net.named_parameters()}
            grads["cand_bias"] = model.cand_bias.grad
            g, none = zeros_for_none(model, grads)
            got.append(_flat(g, names))
            meta["single_none"] = none
            raise _Stop

        ref._grad_probe = ref_probe
        try:
            ref.fit(snap, split)
        except _Stop:
            pass
        rec["single_step0"] = got[0]
    # (2) the control: no gradient all-reduce
    ctx.grad_probe = None
    steps_ns: list[np.ndarray] = []
    m2 = GnnCompletionModel(**{**CFG, "epochs": 1})

    def probe2(step, grads):
        g, _ = zeros_for_none(m2, grads)
        steps_ns.append(_flat(g, names))

    ctx.grad_probe, ctx.no_sync = probe2, True
    m2.fit(snap, split, dist=ctx)
    ctx.grad_probe, ctx.no_sync = None, False
    rec["nosync_grads"] = np.stack(steps_ns)
    rec["nosync_params"] = np.concatenate([p.detach().reshape(-1).numpy().astype(np.float64) for p in m2.net.parameters()]
                                          + [m2.cand_bias.detach().numpy().astype(np.float64)])
    # (3) PyKEEN, Lightning DDP, per-rank triple shards
    from gnn.kge import KgeConfig, train_kge, triples_from_snapshot

    kg = triples_from_snapshot(snap)
    trace: list = []
    kcfg = KgeConfig(model="TransE", embedding_dim=8, epochs=2, batch_size=64, learning_rate=0.01, seed=0)
    km = train_kge(kg.factory(), kcfg, dist=ctx, trace=trace)
    seen = np.concatenate(trace) if trace else np.zeros((0, 3), np.int64)
    rec["kge_seen"] = np.unique(seen, axis=0)
    rec["kge_emb"] = km.entity_embeddings().astype(np.float64)
    meta["kge_triples"] = int(len(kg.triples))
    meta["kge_batch_size"] = km.__dict__.get("batch_size_per_rank")
    np.savez(out / f"rank{ctx.rank}.npz", **rec)
    (out / f"rank{ctx.rank}.json").write_text(json.dumps(meta, default=str), encoding="utf-8")
    ctx.barrier()
    ctx.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
