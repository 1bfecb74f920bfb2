"""The README's "Open-world values: extraction" figures, rendered from ``bench/results/extract.jsonl`` (written by
``bench/bench_extract.py``), never typed by hand.

    .venv/bin/python bench/extract_table.py [--results FILE] [--write-readme] [--check]

Renders the latest full-data record of each part (``taobao``, ``myntra-brands``, and ``catalog`` per catalog),
each row naming its date and commit, beside the issue's targets. Markers in README.md:
``<!-- results:extract:begin -->`` ... ``<!-- results:extract:end -->``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.catalogs_table import _s, _table, write_readme  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "extract.jsonl"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:extract:begin -->", "<!-- results:extract:end -->"
CATALOG_ORDER = ("myntra", "bigbasket", "taobao", "myntra-stress")


def _n(x: Any, d: int = 3) -> str:
    return "—" if x is None else f"{x:.{d}f}"


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _mark(x: Any, target: float) -> str:
    return "—" if x is None else f"{x:.3f} {'✓' if x >= target else '✗'}"


def _open_mark(r: dict[str, Any]) -> str:
    """Open-world recall, ✓ only when it reaches 0.35 and the test precision there reaches 0.80."""
    rec, prec = r.get("open_recall"), r.get("open_precision")
    if rec is None:
        return "—"
    return f"{rec:.3f} {'✓' if rec >= 0.35 and prec is not None and prec >= 0.80 else '✗'}"


def latest(path: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Key (``taobao``, ``myntra-brands``, ``catalog:<name>``) -> the latest record of it (full-data records
    win over runs on the first N products)."""
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        key = f"catalog:{r['catalog']}" if r.get("part") == "catalog" else r.get("part")
        if r.get("max_products") is not None and key in out and out[key].get("max_products") is None:
            continue
        out[key] = r
    return out


def _src(r: dict[str, Any]) -> str:
    return f"{r['date'][:16].replace('T', ' ')} UTC, `{r['commit'][:9]}`"


def render(path: Path = RESULTS) -> str:
    recs = latest(path)
    if not recs:
        return f"No record in `bench/results/{path.name}` yet: run `python bench/bench_extract.py`."
    lines = [f"Rendered by `bench/extract_table.py` from `bench/results/{path.name}` (latest record of each part, "
             "full-data records first; ✓/✗ against the issue's targets).", ""]
    t = recs.get("taobao")
    m = recs.get("myntra-brands")
    if t or m:
        rows = []
        if t:
            b, p = t["attributes"].get("brand", {}), t["attributes"].get("product type", {})
            rows.append(["Taobao brand (dedup, 80/20 by product)", _mark(b.get("exact"), 0.70),
                         _mark(b.get("exact_unseen"), 0.60), _mark(b.get("precision_at_threshold"), 0.85),
                         _pct(b.get("kept")), _n(b.get("span_f1")), _s(t.get("train_seconds")), _src(t)])
            rows.append(["Taobao product type", _mark(p.get("exact"), 0.72), "—", _n(p.get("precision_at_threshold")),
                         _pct(p.get("kept")), _n(p.get("span_f1")), "", _src(t)])
        if m:
            b = m["brand"]
            rows.append([f"Myntra, {m['held_out_brands']} of {m['brands']} brands held out", _mark(b.get("exact"), 0.88),
                         "(all unseen)", _n(b.get("precision_at_threshold")), _pct(b.get("kept")), _n(b.get("span_f1")),
                         _s(m.get("train_seconds")), _src(m)])
        lines.append(_table(["task", "exact (target)", "unseen (target)", "precision at acceptance threshold",
                             "kept", "span F1", "train s", "record"], rows))
        lines.append("")
    cats = [recs[f"catalog:{c}"] for c in CATALOG_ORDER if f"catalog:{c}" in recs]
    if cats:
        rows = []
        for r in cats:
            sub = f" (first {r['max_products']:,} rows)" if r.get("max_products") else ""
            rows.append([r["catalog"] + sub, f"{r['products']:,}", str(r["test_slots"]), _pct(r.get("open_world_share")),
                         _open_mark(r), _n(r.get("open_precision")),
                         f"{r['attributes_with_extractor']} / {r['attributes']}", _n(r.get("span_precision")),
                         _n(r.get("span_recall")), _n(r.get("span_f1")),
                         f"{r.get('model', 'tfidf')}: {_n(r.get('model_hits1_closed'))} → {_n(r.get('combined_hits1_closed'))}",
                         _s(r.get("extract_train_seconds")), _s(r.get("extract_predict_seconds_per_1k")),
                         _n(r.get("extract_to_model_time"), 2), _src(r)])
        lines.append(_table(["catalog", "products", "test slots", "open-world", "open-world recall @ P≥0.80 (target 0.35; ✓ needs test precision ≥ 0.80 too)",
                             "test precision there", "attributes extracted", "span P", "span R", "span F1",
                             "closed-world Hits@1: model → combined", "extract train s", "predict s / 1k products",
                             "extract time / model time", "record"], rows))
    return "\n".join(lines).rstrip()


def readme_block(readme: Path = README) -> str | None:
    doc = readme.read_text(encoding="utf-8")
    if doc.count(BEGIN) != 1 or doc.count(END) != 1:
        return None
    return doc.split(BEGIN, 1)[1].split(END, 1)[0].removeprefix("\n").removesuffix("\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = render(args.results)
    if args.write_readme:
        write_readme(text, README, BEGIN, END)
    elif args.check:
        if readme_block() != text:
            sys.exit("README.md's extract block differs from bench/results/extract.jsonl: run bench/extract_table.py --write-readme")
    else:
        print(text)


if __name__ == "__main__":
    main()
