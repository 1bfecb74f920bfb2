"""The confirmation split: does what a fitted model says of its own confidence hold on facts nobody tuned on?

For each shared catalog, a confirmation set of products (10%, whole title groups: title twins stay
together; a fixed seed of its own, never used by any other split) has *all* its asserted facts hidden.
The production model is fitted on the rest exactly as ``attrgraph train`` fits it
(``CompletionPredictor.fit``: 90% to learn from, 10% held out for calibration, thresholds and the
cross-fitted figures it reports), then ranks the confirmation products' missing slots. Compared:

* the model's **reported** held-out ECE and precision at threshold (cross-fitted on its validation pairs)
  against the same figures **measured** on the confirmation facts (issue 14: within +-0.01);
* every block of the isotonic calibrator (and every gap between blocks, where the map is linear) on the
  confirmation facts: the 95% Clopper-Pearson lower bound of the block's accuracy, plus 0.02, is the
  most a block may state (issue 14's rule); a block above even the upper bound is overstated beyond
  sampling noise; and whether the block states more than its own fit-time lower bound + 0.02.

The split is scored once per recorded model change: a run records the git tree of ``gnn/`` (the model
code), this script's blob and the settings, refuses to run while either has uncommitted changes, and
refuses a catalog whose (tree, script, settings) was already confirmed. Every scoring is appended to
``bench/results/confirm.jsonl`` as soon as it is made (with the commit): nothing is chosen on it.

    .venv/bin/python bench/bench_confirm.py [--catalogs myntra bigbasket taobao]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._catalog import CATALOGS, read_products, write_snapshot  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "confirm.jsonl"
CONFIRM_SEED = 917_203  # the confirmation split's own seed: no other split or benchmark uses it
SHARE = 0.10


def confirmation_products(titles: list[str], share: float = SHARE, seed: int = CONFIRM_SEED) -> np.ndarray:
    """bool [N]: ``share`` of the products, whole title groups at a time (seeded)."""
    uniq, inv = np.unique(np.asarray(titles, dtype=object).astype(str), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    sizes = np.bincount(inv, minlength=len(uniq))
    want = share * len(titles)
    taken = np.zeros(len(uniq), bool)
    total = 0
    for g in order:
        if total >= want:
            break
        taken[g] = True
        total += sizes[g]
    return taken[inv]


def without_facts_of(snap: Any, held: np.ndarray) -> Any:
    """``snap`` with every value and brand fact of the ``held`` products removed (texts, categories and
    properties kept), as a snapshot of its own (another fingerprint)."""
    from gnn.snapshot import Snapshot

    edges = dict(snap.edges)
    for rel in ("has_value", "has_brand"):
        if rel in edges:
            e = edges[rel]
            edges[rel] = e[:, ~held[e[0]]].copy()
    manifest = {**snap.manifest, "fingerprint": snap.fingerprint + "-confirm"}
    return Snapshot(snap.path, manifest, snap.nodes, edges, snap.edge_types)


def clopper_pearson_lower(k: int, n: int, level: float = 0.95) -> float:
    from scipy.stats import beta

    return float(beta.ppf(1 - level, k, n - k + 1)) if k > 0 else 0.0


def grade(pred: Any, full: Any, reduced: Any, held: np.ndarray) -> dict[str, Any]:
    """The model's top-1 pick of every confirmation slot that had asserted facts, graded against them."""
    from gnn.metrics import expected_calibration_error

    sp = pred.split
    truth: dict[tuple[int, int], set[int]] = {}
    values = full.nodes["value"]
    known = set(sp.attribute_names)
    for rel in ("has_value", "has_brand"):
        if rel not in full.edges:
            continue
        e = full.edges[rel]
        keep = held[e[0]]
        for p, v in zip(e[0][keep].tolist(), e[1][keep].tolist()):
            name = values[v]["attribute"] if rel == "has_value" else "@brand"
            if name in known:
                truth.setdefault((p, sp.attribute_id(name)), set()).add(v)
    prods = np.flatnonzero(held)
    cands = pred.predict(reduced, products=prods, top_k=1)
    slot = {(int(p), int(a)): i for i, (p, a) in enumerate(zip(cands.product, cands.attribute))}
    rows = [slot[s] for s in truth if s in slot]
    conf = cands.prob[rows, 0].astype(np.float64)
    top = cands.candidate[rows, 0]
    correct = np.array([int(top[j]) in truth[(int(cands.product[i]), int(cands.attribute[i]))]
                        for j, i in enumerate(rows)], bool)
    ok = np.isfinite(conf)
    conf, correct, thr = conf[ok], correct[ok], cands.threshold[np.asarray(rows, np.int64)[ok]]
    accepted = conf >= thr
    blocks = block_check(pred.calibrator, conf, correct)
    over = [b for b in blocks if b["overstated"]]
    return {
        "confirmation_products": int(held.sum()), "slots_with_facts": len(truth), "graded": int(len(conf)),
        "ranked_share": len(rows) / len(truth) if truth else None,
        "ece": expected_calibration_error(conf, correct) if len(conf) else None,
        "top1_accuracy": float(correct.mean()) if len(conf) else None,
        "precision_at_threshold": float(correct[accepted].mean()) if accepted.any() else None,
        "coverage_at_threshold": float(accepted.mean()) if len(conf) else None,
        "blocks": len(blocks), "overstated_blocks": len(over),
        "predictions_in_overstated_blocks": int(sum(b["n"] for b in over)),
        "worst_overstatement": round(max((b["p"] - b["lower95"] for b in blocks if b["n"]), default=0.0), 4),
        "significantly_overstated_blocks": sum(b["above_upper95"] for b in blocks),
        "fit_blocks_over_lower_bound": sum(b["fit_p_over_lb"] for b in blocks),
        "block_table": blocks,
    }


