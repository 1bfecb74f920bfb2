"""Are the text features an explanation cites the ones the model used? A deletion test, per catalog.

For each shared catalog: the GNN completion model is fitted as ``attrgraph train`` fits it (90% of the
asserted facts; ``gnn.completion.CompletionPredictor.fit``), every missing applicable slot and every
held-out (valid) pair is ranked (the valid facts hidden from the graph), and ``n`` (1,000) of these
top-1 predictions are sampled (seeded). For each, ``GnnCompletionModel.explain``
cites up to five text features (word n-grams, title character n-grams, property tokens) that push the
chosen value's score up. Then the product's inputs are changed in two ways and the model scores them
again, end to end (TF-IDF rows, title character n-grams, mentions, and the text embedding re-encoded by
the same encoder; the GNN's weights are unchanged):

* **cited**: every token occurrence behind a cited feature is deleted (a word n-gram: the occurrences of
  its words in the title and description; a title character n-gram: the title words that contain it; a
  property token: that property);
* **random** (the baseline): as many tokens of the same kinds, chosen at random among the product's own
  (random words of the title and description, random title words, random properties).

Faithfulness is the share of sampled predictions whose chosen value's probability falls when the
cited tokens are deleted; the same share under random deletion is the baseline it must beat (issue 14:
>= 0.80). Predictions without a cited feature (an attribute with a single candidate, a classifier
with no weight on the product's features) are counted and reported, never dropped silently.

    .venv/bin/python bench/bench_faithfulness.py [--catalogs myntra bigbasket taobao] [--n 1000]

Appends one record to ``bench/results/faithfulness.jsonl``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import re
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

RESULTS = ROOT / "bench" / "results" / "faithfulness.jsonl"


class _PatchedFeatures:
    """A snapshot's feature store with some matrices replaced (the re-encoded product texts)."""

    def __init__(self, base: Any, patches: dict[str, np.ndarray]) -> None:
        self.base, self.patches, self.root = base, patches, base.root

    def names(self) -> list[str]:
        return self.base.names()

    def meta(self, name: str) -> dict[str, Any]:
        return self.base.meta(name)

    def get(self, name: str) -> np.ndarray:
        return self.patches[name] if name in self.patches else self.base.get(name)


def _words(pattern: re.Pattern[str], text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0).lower()) for m in pattern.finditer(text or "")]


