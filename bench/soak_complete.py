"""Fault soak of `attrgraph complete`: SIGKILL during write-back, again and again, then check the graph.

    python bench/soak_complete.py [--rounds 5] [--limit 1000] [--model majority] [--seed 0]
                                  [--recovery alternate|incremental|full] [--kill-at edges|time]
                                  [--write-batch-size 50] [--home DIR]

Ingests a small sample (default the shipped attrgraph/sample/myntra_sample.jsonl.gz, first 1,000
products) into a throwaway Neo4j (or ``NEO4J_URI``, which it WIPES), runs ``attrgraph complete --full``
twice (committed runs whose predictions the killed runs supersede; the second, warm one supersedes
the first exactly as a killed run will, and its counts and write-stage time set the scale of the
random kill points), then per round:

1. starts ``attrgraph complete --full`` as a child process (small write batches, so write-back is
   many transactions), waits for it to enter the write stage (its ``[write]`` progress line), then
   for a random point of it and SIGKILLs it (by its pid). ``--kill-at edges`` (default): once the
   run holding the lock has a random number (1 .. 98% of the warm run's) of predicted edges
   committed, polled in Neo4j, plus a random 0-50 ms; ``--kill-at time``: a random share of the
   measured write time after ``[write]`` (under a loaded machine the write time varies, so more
   kills come too late);
2. checks the graph as the kill left it: the lock is held by the killed run, which is still
   ``running`` and recoverable (its process is gone: ``graph.runs.stale_reason``); at most one
   current prediction per slot; no duplicate (product, attribute, value) among non-superseded
   predictions; asserted facts unchanged;
3. runs a normal ``attrgraph complete`` (incremental, ``--full``, or alternating: ``--recovery``)
   and checks: it exits 0 and commits; the killed run is ``failed`` and ``cleaned`` with none of its
   predicted edges left; no duplicate non-superseded predictions and ``graph.writeback.integrity``
   is clean; the asserted HAS_VALUE / HAS_BRAND / IN_CATEGORY facts are unchanged (counts + SHA-256,
   ``graph.writeback.asserted_fingerprint``); the lock is free; and the current predictions are
   exactly those before the kill (an incremental recovery that scored nothing) or exactly the
   recovery run's own (a full recovery).

A kill that lands after the run committed (the child finished writing first) is a *missed* round:
its recovery checks still run (with ``--kill-at time`` the delays of later rounds shrink). Prints a
per-round table, appends the record to bench/results/soak.jsonl, exits 1 if any check failed, 2 if
no kill landed inside the write stage (nothing was tested). Child logs go to <home>/soak-logs/
(``--home`` keeps them; a temporary home is deleted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._neo4j import bench_graph, git_commit  # noqa: E402
from bench.bench_complete import (CLI, ROOT, ChildRun, child_env, run_complete, run_dirs,  # noqa: E402
                                  setup_home, shipped_rules, write_config)
from graph import ProductGraph  # noqa: E402
from graph import runs as runs_db  # noqa: E402
from graph import writeback as wb  # noqa: E402

DEFAULT_FILE = ROOT / "attrgraph" / "sample" / "myntra_sample.jsonl.gz"

_CURRENT = """
MATCH (p:Product)-[e:PREDICTED_VALUE]->(x) WHERE e.current = true
RETURN p.id AS p, e.attribute AS a, coalesce(x.norm, x.key) AS v, e.run_id AS run
"""
# the same (product, attribute, value) predicted twice among the predictions that nothing superseded
_DUPLICATES = """
MATCH (p:Product)-[e:PREDICTED_VALUE]->(x) WHERE e.superseded_by IS NULL
WITH p, e.attribute AS a, x, count(e) AS n WHERE n > 1
RETURN count(*) AS groups, coalesce(sum(n), 0) AS edges
"""
_RUN_EDGES = """
MATCH ()-[e:PREDICTED_VALUE]->() WHERE e.run_id = $run RETURN count(e) AS n
"""
_SUPERSEDED_BY = """
MATCH ()-[e:PREDICTED_VALUE]->() WHERE e.superseded_by = $run RETURN count(e) AS n
"""


def current_set(g: ProductGraph) -> set[tuple[str, str, str, str]]:
    return {(r["p"], r["a"], r["v"], r["run"]) for r in g.client.read(_CURRENT)}


def duplicates(g: ProductGraph) -> int:
    return int(g.client.read(_DUPLICATES)[0]["groups"])


def count(g: ProductGraph, q: str, run: str) -> int:
    return int(g.client.read(q, {"run": run})[0]["n"])


class Watched:
    """An `attrgraph complete` child whose merged output is read line by line (to a log file), with an
    event per stage line it prints (``[write]`` ...)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.stages: dict[str, float] = {}
        self.events = {s: threading.Event() for s in ("write", "report")}
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                  text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        with open(self.log, "w", encoding="utf-8") as fh:
            for line in self.p.stdout:
                fh.write(line)
                s = line.strip()
                if s.startswith("[") and s.endswith("]") and " " not in s:
                    name = s[1:-1]
                    self.stages.setdefault(name, time.monotonic() - self.t0)
                    if name in self.events:
                        self.events[name].set()

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)  # our own child, by its pid

    def wait(self, timeout: float) -> int:
        rc = self.p.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return rc


