"""Ingest against the real Neo4j: counts, idempotency, updates, rejections, hostile input."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from graph import ProductGraph
from ingest import IngestError, Mapping
from tests.conftest import SAMPLE, SHARED, write_jsonl

pytestmark = pytest.mark.neo4j

SIMPLE = Mapping.from_yaml(
    """
name: simple
id: id
title: title
description: desc
brand: brand
category: {field: cat, separator: "/"}
attributes:
  - field: colour
  - map: attrs
properties: [note]
""",
    "simple.yaml",
)


def counts(g: ProductGraph) -> dict:
    return vars(g.stats())


def facts_of(g: ProductGraph, pid: str) -> set[tuple[str, str]]:
    p = g.product(pid)
    assert p is not None
    return {(f.attribute, f.value) for f in p.facts}


def test_sample_counts_match_the_source(empty_graph: ProductGraph, sample_records: list[dict]) -> None:
    rep = empty_graph.ingest(SAMPLE, mapping="myntra", batch_size=400)
    assert rep.status == "completed" and rep.rows_read == len(sample_records) == rep.products_created
    m = Mapping.load(Path("ingest/mappings/myntra.yaml"))
    mapped = [m.apply(r) for r in sample_records]
    n_values = sum(len(p.facts) for p in mapped)
    n_brands = len({p.brand.norm for p in mapped if p.brand})
    paths = {" > ".join(p.category[: i + 1]) for p in mapped for i in range(len(p.category))}
    s = counts(empty_graph)
    assert s["products"] == len(sample_records)
    assert s["has_value"] == n_values
    assert s["has_brand"] == sum(1 for p in mapped if p.brand)
    assert s["brands"] == n_brands
    assert s["categories"] == len(paths)
    assert s["subcategory_of"] == sum(1 for p in paths if " > " in p)
    assert s["values"] == len({(a, v.norm) for p in mapped for a, v in p.facts})
    assert rep.facts_written == s["has_value"] + s["has_brand"] + s["in_category"]
    # every value node hangs off its attribute
    rows = empty_graph.client.read("MATCH (v:Value) WHERE NOT (v)-[:OF_ATTRIBUTE]->(:Attribute {name: v.attribute}) RETURN count(v) AS n")
    assert rows[0]["n"] == 0
    run = empty_graph.query("ingest_runs").as_dicts()[0]
    assert run["status"] == "completed" and run["created"] == len(sample_records)


def test_second_ingest_changes_nothing(empty_graph: ProductGraph) -> None:
    empty_graph.ingest(SAMPLE, mapping="myntra", limit=600)
    before = counts(empty_graph)
    snapshot = empty_graph.client.read(
        "MATCH (p:Product)-[r]->(x) RETURN p.id AS id, type(r) AS t, elementId(x) AS x, r.ingested_at AS at ORDER BY id, t, x")
    rep = empty_graph.ingest(SAMPLE, mapping="myntra", limit=600)
    assert rep.products_unchanged == 600 and rep.products_created == rep.products_updated == 0
    assert rep.facts_written == 0 and rep.facts_retracted == 0
    after = counts(empty_graph)
    assert after.pop("ingest_runs") == before.pop("ingest_runs") + 1  # the run itself is recorded
    assert after.pop("nodes") == before.pop("nodes") + 1
    assert after == before
    assert empty_graph.client.read(
        "MATCH (p:Product)-[r]->(x) RETURN p.id AS id, type(r) AS t, elementId(x) AS x, r.ingested_at AS at ORDER BY id, t, x"
    ) == snapshot


def test_changed_row_updates_and_records_retractions(empty_graph: ProductGraph, tmp_path: Path) -> None:
    v1 = [
        {"id": "p1", "title": "Red shirt", "brand": "Acme", "cat": "Apparel/Shirts", "colour": "Red",
         "attrs": {"Fabric": "Cotton", "Fit": "Slim"}, "note": "first"},
        {"id": "p2", "title": "Blue shirt", "brand": "Acme", "cat": "Apparel/Shirts", "colour": "Blue", "attrs": {}},
    ]
    empty_graph.ingest(write_jsonl(tmp_path / "v1.jsonl", v1), mapping=SIMPLE)
    assert facts_of(empty_graph, "p1") == {("colour", "Red"), ("Fabric", "Cotton"), ("Fit", "Slim")}
    v2 = [dict(v1[0], brand="Other", cat="Apparel/Tops", attrs={"Fabric": "Linen"}, note=None), v1[1]]
    rep = empty_graph.ingest(write_jsonl(tmp_path / "v2.jsonl", v2), mapping=SIMPLE)
    assert (rep.products_updated, rep.products_unchanged, rep.products_created) == (1, 1, 0)
    p1 = empty_graph.product("p1")
    assert p1 is not None
    assert {(f.attribute, f.value) for f in p1.facts} == {("colour", "Red"), ("Fabric", "Linen")}
    assert p1.brand == "Other" and p1.category == "Apparel > Tops"
    assert "note" not in p1.properties  # a property removed in the source is removed
    retracted = {(r["attribute"], r["value"]) for r in empty_graph.query("product_neighbourhood", id="p1").as_dicts()
                 if r["relation"] == "RETRACTED"}
    assert retracted == {("Fabric", "Cotton"), ("Fit", "Slim"), ("has_brand", "Acme"), ("in_category", "Apparel > Shirts")}
    assert rep.facts_retracted == 4
    assert facts_of(empty_graph, "p2") == {("colour", "Blue")}


def test_bad_rows_are_rejected_alone(empty_graph: ProductGraph, tmp_path: Path) -> None:
    rows = [
        {"id": "ok1", "title": "fine", "colour": "Red"},
        '{"id": "broken", "title": ',  # malformed JSON
        {"title": "no id here"},
        {"id": "", "title": "empty id"},
        {"id": "ok1", "title": "duplicate"},
        "[1, 2, 3]",  # not an object
        {"id": "ok2", "title": "fine too", "attrs": "not a map"},
        {"id": "ok3", "title": "also fine", "colour": "Blue"},
    ]
    rep = empty_graph.ingest(write_jsonl(tmp_path / "bad.jsonl", rows), mapping=SIMPLE, batch_size=3)
    assert rep.rows_read == 8 and rep.products_created == 2 and rep.rows_rejected == 6
    by_line = {r.line: r for r in rep.rejections}
    assert set(by_line) == {2, 3, 4, 5, 6, 7}
    assert "malformed JSON" in by_line[2].reason
    assert by_line[3].field == "id" and "missing id" in by_line[3].reason
    assert by_line[4].field == "id"
    assert by_line[5].field == "id" and "first seen on line 1" in by_line[5].reason
    assert "expected an object" in by_line[6].reason
    assert by_line[7].field == "attrs"
    assert all(r.file.endswith("bad.jsonl") for r in rep.rejections)
    assert {p["id"] for p in empty_graph.client.read("MATCH (p:Product) RETURN p.id AS id")} == {"ok1", "ok3"}


HOSTILE = [
    "Robert'); DROP TABLE products;--",
    "\"}) DETACH DELETE n //",
    "`) MATCH (n) DETACH DELETE n //",
    "x' OR 1=1 //",
    "MATCH (n) DETACH DELETE n",
    "${injection}",
    "line\nbreak\ttab",
    "\u202eright-to-left override",
]


def test_hostile_strings_are_data(empty_graph: ProductGraph, tmp_path: Path) -> None:
    empty_graph.ingest(write_jsonl(tmp_path / "seed.jsonl", [{"id": "keep", "title": "keep me", "colour": "Red"}]),
                       mapping=SIMPLE)
    rows = []
    for i, s in enumerate(HOSTILE):
        rows.append({"id": f"h{i}", "title": s, "desc": s, "brand": s, "cat": f"{s}/{s}", "colour": s,
                     "attrs": {s: s, "Fabric": s}, "note": s})
    rows.append({"id": "id with `backticks` and 'quotes' \"}) //", "title": "hostile id", "colour": "Red"})
    rep = empty_graph.ingest(write_jsonl(tmp_path / "hostile.jsonl", rows), mapping=SIMPLE)
    assert rep.rows_rejected == 0 and rep.products_created == len(rows)
    s = counts(empty_graph)
    assert s["products"] == len(rows) + 1  # nothing was deleted
    assert empty_graph.product("keep") is not None
    for i, raw in enumerate(HOSTILE):
        p = empty_graph.product(f"h{i}")
        assert p is not None
        cleaned = " ".join(raw.split())
        assert p.title == cleaned
        assert (cleaned, cleaned) in {(f.attribute, f.value) for f in p.facts}
        assert p.brand == cleaned
    assert empty_graph.product("id with `backticks` and 'quotes' \"}) //") is not None
    # Labels and relationship types are the schema's: nothing was spliced into query text. The nodes
    # and relationships of this graph carry only ingest's labels and types...
    labels = {r["l"] for r in empty_graph.client.read("MATCH (n) UNWIND labels(n) AS l RETURN DISTINCT l")}
    assert labels == {"Product", "Brand", "Category", "Attribute", "Value", "IngestRun"}
    types = {r["t"] for r in empty_graph.client.read("MATCH ()-[r]->() RETURN DISTINCT type(r) AS t")}
    assert types == {"HAS_VALUE", "HAS_BRAND", "IN_CATEGORY", "SUBCATEGORY_OF", "OF_ATTRIBUTE"}
    # ...and no label or type the database has ever seen (other tests share it) came from the data.
    known = {r["l"] for r in empty_graph.client.read("CALL db.labels() YIELD label RETURN label AS l")}
    known |= {r["t"] for r in empty_graph.client.read(
        "CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType AS t")}
    assert all(re.fullmatch(r"[A-Za-z_]+", k) for k in known), known


def test_control_characters_nul_and_huge_fields(empty_graph: ProductGraph, tmp_path: Path) -> None:
    huge = "x" * 1_000_000
    rows = [
        {"id": "ctl", "title": "a\x00b\x07c\x1bd", "colour": "Re\x00d", "attrs": {"Fa\x00bric": "Cot\x01ton"}},
        {"id": "huge", "title": "big", "desc": huge, "colour": huge, "note": huge},
        {"id": "empty", "title": "", "desc": "", "colour": "", "attrs": {"Fabric": ""}},
    ]
    rep = empty_graph.ingest(write_jsonl(tmp_path / "ctl.jsonl.gz", rows, gz=True), mapping=SIMPLE)
    assert rep.rows_rejected == 0 and rep.products_created == 3
    ctl = empty_graph.product("ctl")
    assert ctl is not None and ctl.title == "abcd"
    assert {(f.attribute, f.value) for f in ctl.facts} == {("colour", "Red"), ("Fabric", "Cotton")}
    big = empty_graph.product("huge")
    # long texts are capped at the mapping's max_text_length (100k characters by default), values shorter still
    assert big is not None and big.description == huge[: SIMPLE.max_text_length]
    assert big.properties["note"] == huge[: SIMPLE.max_text_length]
    assert big.values("colour") == ["x" * SIMPLE.max_value_length]  # values are capped
    empty = empty_graph.product("empty")
    assert empty is not None and empty.facts == () and empty.title is None


def test_refused_row_does_not_sink_its_batch(empty_graph: ProductGraph, tmp_path: Path) -> None:
    # A value longer than Neo4j's index key limit (about 8 kB) is refused by the database itself;
    # only that row must be rejected, the rest of its batch stored.
    m = Mapping.from_yaml("name: big\nid: id\ntitle: title\nattributes: [colour]\nnormalize: {max_value_length: 20000}\n")
    rows = [{"id": f"r{i}", "title": f"t{i}", "colour": f"c{i}"} for i in range(5)]
    rows[2]["colour"] = "\U0001F600" * 5000  # 20 kB of UTF-8
    rep = empty_graph.ingest(write_jsonl(tmp_path / "big.jsonl", rows), mapping=m, batch_size=10)
    assert rep.products_created == 4 and rep.rows_rejected == 1
    assert rep.rejections[0].line == 3 and "refused by Neo4j" in rep.rejections[0].reason
    assert counts(empty_graph)["products"] == 4


def test_bigbasket_csv_and_taobao_subsets(empty_graph: ProductGraph, tmp_path: Path) -> None:
    with gzip.open(SHARED / "bigbasket" / "products.csv.gz", "rt", encoding="utf-8") as fh:
        head = [next(fh) for _ in range(301)]
    csv_path = tmp_path / "bb.csv"
    csv_path.write_text("".join(head), encoding="utf-8")
    rep = empty_graph.ingest(csv_path, mapping="bigbasket")
    assert rep.rows_read == 300 and rep.rows_rejected == 0 and rep.products_created == 300
    p = empty_graph.product("1")
    assert p is not None and p.title == "Garlic Oil - Vegetarian Capsule 500 mg"
    assert p.brand == "Sri Sri Ayurveda" and p.category == "Beauty & Hygiene > Hair Care > Hair Oil & Serum"
    assert p.properties["sale_price"] == 220.0

    with gzip.open(SHARED / "taobao_zh" / "titles.jsonl.gz", "rt", encoding="utf-8") as fh:
        recs = [json.loads(next(fh)) for _ in range(300)]
    rep = empty_graph.ingest(write_jsonl(tmp_path / "tb.jsonl", recs), mapping="taobao")
    distinct = len({r["text"] for r in recs})
    assert rep.products_created == distinct and rep.rows_rejected == 300 - distinct
    with_brand = sum(1 for r in {r["text"]: r for r in recs}.values() if any(e["type"] == "HPPX" for e in r["entities"]))
    assert counts(empty_graph)["has_brand"] == 300 + with_brand  # bigbasket's 300 + taobao's


def test_missing_file_and_bad_batch_size(empty_graph: ProductGraph, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        empty_graph.ingest(tmp_path / "nope.jsonl", mapping=SIMPLE)
    with pytest.raises(IngestError, match="batch_size"):
        empty_graph.ingest(SAMPLE, mapping="myntra", batch_size=0)
    with pytest.raises(IngestError, match="no shipped mapping"):
        empty_graph.ingest(SAMPLE, mapping="nosuchcatalog")
