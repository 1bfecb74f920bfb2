"""A category graph that is not a tree is found, reported, and refused, on the real Neo4j."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import kb
from attrgraph.cli import cli
from attrgraph.rules import check_rules, check_tree
from graph import Neo4jSettings, ProductGraph
from tests.conftest import write_jsonl

pytestmark = pytest.mark.neo4j

ROWS = [
    {"id": "1", "title": "a", "brand": "Acme", "masterCategory": "Apparel", "subCategory": "Topwear",
     "articleType": "Tshirts", "gender": "Men"},
    {"id": "2", "title": "b", "brand": "Acme", "masterCategory": "Footwear", "subCategory": "Shoes",
     "articleType": "Heels", "gender": "Women"},
]


def test_a_second_parent_is_reported_and_refused(empty_graph: ProductGraph, neo4j_settings: Neo4jSettings,
                                                 tmp_path) -> None:
    empty_graph.ingest(write_jsonl(tmp_path / "c.jsonl", ROWS), mapping="myntra")
    assert check_tree(empty_graph).ok
    assert check_rules(empty_graph).report.facts_checked == 2
    # a second parent for Topwear (fixed test Cypher, values as parameters)
    empty_graph.client.write(
        "MATCH (c:Category {path: $child}), (p:Category {path: $parent}) MERGE (c)-[:SUBCATEGORY_OF]->(p)",
        {"child": "Apparel > Topwear", "parent": "Footwear"})
    rep = check_tree(empty_graph)
    assert [p.kind for p in rep.problems] == ["multiple_parents", "path_mismatch"]
    assert "'Apparel > Topwear' has 2 parents: 'Apparel', 'Footwear'" in rep.problems[0].message
    with pytest.raises(kb.CategoryTreeError, match="has 2 parents"):
        check_rules(empty_graph)
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password or ""}
    res = CliRunner().invoke(cli, ["rules", "check"], env=env, catch_exceptions=False)
    assert res.exit_code == 1 and "not a tree" in res.output and "multiple_parents" in res.output
    res = CliRunner().invoke(cli, ["rules", "tree"], env=env, catch_exceptions=False)
    assert res.exit_code == 1 and "path_mismatch" in res.output
    # and a cycle
    empty_graph.client.write(
        "MATCH (c:Category {path: $child}), (p:Category {path: $parent}) MERGE (c)-[:SUBCATEGORY_OF]->(p)",
        {"child": "Apparel", "parent": "Apparel > Topwear > Tshirts"})
    assert "cycle" in {p.kind for p in check_tree(empty_graph).problems}
