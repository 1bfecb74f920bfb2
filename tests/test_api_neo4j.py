"""The Python graph API and every named query, on the shipped Myntra sample in the real Neo4j.

Expected answers are computed from the raw sample file in plain Python, not by the code under test.
"""

from __future__ import annotations

from collections import Counter

import pytest

import queries
from graph import CategoryNode, Coverage, Product, ProductGraph, ProductRef, ValueCount
from queries import QueryError

pytestmark = pytest.mark.neo4j

NA = {"", "NA", "N/A", "null"}


def cat_path(r: dict) -> str:
    return " > ".join(r[k] for k in ("masterCategory", "subCategory", "articleType") if r.get(k) not in NA)


def attrs(r: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for k in ("gender", "ageGroup", "baseColour", "season", "usage"):
        if r.get(k) not in NA and r.get(k) is not None:
            out.setdefault(k, set()).add(r[k].strip())
    for k, v in (r.get("articleAttributes") or {}).items():
        if v not in NA and v is not None:
            out.setdefault(k.strip(), set()).add(" ".join(v.split()))
    return out


def test_product_with_its_facts(sample_graph: ProductGraph, sample_records: list[dict]) -> None:
    r = next(x for x in sample_records if x.get("articleAttributes"))
    p = sample_graph.product(str(r["id"]))
    assert isinstance(p, Product)
    assert p.title == r["title"] and p.brand == r["brand"] and p.category == cat_path(r)
    got: dict[str, set[str]] = {}
    for f in p.facts:
        got.setdefault(f.attribute, set()).add(f.value)
        assert f.source == "myntra" and f.ingested_at is not None
    assert got == attrs(r)
    assert p.properties["price"] == float(r["price"])
    assert sample_graph.product("no-such-id") is None


def test_products_missing_attribute(sample_graph: ProductGraph, sample_records: list[dict]) -> None:
    expected = sorted(str(r["id"]) for r in sample_records
                      if r["articleType"] == "Tshirts" and "Pattern" not in attrs(r))
    got = sample_graph.products_missing("Pattern", "Tshirts", limit=10_000)
    assert all(isinstance(x, ProductRef) for x in got)
    assert sorted(x.id for x in got) == expected and expected
    # by a higher category: everything below Topwear
    exp_top = {str(r["id"]) for r in sample_records if r["subCategory"] == "Topwear" and "Fabric" not in attrs(r)}
    got_top = sample_graph.products_missing("Fabric", "Apparel > Topwear", limit=10_000)
    assert {x.id for x in got_top} == exp_top
    assert len(sample_graph.products_missing("Pattern", "Tshirts", limit=5)) == 5


def test_attribute_coverage(sample_graph: ProductGraph, sample_records: list[dict]) -> None:
    rows = [r for r in sample_records if r["subCategory"] == "Topwear"]
    per_cat = Counter(cat_path(r) for r in rows)
    with_attr = Counter((cat_path(r), a) for r in rows for a in attrs(r))
    cov = sample_graph.coverage("Topwear")
    assert all(isinstance(c, Coverage) for c in cov)
    assert {(c.category, c.attribute): (c.with_value, c.products) for c in cov} == {
        k: (n, per_cat[k[0]]) for k, n in with_attr.items()}
    big = sample_graph.coverage("Topwear", min_products=100)
    assert {c.category for c in big} == {k for k, n in per_cat.items() if n >= 100}


def test_value_distribution(sample_graph: ProductGraph, sample_records: list[dict]) -> None:
    counts = Counter(r["baseColour"] for r in sample_records if r.get("baseColour") not in NA)
    dist = sample_graph.value_distribution("baseColour", limit=5)
    assert all(isinstance(v, ValueCount) for v in dist)
    assert [(v.value, v.products) for v in dist] == sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert abs(dist[0].share - counts.most_common(1)[0][1] / sum(counts.values())) < 1e-3
    shoes = Counter(r["baseColour"] for r in sample_records if r["masterCategory"] == "Footwear" and r.get("baseColour") not in NA)
    got = sample_graph.value_distribution("baseColour", "Footwear", limit=100)
    assert {v.value: v.products for v in got} == dict(shoes)


def test_category_tree(sample_graph: ProductGraph, sample_records: list[dict]) -> None:
    tree = sample_graph.category_tree()
    assert all(isinstance(c, CategoryNode) for c in tree)
    by_path = {c.path: c for c in tree}
    leaves = Counter(cat_path(r) for r in sample_records)
    for leaf, n in leaves.items():
        assert by_path[leaf].direct_products == n and by_path[leaf].level == 3
    masters = Counter(r["masterCategory"] for r in sample_records)
    for m, n in masters.items():
        assert by_path[m].products == n and by_path[m].parent is None and by_path[m].level == 1
    # every non-root has exactly its prefix as parent: a tree
    for c in tree:
        if c.level > 1:
            assert c.parent == c.path.rsplit(" > ", 1)[0]
    sub = sample_graph.category_tree("Footwear")
    assert {c.path.split(" > ")[0] for c in sub} == {"Footwear"}


def test_stats(sample_graph: ProductGraph, sample_records: list[dict]) -> None:
    s = sample_graph.stats()
    assert s.products == len(sample_records)
    assert s.has_value == sum(len(v) for r in sample_records for v in attrs(r).values())
    assert s.in_category == len(sample_records)


def test_every_named_query_runs(sample_graph: ProductGraph, sample_records: list[dict]) -> None:
    r = sample_records[0]
    args = {
        "products_missing_attribute": {"attribute": "Pattern", "category": "Tshirts"},
        "attribute_coverage": {},
        "top_values": {"attribute": "gender"},
        "product_neighbourhood": {"id": str(r["id"])},
        "category_tree": {},
        "graph_stats": {},
        "products_with_value": {"attribute": "baseColour", "value": r["baseColour"]},
        "brand_categories": {"brand": r["brand"].upper()},
        "ingest_runs": {},
    }
    # similar_products needs KG vectors in Neo4j: tested in test_snapshot_neo4j.py; the completion
    # queries need predictions: tested in test_complete_neo4j.py (the proposals' in test_proposals_neo4j.py)
    completion = {"predictions_above", "prediction_explanation", "run_changes", "missing_after_run", "completion_runs",
                  "proposed_values", "value_evidence"}
    assert set(args) | {"similar_products"} | completion == set(queries.load_all()), "a named query has no integration test"
    for name, params in args.items():
        res = sample_graph.query(name, **params)
        assert len(res) > 0, name
    nb = sample_graph.query("product_neighbourhood", id=str(r["id"])).as_dicts()
    assert {("HAS_BRAND", r["brand"]), ("IN_CATEGORY", cat_path(r))} <= {(x["relation"], x["value"]) for x in nb}
    pv = sample_graph.query("products_with_value", attribute="baseColour", value=r["baseColour"].lower(), limit=10_000)
    assert len(pv) == sum(1 for x in sample_records if x.get("baseColour") == r["baseColour"])
    bc = sample_graph.query("brand_categories", brand=r["brand"]).as_dicts()
    assert sum(x["products"] for x in bc) == sum(1 for x in sample_records if x["brand"] == r["brand"])


def test_query_parameter_errors(sample_graph: ProductGraph) -> None:
    with pytest.raises(QueryError, match="needs parameter 'attribute'"):
        sample_graph.query("top_values")
    with pytest.raises(QueryError, match="no parameter 'nope'"):
        sample_graph.query("graph_stats", nope=1)
    with pytest.raises(QueryError, match="no named query"):
        sample_graph.query("drop_everything")
    with pytest.raises(QueryError, match="must be int"):
        sample_graph.query("top_values", attribute="gender", limit="ten")


def test_hostile_parameters_are_data(sample_graph: ProductGraph) -> None:
    before = sample_graph.stats()
    for evil in ["x' OR 1=1 //", "\"}) MATCH (n) DETACH DELETE n //", "`; DROP`", "Tshirts\u0000"]:
        assert sample_graph.products_missing(evil, evil) == []
        assert sample_graph.value_distribution(evil) == []
        assert sample_graph.product(evil) is None
    assert sample_graph.stats() == before
