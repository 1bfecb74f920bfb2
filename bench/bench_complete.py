"""End-to-end benchmark of `attrgraph complete`: a full run, then an incremental run after 1% new products.

    python bench/bench_complete.py [--file ../shared/data/myntra/styles.jsonl.gz] [--mapping myntra]
                                   [--limit N] [--model gnn|tfidf|majority] [--model-options '{"epochs": 5}']
                                   [--rules myntra] [--threads 2] [--encoder minilm] [--home DIR]
                                   [--options '{"retrain_share": 0.05}'] [--model-policy auto|reuse|retrain]

1. Splits the catalog (the first ``--limit`` rows, all by default) into a base part and a seeded
   random ``--new-share`` (1%) of rows held back as "new products".
2. Starts a throwaway Neo4j (or uses ``NEO4J_URI``, which it WIPES, as every benchmark here does)
   and ingests the base part.
3. Runs ``attrgraph complete --full`` as a child process (the real command line, imports included)
   and records its wall time, the run's own time per stage (the ``CompletionRun`` record), the
   child's peak RSS (``wait4``), its CPU seconds and the JVM's, predictions written per second of the
   write stage, and the counts (scored, accepted, needs review, written).
4. Ingests the held-back rows, runs ``attrgraph complete`` again without ``--full`` (incremental;
   the model policy is the run's own, ``auto`` unless ``--model-policy``), records the same figures,
   how many products it scored and skipped, and the ratio incremental / full (target < 0.10),
   both of the run's own time (sum of stages) and of the process wall time.

Only the GNN can be rebound to a changed snapshot; the baselines (tfidf, majority) are retrained
when the graph changes, and a retrained model rescores every product (``rescore_on_retrain``), so
with them the "incremental" run is a full one (``--options '{"rescore_on_retrain": false}'``
scores only the changed products and their neighbours). The record keeps the run's mode and notes.

Prints a table and appends the record to bench/results/complete.jsonl. ATTRGRAPH_HOME points at a
temporary directory (deleted afterwards) unless ``--home DIR`` is given: a kept home lets the
text-embedding cache ($ATTRGRAPH_HOME/cache) be reused by the next run (``--home`` runs are then
"warm cache"; the record says which). Per-run logs of the child go to <home>/bench-logs/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._neo4j import bench_graph, git_commit  # noqa: E402
from graph import LocalNeo4jSettings, ProductGraph  # noqa: E402
from graph import runs as runs_db  # noqa: E402
from graph import writeback as wb  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT.parent / "shared" / "data" / "myntra" / "styles.jsonl.gz"
CLI = ROOT / ".venv" / "bin" / "attrgraph"
STAGES = ("lock", "snapshot", "plan", "features", "model", "predict", "validate", "explain", "write", "report")
TARGET_RATIO = 0.10


# -- shared with bench/soak_complete.py -------------------------------------------------------------------
def pin_dist_dir() -> None:
    """The Neo4j jars stay where they are built (``$ATTRGRAPH_HOME/dist`` of the real home) when
    ATTRGRAPH_HOME is pointed elsewhere below."""
    os.environ.setdefault("ATTRGRAPH_DIST_DIR", str(LocalNeo4jSettings.from_env().dist_dir))


def setup_home(home: str | None, prefix: str) -> tuple[Path, bool]:
    """(home, temporary): ``--home`` or a new temporary directory, exported as ATTRGRAPH_HOME."""
    pin_dist_dir()
    if home:
        h = Path(home).expanduser().resolve()
        h.mkdir(parents=True, exist_ok=True)
        tmp = False
    else:
        h = Path(tempfile.mkdtemp(prefix=prefix))
        tmp = True
    os.environ["ATTRGRAPH_HOME"] = str(h)
    return h, tmp


def child_env(g: ProductGraph, home: Path) -> dict[str, str]:
    """The environment of an `attrgraph` child: the benchmark's graph, the benchmark's home."""
    s = g.client.settings
    env = {**os.environ, "ATTRGRAPH_HOME": str(home), "NEO4J_URI": s.uri, "NEO4J_USER": s.user or "neo4j",
           "NEO4J_PASSWORD": s.password or "", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    if s.database:
        env["NEO4J_DATABASE"] = s.database
    else:
        env.pop("NEO4J_DATABASE", None)
    return env


def write_config(path: Path, **opts: Any) -> Path:
    """A completion YAML for ``--config`` (options that the command line does not have: model_kwargs,
    batch_size ...); None values are left out (the run's defaults apply)."""
    import yaml

    path.write_text(yaml.safe_dump({k: v for k, v in opts.items() if v is not None}, sort_keys=True), encoding="utf-8")
    return path


def local_jvm() -> psutil.Process | None:
    for c in psutil.Process().children(recursive=True):
        try:
            if c.name() == "java":
                return c
        except psutil.Error:
            continue
    return None


def jvm_cpu_s(jvm: psutil.Process | None) -> float | None:
    """CPU seconds of the local JVM so far (None for a server elsewhere)."""
    if jvm is None:
        return None
    try:
        t = jvm.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return None


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set of a live process (Linux VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def new_run_dirs(work: Path, before: set[str]) -> list[str]:
    runs = work / "runs"
    return sorted(d.name for d in runs.iterdir() if d.is_dir() and d.name not in before) if runs.exists() else []


def run_dirs(work: Path) -> set[str]:
    runs = work / "runs"
    return {d.name for d in runs.iterdir() if d.is_dir()} if runs.exists() else set()


@dataclass
class ChildRun:
    """One `attrgraph complete` child, timed and measured, with the run it recorded."""

    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    jvm_cpu_s: float | None
    run_id: str | None
    status: str | None
    mode: str | None
    stages: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    model_action: str | None = None
    notes: list[str] = field(default_factory=list)
    log: str | None = None

    @property
    def run_s(self) -> float:
        return float(sum(self.stages.values()))

    def tail(self, n: int = 2000) -> str:
        if not self.log:
            return ""
        try:
            return Path(self.log).read_text(errors="replace")[-n:]
        except OSError:
            return ""


def run_record(g: ProductGraph, work: Path, run_id: str) -> dict[str, Any]:
    """The run as recorded: the CompletionRun node (stage times including the report) and run.json
    (model action, notes)."""
    out: dict[str, Any] = {"run_id": run_id}
    try:
        rec = runs_db.get_run(g.client, run_id)
        out.update(status=rec.status, mode=rec.mode, stages=rec.stages, counts=rec.counts)
        props = g.client.read("MATCH (r:CompletionRun {id: $id}) RETURN r.model_action AS a, r.mode AS m, r.notes AS n",
                              {"id": run_id})
        if props:
            out["model_action"] = props[0]["a"]
            out["mode"] = props[0]["m"] or out.get("mode")
            out["notes"] = list(props[0]["n"] or [])
    except runs_db.RunError:
        pass
    rj = work / "runs" / run_id / "run.json"
    if rj.exists():
        d = json.loads(rj.read_text(encoding="utf-8"))
        out.setdefault("status", d.get("status"))
        out["mode"] = d.get("mode") or out.get("mode")
        out["model_action"] = d.get("model_action") or out.get("model_action")
        out["notes"] = d.get("notes") or out.get("notes") or []
        if not out.get("stages"):
            out["stages"] = d.get("stages") or {}
        if not out.get("counts"):
            out["counts"] = d.get("counts") or {}
    return out


def run_complete(g: ProductGraph, env: dict[str, str], work: Path, config: Path, *, full: bool, log: Path,
                 extra: list[str] | None = None, timeout: float | None = None) -> ChildRun:
    """Run `attrgraph complete` to the end; its peak RSS and CPU from ``wait4`` (exact, this child only)."""
    argv = [str(CLI), "complete", "--config", str(config), "--work-dir", str(work), "--top", "0"]
    argv += (["--full"] if full else []) + (extra or [])
    before = run_dirs(work)
    jvm = local_jvm()
    j0 = jvm_cpu_s(jvm)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        t = time.perf_counter()
        p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.monotonic() > deadline:
                p.kill()  # our own child, by its pid
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    j1 = jvm_cpu_s(jvm)
    new = new_run_dirs(work, before)
    rec = run_record(g, work, new[-1]) if new else {}
    return ChildRun(argv[1:], p.returncode, round(wall, 2), round(ru.ru_maxrss / 1024, 1),
                    round(ru.ru_utime + ru.ru_stime, 2),
                    round(j1 - j0, 2) if j0 is not None and j1 is not None else None,
                    rec.get("run_id"), rec.get("status"), rec.get("mode"),
                    {k: round(float(v), 3) for k, v in (rec.get("stages") or {}).items()},
                    dict(rec.get("counts") or {}), rec.get("model_action"), list(rec.get("notes") or []), str(log))


def shipped_rules(mapping: str) -> list[str]:
    return [mapping] if (ROOT / "kb" / "rules" / f"{mapping}.yaml").exists() else []


# -- the catalog split --------------------------------------------------------------------------------------
def _open(path: Path, mode: str = "rt") -> Any:
    return gzip.open(path, mode, encoding="utf-8") if path.suffix == ".gz" else open(path, mode, encoding="utf-8")


def split_catalog(src: Path, out_dir: Path, *, limit: int | None, new_share: float, seed: int) -> dict[str, Any]:
    """The first ``limit`` rows of a JSONL catalog into base.jsonl.gz and new.jsonl.gz (a seeded random
    ``new_share`` of them, at least one row), order kept. Lines are copied as they are."""
    name = src.name.lower().removesuffix(".gz")
    if not name.endswith((".jsonl", ".ndjson", ".json")):
        raise SystemExit(f"{src}: only JSON-lines catalogs can be split into base + new rows here")
    n = 0
    with _open(src) as fh:
        for line in fh:
            if line.strip():
                n += 1
                if limit is not None and n >= limit:
                    break
    k = max(1, round(n * new_share)) if new_share > 0 else 0
    held = set(random.Random(seed).sample(range(n), k)) if k else set()
    out_dir.mkdir(parents=True, exist_ok=True)
    base, new = out_dir / "base.jsonl.gz", out_dir / "new.jsonl.gz"
    i = 0
    with _open(src) as fh, gzip.open(base, "wt", encoding="utf-8") as fb, gzip.open(new, "wt", encoding="utf-8") as fn:
        for line in fh:
            if not line.strip():
                continue
            if i >= n:
                break
            (fn if i in held else fb).write(line if line.endswith("\n") else line + "\n")
            i += 1
    return {"rows": n, "base_rows": n - k, "new_rows": k, "base": base, "new": new}


# -- figures ------------------------------------------------------------------------------------------------
def summarize(r: ChildRun) -> dict[str, Any]:
    c = r.counts
    w = r.stages.get("write") or 0.0
    return {
        "run_id": r.run_id, "status": r.status, "returncode": r.returncode, "mode": r.mode,
        "model_action": r.model_action, "wall_s": r.wall_s, "run_s": round(r.run_s, 2),
        "startup_s": round(r.wall_s - r.run_s, 2),  # interpreter, imports, connecting: outside the stages
        "stages_s": {s: r.stages[s] for s in STAGES if s in r.stages},
        "peak_rss_mb": r.peak_rss_mb, "cpu_s": r.cpu_s, "jvm_cpu_s": r.jvm_cpu_s,
        "products": c.get("products"), "scored": c.get("products_scored"), "skipped": c.get("products_skipped"),
        "slots": c.get("slots"), "accepted": c.get("accepted"), "needs_review": c.get("needs_review"),
        "abstained": c.get("abstained"), "written": c.get("written"), "superseded": c.get("superseded"),
        "retired": c.get("retired"),
        "written_per_s": round(c.get("written", 0) / w, 1) if w > 0 else None,
        "notes": r.notes[:12],
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def print_table(full: dict[str, Any], inc: dict[str, Any], ratios: dict[str, Any]) -> None:
    rows: list[tuple[str, Any, Any]] = [
        ("status", full["status"], inc["status"]), ("mode", full["mode"], inc["mode"]),
        ("model", full["model_action"], inc["model_action"]),
        ("products in graph", full["products"], inc["products"]),
        ("products scored", full["scored"], inc["scored"]), ("products skipped", full["skipped"], inc["skipped"]),
        ("slots predicted", full["slots"], inc["slots"]),
        ("accepted", full["accepted"], inc["accepted"]), ("needs review", full["needs_review"], inc["needs_review"]),
        ("written", full["written"], inc["written"]), ("superseded", full["superseded"], inc["superseded"]),
    ]
    rows += [(f"  s {s}", full["stages_s"].get(s), inc["stages_s"].get(s)) for s in STAGES]
    rows += [("run s (sum of stages)", full["run_s"], inc["run_s"]), ("process wall s", full["wall_s"], inc["wall_s"]),
             ("  startup + imports s", full["startup_s"], inc["startup_s"]),
             ("written / s (write stage)", full["written_per_s"], inc["written_per_s"]),
             ("peak RSS MB (child)", full["peak_rss_mb"], inc["peak_rss_mb"]),
             ("CPU s (child)", full["cpu_s"], inc["cpu_s"]), ("CPU s (local JVM)", full["jvm_cpu_s"], inc["jvm_cpu_s"])]
    w0 = max(len(r[0]) for r in rows)
    print(f"\n{'':<{w0}}  {'full':>12}  {'incremental':>12}")
    for name, a, b in rows:
        print(f"{name:<{w0}}  {_fmt(a):>12}  {_fmt(b):>12}")
    print(f"\nincremental / full, run time : {_fmt(ratios['run_time'])}  (target < {TARGET_RATIO}: "
          f"{'met' if ratios['run_time_meets_target'] else 'NOT met'})")
    print(f"incremental / full, wall time: {_fmt(ratios['wall_time'])}")
    print(f"incremental skipped {_fmt(inc['skipped'])} of {_fmt(inc['products'])} products "
          f"({_fmt(ratios['skipped_share'])})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--mapping", default="myntra")
    ap.add_argument("--limit", type=int, default=None, help="use the first N rows of the file (default: all)")
    ap.add_argument("--new-share", type=float, default=0.01,
                    help="share of rows held back and ingested after the full run")
    ap.add_argument("--seed", type=int, default=0, help="which rows are held back")
    ap.add_argument("--model", default="gnn", help="gnn | tfidf | majority")
    ap.add_argument("--model-options", default=None, help="model_kwargs as JSON, e.g. '{\"epochs\": 5}'")
    ap.add_argument("--options", default=None,
                    help="other completion options as JSON, e.g. '{\"rescore_on_retrain\": false}'")
    ap.add_argument("--model-policy", default=None, choices=["auto", "reuse", "retrain"],
                    help="for both runs (default: the run's own, auto)")
    ap.add_argument("--rules", action="append", default=None,
                    help="rule files or shipped names (repeatable; default: the mapping's shipped rules if any)")
    ap.add_argument("--encoder", default=None, help="text encoder of the gnn: minilm | char-svd")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the run")
    ap.add_argument("--write-batch-size", type=int, default=None, help="completion write batch (default: the run's)")
    ap.add_argument("--ingest-batch-size", type=int, default=2000)
    ap.add_argument("--home", default=None, help="ATTRGRAPH_HOME to use and keep (reuses its text-embedding cache)")
    ap.add_argument("--heap-mb", type=int, default=2048)
    ap.add_argument("--pagecache-mb", type=int, default=1024)
    ap.add_argument("--timeout", type=float, default=None, help="seconds per completion run before it is killed")
    args = ap.parse_args()
    model_kwargs = json.loads(args.model_options) if args.model_options else None
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        ap.error("--model-options must be a JSON object")
    options = json.loads(args.options) if args.options else {}
    if not isinstance(options, dict):
        ap.error("--options must be a JSON object")
    rules = args.rules if args.rules is not None else shipped_rules(args.mapping)

    home, tmp_home = setup_home(args.home, "attrgraph-bench-complete-")
    cache = home / "cache" / "text-embeddings.sqlite"
    out: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
        "file": str(args.file), "mapping": args.mapping, "limit": args.limit, "model": args.model,
        "model_options": model_kwargs or {}, "options": options,
        "model_policy": args.model_policy or "auto (run default)",
        "rules": rules, "encoder": args.encoder, "threads": args.threads,
        "home": "temporary" if tmp_home else str(home), "text_cache_at_start_mb":
            round(cache.stat().st_size / 2**20, 1) if cache.exists() else 0.0,
        "cpus": psutil.cpu_count(), "python": platform.python_version(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }
    work = home / "bench-complete-work"
    shutil.rmtree(work, ignore_errors=True)  # a fresh work dir: the first run is a cold full run
    logs = home / "bench-logs"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        with tempfile.TemporaryDirectory(prefix="attrgraph-bench-split-") as sd:
            split = split_catalog(args.file, Path(sd), limit=args.limit, new_share=args.new_share, seed=args.seed)
            out["rows"] = {k: split[k] for k in ("rows", "base_rows", "new_rows")}
            print(f"catalog: {split['rows']} rows: {split['base_rows']} first, {split['new_rows']} held back as new",
                  flush=True)
            with bench_graph(heap_mb=args.heap_mb, pagecache_mb=args.pagecache_mb) as g:
                g.clear(confirm=True)
                g.ensure_schema()
                t = time.perf_counter()
                rep = g.ingest(split["base"], mapping=args.mapping, batch_size=args.ingest_batch_size)
                out["ingest_base"] = {"products": rep.products_created, "facts": rep.facts_written,
                                      "rejected": rep.rows_rejected, "seconds": round(time.perf_counter() - t, 2)}
                print(f"ingested {rep.products_created} products in {out['ingest_base']['seconds']} s", flush=True)
                env = child_env(g, home)
                cfg = write_config(home / "bench-complete.yaml", **{
                    "model": args.model, "model_kwargs": model_kwargs, "model_policy": args.model_policy,
                    "rules": rules, "encoder": args.encoder, "threads": args.threads,
                    "batch_size": args.write_batch_size, **options})
                print("full run ...", flush=True)
                full = run_complete(g, env, work, cfg, full=True, log=logs / f"{stamp}-full.log", timeout=args.timeout)
                if full.returncode != 0 or full.status != "committed":
                    raise SystemExit(f"the full run failed (exit {full.returncode}, status {full.status}); "
                                     f"log {full.log}:\n{full.tail()}")
                t = time.perf_counter()
                rep2 = g.ingest(split["new"], mapping=args.mapping, batch_size=args.ingest_batch_size)
                out["ingest_new"] = {"products": rep2.products_created, "facts": rep2.facts_written,
                                     "rejected": rep2.rows_rejected, "seconds": round(time.perf_counter() - t, 2)}
                print(f"ingested {rep2.products_created} new products; incremental run ...", flush=True)
                inc = run_complete(g, env, work, cfg, full=False, log=logs / f"{stamp}-incremental.log",
                                   timeout=args.timeout)
                if inc.returncode != 0 or inc.status != "committed":
                    raise SystemExit(f"the incremental run failed (exit {inc.returncode}, status {inc.status}); "
                                     f"log {inc.log}:\n{inc.tail()}")
                integ = wb.integrity(g.client)
                out["integrity_after"] = {"ok": integ.ok, "predicted_edges": integ.predicted_edges,
                                          "current_edges": integ.current_edges}
                jvm = local_jvm()
                out["jvm_peak_rss_mb"] = vm_hwm_mb(jvm.pid) if jvm else None
    finally:
        if tmp_home:
            shutil.rmtree(home, ignore_errors=True)
    out["bench_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["full"], out["incremental"] = summarize(full), summarize(inc)
    f, i = out["full"], out["incremental"]
    ratios = {
        "run_time": round(i["run_s"] / f["run_s"], 4) if f["run_s"] else None,
        "wall_time": round(i["wall_s"] / f["wall_s"], 4) if f["wall_s"] else None,
        "skipped_share": round((i["skipped"] or 0) / i["products"], 4) if i["products"] else None,
        "target": TARGET_RATIO,
    }
    ratios["run_time_meets_target"] = ratios["run_time"] is not None and ratios["run_time"] < TARGET_RATIO
    out["incremental_vs_full"] = ratios
    print_table(f, i, ratios)
    res = ROOT / "bench" / "results" / "complete.jsonl"
    with open(res, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(out, default=str) + "\n")
    print(f"recorded in {res.relative_to(ROOT)}" + ("" if tmp_home else f"; logs in {logs}"))


if __name__ == "__main__":
    main()
