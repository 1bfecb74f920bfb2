"""Local vs Spark completion: the same committed run, and what each engine costs here.

    .venv/bin/python bench/bench_spark.py [--catalogs sample,myntra] [--limit 8000] [--master local[2]]

Per catalog (the shipped Myntra sample; the first ``--limit`` products of the shared Myntra catalog), on a
throwaway Neo4j: ``complete(full=True)`` trains and saves the GNN (its run rolled back); then the same
completion with ``model_policy="reuse"`` on the local engine (rolled back) and on ``engine="spark"``: the same
saved model, so the two timed runs differ only by engine, each with its own cold embedding cache. Recorded: each run's seconds per stage, and whether the two committed runs
are equal (every edge and property but run ids and times; counts; rule verdicts). Appends one JSON line per
catalog to ``bench/results/spark.jsonl`` with the git commit. Timings on a shared 2-core machine are noisy:
the ratio spark / local of the same record is the figure to read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from bench._neo4j import bench_graph, git_commit  # noqa: E402

OUT = ROOT / "bench" / "results" / "spark.jsonl"
SAMPLE = ROOT / "attrgraph" / "sample" / "myntra_sample.jsonl.gz"
MYNTRA = ROOT.parent / "shared" / "data" / "myntra" / "styles.jsonl.gz"
GNN = {"epochs": 4, "hidden": 32, "eval_every": 2, "threads": 1}


def _edges(g, run_id: str) -> dict:
    rows = g.client.read("MATCH (p:Product)-[e:PREDICTED_VALUE]->(v) WHERE e.run_id = $run "
                         "RETURN p.id AS product, coalesce(v.norm, v.key) AS norm, properties(e) AS props", {"run": run_id})
    return {(r["product"], r["props"]["attribute"], r["norm"]):
            {k: v for k, v in r["props"].items() if k not in ("run_id", "created_at", "superseded_at")} for r in rows}


def _catalog_file(name: str, limit: int, tmp: Path) -> Path:
    if name == "sample":
        return SAMPLE
    import gzip

    out = tmp / f"{name}-{limit}.jsonl"
    with gzip.open(MYNTRA, "rt", encoding="utf-8") as fh, open(out, "w", encoding="utf-8") as w:
        for i, line in enumerate(fh):
            if i >= limit:
                break
            w.write(line)
    return out


def run_catalog(name: str, limit: int, master: str, partitions: int) -> dict:
    from attrgraph.complete import CompletionConfig, complete, rollback
    from graph import writeback as wb

    with tempfile.TemporaryDirectory(prefix="attrgraph-bench-spark-") as d, bench_graph(heap_mb=1024, pagecache_mb=256) as g:
        tmp = Path(d)
        f = _catalog_file(name, limit, tmp)
        g.clear(confirm=True)
        rep = g.ingest(f, mapping="myntra")
        base = CompletionConfig(encoder="char-svd", threads=1, rules=["myntra"], review_min_p=0.3, model_kwargs=GNN,
                                work_dir=str(tmp / "work"), spark_master=master, spark_partitions=partitions)
        # the model is trained once (not timed here); then each engine scores with the saved model, each with
        # its own cold embedding cache (the Spark run encodes its texts itself)
        os.environ["ATTRGRAPH_HOME"] = str(tmp / "home-train")
        t0 = time.perf_counter()
        r0 = complete(g, config=base, full=True)
        train_s = time.perf_counter() - t0
        rollback(g, r0.run_id)
        os.environ["ATTRGRAPH_HOME"] = str(tmp / "home-local")
        t0 = time.perf_counter()
        r1 = complete(g, config=CompletionConfig.from_dict({**base.to_dict(), "model_policy": "reuse"}), full=True)
        local_s = time.perf_counter() - t0
        e1 = _edges(g, r1.run_id)
        rollback(g, r1.run_id)
        cfg = CompletionConfig.from_dict({**base.to_dict(), "engine": "spark", "model_policy": "reuse"})
        os.environ["ATTRGRAPH_HOME"] = str(tmp / "home-spark")
        t0 = time.perf_counter()
        r2 = complete(g, config=cfg, full=True)
        spark_s = time.perf_counter() - t0
        e2 = _edges(g, r2.run_id)
        keys = ("products_scored", "slots", "candidates", "accepted", "needs_review", "rejected", "abstained", "written")
        same_counts = all(r1.counts.get(k) == r2.counts.get(k) for k in keys)
        ok = wb.integrity(g.client).ok
        return {
            "catalog": name, "products": rep.products_created, "limit": limit if name != "sample" else None,
            "model": "gnn", "model_kwargs": GNN, "encoder": "char-svd", "master": master, "partitions": partitions,
            "training_run_seconds": round(train_s, 2), "local_seconds": round(local_s, 2), "spark_seconds": round(spark_s, 2),
            "ratio_spark_vs_local": round(spark_s / local_s, 3),
            "local_stages": {k: round(v, 2) for k, v in r1.stages.items()},
            "spark_stages": {k: round(v, 2) for k, v in r2.stages.items()},
            "model_action": {"local": r1.model_action, "spark": r2.model_action},
            "written": r1.counts.get("written"), "accepted": r1.counts.get("accepted"),
            "needs_review": r1.counts.get("needs_review"),
            "equal_edges": e1 == e2, "equal_counts": same_counts, "edges_compared": len(e1), "integrity_ok": ok,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalogs", default="sample,myntra")
    ap.add_argument("--limit", type=int, default=8000, help="products of the shared Myntra catalog")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import pyspark

    from graph.settings import LocalNeo4jSettings

    # the jars (Neo4j's, the connector) stay where they are while each run gets its own ATTRGRAPH_HOME
    os.environ.setdefault("ATTRGRAPH_DIST_DIR", str(LocalNeo4jSettings.from_env().dist_dir))
    home = os.environ.get("ATTRGRAPH_HOME")
    commit = git_commit()  # the code that runs (not HEAD when the record is written, minutes later)
    for name in [c for c in args.catalogs.split(",") if c]:
        if name not in ("sample", "myntra"):
            ap.error(f"unknown catalog {name!r}; valid: sample, myntra")
        try:
            rec = run_catalog(name, args.limit, args.master, args.partitions)
        finally:
            if home is None:
                os.environ.pop("ATTRGRAPH_HOME", None)
            else:
                os.environ["ATTRGRAPH_HOME"] = home
        rec.update({"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit,
                    "python": platform.python_version(), "pyspark": pyspark.__version__, "cpus": os.cpu_count()})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
