"""Attribute-completion benchmark: the baselines on the honest protocol of issue 4.

    python bench/bench_completion.py [--snapshot DIR] [--baselines majority,tfidf] [--seed 0]
                                     [--cold-share 0.05] [--target-precision 0.98] [--threads 2]

1. Loads a snapshot (default $ATTRGRAPH_HOME/snapshots/current) and splits its (product,
   attribute) pairs with ``gnn.protocol.make_split``: 80/10/10 train/valid/test, plus cold-start
   products whose facts are all hidden.
2. Fits every baseline on the train facts, calibrates it on the valid pairs (temperature scaling
   and isotonic regression) and chooses per-attribute abstention thresholds on them; grades on the
   test pairs (and, separately, the cold-start pairs).
3. Prints a table (overall and value-not-in-text Hits@1, Hits@3, MRR, ECE, coverage at the target
   precision) and per-attribute figures; writes a reliability / precision–coverage PNG and a
   Markdown report and every method's top-1 answer per test pair (top1.npz, read by bench_ceiling.py) into
   bench/out/<timestamp>/; appends the figures to bench/results/completion.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def _fmt(x: Any, nd: int = 3) -> str:
    if isinstance(x, float):
        return "—" if x != x else f"{x:.{nd}f}"
    return str(x)


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats (NaN, an abstaining threshold's inf) become null."""
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# the GNN and its ablations: every one is GnnCompletionModel with some inputs switched off
GNN_VARIANTS: dict[str, dict[str, Any]] = {
    "gnn": {},  # text embeddings + TF-IDF + text prior + learnable embeddings, message passing over the visible graph
    "gnn-notext": {"text_feature": None, "tfidf": False, "text_prior": False},  # the GNN without text features
    "text-mlp": {"message_passing": False},  # the text features without the GNN (same decoder)
    "gnn-noprops": {"properties": False},  # the GNN without the product-property tokens (title + description only)
    "gnn-norefit": {"prior_refit": False},  # the GNN whose prior scores unseen facts by the two half-data folds
    "gnn-nochars": {"title_char_ngrams": None},  # the GNN without the title's character n-grams (word n-grams only)
    "gnn-nomentions": {"mentions": False},  # the GNN without mentions (candidates named in the product's text)
    "gnn-noembed": {"text_feature": None},  # the GNN without the text encoder's embeddings (TF-IDF, prior, mentions kept)
    "gnn-noprior": {"text_prior": False},  # the GNN without the cross-fitted TF-IDF prior (gnn.prior)
    "gnn-notexthead": {"text_head": False},  # the GNN without its text head (graph head or prior per attribute)
    "gnn-desc2000": {"description_chars": 2000},  # TF-IDF and prior read 2,000 description characters, not 300
}


def make_method(name: str, threads: int, gnn_options: dict[str, Any], kge_options: dict[str, Any],
                baselines: dict[str, Any], get_baseline: Any, gnn_cls: Any) -> Any:
    """A baseline (``majority``, ``tfidf``, ``kge``) or a GNN variant (``GNN_VARIANTS``) by name."""
    if name in GNN_VARIANTS:
        return gnn_cls(**{"threads": threads, **gnn_options, **GNN_VARIANTS[name]})
    if name in ("tfidf", "tfidf-props"):
        return get_baseline(name, n_jobs=threads)
    if name == "kge":
        return get_baseline(name, **{"threads": threads, **kge_options})
    if name in baselines:
        return get_baseline(name)
    raise SystemExit(f"unknown method {name!r}; valid: {', '.join(list(baselines) + list(GNN_VARIANTS))}")


@dataclass
class MethodResult:
    """One method fitted on the train pairs, scored, calibrated on valid and graded (:func:`fit_and_grade`)."""

    name: str
    model: Any
    record: dict[str, Any]  # the method's figures as bench_completion records them
    top1: Any  # gnn.metrics.Top1 of the test pairs, calibrated confidences
    valid: dict[str, Any] | None = None  # ranking figures of the raw scores on the valid pairs (``grade_valid``)


