"""Managed transactions through the routing scheme: what ``neo4j://`` costs, and how fast work resumes
after a restart.

    python bench/bench_neo4j_tx.py [--file ../shared/data/myntra/styles.jsonl.gz] [--products 6000]
                                   [--rounds 2] [--no-save]
    python bench/bench_neo4j_tx.py --write-readme | --check

Against a throwaway local Neo4j of its own (it restarts it, so never ``NEO4J_URI``):

* **ingest** of the first ``--products`` Myntra products into an empty graph, and **write-back** of a
  completion run's predictions (``write_predictions`` + ``commit_predictions``, four attributes per
  product, each run superseding the last), through ``bolt://`` and through ``neo4j://`` in the order
  bolt, neo4j, neo4j, bolt (per round, after a warm-up through both): wall throughput and CPU seconds
  (this Python process + the JVM), and per round the ratio of the two neo4j runs to the two bolt runs
  around them (cancels a drift linear within the round), the median over rounds;
* **restart recovery**: an ingest and a write-back through ``neo4j://`` are each held after a few
  committed transactions, the server is stopped (SIGTERM) and started again; recorded: the stop and
  start seconds, and ``recovery_s``, the seconds from the server answering again to the held work's
  next committed transaction (retries with delays doubling up to 4 s). The ingest's facts are
  checked against the undisturbed rounds' (none lost, none twice) and the write-back's current
  predictions against what it wrote.

Appends one record to ``bench/results/neo4j_tx.jsonl``. ``--write-readme`` renders the latest record
into README.md between ``<!-- results:neo4j-tx:begin -->`` and ``<!-- results:neo4j-tx:end -->``;
``--check`` exits 1 when the README's block is not what the records give.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "neo4j_tx.jsonl"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:neo4j-tx:begin -->", "<!-- results:neo4j-tx:end -->"
DEFAULT_FILE = ROOT.parent / "shared" / "data" / "myntra" / "styles.jsonl.gz"
ATTRIBUTES = ("baseColour", "season", "usage", "gender")

FACTS = """
MATCH (p:Product)-[h:HAS_VALUE|HAS_BRAND|IN_CATEGORY]->(x)
RETURN p.id AS p, type(h) AS t, coalesce(x.attribute, '') + '|' + coalesce(x.norm, x.key, x.path) AS k
"""


# ---------------------------------------------------------------------------------------------- rendering
def records(path: Path = RESULTS) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _f(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def render(recs: list[dict[str, Any]] | None = None) -> str:
    """The README block for the latest record."""
    recs = records() if recs is None else recs
    if not recs:
        return "(no record yet: run `bench/bench_neo4j_tx.py`)"
    r = recs[-1]
    ing, wbk, rs = r["ingest"], r["writeback"], r["restart"]
    lines = [
        f"From `bench/results/neo4j_tx.jsonl` (the latest record: {r['when'][:10]}, commit {r['commit']}, "
        f"{r['cpus']} cores, load average {r['load_avg_1m_at_start']} at the start), rendered by "
        "`bench/bench_neo4j_tx.py --write-readme`. Medians of "
        f"{r['rounds'] * 2} runs per scheme (bolt, neo4j, neo4j, bolt per round"
        f"{', after a warm-up of both' if r.get('ratio_method') else ''}), on one local server:",
        "",
        "| work | `bolt://` | `neo4j://` | neo4j / bolt |",
        "|---|---|---|---|",
        f"| ingest, {r['products']:,} products (batches of {r['batch_size']}): products/s | "
        f"{_f(ing['bolt']['per_s'])} | {_f(ing['neo4j']['per_s'])} | {ing['ratio_per_s']:.2f} |",
        f"| ingest: CPU s (Python + JVM) | {_f(ing['bolt']['cpu_s'], 2)} | {_f(ing['neo4j']['cpu_s'], 2)} | "
        f"{ing['ratio_cpu']:.2f} |",
        f"| write-back, {wbk['predictions']:,} predictions (stage + commit): predictions/s | "
        f"{_f(wbk['bolt']['per_s'])} | {_f(wbk['neo4j']['per_s'])} | {wbk['ratio_per_s']:.2f} |",
        f"| write-back: CPU s (Python + JVM) | {_f(wbk['bolt']['cpu_s'], 2)} | {_f(wbk['neo4j']['cpu_s'], 2)} | "
        f"{wbk['ratio_cpu']:.2f} |",
        "",
        "A restart of the server in mid-run, through `neo4j://` (stop with SIGTERM, start again; the held "
        "work goes on as soon as the server is stopped):",
        "",
        "| work held | stop s | start s | next commit after the server answered, s | one transaction, s | result |",
        "|---|---|---|---|---|---|",
    ]
    for k, label in (("ingest", "ingest"), ("writeback", "write-back")):
        x = rs[k]
        lines.append(f"| {label} | {_f(x['stop_s'])} | {_f(x['start_s'])} | {_f(x['recovery_s'])} | "
                     f"{_f(x['usual_tx_s'], 2) if 'usual_tx_s' in x else '—'} | {x['result']} |")
    how = ("per round, the two `neo4j://` runs against the two `bolt://` runs around them, the median over rounds"
           if r.get("ratio_method") == "per-round" else "the ratio of the medians")
    lines += ["", "The next commit comes after a retry delay (at most 4 s, and 20% jitter) plus the transaction "
              f"itself (its usual time in this run: *one transaction*). Throughput ratios: {how}."]
    return "\n".join(lines)


def readme_block(text: str) -> str | None:
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def write_readme(block: str, readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} lacks the markers {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- measuring
class Clock:
    """Wall seconds, and CPU seconds of this process and of the server's JVM (not inflated by other work
    that shares the cores)."""

    def __init__(self, jvm_pid: int | None):
        import psutil

        self.jvm = psutil.Process(jvm_pid) if jvm_pid else None

    def read(self) -> tuple[float, float]:
        j = self.jvm.cpu_times() if self.jvm else None
        return time.perf_counter(), time.process_time() + ((j.user + j.system) if j else 0.0)

    def since(self, t0: tuple[float, float]) -> tuple[float, float]:
        t1 = self.read()
        return t1[0] - t0[0], t1[1] - t0[1]


def _summary(runs: list[tuple[float, float]], n: int) -> dict[str, Any]:
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "per_s": round(n / wall, 1),
            "runs": [[round(w, 3), round(c, 3)] for w, c in runs]}


def _round_ratio(o: dict[str, Any], i: int) -> float:
    """Median over rounds of (bolt[0] + bolt[1]) / (neo4j[0] + neo4j[1]) of field ``i`` (0 wall, 1 CPU)."""
    b, n = o["bolt"]["runs"], o["neo4j"]["runs"]
    return statistics.median((b[2 * r][i] + b[2 * r + 1][i]) / (n[2 * r][i] + n[2 * r + 1][i])
                             for r in range(len(b) // 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:  # noqa: C901 - one linear script
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--products", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if args.write_readme or args.check:
        want = render()
        if args.check:
            have = readme_block(README.read_text(encoding="utf-8"))
            if have != want:
                print("README.md's neo4j-tx block differs from the records; run bench/bench_neo4j_tx.py --write-readme")
                raise SystemExit(1)
            print("README.md's neo4j-tx block is up to date")
        else:
            write_readme(want)
            print(f"wrote the neo4j-tx block of {README.relative_to(ROOT)}")
        return

    from bench._neo4j import git_commit
    from graph import LocalNeo4j, LocalNeo4jSettings, Neo4jSettings, ProductGraph
    from graph import runs as runs_db
    from graph import writeback as wb
    from graph.connection import Neo4jClient

    out: dict[str, Any] = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
                           "cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_avg_1m_at_start": round(os.getloadavg()[0], 2), "products": args.products,
                           "batch_size": args.batch_size, "rounds": args.rounds, "ratio_method": "per-round"}
    with tempfile.TemporaryDirectory(prefix="attrgraph-bench-tx-") as tmp:
        tmp_p = Path(tmp)
        src = tmp_p / "products.jsonl"
        with gzip.open(args.file, "rt", encoding="utf-8") as fi, open(src, "w", encoding="utf-8") as fo:
            for i, line in enumerate(fi):
                if i >= args.products:
                    break
                fo.write(line)
        local = LocalNeo4jSettings(home=tmp_p / "neo4j", dist_dir=LocalNeo4jSettings.from_env().dist_dir,
                                   port=_free_port(), heap_mb=1024, pagecache_mb=256)
        server = LocalNeo4j(local)
        server.start()
        try:
            pw = local.password()
            schemes = {"bolt": Neo4jSettings(uri=local.uri, user="neo4j", password=pw, max_retry_seconds=300),
                       "neo4j": Neo4jSettings(uri=local.uri.replace("bolt://", "neo4j://"), user="neo4j", password=pw,
                                              max_retry_seconds=300)}
            graphs = {k: ProductGraph(Neo4jClient(s)) for k, s in schemes.items()}
            clock = Clock(server.status().pid)
            order = ["bolt", "neo4j", "neo4j", "bolt"] * args.rounds

            # -- ingest: warm the JVM (and the Cypher caches) through both schemes, then ABBA rounds into
            # an empty graph
            g0 = graphs["bolt"]
            for k in ("bolt", "neo4j", "bolt", "neo4j"):
                graphs[k].clear(confirm=True)
                graphs[k].ingest(src, mapping="myntra", batch_size=args.batch_size)
            ingest_runs: dict[str, list[tuple[float, float]]] = {"bolt": [], "neo4j": []}
            reference: Counter | None = None
            for k in order:
                g = graphs[k]
                g.clear(confirm=True)
                t0 = clock.read()
                rep = g.ingest(src, mapping="myntra", batch_size=args.batch_size)
                ingest_runs[k].append(clock.since(t0))
                assert rep.products_created == args.products - rep.rows_rejected, rep.summary()
                facts = Counter((r["p"], r["t"], r["k"]) for r in g.client.read(FACTS))
                reference = reference or facts
                assert facts == reference, "an ingest round wrote different facts"
                print(f"ingest {k}: {ingest_runs[k][-1][0]:.1f} s", flush=True)
            n_products = args.products - rep.rows_rejected
            out["ingest"] = {k: _summary(v, n_products) for k, v in ingest_runs.items()}

            # -- write-back: one run per round, each superseding the last
            vals: dict[str, list[str]] = {}
            for r in g0.client.read("MATCH (v:Value) WHERE v.attribute IN $a RETURN v.attribute AS a, v.norm AS n "
                                    "ORDER BY a, n", {"a": list(ATTRIBUTES)}):
                vals.setdefault(r["a"], []).append(r["n"])
            ids = [r["id"] for r in g0.client.read("MATCH (p:Product) RETURN p.id AS id ORDER BY id")]

            def rows_for(seed: int) -> list[wb.PredictionRow]:
                rng = random.Random(seed)
                return [wb.PredictionRow(p, a, rng.choice(vals[a]), round(rng.uniform(0.3, 1.0), 3), 1,
                                         "accept" if rng.random() < 0.7 else "needs_review")
                        for p in ids for a in ATTRIBUTES if a in vals]

            def write_back(g: ProductGraph, rows: list[wb.PredictionRow], on_batch=None) -> str:
                run = runs_db.new_run_id()
                runs_db.acquire(g.client, run, mode="bench")
                wb.write_predictions(g.client, run, rows, model="bench", model_version="1", batch_size=1000,
                                     on_batch=on_batch)
                wb.commit_predictions(g.client, run, {}, batch=20_000)
                runs_db.release(g.client, run)
                return run

            for i, k in enumerate(("bolt", "neo4j")):  # warm-up
                write_back(graphs[k], rows_for(-1 - i))
            wb_runs: dict[str, list[tuple[float, float]]] = {"bolt": [], "neo4j": []}
            n_rows = 0
            for i, k in enumerate(order):
                rows = rows_for(i)
                n_rows = len(rows)
                t0 = clock.read()
                write_back(graphs[k], rows)
                wb_runs[k].append(clock.since(t0))
                print(f"write-back {k}: {wb_runs[k][-1][0]:.1f} s", flush=True)
            out["writeback"] = {"predictions": n_rows, **{k: _summary(v, n_rows) for k, v in wb_runs.items()}}
            for part in ("ingest", "writeback"):
                o = out[part]
                # per round (bolt, neo4j, neo4j, bolt): the ratio of the two neo4j runs to the two bolt runs,
                # which cancels a drift that is linear within the round; the median over rounds
                o["ratio_per_s"] = round(_round_ratio(o, 0), 3)  # throughput: bolt time / neo4j time
                o["ratio_cpu"] = round(1 / _round_ratio(o, 1), 3)  # CPU: neo4j / bolt
            n_batches = -(-n_products // args.batch_size)
            usual_tx = {"ingest": out["ingest"]["neo4j"]["wall_s"] / n_batches,
                        "writeback": out["writeback"]["neo4j"]["wall_s"] / (-(-n_rows // 1000) + 2)}

            # -- restart in mid-run, through neo4j://
            g = graphs["neo4j"]

            def restart_while_held(work, arm) -> dict[str, Any]:
                """Run ``work(hook)`` in a thread; ``hook`` holds it at its ``arm``-th callback until the
                server is stopped, then notes the time of the next callback (its next commit)."""
                held, stopped = threading.Event(), threading.Event()
                state: dict[str, Any] = {"calls": 0}

                def hook(*_a: Any) -> None:
                    state["calls"] += 1
                    if state["calls"] == arm:
                        held.set()
                        stopped.wait()
                    elif stopped.is_set() and "resumed_at" not in state:
                        state["resumed_at"] = time.perf_counter()

                def run() -> None:
                    try:
                        state["result"] = work(hook)
                        state.setdefault("resumed_at", time.perf_counter())  # held at its last callback
                    except BaseException as e:  # noqa: BLE001 - reported below
                        state["error"] = e
                        held.set()

                t = threading.Thread(target=run)
                t.start()
                held.wait()
                t0 = time.perf_counter()
                server.stop()
                t1 = time.perf_counter()
                stopped.set()
                server.start()
                t2 = time.perf_counter()
                t.join()
                if "error" in state:
                    raise state["error"]
                return {"stop_s": round(t1 - t0, 2), "start_s": round(t2 - t1, 2),
                        "recovery_s": round(state["resumed_at"] - t2, 2), "result": state["result"]}

            g.clear(confirm=True)
            r_ing = restart_while_held(
                lambda hook: g.ingest(src, mapping="myntra", batch_size=args.batch_size, progress=hook), arm=3)
            rep = r_ing.pop("result")
            facts = Counter((r["p"], r["t"], r["k"]) for r in g.client.read(FACTS))
            lost, twice = len(set(reference) - set(facts)), sum(1 for v in facts.values() if v > 1)
            ok = rep.status == "completed" and facts == reference
            r_ing["result"] = (f"{'completed' if ok else 'WRONG'}: {sum(facts.values()):,} facts, {lost} lost, "
                               f"{twice} twice")
            r_ing["ok"] = ok
            r_ing["usual_tx_s"] = round(usual_tx["ingest"], 2)
            print("restart during ingest:", r_ing, flush=True)

            rows = rows_for(999)
            r_wb = restart_while_held(lambda hook: write_back(g, rows, on_batch=hook), arm=3)
            run = r_wb.pop("result")
            cur = wb.current_set(g.client)
            want = {(r.product, r.attribute, r.norm, run) for r in rows}
            integ = wb.integrity(g.client)
            ok = cur == want and integ.ok and integ.duplicate_run_edges == 0
            r_wb["result"] = (f"{'committed' if ok else 'WRONG'}: {len(cur & want):,} of {len(want):,} predictions "
                              f"current, {integ.duplicate_run_edges} twice")
            r_wb["ok"] = ok
            r_wb["usual_tx_s"] = round(usual_tx["writeback"], 2)
            print("restart during write-back:", r_wb, flush=True)
            out["restart"] = {"ingest": r_ing, "writeback": r_wb}
            for g in graphs.values():
                g.close()
        finally:
            server.stop(timeout_s=5)

    print(json.dumps(out, indent=1))
    if not args.no_save:
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(out) + "\n")
        print(f"recorded in {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
