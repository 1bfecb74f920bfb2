"""The ``new_value`` rules on injected junk proposals and on genuinely new values (issue 13, point 4).

    python bench/bench_proposal_rules.py [--catalogs myntra,bigbasket,taobao] [--per-kind 200] [--clean 1000]
                                         [--seed 0] [--max-products N] [--no-save]

No database: each shared catalog is read through its shipped mapping (``bench/_catalog.py``) into a
:class:`kb.Catalog` with its titles (as a completion run builds it), and judged by the shipped
``kb/rules/default.yaml`` rules of type ``new_value`` only (the four checks: length, marketing, digits,
conflict). A row is *caught* when one of them rejects it.

* **Clean** (should pass): values that exactly one product asserts, taken out of the catalog (so they are
  new to it) and proposed again for that product, and brands of exactly one product, likewise -- real values
  the catalog did not know, as an open-world extractor would propose them.
* **Junk**, ``--per-kind`` of each on random products (seeded):
  ``digits`` -- a 2-6 digit number for an attribute under 2% of whose values have a digit at all;
  ``overlong`` -- the product's whole title as a value of one of its attributes (an extraction that did
  not stop), kept only where the title is longer than 2 x the attribute's longest known value (else it
  could be a value);
  ``marketing`` -- a phrase from a fixed list of common shop phrases, English and Chinese (below), as a
  value of one of the product's attributes; whether the catalog's own titles teach the rule those words
  is what this measures, so recall is reported per phrase too;
  ``conflict_brand`` -- the product's own brand as a value of one of its attributes;
  ``conflict_category`` -- the name of a category off the product's path as a value, and a category name
  as the brand of a product without one.

A product without attribute facts (BigBasket has only brands and categories) gets its junk as a brand
proposal instead (digits, its title, a phrase, a category name).

Reported per catalog: recall per kind, the share of clean new values blocked, and per rule its precision
over the pooled rows it rejects. Appends one JSON record to ``bench/results/proposal_rules.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kb  # noqa: E402
from kb.units import norm_key, parse_canonical, parse_number  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "proposal_rules.jsonl"
KINDS = ("digits", "overlong", "marketing", "conflict_brand", "conflict_category")
MARKETING_PHRASES = ("new arrival", "free shipping", "hot sale", "best seller", "limited edition", "special offer",
                     "新款", "包邮", "热卖", "正品", "特价", "爆款", "促销", "新款包邮")


def build_catalog(products: list[Any], drop: set[tuple[str, str, str]], drop_brand: set[str]) -> kb.Catalog:
    b = kb.CatalogBuilder()
    for p in products:
        cat = " > ".join(p.category) if p.category else None
        br = None if (p.brand is None or p.id in drop_brand) else p.brand
        b.add_product(p.id, cat, br.norm if br else None, br.display if br else None, title=p.title or "")
        for a, v in p.facts:
            if (p.id, a, v.norm) in drop:
                continue
            b.add_fact(p.id, a, v.display, norm=v.norm, quantity=v.quantity, unit=v.unit)
    return b.build()


def run_catalog(name: str, products: list[Any], *, per_kind: int, n_clean: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    # clean: singleton values and brands, held out
    count: Counter = Counter()
    brand_count: Counter = Counter()
    for p in products:
        for a, v in p.facts:
            count[(a, v.norm)] += 1
        if p.brand is not None:
            brand_count[p.brand.norm] += 1
    singles = [(p.id, a, v.display) for p in products for a, v in p.facts if count[(a, v.norm)] == 1]
    single_brands = [(p.id, "@brand", p.brand.display) for p in products if p.brand is not None
                     and brand_count[p.brand.norm] == 1]
    pool = singles + single_brands
    clean = [pool[i] for i in sorted(rng.choice(len(pool), min(n_clean, len(pool)), replace=False).tolist())] if pool else []
    drop = {(p, a, norm_key(v)) for p, a, v in clean if a != "@brand"}
    drop_brand = {p for p, a, _ in clean if a == "@brand"}
    cat = build_catalog(products, drop, drop_brand)
    # attributes: longest known value, numeric or not (the catalog without the held-out values)
    longest: dict[str, int] = defaultdict(int)
    with_digit: Counter = Counter()
    total: Counter = Counter()
    for a_i, n in zip(cat.value_attribute.tolist(), cat.value_norm.tolist()):
        a = cat.attributes[a_i]
        longest[a] = max(longest[a], len(n))
        total[a] += 1
        if parse_number(n) is not None or parse_canonical(n) is not None or any(ch.isdigit() for ch in n):
            with_digit[a] += 1
    # junk digits go only to attributes where hardly any value (under 1 in 50) has a digit at all
    numeric = {a: with_digit[a] >= 0.02 * total[a] for a in total}
    byp = {p.id: p for p in products}
    ids = list(byp)
    cat_names = sorted({c for p in products for c in p.category})
    rows: list[tuple[str, str, str, str, str]] = [(p, a, v, "clean", "") for p, a, v in clean]

    brand_max = max((len(norm_key(b)) for b in cat.brand_names), default=0)

    def pick_fact(p: Any, ok: Any = None) -> str | None:
        """One of the product's attributes; the brand slot for a product without any (a catalog whose
        only facts are brands, such as BigBasket)."""
        if not p.facts:
            return "@brand"
        attrs = sorted({a for a, _ in p.facts if ok is None or ok(a)})
        return attrs[int(rng.integers(len(attrs)))] if attrs else None

    for kind in KINDS:
        got, tries = 0, 0
        while got < per_kind and tries < per_kind * 50:
            tries += 1
            p = byp[ids[int(rng.integers(len(ids)))]]
            if kind == "digits":
                a = pick_fact(p, lambda a: not numeric.get(a, True))
                v = str(int(rng.integers(10, 10 ** int(rng.integers(2, 7)))))
                tag = ""
            elif kind == "overlong":
                a = pick_fact(p)
                v = p.title or ""
                if a is None or len(norm_key(v)) <= 2 * (brand_max if a == "@brand" else longest[a]):
                    continue
                tag = ""
            elif kind == "marketing":
                a = pick_fact(p)
                v = MARKETING_PHRASES[got % len(MARKETING_PHRASES)]
                tag = v
            elif kind == "conflict_brand":
                if p.brand is None or p.id in drop_brand:
                    continue
                a = pick_fact(p)
                v = p.brand.display
                tag = ""
            else:
                off = [c for c in cat_names if c not in p.category]
                if not off:
                    continue
                v = off[int(rng.integers(len(off)))]
                if p.brand is None and got % 2:
                    a = "@brand"
                else:
                    a = pick_fact(p)
                tag = "brand" if a == "@brand" else "value"
            if a is None:
                continue
            # a "junk" string the catalog holds for that attribute (or as a brand) is no new value: skip it
            if a != "@brand" and norm_key(v) in {x.norm for y, x in p.facts if y == a}:
                continue
            if a == "@brand" and norm_key(v) in cat.brand_index:
                continue
            rows.append((p.id, a, v, kind, tag))
            got += 1
    rules = kb.RuleSet([r for r in kb.load_rules("default") if r.type == "new_value"])
    ctx = kb.Context(cat, rules)
    t1 = time.perf_counter()
    verdicts = kb.validate(kb.Predictions.from_dicts([{"product": p, "attribute": a, "value": v, "score": 0.9}
                                                      for p, a, v, _, _ in rows]), ctx)
    secs = time.perf_counter() - t1
    caught = verdicts.status == 2
    kinds = np.array([r[3] for r in rows], dtype=object)
    res: dict[str, Any] = {"products": len(products), "clean_pool": len(pool), "clean": int((kinds == "clean").sum()),
                           "clean_blocked": float(caught[kinds == "clean"].mean()) if (kinds == "clean").any() else None,
                           "kinds": {}, "rules": {}, "validate_s": round(secs, 3),
                           "seconds": round(time.perf_counter() - t0, 1)}
    for k in KINDS:
        m = kinds == k
        res["kinds"][k] = {"n": int(m.sum()), "recall": float(caught[m].mean()) if m.any() else None}
    per_phrase: dict[str, list[bool]] = defaultdict(list)
    for (p, a, v, k, tag), c in zip(rows, caught.tolist()):
        if k == "marketing":
            per_phrase[tag].append(c)
    res["kinds"]["marketing"]["per_phrase"] = {ph: float(np.mean(cs)) for ph, cs in per_phrase.items()}
    fired: dict[str, list[int]] = defaultdict(list)
    for i, k in zip(verdicts.v_rows.tolist(), verdicts.v_rules.tolist()):
        if k >= 0:
            fired[ctx.compiled[k].rule.id].append(i)
    for rid in [r.id for r in rules]:
        idx = sorted(set(fired.get(rid, [])))
        junk = sum(kinds[i] != "clean" for i in idx)
        res["rules"][rid] = {"rejected": len(idx), "precision": (junk / len(idx)) if idx else None,
                             "clean_blocked": sum(kinds[i] == "clean" for i in idx)}
    mk = next(c for c in ctx.compiled if c.rule.id == "new-value-marketing")
    words = mk.marketing_words
    res["marketing_words_learned"] = len(words)
    res["marketing_words_top"] = [w.word for w in sorted((w for w in words.values() if w is not None),
                                                         key=lambda w: -w.products)[:20]]
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench._catalog import CATALOGS, catalog_names, read_products
    from bench._neo4j import git_commit
    from bench.bench_catalogs import uncommitted_changes

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalogs", default="myntra,bigbasket,taobao")
    ap.add_argument("--per-kind", type=int, default=200)
    ap.add_argument("--clean", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-products", type=int, default=None)
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args(argv)
    names = catalog_names(ap, a.catalogs, CATALOGS)
    record: dict[str, Any] = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
                              "uncommitted_changes": uncommitted_changes(),
                              "settings": {"catalogs": names, "per_kind": a.per_kind, "clean": a.clean, "seed": a.seed,
                                           "max_products": a.max_products, "phrases": list(MARKETING_PHRASES)},
                              "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
                              "catalogs": {}}
    for n in names:
        products = read_products(CATALOGS[n], n, a.max_products)
        r = run_catalog(n, products, per_kind=a.per_kind, n_clean=a.clean, seed=a.seed)
        record["catalogs"][n] = r
        print(f"{n}: {r['products']} products; clean new values blocked {r['clean_blocked']:.3f} "
              f"({r['clean']} of a pool of {r['clean_pool']}); marketing words learned {r['marketing_words_learned']} "
              f"(top: {', '.join(r['marketing_words_top'][:10])})")
        for k, d in r["kinds"].items():
            rec = "n/a" if d["recall"] is None else f"{d['recall']:.3f}"
            print(f"  {k:18s} n={d['n']:4d} recall {rec}")
        print("  marketing per phrase: " + ", ".join(f"{p} {v:.2f}" for p, v in r["kinds"]["marketing"]["per_phrase"].items()))
        for rid, d in r["rules"].items():
            pr = "—" if d["precision"] is None else f"{d['precision']:.3f}"
            print(f"  {rid:22s} rejected {d['rejected']:5d} precision {pr} clean blocked {d['clean_blocked']}")
    if not a.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"appended to {RESULTS}")
    return record


if __name__ == "__main__":
    main()