def fit_and_grade(name: str, snap: Any, split: Any, *, in_text: Any, threads: int = 2, target_precision: float = 0.98,
                  calibration: str = "isotonic", n_bins: int = 15, gnn_options: dict[str, Any] | None = None,
                  kge_options: dict[str, Any] | None = None, grade_valid: bool = False) -> MethodResult:
    """Fit method ``name`` on the train pairs of ``split``, score the valid, test and cold pairs, calibrate
    on valid (temperature and isotonic; ``calibration`` is the one used), choose per-attribute abstention
    thresholds on valid, grade test and cold (all pairs, and those whose value is not in the text:
    ``in_text`` is bool [num_pairs], filled for the test and cold pairs)."""
    from gnn.baselines import BASELINES, get_baseline
    from gnn.metrics import abstention_thresholds, evaluate, get_calibrator
    from gnn.model import GnnCompletionModel

    test, valid, cold = split.pairs("test"), split.pairs("valid"), split.pairs("cold")
    t = time.perf_counter()
    model = make_method(name, threads, gnn_options or {}, kge_options or {}, BASELINES, get_baseline,
                        GnnCompletionModel).fit(snap, split, on=("train",))
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    s_valid, s_test, s_cold = model.score(valid), model.score(test), model.score(cold)
    score_s = time.perf_counter() - t
    kw = {"n_bins": n_bins, "target_precision": target_precision}
    eces = {"none": evaluate(s_test, per_attribute=False, **kw)["ece"]}
    cal_used = None
    for cname in ("temperature", "isotonic"):
        cal = get_calibrator(cname).fit(s_valid)
        eces[cname] = evaluate(cal.transform(s_test), per_attribute=False, **kw)["ece"]
        if cname == calibration:
            cal_used = cal
    c_valid, c_test, c_cold = (cal_used.transform(x) if cal_used else x for x in (s_valid, s_test, s_cold))
    abst = abstention_thresholds(c_valid.top1(), target_precision)

    def grade(raw: Any, cal: Any, mask: Any = None, per_attribute: bool = False) -> dict[str, Any]:
        """Ranks from the raw scores (calibration keeps the order; this keeps float ties out of
        it), top-1 probabilities (ECE, coverage, abstention) from the calibrated ones."""
        if mask is not None:
            raw, cal = raw.subset(mask), cal.subset(mask)
        r, c = evaluate(raw, per_attribute=per_attribute, **kw), evaluate(cal, per_attribute=per_attribute, **kw)
        cov = f"coverage@{target_precision:g}"
        out = {**r, "ece": c["ece"], cov: c[cov], "abstention": abst.apply(cal.top1())}
        if per_attribute:
            out["per_attribute"] = {a: {**v, "ece": c["per_attribute"][a]["ece"], cov: c["per_attribute"][a][cov]}
                                    for a, v in r["per_attribute"].items()}
        return out

    m_test = grade(s_test, c_test, per_attribute=True)
    m_text = grade(s_test, c_test, ~in_text)
    m_cold = grade(s_cold, c_cold)
    m_cold_text = grade(s_cold, c_cold, ~in_text)
    record = {
        "config": model.config(), "fit_seconds": round(fit_s, 2), "score_seconds": round(score_s, 2),
        "epochs_run": getattr(model, "epochs_run", None), "best_epoch": getattr(model, "best_epoch", None),
        "prior_seconds": round(getattr(model, "prior_seconds", 0.0), 2) if getattr(model, "prior", None) else None,
        "prior_methods": _method_counts(getattr(model, "prior", None)),
        "valid_curve": [h.get("valid_hits@1") for h in getattr(model, "history", []) if "valid_hits@1" in h],
        "test": {k: v for k, v in m_test.items() if k != "per_attribute"}, "test_value_not_in_text": m_text,
        "cold": m_cold, "cold_value_not_in_text": m_cold_text,
        "ece_by_calibration": eces,
        "temperature": getattr(cal_used, "temperature", None) if calibration == "temperature" else None,
        "abstention_thresholds": {split.attribute_names[a]: v for a, v in sorted(abst.thresholds.items())},
        "per_attribute": m_test["per_attribute"],
        "selection": _selection_counts(getattr(model, "selection", None)),
    }
    v = evaluate(s_valid, per_attribute=False, **kw) if grade_valid else None
    return MethodResult(name, model, record, c_test.top1(), v)


def _selection_counts(selection: Any) -> dict[str, Any] | None:
    """What ``select_by_valid`` chose (graph head, text head or prior alone), by attribute and by valid pair."""
    if not selection:
        return None
    out: dict[str, Any] = {"attributes": {}, "valid_pairs": {}}
    for s in selection.values():
        out["attributes"][s["use"]] = out["attributes"].get(s["use"], 0) + 1
        out["valid_pairs"][s["use"]] = out["valid_pairs"].get(s["use"], 0) + int(s["valid_pairs"])
    return out


def _method_counts(prior: Any) -> dict[str, int] | None:
    """How many attributes the text prior fitted as "lr", "centroid", "constant" (None: no prior)."""
    from collections import Counter

    return None if prior is None else dict(Counter(prior.methods.values()))


