"""How far above the TF-IDF baseline can a completion model get on the issue-4 protocol?

    python bench/bench_ceiling.py [--snapshot DIR] [--seed 0] [--top1 bench/out/<run>/top1.npz ...]
                                  [--fractions 0.125,0.25,0.5,1] [--threads 2] [--sample 25]

Three measurements on the same seeded split as bench_completion.py (the same test pairs):

1. Learning curve: the TF-IDF baseline fitted on a seeded random share of the training *products*
   (all their training facts), graded on the validation pairs (``--curve-on``: a curve that steers
   design choices must not read the test pairs), overall and on the value-not-in-text
   subset; the error ``e(n) = e_inf + b * n^-c`` fitted to the points and read at 2x and 4x the
   training facts and at infinitely many (the model family's asymptote on this text).
2. Oracle over methods (with ``--top1``, the per-pair answers bench_completion.py saves): the share of
   test pairs where *at least one* method puts a true value first -- an optimistic ceiling for any
   selection among or ensemble of those models -- over all of them and over the strong ones (within
   ``--strong`` of the best: a weak model right where the strong ones fail is mostly a different lucky
   guess); the consensus errors, where every strong method gives the same wrong value, and a seeded
   sample of those to read.
3. Confusions: the most frequent (true value, predicted value) pairs among the errors of the best
   method, with the share of all its errors they make.

Prints Markdown; appends the figures to bench/results/ceiling.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def _subsample_train(split: Any, fraction: float, seed: int) -> Any:
    """The split with the training facts of all but a seeded ``fraction`` of the training products
    moved out of ``train`` (into the unused ``cold`` code: no baseline fits on it); valid/test unchanged."""
    import numpy as np

    from gnn.protocol import COLD, TRAIN

    if fraction >= 1.0:
        return split
    tr = split.split == TRAIN
    prods = np.unique(split.product[tr])
    rng = np.random.default_rng(seed)
    keep = rng.choice(prods, size=max(1, int(round(fraction * len(prods)))), replace=False)
    s = split.split.copy()
    s[tr & ~np.isin(split.product, keep)] = COLD
    return replace(split, split=s)


def _asymptote(n: list[float], err: list[float]) -> dict[str, float]:
    """Fit ``err = e_inf + b * n^-c`` (e_inf >= 0, b >= 0, 0 < c <= 2); read it at 2x, 4x, infinity."""
    import numpy as np
    from scipy.optimize import curve_fit

    x, y = np.asarray(n, float), np.asarray(err, float)
    x0 = x / x.max()
    try:
        (e_inf, b, c), _ = curve_fit(lambda t, e, b, c: e + b * t ** -c, x0, y, p0=[y.min() / 2, y.min() / 2, 0.5],
                                     bounds=([0, 0, 1e-3], [1, 1, 2]), maxfev=20000)
    except (RuntimeError, ValueError):
        return {"e_inf": float("nan"), "b": float("nan"), "c": float("nan"),
                "hits1_at_2x": float("nan"), "hits1_at_4x": float("nan"), "hits1_at_inf": float("nan")}
    f = lambda t: e_inf + b * t ** -c  # noqa: E731
    return {"e_inf": float(e_inf), "b": float(b), "c": float(c), "hits1_at_2x": float(1 - f(2.0)),
            "hits1_at_4x": float(1 - f(4.0)), "hits1_at_inf": float(1 - e_inf)}


def _value_name(snap: Any, split: Any, attribute: int, local: int) -> str:
    node = int(split.candidates(attribute)[local])
    if attribute == split.brand_attribute:
        return str(snap.nodes["brand"][node].get("name"))
    return str(snap.nodes["value"][node].get("value"))


def main() -> None:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from bench._neo4j import git_commit
    from graph.settings import attrgraph_home
    from gnn.baselines import get_baseline
    from gnn.metrics import evaluate
    from gnn.protocol import make_split, product_texts, value_in_text
    from gnn.snapshot import load_snapshot

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", type=Path, default=attrgraph_home() / "snapshots" / "current")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold-share", type=float, default=0.05)
    ap.add_argument("--fractions", default="0.125,0.25,0.5,1", help="shares of the training products ('' skips the curve)")
    ap.add_argument("--curve-on", choices=["valid", "test"], default="valid",
                    help="the pairs the learning curve is graded on (valid: design decisions never read test)")
    ap.add_argument("--top1", type=Path, nargs="*", default=[],
                    help="top1.npz files of bench_completion.py runs on the same snapshot and seed (methods merged)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample", type=int, default=25, help="consensus errors printed")
    ap.add_argument("--strong", type=float, default=0.02, help="methods within this much Hits@1 of the best are 'strong'")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    threadpool_limits(args.threads)

    snap = load_snapshot(args.snapshot)
    split = make_split(snap, seed=args.seed, cold_share=args.cold_share)
    test = split.pairs("test")
    texts = product_texts(snap)
    in_text = np.zeros(split.num_pairs, bool)
    in_text[test] = value_in_text(snap, split, test, texts)
    curve_pairs = split.pairs(args.curve_on)
    if args.curve_on != "test":
        in_text[curve_pairs] = value_in_text(snap, split, curve_pairs, texts)
    rec: dict[str, Any] = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
                           "snapshot": str(args.snapshot), "fingerprint": snap.fingerprint, "seed": args.seed,
                           "test_pairs": int(len(test))}
    print(f"# Ceiling of the completion protocol\n\nsnapshot {args.snapshot} ({snap.num_nodes('product')} products, "
          f"fingerprint {snap.fingerprint[:12]}), seed {args.seed}: {len(test)} test pairs, "
          f"{int((~in_text[test]).sum())} with the value not in the text.\n")

    # 1. learning curve of the TF-IDF baseline
    fractions = [float(f) for f in args.fractions.split(",") if f]
    if fractions:
        kw = {"n_bins": 15, "target_precision": 0.98}
        rows = []
        for f in fractions:
            sp = _subsample_train(split, f, args.seed)
            n_train = int((sp.split == 0).sum())
            t = time.perf_counter()
            s = get_baseline("tfidf", n_jobs=args.threads).fit(snap, sp, on=("train",)).score(curve_pairs)
            fit_s = time.perf_counter() - t
            h = evaluate(s, per_attribute=False, **kw)["hits@1"]
            h_nt = evaluate(s.subset(~in_text), per_attribute=False, **kw)["hits@1"]
            rows.append({"fraction": f, "train_pairs": n_train, "hits@1": h, "hits@1_not_in_text": h_nt,
                         "seconds": round(fit_s, 1)})
            print(f"  tfidf on {f:g} of the training products ({n_train} pairs): Hits@1 {h:.4f}, ¬text {h_nt:.4f} "
                  f"({fit_s:.0f} s)", flush=True)
        n = [r["train_pairs"] for r in rows]
        fit = _asymptote(n, [1 - r["hits@1"] for r in rows]) if len(rows) >= 3 else {}
        fit_nt = _asymptote(n, [1 - r["hits@1_not_in_text"] for r in rows]) if len(rows) >= 3 else {}
        rec["learning_curve"] = {"graded_on": args.curve_on, "pairs": int(len(curve_pairs)), "points": rows, "fit": fit,
                                 "fit_not_in_text": fit_nt}
        print(f"\n## Learning curve of the TF-IDF baseline ({len(curve_pairs)} {args.curve_on} pairs)\n")
        print("| share of training products | training pairs | Hits@1 | ¬text Hits@1 | fit s |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['fraction']:g} | {r['train_pairs']} | {r['hits@1']:.4f} | {r['hits@1_not_in_text']:.4f} | {r['seconds']} |")
        if fit:
            print(f"\nfitted e(n) = e_inf + b (n/n_max)^-c: overall Hits@1 at 2x the training facts "
                  f"{fit['hits1_at_2x']:.4f}, at 4x {fit['hits1_at_4x']:.4f}, asymptote {fit['hits1_at_inf']:.4f} "
                  f"(c = {fit['c']:.2f}); ¬text at 2x {fit_nt['hits1_at_2x']:.4f}, 4x {fit_nt['hits1_at_4x']:.4f}, "
                  f"asymptote {fit_nt['hits1_at_inf']:.4f}")

    # 2. oracle over the methods of a bench_completion run, consensus errors; 3. confusions
    if args.top1:
        answers: dict[str, tuple[Any, Any, Any]] = {}
        for path in args.top1:
            z = np.load(path)
            if str(z["fingerprint"]) != snap.fingerprint or int(z["seed"]) != args.seed:
                raise SystemExit(f"{path}: answers of another snapshot or seed (fingerprint {str(z['fingerprint'])[:12]}, "
                                 f"seed {int(z['seed'])}); run bench_completion.py on {args.snapshot} with --seed {args.seed}")
            for m in (str(m) for m in z["methods"]):
                answers.setdefault(m, (z[f"{m}.pairs"], z[f"{m}.choice"], z[f"{m}.correct"]))
        methods = list(answers)
        choice = np.full((len(methods), split.num_pairs), -1, np.int64)
        correct = np.zeros((len(methods), split.num_pairs), bool)
        for i, m in enumerate(methods):
            pairs, ch, ok = answers[m]
            choice[i, pairs], correct[i, pairs] = ch, ok
        graded = test[(choice[:, test] >= 0).all(0)]
        C, K = choice[:, graded], correct[:, graded]
        nt = ~in_text[graded]
        hits = {m: float(K[i].mean()) for i, m in enumerate(methods)}
        best = max(hits, key=hits.get)
        b = methods.index(best)
        oracle = K.any(0)
        # the strong methods (within --strong points of the best): a weak one right where they all fail is
        # mostly a lucky different guess (majority, kge), not a model worth selecting
        strong = [i for i, m in enumerate(methods) if hits[m] >= hits[best] - args.strong]
        Ks, Cs = K[strong], C[strong]
        oracle_s = Ks.any(0)
        consensus = (Cs == Cs[:1]).all(0) & ~oracle_s
        rec["oracle"] = {"methods": methods, "pairs": int(len(graded)), "hits@1": hits, "best": best,
                         "oracle_hits@1": float(oracle.mean()), "oracle_hits@1_not_in_text": float(oracle[nt].mean()),
                         "strong": [methods[i] for i in strong], "strong_oracle_hits@1": float(oracle_s.mean()),
                         "strong_oracle_hits@1_not_in_text": float(oracle_s[nt].mean()),
                         "consensus_errors": int(consensus.sum()), "consensus_error_share": float(consensus.mean()),
                         "best_errors_fixed_by_another": float((oracle_s & ~K[b]).sum() / max(1, (~K[b]).sum()))}
        pairwise = {}
        for i, m in enumerate(methods):
            if i != b:
                pairwise[m] = float((K[b] | K[i]).mean())
        rec["oracle"]["best_or_one_other"] = pairwise
        print(f"\n## Oracle over {', '.join(methods)} ({len(graded)} test pairs)\n")
        print("| method | Hits@1 | ¬text Hits@1 |\n|---|---|---|")
        for i, m in enumerate(methods):
            print(f"| {m} | {K[i].mean():.4f} | {K[i][nt].mean():.4f} |")
        print(f"| any of them right (oracle) | {oracle.mean():.4f} | {oracle[nt].mean():.4f} |")
        print(f"| any strong one right ({', '.join(methods[i] for i in strong)}) | {oracle_s.mean():.4f} | "
              f"{oracle_s[nt].mean():.4f} |")
        for m, v in pairwise.items():
            print(f"| {best} or {m} right | {v:.4f} | {(K[b] | K[methods.index(m)])[nt].mean():.4f} |")
        print(f"\nconsensus errors (every strong method the same wrong value): {int(consensus.sum())} = "
              f"{consensus.mean():.4f} of the pairs, {consensus.sum() / max(1, (~K[b]).sum()):.1%} of {best}'s errors; "
              f"another strong method is right on {rec['oracle']['best_errors_fixed_by_another']:.1%} of {best}'s errors")
        rng = np.random.default_rng(args.seed)
        idx = np.flatnonzero(consensus)
        sample = rng.choice(idx, size=min(args.sample, len(idx)), replace=False) if len(idx) else idx
        print(f"\n### {len(sample)} consensus errors drawn at random (seed {args.seed})\n")
        print("| product | title | attribute | asserted | every strong method says |\n|---|---|---|---|---|")
        shown = []
        for j in sorted(sample.tolist()):
            p = int(graded[j])
            a = int(split.attribute[p])
            truth = ", ".join(_value_name(snap, split, a, int(t)) for t in split.local(a, split.values_of(p)))
            rowp = snap.nodes["product"][int(split.product[p])]
            title = " ".join(str(rowp.get("title") or "").split())[:70].replace("|", "/")
            said = _value_name(snap, split, a, int(Cs[0, j]))
            shown.append({"product": rowp.get("key"), "attribute": split.attribute_names[a], "asserted": truth, "predicted": said})
            print(f"| {rowp.get('key')} | {title} | {split.attribute_names[a]} | {truth} | {said} |")
        rec["oracle"]["consensus_sample"] = shown
        # confusions of the best method
        errs = np.flatnonzero(~K[b])
        conf: Counter[tuple[str, str, str]] = Counter()
        for j in errs.tolist():
            p = int(graded[j])
            a = int(split.attribute[p])
            t0 = int(split.local(a, split.values_of(p))[0])
            conf[(split.attribute_names[a], _value_name(snap, split, a, t0), _value_name(snap, split, a, int(C[b, j])))] += 1
        top = conf.most_common(20)
        print(f"\n## The 20 most frequent confusions of {best} ({len(errs)} errors)\n")
        print("| attribute | asserted | predicted | errors | share of all errors |\n|---|---|---|---|---|")
        for (a, t, p_), c in top:
            print(f"| {a} | {t} | {p_} | {c} | {c / max(1, len(errs)):.1%} |")
        rec["confusions"] = {"method": best, "errors": int(len(errs)),
                             "top": [{"attribute": a, "asserted": t, "predicted": p_, "count": c} for (a, t, p_), c in top],
                             "top20_share": float(sum(c for _, c in top) / max(1, len(errs)))}
        print(f"\nthe 20 make {rec['confusions']['top20_share']:.1%} of {best}'s errors")

    out = ROOT / "bench" / "results" / "ceiling.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, default=float) + "\n")
    print(f"\nfigures appended to {out}")


if __name__ == "__main__":
    main()
