"""One host, many products: a catalog of ``--products N`` generated from Myntra, through ingest, snapshot,
text features, one training epoch and prediction of every slot, beside the 44k Myntra catalog run by the
same code in the same run.

    python bench/bench_scale.py --products 200000 [--threads 2] [--encoder minilm] [--baseline-products 44441]
                                [--heap-mb 4096] [--pagecache-mb 4096] [--skip-baseline]

1. The catalog: Myntra's 44,441 rows replicated and perturbed (seeded) to N rows: new ids; the brand
   replaced by another brand of the same article type (and in the title); title tokens replaced by
   synonyms, two neighbours swapped, a model number inserted. Facts, category and description are
   the source row's.
2. A local Neo4j of its own (free port, ``--heap-mb``/``--pagecache-mb``) in a temporary home.
3. For each catalog (the 44k Myntra file first, then the N-product one), a fresh child process runs the
   stages, timed one by one: ``ingest``, ``snapshot`` (export from Neo4j), ``features`` (text embeddings
   with the default encoder, written chunk by chunk to a memory-mapped feature file), ``model``
   (``CompletionPredictor.fit`` of the GNN for exactly one epoch: ``epochs=1``, no time budget, then
   calibration and applicability) and ``predict`` (every applicable missing slot, top 5, streamed in
   product chunks to an ``.npz`` file). A thread samples the child's resident memory (``VmRSS``, with its
   anonymous and file-backed parts) and the Neo4j JVM's every 0.2 s; each stage records its peak.
4. The record (``bench/results/scale.jsonl``, with the commit): per catalog and stage the wall seconds,
   seconds per 1,000 products and the peaks; the ratios N / 44k of the time per product for
   snapshot + features + model + predict and for each stage; the targets (peak RSS of the Python
   process <= 16 GB over snapshot + model + predict; time per product <= 1.3x the 44k catalog's).

``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` are set to ``--threads`` for the children. The progress of a run
(stage by stage) is written to ``bench/out/scale/progress-<N>.json`` while it runs; ``--record-partial FILE``
appends such a file to the results as an incomplete record (``"complete": false``), naming what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent

from bench._neo4j import git_commit  # noqa: E402

MYNTRA = ROOT.parent / "shared" / "data" / "myntra" / "styles.jsonl.gz"
RESULTS = ROOT / "bench" / "results" / "scale.jsonl"
OUT = ROOT / "bench" / "out" / "scale"
STAGES = ("ingest", "snapshot", "features", "model", "predict")
TIMED = ("snapshot", "features", "model", "predict")  # the per-product time compared with the 44k catalog
RSS_STAGES = ("snapshot", "model", "predict")  # the stages of the 16 GB target
TARGET_RSS_MB = 16 * 1024
TARGET_TIME_RATIO = 1.3

SYNONYMS = {
    "tshirt": ["Tee", "T-Shirt", "Tshirt"], "tshirts": ["Tees", "T-Shirts"], "shirt": ["Shirt", "Top Shirt"],
    "men": ["Men", "Mens", "Man"], "women": ["Women", "Womens", "Ladies"], "boys": ["Boys", "Boy"],
    "girls": ["Girls", "Girl"], "unisex": ["Unisex", "Men & Women"], "casual": ["Casual", "Everyday"],
    "sports": ["Sports", "Sport", "Athletic"], "shoes": ["Shoes", "Footwear", "Kicks"], "watch": ["Watch", "Timepiece"],
    "printed": ["Printed", "Print"], "striped": ["Striped", "Stripes"], "solid": ["Solid", "Plain"],
    "black": ["Black", "Jet Black"], "white": ["White", "Off White"], "blue": ["Blue", "Navy Blue"],
    "red": ["Red", "Crimson"], "grey": ["Grey", "Gray"], "brown": ["Brown", "Tan"], "pink": ["Pink", "Rose"],
    "green": ["Green", "Olive"], "bag": ["Bag", "Tote"], "handbag": ["Handbag", "Hand Bag"],
    "sandals": ["Sandals", "Sandal"], "flip": ["Flip", "Slip"], "kurta": ["Kurta", "Kurti"], "jeans": ["Jeans", "Denims"],
    "slim": ["Slim", "Skinny"], "classic": ["Classic", "Signature"], "smart": ["Smart", "Sharp"],
}
_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


# -- the catalog ---------------------------------------------------------------------------------------------
def _rows(path: Path) -> list[dict[str, Any]]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def perturb(row: dict[str, Any], i: int, rng: random.Random, brands_by_type: dict[str, list[str]]) -> dict[str, Any]:
    """A new product from a Myntra row: new id, a brand of the same article type, a varied title."""
    out = dict(row)
    out["id"] = str(90_000_000 + i)
    old_brand = str(row.get("brand") or "")
    pool = brands_by_type.get(str(row.get("articleType")), [])
    new_brand = rng.choice(pool) if pool else old_brand
    out["brand"] = new_brand
    title = str(row.get("title") or "")
    rest = title[len(old_brand):].split() if old_brand and title.startswith(old_brand) else title.split()
    words = []
    for w in rest:
        syn = SYNONYMS.get(w.casefold())
        words.append(rng.choice(syn) if syn and rng.random() < 0.4 else w)
    if len(words) > 2 and rng.random() < 0.5:  # two neighbours (never the last word: the article type) swapped
        j = rng.randrange(len(words) - 2)
        words[j], words[j + 1] = words[j + 1], words[j]
    if rng.random() < 0.8:
        model = f"{rng.choice(_LETTERS)}{rng.choice(_LETTERS)}-{rng.randrange(100, 100000)}"
        words.insert(rng.randrange(len(words) + 1), model)
    out["title"] = " ".join(([new_brand] if new_brand else []) + words)
    return out


def generate(n: int, out: Path, *, seed: int = 0, source: Path = MYNTRA) -> dict[str, Any]:
    """Write an ``n``-row Myntra-format JSONL catalog to ``out``: the source rows replicated and perturbed."""
    rows = _rows(source)
    brands_by_type: dict[str, list[str]] = {}
    for r in rows:
        if r.get("brand") and r.get("brand") != "NA":
            brands_by_type.setdefault(str(r.get("articleType")), []).append(str(r["brand"]))
    rng = random.Random(seed)
    order = list(range(len(rows)))
    t = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for i in range(n):
            if i % len(rows) == 0:
                rng.shuffle(order)
            fh.write(json.dumps(perturb(rows[order[i % len(rows)]], i, rng, brands_by_type), ensure_ascii=False) + "\n")
    return {"rows": n, "source_rows": len(rows), "seed": seed, "seconds": round(time.perf_counter() - t, 1),
            "mb": round(out.stat().st_size / 2**20, 1)}


# -- memory sampling -----------------------------------------------------------------------------------------
def _status(pid: int | str) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(v.split()[0])  # kB
    except (OSError, ValueError):
        pass
    return out


class Sampler:
    """Samples this process's and the JVM's resident memory every ``every`` seconds; keeps per-stage peaks."""

    def __init__(self, jvm_pid: int | None, every: float = 0.2) -> None:
        self.jvm_pid, self.every = jvm_pid, every
        self.stage = "start"
        self.peaks: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _take(self) -> None:
        me, jvm = _status("self"), (_status(self.jvm_pid) if self.jvm_pid else {})
        p = self.peaks.setdefault(self.stage, {})
        for k, v in (("rss_mb", me.get("VmRSS")), ("rss_anon_mb", me.get("RssAnon")), ("rss_file_mb", me.get("RssFile")),
                     ("jvm_rss_mb", jvm.get("VmRSS"))):
            if v is not None:
                p[k] = max(p.get(k, 0.0), round(v / 1024, 1))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._take()
            time.sleep(self.every)

    def enter(self, stage: str) -> None:
        self._take()
        self.stage = stage
        self._take()

    def stop(self) -> None:
        self._take()
        self._stop.set()
        self._t.join()


# -- one catalog, in a child process -------------------------------------------------------------------------
def child(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from attrgraph.features import TextFeatureConfig, compute_text_features
    from gnn.completion import CompletionPredictor
    from gnn.snapshot import load_snapshot
    from graph import ProductGraph
    from graph.export import export_snapshot

    work = Path(args.child_work)
    progress = Path(args.progress)
    rec: dict[str, Any] = {"catalog": args.child, "stages": {}, "complete": False}
    sampler = Sampler(int(args.jvm_pid) if args.jvm_pid else None)

    def save() -> None:
        rec["peaks"] = sampler.peaks
        progress.write_text(json.dumps(rec, indent=1), encoding="utf-8")

    def stage(name: str):
        class _S:
            def __enter__(self_inner):
                sampler.enter(name)
                self_inner.t = time.perf_counter()
                rec["running"] = name
                save()

            def __exit__(self_inner, *exc):
                if exc[0] is None:
                    rec["stages"][name] = round(time.perf_counter() - self_inner.t, 2)
                    rec.pop("running", None)
                    sampler.enter(f"after-{name}")
                    save()
                return False
        return _S()

    with ProductGraph.connect() as g:
        with stage("ingest"):
            rep = g.ingest(args.child, mapping="myntra", batch_size=5000)
        rec["products_ingested"] = rep.products_created
        rec["facts_ingested"] = rep.facts_written
        with stage("snapshot"):
            export_snapshot(g.client, work / "snapshot")
    with stage("features"):
        snap = load_snapshot(work / "snapshot")
        kw = {"threads": args.threads} if args.encoder in ("minilm", "static") else {}
        if args.encoder == "static":  # the table distilled once, before the runs (not a per-product cost)
            kw["cache_dir"] = str(OUT / "encoders")
        fr = compute_text_features(snap, TextFeatureConfig(encoder=args.encoder, encoder_kwargs=kw,
                                                           cache_path=str(work / "text-cache.sqlite"),
                                                           dtype=args.feature_dtype))
    rec["features"] = {"encoder": fr.encoder, "texts": fr.texts, "encoded": fr.encoded, "dtype": args.feature_dtype}
    rec["products"] = snap.num_nodes("product")
    rec["facts"] = int(snap.edges["has_value"].shape[1])
    with stage("model"):
        opts = {"epochs": 1, "max_seconds": 1e9, "patience": 10**6, "threads": args.threads, **json.loads(args.gnn_options)}
        pred = CompletionPredictor.fit(snap, model="gnn", model_kwargs=opts)
    h = pred.model.history
    rec["model"] = {"options": opts, "epochs_run": len(h), "valid_hits@1": h[-1].get("valid_hits@1") if h else None,
                    "prior_seconds": round(getattr(pred.model, "prior_seconds", 0.0), 1),
                    "train_loop_seconds": h[-1]["seconds"] if h else None,
                    "calibrated_valid": {k: pred.validation.get(k) for k in ("hits@1", "ece") if k in pred.validation}}
    with stage("predict"):
        n_slots = pred.predict_to(snap, work / "predictions", top_k=5, chunk_products=args.predict_chunk)
    rec["slots_predicted"] = int(n_slots)
    sampler.stop()
    rec["complete"] = True
    rec["peak_rss_mb_hwm"] = round(_status("self").get("VmHWM", 0) / 1024, 1)
    save()
    return rec


# -- float16 text features: what they cost on validation ------------------------------------------------------
def dtype_check(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the completion GNN on the first ``--dtype-check`` Myntra rows twice, on float32 and on float16 text
    features (the same encoder, the float16 ones their rounding), and compare the validation figures the fit
    reports (its own held-out pairs; no test split is touched)."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from attrgraph.features import TextFeatureConfig, compute_text_features
    from bench._catalog import read_products, write_snapshot
    from gnn.completion import CompletionPredictor
    from gnn.snapshot import load_snapshot

    work = Path(tempfile.mkdtemp(prefix="attrgraph-bench-dtype-"))
    try:
        snapdir = write_snapshot(read_products(MYNTRA, "myntra", limit=args.dtype_check), work / "snap",
                                 mapping_name="myntra")
        kw = {"threads": args.threads}
        if args.encoder == "static":
            kw["cache_dir"] = str(OUT / "encoders")
        out: dict[str, Any] = {}
        for dtype in ("float32", "float16"):
            snap = load_snapshot(snapdir)
            compute_text_features(snap, TextFeatureConfig(encoder=args.encoder, encoder_kwargs=kw, dtype=dtype,
                                                          cache_path=str(work / "cache.sqlite")))
            opts = {"epochs": args.dtype_epochs, "max_seconds": 1e9, "patience": 10**6, "threads": args.threads}
            t = time.perf_counter()
            pred = CompletionPredictor.fit(snap, model="gnn", model_kwargs=opts)
            h = pred.model.history
            out[dtype] = {"valid_hits@1_per_epoch": [r.get("valid_hits@1") for r in h],
                          "calibrated_valid_hits@1": pred.validation.get("hits@1"), "ece": pred.validation.get("ece"),
                          "fit_seconds": round(time.perf_counter() - t, 1),
                          "feature_mb": round(sum((snap.path / "features" / f"text.{t}.npy").stat().st_size
                                                  for t in ("product", "brand", "category", "attribute", "value")) / 2**20, 2)}
            if dtype == "float32":
                ref = np.array(snap.features.get("text.product"))
            else:
                a = snap.features.get("text.product").astype(np.float32)
                out["max_abs_rounding"] = float(np.abs(a - ref).max())
        out["difference_calibrated_valid_hits@1"] = round(out["float16"]["calibrated_valid_hits@1"]
                                                         - out["float32"]["calibrated_valid_hits@1"], 5)
        return {"kind": "feature_dtype", "rows": args.dtype_check, "encoder": args.encoder, "epochs": args.dtype_epochs,
                **out}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- the parent ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jvm_pid(server: Any) -> int | None:
    import psutil

    for c in psutil.Process().children(recursive=True):
        try:
            if c.name() == "java":
                return c.pid
        except psutil.Error:
            continue
    pid = getattr(server, "pid", None)
    return pid() if callable(pid) else pid


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    n = r.get("products") or r.get("products_ingested") or 0
    st = r["stages"]
    peaks = r.get("peaks", {})
    out = {"products": n, "facts": r.get("facts"), "slots_predicted": r.get("slots_predicted"),
           "complete": r.get("complete", False), "stages_s": st,
           "ms_per_product": {s: round(1000 * st[s] / n, 3) for s in st} if n else {},
           "peak_rss_mb": {s: peaks.get(s, {}).get("rss_mb") for s in STAGES if s in peaks},
           "peak_rss_anon_mb": {s: peaks.get(s, {}).get("rss_anon_mb") for s in STAGES if s in peaks},
           "peak_rss_file_mb": {s: peaks.get(s, {}).get("rss_file_mb") for s in STAGES if s in peaks},
           "jvm_peak_rss_mb": max((p.get("jvm_rss_mb") or 0 for p in peaks.values()), default=None)}
    rss = [peaks.get(s, {}).get("rss_mb") for s in RSS_STAGES if peaks.get(s, {}).get("rss_mb") is not None]
    out["peak_rss_mb_target_stages"] = max(rss) if rss else None
    if all(s in st for s in TIMED) and n:
        out["timed_s"] = round(sum(st[s] for s in TIMED), 2)
        out["timed_ms_per_product"] = round(1000 * out["timed_s"] / n, 3)
    for k in ("features", "model", "running", "catalog"):
        if k in r:
            out[k] = r[k]
    return out


def run_child(catalog: Path, work: Path, env: dict[str, str], args: argparse.Namespace, jvm: int | None,
              progress: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, __file__, "--child", str(catalog), "--child-work", str(work), "--progress", str(progress),
            "--threads", str(args.threads), "--encoder", args.encoder, "--feature-dtype", args.feature_dtype,
            "--gnn-options", args.gnn_options, "--predict-chunk", str(args.predict_chunk)]
    if jvm:
        argv += ["--jvm-pid", str(jvm)]
    log = work / "child.log"
    with open(log, "w", encoding="utf-8") as fh:
        p = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    rec = json.loads(progress.read_text(encoding="utf-8")) if progress.exists() else {"stages": {}}
    if p.returncode != 0:
        rec["error"] = f"exit {p.returncode}: " + log.read_text(errors="replace")[-1500:]
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=200_000)
    ap.add_argument("--baseline-products", type=int, default=None,
                    help="rows of the Myntra file for the baseline (default: all 44,441)")
    ap.add_argument("--skip-baseline", action="store_true", help="(debugging) the N-product catalog only; no ratios")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encoder", default="minilm", help="the text encoder (default: minilm, the default of features)")
    ap.add_argument("--feature-dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--gnn-options", default="{}", help="GNN options beside epochs=1 and no time budget (JSON)")
    ap.add_argument("--predict-chunk", type=int, default=100_000, help="products per prediction chunk")
    ap.add_argument("--heap-mb", type=int, default=4096)
    ap.add_argument("--pagecache-mb", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a temporary one, deleted)")
    ap.add_argument("--record-partial", type=int, default=None, metavar="N",
                    help="append the (unfinished) run of --products N, as far as it got, as an incomplete record, "
                         "and stop")
    ap.add_argument("--dtype-check", type=int, default=None, metavar="ROWS",
                    help="instead: validation figures of the GNN on float32 vs float16 text features (first ROWS rows)")
    ap.add_argument("--dtype-epochs", type=int, default=3)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--progress", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--jvm-pid", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.dtype_check:
        for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(v, str(args.threads))
        d = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
             "threads": args.threads, **dtype_check(args)}
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(d) + "\n")
        print(json.dumps(d))
        return
    if args.record_partial:
        n = args.record_partial
        d = json.loads((OUT / f"record-{n}.json").read_text(encoding="utf-8"))
        missing = []
        for name in ("baseline", "scaled"):
            prog = OUT / f"progress-{n}-{name}.json"
            if name not in d["runs"] and prog.exists():
                d["runs"][name] = summarize(json.loads(prog.read_text(encoding="utf-8")))
            done = d["runs"].get(name, {}).get("stages_s", {})
            left = [s for s in STAGES if s not in done]
            if left:
                missing.append(f"{'the 44k catalog' if name == 'baseline' else 'the generated catalog'}: "
                               f"{', '.join(left)} not finished")
        d["complete"] = False
        d["missing"] = "; ".join(missing) + " (the run was stopped at the deadline)"
        d["recorded_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(d) + "\n")
        print(f"incomplete record appended to {RESULTS}: {d['missing']}")
        return

    from graph import LocalNeo4j, LocalNeo4jSettings, ProductGraph

    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="attrgraph-bench-scale-")) if args.work is None else args.work
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["ATTRGRAPH_DIST_DIR"] = os.environ.get("ATTRGRAPH_DIST_DIR") or str(LocalNeo4jSettings.from_env().dist_dir)
    rec: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
        "products": args.products, "threads": args.threads, "encoder": args.encoder, "feature_dtype": args.feature_dtype,
        "gnn_options": json.loads(args.gnn_options), "predict_chunk": args.predict_chunk,
        "neo4j": {"heap_mb": args.heap_mb, "pagecache_mb": args.pagecache_mb}, "seed": args.seed,
        "cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "targets": {"peak_rss_mb": TARGET_RSS_MB, "rss_stages": list(RSS_STAGES), "time_ratio": TARGET_TIME_RATIO,
                    "timed_stages": list(TIMED)},
        "complete": False, "runs": {}}
    state = OUT / f"record-{args.products}.json"
    if args.encoder == "static":
        from gnn.text import get_encoder

        t = time.perf_counter()
        enc = get_encoder("static", cache_dir=str(OUT / "encoders"), threads=args.threads).load()
        rec["static_table"] = {"distilled_now": enc.distilled, "seconds": round(time.perf_counter() - t, 1)}
    state.write_text(json.dumps(rec, indent=1), encoding="utf-8")
    try:
        print(f"generating {args.products} products ...", flush=True)
        cat = tmp / f"catalog-{args.products}.jsonl"
        rec["catalog"] = generate(args.products, cat, seed=args.seed)
        state.write_text(json.dumps(rec, indent=1), encoding="utf-8")
        base_cat = MYNTRA
        if args.baseline_products:
            base_cat = tmp / f"myntra-{args.baseline_products}.jsonl"
            with open(base_cat, "w", encoding="utf-8") as fh:
                for r in _rows(MYNTRA)[: args.baseline_products]:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        home = tmp / "neo4j-home"
        local = LocalNeo4jSettings(home=home, dist_dir=Path(os.environ["ATTRGRAPH_DIST_DIR"]), port=_free_port(),
                                   heap_mb=args.heap_mb, pagecache_mb=args.pagecache_mb)
        server = LocalNeo4j(local)
        server.start()
        try:
            jvm = _jvm_pid(server)
            with ProductGraph.connect(local=local) as g:
                s = g.client.settings
                env = {**os.environ, "NEO4J_URI": s.uri, "NEO4J_USER": s.user or "neo4j",
                       "NEO4J_PASSWORD": s.password or "", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                       "ATTRGRAPH_HOME": str(tmp / "home")}
                todo = ([] if args.skip_baseline else [("baseline", base_cat)]) + [("scaled", cat)]
                for name, path in todo:
                    g.clear(confirm=True)
                    g.ensure_schema()
                    print(f"{name}: {path.name} ...", flush=True)
                    progress = OUT / f"progress-{args.products}-{name}.json"
                    r = run_child(path, tmp / name, env, args, jvm, progress)
                    rec["runs"][name] = summarize(r)
                    if "error" in r:
                        rec["runs"][name]["error"] = r["error"]
                    state.write_text(json.dumps(rec, indent=1), encoding="utf-8")
                    print(json.dumps(rec["runs"][name]), flush=True)
                    shutil.rmtree(tmp / name, ignore_errors=True)
                    if "error" in r:
                        break
        finally:
            server.stop()
    finally:
        if args.work is None:
            shutil.rmtree(tmp, ignore_errors=True)
    runs = rec["runs"]
    sc = runs.get("scaled", {})
    rec["complete"] = bool(sc.get("complete")) and (args.skip_baseline or bool(runs.get("baseline", {}).get("complete")))
    b = runs.get("baseline")
    if b and b.get("complete") and sc.get("complete"):
        rec["time_per_product_ratio"] = round(sc["timed_ms_per_product"] / b["timed_ms_per_product"], 3)
        rec["stage_ratios"] = {s: round(sc["ms_per_product"][s] / b["ms_per_product"][s], 3)
                               for s in STAGES if b["ms_per_product"].get(s)}
        rec["meets"] = {"peak_rss": sc["peak_rss_mb_target_stages"] <= TARGET_RSS_MB,
                        "time_per_product": rec["time_per_product_ratio"] <= TARGET_TIME_RATIO}
    with open(RESULTS, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(json.dumps({k: rec.get(k) for k in ("complete", "time_per_product_ratio", "stage_ratios", "meets")}))
    print(f"recorded in {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
