"""The Spark engine (``attrgraph.spark``) against the real test Neo4j, on Spark ``local[2]``:

* node counts read through the connector equal Cypher's;
* the Spark snapshot is the local snapshot (same files, same content fingerprint);
* text features and predictions from ``mapInPandas`` equal the single process's exactly;
* ``attrgraph complete --engine spark`` commits the run the local engine commits (same edges and
  properties but run ids and times, same rule verdicts), and writing its edges again changes nothing.

Skipped without pyspark or the connector jar, except under CI=true, where that fails.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from graph import Neo4jSettings, ProductGraph
from graph import runs as runs_db
from graph import writeback as wb
from graph.export import export_snapshot
from tests._deps import CI, need
from tests.conftest import write_jsonl

pytestmark = [pytest.mark.neo4j, pytest.mark.slow]

N_PRODUCTS = 300
GNN = {"epochs": 4, "hidden": 32, "eval_every": 2, "threads": 1}


def _need_spark():
    try:
        importlib.import_module("pyspark")
        importlib.import_module("pyarrow")
    except ImportError as e:
        if CI:
            pytest.fail(f"CI=true and pyspark/pyarrow cannot be imported ({e}): install 'attrgraph[spark]'", pytrace=False)
        pytest.skip(f"pyspark is not installed ({e})")
    from attrgraph import spark as sp

    try:
        sp.ensure_connector_jar()
    except sp.SparkEngineError as e:
        if CI:
            pytest.fail(f"CI=true and the Neo4j connector jar cannot be had: {e}", pytrace=False)
        pytest.skip(f"no Neo4j connector jar: {e}")
    return sp


@pytest.fixture(scope="module")
def sp():
    return _need_spark()


@pytest.fixture(scope="module")
def spark(sp):
    s = sp.spark_session(sp.SparkOptions(master="local[2]", partitions=2, driver_memory="512m"))
    yield s
    sp.stop()


@pytest.fixture(scope="module")
def graph(neo4j_settings: Neo4jSettings, sample_records: list[dict], tmp_path_factory: pytest.TempPathFactory):
    g = ProductGraph.connect(neo4j_settings.uri, neo4j_settings.user, neo4j_settings.password, neo4j_settings.database)
    g.clear(confirm=True)
    f = write_jsonl(tmp_path_factory.mktemp("spark-data") / "part.jsonl", sample_records[:N_PRODUCTS])
    rep = g.ingest(f, mapping="myntra")
    assert rep.rows_rejected == 0 and rep.products_created == N_PRODUCTS
    yield g
    g.close()


def test_missing_jar_and_bad_engine_give_clear_errors(sp, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from attrgraph.complete import CompletionConfig, CompletionConfigError

    monkeypatch.setenv(sp.JAR_ENV, str(tmp_path / "nope.jar"))
    with pytest.raises(sp.SparkEngineError, match="no such file"):
        sp.ensure_connector_jar()
    with pytest.raises(CompletionConfigError, match="engine.*valid: local, spark"):
        CompletionConfig(engine="flink")


def test_node_counts_through_spark_equal_cypher(sp, spark, graph: ProductGraph) -> None:
    got = sp.node_counts_spark(spark, graph.client.settings, partitions=2)
    labels = {"product": "Product", "brand": "Brand", "category": "Category", "attribute": "Attribute", "value": "Value"}
    want = {t: graph.client.read(f"MATCH (n:{lab}) RETURN count(n) AS n")[0]["n"] for t, lab in labels.items()}
    assert got == want and want["product"] == N_PRODUCTS and min(want.values()) > 0
    # the reads really are partitioned
    q, schema, cq = sp.SPARK_NODE_QUERIES["product"]
    assert sp.read_query(spark, graph.client.settings, q, schema, partitions=2, count_query=cq).rdd.getNumPartitions() >= 2


def test_spark_snapshot_equals_local_snapshot(sp, spark, graph: ProductGraph, tmp_path: Path) -> None:
    local = export_snapshot(graph.client, tmp_path / "local")
    dist = sp.export_snapshot_spark(spark, graph.client.settings, tmp_path / "spark", partitions=2)
    assert dist.fingerprint == local.fingerprint
    assert dist.nodes == local.nodes and dist.edges == local.edges and sum(local.edges.values()) > 0
    for f in sorted((tmp_path / "local").glob("*/*")):
        assert (tmp_path / "spark" / f.relative_to(tmp_path / "local")).read_bytes() == f.read_bytes(), f
    # typed product properties (the mapping's: year is an integer, price a float) come back with their types
    rec = json.loads((tmp_path / "spark" / "nodes" / "product.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert isinstance(rec["props"].get("year"), int) and isinstance(rec["props"].get("price"), float)


def test_mapinpandas_features_and_predictions_equal_the_single_process(sp, spark, graph: ProductGraph,
                                                                       tmp_path: Path) -> None:
    need("torch_geometric")
    from attrgraph.features import TextFeatureConfig, compute_text_features
    from gnn.completion import CompletionPredictor
    from gnn.snapshot import load_snapshot

    export_snapshot(graph.client, tmp_path / "a")
    export_snapshot(graph.client, tmp_path / "b")
    a, b = load_snapshot(tmp_path / "a"), load_snapshot(tmp_path / "b")
    fcfg = dict(encoder="char-svd", fitted_dir=str(tmp_path / "enc"))
    compute_text_features(a, TextFeatureConfig(**fcfg, cache_path=str(tmp_path / "cache-a.sqlite")))
    rep = sp.text_features_spark(spark, b, TextFeatureConfig(**fcfg, cache_path=str(tmp_path / "cache-b.sqlite")))
    assert rep.encoded == rep.texts - rep.cached and rep.encoded > 0 and rep.tasks >= 1
    for t in a.features:
        assert np.array_equal(a.features.get(t), b.features.get(t)), t
    CompletionPredictor.fit(a, model="gnn", model_kwargs=GNN, seed=0).save(tmp_path / "model")
    # the saved model, as every run after the one that trained it scores with (the in-memory model of the
    # training run differs from its checkpoint in the last bits: a gnn matter, not an engine's)
    pred = CompletionPredictor.load(tmp_path / "model")
    local = pred.predict(a, top_k=3)
    dist = sp.predict_spark(spark, a, tmp_path / "model", pred.split.attribute_names, top_k=3, partitions=2)
    assert len(local) > 100 and len(dist) == len(local)
    for f in ("product", "attribute", "candidate", "threshold"):
        assert np.array_equal(getattr(dist, f), getattr(local, f)), f
    assert np.array_equal(dist.prob, local.prob, equal_nan=True)
    # a subset of products (an incremental run) scores the same too: neighbourhoods are the whole graph
    some = np.arange(0, a.num_nodes("product"), 7)
    part = sp.predict_spark(spark, a, tmp_path / "model", pred.split.attribute_names, products=some, top_k=3)
    ref = pred.predict(a, products=some, top_k=3)
    assert np.array_equal(part.candidate, ref.candidate) and np.array_equal(part.prob, ref.prob, equal_nan=True)


def _edges(g: ProductGraph, run_id: str) -> dict[tuple[str, str, str], dict]:
    rows = g.client.read("MATCH (p:Product)-[e:PREDICTED_VALUE]->(v) WHERE e.run_id = $run "
                         "RETURN p.id AS product, coalesce(v.norm, v.key) AS norm, properties(e) AS props",
                         {"run": run_id})
    out = {}
    for r in rows:
        d = {k: v for k, v in r["props"].items() if k not in ("run_id", "created_at", "superseded_at")}
        out[(r["product"], r["props"]["attribute"], r["norm"])] = d
    return out


def test_complete_engine_spark_commits_the_local_run_and_rewriting_changes_nothing(
        sp, spark, graph: ProductGraph, neo4j_settings: Neo4jSettings, tmp_path: Path) -> None:
    need("torch_geometric")
    from attrgraph.cli import cli
    from attrgraph.complete import CompletionConfig, complete, rollback

    g = graph
    work = tmp_path / "w"
    cfg = CompletionConfig(encoder="char-svd", threads=1, rules=["myntra"], review_min_p=0.3, model_kwargs=GNN,
                           work_dir=str(work))
    r0 = complete(g, config=cfg, full=True)  # trains and saves the model
    assert r0.status == "committed" and r0.model_action == "trained"
    rollback(g, r0.run_id)
    # both engines score with the saved model (model_policy reuse), on the same graph
    r1 = complete(g, config=CompletionConfig.from_dict({**cfg.to_dict(), "model_policy": "reuse"}), full=True)
    assert r1.status == "committed" and r1.counts["written"] > 0 and r1.model_action == "reused"
    e1 = _edges(g, r1.run_id)
    rollback(g, r1.run_id)
    # the same graph, the same saved model: the Spark engine, through the command line
    (tmp_path / "c.yaml").write_text(json.dumps({**cfg.to_dict(), "model_policy": "reuse"}), encoding="utf-8")
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user, "NEO4J_PASSWORD": neo4j_settings.password or ""}
    res = CliRunner().invoke(cli, ["complete", "--config", str(tmp_path / "c.yaml"), "--engine", "spark",
                                   "--master", "local[2]", "--full", "--top", "0"], env=env)
    assert res.exit_code == 0, res.output
    run_id = re.search(r"run\s*│\s*(cr-\S+)", res.output).group(1)
    rec = runs_db.get_run(g.client, run_id)
    assert rec.status == "committed" and rec.config["engine"] == "spark"
    assert neo4j_settings.password not in res.output
    r1c = {k: v for k, v in r1.counts.items()}
    for k in ("products_scored", "slots", "candidates", "accepted", "needs_review", "rejected", "abstained", "written"):
        assert rec.counts[k] == r1c[k], k
    e2 = _edges(g, run_id)
    assert e2 == e1 and len(e1) == r1.counts["written"]
    assert {(k, v["verdict"]) for k, v in e2.items()} == {(k, v["verdict"]) for k, v in e1.items()}
    assert wb.integrity(g.client).ok

    # writing the committed run's edges again (a retried Spark task, a rerun write-back) changes nothing
    full = g.client.read("MATCH (p:Product)-[e:PREDICTED_VALUE]->(v) RETURN p.id AS product, "
                         "coalesce(v.norm, v.key) AS norm, properties(e) AS props ORDER BY product, e.attribute, norm, e.run_id")
    stored = wb.predictions(g.client, run_id=run_id, limit=10**6)
    rows = [wb.PredictionRow(s.product, s.attribute, s.norm, s.p, s.rank, s.verdict,
                             json.loads(s.explanation)["threshold"], s.rules, s.violations, s.evidence_products,
                             s.text_evidence, s.explanation) for s in stored]
    assert len(rows) == len(e2)
    runs_db.acquire(g.client, run_id, record=False)
    try:
        again = sp.stage_predictions_spark(spark, g.client.settings, g.client, run_id, rows, model=rec.model,
                                           model_version=rec.model_version, batch_size=100)
    finally:
        runs_db.release(g.client, run_id)
    assert again.written == len(rows) and again.missing == 0
    assert g.client.read("MATCH (p:Product)-[e:PREDICTED_VALUE]->(v) RETURN p.id AS product, "
                         "coalesce(v.norm, v.key) AS norm, properties(e) AS props "
                         "ORDER BY product, e.attribute, norm, e.run_id") == full
    # and a run that does not hold the lock writes nothing
    with pytest.raises(runs_db.LockLost):
        sp.stage_predictions_spark(spark, g.client.settings, g.client, run_id, rows[:5], model=rec.model,
                                   model_version=rec.model_version)
    assert g.client.read("MATCH ()-[e:PREDICTED_VALUE]->() RETURN count(e) AS n")[0]["n"] == len(full)
