"""The README's evidence tables, rendered from recorded benchmark results (never typed by hand).

    .venv/bin/python bench/trust_tables.py [--write-readme]

Reads the latest records of ``bench/results/confirm.jsonl`` (the confirmation split, per catalog the
latest scoring), ``faithfulness.jsonl`` and ``rules.jsonl`` and writes them between
``<!-- trust-tables:begin -->`` and ``<!-- trust-tables:end -->`` in README.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- trust-tables:begin -->", "<!-- trust-tables:end -->"


def _n(x: Any, nd: int = 3) -> str:
    from bench.results_tables import _f

    return _f(x, nd)


def _records(name: str) -> list[dict[str, Any]]:
    from bench.results_tables import records

    return records(name, RESULTS, missing_ok=True)


def _table(header: list[str], rows: list[list[str]]) -> str:
    from bench.catalogs_table import _table as table

    return table(header, rows)


def confirm_markdown() -> str | None:
    latest: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for rec in _records("confirm.jsonl"):
        for c in rec.get("catalogs", []):
            latest[c["catalog"]] = (rec, c)
    if not latest:
        return None
    rows = []
    for name, (rec, c) in latest.items():
        rp, m, d = c["reported"], c["measured"], c["difference"]
        rows.append([name, rec["commit"], _n(m["graded"]), _n(rp["ece"], 4), _n(m["ece"], 4), _n(d["ece"], 4),
                     _n(rp["precision_at_threshold"], 4), _n(m["precision_at_threshold"], 4),
                     _n(d["precision_at_threshold"], 4), _n(rp["coverage_at_threshold"]), _n(m["coverage_at_threshold"]),
                     f"{m['overstated_blocks']} of {m['blocks']} ({_n(m['predictions_in_overstated_blocks'])} predictions)",
                     _n(m.get("significantly_overstated_blocks")), _n(m.get("fit_blocks_over_lower_bound")),
                     _n(m["worst_overstatement"])])
    return ("**Confirmation split** (`bench/bench_confirm.py`; 10% of the products, whole title groups, all their facts "
            "hidden; the model fitted as `attrgraph train` fits it on the rest; reported = its cross-fitted "
            "validation figures, confirmation = measured on the hidden facts; per block of the isotonic calibrator "
            "(and per gap between blocks), its stated p against the one-sided 95% Clopper-Pearson bounds of its "
            "accuracy on the hidden facts):\n\n"
            + _table(["catalog", "commit", "hidden facts graded", "ECE reported", "ECE confirmation", "Δ",
                      "precision@thr reported", "precision@thr confirmation", "Δ", "coverage reported",
                      "coverage confirmation", "blocks over LB + 0.02", "blocks over the upper bound",
                      "blocks over their fit-time LB + 0.02", "worst p − LB"], rows))


def faithfulness_markdown() -> str | None:
    recs = _records("faithfulness.jsonl")
    if not recs:
        return None
    rec = recs[-1]
    rows = [[c["catalog"], _n(c["sampled"]), _n(c["with_cited_features"]), _n(c["faithfulness"]),
             _n(c["random_baseline"]), _n(c["faithfulness_over_all_sampled"]), _n(c["mean_drop_cited"]),
             _n(c["mean_drop_random"])] for c in rec["catalogs"]]
    return (f"**Faithfulness of the cited text features** (`bench/bench_faithfulness.py`, commit {rec['commit']}, "
            f"seed {rec['seed']}; deleting the tokens behind an explanation's cited features vs as many random "
            "tokens of the same kinds; share of sampled top-1 predictions whose chosen value's probability fell):\n\n"
            + _table(["catalog", "sampled", "citing features", "faithfulness", "random deletion",
                      "faithful over all sampled", "mean drop (cited)", "mean drop (random)"], rows))


def rules_markdown() -> str | None:
    recs = _records("rules.jsonl")
    if not recs:
        return None
    from bench.bench_rules import readme_markdown, readme_records  # the rules benchmark knows its own record

    reported, decided = readme_records(recs)
    return readme_markdown(reported, decided) if reported is not None else None


def render() -> str:
    parts = [p for p in (confirm_markdown(), faithfulness_markdown(), rules_markdown()) if p]
    return "\n\n".join(parts) if parts else "(no recorded results yet)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    text = render()
    print(text)
    if args.write_readme:
        from bench.catalogs_table import write_readme

        write_readme(text, README, BEGIN, END)


if __name__ == "__main__":
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    main()
