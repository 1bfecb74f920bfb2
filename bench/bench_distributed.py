"""Distributed (data-parallel) GNN training: does it keep the accuracy, and what speed-up would it give.

    python bench/bench_distributed.py compare [--epochs 4] [--seed 0] [--max-products N]
    python bench/bench_distributed.py simulate [--batches 256,512,1024,2048,4096] [--ranks 2,4]

``compare``: Myntra (the shared catalog, read through its shipped mapping into a snapshot without a
database: ``bench._catalog``; text features from the default encoder, cached), the protocol split of
``bench_completion`` (80/10/10 pairs + 5% cold products, seed 0), the default GNN trained for a fixed
number of epochs (``epochs=E``, ``patience`` above E, no time budget: the same work on both sides, not
the same seconds) once in one process (1 rank x 2 torch threads: today's path, ``dist=None``) and once
on 2 ranks (``torch.distributed.run``, gloo, 1 thread each: ``gnn.distributed``), same seed. Recorded:
Hits@1 on the validation and on the test pairs of both, their difference (target: 2 ranks within 0.5
Hits@1 points of 1 rank), fit seconds (a ratio under whatever else the shared machine runs).

``simulate``: a prediction, not a measurement of a speed-up. Measured on this machine: the compute of
one training step (forward + backward, 1 thread) of the same model on Myntra at several batch sizes
(``--batches``), the gradient volume a step all-reduces (dense bytes; the sparse TF-IDF rows the batch
touches and their bytes), and gloo all-reduce times on loopback (2 processes, 1 thread each) over
message sizes, fitted as ``t(bytes) = latency + bytes / bandwidth`` (the ring all-reduce of 2 ranks
moves 2 (n-1)/n = 1 x the bytes). The model then predicts, per rank count n:

    T(1) = C(B)                       one process, a global batch of B products
    T(n) = C(B / n) + A(n)            each rank computes a batch of B/n, then all-reduces
    A(n) = 2 (n-1) alpha + 2 (n-1)/n * (dense + n * sparse_share) / beta
    speed-up(n) = T(1) / T(n)

with alpha, beta the fitted latency and bandwidth (loopback: a prediction for ranks on one host with
one core each; ``--host-bandwidth`` / ``--host-latency`` give the same for ranks on separate hosts, e.g.
10 Gbit/s and 50 us) and ``C(B / n)`` interpolated (linearly in B) from the measured step times.
Sparse gradients are all-gathered by gloo (each rank's rows travel to every rank), hence the n x.

Both append a JSON line with the commit to ``bench/results/distributed.jsonl``;
``bench/results_tables.py`` renders the README block ``distributed`` from it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "distributed.jsonl"
WORK = ROOT / "bench" / "out" / "distributed"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dirty() -> list[str]:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                             cwd=ROOT, timeout=10).stdout
        return [line[3:] for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        return []


def append(rec: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def myntra_snapshot(max_products: int | None) -> Path:
    """The Myntra snapshot (built once into bench/out/distributed/), with the default text features."""
    from attrgraph.features import TextFeatureConfig, compute_text_features
    from bench._catalog import CATALOGS, read_products, write_snapshot
    from gnn.snapshot import load_snapshot

    d = WORK / f"myntra-{max_products or 'all'}"
    if not (d / "manifest.json").exists():
        write_snapshot(read_products(CATALOGS["myntra"], "myntra", limit=max_products), d, mapping_name="myntra",
                       source=str(CATALOGS["myntra"]))
    snap = load_snapshot(d)
    if "text.product" not in set(snap.features.names()):
        compute_text_features(snap, TextFeatureConfig())
    return d


def gnn_options(epochs: int, seed: int) -> dict[str, Any]:
    """The default GNN, a fixed number of epochs: no early stop, no time budget."""
    return {"epochs": epochs, "patience": epochs + 1, "max_seconds": 1e7, "seed": seed}


def grade(model: Any, split: Any) -> dict[str, Any]:
    from gnn.metrics import evaluate

    out = {}
    for name in ("valid", "test"):
        pairs = split.pairs(name)
        out[f"{name}_hits@1"] = evaluate(model.score(pairs), per_attribute=False)["hits@1"]
        out[f"{name}_pairs"] = int(len(pairs))
    return out


def make_split_of(snap: Any, seed: int) -> Any:
    from gnn.protocol import make_split

    return make_split(snap, seed=seed, cold_share=0.05)


def worker(args: argparse.Namespace) -> None:
    """One rank of the 2-rank run (launched by ``compare`` through torch.distributed.run)."""
    from gnn import distributed
    from gnn.model import GnnCompletionModel
    from gnn.snapshot import load_snapshot

    ctx = distributed.init()
    snap = load_snapshot(args.snapshot)
    split = make_split_of(snap, args.seed)
    t = time.perf_counter()
    m = GnnCompletionModel(**gnn_options(args.epochs, args.seed), threads=ctx.threads).fit(snap, split, dist=ctx)
    fit_s = time.perf_counter() - t
    if ctx.is_main:
        res = {"fit_seconds": round(fit_s, 1), "epochs_run": m.epochs_run, "history": m.history,
               "prior_seconds": round(getattr(m, "prior_seconds", 0.0), 1), "distributed": m.distributed,
               **grade(m, split)}
        Path(args.worker_out).write_text(json.dumps(res), encoding="utf-8")
    ctx.barrier()
    ctx.close()


def compare(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from gnn.model import GnnCompletionModel
    from gnn.snapshot import load_snapshot

    t0 = time.perf_counter()
    snap_dir = myntra_snapshot(args.max_products)
    snap = load_snapshot(snap_dir)
    split = make_split_of(snap, args.seed)
    rec: dict[str, Any] = {"bench": "myntra-1v2", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "commit": git_commit(), "uncommitted_changes": dirty(), "catalog": "myntra",
                           "products": snap.num_nodes("product"), "max_products": args.max_products,
                           "seed": args.seed, "epochs": args.epochs, "gnn_options": gnn_options(args.epochs, args.seed),
                           "split": {k: int(len(split.pairs(k))) for k in ("train", "valid", "test")},
                           "host": {"cpus": os.cpu_count(), "load_avg_1m_at_start": os.getloadavg()[0],
                                    "torch": torch.__version__},
                           "runs": {}}
    print(f"snapshot ready ({time.perf_counter() - t0:.0f} s); 1 rank x 2 threads", flush=True)
    # 1 rank x 2 threads: today's one-process path
    t = time.perf_counter()
    m = GnnCompletionModel(**gnn_options(args.epochs, args.seed), threads=2).fit(snap, split)
    fit_s = time.perf_counter() - t
    rec["runs"]["1"] = {"ranks": 1, "threads_per_rank": 2, "fit_seconds": round(fit_s, 1), "epochs_run": m.epochs_run,
                        "history": m.history, "prior_seconds": round(getattr(m, "prior_seconds", 0.0), 1),
                        **grade(m, split)}
    print(json.dumps(rec["runs"]["1"]), flush=True)
    del m
    gc.collect()
    # 2 ranks x 1 thread
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "rank0.json"
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               str(Path(__file__).resolve()), "worker", "--snapshot", str(snap_dir), "--epochs", str(args.epochs),
               "--seed", str(args.seed), "--worker-out", str(out)]
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, cwd=ROOT)
        wall = time.perf_counter() - t
        r2 = json.loads(out.read_text(encoding="utf-8"))
    rec["runs"]["2"] = {"ranks": 2, "threads_per_rank": r2["distributed"]["threads_per_rank"], "wall_seconds": round(wall, 1),
                        **r2}
    print(json.dumps(rec["runs"]["2"]), flush=True)
    one, two = rec["runs"]["1"], rec["runs"]["2"]
    rec["delta_points"] = {k: round(100 * (two[k] - one[k]), 3) for k in ("valid_hits@1", "test_hits@1")}
    rec["target_points"] = 0.5
    rec["within_target"] = all(abs(v) <= 0.5 for v in rec["delta_points"].values())
    rec["fit_seconds_ratio_1_over_2"] = round(one["fit_seconds"] / two["fit_seconds"], 3)
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    append(rec)
    print(json.dumps({k: rec[k] for k in ("delta_points", "within_target", "fit_seconds_ratio_1_over_2")}), flush=True)
    return rec


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="Myntra: 1 rank vs 2 ranks, same seed and epochs")
    c.add_argument("--epochs", type=int, default=4)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--max-products", type=int, default=None)
    w = sub.add_parser("worker", help="(internal) one rank of the 2-rank run")
    w.add_argument("--snapshot", required=True)
    w.add_argument("--epochs", type=int, required=True)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--worker-out", required=True)
    a = sub.add_parser("allreduce-worker", help="(internal) one rank of the all-reduce probe")
    a.add_argument("--worker-out", required=True)
    s = sub.add_parser("simulate", help="measure step compute and all-reduce costs; predict the speed-up")
    s.add_argument("--batches", default="256,512,1024,2048,4096")
    s.add_argument("--ranks", default="2,4")
    s.add_argument("--steps", type=int, default=3, help="timed steps per batch size (after one warm-up)")
    s.add_argument("--max-products", type=int, default=None)
    s.add_argument("--host-bandwidth", type=float, default=10e9 / 8, help="bytes/s between hosts (prediction only)")
    s.add_argument("--host-latency", type=float, default=50e-6, help="seconds per message between hosts")
    args = ap.parse_args(argv)
    if args.cmd == "compare":
        compare(args)
    elif args.cmd == "worker":
        worker(args)
    elif args.cmd == "allreduce-worker":
        allreduce_worker(args)
    else:
        simulate(args)


# -- the scaling simulation ------------------------------------------------------------------------------------
SIZES = (4, 1 << 10, 1 << 14, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26)  # all-reduce message bytes


def allreduce_worker(args: argparse.Namespace) -> None:
    """One rank of the loopback all-reduce probe: median seconds of ``all_reduce`` per message size."""
    import numpy as np
    import torch
    import torch.distributed as dist

    from gnn import distributed

    ctx = distributed.init(threads=1)
    out = {}
    for size in SIZES:
        t = torch.ones(max(1, size // 4), dtype=torch.float32)
        reps = 20 if size <= (1 << 20) else 5
        dist.all_reduce(t)  # warm-up
        times = []
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            times.append(time.perf_counter() - t0)
        out[str(size)] = float(np.median(times))
    if ctx.is_main:
        Path(args.worker_out).write_text(json.dumps(out), encoding="utf-8")
    ctx.barrier()
    ctx.close()


def measure_allreduce() -> dict[str, Any]:
    """gloo all-reduce on loopback, 2 processes x 1 thread: median seconds per size, and the least-squares fit
    t = latency + bytes / bandwidth."""
    import numpy as np

    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "ar.json"
        env = dict(os.environ, OMP_NUM_THREADS="1",
                   PYTHONPATH=str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        str(Path(__file__).resolve()), "allreduce-worker", "--worker-out", str(out)],
                       env=env, check=True, cwd=ROOT)
        med = {int(k): v for k, v in json.loads(out.read_text()).items()}
    x = np.array(sorted(med), dtype=np.float64)
    y = np.array([med[int(k)] for k in x])
    A = np.stack([np.ones_like(x), x], 1)
    (lat, inv_bw), *_ = np.linalg.lstsq(A, y, rcond=None)
    lat = float(lat) if lat > 0 else float(y[0])  # (a negative intercept: the smallest message's time instead)
    return {"ranks": 2, "median_seconds_by_bytes": {str(int(k)): med[int(k)] for k in x},
            "latency_s": lat, "bandwidth_bytes_per_s": float(1.0 / inv_bw) if inv_bw > 0 else float("inf")}


def _prepared_model(max_products: int | None, seed: int) -> tuple[Any, Any]:
    """The default GNN on Myntra, prepared and briefly fitted (one epoch within a short budget), for timing."""
    from gnn.model import GnnCompletionModel
    from gnn.snapshot import load_snapshot

    snap = load_snapshot(myntra_snapshot(max_products))
    split = make_split_of(snap, seed)
    m = GnnCompletionModel(epochs=1, max_seconds=240.0, seed=seed, threads=1, select_by_valid=False)
    m.fit(snap, split)
    return m, split


def measure_steps(model: Any, split: Any, batches: list[int], steps: int, seed: int) -> dict[str, Any]:
    """Per global batch size B (1 thread): seconds of the rank-local work of a step (neighbour sampling, input
    slicing, forward, backward), seconds of the optimizer step, and the gradient a step all-reduces."""
    import numpy as np
    import torch
    from torch_geometric.data import HeteroData

    from gnn.baselines import _fit_pairs
    from gnn.distributed import _train_step_module, loss_count
    from gnn.model import _Optimizers
    from gnn.sampler import TorchNeighborSampler
    from gnn.snapshot import NODE_TYPES

    torch.set_num_threads(1)
    cfg, rt = model.cfg, model._runtime
    rng = np.random.default_rng(seed)
    fit_pairs = _fit_pairs(split, ("train",))
    sup = np.zeros(split.num_pairs, bool)
    sup[fit_pairs[rng.random(len(fit_pairs)) < cfg.supervision_share]] = True
    in_fit = np.zeros(split.num_pairs, bool)
    in_fit[fit_pairs] = True
    g = model._graph((in_fit & ~sup)[rt["pair_of_fact"]])
    data = HeteroData()
    for t in NODE_TYPES:
        data[t].num_nodes = rt["inp"]["n"][t]
    for et, e in g.items():
        data[et].edge_index = e
    sampler = TorchNeighborSampler(data, num_neighbors=list(cfg.num_neighbors[: max(cfg.layers, 1)]), seed=seed)
    sup_pairs = np.flatnonzero(sup)
    prods = rng.permutation(np.unique(split.product[sup_pairs]))
    step_module = _train_step_module(model)
    model.net.train()
    sparse = [model.net.tfidf.weight] if model.net.tfidf is not None else []
    params = [p for p in model.net.parameters() if all(p is not q for q in sparse)] + [model.cand_bias]
    opt = _Optimizers(torch.optim.Adam(params, lr=cfg.lr), torch.optim.SparseAdam(sparse, lr=cfg.lr) if sparse else None)
    dense_bytes = int(sum(p.numel() * p.element_size() for p in params))
    H = cfg.hidden
    out: dict[str, Any] = {"dense_gradient_bytes": dense_bytes, "dense_parameters": int(sum(p.numel() for p in params)),
                           "sparse_table_rows": int(model.net.tfidf.weight.shape[0]) if sparse else 0, "by_batch": {}}
    pos_all = np.full(rt["inp"]["n"]["product"], -1, np.int64)
    lo = 0
    for B in batches:
        rec: dict[str, list[float]] = {"compute_s": [], "optimizer_s": [], "sparse_rows": [], "pairs": []}
        for i in range(steps + 1):
            if lo + B > len(prods):
                lo = 0
            chunk = np.sort(prods[lo: lo + B])
            lo += B
            t0 = time.perf_counter()
            pairs = sup_pairs[np.isin(split.product[sup_pairs], chunk)]
            o = sampler._sample({"product": torch.as_tensor(chunk)})
            sub_inp = model._slice_inputs(o.node)
            sub_edges = {et: torch.stack([o.row[et], o.col[et]]) for et in o.row}
            pos = pos_all.copy()
            pos[o.node["product"].numpy()] = np.arange(len(o.node["product"]))
            opt.zero_grad()
            loss, _ = step_module(sub_inp, sub_edges, pairs, pos, 1.0)
            loss.backward()
            t1 = time.perf_counter()
            rows = int(sparse[0].grad.coalesce()._nnz()) if sparse and sparse[0].grad is not None else 0
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            t3 = time.perf_counter()
            if i == 0:
                continue  # warm-up
            rec["compute_s"].append(t1 - t0)
            rec["optimizer_s"].append(t3 - t2)
            rec["sparse_rows"].append(rows)
            rec["pairs"].append(loss_count(model, pairs))
        out["by_batch"][str(B)] = {"compute_s": float(np.median(rec["compute_s"])),
                                   "optimizer_s": float(np.median(rec["optimizer_s"])),
                                   "sparse_rows": float(np.mean(rec["sparse_rows"])),
                                   "sparse_bytes": float(np.mean(rec["sparse_rows"])) * (H * 4 + 8),
                                   "graded_values": float(np.mean(rec["pairs"])), "timed_steps": steps}
    return out


def predict_speedup(steps: dict[str, Any], ar: dict[str, Any], batches: list[int], ranks: list[int],
                    latency: float, bandwidth: float) -> dict[str, Any]:
    """The stated model (module doc): T(1) = C(B) + O(B); T(n) = C(B/n) + A(n) + O(B), A(n) = ring all-reduce of
    the dense gradient + all-gather of the sparse rows + the per-step count all-reduce."""
    import numpy as np

    bb = sorted(int(b) for b in steps["by_batch"])
    cs = [steps["by_batch"][str(b)]["compute_s"] for b in bb]
    sp = [steps["by_batch"][str(b)]["sparse_bytes"] for b in bb]

    def interp(b: float, ys: list[float]) -> float:
        if b <= bb[0]:  # below the smallest batch measured: the line through the two smallest
            return float(max(0.0, ys[0] + (ys[1] - ys[0]) * (b - bb[0]) / (bb[1] - bb[0])))
        return float(np.interp(b, bb, ys))

    out: dict[str, Any] = {}
    for n in ranks:
        for B in batches:
            c1 = interp(B, cs)
            opt = steps["by_batch"][str(B)]["optimizer_s"] if str(B) in steps["by_batch"] else 0.0
            cn = interp(B / n, cs)
            dense = steps["dense_gradient_bytes"]
            sparse_local = interp(B / n, sp)
            a_dense = 2 * (n - 1) * latency + 2 * (n - 1) / n * dense / bandwidth
            a_sparse = (n - 1) * latency + (n - 1) * sparse_local / bandwidth
            a_count = 2 * (n - 1) * latency
            t1, tn = c1 + opt, cn + a_dense + a_sparse + a_count + opt
            out[f"{n}x{B}"] = {"ranks": n, "batch": B, "t1_s": round(t1, 5), "tn_s": round(tn, 5),
                               "compute_share_s": round(cn, 5), "allreduce_s": round(a_dense + a_sparse + a_count, 6),
                               "speedup": round(t1 / tn, 3)}
    return out


def simulate(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    t0 = time.perf_counter()
    batches = [int(b) for b in args.batches.split(",") if b]
    ranks = [int(r) for r in args.ranks.split(",") if r]
    small = sorted({max(1, b // n) for b in batches for n in ranks} - set(batches))
    print("all-reduce probe (2 processes, gloo, loopback)", flush=True)
    ar = measure_allreduce()
    print(json.dumps(ar), flush=True)
    model, split = _prepared_model(args.max_products, 0)
    print(f"model prepared ({time.perf_counter() - t0:.0f} s); timing steps", flush=True)
    steps = measure_steps(model, split, sorted(set(batches) | set(small)), args.steps, 0)
    print(json.dumps(steps), flush=True)
    rec: dict[str, Any] = {
        "bench": "scaling-simulation", "kind": "prediction", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(), "uncommitted_changes": dirty(), "catalog": "myntra", "max_products": args.max_products,
        "host": {"cpus": os.cpu_count(), "load_avg_1m_at_start": os.getloadavg()[0], "torch": torch.__version__},
        "model": "T(1) = C(B) + O(B); T(n) = C(B/n) + A(n) + O(B); A(n) = 2(n-1) alpha + 2(n-1)/n dense/beta "
                 "+ (n-1) (alpha + sparse(B/n)/beta) + 2(n-1) alpha (the count all-reduce)",
        "allreduce": ar, "steps": steps,
        "predicted_loopback": predict_speedup(steps, ar, batches, ranks, ar["latency_s"] / 2, ar["bandwidth_bytes_per_s"]),
        "predicted_hosts": predict_speedup(steps, ar, batches, ranks, args.host_latency, args.host_bandwidth),
        "host_link": {"latency_s": args.host_latency, "bandwidth_bytes_per_s": args.host_bandwidth},
        "targets": {"2": 1.7, "4": 3.2, "min_batch": 256},
    }
    pl = rec["predicted_loopback"]
    rec["meets_targets"] = all(v["speedup"] >= rec["targets"][str(v["ranks"])] for v in pl.values()
                               if v["batch"] >= 256 and str(v["ranks"]) in rec["targets"])
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    append(rec)
    print(json.dumps({k: (v["speedup"]) for k, v in pl.items()}), flush=True)
    return rec


if __name__ == "__main__":
    main()
