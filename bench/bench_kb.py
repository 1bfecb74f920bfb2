"""kb.validate benchmark: a million predictions against a synthetic catalog, vectorised vs a naive loop.

    python bench/bench_kb.py [--products 100000] [--predictions 1000000] [--naive-rows 20000] [--seed 0]

Builds a synthetic catalog (a 3-level category tree, brands, ~8 facts per product, measures in g) and
a rule set using every rule type (the shipped default rules plus declared ones), then times:

- ``kb.Context(...)``: compiling the rules against the catalog (once per catalog);
- ``kb.validate(predictions, ctx)`` on all predictions (strings in, verdicts out; best of 3);
- a naive baseline: the same rules written as a plain per-prediction Python loop over dicts and sets
  (its indexes built beforehand, not timed), on the first ``--naive-rows`` predictions.

Both run in this process; the ratio is of rows per second. The naive verdicts must equal kb's on the
rows they share (printed as ``agree``). Appends the figures to bench/results/kb.jsonl.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kb  # noqa: E402
from bench._neo4j import git_commit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "kb.jsonl"
N_ATTR = 24
SEV = {"review": 1, "reject": 2}


def synthetic_catalog(n_products: int, seed: int) -> kb.Catalog:
    rng = np.random.default_rng(seed)
    roots = [f"R{i}" for i in range(5)]
    mids = [f"{r} > M{j}" for r in roots for j in range(6)]
    leaves = [f"{m} > L{k}" for m in mids for k in range(8)]
    n_values = rng.integers(4, 40, N_ATTR)
    leaf_attrs = [rng.choice(N_ATTR, 10, replace=False) for _ in leaves]
    leaf_of = rng.integers(0, len(leaves), n_products)
    brand_root = rng.integers(0, len(roots), 3000)  # a brand mostly sells under one root
    b = kb.CatalogBuilder()
    for p in range(n_products):
        br = int(rng.integers(0, 3000))
        if roots[brand_root[br]] != leaves[leaf_of[p]].split(" > ")[0] and rng.random() < 0.9:
            br = int(rng.choice(np.flatnonzero(brand_root == roots.index(leaves[leaf_of[p]].split(" > ")[0]))))
        b.add_product(f"p{p}", leaves[leaf_of[p]], f"brand{br}")
        attrs = leaf_attrs[leaf_of[p]]
        for a in attrs[: rng.integers(5, 10)]:
            if a == 0:
                b.add_fact(f"p{p}", "weight", None, norm=f"{int(rng.integers(50, 2000))} g")
            else:
                b.add_fact(f"p{p}", f"attr{a}", f"v{int(rng.integers(0, n_values[a]))}")
    return b.build()


def bench_rules() -> kb.RuleSet:
    rs = kb.load_rules("default")
    rs.add("domain", id="values", attribute="attr1", values=[f"v{i}" for i in range(5)])
    rs.add("domain", id="pattern", attribute="attr2", pattern="v[0-9]")
    rs.add("exclusion", id="excl", if_={"attribute": "attr3", "value": "v1"}, then={"attribute": "attr4", "values": ["v1", "v2"]})
    rs.add("implication", id="cat-impl", if_={"category": "R1"}, then={"attribute": "attr5", "values": ["v1", "v2", "v3"]})
    rs.add("implication", id="fact-impl", if_={"attribute": "attr6", "value": "v1"}, then={"attribute": "attr7", "value": "v1"})
    rs.add("cardinality", id="one", attribute="attr8")
    rs.add("applicability", id="decl", default="applies",
           categories={"R0": {"not_applies": ["attr9"]}, "R0 > M0": {"applies": ["attr9"]}})
    rs.add("numeric", id="weight", attribute="weight", unit="g", ranges=[{"min": 1, "max": 5000}, {"category": "R2", "max": 1000}])
    return rs


def synthetic_predictions(cat: kb.Catalog, n: int, seed: int) -> kb.Predictions:
    rng = np.random.default_rng(seed + 1)
    prod = rng.integers(0, len(cat), n)
    attr = np.array([f"attr{i}" for i in range(N_ATTR)], dtype=object)[rng.integers(0, N_ATTR, n)]
    attr[attr == "attr0"] = "weight"
    val = np.array([f"v{i}" for i in range(45)], dtype=object)[rng.integers(0, 45, n)]
    w = attr == "weight"
    grams = rng.choice(np.array([1, 10, 100, 500, 900, 1500, 3000, 20000, 200000]), w.sum())
    val[w] = [f"{g} g" for g in grams]
    val[w & (rng.random(n) < 0.05)] = "300 ml"
    br = rng.random(n) < 0.02
    attr[br] = kb.BRAND_ATTRIBUTE
    val[br] = np.array([f"brand{i}" for i in range(3100)], dtype=object)[rng.integers(0, 3100, br.sum())]
    ids = cat.product_ids[prod].copy()
    ids[rng.random(n) < 0.001] = "no-such-product"
    return kb.Predictions.from_arrays(ids, attr, val, rng.random(n).astype(np.float32), normalized=True)


# -- the naive baseline: the same rules, one prediction at a time ----------------------------------
class Naive:
    """Plain Python over dicts and sets; the learned parts computed the same way kb defines them."""

    def __init__(self, cat: kb.Catalog, rules: kb.RuleSet):
        self.rules = rules
        C = cat.categories
        self.path = {c: [] for c in C}
        for i, c in enumerate(C):
            n = i
            while n >= 0:
                self.path[c].append(C[n])
                n = int(cat.category_parent[n])
        self.product = {}
        self.facts: dict[str, dict[str, set[str]]] = {}
        for i, pid in enumerate(cat.product_ids.tolist()):
            c = int(cat.product_category[i])
            b = int(cat.product_brand[i])
            self.product[pid] = (C[c] if c >= 0 else None, cat.brands[b] if b >= 0 else None)
            self.facts[pid] = defaultdict(set)
        self.count = Counter()
        self.measure = {}
        for p, v in zip(cat.fact_product.tolist(), cat.fact_value.tolist()):
            pid, a, n = cat.product_ids[p], cat.attributes[cat.value_attribute[v]], cat.value_norm[v]
            self.facts[pid][a].add(n)
            self.count[(a, n)] += 1
            if not np.isnan(cat.value_quantity[v]):
                self.measure[(a, n)] = (float(cat.value_quantity[v]), kb.units.UNITS[cat.value_unit[v]])
        self.sub = Counter()
        self.sub_attr = Counter()
        self.brand_part = Counter()
        self.brand_total = Counter()
        self.qty: dict[tuple[str, str], list[float]] = defaultdict(list)  # (node, attr) -> quantities
        unit_counts: dict[str, Counter] = defaultdict(Counter)
        for (a, n), (q, u) in self.measure.items():
            unit_counts[a][u] += self.count[(a, n)]
        self.unit = {a: min(c, key=lambda u: (-c[u], kb.units.UNITS.index(u))) for a, c in unit_counts.items()}
        for pid, (c, b) in self.product.items():
            for node in self.path.get(c, []):
                self.sub[node] += 1
                for a, ns in self.facts[pid].items():
                    self.sub_attr[(node, a)] += 1
                    for n in ns:
                        m = self.measure.get((a, n))
                        if m and m[1] == self.unit[a]:
                            self.qty[(node, a)].append(m[0])
            if b is not None:
                self.brand_total[b] += 1
                if c is not None:
                    self.brand_part[(b, c.split(" > ")[0])] += 1
        having = Counter(a for fs in self.facts.values() for a in fs)
        single = Counter(a for fs in self.facts.values() for a, ns in fs.items() if len(ns) <= 1)
        self.functional = {a for a in having if having[a] >= 20 and single[a] / having[a] >= 0.98}
        self.ranges: dict[tuple[str, str], tuple[float, float] | None] = {}

    def learned_range(self, path: list[str], a: str) -> tuple[float, float] | None:
        for node in path:
            qs = self.qty.get((node, a), [])
            if len(qs) >= 20:
                key = (node, a)
                if key not in self.ranges:
                    lo, hi = np.quantile(qs, [0.05, 0.95])
                    self.ranges[key] = (lo / 10 if lo > 0 else lo * 10, hi * 10 if hi > 0 else hi / 10)
                return self.ranges[key]
        return None

    def status(self, pid: str, a: str, n: str) -> int:
        if pid not in self.product:
            return 2
        c, brand = self.product[pid]
        path = self.path.get(c, [])
        facts = self.facts[pid]
        worst = 0

        def fire(rule_id: str) -> None:
            nonlocal worst
            worst = max(worst, SEV[self.rules[rule_id].severity])

        if a == kb.BRAND_ATTRIBUTE:
            total = self.brand_total.get(n, 0)
            if n not in self.brand_total or (total >= 5 and self.brand_part.get((n, path[-1]), 0) < 1):
                fire("brand-category")
            return worst
        m = self.measure.get((a, n))
        if m is None:
            q = kb.units.parse_canonical(n)
            m = q if q else None
        if self.count.get((a, n), 0) < 1:
            fire("known-value")
        for node in path:  # applicability, learned
            total, k = self.sub[node], self.sub_attr.get((node, a), 0)
            if total <= 0:
                continue
            if k >= 3 and k / total >= 0.02:
                break
            if total >= 20:
                fire("applicability")
                break
        if a in self.functional and len(facts.get(a, ())) >= 1 and n not in facts[a]:
            fire("functional")
        if m is not None:  # numeric sanity, learned
            if a in self.unit and m[1] != self.unit[a]:
                fire("numeric-sanity")
            elif a in self.unit:
                r = self.learned_range(path, a)
                if r and not r[0] <= m[0] <= r[1]:
                    fire("numeric-sanity")
        if a == "attr1" and n not in {f"v{i}" for i in range(5)}:
            fire("values")
        if a == "attr2" and not re.fullmatch("v[0-9]", n, re.I):
            fire("pattern")
        if (a == "attr4" and n in ("v1", "v2") and "v1" in facts.get("attr3", ())) or \
                (a == "attr3" and n == "v1" and facts.get("attr4", set()) & {"v1", "v2"}):
            fire("excl")
        if a == "attr5" and "R1" in path and n not in ("v1", "v2", "v3"):
            fire("cat-impl")
        if (a == "attr7" and n != "v1" and "v1" in facts.get("attr6", ())) or \
                (a == "attr6" and n == "v1" and facts.get("attr7", set()) - {"v1"}):
            fire("fact-impl")
        if a == "attr8" and len(facts.get("attr8", ())) >= 1 and n not in facts["attr8"]:
            fire("one")
        if a == "attr9" and "R0" in path and "R0 > M0" not in path:
            fire("decl")
        if a == "weight" and m is not None:
            hi = 1000 if "R2" in path else 5000
            if m[1] != "g" or not 1 <= m[0] <= hi:
                fire("weight")
        return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--predictions", type=int, default=1_000_000)
    ap.add_argument("--naive-rows", type=int, default=20_000)
    ap.add_argument("--per-call-rows", type=int, default=300,
                    help="also time kb.validate called once per prediction on this many rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true", help="do not append to bench/results/kb.jsonl")
    args = ap.parse_args()

    t = time.perf_counter()
    cat = synthetic_catalog(args.products, args.seed)
    t_cat = time.perf_counter() - t
    rules = bench_rules()
    preds = synthetic_predictions(cat, args.predictions, args.seed)
    s = cat.summary()
    print(f"catalog: {s.products} products, {s.facts} facts, {s.categories} categories, {s.brands} brands "
          f"(built in {t_cat:.1f} s); {len(rules)} rules of {len({r.type for r in rules})} types")

    t = time.perf_counter()
    ctx = kb.Context(cat, rules)
    t_ctx = time.perf_counter() - t
    times = []
    for _ in range(3):
        t = time.perf_counter()
        verdicts = kb.validate(preds, ctx)
        times.append(time.perf_counter() - t)
    t_val = min(times)
    t = time.perf_counter()
    rows = ctx.rows_for(preds)
    t_intern = time.perf_counter() - t
    t = time.perf_counter()
    ctx.judge(rows)
    t_judge = time.perf_counter() - t
    fired = verdicts.rule_counts()
    print(f"context (compile rules): {t_ctx:.2f} s")
    print(f"validate {len(preds):,} predictions: {t_val:.2f} s (best of 3: {', '.join(f'{x:.2f}' for x in times)}) "
          f"= {len(preds) / t_val:,.0f} rows/s; interning {t_intern:.2f} s, rules {t_judge:.2f} s")
    print(f"verdicts: {verdicts.counts()}")
    print("violations per rule: " + ", ".join(f"{k}={v}" for k, v in fired.items()))

    t = time.perf_counter()
    naive = Naive(cat, rules)
    t_prep = time.perf_counter() - t
    m = min(args.naive_rows, len(preds))
    P, A, V = preds.product.tolist()[:m], preds.attribute.tolist()[:m], preds.value.tolist()[:m]
    t = time.perf_counter()
    naive_status = [naive.status(p, a, v) for p, a, v in zip(P, A, V)]
    t_naive = time.perf_counter() - t
    agree = bool(np.array_equal(np.array(naive_status, np.int8), verdicts.status[:m]))
    if not agree:
        bad = np.flatnonzero(np.array(naive_status) != verdicts.status[:m])[:5]
        for i in bad:
            print("  disagree:", P[i], A[i], V[i], naive_status[i], verdicts[int(i)])
    k = min(args.per_call_rows, len(preds))
    t = time.perf_counter()
    for i in range(k):
        one = kb.Predictions(preds.product[i:i + 1], preds.attribute[i:i + 1], preds.value[i:i + 1],
                             preds.score[i:i + 1], preds.rank[i:i + 1])
        kb.validate(one, ctx)
    t_call = time.perf_counter() - t
    call_rate = k / t_call
    vec_rate, naive_rate = len(preds) / t_val, m / t_naive
    print(f"naive loop on {m:,} predictions: {t_naive:.2f} s = {naive_rate:,.0f} rows/s "
          f"(its indexes built in {t_prep:.1f} s, not counted); agree with kb: {agree}")
    print(f"ratio vectorised / naive (rows per second): {vec_rate / naive_rate:.1f}x; a million predictions "
          f"would take the naive loop ~{1_000_000 / naive_rate:.1f} s, kb {1_000_000 / vec_rate:.1f} s")
    print(f"kb.validate called once per prediction ({k} rows): {call_rate:,.0f} rows/s; "
          f"ratio batched / per call: {vec_rate / call_rate:,.0f}x")

    out = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
        "python": platform.python_version(), "numpy": np.__version__, "cpus": len(__import__("os").sched_getaffinity(0)),
        "catalog": {"products": s.products, "facts": s.facts, "categories": s.categories, "brands": s.brands},
        "rules": len(rules), "rule_types": sorted({r.type for r in rules}),
        "predictions": len(preds), "context_seconds": round(t_ctx, 3),
        "validate_seconds": round(t_val, 3), "validate_runs": [round(x, 3) for x in times],
        "intern_seconds": round(t_intern, 3), "rules_seconds": round(t_judge, 3),
        "rows_per_s": round(vec_rate), "verdicts": verdicts.counts(),
        "naive": {"rows": m, "seconds": round(t_naive, 3), "rows_per_s": round(naive_rate), "agree": agree},
        "ratio_vectorised_vs_naive": round(vec_rate / naive_rate, 1),
        "per_call": {"rows": k, "seconds": round(t_call, 3), "rows_per_s": round(call_rate)},
        "ratio_batched_vs_per_call": round(vec_rate / call_rate),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(out) + "\n")
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
