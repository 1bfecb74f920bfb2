"""The README's "One host, a million products" figures, rendered from bench/results/scale.jsonl (never typed).

    .venv/bin/python bench/scale_table.py [--write-readme] [--check]

Renders, between ``<!-- scale:begin -->`` and ``<!-- scale:end -->`` in README.md:

* the latest record of ``bench/bench_scale.py`` over catalogs (complete or not; an incomplete one says which
  stages did not finish): per catalog and stage, seconds, milliseconds per product and peak resident memory
  (the Python process; the Neo4j JVM apart), the ratios to the 44k catalog measured in the same run, and the
  targets, met or not (or not measured);
* the latest float16-feature check (``--dtype-check``): validation figures on float32 and float16 features.

``--check`` exits non-zero when the README differs from what this renders now (tests/test_scale.py runs it).
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

from bench.catalogs_table import write_readme  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.jsonl"
README = ROOT / "README.md"
BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
STAGES = ("ingest", "snapshot", "features", "model", "predict")


def records(path: Path = RESULTS) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _n(x: Any, nd: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def _when(rec: dict[str, Any]) -> str:
    return f"record of {rec['when'][:16].replace('T', ' ')} UTC (commit `{rec.get('commit', '?')}`)"


def _runs_table(rec: dict[str, Any]) -> str:
    runs = rec.get("runs", {})
    names = [n for n in ("baseline", "scaled") if n in runs]
    head = ["catalog", "products", "stage", "seconds", "ms / product", "peak RSS MB (peak anonymous / file-backed)", "Neo4j JVM peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        r = runs[n]
        label = ("Myntra" if r.get("products") == MYNTRA_ROWS else "Myntra, first rows") if n == "baseline" \
            else "generated"
        for s in STAGES:
            if s not in r.get("stages_s", {}) and s != r.get("running"):
                continue
            done = s in r["stages_s"]
            rss = r.get("peak_rss_mb", {}).get(s)
            anon, file = r.get("peak_rss_anon_mb", {}).get(s), r.get("peak_rss_file_mb", {}).get(s)
            lines.append("| " + " | ".join([
                label, _n(r.get("products")), s if done else f"{s} (did not finish)",
                _n(r["stages_s"].get(s)), _n(r.get("ms_per_product", {}).get(s), 2),
                f"{_n(rss, 0)} ({_n(anon, 0)} / {_n(file, 0)})" if rss is not None else "—",
                _n(r.get("jvm_peak_rss_mb"), 0) if s == STAGES[0] else ""]) + " |")
    return "\n".join(lines)


MYNTRA_ROWS = 44_441
TARGET_PRODUCTS = 1_000_000


def _targets(rec: dict[str, Any]) -> str:
    t = rec.get("targets", {})
    runs = rec.get("runs", {})
    sc, base = runs.get("scaled", {}), runs.get("baseline", {})
    # the targets are for a million products against the 44k catalog; a record of other sizes shows its ratios
    apply = (sc.get("products") or 0) >= TARGET_PRODUCTS and base.get("products") == MYNTRA_ROWS
    parts = []
    timed = " + ".join(t.get("timed_stages", []))
    if rec.get("time_per_product_ratio") is not None:
        verdict = (f"target ≤ {t.get('time_ratio')}x: {'met' if rec['meets']['time_per_product'] else 'not met'}"
                   if apply else f"the target, ≤ {t.get('time_ratio')}x for {TARGET_PRODUCTS:,} products against the "
                                 f"44k catalog, is not measured by this record")
        parts.append(f"time per product ({timed}) of the {_n(sc.get('products'))}-product catalog / the "
                     f"{_n(base.get('products'))}-product one's: **{rec['time_per_product_ratio']:.2f}x** ({verdict})")
    else:
        parts.append(f"time per product ({timed}): no ratio (the run did not finish every stage)")
    rss = sc.get("peak_rss_mb_target_stages")
    stages = ", ".join(t.get("rss_stages", []))
    if rss is not None and all(s in sc.get("stages_s", {}) for s in t.get("rss_stages", [])):
        verdict = (f"target ≤ {t.get('peak_rss_mb', 0):,} MB: {'met' if rss <= t.get('peak_rss_mb', 0) else 'not met'}"
                   if apply else f"the {t.get('peak_rss_mb', 0) // 1024} GB target is for {TARGET_PRODUCTS:,} products: "
                                 f"not measured by this record")
        parts.append(f"peak RSS of the Python process over {stages}: **{rss:,.0f} MB** ({verdict})")
    else:
        parts.append(f"peak RSS over {stages}: not measured on the generated catalog (those stages did not finish)")
    ratios = rec.get("stage_ratios") or {}
    if ratios:
        parts.append("per stage: " + ", ".join(f"{s} {v:.2f}x" for s, v in ratios.items()))
    return "; ".join(parts) + "."


def scale_block(path: Path = RESULTS) -> str:
    recs = records(path)
    runs = [r for r in recs if r.get("kind") != "feature_dtype"]
    checks = [r for r in recs if r.get("kind") == "feature_dtype"]
    out = []
    if not runs:
        out.append("Rendered by `bench/scale_table.py` from `bench/results/scale.jsonl`: no run recorded yet.")
    else:
        rec = runs[-1]
        enc = rec.get("encoder")
        out.append(
            f"Rendered by `bench/scale_table.py` from `bench/results/scale.jsonl`, {_when(rec)}: a catalog of "
            f"{_n(rec.get('products'))} products generated from Myntra beside "
            f"{_n(rec.get('runs', {}).get('baseline', {}).get('products'))} Myntra products, the same code in the same run; text encoder `{enc}` ({rec.get('feature_dtype')} features), GNN options "
            f"`{json.dumps(rec.get('gnn_options'))}` plus one epoch and no time budget, torch and OpenMP threads {rec.get('threads')}, "
            f"{rec.get('cpus')} CPUs (load average {rec.get('load_avg_1m_at_start')} at the start: the machine was "
            f"shared), Neo4j heap {_n(rec.get('neo4j', {}).get('heap_mb'))} MB + page cache "
            f"{_n(rec.get('neo4j', {}).get('pagecache_mb'))} MB. "
            + ("Complete." if rec.get("complete") else "**Incomplete**: " + rec.get("missing", "not every stage finished") + "."))
        out.append("")
        out.append(_runs_table(rec))
        out.append("")
        out.append(_targets(rec))
    if checks:
        c = checks[-1]
        f32, f16 = c.get("float32", {}), c.get("float16", {})
        out.append("")
        out.append(
            f"float16 text features ({_when(c)}; the first {_n(c.get('rows'))} Myntra rows, `{c.get('encoder')}`, "
            f"{c.get('epochs')} epochs): calibrated validation Hits@1 {_n(f32.get('calibrated_valid_hits@1'), 4)} on "
            f"float32, {_n(f16.get('calibrated_valid_hits@1'), 4)} on float16 (difference "
            f"{_n(c.get('difference_calibrated_valid_hits@1'), 4)}); the features take {_n(f32.get('feature_mb'), 2)} "
            f"and {_n(f16.get('feature_mb'), 2)} MB; largest rounding of a product feature "
            f"{c.get('max_abs_rounding', 0):.1e}.")
    return "\n".join(out)


def readme_block(readme: Path = README) -> str | None:
    from bench.catalogs_table import readme_block as block

    return block(readme, BEGIN, END)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = scale_block()
    if args.write_readme:
        write_readme(text, README, BEGIN, END)
    elif args.check:
        if readme_block() != text:
            raise SystemExit("README.md's scale block differs from bench/results/scale.jsonl: run "
                             "`.venv/bin/python bench/scale_table.py --write-readme`")
    else:
        print(text)


if __name__ == "__main__":
    main()