def block_check(cal: Any, conf: np.ndarray, correct: np.ndarray, slack: float = 0.02) -> list[dict[str, Any]]:
    """Per block of the isotonic calibrator (its stated p is flat over the block; between blocks the map is
    linear, and those predictions form one group per gap): the confirmation accuracy, its one-sided 95%
    Clopper-Pearson lower and upper bounds; ``overstated`` when p > lower bound + ``slack`` (issue 14's
    rule), ``above_upper95`` when p exceeds even the upper bound (evidence of overstatement);
    ``fit_p_over_lb``: the block states more than its own fit-time lower bound + slack."""
    from scipy.stats import beta

    fit_blocks = getattr(cal, "blocks", None) or []
    tol = 1e-6  # stated probabilities travel as float32 (Candidates.prob): a block's p to within its precision
    ps = np.array([b["p"] for b in fit_blocks])
    out = []
    groups: list[tuple[str, np.ndarray, dict[str, Any] | None]] = []
    for b in fit_blocks:
        groups.append((f"{b['p']:.4f}", np.abs(conf - b["p"]) <= tol, b))
    for lo, hi in zip(ps[:-1], ps[1:]):
        groups.append((f"({lo:.4f}, {hi:.4f})", (conf > lo + tol) & (conf < hi - tol), None))
    if not fit_blocks:  # another calibrator: one group per distinct stated probability
        groups = [(f"{p:.4f}", conf == p, None) for p in np.unique(conf)]
    for name, m, fb in groups:
        n, k = int(m.sum()), int(correct[m].sum())
        if n == 0:
            continue
        p = float(conf[m].mean())
        lb = clopper_pearson_lower(k, n)
        ub = float(beta.ppf(0.95, k + 1, n - k)) if k < n else 1.0
        out.append({"block": name, "p": round(p, 4), "n": n, "accuracy": round(k / n, 4), "lower95": round(lb, 4),
                    "upper95": round(ub, 4), "overstated": bool(p > lb + slack), "above_upper95": bool(p > ub),
                    "fit_n": fb["n"] if fb else None,
                    "fit_p_over_lb": bool(fb is not None and fb["p"] > fb["lower_bound"] + slack)})
    return out


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def model_signature(settings: dict[str, Any]) -> dict[str, Any]:
    """What a 'model change' is: the committed tree of gnn/ and the settings. Refuses uncommitted model code."""
    dirty = _git("status", "--porcelain", "--", "gnn", "bench/bench_confirm.py")
    if dirty:
        raise SystemExit("bench_confirm: gnn/ or this script has uncommitted changes; the confirmation split scores "
                         "recorded model changes only -- commit first\n" + dirty)
    return {"gnn_tree": _git("rev-parse", "HEAD:gnn"), "script": _git("rev-parse", "HEAD:bench/bench_confirm.py"),
            "settings": settings}


