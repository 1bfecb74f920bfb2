"""The README's measured figures are rendered from bench/results/*.jsonl by bench/results_tables.py, never typed:
every block renders from the real records, and README.md holds exactly what the script renders now."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from bench import results_tables as rt

SOURCES = {
    "completion": "completion.jsonl", "completion-attributes": "completion.jsonl", "ceiling": "ceiling.jsonl",
    "learning-curve": "ceiling.jsonl", "label-noise": "label_noise.jsonl", "gnn-cost": "gnn_cost.jsonl",
    "text-speed": "text.jsonl", "text-quality": "text_quality.jsonl", "kge": "kge.jsonl", "kb": "kb.jsonl",
    "proposal-rules": "proposal_rules.jsonl",
    "spark": "spark.jsonl",
}


def test_every_block_has_a_source() -> None:
    assert set(rt.BLOCKS) == set(SOURCES)


@pytest.mark.parametrize("name", list(SOURCES))
def test_block_renders_from_the_recorded_results(name: str) -> None:
    text = rt.BLOCKS[name](rt.RESULTS)
    assert text.strip()
    assert "|---" in text or name == "kge"  # a table (kge: a sentence at least)
    first = text.splitlines()[0]
    # names its source file, the record's date and commit
    assert f"`bench/results/{SOURCES[name]}`" in first
    assert " UTC (commit `" in first
    assert not re.search(r"\bnan", text)  # a missing figure shows as —


def test_readme_blocks_equal_what_the_script_renders() -> None:
    have = rt.readme_blocks(rt.README)
    missing = [n for n in rt.BLOCKS if n not in have]
    assert not missing, f"README.md lacks the markers of {missing}"
    stale = [n for n, t in rt.render().items() if have[n] != t]
    assert not stale, (f"README.md blocks {stale} differ from their records: run "
                       "`.venv/bin/python bench/results_tables.py --write-readme` (never edit inside a block)")


def test_a_hand_edit_inside_a_block_is_caught(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    doc = rt.README.read_text(encoding="utf-8")
    begin, end = rt.marker("completion")
    head, rest = doc.split(begin)
    inner, tail = rest.split(end)
    readme.write_text(head + begin + inner.replace("|", "| ", 1) + end + tail, encoding="utf-8")
    assert rt.readme_blocks(readme)["completion"] != rt.render(["completion"])["completion"]
    rt.write_readme(rt.render(["completion"])["completion"], readme, begin, end)
    assert rt.readme_blocks(readme)["completion"] == rt.render(["completion"])["completion"]
    assert readme.read_text(encoding="utf-8").replace(rt.readme_blocks(readme)["completion"], "") \
        == doc.replace(rt.readme_blocks(rt.README)["completion"], "")  # nothing outside the block changed


def test_completion_rows_are_the_latest_record_per_method_on_the_latest_data() -> None:
    recs = rt.records("completion.jsonl")
    latest = recs[-1]
    sel = rt.completion_selection(recs)
    assert [m for m, _, _ in sel] == [m for m in rt.METHODS if any(m in r["methods"] for r in recs
                                                                    if r.get("fingerprint") == latest.get("fingerprint")
                                                                    and r["split"] == latest["split"])]
    for m, rec, fig in sel:
        assert rec["fingerprint"] == latest["fingerprint"] and rec["split"] == latest["split"]
        later = recs[recs.index(rec) + 1:]
        assert not any(m in r["methods"] and r.get("fingerprint") == latest["fingerprint"] for r in later)
        assert rt._f(fig["test"]["hits@1"]) in rt.completion_block()


def test_learning_curve_multiple_inverts_the_fit() -> None:
    fit = {"e_inf": 0.02, "b": 0.05, "c": 0.5}
    k = 9.0
    hits = 1 - (fit["e_inf"] + fit["b"] * k ** -fit["c"])
    assert rt._multiple(fit, hits) == "9.0x"
    assert rt._multiple(fit, 1 - fit["e_inf"] + 1e-3).startswith("never")
    assert rt._multiple({"e_inf": math.nan, "b": 1.0, "c": 1.0}, 0.9) == "—"


def test_text_speed_takes_the_latest_run_and_the_latest_run_of_each_missing_encoder(tmp_path: Path) -> None:
    def rec(run: str, enc: str, when: str) -> dict:
        return {"when": when, "commit": "abc", "run": run, "encoder": enc, "catalog_texts": 10, "threads": 2,
                "cpus": 2, "sample": {"texts": 5, "cold_texts_per_s": 1.0, "warm_texts_per_s": 2.0}}

    lines = [rec("a", "static", "2026-01-01T00:00:00+00:00"), rec("b", "minilm", "2026-01-02T00:00:00+00:00"),
             rec("b", "static", "2026-01-02T00:00:00+00:00"), rec("c", "minilm@48", "2026-01-03T00:00:00+00:00"),
             rec("c", "minilm@128", "2026-01-03T00:00:00+00:00")]
    (tmp_path / "text.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    sel = rt.text_speed_selection(rt.records("text.jsonl", tmp_path))
    assert [(r["run"], r["encoder"]) for r in sel] == [("c", "minilm@48"), ("c", "minilm@128"), ("b", "minilm"),
                                                       ("b", "static")]
    assert "`minilm@48`" in rt.text_speed_block(tmp_path)


def test_the_readme_evidence_tables_are_what_the_records_give() -> None:
    from bench import trust_tables

    doc = trust_tables.README.read_text(encoding="utf-8")
    block = doc.split(trust_tables.BEGIN)[1].split(trust_tables.END)[0].strip()
    assert block == trust_tables.render().strip()
    assert "Confirmation split" in block and "Faithfulness" in block and "**Rules**" in block
