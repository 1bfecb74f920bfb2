"""Cross-catalog benchmark ("Any catalog, first time right"): every shared catalog through its shipped
mapping, one protocol, default settings only.

    python bench/bench_catalogs.py [--catalogs myntra,bigbasket,taobao,myntra-stress] [--splits random,title]
                                   [--methods majority,tfidf,tfidf-props,text-mlp,gnn] [--max-products N]
                                   [--encoder NAME] [--fresh-text-cache] [--gnn-options JSON] [--seed 0]
                                   [--threads 2] [--out DIR] [--results FILE]

Catalogs (``../shared/data``): ``myntra``, ``bigbasket``, ``taobao`` with ``ingest/mappings/<name>.yaml``,
and ``myntra-stress``, generated at bench time into a temporary directory (JSONL.gz and its own mapping
YAML, never kept): the Myntra rows with every ``articleAttributes`` key made category-specific
(``Fabric`` -> ``Fabric (Tshirts)``, by ``articleType``), which imitates a general-merchandise
marketplace with many attribute names and long-tail values (1,518 names from the 198 keys on the whole
file, plus the five plain attributes).

Per catalog, on one throwaway Neo4j (``bench._neo4j.bench_graph``; ``NEO4J_URI`` is used, and WIPED,
when set): wipe the graph, ingest (the first ``--max-products`` rows when given), export a snapshot,
compute text features with the default encoder (``attrgraph.features.TextFeatureConfig``; ``--encoder``
to choose; only when a method reads them). Then per split:

* ``random``: ``gnn.protocol.make_split`` as in bench_completion (80/10/10 pairs + 5% cold products);
* ``title``: the same with ``group_by="title"``: products with equal (case-folded, whitespace-collapsed)
  titles form a group whose pairs all go to one split, so no test product has a title twin in train;

and per method (``bench_completion.fit_and_grade``: fitted on train, isotonic calibration fitted on
valid): valid Hits@1 (raw scores), test Hits@1, Hits@1 on the test pairs whose value is not in the
text (``gnn.protocol.value_in_text``), MRR, ECE, the share of test pairs whose (product, attribute)
is deemed applicable from the visible facts (:func:`applicable_pairs`, swappable), fit and predict
seconds, the method's peak RSS (psutil, sampled) and the process's max RSS (``getrusage``).

Writes ``bench/out/catalogs-<stamp>/report.md`` (the table, also printed) and ``hits.png`` (test
Hits@1 per catalog x split x method), and appends one JSON line per run to
``bench/results/catalogs.jsonl``; ``bench/catalogs_table.py`` renders the README table from it.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import inspect
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
MAPPINGS = ROOT / "ingest" / "mappings"
RESULTS = ROOT / "bench" / "results" / "catalogs.jsonl"

DEFAULT_METHODS = ("majority", "tfidf", "tfidf-props", "text-mlp", "gnn")
SPLITS: dict[str, str | None] = {"random": None, "title": "title"}  # split name -> make_split(group_by=...)


@dataclass(frozen=True)
class Catalog:
    """A catalog file and its mapping (a shipped name or a YAML path); ``derive="stress"`` generates the
    category-specific-attribute catalog from ``path`` (a Myntra-like JSONL) at bench time."""

    name: str
    path: Path
    mapping: str
    derive: str | None = None


CATALOGS: dict[str, Catalog] = {
    "myntra": Catalog("myntra", SHARED / "myntra" / "styles.jsonl.gz", "myntra"),
    "bigbasket": Catalog("bigbasket", SHARED / "bigbasket" / "products.csv.gz", "bigbasket"),
    "taobao": Catalog("taobao", SHARED / "taobao_zh" / "titles.jsonl.gz", "taobao"),
    "myntra-stress": Catalog("myntra-stress", SHARED / "myntra" / "styles.jsonl.gz", "myntra", derive="stress"),
}


# -- the stress catalog ------------------------------------------------------------------------------------
def write_stress_catalog(src: Path, out_dir: Path, *, base_mapping: str = "myntra", limit: int | None = None,
                         name: str = "myntra-stress") -> tuple[Path, Path, dict[str, Any]]:
    """The Myntra rows with each ``articleAttributes`` key made category-specific ("Fabric" ->
    "Fabric (Tshirts)", by ``articleType``; a row without one keeps its keys), as ``<name>.jsonl.gz``,
    and its mapping (the base mapping renamed) as ``<name>.yaml``, both in ``out_dir``.
    Returns (data, mapping, counts)."""
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    data, mapping = out_dir / f"{name}.jsonl.gz", out_dir / f"{name}.yaml"
    base = Path(base_mapping) if base_mapping.endswith((".yaml", ".yml")) else MAPPINGS / f"{base_mapping}.yaml"
    m = yaml.safe_load(base.read_text(encoding="utf-8"))
    m["name"] = name
    if not any(isinstance(a, dict) and a.get("map") == "articleAttributes" for a in m.get("attributes", [])):
        raise SystemExit(f"{base}: the stress catalog needs a mapping that reads the map articleAttributes")
    mapping.write_text(f"# generated by bench/bench_catalogs.py from {base.name}: articleAttributes keys are "
                       f"category-specific\n" + yaml.safe_dump(m, sort_keys=False, allow_unicode=True), encoding="utf-8")
    rows, names, pairs = 0, set(), set()
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt", encoding="utf-8") as fi, gzip.open(data, "wt", encoding="utf-8") as fo:
        for line in fi:
            if not line.strip():
                continue
            if limit is not None and rows >= limit:
                break
            r = json.loads(line)
            at = str(r.get("articleType") or "").strip()
            aa = r.get("articleAttributes")
            if at and at != "NA" and isinstance(aa, dict):
                r["articleAttributes"] = {f"{k} ({at})": v for k, v in aa.items()}
                names.update(r["articleAttributes"])
                pairs.update((k, str(v)) for k, v in r["articleAttributes"].items())
            fo.write(json.dumps(r, ensure_ascii=False) + "\n")
            rows += 1
    return data, mapping, {"rows": rows, "attribute_names": len(names), "name_value_pairs": len(pairs)}


# -- what the protocol measures besides the methods -----------------------------------------------------
def applicable_pairs(snap: Any, split: Any, pairs: Any) -> Any:
    """bool [M]: whether each pair's (product, attribute) is deemed applicable, as a completion run decides it
    (``gnn.applicability.learn_applicability``: smoothed shares from the train facts, threshold chosen on the
    valid pairs, then counted on train + valid facts; test and cold facts never count). Pass another
    function with this signature as ``run(applicability=...)`` to measure another notion of applicability."""
    from gnn.applicability import learn_applicability

    appl, _ = learn_applicability(snap, split)
    return appl.applies(split.product[pairs], split.attribute[pairs])


def applicable_per_product(snap: Any, split: Any) -> float:
    """Mean number of attributes deemed applicable per product (learned): the slots a completion run fills."""
    import numpy as np

    from gnn.applicability import learn_applicability

    appl, _ = learn_applicability(snap, split)
    return float(appl.for_products(np.arange(snap.num_nodes("product"))).sum(1).mean())


def fixed_applicable_pairs(snap: Any, split: Any, pairs: Any) -> Any:
    """bool [M]: the fixed rule of earlier runs (an attribute applies where 10% of the category's products have it)."""
    from gnn.protocol import applicable_attributes

    appl = applicable_attributes(snap, split)
    return appl.applies(split.product[pairs], split.attribute[pairs])


def title_keys(snap: Any) -> list[str]:
    """Each product's title as make_split(group_by="title") compares them ("" when it has none)."""
    return [" ".join(str(r.get("title") or "").casefold().split()) for r in snap.nodes["product"]]


def twin_share(snap: Any, split: Any, of: Sequence[str] = ("test",), against: Sequence[str] = ("train",),
               keys: list[str] | None = None) -> float:
    """Share of the ``of`` pairs whose product has a title twin (another product, same title key) among
    the products of the ``against`` pairs."""
    import numpy as np

    keys = title_keys(snap) if keys is None else keys
    prods = split.product[split.pairs(*of)]
    if not len(prods):
        return float("nan")
    seen: dict[str, set[int]] = {}
    for p in np.unique(split.product[split.pairs(*against)]).tolist():
        if keys[p]:
            seen.setdefault(keys[p], set()).add(p)
    hit = [bool(keys[p]) and bool(seen.get(keys[p], set()) - {p}) for p in prods.tolist()]
    return float(np.mean(hit))


def unseen_share(split: Any, pairs: Any) -> float | None:
    """Share of ``pairs`` none of whose true values occurs in a training fact of its attribute: the
    pairs a closed-world ranker (every method here) cannot get right."""
    import numpy as np

    tr = split.pairs("train")
    counts = split.indptr[tr + 1] - split.indptr[tr]
    starts = np.repeat(split.indptr[tr], counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    seen = set(zip(np.repeat(split.attribute[tr], counts).tolist(), split.values[starts].tolist()))
    if not len(pairs):
        return None
    return float(np.mean([not any((int(split.attribute[p]), v) in seen for v in split.values_of(p).tolist())
                          for p in np.asarray(pairs).tolist()]))


def substring_share(snap: Any, split: Any, pairs: Any, texts: Sequence[str]) -> float | None:
    """Share of ``pairs`` with a true value inside the product text as a plain substring (no word
    boundaries: for scripts written without spaces, where ``gnn.protocol.value_in_text`` finds few)."""
    import numpy as np

    if not len(pairs):
        return None
    brand = split.brand_attribute
    hit = []
    for p in np.asarray(pairs).tolist():
        a, text = int(split.attribute[p]), texts[int(split.product[p])]
        forms = []
        for v in split.values_of(p).tolist():
            r = snap.nodes["brand" if a == brand else "value"][v]
            forms += [r.get("name"), r.get("key")] if a == brand else [r.get("norm"), r.get("value")]
        hit.append(any(isinstance(f, str) and f.strip() and f.casefold().strip() in text for f in forms))
    return float(np.mean(hit))


class RssPeak:
    """The peak resident set of this process while the block runs (psutil, sampled every ``every`` s)."""

    def __init__(self, every: float = 0.05) -> None:
        import psutil

        self.proc, self.every, self.peak = psutil.Process(), every, 0
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.every)

    def __enter__(self) -> "RssPeak":
        self.peak = self.proc.memory_info().rss
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


def max_rss_mb() -> float:
    """The process's max RSS so far (``getrusage``; Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def uncommitted_changes() -> list[str] | None:
    """Tracked files that differ from the commit (the record's ``commit`` then does not say all)."""
    import subprocess

    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, cwd=ROOT, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sorted(line[3:] for line in out.splitlines() if line.strip())


def _f(x: Any) -> float | None:
    return None if x is None or x != x else float(x)


# -- per catalog ---------------------------------------------------------------------------------------------
def needs_text(methods: Sequence[str]) -> bool:
    from bench.bench_completion import GNN_VARIANTS

    return any(m in GNN_VARIANTS and GNN_VARIANTS[m].get("text_feature", "text") is not None for m in methods)


def text_config(encoder: str | None, threads: int) -> Any:
    """The default TextFeatureConfig (its encoder, unless ``encoder``), with ``threads`` when the encoder takes them."""
    from attrgraph.features import TextFeatureConfig
    from gnn.text import ENCODERS

    cfg = TextFeatureConfig(**({"encoder": encoder} if encoder else {}))
    if cfg.encoder not in ENCODERS:
        raise SystemExit(f"unknown encoder {cfg.encoder!r}; valid: {', '.join(sorted(ENCODERS))}")
    try:
        takes_threads = "threads" in inspect.signature(ENCODERS[cfg.encoder]).parameters
    except (TypeError, ValueError):
        takes_threads = False
    if takes_threads:
        cfg.encoder_kwargs = {**cfg.encoder_kwargs, "threads": threads}
    return cfg


def prepare_catalog(g: Any, cat: Catalog, work: Path, *, max_products: int | None, text: Any | None,
                    log: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
    """Wipe the graph, ingest ``cat``, export a snapshot into ``work`` and compute its text features
    (when ``text`` is a TextFeatureConfig). Returns (snapshot, figures)."""
    from attrgraph.features import compute_text_features
    from gnn.snapshot import load_snapshot
    from graph.export import export_snapshot

    info: dict[str, Any] = {"file": str(cat.path), "mapping": cat.mapping, "derived": cat.derive}
    path, mapping = cat.path, cat.mapping
    if cat.derive == "stress":
        t = time.perf_counter()
        path, mp, counts = write_stress_catalog(cat.path, work / "catalog", base_mapping=cat.mapping,
                                                limit=max_products, name=cat.name)
        mapping = str(mp)
        info["derive"] = {**counts, "seconds": round(time.perf_counter() - t, 2)}
    elif cat.derive is not None:
        raise SystemExit(f"{cat.name}: unknown derivation {cat.derive!r}")
    if not Path(path).exists():
        raise SystemExit(f"{cat.name}: {path} does not exist")
    t = time.perf_counter()
    g.clear(confirm=True)
    g.ensure_schema()
    info["wipe_seconds"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    rep = g.ingest(path, mapping=mapping, limit=max_products)
    info["ingest"] = {"rows": rep.rows_read, "products": rep.products_created, "facts": rep.facts_written,
                      "rejected": rep.rows_rejected, "seconds": round(time.perf_counter() - t, 2)}
    log(f"[{cat.name}] ingested {rep.products_created} products ({rep.rows_rejected} rejected) "
        f"in {info['ingest']['seconds']} s")
    t = time.perf_counter()
    ex = export_snapshot(g.client, work / "snapshot")
    info["snapshot"] = {"nodes": dict(ex.nodes), "edges": dict(ex.edges), "seconds": round(time.perf_counter() - t, 2)}
    snap = load_snapshot(ex.path)
    if text is not None:
        tr = compute_text_features(snap, text)
        info["features"] = {"encoder": tr.encoder, "version": tr.version, "dim": tr.dim, "texts": tr.texts,
                            "encoded": tr.encoded, "cached": tr.cached, "seconds": round(tr.seconds, 2)}
        log(f"[{cat.name}] text features ({tr.encoder}): {tr.texts} texts, {tr.encoded} encoded, "
            f"{tr.cached} cached, {tr.seconds:.1f} s")
    else:
        info["features"] = None
    return snap, info


def run_catalog(snap: Any, catalog: str, *, splits: Sequence[str], methods: Sequence[str], seed: int = 0,
                cold_share: float = 0.05, threads: int = 2, target_precision: float = 0.98,
                calibration: str = "isotonic", gnn_options: dict[str, Any] | None = None,
                applicability: Callable[[Any, Any, Any], Any] = applicable_pairs,
                log: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every split x method on one snapshot: (rows, per-split figures)."""
    import numpy as np

    from bench.bench_completion import fit_and_grade
    from gnn.protocol import make_split, product_texts, value_in_text

    rows: list[dict[str, Any]] = []
    split_info: dict[str, Any] = {}
    keys = title_keys(snap)
    texts = product_texts(snap)
    for sname in splits:
        if sname not in SPLITS:
            raise SystemExit(f"unknown split {sname!r}; valid: {', '.join(SPLITS)}")
        t = time.perf_counter()
        split = make_split(snap, seed=seed, cold_share=cold_share, group_by=SPLITS[sname])
        test, cold = split.pairs("test"), split.pairs("cold")
        in_text = np.zeros(split.num_pairs, bool)
        graded = np.concatenate([test, cold])
        in_text[graded] = value_in_text(snap, split, graded, texts)
        appl = np.asarray(applicability(snap, split, test), bool)
        sinfo = {
            "summary": split.summary(),
            "test_value_in_text": _f(in_text[test].mean()) if len(test) else None,
            "test_value_substring_of_text": substring_share(snap, split, test, texts),
            "test_value_unseen_in_train": unseen_share(split, test),
            "test_pairs_with_title_twin_in_train": _f(twin_share(snap, split, ("test",), ("train",), keys)),
            "cold_pairs_with_title_twin_in_train": _f(twin_share(snap, split, ("cold",), ("train",), keys)),
            "test_pairs_applicable": _f(appl.mean()) if len(appl) else None,
            "test_pairs_applicable_fixed_10pct": _f(fixed_applicable_pairs(snap, split, test).mean()) if len(test) else None,
            "applicable_attributes_per_product": applicable_per_product(snap, split),
            "test_attributes": int(len(np.unique(split.attribute[test]))),
            "seconds": round(time.perf_counter() - t, 2),
        }
        split_info[sname] = sinfo
        sm = sinfo["summary"]
        log(f"[{catalog} / {sname}] {sm['train_pairs']} train / {sm['valid_pairs']} valid / {sm['test_pairs']} test "
            f"pairs, {sm['cold_products']} cold products; test pairs with a title twin in train: "
            f"{sinfo['test_pairs_with_title_twin_in_train']}")
        for name in methods:
            row: dict[str, Any] = {"catalog": catalog, "split": sname, "method": name,
                                   "test_pairs": int(len(test)), "not_in_text_pairs": int((~in_text[test]).sum()),
                                   "valid_pairs": int(len(split.pairs("valid"))),
                                   "applicable_share": sinfo["test_pairs_applicable"]}
            gc.collect()
            try:
                with RssPeak() as rss:
                    res = fit_and_grade(name, snap, split, in_text=in_text, threads=threads,
                                        target_precision=target_precision, calibration=calibration,
                                        gnn_options=gnn_options, grade_valid=True)
            except (Exception, SystemExit) as e:  # noqa: BLE001 -- one failing method must not lose the others
                row.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8)[-4000:],
                           max_rss_mb=max_rss_mb())
                log(f"[{catalog} / {sname} / {name}] FAILED: {row['error']}")
                rows.append(row)
                continue
            r = res.record
            cov = f"coverage@{target_precision:g}"
            row.update({
                "valid_hits@1": _f(res.valid["hits@1"]) if res.valid else None,
                "test_hits@1": _f(r["test"]["hits@1"]), "test_hits@3": _f(r["test"]["hits@3"]),
                "test_not_in_text_hits@1": _f(r["test_value_not_in_text"]["hits@1"]),
                "test_mrr": _f(r["test"]["mrr"]), "test_ece": _f(r["test"]["ece"]),
                "test_coverage@target": _f(r["test"][cov]), "abstention": r["test"]["abstention"],
                "cold_hits@1": _f(r["cold"]["hits@1"]), "cold_pairs": r["cold"]["pairs"],
                "fit_seconds": r["fit_seconds"], "predict_seconds": r["score_seconds"],
                "peak_rss_mb": rss.mb, "max_rss_mb": max_rss_mb(),
                "epochs_run": r["epochs_run"], "best_epoch": r["best_epoch"], "config": r["config"],
                "prior_seconds": r.get("prior_seconds"), "prior_methods": r.get("prior_methods"),
                "selection": r.get("selection"),
                "test_ece_by_calibration": {k: _f(v) for k, v in r["ece_by_calibration"].items()},
                # the 12 attributes with the most test pairs (and @brand)
                "per_attribute": {k: {"pairs": v["pairs"], "hits@1": _f(v["hits@1"]), "mrr": _f(v["mrr"])}
                                  for k, v in sorted(r["per_attribute"].items(), key=lambda kv: -kv[1]["pairs"])[:12]
                                  + [kv for kv in r["per_attribute"].items() if kv[0] == "@brand"]},
            })
            rows.append(row)
            log(f"[{catalog} / {sname} / {name}] valid H@1 {_fmt(row['valid_hits@1'])}, test H@1 "
                f"{_fmt(row['test_hits@1'])} (not in text {_fmt(row['test_not_in_text_hits@1'])}), MRR "
                f"{_fmt(row['test_mrr'])}, ECE {_fmt(row['test_ece'])}; fit {row['fit_seconds']} s, predict "
                f"{row['predict_seconds']} s, peak RSS {row['peak_rss_mb']} MB")
            del res
    return rows, split_info


def _fmt(x: Any) -> str:
    return "—" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


# -- the run ---------------------------------------------------------------------------------------------------
@contextmanager
def _graph(graph: Any | None, heap_mb: int, pagecache_mb: int) -> Iterator[Any]:
    if graph is not None:
        yield graph
        return
    from bench._neo4j import bench_graph

    with bench_graph(heap_mb=heap_mb, pagecache_mb=pagecache_mb) as g:
        yield g


def plot_hits(record: dict[str, Any], path: Path) -> Path:
    """Bars of test Hits@1 per catalog x split (groups) x method (bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in record["rows"] if r.get("test_hits@1") is not None or "error" in r]
    groups = list(dict.fromkeys((r["catalog"], r["split"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["catalog"], r["split"], r["method"]): r.get("test_hits@1") for r in rows}
    w = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(methods)) * 0.45 + 2), 4.6))
    x = np.arange(len(groups))
    for i, m in enumerate(methods):
        ys = [by.get((c, s, m)) for c, s in groups]
        vals = [y if y is not None else 0.0 for y in ys]
        bars = ax.bar(x - 0.4 + w * (i + 0.5), vals, w, label=m)
        for b, y in zip(bars, ys):
            ax.annotate("x" if y is None else f"{y:.2f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=6, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, [f"{c}\n{s}" for c, s in groups], fontsize=8)
    ax.set(ylabel="test Hits@1", ylim=(0, 1.12), title=f"test Hits@1 per catalog, split and method "
           f"({'all products' if record['settings']['max_products'] is None else 'first ' + str(record['settings']['max_products']) + ' products'})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(methods), 6), loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(*, catalogs: Sequence[Catalog], splits: Sequence[str] = tuple(SPLITS), methods: Sequence[str] = DEFAULT_METHODS,
        max_products: int | None = None, encoder: str | None = None, seed: int = 0, cold_share: float = 0.05,
        threads: int = 2, target_precision: float = 0.98, calibration: str = "isotonic",
        gnn_options: dict[str, Any] | None = None, applicability: Callable[[Any, Any, Any], Any] = applicable_pairs,
        graph: Any | None = None, out_dir: Path | None = None, results: Path | None = RESULTS,
        heap_mb: int = 2048, pagecache_mb: int = 1024, work_dir: Path | None = None, fresh_text_cache: bool = False,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark (on ``graph``, which it WIPES, or a throwaway Neo4j); returns the record, which is
    appended to ``results`` (None: not recorded) and reported in ``out_dir``. Text embeddings are cached
    where the code's default says ($ATTRGRAPH_HOME/cache), or, with ``fresh_text_cache``, in a new cache of
    this run (shared by its catalogs: the stress catalog reuses Myntra's product texts)."""
    import torch
    from threadpoolctl import threadpool_limits

    from bench._neo4j import git_commit
    from bench.bench_completion import GNN_VARIANTS, _clean
    from bench.catalogs_table import table_markdown, catalogs_markdown
    from gnn.baselines import BASELINES

    bad = [m for m in methods if m not in BASELINES and m not in GNN_VARIANTS]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; valid: {', '.join(list(BASELINES) + list(GNN_VARIANTS))}")
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise SystemExit(f"unknown split(s) {bad}; valid: {', '.join(SPLITS)}")
    threadpool_limits(threads)
    torch.set_num_threads(threads)
    text = text_config(encoder, threads) if needs_text(methods) else None
    tmp = Path(tempfile.mkdtemp(prefix="attrgraph-bench-catalogs-")) if work_dir is None else Path(work_dir)
    if text is not None and fresh_text_cache:
        text.cache_path = str(tmp / "text-cache.sqlite")
    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
        "uncommitted_changes": uncommitted_changes(),
        "settings": {"catalogs": [c.name for c in catalogs], "splits": list(splits), "methods": list(methods),
                     "max_products": max_products, "encoder": text.encoder if text else None,
                     "seed": seed, "cold_share": cold_share, "fractions": [0.8, 0.1, 0.1], "threads": threads,
                     "target_precision": target_precision, "calibration": calibration,
                     "gnn_options": gnn_options or {}, "applicability": getattr(applicability, "__name__", str(applicability)),
                     "text_cache": "fresh" if fresh_text_cache else "default"},
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                 "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
        "catalogs": {}, "rows": [],
    }
    try:
        with _graph(graph, heap_mb, pagecache_mb) as g:
            for cat in catalogs:
                work = tmp / cat.name
                shutil.rmtree(work, ignore_errors=True)
                t = time.perf_counter()
                snap, info = prepare_catalog(g, cat, work, max_products=max_products, text=text, log=log)
                info["counts"] = {t_: snap.num_nodes(t_) for t_ in ("product", "brand", "category", "attribute", "value")}
                rows, sinfo = run_catalog(snap, cat.name, splits=splits, methods=methods, seed=seed,
                                          cold_share=cold_share, threads=threads, target_precision=target_precision,
                                          calibration=calibration, gnn_options=gnn_options,
                                          applicability=applicability, log=log)
                info["splits"] = sinfo
                info["seconds"] = round(time.perf_counter() - t, 1)
                record["catalogs"][cat.name] = info
                record["rows"] += rows
                del snap
                gc.collect()
                if work_dir is None:
                    shutil.rmtree(work, ignore_errors=True)
    finally:
        if work_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    record["max_rss_mb"] = max_rss_mb()
    record = _clean(record)

    # -- report -----------------------------------------------------------------------------------------------
    table = table_markdown(record)
    cats = catalogs_markdown(record)
    st = record["settings"]
    head = (f"{record['when']}, commit {record['commit']}: {', '.join(st['catalogs'])}; "
            f"{'all products' if max_products is None else f'first {max_products} rows'}; seed {seed}; "
            f"encoder {st['encoder'] or '(not needed)'}; threads {threads}; gnn options {json.dumps(st['gnn_options'])}; "
            f"{record['seconds']} s, max RSS {record['max_rss_mb']} MB")
    print(f"\n{head}\n\n{cats}\n\n{table}\n")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out_dir or ROOT / "bench" / "out" / f"catalogs-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    png = None
    try:
        png = plot_hits(record, out / "hits.png")
    except Exception as e:  # noqa: BLE001 -- a missing plot must not lose the measured figures
        print(f"no plot: {e}", file=sys.stderr)
    md = (f"# Cross-catalog completion benchmark\n\n{head}\n\n## Catalogs and splits\n\n{cats}\n\n"
          f"## Methods\n\n{table}\n\n"
          "valid H@1: raw scores on the valid pairs (for decisions); test H@1, ¬text H@1 (the test pairs whose "
          "value does not occur in title + description), MRR: filtered ranks over the attribute's candidates; "
          f"ECE: top-1 probability after {calibration} calibration fitted on valid; applicable: share of test pairs "
          f"deemed applicable ({st['applicability']}); fit / predict s: fitting on train, scoring valid + test + "
          "cold; peak RSS: the process while the method ran (psutil, sampled).\n")
    if png:
        md += f"\n![test Hits@1]({png.name})\n"
    (out / "report.md").write_text(md, encoding="utf-8")
    (out / "record.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    record["out_dir"] = str(out)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        with open(results, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    print(f"report: {out / 'report.md'}" + (f"; recorded in {results}" if results is not None else ""))
    return record


def main() -> None:
    from bench.bench_completion import GNN_VARIANTS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalogs", default=",".join(CATALOGS), help=f"comma-separated: {', '.join(CATALOGS)}")
    ap.add_argument("--splits", default=",".join(SPLITS), help=f"comma-separated: {', '.join(SPLITS)}")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                    help=f"comma-separated: majority, tfidf, tfidf-props, kge, {', '.join(GNN_VARIANTS)}")
    ap.add_argument("--max-products", type=int, default=None, help="ingest only the first N rows of each catalog")
    ap.add_argument("--encoder", default=None, help="text encoder (default: attrgraph.features.TextFeatureConfig's)")
    ap.add_argument("--gnn-options", default="{}", help="JSON of GnnConfig options for the GNN variants (default: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="report directory (default bench/out/catalogs-<stamp>)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the JSON-lines file the run is appended to")
    ap.add_argument("--fresh-text-cache", action="store_true",
                    help="encode into a new text-embedding cache (cold feature times) instead of $ATTRGRAPH_HOME/cache")
    ap.add_argument("--heap-mb", type=int, default=2048)
    ap.add_argument("--pagecache-mb", type=int, default=1024)
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="keep each catalog's snapshot (and text features) under this directory (default: a temporary "
                         "directory, removed at the end)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from bench._catalog import catalog_names

    names = catalog_names(ap, args.catalogs, CATALOGS)
    opts = json.loads(args.gnn_options)
    if not isinstance(opts, dict):
        ap.error("--gnn-options must be a JSON object")
    run(catalogs=[CATALOGS[c] for c in names], splits=[s for s in args.splits.split(",") if s],
        methods=[m for m in args.methods.split(",") if m], max_products=args.max_products, encoder=args.encoder,
        seed=args.seed, threads=args.threads, gnn_options=opts, out_dir=args.out, results=args.results,
        heap_mb=args.heap_mb, pagecache_mb=args.pagecache_mb, fresh_text_cache=args.fresh_text_cache,
        work_dir=args.work_dir)


if __name__ == "__main__":
    main()