def already_confirmed(signature: dict[str, Any], catalog: str, path: Path = RESULTS) -> str | None:
    if not path.exists():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("signature") == signature and any(c.get("catalog") == catalog for c in rec.get("catalogs", [])):
            return f"{rec.get('date')} (commit {rec.get('commit')})"
    return None


def run_catalog(name: str, work: Path, *, max_seconds: float, threads: int, log: Any = print) -> dict[str, Any]:
    from attrgraph.features import compute_text_features
    from bench.bench_catalogs import text_config, title_keys
    from gnn.completion import CompletionPredictor
    from gnn.snapshot import load_snapshot

    t0 = time.perf_counter()
    snap = load_snapshot(write_snapshot(read_products(CATALOGS[name], name), work / name, mapping_name=name))
    compute_text_features(snap, text_config(None, threads))
    held = confirmation_products(title_keys(snap))
    reduced = without_facts_of(snap, held)
    pred = CompletionPredictor.fit(reduced, model="gnn", model_kwargs={"max_seconds": max_seconds})
    v = pred.validation
    reported = {k: v.get(k) for k in ("ece", "precision_at_threshold", "coverage_at_threshold")}
    measured = grade(pred, snap, reduced, held)
    diff = {k: (None if reported[k] is None or measured[k] is None else round(measured[k] - reported[k], 4))
            for k in reported}
    out = {"catalog": name, "products": snap.num_nodes("product"), "valid_pairs": v.get("pairs"),
           "reported": reported, "measured": measured, "difference": diff,
           "within_0.01": {k: (None if d is None else abs(d) <= 0.01) for k, d in diff.items() if k != "coverage_at_threshold"},
           "fit_seconds": round(pred.fit_seconds, 1), "seconds": round(time.perf_counter() - t0, 1)}
    log(f"[{name}] reported ECE {reported['ece']:.4f} / precision@thr {reported['precision_at_threshold']:.4f}; "
        f"confirmation {measured['ece']:.4f} / {measured['precision_at_threshold'] or float('nan'):.4f} "
        f"({measured['graded']} facts); blocks over LB+0.02 {measured['overstated_blocks']} of {measured['blocks']}, "
        f"above the upper bound {measured['significantly_overstated_blocks']}")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalogs", nargs="+", default=list(CATALOGS), choices=list(CATALOGS))
    ap.add_argument("--max-seconds", type=float, default=240.0, help="the GNN's training budget (its default)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sig = model_signature({"model": "gnn", "max_seconds": args.max_seconds, "share": SHARE, "seed": CONFIRM_SEED})
    todo = []
    for c in args.catalogs:
        when = already_confirmed(sig, c)
        if when:
            print(f"[{c}] skipped: this model (gnn/ tree {sig['gnn_tree'][:10]}) was confirmed on it at {when}")
        else:
            todo.append(c)
    rec: dict[str, Any] = {"bench": "confirm", "commit": _git("rev-parse", "--short", "HEAD"), "signature": sig,
                           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": platform.node(), "catalogs": []}
    if not todo:
        return rec
    with tempfile.TemporaryDirectory() as tmp:
        for name in todo:
            rec["catalogs"].append(run_catalog(name, Path(tmp), max_seconds=args.max_seconds, threads=args.threads))
            with open(RESULTS, "a", encoding="utf-8") as fh:  # each catalog as soon as it is scored: never twice
                fh.write(json.dumps({**rec, "catalogs": [rec["catalogs"][-1]]}) + "\n")
    print(f"\n{'catalog':<10} {'ECE rep':>8} {'ECE conf':>8} {'prec rep':>8} {'prec conf':>9} {'cov rep':>8} {'cov conf':>8} {'overstated':>10}")
    for r in rec["catalogs"]:
        rp, m = r["reported"], r["measured"]

        def f(x: Any) -> str:
            return "-" if x is None else f"{x:.4f}"
        print(f"{r['catalog']:<10} {f(rp['ece']):>8} {f(m['ece']):>8} {f(rp['precision_at_threshold']):>8} "
              f"{f(m['precision_at_threshold']):>9} {f(rp['coverage_at_threshold']):>8} {f(m['coverage_at_threshold']):>8} "
              f"{m['predictions_in_overstated_blocks']:>5}/{m['graded']}")
    return rec


if __name__ == "__main__":
    main()
