"""The README's distributed-training figures, rendered from ``bench/results/distributed.jsonl`` (never typed).

    .venv/bin/python bench/distributed_table.py [--write-readme] [--check]

Two parts, each from the latest record of its kind (``bench/bench_distributed.py`` appends them):
the Myntra comparison of 1 rank and 2 ranks (``"bench": "myntra-1v2"``; the latest run on the whole
catalog, else the latest run), and the scaling simulation (``"bench": "scaling-simulation"``: measured
step costs and all-reduce times, and the speed-up they *predict*). Written between
``<!-- distributed:begin -->`` and ``<!-- distributed:end -->`` in README.md; ``--check`` exits non-zero
when the README's block differs from what this renders now.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
FILE = "distributed.jsonl"
BEGIN, END = "<!-- distributed:begin -->", "<!-- distributed:end -->"


def _f(x: Any, nd: int = 3) -> str:
    from bench.results_tables import _f as f

    return f(x, nd)


def _table(header: list[str], rows: list[list[str]]) -> str:
    from bench.catalogs_table import _table as table

    return table(header, rows)


def _head(rec: dict[str, Any]) -> str:
    from bench.results_tables import _commit, _when

    return f"Rendered by `bench/distributed_table.py` from `bench/results/{FILE}`, record of {_when(rec)} (commit {_commit(rec)})"


def _records(results: Path) -> list[dict[str, Any]]:
    from bench.results_tables import records

    return records(FILE, results, missing_ok=True)


def compare_markdown(results: Path = RESULTS) -> str | None:
    recs = [r for r in _records(results) if r.get("bench") == "myntra-1v2"]
    if not recs:
        return None
    full = [r for r in recs if r.get("max_products") is None]
    rec = (full or recs)[-1]
    rows = []
    for key in ("1", "2"):
        r = rec["runs"][key]
        rows.append([str(r["ranks"]), str(r["threads_per_rank"]), _f(r["valid_hits@1"], 4), _f(r["test_hits@1"], 4),
                     _f(r.get("epochs_run")), _f(r.get("prior_seconds"), 1), _f(r["fit_seconds"], 1),
                     _f(r.get("distributed", {}).get("steps")) if key == "2" else "—"])
    d = rec["delta_points"]
    s = rec["split"]
    load = rec.get("host", {}).get("load_avg_1m_at_start")
    return (f"{_head(rec)}: Myntra ({_f(rec['products'])} products{'' if rec.get('max_products') is None else ', the first rows only'}), "
            f"the protocol split (seed {rec['seed']}: {_f(s['train'])} / {_f(s['valid'])} / {_f(s['test'])} train / valid / "
            f"test pairs), the default GNN for exactly {rec['epochs']} epochs (no early stop, no time budget), same seed:\n\n"
            + _table(["ranks", "torch threads per rank", "valid Hits@1", "test Hits@1", "epochs", "prior s (rank 0)",
                      "fit s", "optimizer steps"], rows)
            + f"\n\n2 ranks − 1 rank: valid {d['valid_hits@1']:+.2f}, test {d['test_hits@1']:+.2f} Hits@1 points "
            f"(target: within ±{rec['target_points']}: {'met' if rec['within_target'] else 'missed'}). "
            f"Fit seconds 1 rank / 2 ranks: {_f(rec['fit_seconds_ratio_1_over_2'], 2)} on {rec['host']['cpus']} CPUs shared "
            f"with other work (load average {_f(load, 1)} at the start): a ratio of that run, not a speed-up to expect.")


def simulation_markdown(results: Path = RESULTS) -> str | None:
    recs = [r for r in _records(results) if r.get("bench") == "scaling-simulation"]
    if not recs:
        return None
    rec = recs[-1]
    st, ar = rec["steps"], rec["allreduce"]
    bb = sorted(st["by_batch"], key=int)
    rows = [[_f(int(b)), _f(st["by_batch"][b]["compute_s"], 3), _f(st["by_batch"][b].get("compute_wall_s"), 3),
             _f(st["by_batch"][b]["optimizer_s"], 3), _f(int(round(st["by_batch"][b]["sparse_rows"]))),
             _f(st["by_batch"][b]["sparse_bytes"] / 1e6, 1)] for b in bb]
    measured = _table(["batch (products)", "rank-local step, CPU s (sample, forward, backward; 1 thread)", "the same, wall s",
                       "optimizer step, CPU s", "TF-IDF rows with a gradient", "sparse gradient MB"], rows)
    ar_rows = [[_f(int(k)), _f(v * 1e3, 3)] for k, v in sorted(ar["median_seconds_by_bytes"].items(), key=lambda kv: int(kv[0]))]
    ar_table = _table(["message bytes", "all-reduce ms (median)"], ar_rows)
    pred_rows = []
    for key, v in rec["predicted_loopback"].items():
        h = rec["predicted_hosts"][key]
        pred_rows.append([str(v["ranks"]), _f(v["batch"]), _f(v["t1_s"], 3), _f(v["tn_s"], 3), _f(v["allreduce_s"] * 1e3, 2),
                          f"**{v['speedup']:.2f}x**", _f(h["allreduce_s"] * 1e3, 2), f"{h['speedup']:.2f}x"])
    pred = _table(["ranks", "global batch", "T(1) s", "T(n) s, one host", "all-reduce ms, one host",
                   "predicted speed-up, one host", "all-reduce ms, hosts", "predicted speed-up, hosts"], pred_rows)
    weak = rec.get("predicted_weak_loopback")
    if weak:
        pred += ("\n\nIf instead every rank keeps a batch of B products (a global batch of nB, n times fewer steps an "
                 "epoch; the optimizer then steps the rows of nB products): predicted epoch speed-up, one host, "
                 "n (C(B) + O(B)) / (C(B) + A(n) + O(nB)):\n\n"
                 + _table(["ranks", "batch per rank", "T(1) s", "T(n) s", "predicted epoch speed-up"],
                          [[str(v["ranks"]), _f(v["batch_per_rank"]), _f(v["t1_s"], 3), _f(v["tn_s"], 3),
                            f"{v['epoch_speedup']:.2f}x"] for v in weak.values()]))
    link = rec["host_link"]
    t = rec["targets"]
    return (f"{_head(rec)}. **A prediction, not a measured speed-up.** Measured on this machine: the default GNN on "
            f"Myntra ({_f(st['dense_parameters'])} dense parameters, {_f(st['dense_gradient_bytes'] / 1e6, 1)} MB of dense "
            f"gradient a step; the TF-IDF table has {_f(st['sparse_table_rows'])} rows) and gloo's all-reduce between 2 "
            f"processes on loopback, fitted as latency {_f(ar['latency_s'] * 1e6, 0)} µs + bytes / "
            f"{_f(ar['bandwidth_bytes_per_s'] / 1e9, 2)} GB/s:\n\n" + measured + "\n\n" + ar_table
            + "\n\nThe model: " + f"`{rec['model']}` (C: the rank-local step's CPU seconds at the batch a rank gets, interpolated "
            "linearly between the measured sizes; O: the optimizer step, the same on every rank; the sparse "
            "TF-IDF gradient is all-gathered, so each rank receives the others' rows). \"hosts\": the same with "
            f"links of {_f(link['bandwidth_bytes_per_s'] * 8 / 1e9, 0)} Gbit/s and {_f(link['latency_s'] * 1e6, 0)} µs "
            "instead of loopback.\n\n" + pred
            + f"\n\nTarget (batches ≥ {t['min_batch']}): ≥ {t['2']}x at 2 ranks, ≥ {t['4']}x at 4: "
            f"{'met' if rec['meets_targets'] else 'missed'} by the one-host prediction.")


def render(results: Path = RESULTS) -> str:
    parts = [p for p in (compare_markdown(results), simulation_markdown(results)) if p]
    return "\n\n".join(parts) if parts else "(no recorded results yet: run `bench/bench_distributed.py`)"


def readme_block(readme: Path = README) -> str | None:
    from bench.catalogs_table import readme_block as block

    return block(readme, BEGIN, END)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = render()
    if args.check:
        sys.exit(0 if readme_block() == text else "README.md's distributed block differs from its records: "
                 "run bench/distributed_table.py --write-readme")
    print(text)
    if args.write_readme:
        from bench.catalogs_table import write_readme

        write_readme(text, README, BEGIN, END)


if __name__ == "__main__":
    main()