def wait_for_edges(g: ProductGraph, w: "Watched", target: int, timeout: float) -> None:
    """Until the run holding the lock has ``target`` predicted edges in the graph (committed write
    batches), or the child ends / reaches its report stage."""
    run = None
    end = time.monotonic() + timeout
    while time.monotonic() < end and w.p.poll() is None and not w.events["report"].is_set():
        if run is None:
            run = runs_db.lock_state(g.client).holder
        if run is not None and count(g, _RUN_EDGES, run) >= target:
            return
        time.sleep(0.02)


def soak_round(k: int, g: ProductGraph, env: dict[str, str], work: Path, cfg: Path, logs: Path, *,
               delay: float, target_edges: int | None, recovery_full: bool, before_facts: tuple,
               timeout: float) -> dict[str, Any]:
    """One kill and its recovery. The kill point: ``target_edges`` predicted edges written (polled in
    Neo4j) then ``delay`` seconds, or (``target_edges`` None) ``delay`` seconds into the write stage."""
    row: dict[str, Any] = {"round": k, "target_edges": target_edges, "delay_s": round(delay, 3),
                           "recovery": "full" if recovery_full else "incremental"}
    failed: list[str] = []

    def check(name: str, ok: bool) -> None:
        if not ok:
            failed.append(name)

    cur_before = current_set(g)
    argv = [str(CLI), "complete", "--config", str(cfg), "--work-dir", str(work), "--top", "0", "--full"]
    w = Watched(argv, env, logs / f"round{k}-killed.log")
    if not w.events["write"].wait(timeout):
        w.kill()
        w.wait(60)
        row.update(outcome="no write stage", checks_failed=["reached the write stage"])
        return row
    if target_edges is not None:
        wait_for_edges(g, w, target_edges, timeout)
    time.sleep(delay)
    late = w.events["report"].is_set() or w.p.poll() is not None
    w.kill()
    rc = w.wait(60)
    row["killed_exit"] = rc
    row["killed_after_write_s"] = round(time.monotonic() - w.t0 - w.stages.get("write", 0.0), 3)

    # the graph as the kill left it
    lock = runs_db.lock_state(g.client)
    killed = lock.holder
    if killed is None:  # the run released the lock: it had committed before the kill
        new = sorted(run_dirs(work))
        killed = new[-1] if new else None
    rec = runs_db.get_run(g.client, killed) if killed else None
    row["killed_run"] = killed
    row["status_at_kill"] = rec.status if rec else None
    missed = rc != -signal.SIGKILL or rec is None or rec.status != "running"
    row["outcome"] = ("missed (finished first)" if missed
                      else "killed in write" if not late else "killed late in write")
    if missed:  # the run committed: its predictions are the ones a recovery must leave as they are
        cur_before = current_set(g)
    else:
        row["partial_edges"] = count(g, _RUN_EDGES, killed)
        row["superseded_at_kill"] = count(g, _SUPERSEDED_BY, killed)
        why = runs_db.stale_reason(lock, stale_seconds=120.0)
        row["lock_at_kill"] = "held, stale: " + why if why else "held, looks alive"
        check("lock held by the killed run", lock.holder == killed)
        check("killed run recoverable (stale lock)", why is not None)
        integ = wb.integrity(g.client)
        check("mid-kill: one current per slot", integ.slots_with_several_current == 0)
        check("mid-kill: no duplicate run edges", integ.duplicate_run_edges == 0)
        check("mid-kill: no duplicate non-superseded", duplicates(g) == 0)
        check("mid-kill: asserted facts unchanged", wb.asserted_fingerprint(g.client) == before_facts)

    # the normal run that follows
    rr: ChildRun = run_complete(g, env, work, cfg, full=recovery_full, log=logs / f"round{k}-recovery.log",
                                timeout=timeout)
    c = rr.counts
    row.update(recovery_run=rr.run_id, recovery_exit=rr.returncode, recovery_status=rr.status,
               recovery_mode=rr.mode, recovery_s=round(rr.run_s, 2), recovery_wall_s=rr.wall_s,
               scored=c.get("products_scored"), written=c.get("written"), recovery_write_s=rr.stages.get("write"))
    check("recovery run exits 0", rr.returncode == 0)
    check("recovery run committed", rr.status == "committed")
    if not missed:
        after = runs_db.get_run(g.client, killed)
        row["killed_status_after"] = f"{after.status}{', cleaned' if after.cleaned else ''}"
        check("killed run marked failed", after.status == "failed")
        check("killed run cleaned", bool(after.cleaned))
        check("killed run's edges removed", count(g, _RUN_EDGES, killed) == 0)
        check("recovery names the killed run", any(f"recovered run {killed}" in n for n in rr.notes))
    dups = duplicates(g)
    integ = wb.integrity(g.client)
    facts = wb.asserted_fingerprint(g.client)
    row.update(duplicates=dups, integrity_ok=integ.ok, current_edges=integ.current_edges,
               predicted_edges=integ.predicted_edges, has_value=facts[0], facts_sha=facts[3][:12])
    check("no duplicate non-superseded predictions", dups == 0)
    check("integrity (one current per slot, no duplicate run edges/slots)", integ.ok)
    check("asserted facts unchanged (counts + checksum)", facts == before_facts)
    check("lock free after recovery", runs_db.lock_state(g.client).holder is None)
    cur_after = current_set(g)
    if rr.status == "committed":
        if recovery_full or rr.mode == "full":
            mine = {x for x in cur_after if x[3] == rr.run_id}
            check("full recovery: current = the recovery run's predictions",
                  mine == cur_after and len(cur_after) == (c.get("written") or 0))
        elif not c.get("products_scored"):
            check("incremental recovery: current predictions as before the kill", cur_after == cur_before)
        # an incremental recovery that scored products: only the invariants above apply
    row["checks_failed"] = failed
    row["missed"] = missed
    return row


