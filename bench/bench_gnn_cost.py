"""Cost of the GNN on 2 cores: training and prediction time and peak RSS on 1x, 2x, 4x catalogs.

    python bench/bench_gnn_cost.py [--snapshot DIR] [--factors 1,2,4] [--epochs 6] [--threads 2]
                                   [--gnn-options JSON]

The k-times catalog is the snapshot with every product copied k times (new keys, the same text,
brand, category and facts; values, brands and categories shared), text features tiled. For each
factor, in a fresh process (so peak RSS is that run's own): ``CompletionPredictor.fit`` with the GNN
for a fixed number of epochs (early stopping off, so every factor does the same work per epoch),
then ``predict`` of every missing applicable slot of every product (top 5); the checkpoint's size, and a
fresh load of it predicting every slot again (``attrgraph predict``). Prints a table and
appends the figures to bench/results/gnn_cost.jsonl; the ratios to 1x say how time grows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent

from bench._neo4j import git_commit  # noqa: E402


def replicate(src: Path, dst: Path, k: int) -> Path:
    """Write the k-times replicated copy of snapshot ``src`` (with its features) to ``dst``."""
    import numpy as np

    from gnn.snapshot import NODE_TYPES, load_snapshot

    snap = load_snapshot(src)
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "nodes").mkdir(parents=True)
    (dst / "edges").mkdir()
    n = snap.num_nodes("product")
    for t in NODE_TYPES:
        with open(dst / "nodes" / f"{t}.jsonl", "w", encoding="utf-8") as fh:
            for j in range(k if t == "product" else 1):
                for r in snap.nodes[t]:
                    if j:
                        r = {**r, "key": f"{r['key']}#r{j}"}
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    mf = json.loads(json.dumps(snap.manifest))
    mf["nodes"]["product"] = n * k
    for rel, (s, _d) in snap.edge_types.items():
        e = snap.edges[rel]
        if s == "product":
            e = np.concatenate([e + np.array([[j * n], [0]]) for j in range(k)], axis=1)
        np.save(dst / "edges" / f"{rel}.npy", e.astype(np.int64))
        mf["edges"][rel]["count"] = int(e.shape[1])
    mf["fingerprint"] = hashlib.sha256(f"{snap.fingerprint}x{k}".encode()).hexdigest()
    (dst / "manifest.json").write_text(json.dumps(mf, indent=1), encoding="utf-8")
    out = load_snapshot(dst)
    for name in snap.features.names():
        meta = snap.features.meta(name)
        m = snap.features.get(name)
        if meta["node_type"] == "product":
            m = np.concatenate([m] * k)
        skip = ("node_type", "shape", "dtype", "snapshot", "created_at")
        out.features.put(name, meta["node_type"], m, **{x: v for x, v in meta.items() if x not in skip})
    return dst


def one(snapshot: Path, epochs: int, threads: int, gnn_options: dict[str, Any]) -> dict[str, Any]:
    """Train and predict once (run in a child process); returns the figures."""
    import numpy as np

    from gnn.completion import CompletionPredictor
    from gnn.snapshot import load_snapshot

    t0 = time.perf_counter()
    snap = load_snapshot(snapshot)
    load_s = time.perf_counter() - t0
    kw = {"threads": threads, "epochs": epochs, "patience": 10**6, "eval_every": max(1, epochs // 2), "max_seconds": 1e9,
          **gnn_options}
    t = time.perf_counter()
    pred = CompletionPredictor.fit(snap, model="gnn", model_kwargs=kw)
    fit_s = time.perf_counter() - t
    m = pred.model
    epoch_s = [h["seconds"] for h in m.history]
    t = time.perf_counter()
    cand = pred.predict(snap, top_k=5)
    predict_s = time.perf_counter() - t
    # the checkpoint: its size, and a fresh load scoring every slot again (what `attrgraph predict` does)
    ckpt = snapshot.parent / f"{snapshot.name}.model"
    t = time.perf_counter()
    pred.save(ckpt)
    save_s = time.perf_counter() - t
    size_mb = sum(f.stat().st_size for f in ckpt.iterdir()) / 2**20
    t = time.perf_counter()
    again = CompletionPredictor.load(ckpt).predict(snap, top_k=5)
    load_predict_s = time.perf_counter() - t
    shutil.rmtree(ckpt, ignore_errors=True)
    return {"checkpoint_mb": round(size_mb, 1), "save_seconds": round(save_s, 1),
            "load_and_predict_seconds": round(load_predict_s, 1), "same_predictions": bool(np.array_equal(again.product, cand.product)
                                                            and np.array_equal(again.candidate, cand.candidate)),
            "products": snap.num_nodes("product"), "facts": int(snap.edges["has_value"].shape[1]),
            "load_seconds": round(load_s, 1), "fit_seconds": round(fit_s, 1), "epochs": len(m.history),
            "train_loop_seconds": epoch_s[-1] if epoch_s else None,
            "seconds_per_epoch": round(epoch_s[-1] / len(epoch_s), 2) if epoch_s else None,
            "predict_seconds": round(predict_s, 1), "slots_predicted": len(cand),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    from graph.settings import attrgraph_home

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", type=Path, default=attrgraph_home() / "snapshots" / "current")
    ap.add_argument("--factors", default="1,2,4")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gnn-options", default="{}")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "gnn_cost")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    opts = json.loads(args.gnn_options)
    if args.child:
        print("RESULT " + json.dumps(one(args.child, args.epochs, args.threads, opts)), flush=True)
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = []
    for k in [int(x) for x in args.factors.split(",")]:
        snap = args.snapshot if k == 1 else replicate(args.snapshot, args.work / f"x{k}", k)
        p = subprocess.run([sys.executable, __file__, "--child", str(snap), "--epochs", str(args.epochs),
                            "--threads", str(args.threads), "--gnn-options", args.gnn_options],
                           capture_output=True, text=True)
        line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode or not line:
            raise SystemExit(f"factor {k} failed:\n{p.stderr[-3000:]}")
        r = {"factor": k, **json.loads(line[0][7:])}
        rows.append(r)
        print(r, flush=True)
    base = rows[0]
    for r in rows:
        for key in ("seconds_per_epoch", "predict_seconds", "peak_rss_mb"):
            if base.get(key) and r.get(key) is not None:
                r[f"{key}_ratio"] = round(r[key] / base[key], 2)
    hdr = ["factor", "products", "s/epoch", "ratio", "predict s", "ratio", "slots", "peak RSS MB", "ratio",
           "checkpoint MB", "load + predict s"]
    print("| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr))
    for r in rows:
        print(f"| {r['factor']}x | {r['products']} | {r['seconds_per_epoch']} | {r.get('seconds_per_epoch_ratio')} | "
              f"{r['predict_seconds']} | {r.get('predict_seconds_ratio')} | {r['slots_predicted']} | {r['peak_rss_mb']} | "
              f"{r.get('peak_rss_mb_ratio')} | {r['checkpoint_mb']} | {r['load_and_predict_seconds']} |")
    rec = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "snapshot": str(args.snapshot),
           "epochs": args.epochs, "threads": args.threads, "gnn_options": opts, "runs": rows,
           "commit": git_commit()}
    res = ROOT / "bench" / "results" / "gnn_cost.jsonl"
    with open(res, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(f"figures appended to {res}")


if __name__ == "__main__":
    main()
