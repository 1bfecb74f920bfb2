"""Tables of the cross-catalog benchmark from its recorded runs (bench/results/catalogs.jsonl).

    python bench/catalogs_table.py [--results bench/results/catalogs.jsonl] [--run -1] [--include-subsets]
                                   [--write-readme]

Prints the catalogs table and the methods table of one recorded run: by default the latest *complete*
run (every catalog and every method of ``bench_catalogs``' defaults) over all products (``max_products``
null); ``--include-subsets`` also considers runs on the first N rows and partial runs; ``--run K`` picks
the K-th of the eligible runs (Python indexing). Runs recorded after the chosen one over all products,
on some catalogs or methods only (a change measured where it matters, another encoder), follow in a
third table, each row beside the chosen run's figure for the same catalog, split and method. ``--write-readme`` puts both tables
into README.md between the markers ``<!-- catalogs-table:begin -->`` and ``<!-- catalogs-table:end -->``,
so README figures always come from a recorded run, never typed. ``bench/bench_catalogs.py`` renders
its report with the same functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "catalogs.jsonl"
README = ROOT / "README.md"
BEGIN, END = "<!-- catalogs-table:begin -->", "<!-- catalogs-table:end -->"


def _n(x: Any, nd: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{nd}f}" if abs(x) < 100 or nd == 0 else f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _s(x: Any) -> str:
    """Seconds: one decimal below 100, none above."""
    if x is None:
        return "—"
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def table_markdown(record: dict[str, Any]) -> str:
    """One row per catalog x split x method: valid H@1, test H@1, ¬text H@1, MRR, ECE, applicable share,
    fit s, predict s, peak RSS."""
    header = ["catalog", "split", "method", "valid H@1", "test H@1", "¬text H@1", "MRR", "ECE", "applicable",
              "fit s", "predict s", "peak RSS MB"]
    rows = []
    for r in record["rows"]:
        if "error" in r:
            rows.append([r["catalog"], r["split"], r["method"], f"failed: {r['error'][:80]}"] + ["—"] * 8)
            continue
        rows.append([r["catalog"], r["split"], r["method"], _n(r.get("valid_hits@1")), _n(r.get("test_hits@1")),
                     _n(r.get("test_not_in_text_hits@1")), _n(r.get("test_mrr")), _n(r.get("test_ece")),
                     _n(r.get("applicable_share")), _s(r.get("fit_seconds")), _s(r.get("predict_seconds")),
                     _n(r.get("peak_rss_mb"), 0)])
    return _table(header, rows)


def catalogs_markdown(record: dict[str, Any]) -> str:
    """One row per catalog x split: sizes, the split's pairs, title twins, literal values (whole words, and
    as plain substrings) and values never seen in training among the test pairs; the catalog's ingest
    and text-feature seconds on its first row."""
    header = ["catalog", "split", "products", "attributes", "values", "brands", "categories",
              "train / valid / test pairs", "cold products", "test: title twin in train",
              "test: value in text (as substring)", "test: value unseen in train", "ingest s", "features s (texts encoded)"]
    rows = []
    for name, c in record["catalogs"].items():
        k = c.get("counts", {})
        for i, (sname, s) in enumerate(c.get("splits", {}).items()):
            sm = s["summary"]
            feats = c.get("features") or {}
            rows.append([name if i == 0 else "", sname, _n(k.get("product")), _n(k.get("attribute")), _n(k.get("value")),
                         _n(k.get("brand")), _n(k.get("category")),
                         f"{_n(sm['train_pairs'])} / {_n(sm['valid_pairs'])} / {_n(sm['test_pairs'])}",
                         _n(sm["cold_products"]), _n(s.get("test_pairs_with_title_twin_in_train")),
                         f"{_n(s.get('test_value_in_text'))} ({_n(s.get('test_value_substring_of_text'))})",
                         _n(s.get("test_value_unseen_in_train")),
                         _s(c["ingest"]["seconds"]) if i == 0 else "",
                         (f"{_s(feats.get('seconds'))} ({_n(feats.get('encoded'))})" if feats else "—") if i == 0 else ""])
    return _table(header, rows)


def load_runs(path: Path = RESULTS, *, include_subsets: bool = False) -> list[dict[str, Any]]:
    if not path.exists():
        raise SystemExit(f"{path}: no recorded runs; run bench/bench_catalogs.py first")
    runs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in runs if include_subsets or r["settings"].get("max_products") is None]


def is_complete(record: dict[str, Any]) -> bool:
    """Every catalog and every method of the benchmark's defaults, over all products."""
    from bench.bench_catalogs import CATALOGS, DEFAULT_METHODS

    st = record["settings"]
    return (st.get("max_products") is None and set(CATALOGS) <= set(st.get("catalogs", ()))
            and set(DEFAULT_METHODS) <= set(st.get("methods", ())))


