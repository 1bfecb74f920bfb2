"""The audit of the whole Myntra catalog (44,441 products) in the real Neo4j, with its counts.

Every finding and every count per rule, category and attribute is checked against the same
independent recount (plain Python over the raw file, no kb) as the sample audit in
``test_kb_neo4j.py``. The counts are printed, so the test log reports them.
"""

from __future__ import annotations

import gzip
import json

import pytest

from graph import ProductGraph
from tests.conftest import SHARED
from tests.test_kb_neo4j import audit_matches_recount, raw_from_records

pytestmark = [pytest.mark.neo4j, pytest.mark.slow]

MYNTRA = SHARED / "myntra" / "styles.jsonl.gz"


def test_audit_of_the_full_myntra_catalog(empty_graph: ProductGraph, capsys: pytest.CaptureFixture) -> None:
    rep_in = empty_graph.ingest(MYNTRA, mapping="myntra")
    with gzip.open(MYNTRA, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    assert rep_in.rows_rejected == 0 and rep_in.products_created == len(records) == 44441
    raw = raw_from_records(records)
    rep, expected = audit_matches_recount(empty_graph, raw)
    counts = rep.rule_counts()
    assert sum(counts.values()) == len(rep) > 0
    # findings of the declared Myntra rules and of the learned default rules both occur in the catalog
    assert counts["myntra.kids-not-adult-gender"] > 0 and counts["known-value"] > 0 and counts["applicability"] > 0
    with capsys.disabled():
        print(f"\nMyntra audit: {rep.facts_checked} facts and {rep.brands_checked} brands checked, "
              f"{len(rep)} violations")
        for rid, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            print(f"  {rid:45s} {n:7d}")
