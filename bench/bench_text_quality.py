"""Does a text encoder lose accuracy? Attribute prediction from the text embedding alone, per encoder.

    python bench/bench_text_quality.py [--catalogs myntra,bigbasket,taobao] [--encoders minilm,static,char-svd]
                                       [--max-products 6000] [--seed 0] [--threads 1]

For each catalog (read from its file through the ingest readers and mapping, no database), a seeded
subsample of at most ``--max-products`` products (smallest SHA-1 of seed + product id) is split by
another hash of the id into 80% train, 10% validation and 10% left unused. Product text is what
``attrgraph features`` encodes (``gnn.text.product_text``: title + description, HTML stripped,
capped at 1,000 characters). Attributes: brand, the whole category path, and every fact attribute
present on at least ``--min-coverage`` of the products whose values look categorical (at most half
as many distinct values as products having it), the ``--max-attributes`` most frequent; brand,
category and (Taobao) product type whenever ``--min-coverage`` of the products have one, however
many values they have.

Per attribute and encoder: standardised embeddings -> sklearn ``LogisticRegression`` (multinomial,
C=1, 300 iterations, the same fixed settings for every encoder: nothing is tuned on the validation
part) fitted on the train products (one row per value; values of fewer than ``--min-class-count``
train products are no class), then Hits@1 on the validation products having the attribute
(the top class is one of the product's values; a value never seen in training is a miss). The
majority value of the train part is the floor. ``char-svd`` is fitted on the train texts only;
``static-mean`` is ``static`` with ``head_weight=0`` (no title share: model2vec's plain mean).
Embeddings go through the usual SQLite cache ($ATTRGRAPH_HOME/cache/text-embeddings.sqlite), so a
rerun does not re-encode (``--no-cache`` for a throwaway one). Prints a table and appends one line
per catalog to bench/results/text_quality.jsonl.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
import warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._catalog import CATALOGS, read_products, text_of  # noqa: E402
from bench._neo4j import git_commit  # noqa: E402
from gnn.text import CharNgramSvdEncoder, EmbeddingCache, get_encoder  # noqa: E402
from graph.settings import attrgraph_home  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _h(*parts: object) -> int:
    return int(hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def labels_of(p) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    if p.brand is not None:
        out["brand"] = {p.brand.norm}
    if p.category:
        out["category"] = {" > ".join(p.category)}
    for attr, v in p.facts:
        out.setdefault(attr, set()).add(v.norm)
    return out


ALWAYS = ("brand", "category", "product type")  # the attributes each catalog is about (Taobao: product type)


def choose_attributes(labels: list[dict[str, set[str]]], min_coverage: float, max_attributes: int) -> list[str]:
    have: Counter = Counter()
    values: dict[str, set[str]] = {}
    for lab in labels:
        for a, vs in lab.items():
            have[a] += 1
            values.setdefault(a, set()).update(vs)
    ok = [a for a, n in have.items() if n >= min_coverage * len(labels) and len(values[a]) >= 2
          and (a in ALWAYS or len(values[a]) <= 0.5 * n)]
    fixed = [a for a in ALWAYS if a in ok]
    rest = sorted((a for a in ok if a not in fixed), key=lambda a: (-have[a], a))
    return fixed + rest[: max(0, max_attributes - len(fixed))]


def hits_at_1(X: np.ndarray, labels: list[dict[str, set[str]]], train: np.ndarray, valid: np.ndarray,
              attr: str, min_class_count: int = 2) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    counts = Counter(v for i in train for v in labels[i].get(attr, ()))
    rows, ys = [], []
    for i in train:
        for v in sorted(labels[i].get(attr, ())):
            if counts[v] >= min_class_count:
                rows.append(i)
                ys.append(v)
    val = [i for i in valid if attr in labels[i]]
    if len(set(ys)) < 2 or not val:
        return {}
    scaler = StandardScaler().fit(X[rows])
    clf = LogisticRegression(C=1.0, max_iter=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the same iteration budget for every encoder
        clf.fit(scaler.transform(X[rows]), ys)
    top = clf.classes_[clf.predict_proba(scaler.transform(X[val])).argmax(1)]
    return {"hits1": float(np.mean([t in labels[i][attr] for t, i in zip(top, val)]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalogs", default="myntra,bigbasket,taobao")
    ap.add_argument("--encoders", default="minilm,static,static-mean,char-svd",
                    help="registry names; static-mean: static with head_weight=0 (model2vec's plain mean)")
    ap.add_argument("--model-path", default=None, help="local HF model directory (minilm and static)")
    ap.add_argument("--max-products", type=int, default=6000)
    ap.add_argument("--min-coverage", type=float, default=0.2)
    ap.add_argument("--max-attributes", type=int, default=10)
    ap.add_argument("--min-class-count", type=int, default=2,
                    help="values with fewer train products are not classes (keeps thousands of one-off brands out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-cache", action="store_true", help="a throwaway embedding cache")
    ap.add_argument("--no-save", action="store_true", help="print only, do not append to bench/results")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    tmp = tempfile.TemporaryDirectory()
    cache = EmbeddingCache(Path(tmp.name) / "cache.sqlite" if args.no_cache
                           else attrgraph_home() / "cache" / "text-embeddings.sqlite")
    made = {}
    for name in encoders:
        if name in ("minilm", "static"):
            made[name] = get_encoder(name, model_path=args.model_path, threads=args.threads)
        elif name == "static-mean":
            made[name] = get_encoder("static", model_path=args.model_path, threads=args.threads, head_weight=0.0)
    table = []
    for cat in [c.strip() for c in args.catalogs.split(",") if c.strip()]:
        prods = read_products(CATALOGS[cat], cat)
        prods = sorted(prods, key=lambda p: _h("sample", args.seed, p.id))[: args.max_products]
        prods.sort(key=lambda p: p.id)
        bucket = np.array([_h("split", args.seed, p.id) % 100 for p in prods])
        train, valid = np.flatnonzero(bucket < 80), np.flatnonzero((bucket >= 80) & (bucket < 90))
        texts = [text_of(p) for p in prods]
        labels = [labels_of(p) for p in prods]
        attrs = choose_attributes(labels, args.min_coverage, args.max_attributes)
        rec = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
               "catalog": cat, "products": len(prods), "train": len(train), "valid": len(valid), "seed": args.seed,
               "encoders": {}, "attributes": {}}
        emb = {}
        for name in encoders:
            t0 = time.perf_counter()
            if name == "char-svd":
                enc = CharNgramSvdEncoder(dim=256, seed=args.seed).fit([texts[i] for i in train])
            else:
                enc = made.get(name) or get_encoder(name)
            misses = cache.misses
            emb[name] = cache.encode(enc, texts)
            rec["encoders"][name] = {"version": enc.version, "dim": enc.dim, "encoded": cache.misses - misses,
                                     "seconds": round(time.perf_counter() - t0, 1)}
            print(f"{cat}: {name} {rec['encoders'][name]}", file=sys.stderr, flush=True)
        for a in attrs:
            have_train = [i for i in train if a in labels[i]]
            vals = Counter(v for i in have_train for v in labels[i][a])
            val = [i for i in valid if a in labels[i]]
            major = vals.most_common(1)[0][0]
            row = {"train": len(have_train), "valid": len(val), "values": len(vals),
                   "classes": sum(1 for n in vals.values() if n >= args.min_class_count),
                   "majority": float(np.mean([major in labels[i][a] for i in val])) if val else None}
            for name in encoders:
                t0 = time.perf_counter()
                row[name] = hits_at_1(emb[name], labels, train, valid, a, args.min_class_count).get("hits1")
                print(f"{cat}/{a}: {name} {row[name]} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
            rec["attributes"][a] = row
        means = {k: float(np.mean([r[k] for r in rec["attributes"].values() if r.get(k) is not None]))
                 for k in ["majority", *encoders] if rec["attributes"]}
        rec["mean_hits1"] = means
        table.append(rec)
        if not args.no_save:
            with open(ROOT / "bench" / "results" / "text_quality.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
    cache.close()
    tmp.cleanup()
    cols = ["majority", *encoders]
    print("\nHits@1 on the validation part (10%), LogisticRegression on the embeddings of the train part (80%)\n")
    print(f"| catalog | attribute | train | valid | classes | {' | '.join(cols)} |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(cols))
    for rec in table:
        for a, r in rec["attributes"].items():
            cells = " | ".join("—" if r.get(c) is None else f"{r[c]:.3f}" for c in cols)
            print(f"| {rec['catalog']} | {a} | {r['train']} | {r['valid']} | {r['classes']} | {cells} |")
        cells = " | ".join(f"**{rec['mean_hits1'].get(c, float('nan')):.3f}**" for c in cols)
        print(f"| {rec['catalog']} | **mean** | | | | {cells} |")


if __name__ == "__main__":
    main()