def later_markdown(base: dict[str, Any], later: list[dict[str, Any]]) -> str:
    """One row per catalog x split x method of each later run, with the base run's valid and test Hits@1
    for the same catalog, split and method and the differences (later - base, points)."""
    ref = {(r["catalog"], r["split"], r["method"]): r for r in base["rows"] if "error" not in r}
    header = ["recorded", "commit", "encoder", "catalog", "split", "method", "valid H@1", "test H@1", "¬text H@1",
              "ECE", "fit s", f"valid H@1 at {base['commit']}", "Δ valid, points", "Δ test, points"]
    rows = []
    for rec in later:
        dirty = " (uncommitted changes)" if rec.get("uncommitted_changes") else ""
        for r in rec["rows"]:
            head = [rec["when"][:16].replace("T", " "), rec["commit"] + dirty, str(rec["settings"].get("encoder") or "—"),
                    r["catalog"], r["split"], r["method"]]
            if "error" in r:
                rows.append(head + [f"failed: {r['error'][:60]}"] + ["—"] * 7)
                continue
            b = ref.get((r["catalog"], r["split"], r["method"]))

            def d(k: str) -> str:
                if b is None or r.get(k) is None or b.get(k) is None:
                    return "—"
                return f"{100 * (r[k] - b[k]):+.2f}"

            rows.append(head + [_n(r.get("valid_hits@1")), _n(r.get("test_hits@1")), _n(r.get("test_not_in_text_hits@1")),
                                _n(r.get("test_ece")), _s(r.get("fit_seconds")),
                                _n(b.get("valid_hits@1")) if b else "—", d("valid_hits@1"), d("test_hits@1")])
    return _table(header, rows)


def _commit(record: dict[str, Any]) -> str:
    """The record's commit, with the files it had uncommitted changes to."""
    dirty = record.get("uncommitted_changes")
    return record["commit"] + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")


def render(record: dict[str, Any], later: list[dict[str, Any]] | None = None) -> str:
    st = record["settings"]
    size = "all products" if st.get("max_products") is None else f"first {st['max_products']} rows"
    return (f"Recorded {record['when']} (commit {_commit(record)}; {size}; seed {st['seed']}; encoder "
            f"{st.get('encoder') or '—'} ({st.get('text_cache', 'default')} text cache); {st['threads']} threads; {record['seconds']:,.0f} s in all, max RSS "
            f"{record['max_rss_mb']:,.0f} MB), rendered by `bench/catalogs_table.py` from "
            f"`bench/results/catalogs.jsonl`:\n\n{catalogs_markdown(record)}\n\n{table_markdown(record)}"
            + (f"\n\nRecorded since, over all products, on some catalogs or methods (same protocol and defaults "
               f"unless the encoder column says otherwise; the differences mix the code changes between the two "
               f"commits):\n\n{later_markdown(record, later)}" if later else ""))


INPUTS = ROOT / "bench" / "results" / "inputs.jsonl"
INPUTS_BEGIN, INPUTS_END = "<!-- inputs-table:begin -->", "<!-- inputs-table:end -->"