def _drop_spans(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for s, e in sorted(spans):
        if e <= last:  # inside a span already dropped
            continue
        out.append(text[last:max(s, last)])
        last = e
    out.append(text[last:])
    return " ".join("".join(out).split())


def delete_cited(record: dict[str, Any], cited: list[str], pattern: re.Pattern[str], prop_name: Any
                 ) -> tuple[dict[str, Any], dict[str, int]]:
    """The product record without the tokens behind the cited feature names; and how many of each kind went."""
    r = dict(record)
    counts = {"word": 0, "title_word": 0, "property": 0}
    words = {w for f in cited if not f.startswith("title~") and "=" not in f for w in f.lower().split()}
    chars = [f[len("title~"):] for f in cited if f.startswith("title~")]
    props = {f.split("=", 1)[0] for f in cited if "=" in f and not f.startswith("title~")}
    for field in ("title", "description"):
        text = str(r.get(field) or "")
        spans = [(s, e) for s, e, w in _words(pattern, text) if w in words]
        if field == "title" and chars:
            for m in re.finditer(r"\S+", text):
                padded = f" {m.group(0).lower()} "
                if any(c in padded for c in chars) and (m.start(), m.end()) not in spans:
                    spans.append((m.start(), m.end()))
                    counts["title_word"] += 1
        counts["word"] += len(spans) - (counts["title_word"] if field == "title" else 0)
        if spans:
            r[field] = _drop_spans(text, spans)
    if props and r.get("props"):
        kept = {k: v for k, v in r["props"].items() if prop_name(k) not in props}
        counts["property"] = len(r["props"]) - len(kept)
        r["props"] = kept
    return r, counts


def delete_random(record: dict[str, Any], counts: dict[str, int], pattern: re.Pattern[str],
                  rng: np.random.Generator) -> dict[str, Any]:
    """The product record without as many randomly chosen tokens of each kind as ``counts`` says."""
    r = dict(record)
    title, desc = str(r.get("title") or ""), str(r.get("description") or "")
    pool = [("title", s, e) for s, e, _ in _words(pattern, title)] + [("description", s, e) for s, e, _ in _words(pattern, desc)]
    title_words = [(m.start(), m.end()) for m in re.finditer(r"\S+", title)]
    drop: dict[str, list[tuple[int, int]]] = {"title": [], "description": []}
    if counts["title_word"] and title_words:
        for i in rng.choice(len(title_words), min(counts["title_word"], len(title_words)), replace=False):
            drop["title"].append(title_words[int(i)])
    taken = set(drop["title"])
    free = [x for x in pool if not (x[0] == "title" and any(s <= x[1] < e for s, e in taken))]
    if counts["word"] and free:
        for i in rng.choice(len(free), min(counts["word"], len(free)), replace=False):
            f, s, e = free[int(i)]
            drop[f].append((s, e))
    for f, text in (("title", title), ("description", desc)):
        if drop[f]:
            r[f] = _drop_spans(text, drop[f])
    if counts["property"] and r.get("props"):
        keys = sorted(r["props"])
        gone = {keys[int(i)] for i in rng.choice(len(keys), min(counts["property"], len(keys)), replace=False)}
        r["props"] = {k: v for k, v in r["props"].items() if k not in gone}
    return r


def perturbed(model: Any, snap: Any, changed: dict[int, dict[str, Any]], encoder: Any) -> Any:
    """A copy of the fitted ``model`` reading ``snap`` with the product records in ``changed`` replaced
    and their text embeddings re-encoded; the weights are the model's own."""
    from gnn.snapshot import Snapshot

    nodes = dict(snap.nodes)
    prods = list(nodes["product"])
    for i, rec in changed.items():
        prods[i] = rec
    nodes["product"] = prods
    snap2 = Snapshot(snap.path, snap.manifest, nodes, snap.edges, snap.edge_types)
    patches = {}
    if model.cfg.text_feature:
        name = f"{model.cfg.text_feature}.product"
        m = snap.features.get(name).copy()
        rows = sorted(changed)
        m[rows] = encoder.encode([_text(snap2, i) for i in rows])
        patches[name] = m
    snap2.features = _PatchedFeatures(snap.features, patches)
    new = copy.copy(model)
    new._runtime, new._cache = {}, {}
    new._prepare(snap2, model.split, fit_vectorizer=False)
    return new


def _text(snap: Any, i: int) -> str:
    from gnn.text import product_text

    r = snap.nodes["product"][i]
    return product_text(r.get("title"), r.get("description"), 1000)


def run_catalog(name: str, work: Path, *, n: int, seed: int, max_seconds: float, threads: int,
                log: Any = print) -> dict[str, Any]:
    from attrgraph.features import compute_text_features
    from gnn.baselines import TOKEN_PATTERN
    from gnn.completion import CompletionPredictor
    from gnn.properties import _text as prop_text
    from gnn.snapshot import load_snapshot
    from gnn.text import get_encoder
    from bench.bench_catalogs import text_config

    t0 = time.perf_counter()
    products = read_products(CATALOGS[name], name)
    snap = load_snapshot(write_snapshot(products, work / name, mapping_name=name))
    tcfg = text_config(None, threads)
    tr = compute_text_features(snap, tcfg)
    log(f"[{name}] {snap.num_nodes('product')} products; text features {tr.encoder} in {tr.seconds:.0f} s")
    pred = CompletionPredictor.fit(snap, model="gnn", model_kwargs={"max_seconds": max_seconds})
    model = pred.model
    log(f"[{name}] fitted in {pred.fit_seconds:.0f} s")
    cands = pred.predict(snap, top_k=1)
    sp = pred.split
    # the predictions to explain: the top-1 pick of every missing applicable slot and of every held-out
    # (valid) pair -- a catalog whose slots are all filled (BigBasket's brands) still has the latter. The
    # graph hides the valid facts throughout (as when they were scored for calibration).
    model._hidden = ("valid",)
    pool: list[tuple[int, int, int, str]] = []  # (attribute, product, chosen local position, source)
    for a in np.unique(cands.attribute):
        rs = np.flatnonzero((cands.attribute == a) & (cands.candidate[:, 0] >= 0))
        local = {int(c): j for j, c in enumerate(np.asarray(sp.candidates(int(a))).tolist())}
        pool += [(int(a), int(cands.product[r]), local[int(cands.candidate[r, 0])], "missing") for r in rs]
    valid = sp.pairs("valid")
    for a in np.unique(sp.attribute[valid]):
        prods = sp.product[valid[sp.attribute[valid] == a]]
        if sp.num_candidates(int(a)) == 0:
            continue
        top = model._score_attribute(int(a), prods).argmax(1)
        pool += [(int(a), int(p), int(c), "valid") for p, c in zip(prods, top)]
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(len(pool), min(n, len(pool)), replace=False).tolist())
    picked = [pool[i] for i in sample]
    pattern = re.compile(TOKEN_PATTERN)

    def prop_name(k: str) -> str:
        return prop_text(k, 64).replace("=", " ")

    # explanations of the sampled top-1 picks (local candidate positions), attribute by attribute
    items: list[dict[str, Any]] = []
    for a in sorted({x[0] for x in picked}):
        group = [x for x in picked if x[0] == a]
        ex = model.explain(a, np.array([x[1] for x in group], np.int64), np.array([x[2] for x in group], np.int64))
        for (_, prod, c, src), d in zip(group, ex):
            items.append({"attribute": a, "product": prod, "chosen": c, "source": src,
                          "cited": [f for f, _ in d.get("text_features", []) if isinstance(f, str)],
                          "only_candidate": bool(d.get("only_candidate"))})
    with_cites = [it for it in items if it["cited"]]
    log(f"[{name}] {len(items)} sampled predictions, {len(with_cites)} cite text features")
    # the two perturbations: one product may appear in several sampled slots, so each slot is scored on
    # its own copy of the inputs -- group the slots so that a product changes once per pass
    encoder = get_encoder(tcfg.encoder, **tcfg.encoder_kwargs)
    before, after_c, after_r, kinds = [], [], [], {"word": 0, "title_word": 0, "property": 0}
    passes: list[list[dict[str, Any]]] = []
    for it in with_cites:
        for ps in passes:
            if all(o["product"] != it["product"] for o in ps):
                ps.append(it)
                break
        else:
            passes.append([it])
    for ps in passes:
        cited_recs, random_recs = {}, {}
        for it in ps:
            rec = snap.nodes["product"][it["product"]]
            cited_recs[it["product"]], it["counts"] = delete_cited(rec, it["cited"], pattern, prop_name)
            random_recs[it["product"]] = delete_random(rec, it["counts"], pattern, rng)
            for k, v in it["counts"].items():
                kinds[k] += v
        m_c = perturbed(model, snap, cited_recs, encoder)
        m_r = perturbed(model, snap, random_recs, encoder)
        for a in sorted({it["attribute"] for it in ps}):
            group = [it for it in ps if it["attribute"] == a]
            prods = np.array([it["product"] for it in group], np.int64)
            ch = np.array([it["chosen"] for it in group], np.int64)
            r = np.arange(len(group))
            before.extend(model._score_attribute(a, prods)[r, ch].tolist())
            after_c.extend(m_c._score_attribute(a, prods)[r, ch].tolist())
            after_r.extend(m_r._score_attribute(a, prods)[r, ch].tolist())
    b, c, rr = np.array(before), np.array(after_c), np.array(after_r)
    out = {
        "catalog": name, "products": snap.num_nodes("product"), "slots_ranked": len(cands), "sampled": len(items),
        "pool": {"missing_slots": sum(x[3] == "missing" for x in pool), "valid_pairs": sum(x[3] == "valid" for x in pool)},
        "sampled_from": {src: sum(it["source"] == src for it in items) for src in ("missing", "valid")},
        "with_cited_features": len(with_cites), "only_candidate": sum(it["only_candidate"] for it in items),
        "tokens_deleted": kinds,
        "faithfulness": float((c < b).mean()) if len(b) else None,
        "random_baseline": float((rr < b).mean()) if len(b) else None,
        "faithfulness_over_all_sampled": float((c < b).sum() / len(items)) if items else None,
        "mean_drop_cited": float((b - c).mean()) if len(b) else None,
        "mean_drop_random": float((b - rr).mean()) if len(b) else None,
        "median_p_before": float(np.median(b)) if len(b) else None,
        "fit_seconds": round(pred.fit_seconds, 1), "seconds": round(time.perf_counter() - t0, 1),
        "encoder": tr.encoder, "encoder_version": tr.version,
    }
    log(f"[{name}] faithfulness {out['faithfulness']:.3f} vs random {out['random_baseline']:.3f} "
        f"(mean drop {out['mean_drop_cited']:.3f} vs {out['mean_drop_random']:.3f}) over {len(b)} predictions")
    return out


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalogs", nargs="+", default=list(CATALOGS), choices=list(CATALOGS))
    ap.add_argument("--n", type=int, default=1000, help="sampled predictions per catalog")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seconds", type=float, default=240.0, help="the GNN's training budget (its default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="where snapshots go (default: a temporary directory)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rec: dict[str, Any] = {"bench": "faithfulness", "commit": _commit(),
                           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": platform.node(),
                           "n": args.n, "seed": args.seed, "catalogs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for name in args.catalogs:
            rec["catalogs"].append(run_catalog(name, work, n=args.n, seed=args.seed, max_seconds=args.max_seconds,
                                               threads=args.threads))
    print(f"\n{'catalog':<10} {'sampled':>7} {'cited':>6} {'faithful':>9} {'random':>7} {'drop':>7} {'drop rnd':>8}")
    for r in rec["catalogs"]:
        print(f"{r['catalog']:<10} {r['sampled']:>7} {r['with_cited_features']:>6} {r['faithfulness']:>9.3f} "
              f"{r['random_baseline']:>7.3f} {r['mean_drop_cited']:>7.3f} {r['mean_drop_random']:>8.3f}")
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
    return rec


if __name__ == "__main__":
    main()
