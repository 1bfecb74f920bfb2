"""Ingest benchmark: the full Myntra catalog, batched, against a naive one-MERGE-per-fact loop.

    python bench/bench_ingest.py [--file ../shared/data/myntra/styles.jsonl.gz] [--naive-products 2000]

Prints products/s, relationships/s and peak RSS of this Python process for the batched
ingest of the whole file, then the same facts for the first N products written one
auto-commit MERGE at a time, and the ratio of the two rates (both measured in this run).
Appends the figures to bench/results/ingest.jsonl.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._neo4j import bench_graph, git_commit  # noqa: E402
from ingest import shipped_mapping  # noqa: E402
from ingest.writer import CATEGORY_SEP  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT.parent / "shared" / "data" / "myntra" / "styles.jsonl.gz"

NAIVE_VALUE = """
MERGE (p:Product {id: $id})
MERGE (a:Attribute {name: $attribute})
MERGE (v:Value {attribute: $attribute, norm: $norm}) ON CREATE SET v.value = $display
MERGE (v)-[:OF_ATTRIBUTE]->(a)
MERGE (p)-[:HAS_VALUE]->(v)
"""
NAIVE_BRAND = "MERGE (p:Product {id: $id}) MERGE (b:Brand {key: $key}) MERGE (p)-[:HAS_BRAND]->(b)"
NAIVE_CAT = "MERGE (p:Product {id: $id}) MERGE (c:Category {path: $path}) MERGE (p)-[:IN_CATEGORY]->(c)"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def local_jvm() -> psutil.Process | None:
    """The throwaway Neo4j's JVM (a child of this process), or None for a server elsewhere."""
    for c in psutil.Process().children(recursive=True):
        if c.name() == "java":
            return c
    return None


class CpuClock:
    """CPU seconds of this Python process and of the local JVM: unlike wall time, not inflated when
    other work shares the cores, so it tells where the time goes and what an idle machine would do."""

    def __init__(self, jvm: psutil.Process | None):
        self.jvm = jvm

    def read(self) -> tuple[float, float]:
        j = self.jvm.cpu_times() if self.jvm else None
        return time.process_time(), (j.user + j.system) if j else float("nan")

    def since(self, start: tuple[float, float]) -> dict[str, float]:
        py, jvm = self.read()
        return {"python_cpu_s": round(py - start[0], 2), "jvm_cpu_s": round(jvm - start[1], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--mapping", default="myntra")
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--naive-products", type=int, default=2000)
    args = ap.parse_args()
    mapping = shipped_mapping(args.mapping)
    proc = psutil.Process()
    out: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
                 "file": str(args.file), "cpus": psutil.cpu_count(), "python": platform.python_version()}

    out["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)
    with bench_graph() as g:
        clock = CpuClock(local_jvm())
        g.clear(confirm=True)
        g.ensure_schema()
        rss_trace: list[tuple[int, float]] = []

        def progress(done: int, total: int, rows: int) -> None:
            if not rss_trace or rows - rss_trace[-1][0] >= 5000:
                rss_trace.append((rows, proc.memory_info().rss / 2**20))

        rss0 = proc.memory_info().rss / 2**20
        # First load into a just-started JVM (Cypher plans and JIT cold), then the same load again
        # into an emptied graph: the steady state of a server that has been up for a while.
        t = time.perf_counter()
        rep = g.ingest(args.file, mapping=mapping, batch_size=args.batch_size, progress=progress)
        cold = time.perf_counter() - t
        g.clear(confirm=True)
        c = clock.read()
        t = time.perf_counter()
        rep = g.ingest(args.file, mapping=mapping, batch_size=args.batch_size)
        dt = time.perf_counter() - t
        batched_cpu = clock.since(c)
        stats = g.stats()
        rels = stats.has_value + stats.has_brand + stats.in_category
        out["cold_first_load"] = {"seconds": round(cold, 2), "relationships_per_s": round(rels / cold, 1)}
        out["batched"] = {
            "products": rep.products_created, "facts": rep.facts_written, "rejected": rep.rows_rejected,
            "seconds": round(dt, 2), "products_per_s": round(rep.products_created / dt, 1),
            "relationships_per_s": round(rels / dt, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_at_start_mb": round(rss0, 1),
            "rss_trace_mb": [(r, round(m, 1)) for r, m in rss_trace[:: max(1, len(rss_trace) // 8)]],
            **batched_cpu,
        }
        t = time.perf_counter()
        rep2 = g.ingest(args.file, mapping=mapping, batch_size=args.batch_size)
        out["reingest_unchanged"] = {"seconds": round(time.perf_counter() - t, 2),
                                     "unchanged": rep2.products_unchanged, "facts_written": rep2.facts_written}

        # Same N products: batched, then naive, each into an empty graph.
        with gzip.open(args.file, "rt", encoding="utf-8") as fh:
            subset = [mapping.apply(json.loads(next(fh))) for _ in range(args.naive_products)]
        g.clear(confirm=True)
        t = time.perf_counter()
        sub_rep = g.ingest(args.file, mapping=mapping, batch_size=args.batch_size, limit=args.naive_products)
        sub_dt = time.perf_counter() - t
        g.clear(confirm=True)
        n = 0
        c = clock.read()
        t = time.perf_counter()
        with g.client.session() as s:
            for p in subset:
                for a, v in p.facts:
                    s.run(NAIVE_VALUE, id=p.id, attribute=a, norm=v.norm, display=v.display).consume()
                    n += 1
                if p.brand:
                    s.run(NAIVE_BRAND, id=p.id, key=p.brand.norm).consume()
                    n += 1
                if p.category:
                    s.run(NAIVE_CAT, id=p.id, path=CATEGORY_SEP.join(p.category)).consume()
                    n += 1
        naive_dt = time.perf_counter() - t
        naive_cpu = clock.since(c)
        out["subset"] = {
            "products": len(subset), "facts": n,
            "batched_seconds": round(sub_dt, 2), "batched_facts_per_s": round(sub_rep.facts_written / sub_dt, 1),
            "naive_seconds": round(naive_dt, 2), "naive_facts_per_s": round(n / naive_dt, 1),
            "naive_ms_per_fact": round(1000 * naive_dt / n, 3),
            "naive_cpu": naive_cpu,
        }
        # Where the time goes. The naive loop waits: one round trip and one commit per fact, so its
        # CPU is a small part of its wall time. The batched load is CPU-bound (Python mapping + JVM
        # writing); on idle cores its wall time is at least (python + jvm CPU) / cores, which bounds
        # the best full-file time this machine could reach when nothing else runs.
        cpu_total = batched_cpu["python_cpu_s"] + batched_cpu["jvm_cpu_s"]
        cores = psutil.cpu_count() or 1
        out["cpu_bound"] = {
            "batched_us_cpu_per_relationship": round(1e6 * cpu_total / rels, 1),
            "idle_machine_wall_floor_s": round(cpu_total / cores, 2),
        }
        out["ratio_full_batched_vs_naive"] = round(out["batched"]["relationships_per_s"] / (n / naive_dt), 1)
        out["ratio_subset_batched_vs_naive"] = round((sub_rep.facts_written / sub_dt) / (n / naive_dt), 1)
        g.clear(confirm=True)

    print(json.dumps(out, indent=1))
    res = ROOT / "bench" / "results" / "ingest.jsonl"
    with open(res, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(out) + "\n")
    print(f"recorded in {res.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