def inputs_markdown(record: dict[str, Any], base: str = "gnn") -> str:
    """What each input adds: per catalog x split, the ``base`` model's valid and test Hits@1 and, per
    variant of the same run with an input switched off (or changed), the difference to it in points
    (variant - base; negative: the input helps). Decisions read the valid column only."""
    from bench.bench_completion import GNN_VARIANTS

    rows_by = {(r["catalog"], r["split"], r["method"]): r for r in record["rows"] if "error" not in r}
    variants = [m for m in record["settings"]["methods"] if m != base]
    header = ["catalog", "split", f"`{base}` valid / test H@1"] + [f"`{m}` Δ valid / Δ test" for m in variants]
    out = []
    seen: list[tuple[str, str]] = []
    for r in record["rows"]:
        if (r["catalog"], r["split"]) not in seen:
            seen.append((r["catalog"], r["split"]))
    for cat, split in seen:
        b = rows_by.get((cat, split, base))
        line = [cat, split, f"{_n(b.get('valid_hits@1'))} / {_n(b.get('test_hits@1'))}" if b else "—"]
        for m in variants:
            v = rows_by.get((cat, split, m))
            if b is None or v is None or v.get("valid_hits@1") is None:
                line.append("failed" if (cat, split, m) in {(x["catalog"], x["split"], x["method"]) for x in record["rows"]}
                            else "—")
                continue
            line.append(f"{100 * (v['valid_hits@1'] - b['valid_hits@1']):+.2f} / "
                        f"{100 * (v['test_hits@1'] - b['test_hits@1']):+.2f}")
        out.append(line)
    legend = "; ".join(f"`{m}`: {', '.join(f'{k}={v}' for k, v in GNN_VARIANTS.get(m, {}).items()) or 'as is'}"
                       for m in variants)
    st = record["settings"]
    size = "all products" if st.get("max_products") is None else f"the first {st['max_products']:,} rows of each catalog"
    return (f"Recorded {record['when']} (commit {_commit(record)}; {size}; seed {st['seed']}; encoder {st.get('encoder') or '—'}; "
            f"{st['threads']} threads; {record['seconds']:,.0f} s in all), rendered by `bench/catalogs_table.py "
            f"--inputs` from `bench/results/inputs.jsonl`. Differences in Hits@1 points against `{base}` of the same "
            f"run (negative: switching the input off loses). Variants: {legend}.\n\n{_table(header, out)}")


def readme_block(readme: Path = README, begin: str = BEGIN, end: str = END) -> str | None:
    """What stands between the ``begin`` and ``end`` markers of ``readme`` (None: no single such block)."""
    doc = readme.read_text(encoding="utf-8")
    if doc.count(begin) != 1 or doc.count(end) != 1:
        return None
    return doc.split(begin)[1].split(end)[0].strip("\n")


def write_readme(text: str, readme: Path = README, begin: str = BEGIN, end: str = END) -> None:
    """Replace what stands between the ``begin`` and ``end`` markers of ``readme`` with ``text``."""
    doc = readme.read_text(encoding="utf-8")
    if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
        raise SystemExit(f"{readme}: needs one {begin} ... {end} block")
    head, rest = doc.split(begin)
    _, tail = rest.split(end)
    readme.write_text(f"{head}{begin}\n{text}\n{end}{tail}", encoding="utf-8")


def _later(every: list[dict[str, Any]], rec: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs over all products recorded after ``rec``."""
    return [r for r in every[every.index(rec) + 1:] if r["settings"].get("max_products") is None]


def readme_blocks(results: Path = RESULTS, inputs: Path = INPUTS) -> dict[tuple[str, str], str]:
    """What ``--write-readme`` puts between each pair of markers: the latest complete run (with the partial
    runs since) and, when recorded, the latest input ablation."""
    every = load_runs(results)
    runs = [r for r in every if is_complete(r)]
    out: dict[tuple[str, str], str] = {}
    if runs:
        out[(BEGIN, END)] = render(runs[-1], _later(every, runs[-1]))
    if inputs.exists():
        recs = [json.loads(x) for x in inputs.read_text(encoding="utf-8").splitlines() if x.strip()]
        if recs:
            out[(INPUTS_BEGIN, INPUTS_END)] = inputs_markdown(recs[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--run", type=int, default=-1, help="which eligible run (Python index; default the latest)")
    ap.add_argument("--include-subsets", action="store_true", help="runs on the first N rows are eligible too")
    ap.add_argument("--write-readme", action="store_true", help="replace the README's catalogs-table block")
    ap.add_argument("--inputs", action="store_true",
                    help="the input ablation instead: the latest run of bench/results/inputs.jsonl (README block "
                         "inputs-table)")
    args = ap.parse_args()
    if args.inputs:
        path = args.results if args.results != RESULTS else INPUTS
        runs = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        if not runs:
            sys.exit(f"{path}: no recorded run")
        text = inputs_markdown(runs[args.run])
        print(text)
        if args.write_readme:
            write_readme(text, begin=INPUTS_BEGIN, end=INPUTS_END)
            print(f"\nwritten into {README}")
        return
    every = load_runs(args.results, include_subsets=args.include_subsets)
    runs = every if args.include_subsets else [r for r in every if is_complete(r)]
    if not runs:
        sys.exit(f"{args.results}: no eligible run (runs on a subset or some catalogs need --include-subsets)")
    try:
        rec = runs[args.run]
    except IndexError:
        sys.exit(f"--run {args.run}: there are {len(runs)} eligible runs")
    text = render(rec, _later(every, rec))
    print(text)
    if args.write_readme:
        write_readme(text)
        print(f"\nwritten into {README}")


if __name__ == "__main__":
    main()
