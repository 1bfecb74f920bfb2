"""``attrgraph train`` / ``attrgraph predict`` on a snapshot of the shipped sample in the real Neo4j."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._deps import need
from click.testing import CliRunner

need("torch_geometric")

from attrgraph.cli import cli  # noqa: E402
from graph import Neo4jSettings  # noqa: E402

pytestmark = pytest.mark.neo4j


def test_train_then_predict_every_missing_slot(neo4j_settings: Neo4jSettings, sample_graph, tmp_path: Path) -> None:
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password or "", "COLUMNS": "200", "ATTRGRAPH_HOME": str(tmp_path / "home")}

    def run(*args: str):
        res = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    snap = tmp_path / "snap"
    run("snapshot", "--out", str(snap))
    out = run("train", "--snapshot", str(snap), "--encoder", "char-svd", "--out", str(tmp_path / "model"),
              "--option", "epochs=6", "--option", "hidden=32", "--option", "eval_every=2", "--threads", "1")
    assert "held-out Hits@1" in out and (tmp_path / "model" / "predictor.json").exists()
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["model"] == "gnn" and cfg["config"]["model_config"]["hidden"] == 32
    pred_file = tmp_path / "pred.jsonl"
    out = run("predict", "--snapshot", str(snap), "--model-dir", str(tmp_path / "model"), "--top-k", "3",
              "--out", str(pred_file))
    assert "missing applicable slots" in out
    rows = [json.loads(x) for x in pred_file.read_text(encoding="utf-8").splitlines()]
    assert len(rows) > 100
    # every slot is missing in the graph, its candidates are values of that attribute, best first
    by_product: dict[str, set[str]] = {}
    for r in rows[:200]:
        if r["product"] not in by_product:
            p = sample_graph.product(r["product"])
            by_product[r["product"]] = {f.attribute for f in p.facts} | ({"@brand"} if p.brand else set())
        assert r["attribute"] not in by_product[r["product"]]
        ps = [c["p"] for c in r["candidates"]]
        assert ps == sorted(ps, reverse=True) and all(0 <= x <= 1 for x in ps) and len(ps) <= 3
    # restricted to one product and attribute
    some = rows[0]
    out = run("predict", "--snapshot", str(snap), "--model-dir", str(tmp_path / "model"), "--product", some["product"],
              "--attribute", some["attribute"], "--out", str(tmp_path / "one.jsonl"))
    one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["product"], r["attribute"]) for r in one] == [(some["product"], some["attribute"])]


def test_predict_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "snap").mkdir()
    res = CliRunner().invoke(cli, ["predict", "--snapshot", str(tmp_path / "snap"), "--model-dir", str(tmp_path / "none")],
                             env={"ATTRGRAPH_HOME": str(tmp_path)})
    assert res.exit_code != 0
