"""Completion runs against the real Neo4j: write-back beside asserted facts, supersession, rollback,
review, incremental runs, explanations, named queries, the lock, configuration errors, the CLI.

Most tests use the ``majority`` model on a few hundred products of the shipped Myntra sample (the
model does not matter for write-back); ``test_default_gnn_path_end_to_end`` runs the default model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._deps import need
from click.testing import CliRunner

from attrgraph.cli import cli
from attrgraph.complete import (
    CompleteError, CompletionConfig, CompletionConfigError, complete, parse_interval, rollback, run_every,
)
from graph import Neo4jSettings, ProductGraph
from graph import runs as runs_db
from graph import writeback as wb
from tests.conftest import write_jsonl

pytestmark = pytest.mark.neo4j

FAST = {"model": "majority", "review_min_p": 0.3, "batch_size": 200, "rules": ["myntra"]}


def ingest_records(g: ProductGraph, tmp: Path, records: list[dict], name: str = "part") -> None:
    f = write_jsonl(tmp / f"{name}.jsonl", records)
    rep = g.ingest(f, mapping="myntra")
    assert rep.rows_rejected == 0


@pytest.fixture()
def small(empty_graph: ProductGraph, sample_records: list[dict], tmp_path: Path) -> ProductGraph:
    ingest_records(empty_graph, tmp_path, sample_records[:600])
    return empty_graph


def run(g: ProductGraph, work: Path, **kw) -> "object":
    return complete(g, **{**FAST, "work_dir": str(work), **kw})


def current_edges(g: ProductGraph) -> list[dict]:
    return g.client.read("MATCH (p:Product)-[e:PREDICTED_VALUE {current: true}]->(v) "
                         "RETURN p.id AS product, e.attribute AS attribute, coalesce(v.norm, v.key) AS norm, "
                         "e.run_id AS run, e.p AS p, e.verdict AS verdict")


# -- write-back, supersession, rollback ---------------------------------------------------------------------
def test_write_back_beside_asserted_facts_then_supersede_and_roll_back(small: ProductGraph, tmp_path: Path) -> None:
    g = small
    before = wb.asserted_fingerprint(g.client)
    r1 = run(g, tmp_path / "w", full=True)
    assert r1.status == "committed" and r1.counts["written"] > 100
    assert r1.counts["written"] == r1.counts["accepted"] + r1.counts["needs_review"]
    assert wb.asserted_fingerprint(g.client) == before, "asserted facts changed"
    integ = wb.integrity(g.client)
    assert integ.ok and integ.current_edges == r1.counts["written"] and integ.current_over_asserted == 0
    cur = current_edges(g)
    assert {e["run"] for e in cur} == {r1.run_id}
    assert {e["verdict"] for e in cur} <= {"accept", "needs_review"}
    # every written edge is what the run says it wrote
    assert {(p.product, p.attribute, p.norm) for p in r1.predictions} == {(e["product"], e["attribute"], e["norm"]) for e in cur}

    r2 = run(g, tmp_path / "w", full=True)
    assert r2.counts["superseded"] == r1.counts["written"]  # same model, same slots: each one replaced once
    integ = wb.integrity(g.client)
    assert integ.ok and integ.predicted_edges == r1.counts["written"] + r2.counts["written"]
    assert {e["run"] for e in current_edges(g)} == {r2.run_id}
    old = wb.predictions(g.client, run_id=r1.run_id, limit=100_000)
    assert old and all(not p.current and p.superseded_by == r2.run_id for p in old)
    assert wb.asserted_fingerprint(g.client) == before

    rb = rollback(g, r2.run_id)
    assert rb.deleted == r2.counts["written"] and rb.restored == r1.counts["written"]
    assert not wb.predictions(g.client, run_id=r2.run_id)
    assert {e["run"] for e in current_edges(g)} == {r1.run_id} and wb.integrity(g.client).ok
    assert runs_db.get_run(g.client, r2.run_id).status == "rolled_back"
    assert runs_db.get_run(g.client, r1.run_id).status == "committed"
    assert rollback(g, r2.run_id).deleted == 0  # idempotent
    rollback(g, r1.run_id)
    assert wb.integrity(g.client).predicted_edges == 0
    assert wb.asserted_fingerprint(g.client) == before


def test_rollback_of_a_middle_run_hands_its_superseded_edges_to_the_later_run(small: ProductGraph, tmp_path: Path) -> None:
    g = small
    r1 = run(g, tmp_path / "w", full=True)
    r2 = run(g, tmp_path / "w", full=True)
    r3 = run(g, tmp_path / "w", full=True)
    rb = rollback(g, r2.run_id)
    assert rb.restored == 0 and rb.reassigned == r1.counts["written"]
    assert {p.superseded_by for p in wb.predictions(g.client, run_id=r1.run_id, limit=100_000)} == {r3.run_id}
    rollback(g, r3.run_id)  # now run 1 is the current one again
    assert {e["run"] for e in current_edges(g)} == {r1.run_id} and wb.integrity(g.client).ok


def test_dry_run_writes_nothing(small: ProductGraph, tmp_path: Path) -> None:
    r = run(small, tmp_path / "w", dry_run=True)
    assert r.status == "dry_run" and r.counts["written"] == 0 and len(r.predictions) > 100
    assert wb.integrity(small.client).predicted_edges == 0
    assert small.client.read("MATCH (r:CompletionRun) RETURN count(r) AS n")[0]["n"] == 0
    assert (r.run_dir / "report.md").exists() and (r.run_dir / "predictions.jsonl").exists()


# -- explanations and queries ------------------------------------------------------------------------------
def test_explanations_are_stored_and_true(small: ProductGraph, tmp_path: Path) -> None:
    g = small
    r = run(g, tmp_path / "w", full=True)
    ids = {rule.id for rule in __import__("kb").load_rules("default", "myntra")}
    stored = {(p.product, p.attribute): p for p in wb.predictions(g.client, run_id=r.run_id, limit=100_000)}
    with_text = with_rules = 0
    for w in r.predictions[:300]:
        s = stored[(w.product, w.attribute)]
        expl = json.loads(s.explanation)
        assert expl["value"] == w.value and set(s.rules) <= ids, s
        # an empty slot holds no value for a functional attribute to conflict with, and a count-1 known-value
        # rule passes every value the catalog has: neither could have fired, so neither is listed as passed
        assert not {"functional", "known-value"} & set(s.rules), s
        with_rules += bool(s.rules)
        assert list(s.evidence_products) == [n["id"] for n in w.neighbours]
        for nid in s.evidence_products:  # each neighbour really carries the value
            if w.attribute == "@brand":
                assert g.product(nid).brand.casefold() == w.value.casefold()
            else:
                assert w.norm in {f.norm for f in g.product(nid).facts if f.attribute == w.attribute}
        if s.text_evidence:
            with_text += 1
            prod = g.product(w.product)
            text = f"{prod.title} {prod.description or ''}".casefold()
            assert w.value.casefold() in text or w.norm in text
        if s.verdict == "needs_review":
            assert s.violations
    assert with_text > 0 and with_rules > 0
    res = g.query("prediction_explanation", product=r.predictions[0].product, attribute=r.predictions[0].attribute)
    row = res.as_dicts()[0]
    p0 = r.predictions[0]
    assert row["value"] == p0.value and row["run"] == r.run_id
    assert list(row["rules_passed"] or []) == list(stored[(p0.product, p0.attribute)].rules)
    assert len(row["neighbours"]) == len(r.predictions[0].neighbours)


def test_completion_queries(small: ProductGraph, tmp_path: Path) -> None:
    g = small
    r1 = run(g, tmp_path / "w", full=True)
    cat = "Topwear"
    expect = [p for p in r1.predictions if p.category and " > Topwear > " in p.category and p.p >= 0.5]
    got = g.query("predictions_above", category=cat, min_p=0.5, limit=100_000)
    assert len(got) == len(expect) > 0
    assert all(row["p"] >= 0.5 for row in got.as_dicts())
    ch = g.query("run_changes", run=r1.run_id, limit=100_000).as_dicts()
    assert len(ch) == r1.counts["written"] and {c["change"] for c in ch} == {"added"}
    r2 = run(g, tmp_path / "w", full=True)
    ch2 = g.query("run_changes", run=r2.run_id, limit=100_000).as_dicts()
    assert {c["change"] for c in ch2} == {"replaced"} and all(r1.run_id in c["replaced"] for c in ch2)
    # still missing after the run = missing before minus predicted
    attr = "Pattern"
    before = {x.id for x in g.products_missing(attr, "Topwear", limit=100_000)}
    predicted = {p.product for p in r2.predictions if p.attribute == attr and p.category and " > Topwear > " in p.category}
    after = {row["id"] for row in g.query("missing_after_run", attribute=attr, category="Topwear", limit=100_000).as_dicts()}
    assert after == before - predicted and predicted
    runs_rows = g.query("completion_runs").as_dicts()
    assert [x["id"] for x in runs_rows[:2]] == [r2.run_id, r1.run_id]


# -- review ------------------------------------------------------------------------------------------------
def test_review_accept_and_reject(small: ProductGraph, tmp_path: Path) -> None:
    g = small
    r1 = run(g, tmp_path / "w", full=True)
    a, b = [p for p in r1.predictions if p.attribute != "@brand"][:2]
    acc = wb.accept_prediction(g.client, a.product, a.attribute, by="tester", note='it "is" `right`')
    assert acc.run_id == r1.run_id and acc.norm == a.norm
    prod = g.product(a.product)
    fact = [f for f in prod.facts if f.attribute == a.attribute and f.norm == a.norm]
    assert fact and fact[0].source == "review"
    prov = g.client.read("MATCH (:Product {id: $p})-[h:HAS_VALUE]->(:Value {attribute: $a, norm: $n}) RETURN properties(h) AS h",
                         {"p": a.product, "a": a.attribute, "n": a.norm})[0]["h"]
    assert prov["predicted_by_run"] == r1.run_id and prov["reviewed_by"] == "tester"
    assert prov["review_note"] == 'it "is" `right`'
    rej = wb.reject_prediction(g.client, b.product, b.attribute, by="tester")
    assert rej.norm == b.norm
    with pytest.raises(wb.WritebackError, match="rejected in review"):
        wb.accept_prediction(g.client, b.product, b.attribute, b.norm)
    # later runs: the accepted slot is filled (not predicted), the rejected value never proposed again
    r2 = run(g, tmp_path / "w", rescore_on_retrain=False)  # majority cannot rebind: it retrains
    assert r2.mode == "incremental" and r2.counts["products_scored"] >= 2
    assert not [p for p in r2.predictions if (p.product, p.attribute) == (a.product, a.attribute)]
    r3 = run(g, tmp_path / "w", full=True)
    for r in (r2, r3):
        assert not [p for p in r.predictions if (p.product, p.attribute, p.norm) == (b.product, b.attribute, b.norm)]
    assert wb.integrity(g.client).ok
    with pytest.raises(wb.WritebackError, match="no value"):
        wb.reject_prediction(g.client, b.product, b.attribute, "no such value ' OR 1=1 //")


# -- incremental -------------------------------------------------------------------------------------------
def test_incremental_run_scores_only_new_products_and_neighbours(empty_graph: ProductGraph, sample_records: list[dict],
                                                                 tmp_path: Path) -> None:
    g = empty_graph
    ingest_records(g, tmp_path, sample_records[:500], "base")
    work = tmp_path / "w"
    r1 = run(g, work, rescore_on_retrain=False)
    assert r1.mode == "full" and r1.counts["products_scored"] == 500
    r0 = run(g, work)  # nothing changed
    assert r0.mode == "incremental" and r0.counts["products_scored"] == 0 and r0.counts["written"] == 0
    new = sample_records[500:520]
    ingest_records(g, tmp_path, new, "new")
    r2 = run(g, work, rescore_on_retrain=False)
    assert r2.mode == "incremental"
    assert r2.counts["products_scored"] + r2.counts["products_skipped"] == 520
    assert 20 <= r2.counts["products_scored"] < 520 and r2.counts["products_skipped"] > 0
    assert any("20 new or changed" in n for n in r2.notes)
    new_ids = {str(x["id"]) for x in new}
    assert new_ids & {p.product for p in r2.predictions}
    # predictions of products the run skipped are untouched: still run 1's, still current
    scored = {p.product for p in r2.predictions}
    untouched = [e for e in current_edges(g) if e["product"] not in scored and e["product"] not in new_ids]
    assert untouched and {e["run"] for e in untouched} == {r1.run_id}
    assert wb.integrity(g.client).ok
    full = run(g, work, full=True)
    assert full.mode == "full" and full.counts["products_scored"] == 520


# -- hostile strings ---------------------------------------------------------------------------------------
def test_hostile_values_are_data(empty_graph: ProductGraph, sample_records: list[dict], tmp_path: Path) -> None:
    g = empty_graph
    hostile = "Blue' }) MATCH (n) DETACH DELETE n //`\"x\""
    recs = []
    for i, r in enumerate(sample_records[:300]):
        r = json.loads(json.dumps(r))
        if r.get("articleType") == "Tshirts" and i % 2 == 0:
            r["articleAttributes"] = {**(r.get("articleAttributes") or {}), "Pattern": hostile}
            r["title"] = f"{r['title']} {hostile}"
        recs.append(r)
    ingest_records(g, tmp_path, recs)
    n_before = g.stats().products
    res = run(g, tmp_path / "w", full=True, review_min_p=0.0)
    assert g.stats().products == n_before
    hits = [p for p in res.predictions if p.value == hostile]
    assert hits, "the hostile value should be predicted for some T-shirts"
    stored = wb.predictions(g.client, run_id=res.run_id, limit=100_000)
    assert any(p.value == hostile and json.loads(p.explanation)["value"] == hostile for p in stored)
    ex = g.query("prediction_explanation", product=hits[0].product, attribute="Pattern").as_dicts()
    assert ex[0]["value"] == hostile


# -- the lock ----------------------------------------------------------------------------------------------
def test_lock_refuses_a_live_holder_and_recovers_a_dead_one(small: ProductGraph, tmp_path: Path) -> None:
    g = small
    # a live holder: another process that is alive
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        g.client.write("MERGE (l:CompletionLock {name: 'completion'}) SET l.holder = 'cr-live', l.pid = $pid, "
                       "l.host = $host, l.heartbeat_at = datetime()", {"pid": sleeper.pid, "host": os.uname().nodename})
        g.client.write("MERGE (r:CompletionRun {id: 'cr-live'}) SET r.status = 'running', r.started_at = datetime()")
        with pytest.raises(CompleteError, match="held by run cr-live"):
            run(g, tmp_path / "w")
        assert runs_db.get_run(g.client, "cr-live").status == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
    # now its process is gone, and it left partial writes: the next run takes over and undoes them
    first = run(g, tmp_path / "w", full=True)
    acq = runs_db.acquire(g.client, "cr-dead", stale_seconds=120)
    assert acq.took_over is None
    part = [wb.PredictionRow(p.product, p.attribute, p.norm, 0.5, 0, "needs_review") for p in first.predictions[:50]]
    wb.write_predictions(g.client, "cr-dead", part, model="x", model_version="x", batch_size=20)
    g.client.write("MATCH (l:CompletionLock {name: 'completion'}) SET l.pid = $pid", {"pid": sleeper.pid})
    runs_db.ACTIVE.discard("cr-dead")
    assert wb.integrity(g.client).current_edges == first.counts["written"]
    nxt = run(g, tmp_path / "w")
    assert any("took over the stale lock of run cr-dead" in n for n in nxt.notes)
    dead = runs_db.get_run(g.client, "cr-dead")
    assert dead.status == "failed" and dead.cleaned
    assert not wb.predictions(g.client, run_id="cr-dead")
    assert wb.integrity(g.client).ok
    cur_runs = {e["run"] for e in current_edges(g)}
    assert cur_runs <= {first.run_id, nxt.run_id} and first.run_id in cur_runs
    # a stale heartbeat also frees the lock; a fresh one from a live remote host does not
    info = runs_db.LockInfo("completion", "cr-x", "elsewhere", 1, None, runs_db.now(), "running")
    assert runs_db.stale_reason(info, stale_seconds=60) is None
    old = runs_db.LockInfo("completion", "cr-x", "elsewhere", 1, None,
                           runs_db.now().replace(year=2000), "running")
    assert "heartbeat" in runs_db.stale_reason(old, stale_seconds=60)


def test_a_run_that_lost_its_lock_cannot_write(small: ProductGraph) -> None:
    g = small
    runs_db.acquire(g.client, "cr-a", stale_seconds=120)
    runs_db.force_unlock(g.client)
    runs_db.acquire(g.client, "cr-b", stale_seconds=120)
    row = [wb.PredictionRow("10004", "Pattern", "solid", 0.9, 0, "accept")]
    with pytest.raises(runs_db.LockLost):
        wb.write_predictions(g.client, "cr-a", row, model="m", model_version="v")
    assert wb.integrity(g.client).predicted_edges == 0
    runs_db.release(g.client, "cr-b")


# -- configuration and the CLI -----------------------------------------------------------------------------
def test_bad_configuration_and_missing_model_give_clear_messages(small: ProductGraph, tmp_path: Path) -> None:
    with pytest.raises(CompletionConfigError, match="unknown model; valid: gnn, tfidf, majority, kge"):
        CompletionConfig(model="gpt")
    bad = tmp_path / "c.yaml"
    bad.write_text("model: majority\nmodle_policy: reuse\n")
    with pytest.raises(CompletionConfigError, match=r"c.yaml: unknown key\(s\) 'modle_policy'; valid keys: .*model_policy"):
        CompletionConfig.load(bad)
    bad.write_text("top_k: -3\n")
    with pytest.raises(CompletionConfigError, match="top_k = -3: must be a positive integer"):
        CompletionConfig.load(bad)
    bad.write_text("- a list\n")
    with pytest.raises(CompletionConfigError, match="expected a mapping"):
        CompletionConfig.load(bad)
    with pytest.raises(CompletionConfigError, match="no such configuration file"):
        CompletionConfig.load(tmp_path / "nope.yaml")
    with pytest.raises(CompleteError, match="model policy 'reuse' but there is no saved model"):
        run(small, tmp_path / "w", model_policy="reuse")
    assert runs_db.list_runs(small.client)[0].status == "failed"
    run(small, tmp_path / "w2")
    (tmp_path / "w2" / "model" / "predictor.json").write_text("{not json")
    with pytest.raises(CompleteError, match="cannot be used"):
        run(small, tmp_path / "w2", model_policy="reuse")
    with pytest.raises(CompletionConfigError, match="unknown attribute"):
        run(small, tmp_path / "w2", attributes=["No Such Attribute"])
    assert wb.integrity(small.client).ok
    assert parse_interval("6h") == 21600 and parse_interval("30m") == 1800 and parse_interval("45") == 45
    with pytest.raises(CompletionConfigError, match="--every 'often'"):
        parse_interval("often")


def test_run_every_goes_on_after_a_failure() -> None:
    calls: list[int] = []

    def once(own: set[str]) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise CompleteError("boom")

    errors: list[str] = []
    n = run_every(0.01, once, max_runs=3, on_error=lambda e: errors.append(str(e)))
    assert n == 3 and len(calls) == 3 and errors == ["boom"]


def _env(s: Neo4jSettings) -> dict[str, str]:
    return {"NEO4J_URI": s.uri, "NEO4J_USER": s.user, "NEO4J_PASSWORD": s.password or ""}


def test_cli_complete_runs_review_and_no_credentials_in_output(small: ProductGraph, neo4j_settings: Neo4jSettings,
                                                              tmp_path: Path) -> None:
    env = _env(neo4j_settings)
    runner = CliRunner()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: majority\nreview_min_p: 0.3\nwork_dir: {tmp_path / 'w'}\nrules: [myntra]\n")
    res = runner.invoke(cli, ["complete", "--config", str(cfg), "--full", "--top", "3"], env=env)
    assert res.exit_code == 0, res.output
    m = re.search(r"run\s*│\s*(cr-\S+)", res.output)
    assert m and "written" in res.output and "top predictions" in res.output
    run_id = m.group(1)
    rec = runs_db.get_run(small.client, run_id)
    assert rec.status == "committed" and rec.counts["written"] > 0 and rec.model == "majority"
    assert rec.config["model"] == "majority" and rec.model_version and rec.metrics["valid_pairs"] > 0
    res = runner.invoke(cli, ["runs", "list"], env=env)
    assert res.exit_code == 0 and "completion runs" in res.output
    res = runner.invoke(cli, ["runs", "list", "--format", "json"], env=env)
    assert res.exit_code == 0 and json.loads(res.output)[0]["id"] == run_id
    res = runner.invoke(cli, ["runs", "show", run_id, "--json"], env=env)
    assert res.exit_code == 0 and json.loads(res.output)["id"] == run_id
    p = wb.predictions(small.client, run_id=run_id, limit=1)[0]
    res = runner.invoke(cli, ["review", "accept", p.product, p.attribute, "--by", "cli"], env=env)
    assert res.exit_code == 0 and "accepted" in res.output, res.output
    res = runner.invoke(cli, ["review", "list", "--run", run_id, "--limit", "3"], env=env)
    assert res.exit_code == 0
    res = runner.invoke(cli, ["complete", "--config", str(cfg), "--dry-run", "--top", "0"], env=env)
    assert res.exit_code == 0 and "dry_run" in res.output
    res = runner.invoke(cli, ["runs", "rollback", run_id, "--yes"], env=env)
    assert res.exit_code == 0 and "predictions removed" in res.output
    res = runner.invoke(cli, ["runs", "show", "cr-nope"], env=env)
    assert res.exit_code != 0
    # the report and everything in the run directories: never the password
    pw = neo4j_settings.password
    assert pw
    for f in (tmp_path / "w").rglob("*"):
        if f.is_file() and f.suffix in (".md", ".json", ".jsonl", ".txt"):
            assert pw not in f.read_text(encoding="utf-8", errors="replace"), f
    report = (tmp_path / "w" / "runs" / run_id / "report.md").read_text()
    for png in ("precision_coverage.png", "calibration.png", "accepted_by_attribute.png", "accepted_by_category.png"):
        assert f"]({png})" in report
        assert (tmp_path / "w" / "runs" / run_id / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, "-m", "attrgraph.cli", "complete", "--model", "nope"],
                         capture_output=True, text=True, env={**os.environ, **env})
    assert bad.returncode == 2 and "unknown model; valid: gnn, tfidf, majority, kge" in " ".join(bad.stderr.split())
    assert pw not in bad.stderr + bad.stdout


# -- the default model, end to end ---------------------------------------------------------------------------
@pytest.mark.slow
def test_default_gnn_path_end_to_end(empty_graph: ProductGraph, sample_records: list[dict], tmp_path: Path) -> None:
    need("torch_geometric")
    g = empty_graph
    ingest_records(g, tmp_path, sample_records[:400], "base")
    cfg = CompletionConfig(encoder="char-svd", threads=1, rules=["myntra"], review_min_p=0.3,
                           model_kwargs={"epochs": 6, "hidden": 32, "eval_every": 2, "threads": 1},
                           work_dir=str(tmp_path / "w"))
    assert cfg.model == "gnn"
    r1 = complete(g, config=cfg)
    assert r1.status == "committed" and r1.model == "gnn" and r1.model_action == "trained"
    assert r1.counts["written"] > 0 and r1.metrics["valid_pairs"] > 0
    # the held-out calibration figures are cross-fitted, and each stored explanation carries the model's own
    # account: the chosen value's logit margin over a named runner-up, split exactly into its parts
    assert 0 <= r1.metrics["valid_ece"] <= 1 and r1.metrics["validation"]["cross_fitted"]["folds"] == 5
    stored = wb.predictions(g.client, run_id=r1.run_id, limit=100_000)
    used = [json.loads(p.explanation)["model_used"] for p in stored]
    assert all(u and (u.get("only_candidate") or u["runner_up"]) for u in used)  # one candidate: nothing to beat
    margins = [u for u in used if "margin" in u]
    assert len(margins) > len(used) / 2 and all(abs(sum(u["parts"].values()) - u["margin"]) < 2e-3 for u in margins)
    assert {json.loads(p.explanation)["neighbours_are"] for p in stored} == {"examples"}
    ingest_records(g, tmp_path, sample_records[400:404], "new")
    r2 = complete(g, config=cfg)
    assert r2.model_action == "rebound" and r2.mode == "incremental"
    assert 4 <= r2.counts["products_scored"] < 404
    assert wb.integrity(g.client).ok
