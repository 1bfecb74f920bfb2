"""The README's distributed-training figures come from bench/results/distributed.jsonl through
bench/distributed_table.py, never typed: the README block is exactly what the script renders now."""

from __future__ import annotations

import json
from pathlib import Path

from bench import distributed_table as dt


def test_readme_block_equals_what_the_records_render() -> None:
    have = dt.readme_block(dt.README)
    assert have is not None, "README.md lacks the distributed markers"
    assert have == dt.render(), "run `.venv/bin/python bench/distributed_table.py --write-readme` (never edit inside the block)"


def _records(tmp: Path) -> Path:
    compare = {"bench": "myntra-1v2", "when": "2026-12-04T16:00:00+00:00", "commit": "abc1234", "uncommitted_changes": [],
               "products": 44441, "max_products": None, "seed": 0, "epochs": 3,
               "split": {"train": 348166, "valid": 43521, "test": 43521}, "host": {"cpus": 2, "load_avg_1m_at_start": 3.0},
               "runs": {"1": {"ranks": 1, "threads_per_rank": 2, "valid_hits@1": 0.9431, "test_hits@1": 0.9412,
                              "epochs_run": 3, "prior_seconds": 100.0, "fit_seconds": 500.0},
                        "2": {"ranks": 2, "threads_per_rank": 1, "valid_hits@1": 0.9429, "test_hits@1": 0.9415,
                              "epochs_run": 3, "prior_seconds": 150.0, "fit_seconds": 400.0,
                              "distributed": {"steps": 120}}},
               "delta_points": {"valid_hits@1": -0.02, "test_hits@1": 0.03}, "target_points": 0.5, "within_target": True,
               "fit_seconds_ratio_1_over_2": 1.25}
    by = {str(b): {"compute_s": 0.1 * b / 256, "optimizer_s": 0.01, "sparse_rows": 1000.0 * b / 256,
                   "sparse_bytes": 520e3 * b / 256} for b in (64, 128, 256)}
    pred = {"2x256": {"ranks": 2, "batch": 256, "t1_s": 0.11, "tn_s": 0.062, "allreduce_s": 0.002, "speedup": 1.77}}
    sim = {"bench": "scaling-simulation", "kind": "prediction", "when": "2026-12-04T16:30:00+00:00", "commit": "abc1234",
           "steps": {"dense_parameters": 900000, "dense_gradient_bytes": 3.6e6, "sparse_table_rows": 300000, "by_batch": by},
           "allreduce": {"median_seconds_by_bytes": {"4": 1e-4, "1024": 1.1e-4}, "latency_s": 1e-4,
                         "bandwidth_bytes_per_s": 2e9},
           "model": "T(n) = C(B/n) + A(n) + O(B)", "predicted_loopback": pred, "predicted_hosts": pred,
           "host_link": {"latency_s": 5e-5, "bandwidth_bytes_per_s": 1.25e9}, "targets": {"2": 1.7, "4": 3.2, "min_batch": 256},
           "meets_targets": True}
    (tmp / "distributed.jsonl").write_text(json.dumps(compare) + "\n" + json.dumps(sim) + "\n", encoding="utf-8")
    return tmp


def test_render_shows_the_recorded_figures_and_calls_the_simulation_a_prediction(tmp_path: Path) -> None:
    text = dt.render(_records(tmp_path))
    first = text.splitlines()[0]
    assert "`bench/results/distributed.jsonl`" in first and "(commit `abc1234`)" in first
    assert "| 1 | 2 | 0.9431 | 0.9412 |" in text and "| 2 | 1 | 0.9429 | 0.9415 |" in text
    assert "valid -0.02, test +0.03 Hits@1 points" in text and "met" in text
    assert "A prediction, not a measured speed-up" in text and "**1.77x**" in text
    assert dt.render(tmp_path / "none") .startswith("(no recorded results yet")


def test_a_hand_edit_inside_the_block_is_caught(tmp_path: Path) -> None:
    from bench.catalogs_table import write_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{dt.BEGIN}\n{dt.render()}\n{dt.END}\nrest\n", encoding="utf-8")
    assert dt.readme_block(readme) == dt.render()
    readme.write_text(readme.read_text(encoding="utf-8").replace(dt.END, "edited by hand\n" + dt.END), encoding="utf-8")
    assert dt.readme_block(readme) != dt.render()
    write_readme(dt.render(), readme, dt.BEGIN, dt.END)
    assert dt.readme_block(readme) == dt.render() and readme.read_text(encoding="utf-8").endswith("rest\n")