def run(*, snapshot: Path, baselines: list[str], seed: int = 0, cold_share: float = 0.05,
        target_precision: float = 0.98, calibration: str = "isotonic", n_bins: int = 15,
        out_dir: Path | None = None, results: Path | None = None, threads: int = 2,
        gnn_options: dict[str, Any] | None = None, kge_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the record appended to ``results``."""
    import numpy as np
    import psutil
    from threadpoolctl import threadpool_limits

    from gnn.metrics import plot_reliability
    from gnn.protocol import applicable_attributes, make_split, product_texts, value_in_text
    from gnn.snapshot import load_snapshot

    threadpool_limits(threads)
    t0 = time.perf_counter()
    snap = load_snapshot(snapshot)
    split = make_split(snap, seed=seed, cold_share=cold_share)
    test, valid, cold = split.pairs("test"), split.pairs("valid"), split.pairs("cold")
    texts = product_texts(snap)
    in_text = np.zeros(split.num_pairs, bool)
    graded = np.concatenate([test, cold])
    in_text[graded] = value_in_text(snap, split, graded, texts)
    appl = applicable_attributes(snap, split)
    prep_s = time.perf_counter() - t0

    rec: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": _git_commit(),
        "snapshot": str(snapshot), "fingerprint": snap.fingerprint, "products": snap.num_nodes("product"),
        "split": split.summary(), "threads": threads, "target_precision": target_precision, "n_bins": n_bins,
        "calibration": calibration,
        "test_value_in_text": float(in_text[test].mean()) if len(test) else float("nan"),
        "applicability": {"min_share": appl.min_share, "min_products": appl.min_products,
                          "test_pairs_applicable": float(appl.applies(split.product[test], split.attribute[test]).mean()),
                          "cold_pairs_applicable": float(appl.applies(split.product[cold], split.attribute[cold]).mean())
                          if len(cold) else float("nan"),
                          "attributes_per_product": float(appl.for_products(np.arange(split.num_products)).sum(1).mean())},
        "prepare_seconds": round(prep_s, 2), "methods": {},
    }
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    top1s: dict[str, Any] = {}  # per method: the test pairs' top-1 choice, calibrated confidence, correctness
    for name in baselines:
        res = fit_and_grade(name, snap, split, in_text=in_text, threads=threads, target_precision=target_precision,
                            calibration=calibration, n_bins=n_bins, gnn_options=gnn_options, kge_options=kge_options)
        curves[name] = (res.top1.confidence, res.top1.correct)
        top1s[name] = res.top1
        rec["methods"][name] = res.record
    rec["peak_rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    rec["seconds"] = round(time.perf_counter() - t0, 1)

    # -- report ---------------------------------------------------------------------------------------
    cov = f"coverage@{target_precision:g}"
    hdr = ["method", "pairs", "Hits@1", "Hits@3", "MRR", f"ECE ({calibration})", cov,
           f"abstain@{target_precision:g} (valid thresholds): precision / coverage"]
    rows = []
    for name, m in rec["methods"].items():
        for label, key in (("test", "test"), ("test, value not in text", "test_value_not_in_text"),
                           ("cold-start", "cold"), ("cold-start, value not in text", "cold_value_not_in_text")):
            x = m[key]
            a = x["abstention"]
            rows.append([f"{name}: {label}", x["pairs"], x["hits@1"], x["hits@3"], x["mrr"], x["ece"], x[cov],
                         f"{_fmt(a['precision'])} / {_fmt(a['coverage'])}"])
    main_table = _table(hdr, rows)
    sp = rec["split"]
    head = (f"snapshot {snapshot} ({rec['products']} products, fingerprint {snap.fingerprint[:12]}), seed {seed}: "
            f"{sp['train_pairs']} train / {sp['valid_pairs']} valid / {sp['test_pairs']} test pairs, "
            f"{sp['cold_products']} cold products ({sp['cold_pairs']} pairs); "
            f"{rec['test_value_in_text']:.1%} of test pairs have their value in the text. "
            f"Calibrated on valid; abstention thresholds per attribute chosen on valid for precision {target_precision:g}.")
    # per attribute: the 15 most frequent test attributes, and @brand
    first = next(iter(rec["methods"].values()))["per_attribute"] if rec["methods"] else {}
    top = sorted(first, key=lambda k: -first[k]["count"])
    shown = top[:15] + [a for a in top[15:] if a == "@brand"]
    ahdr = ["attribute", "test facts"] + [f"{n} Hits@1" for n in rec["methods"]] + [f"{n} MRR" for n in rec["methods"]]
    arows = [[a, first[a]["count"]] + [rec["methods"][n]["per_attribute"].get(a, {}).get("hits@1", float("nan")) for n in rec["methods"]]
             + [rec["methods"][n]["per_attribute"].get(a, {}).get("mrr", float("nan")) for n in rec["methods"]] for a in shown]
    full_rows = [[a, first[a]["count"]] + [rec["methods"][n]["per_attribute"].get(a, {}).get("hits@1", float("nan")) for n in rec["methods"]]
                 + [rec["methods"][n]["per_attribute"].get(a, {}).get("mrr", float("nan")) for n in rec["methods"]] for a in top]
    print(head)
    print()
    print(main_table)
    print()
    print(_table(ahdr, arows))
    fits = ", ".join(f"{n} fit {m['fit_seconds']} s, ECE raw {m['ece_by_calibration']['none']:.4f} / temperature "
                     f"{m['ece_by_calibration']['temperature']:.4f} / isotonic {m['ece_by_calibration']['isotonic']:.4f}"
                     for n, m in rec["methods"].items())
    print(f"\n{fits}\n({rec['seconds']} s in all, peak RSS {rec['peak_rss_mb']} MB)")

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = out_dir or ROOT / "bench" / "out" / stamp
    out.mkdir(parents=True, exist_ok=True)
    png = None
    try:
        png = plot_reliability(curves, out / "reliability.png", n_bins=n_bins, target_precision=target_precision,
                               title=f"test pairs, {calibration} calibration fitted on valid")
    except Exception as e:  # noqa: BLE001 -- a missing plot must not lose the measured figures
        print(f"no plot: {e}", file=sys.stderr)
    md = (f"# Attribute completion, {rec['when']}\n\n{head}\n\n{main_table}\n\n"
          f"¬text: the pairs whose true value does not occur (case-insensitive, whole words) in title + description. "
          f"Hits/MRR: filtered ranks over the attribute's candidates, ties count half. ECE: {n_bins} equal-width bins "
          f"of the top-1 probability. {cov}: on the test set's own precision–coverage curve.\n\n"
          f"## Per attribute (test)\n\n{_table(ahdr, full_rows)}\n")
    if png:
        md += f"\n![reliability and precision–coverage]({png.name})\n"
    (out / "report.md").write_text(md, encoding="utf-8")
    # every method's top-1 answer per test pair, for bench_ceiling.py (oracle, consensus errors, confusions)
    np.savez_compressed(out / "top1.npz", fingerprint=np.array(snap.fingerprint), seed=np.array(seed),
                        methods=np.array(list(top1s)),
                        **{f"{n}.{k}": getattr(t, k) for n, t in top1s.items() for k in ("pairs", "choice", "confidence", "correct")})
    (out / "record.json").write_text(json.dumps(_clean(rec), indent=1), encoding="utf-8")
    rec["out_dir"] = str(out)
    results = results or ROOT / "bench" / "results" / "completion.jsonl"
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_clean(rec)) + "\n")
    print(f"report: {out / 'report.md'}; figures appended to {results}")
    return rec


def _git_commit() -> str:
    try:
        import subprocess

        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=ROOT).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> None:
    from graph.settings import attrgraph_home

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", type=Path, default=attrgraph_home() / "snapshots" / "current")
    ap.add_argument("--baselines", "--methods", dest="baselines", default="majority,tfidf,kge,text-mlp,gnn-notext,gnn",
                    help="comma-separated: majority, tfidf, tfidf-props, kge, and the GNN variants "
                         f"{', '.join(GNN_VARIANTS)}")
    ap.add_argument("--gnn-options", default="{}", help="JSON of GnnConfig options for the GNN variants")
    ap.add_argument("--kge-options", default="{}", help="JSON of options of the kge baseline (model, epochs, ...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold-share", type=float, default=0.05)
    ap.add_argument("--target-precision", type=float, default=0.98)
    ap.add_argument("--calibration", choices=["none", "temperature", "isotonic", "isotonic-lower"], default="isotonic")
    ap.add_argument("--bins", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="report directory (default bench/out/<timestamp>)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    run(snapshot=args.snapshot, baselines=[b for b in args.baselines.split(",") if b], seed=args.seed,
        cold_share=args.cold_share, target_precision=args.target_precision, calibration=args.calibration,
        n_bins=args.bins, out_dir=args.out, threads=args.threads, gnn_options=json.loads(args.gnn_options),
        kge_options=json.loads(args.kge_options))


if __name__ == "__main__":
    main()
