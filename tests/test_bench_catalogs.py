"""The cross-catalog benchmark end to end on a small catalog: the stress derivation of the shipped
Myntra sample (300 rows), ingested into the test Neo4j, both splits, majority + TF-IDF."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graph import Neo4jSettings, ProductGraph

from .conftest import SAMPLE

pytestmark = pytest.mark.neo4j

ROW_KEYS = {"catalog", "split", "method", "valid_hits@1", "test_hits@1", "test_not_in_text_hits@1", "test_mrr",
            "test_ece", "applicable_share", "fit_seconds", "predict_seconds", "peak_rss_mb", "max_rss_mb",
            "test_pairs", "not_in_text_pairs", "valid_pairs"}


def test_stress_catalog_is_category_specific(tmp_path: Path) -> None:
    from bench.bench_catalogs import write_stress_catalog
    from ingest import Mapping

    data, mapping, counts = write_stress_catalog(SAMPLE, tmp_path, limit=50, name="tiny-stress")
    rows = [json.loads(line) for line in gzip.open(data, "rt", encoding="utf-8")]
    assert len(rows) == counts["rows"] == 50
    keys = {k for r in rows for k in (r.get("articleAttributes") or {})}
    assert keys and all(k.endswith(")") and " (" in k for k in keys) and counts["attribute_names"] == len(keys)
    assert Mapping.load(mapping).name == "tiny-stress"


def test_bench_catalogs_small_run(neo4j_settings: Neo4jSettings, tmp_path: Path) -> None:
    from bench.bench_catalogs import Catalog, run, title_keys
    from bench.catalogs_table import load_runs, render
    from gnn.protocol import TEST, TRAIN, make_split
    from gnn.snapshot import load_snapshot

    g = ProductGraph.connect(neo4j_settings.uri, neo4j_settings.user, neo4j_settings.password, neo4j_settings.database)
    try:
        rec = run(catalogs=[Catalog("sample-stress", SAMPLE, "myntra", derive="stress")],
                  methods=["majority", "tfidf"], max_products=300, threads=1, graph=g, out_dir=tmp_path / "out",
                  results=tmp_path / "catalogs.jsonl", work_dir=tmp_path / "work", log=lambda _: None)
    finally:
        g.close()
    assert {"when", "commit", "settings", "host", "catalogs", "rows", "seconds", "max_rss_mb"} <= set(rec)
    assert rec["settings"]["max_products"] == 300 and rec["settings"]["encoder"] is None  # no method reads text
    assert [(r["split"], r["method"]) for r in rec["rows"]] == [("random", "majority"), ("random", "tfidf"),
                                                                 ("title", "majority"), ("title", "tfidf")]
    for r in rec["rows"]:
        assert "error" not in r, r.get("traceback")
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        for k in ("valid_hits@1", "test_hits@1", "test_not_in_text_hits@1", "test_mrr", "test_ece", "applicable_share"):
            assert 0 <= r[k] <= 1, (k, r[k])
        assert r["test_hits@1"] > 0.5 and r["peak_rss_mb"] > 0 and r["max_rss_mb"] >= r["peak_rss_mb"] * 0.5
    cat = rec["catalogs"]["sample-stress"]
    assert cat["ingest"]["products"] == 300 and cat["counts"]["attribute"] > 20
    assert cat["splits"]["title"]["test_pairs_with_title_twin_in_train"] == 0.0

    # independently of the bench's own check: the title split keeps every title on one side
    snap = load_snapshot(tmp_path / "work" / "sample-stress" / "snapshot")
    keys = title_keys(snap)
    assert len(set(keys)) < len(keys)  # the sample has title twins
    sp = make_split(snap, seed=0, group_by="title")
    train = {keys[p] for p in sp.product[sp.split == TRAIN].tolist()}
    assert not any(keys[p] in train for p in sp.product[sp.split == TEST].tolist())
    assert np.array_equal(sp.split, make_split(snap, seed=0, group_by="title").split)

    # the recorded line, the report and the plot
    runs = load_runs(tmp_path / "catalogs.jsonl", include_subsets=True)
    assert len(runs) == 1 and len(load_runs(tmp_path / "catalogs.jsonl")) == 0  # a subset run is no README figure
    for text in (render(runs[0]), (tmp_path / "out" / "report.md").read_text()):
        assert text.count("| sample-stress |") == 5  # one row in the catalogs table, four in the methods table
        assert "| sample-stress | title | tfidf |" in text
    assert (tmp_path / "out" / "hits.png").stat().st_size > 1000


def test_the_readme_table_takes_the_latest_complete_run_and_lists_partial_runs_after_it() -> None:
    from bench.bench_catalogs import CATALOGS, DEFAULT_METHODS
    from bench.catalogs_table import is_complete, later_markdown

    def rec(commit: str, catalogs: list[str], methods: list[str], valid: float) -> dict[str, Any]:
        return {"commit": commit, "when": "2026-12-04T04:00:00+00:00",
                "settings": {"catalogs": catalogs, "methods": methods, "max_products": None, "encoder": "minilm"},
                "rows": [{"catalog": c, "split": "random", "method": m, "valid_hits@1": valid, "test_hits@1": valid}
                         for c in catalogs for m in methods]}

    full = rec("aaa", list(CATALOGS), list(DEFAULT_METHODS), 0.5)
    part = rec("bbb", ["taobao"], ["gnn"], 0.5125)
    assert is_complete(full) and not is_complete(part)
    table = later_markdown(full, [part])
    row = [line for line in table.splitlines() if "| taobao |" in line]
    assert len(row) == 1 and "| bbb |" in row[0] and "| +1.25 | +1.25 |" in row[0]


def test_the_readme_tables_are_what_the_records_give() -> None:
    """The catalogs and input-ablation blocks of the README equal what bench/catalogs_table.py renders from
    bench/results (no typed figure)."""
    from bench.catalogs_table import README, readme_blocks

    doc = README.read_text(encoding="utf-8")
    blocks = readme_blocks()
    assert blocks, "no recorded cross-catalog run"
    for (begin, end), text in blocks.items():
        assert doc.count(begin) == 1 and doc.count(end) == 1, begin
        assert doc.split(begin)[1].split(end)[0].strip() == text.strip(), f"{begin}: rerun bench/catalogs_table.py --write-readme"
