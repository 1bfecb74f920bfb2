"""Open-world value extraction benchmark (issue 13): the CRF span extractor (``extract/``) on the shared catalogs.

    python bench/bench_extract.py [--parts taobao,myntra-brands,catalogs] [--catalogs myntra,bigbasket,taobao,myntra-stress]
                                  [--max-products N] [--model tfidf|majority] [--option KEY=VALUE ...]
                                  [--results FILE]

Parts (each appends one JSON line with the git commit to ``bench/results/extract.jsonl``):

* ``taobao``: Taobao titles deduplicated by title, split 80/20 by product (seed 0, title-grouped); the
  extractor is trained on the 80% (10% of it held out for the span calibrator and for choosing the
  acceptance threshold), graded on the 20%: brand and product type exact match of the first span, on
  unseen brands (not among the training brands), span P/R/F1, and precision / share kept at the
  acceptance threshold (the lowest confidence whose precision on the calibration products reaches 0.85 at
  its one-sided 90% Wilson lower bound).
* ``myntra-brands``: Myntra with 20% of its brands held out (seeded): trained on the products of the other
  brands (10% of those brands held out again for calibration and the acceptance threshold, so calibration
  sees unseen brands as the test does), graded on the held-out brands' products (brand exact match; every
  brand there is unseen).
* ``catalogs``: every catalog of the cross-catalog benchmark (``bench/bench_catalogs.py``'s: Myntra,
  BigBasket, Taobao, Myntra-stress), a snapshot written without a database (``bench._catalog.write_snapshot``),
  the protocol split (``gnn.protocol.make_split``, seed 0: 80/10/10 pairs + 5% cold products). The extractor
  learns from the train facts, calibrates on the valid facts; the TF-IDF completion model (fitted on train,
  isotonic calibration on valid) ranks the known values; a stacker (``extract.combine``) fitted on valid
  merges both. Graded on the test pairs: overall and on the open-world subset (true value unseen among the
  train + valid values of its attribute): recall of new-value proposals (a slot's first span, when it is new)
  at the threshold chosen on valid for precision >= 0.80 (Wilson lower bound, as above; and the test precision
  there), span P/R/F1, Hits@1 of the model alone and of the
  combined list on the closed-world pairs, and seconds (extractor train and predict per 1k products against
  the completion model's fit + score in the same run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench._catalog import read_products, write_snapshot  # noqa: E402
from extract.combine import Stacker, combine  # noqa: E402
from extract.data import dedup_titles, examples_from_products, split_products  # noqa: E402
from extract.evaluate import correct, grade, threshold_for_precision  # noqa: E402
from extract.model import ExtractConfig, train  # noqa: E402
from extract.resolve import span_norm  # noqa: E402
from extract.supervision import BRAND, Example  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "extract.jsonl"
SHARED = ROOT.parent / "shared" / "data"
ACCEPT_PRECISION = 0.85  # the acceptance threshold: lowest confidence reaching this precision on calibration data
OPEN_PRECISION = 0.80
WILSON_Z = 1.2816  # thresholds: the target precision at the one-sided 90% Wilson lower bound on validation


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


_COMMIT: str | None = None  # read at start: the code that ran, even if the branch moves during a long run


def _append(rec: dict[str, Any], path: Path) -> None:
    rec = {"bench": "extract", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "commit": _COMMIT or _commit(), **rec}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(json.dumps(rec, ensure_ascii=False)[:3000], flush=True)


def _r(x: Any) -> Any:
    return round(x, 4) if isinstance(x, float) else x


def _accept(model: Any, valid: list[Example], attr: str) -> float:
    """The acceptance threshold of ``attr``: lowest confidence whose first spans reach ACCEPT_PRECISION on
    the calibration products."""
    ex = [e for e in valid if e.facts.get(attr)]
    spans = {s.product_id: s for s in model.predict_slots(ex, {e.id: [attr] for e in ex})}
    conf = np.array([spans[e.id].confidence if e.id in spans else 0.0 for e in ex])
    ok = np.array([correct(spans.get(e.id), e.facts[attr]) for e in ex])
    return threshold_for_precision(conf, ok, ACCEPT_PRECISION, z=WILSON_Z) if len(ex) else 1.0


def _calib_split(examples: list[Example], share: float = 0.1, seed: int = 1) -> tuple[list[Example], list[Example]]:
    return split_products(examples, test_share=share, seed=seed)


# -- Taobao ------------------------------------------------------------------------------------------------------
def part_taobao(cfg: ExtractConfig, args: Any) -> dict[str, Any]:
    prods = read_products(SHARED / "taobao_zh" / "titles.jsonl.gz", "taobao", limit=args.max_products)
    ex = dedup_titles(examples_from_products(prods))
    tr_all, te = split_products(ex, test_share=0.2, seed=0)
    tr, va = _calib_split(tr_all)
    attrs = [BRAND, "product type"]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        m = train(tr, d, valid=va, config=cfg, attributes=attrs)
        train_s = time.perf_counter() - t0
        out: dict[str, Any] = {"part": "taobao", "products": len(ex), "train_products": len(tr),
                               "calibration_products": len(va), "test_products": len(te), "config": m.meta["config"],
                               "train_seconds": round(train_s, 1), "attributes": {}}
        for a in attrs:
            thr = _accept(m, va, a)
            t1 = time.perf_counter()
            g = grade(m, te, [a], threshold=thr)
            secs = time.perf_counter() - t1
            r = g["overall"]
            out["attributes"][a] = {**{k: _r(v) for k, v in r.items()}, "accept_threshold": _r(thr),
                                    "predict_seconds_per_1k": _r(1000 * secs / max(len(te), 1))}
    return out


# -- Myntra, held-out brands ---------------------------------------------------------------------------------------
def part_myntra_brands(cfg: ExtractConfig, args: Any) -> dict[str, Any]:
    prods = read_products(SHARED / "myntra" / "styles.jsonl.gz", "myntra", limit=args.max_products)
    ex = [e for e in examples_from_products(prods) if e.facts.get(BRAND)]
    brands = sorted({span_norm(e.facts[BRAND][0])[0] for e in ex})
    held = {b for b in brands if int(hashlib.sha256(f"0:{b}".encode()).hexdigest()[:8], 16) < 0.2 * 2**32}
    te = [e for e in ex if span_norm(e.facts[BRAND][0])[0] in held]
    tr_all = [e for e in ex if span_norm(e.facts[BRAND][0])[0] not in held]
    # calibration products as the test ones: 10% of the training brands held out of training too
    calib = {b for b in brands if b not in held and int(hashlib.sha256(f"1:{b}".encode()).hexdigest()[:8], 16) < 0.1 * 2**32}
    va = [e for e in tr_all if span_norm(e.facts[BRAND][0])[0] in calib]
    tr = [e for e in tr_all if span_norm(e.facts[BRAND][0])[0] not in calib]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        m = train(tr, d, valid=va, config=cfg, attributes=[BRAND])
        train_s = time.perf_counter() - t0
        thr = _accept(m, va, BRAND)
        t1 = time.perf_counter()
        g = grade(m, te, [BRAND], threshold=thr)
        secs = time.perf_counter() - t1
    return {"part": "myntra-brands", "brands": len(brands), "held_out_brands": len(held), "train_products": len(tr),
            "calibration_products": len(va), "test_products": len(te), "config": m.meta["config"],
            "train_seconds": round(train_s, 1), "predict_seconds_per_1k": _r(1000 * secs / max(len(te), 1)),
            "accept_threshold": _r(thr), "brand": {k: _r(v) for k, v in g["overall"].items()}}


# -- every catalog, the protocol split ---------------------------------------------------------------------------
def _catalog_products(name: str, tmp: Path, limit: int | None) -> list[Any]:
    from bench.bench_catalogs import CATALOGS, write_stress_catalog
    from ingest.mapping import Mapping

    c = CATALOGS[name]
    if c.derive == "stress":
        data, mapping, _ = write_stress_catalog(c.path, tmp / "stress", base_mapping=c.mapping, limit=limit)
        return read_products(data, Mapping.load(mapping))
    return read_products(c.path, c.mapping, limit=limit)


def part_catalog(name: str, cfg: ExtractConfig, args: Any) -> dict[str, Any]:
    from gnn.baselines import get_baseline
    from gnn.metrics import get_calibrator
    from gnn.protocol import make_split
    from gnn.snapshot import load_snapshot

    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        prods = _catalog_products(name, tmp, args.max_products)
        snap = load_snapshot(write_snapshot(prods, tmp / "snap", mapping_name=name))
        split = make_split(snap, seed=0)
        A = split.brand_attribute
        aname = [BRAND if a == A else split.attribute_names[a] for a in range(split.num_attributes)]
        pid = [str(r["key"]) for r in snap.nodes["product"]]
        title = [str(r.get("title") or "") for r in snap.nodes["product"]]
        desc = [str(r.get("description") or "") for r in snap.nodes["product"]]

        def disp(a: int, v: int) -> str:
            r = snap.nodes["brand" if a == A else "value"][v]
            return str(r.get("name") or r["key"]) if a == A else str(r.get("value") or r["norm"])

        def examples(which: str) -> list[Example]:
            by: dict[int, dict[str, list[str]]] = defaultdict(dict)
            for pr in split.pairs(which).tolist():
                a = int(split.attribute[pr])
                by[int(split.product[pr])][aname[a]] = [disp(a, v) for v in split.values_of(pr).tolist()]
            return [Example(pid[p], title[p], desc[p], f) for p, f in sorted(by.items())]

        ex_train, ex_valid, ex_test = examples("train"), examples("valid"), examples("test")
        visible: dict[str, set[str]] = defaultdict(set)
        for e in ex_train + ex_valid:
            for a, vals in e.facts.items():
                visible[a].update(span_norm(v)[0] for v in vals)
        train_seen: dict[str, set[str]] = defaultdict(set)
        for e in ex_train:
            for a, vals in e.facts.items():
                train_seen[a].update(span_norm(v)[0] for v in vals)

        # the extractor
        t0 = time.perf_counter()
        m = train(ex_train, tmp / "extractor", valid=ex_valid, config=cfg)
        ext_train_s = time.perf_counter() - t0
        # valid slots are read knowing the train values only; test slots knowing train + valid (the visible graph)
        valid_known = {a: [v for e in ex_valid for v in e.facts.get(a, ())] for a in m.attributes}

        def spans_of(exs: list[Example], known: Any = None) -> tuple[dict[tuple[str, str], list[Any]], float]:
            t = time.perf_counter()
            sp = m.predict_slots(exs, {e.id: list(e.facts) for e in exs}, top_k=3, known=known)
            secs = time.perf_counter() - t
            out: dict[tuple[str, str], list[Any]] = defaultdict(list)
            for s in sp:
                out[(s.product_id, s.attribute)].append(s)
            return out, secs

        sp_valid, _ = spans_of(ex_valid)
        sp_test, ext_pred_s = spans_of(ex_test, valid_known)

        # the closed-world completion model (TF-IDF by default; --model), calibrated on valid
        t1 = time.perf_counter()
        model = get_baseline(args.model).fit(snap, split, on=("train",))
        s_valid, s_test = model.score(split.pairs("valid")), model.score(split.pairs("test"))
        cal = get_calibrator("isotonic").fit(s_valid)
        c_valid, c_test = cal.transform(s_valid), cal.transform(s_test)
        model_s = time.perf_counter() - t1

        def ranked(ps: Any) -> dict[tuple[str, str], list[tuple[str, float]]]:
            out: dict[tuple[str, str], list[tuple[str, float]]] = {}
            for a, b in ps.blocks.items():
                cand = split.candidates(a)
                top = np.argsort(-b.scores, axis=1, kind="stable")[:, :5]
                for row, pr in enumerate(b.pairs.tolist()):
                    out[(pid[int(split.product[pr])], aname[a])] = [(disp(a, int(cand[c])), float(b.scores[row, c]))
                                                                  for c in top[row]]
            return out

        rk_valid, rk_test = ranked(c_valid), ranked(c_test)

        def slots_of(exs: list[Example]) -> list[tuple[str, str, set[str]]]:
            return [(e.id, a, {span_norm(v)[0] for v in vals}) for e in exs for a, vals in e.facts.items()]

        v_slots, t_slots = slots_of(ex_valid), slots_of(ex_test)
        both = [(rk_valid.get((p, a), []), sp_valid.get((p, a), []), tr) for p, a, tr in v_slots
                if (p, a) in rk_valid and sp_valid.get((p, a))]
        try:
            stacker = Stacker().fit(both)
        except ValueError:  # too few validation slots where both answered: the unfitted noisy-or
            stacker = Stacker()

        def proposals(sp: dict, slots: list, seen: dict[str, set[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """Per slot: confidence of its first span when that span is a new value (0: none, or the first span
            resolves to a known value), whether it is right, whether the slot is open-world."""
            conf, ok, open_ = [], [], []
            for p, a, tr in slots:
                first = sp.get((p, a), [])[:1]
                s = first[0] if first and first[0].value is None else None
                conf.append(s.confidence if s else 0.0)
                ok.append(bool(s) and s.norm in tr)
                open_.append(not (tr & seen.get(a, set())))
            return np.array(conf), np.array(ok), np.array(open_)

        vc, vo, _ = proposals(sp_valid, v_slots, train_seen)
        thr = threshold_for_precision(vc[vc > 0], vo[vc > 0], OPEN_PRECISION, z=WILSON_Z)
        tc, to, topen = proposals(sp_test, t_slots, visible)
        kept = (tc >= thr) & (tc > 0)
        open_rec = float((kept & to & topen).sum() / max(topen.sum(), 1))
        open_prec = float((kept & to).sum() / max(kept.sum(), 1)) if kept.any() else None

        # one answer per slot: model alone vs combined, on closed-world and open-world test slots
        m_ok, c_ok, c_new_ok, cw = [], [], [], []
        for p, a, tr in t_slots:
            known = rk_test.get((p, a), [])
            m_ok.append(bool(known) and span_norm(known[0][0])[0] in tr)
            ch = combine(known, sp_test.get((p, a), []), stacker)
            c_ok.append(bool(ch) and ch[0].norm in tr)
            c_new_ok.append(bool(ch) and ch[0].new and ch[0].norm in tr)
            cw.append(bool(tr & visible.get(a, set())))
        m_ok, c_ok, cw = np.array(m_ok), np.array(c_ok), np.array(cw)
        m.add_known(valid_known)
        g = grade(m, ex_test, threshold=0.5, known_values=visible)
        n_test_products = len(ex_test)
        return {
            "part": "catalog", "catalog": name, "model": args.model, "products": len(pid), "attributes": len(aname),
            "attributes_with_extractor": len(m.attributes), "attributes_skipped": len(m.meta["skipped"]),
            "test_slots": len(t_slots), "open_world_slots": int(topen.sum()),
            "open_world_share": _r(float(topen.mean())) if len(topen) else None,
            "open_threshold": _r(thr), "open_recall": _r(open_rec), "open_precision": _r(open_prec),
            "open_proposals_kept": int(kept.sum()),
            "extract_exact": _r(g["overall"].get("exact")), "extract_exact_open": _r(g["overall"].get("exact_unseen")),
            "span_precision": _r(g["overall"].get("span_precision")), "span_recall": _r(g["overall"].get("span_recall")),
            "span_f1": _r(g["overall"].get("span_f1")),
            "model_hits1": _r(float(m_ok.mean())), "combined_hits1": _r(float(c_ok.mean())),
            "model_hits1_closed": _r(float(m_ok[cw].mean())) if cw.any() else None,
            "combined_hits1_closed": _r(float(c_ok[cw].mean())) if cw.any() else None,
            "combined_hits1_open": _r(float(c_ok[~cw].mean())) if (~cw).any() else None,
            "stacker": stacker.to_dict(), "stacker_valid_slots": len(both),
            "extract_train_seconds": round(ext_train_s, 1),
            "extract_predict_seconds_per_1k": _r(1000 * ext_pred_s / max(n_test_products, 1)),
            "model_seconds": round(model_s, 1), "extract_to_model_time": _r((ext_train_s + ext_pred_s) / max(model_s, 1e-9)),
            "config": m.meta["config"],
        }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="taobao,myntra-brands,catalogs")
    ap.add_argument("--catalogs", default="myntra,bigbasket,taobao,myntra-stress")
    ap.add_argument("--max-products", type=int, default=None)
    ap.add_argument("--model", default="tfidf", help="the closed-world completion model of the catalogs part: "
                    "tfidf | majority (gnn.baselines; majority where TF-IDF's memory does not fit)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="an ExtractConfig field")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    global _COMMIT
    _COMMIT = _commit()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    kw: dict[str, Any] = {}
    for o in args.option:
        k, v = o.split("=", 1)
        kw[k.strip()] = json.loads(v)
    cfg = ExtractConfig(**kw)
    parts = [p for p in args.parts.split(",") if p]
    extra = {"max_products": args.max_products}
    for p in parts:
        if p == "taobao":
            _append({**part_taobao(cfg, args), **extra}, args.results)
        elif p == "myntra-brands":
            _append({**part_myntra_brands(cfg, args), **extra}, args.results)
        elif p == "catalogs":
            for c in [c for c in args.catalogs.split(",") if c]:
                _append({**part_catalog(c, cfg, args), **extra}, args.results)
        else:
            ap.error(f"unknown part {p!r}; valid: taobao, myntra-brands, catalogs")


if __name__ == "__main__":
    main()
