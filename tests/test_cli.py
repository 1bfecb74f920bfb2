"""The command line against the real Neo4j (NEO4J_URI points the CLI at the test server)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from attrgraph.cli import cli
from graph import Neo4jSettings
from tests.conftest import SAMPLE, write_jsonl

pytestmark = pytest.mark.neo4j


@pytest.fixture()
def run(neo4j_settings: Neo4jSettings, empty_graph):
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password or "", "COLUMNS": "200"}

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


def test_ingest_query_stats_product(run, tmp_path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    res = run("ingest", str(SAMPLE), "--mapping", "myntra", "--limit", "300", "--rejects", str(rejects))
    assert res.exit_code == 0, res.output
    assert "products_created" in res.output and "300" in res.output
    assert rejects.exists() and rejects.read_text() == ""

    res = run("stats")
    assert res.exit_code == 0 and "products" in res.output

    res = run("query", "top_values", "-p", "attribute=gender", "-p", "limit=3", "--format", "json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == 3 and set(rows[0]) == {"value", "norm", "products", "share"}
    assert rows[0]["products"] >= rows[1]["products"] >= rows[2]["products"]

    res = run("query", "products_missing_attribute", "-p", "attribute=Pattern", "-p", "category=Apparel")
    assert res.exit_code == 0 and "products_missing_attribute" in res.output

    first_id = json.loads(next(iter(__import__("gzip").open(SAMPLE, "rt"))))["id"]
    res = run("product", str(first_id))
    assert res.exit_code == 0 and "brand:" in res.output
    res = run("product", "no-such-product")
    assert res.exit_code == 1


def test_query_list_and_errors(run, tmp_path) -> None:
    res = run("query", "--list")
    assert res.exit_code == 0 and "products_missing_attribute" in res.output and "category_tree" in res.output
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"id": 1', {"id": "2", "title": "ok"}])
    rejects = tmp_path / "r.jsonl"
    res = run("ingest", str(bad), "--mapping", "myntra", "--rejects", str(rejects))
    assert res.exit_code == 0
    rej = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert rej == [{"file": str(bad), "line": 1, "field": None, "reason": rej[0]["reason"]}]
    assert "malformed JSON" in rej[0]["reason"]


def test_errors_exit_nonzero_with_a_message(neo4j_settings: Neo4jSettings, tmp_path) -> None:
    from attrgraph import cli as cli_mod

    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password or ""}
    bad_map = tmp_path / "m.yaml"
    bad_map.write_text("name: x\nid: id\nattributes:\n  - field: a\n    colour: b\n")
    for args, needle in [
        (["query", "top_values"], "needs parameter 'attribute'"),
        (["ingest", str(SAMPLE), "--mapping", str(bad_map)], f"{bad_map}:5: attributes.0.colour"),
        (["ingest", str(tmp_path / "none.jsonl"), "--mapping", "myntra"], "no such file"),
    ]:
        res = CliRunner().invoke(cli_mod.cli, args, env=env)
        assert res.exit_code != 0
        assert needle in str(res.exception) or needle in res.output, (args, res.output, res.exception)
