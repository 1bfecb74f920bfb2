"""KG-embedding checks and costs.

    python bench/bench_kge.py [--epochs 50] [--snapshot DIR --snapshot-epochs 5]

1. Wiring check on PyKEEN's shipped Nations dataset: the same model and configuration trained
   through attrgraph (gnn.kge.train_kge + our filtered evaluator) and through pykeen.pipeline;
   both test MRRs are recorded with their difference (target: within 0.02).
2. With --snapshot: training time and held-out, type-restricted metrics on a real snapshot
   (e.g. the Myntra catalog exported by `attrgraph snapshot`).

Appends the figures to bench/results/kge.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._neo4j import git_commit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="TransE")
    ap.add_argument("--dim", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--snapshot", type=Path, default=None)
    ap.add_argument("--snapshot-epochs", type=int, default=5)
    args = ap.parse_args()

    import torch
    from pykeen.datasets import Nations
    from pykeen.pipeline import pipeline

    from gnn.kge import KgeConfig, evaluate_ranking, split_triples, train_kge, triples_from_snapshot
    from gnn.snapshot import load_snapshot

    torch.set_num_threads(args.threads)
    out: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit()}
    d = Nations()
    cfg = KgeConfig(model=args.model, embedding_dim=args.dim, epochs=args.epochs, batch_size=256,
                    learning_rate=0.01, seed=0, threads=args.threads)
    t = time.perf_counter()
    ours = train_kge(d.training, cfg)
    parts = [d.training.mapped_triples.numpy(), d.validation.mapped_triples.numpy(), d.testing.mapped_triples.numpy()]
    mrr_ours = evaluate_ranking(ours.model, parts[2], parts, sides=("head", "tail"))
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref = pipeline(dataset=d, model=args.model, model_kwargs={"embedding_dim": args.dim}, optimizer="adam",
                   optimizer_kwargs={"lr": 0.01}, negative_sampler="basic", random_seed=0,
                   training_kwargs={"num_epochs": args.epochs, "batch_size": 256, "use_tqdm": False},
                   evaluation_kwargs={"use_tqdm": False})
    t_ref = time.perf_counter() - t
    mrr_ref = ref.metric_results.get_metric("both.realistic.inverse_harmonic_mean_rank")
    out["nations"] = {"model": args.model, "dim": args.dim, "epochs": args.epochs,
                      "attrgraph_mrr": round(mrr_ours["mrr"], 4), "attrgraph_hits@10": round(mrr_ours["hits@10"], 4),
                      "pipeline_mrr": round(mrr_ref, 4),
                      "pipeline_hits@10": round(ref.metric_results.get_metric("both.realistic.hits_at_10"), 4),
                      "abs_diff": round(abs(mrr_ours["mrr"] - mrr_ref), 4),
                      "attrgraph_seconds": round(t_ours, 1), "pipeline_seconds": round(t_ref, 1)}
    if args.snapshot:
        snap = load_snapshot(args.snapshot)
        kg = triples_from_snapshot(snap)
        train, test = split_triples(kg.triples, (0.9, 0.1), seed=0)
        scfg = KgeConfig(model=args.model, embedding_dim=64, epochs=args.snapshot_epochs, batch_size=4096,
                         learning_rate=0.01, seed=0, threads=args.threads)
        t = time.perf_counter()
        m = train_kge(kg.factory(train), scfg)
        t_train = time.perf_counter() - t
        t = time.perf_counter()
        res = evaluate_ranking(m.model, test, [kg.triples], groups=kg.groups)
        out["snapshot"] = {"path": str(args.snapshot), "triples": len(kg.triples), "entities": kg.num_entities,
                           "epochs": args.snapshot_epochs, "train_seconds": round(t_train, 1),
                           "eval_seconds": round(time.perf_counter() - t, 1),
                           "mrr": round(res["mrr"], 4), "hits@1": round(res["hits@1"], 4),
                           "hits@10": round(res["hits@10"], 4),
                           "per_relation_mrr": {kg.relation_labels[r]: round(v, 4) for r, v in res["per_relation_mrr"].items()}}
    print(json.dumps(out, indent=1))
    with open(ROOT / "bench" / "results" / "kge.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