def print_rows(rows: list[dict[str, Any]]) -> None:
    cols = [("round", "round"), ("target", "target_edges"), ("delay s", "delay_s"), ("outcome", "outcome"),
            ("partial", "partial_edges"), ("superseded", "superseded_at_kill"), ("recovery", "recovery"),
            ("mode", "recovery_mode"),
            ("rec s", "recovery_s"), ("scored", "scored"), ("written", "written"),
            ("killed after", "killed_status_after"), ("dups", "duplicates"), ("integrity", "integrity_ok"),
            ("HAS_VALUE", "has_value"), ("facts sha", "facts_sha"), ("failed checks", "checks_failed")]
    table = [[h for h, _ in cols]]
    for r in rows:
        line = []
        for _, k in cols:
            v = r.get(k)
            if k == "checks_failed":
                v = "; ".join(v) if v else "none"
            line.append("—" if v is None else str(v))
        table.append(line)
    widths = [max(len(t[i]) for t in table) for i in range(len(cols))]
    for j, t in enumerate(table):
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(t)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--mapping", default="myntra")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--model", default="majority", help="a fast model: majority | tfidf (gnn works, slowly)")
    ap.add_argument("--model-options", default=None, help="model_kwargs as JSON")
    ap.add_argument("--rules", action="append", default=None, help="default: the mapping's shipped rules if any")
    ap.add_argument("--write-batch-size", type=int, default=50,
                    help="completion write batch: small, so that write-back is many transactions")
    ap.add_argument("--recovery", choices=["alternate", "incremental", "full"], default="alternate",
                    help="how the run after each kill runs (alternate: incremental in odd rounds, --full in even)")
    ap.add_argument("--kill-at", choices=["edges", "time"], default="edges",
                    help="edges: once the run has a random number of predictions written (polled in Neo4j), after "
                         "a random 0-50 ms; time: a random delay into the write stage (scaled by its measured time)")
    ap.add_argument("--seed", type=int, default=0, help="the kill points")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per child run")
    ap.add_argument("--home", default=None, help="ATTRGRAPH_HOME to use and keep (logs stay in <home>/soak-logs)")
    ap.add_argument("--heap-mb", type=int, default=1024)
    ap.add_argument("--pagecache-mb", type=int, default=256)
    args = ap.parse_args()
    model_kwargs = json.loads(args.model_options) if args.model_options else None
    rules = args.rules if args.rules is not None else shipped_rules(args.mapping)
    rng = random.Random(args.seed)

    home, tmp_home = setup_home(args.home, "attrgraph-soak-")
    work = home / "soak-work"
    shutil.rmtree(work, ignore_errors=True)
    logs = home / "soak-logs" / datetime.now().strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
        "file": str(args.file), "limit": args.limit, "model": args.model, "model_options": model_kwargs or {},
        "rules": rules, "write_batch_size": args.write_batch_size, "recovery": args.recovery, "seed": args.seed,
        "kill_at": args.kill_at,
        "rounds": args.rounds, "cpus": psutil.cpu_count(), "python": platform.python_version(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    rows: list[dict[str, Any]] = []
    code = 0
    try:
        with bench_graph(heap_mb=args.heap_mb, pagecache_mb=args.pagecache_mb) as g:
            g.clear(confirm=True)
            g.ensure_schema()
            rep = g.ingest(args.file, mapping=args.mapping, limit=args.limit)
            out["products"] = rep.products_created
            before = wb.asserted_fingerprint(g.client)
            out["asserted_before"] = {"has_value": before[0], "has_brand": before[1], "in_category": before[2],
                                      "sha256": before[3]}
            print(f"ingested {rep.products_created} products ({before[0]} HAS_VALUE facts)", flush=True)
            env = child_env(g, home)
            cfg = write_config(home / "soak.yaml", model=args.model, model_kwargs=model_kwargs, rules=rules,
                               batch_size=args.write_batch_size)
            first = run_complete(g, env, work, cfg, full=True, log=logs / "baseline.log", timeout=args.timeout)
            if first.returncode != 0 or first.status != "committed":
                print(f"the baseline run failed (exit {first.returncode}):\n{first.tail()}", file=sys.stderr)
                return 1
            # a second full run, warm and superseding every prediction of the first as the killed runs
            # will: its write stage is the scale of the kill delays (the cold first one is slower)
            warm = run_complete(g, env, work, cfg, full=True, log=logs / "baseline-warm.log", timeout=args.timeout)
            if warm.returncode != 0 or warm.status != "committed":
                print(f"the second baseline run failed (exit {warm.returncode}):\n{warm.tail()}", file=sys.stderr)
                return 1
            write_s = warm.stages.get("write") or first.stages.get("write") or 1.0
            out["baseline"] = {"run_id": warm.run_id, "written": warm.counts.get("written"),
                               "superseded": warm.counts.get("superseded"), "write_s": write_s,
                               "cold_write_s": first.stages.get("write"), "run_s": round(warm.run_s, 2),
                               "wall_s": warm.wall_s}
            print(f"baseline runs {first.run_id}, {warm.run_id}: {warm.counts.get('written')} predictions written, "
                  f"write stage {first.stages.get('write', 0):.2f} s cold, {write_s:.2f} s warm", flush=True)
            scale = 1.0
            expected = int(warm.counts.get("written") or 1)
            for k in range(1, args.rounds + 1):
                recovery_full = args.recovery == "full" or (args.recovery == "alternate" and k % 2 == 0)
                if args.kill_at == "edges":  # a random number of written predictions, then a random delay
                    target = rng.randint(1, max(1, int(expected * 0.98)))
                    delay = rng.uniform(0.0, 0.05)
                else:
                    target, delay = None, rng.uniform(0.0, 0.9) * write_s * scale
                row = soak_round(k, g, env, work, cfg, logs, delay=delay, target_edges=target,
                                 recovery_full=recovery_full, before_facts=before, timeout=args.timeout)
                rows.append(row)
                if row.get("missed"):
                    scale *= 0.5
                if row.get("recovery_mode") == "full" and row.get("written") and row.get("recovery_write_s"):
                    write_s = row["recovery_write_s"]  # a warm run that superseded as much as a killed one would
                print(f"round {k}: {row['outcome']} (target {row['target_edges']} edges, +{row['delay_s']} s, "
                      f"{row.get('killed_after_write_s')} s into write); recovery {row.get('recovery_status')} "
                      f"({row['recovery']}); failed checks: {'; '.join(row['checks_failed']) or 'none'}", flush=True)
    finally:
        out["rounds_detail"] = rows
        landed = sum(1 for r in rows if r.get("outcome", "").startswith("killed"))
        bad = [r["round"] for r in rows if r.get("checks_failed")]
        out["summary"] = {"rounds": len(rows), "kills_in_write": landed, "missed": len(rows) - landed,
                          "rounds_with_failed_checks": bad, "ok": bool(rows) and not bad and landed > 0}
        out["logs"] = None if tmp_home else str(logs)
        if tmp_home:
            shutil.rmtree(home, ignore_errors=True)
    print()
    print_rows(rows)
    s = out["summary"]
    print(f"\n{s['kills_in_write']} of {s['rounds']} kills landed in the write stage; "
          f"rounds with failed checks: {s['rounds_with_failed_checks'] or 'none'}")
    res = ROOT / "bench" / "results" / "soak.jsonl"
    with open(res, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(out, default=str) + "\n")
    print(f"recorded in {res.relative_to(ROOT)}")
    if s["rounds_with_failed_checks"]:
        code = 1
    elif s["kills_in_write"] == 0:
        code = 2
    return code


if __name__ == "__main__":
    sys.exit(main())
