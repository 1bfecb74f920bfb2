"""Open-world proposals against the real Neo4j: extracted values new to the graph written as proposals with
evidence and support, idempotent reruns, hidden while their run is pending, the new-value rules, review
acceptance, rollback, the named queries, hostile strings, and `predict` / `complete` output.

The extractor is a test double (the extract package builds the real one): a small class implementing
``extract.api.Extractor`` that returns real :class:`extract.api.Span` objects computed from the test
products' own titles. Neo4j is real. The model is ``majority`` on 300 products of the Myntra sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import extract
from attrgraph.cli import cli
from attrgraph.complete import complete, rollback
from extract.api import Span
from graph import Neo4jSettings, ProductGraph
from graph import proposals as gp
from graph import runs as runs_db
from graph import writeback as wb
from graph.export import export_snapshot
from kb.units import norm_key
from tests.conftest import write_jsonl

pytestmark = pytest.mark.neo4j

MODEL_ID = "test-extractor-1"
HOSTILE = "Mauve'\"})`//"  # quotes, a brace, a backtick, a Cypher comment: data, never query text
MARKETING = " Hotdeal Megasale"


class TitleExtractor:
    """A test double of ``extract.api.Extractor``: for each product it knows, the spans named in ``plan``
    ((attribute, surface string in the title, known value or None, alias)), located in the title."""

    attributes = ["baseColour", "brand"]

    def __init__(self, plan: dict[str, list[tuple[str, str, str | None, bool]]]):
        self.plan = plan
        self.calls = 0

    def predict(self, products, attributes=None, top_k=1):
        self.calls += 1
        out = []
        for p in products:
            for attr, text, value, alias in self.plan.get(p.id, []):
                if attributes is not None and attr not in attributes:
                    continue
                start = p.title.find(text)
                assert start >= 0, (p.id, text, p.title)
                out.append(Span(p.id, attr, text, "title", start, start + len(text), 0.99, norm_key(text),
                                value=value, alias=alias, model=MODEL_ID, support=1))
        return out


def _env(s: Neo4jSettings) -> dict[str, str]:
    return {"NEO4J_URI": s.uri, "NEO4J_USER": s.user, "NEO4J_PASSWORD": s.password or ""}


@pytest.fixture()
def world(empty_graph: ProductGraph, sample_records: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """300 products; some lose baseColour (or brand) and gain a new word in the title; every third title
    carries two marketing words (so the rules learn them from the catalog)."""
    recs = [dict(r) for r in sample_records[:300]]
    for i, r in enumerate(recs):
        if i % 3 == 0:
            r["title"] = r["title"] + MARKETING
    pool = [r for j, r in enumerate(recs) if j % 3 and r.get("baseColour") and r["baseColour"] != "Navy Blue"
            and r.get("brand") and r["title"].startswith(r["brand"] + " ")][10:19]
    names = ["new1", "new2", "mkt", "digits", "long", "conflict", "hostile", "alias", "brand"]
    who = dict(zip(names, pool))
    assert len(who) == len(names) and any(r.get("baseColour") == "Navy Blue" for r in recs)
    suffix = {"new1": " in Zorblue", "new2": " Zorblue shade", "mkt": "", "digits": " 12345",
              "long": " " + "Verylongcolourname" * 5, "conflict": "", "hostile": " " + HOSTILE, "alias": " Navyblue",
              "brand": ""}
    for k, r in who.items():
        r.pop("baseColour", None)
        r["title"] = r["title"] + suffix[k]
    who["brand"]["brand"] = ""  # the brand slot is missing: extraction proposes one
    who["brand"]["title"] = "Quuxcorp " + who["brand"]["title"]
    if MARKETING not in who["mkt"]["title"]:
        who["mkt"]["title"] += MARKETING
    f = write_jsonl(tmp_path / "part.jsonl", recs)
    rep = empty_graph.ingest(f, mapping="myntra")
    assert rep.rows_rejected == 0
    ids = {k: str(r["id"]) for k, r in who.items()}
    brand_of_conflict = empty_graph.product(ids["conflict"]).brand
    plan = {ids["new1"]: [("baseColour", "Zorblue", None, False)], ids["new2"]: [("baseColour", "Zorblue", None, False)],
            ids["mkt"]: [("baseColour", MARKETING.strip(), None, False)], ids["digits"]: [("baseColour", "12345", None, False)],
            ids["long"]: [("baseColour", "Verylongcolourname" * 5, None, False)],
            ids["conflict"]: [("baseColour", brand_of_conflict, None, False)],
            ids["hostile"]: [("baseColour", HOSTILE, None, False)], ids["alias"]: [("baseColour", "Navyblue", "Navy Blue", True)],
            ids["brand"]: [("brand", "Quuxcorp", None, False)]}
    ext = TitleExtractor(plan)
    monkeypatch.setattr(extract, "load", lambda path: ext, raising=False)
    monkeypatch.delattr(extract, "combine", raising=False)  # this module tests the documented fallback rule
    return empty_graph, ids, ext


def run(g: ProductGraph, work: Path, **kw):
    cfg = {"model": "majority", "review_min_p": 0.3, "batch_size": 200, "rules": ["myntra"], "work_dir": str(work),
           "extractor": "test-extractor-path"}
    return complete(g, **{**cfg, **kw})


def proposed(g: ProductGraph, **kw) -> dict[tuple[str, str], dict]:
    return {(r["attribute"], r["value"]): r for r in g.query("proposed_values", **kw).as_dicts()}


def test_proposals_end_to_end(world, tmp_path: Path, neo4j_settings: Neo4jSettings) -> None:
    g, ids, ext = world
    before = wb.asserted_fingerprint(g.client)
    stats0 = g.stats()
    r1 = run(g, tmp_path / "w", full=True)
    assert r1.status == "committed" and ext.calls == 1
    assert r1.counts["proposed"] == 3 and r1.counts["aliases"] == 1 and r1.counts["new_rejected"] == 4

    # -- proposals with evidence, model, run and support ----------------------------------------------------
    props = proposed(g)
    assert set(props) == {("baseColour", "Zorblue"), ("baseColour", HOSTILE), ("@brand", "Quuxcorp")}
    z = props[("baseColour", "Zorblue")]
    assert z["status"] == "proposed" and z["support"] == 2 and z["model"] == MODEL_ID and z["runs"] == [r1.run_id]
    title = g.product(z["evidence_product"]).title
    assert z["evidence_field"] == "title" and title[z["evidence_start"]:z["evidence_end"]] == "Zorblue" == z["evidence_text"]
    assert props[("baseColour", HOSTILE)]["evidence_text"] == HOSTILE  # hostile text is stored as data
    assert props[("@brand", "Quuxcorp")]["support"] == 1
    ev = g.query("value_evidence", attribute="baseColour", value="Zorblue").as_dicts()
    assert {e["product"] for e in ev} == {ids["new1"], ids["new2"]}
    assert all(e["new"] and e["run"] == r1.run_id and e["extractor"] == MODEL_ID and e["verdict"] == "needs_review"
               and e["field"] == "title" and e["text"] == "Zorblue" for e in ev)
    # the alias: the known value carries the span, and the alias is recorded
    al = g.query("value_evidence", attribute="baseColour", product=ids["alias"]).as_dicts()
    assert al and al[0]["value"] == "Navy Blue" and not al[0]["new"] and al[0]["aliases"] == ["Navyblue"]
    # predictions of the run: new values marked, with evidence; never accepted without review
    wp = {(p.product, p.attribute): p for p in r1.predictions}
    assert wp[(ids["new1"], "baseColour")].new and wp[(ids["new1"], "baseColour")].evidence["text"] == "Zorblue"
    assert all(p.verdict == "needs_review" for p in r1.predictions if p.new)
    assert "new values go to review" in "; ".join(wp[(ids["new1"], "baseColour")].violations) \
        or wp[(ids["new1"], "baseColour")].violations
    lines = [json.loads(x) for x in (r1.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert any(x["new"] and x["evidence"]["field"] == "title" for x in lines)

    # -- the rules rejected the junk, each with its reason --------------------------------------------------
    rej = {x["product"]: x for x in r1.metrics["new_values_rejected"]}
    why = {k: {r["rule"] for r in rej[ids[k]]["reasons"]} for k in ("mkt", "digits", "long", "conflict")}
    assert "new-value-marketing" in why["mkt"] and "new-value-digits" in why["digits"]
    assert "new-value-length" in why["long"] and "new-value-conflict" in why["conflict"]
    assert "hotdeal" in " ".join(r["message"] for r in rej[ids["mkt"]]["reasons"])
    assert "own brand" in " ".join(r["message"] for r in rej[ids["conflict"]]["reasons"])
    assert not any(p.value in (MARKETING.strip(), "12345") for p in r1.predictions)

    # -- proposals are not asserted values ------------------------------------------------------------------
    assert wb.asserted_fingerprint(g.client) == before
    st = g.stats()
    assert (st.values, st.brands) == (stats0.values, stats0.brands)
    snap = export_snapshot(g.client, tmp_path / "snap")
    assert snap.nodes["value"] == stats0.values and snap.nodes["brand"] == stats0.brands
    assert not g.query("products_with_value", attribute="baseColour", value="Zorblue").as_dicts()
    assert g.query("top_values", attribute="baseColour", limit=1000).as_dicts()
    assert "Zorblue" not in {r["value"] for r in g.query("top_values", attribute="baseColour", limit=1000).as_dicts()}

    # -- idempotent: a second run merges onto the same nodes ------------------------------------------------
    n_nodes = g.client.read("MATCH (v) WHERE (v:Value OR v:Brand) AND v.provenance = 'extracted' RETURN count(v) AS n")[0]["n"]
    r2 = run(g, tmp_path / "w", full=True)
    assert r2.status == "committed" and r2.counts["proposed"] == 3
    assert g.client.read("MATCH (v) WHERE (v:Value OR v:Brand) AND v.provenance = 'extracted' RETURN count(v) AS n")[0]["n"] == n_nodes == 3
    assert g.client.read("MATCH (a:Alias) RETURN count(a) AS n")[0]["n"] == 1
    z = proposed(g)[("baseColour", "Zorblue")]
    assert z["support"] == 2 and z["runs"] == [r1.run_id, r2.run_id] and z["first_run"] == r1.run_id
    assert wb.integrity(g.client).ok

    # -- review accept: the value and the fact --------------------------------------------------------------
    res = CliRunner().invoke(cli, ["review", "accept", ids["new1"], "baseColour", "Zorblue", "--by", "qa"],
                             env=_env(neo4j_settings))
    assert res.exit_code == 0, res.output
    facts = g.client.read("MATCH (p:Product {id: $p})-[h:HAS_VALUE]->(v:Value {attribute: 'baseColour'}) "
                          "RETURN v.value AS value, v.status AS status, v.provenance AS prov, h.source AS source, "
                          "h.accepted_from AS origin, h.evidence_text AS text, "
                          "EXISTS { (v)-[:OF_ATTRIBUTE]->(:Attribute {name: 'baseColour'}) } AS typed", {"p": ids["new1"]})
    assert facts == [{"value": "Zorblue", "status": "accepted", "prov": "extracted", "source": "review",
                      "origin": "extraction", "text": "Zorblue", "typed": True}]
    assert ("baseColour", "Zorblue") not in proposed(g) and ("baseColour", "Zorblue") in proposed(g, status="accepted")
    assert export_snapshot(g.client, tmp_path / "snap2").nodes["value"] == stats0.values + 1
    assert g.product(ids["new1"]).values("baseColour") == ["Zorblue"]

    # -- rollback removes only the unused nodes a run created ----------------------------------------------
    rb2 = rollback(g, r2.run_id)
    assert rb2.proposals_deleted == 0 and rb2.aliases_deleted == 0  # r1 still proposes them
    assert proposed(g)[("@brand", "Quuxcorp")]["runs"] == [r1.run_id]
    rb1 = rollback(g, r1.run_id)
    assert rb1.proposals_deleted == 2 and rb1.aliases_deleted == 1  # Quuxcorp and the hostile value; Zorblue is asserted
    left = g.client.read("MATCH (v) WHERE (v:Value OR v:Brand) AND v.provenance = 'extracted' RETURN coalesce(v.value, v.name) AS v, v.status AS s")
    assert left == [{"v": "Zorblue", "s": "accepted"}]
    assert g.client.read("MATCH (a:Alias) RETURN count(a) AS n")[0]["n"] == 0
    assert g.client.read("MATCH (b:Brand {key: 'quuxcorp'}) RETURN count(b) AS n")[0]["n"] == 0
    assert not proposed(g) and wb.integrity(g.client).ok
    # the database is intact: the hostile string never ran as Cypher
    assert g.stats().products == stats0.products


def _proposal_run(g: ProductGraph, rid: str, product: str, value: str, *, commit: bool) -> None:
    """A run that proposes ``value`` for ``product``'s baseColour through the graph API (no model)."""
    runs_db.acquire(g.client, rid, mode="full")
    ev = gp.SpanEvidence(product, "title", 0, 3, value[:3], 0.8, MODEL_ID)
    rows = [gp.ProposalRow("baseColour", norm_key(value), value, ev, MODEL_ID)]
    assert gp.write_proposals(g.client, rid, rows).proposed == 1
    assert gp.write_proposals(g.client, rid, rows).created == 0  # a retried batch changes nothing
    wb.write_predictions(g.client, rid, [wb.PredictionRow(product, "baseColour", norm_key(value), 0.8, 0, "needs_review",
                                                          extra={"new": True, **ev.edge_props()})],
                         model="majority", model_version="x")
    if commit:
        wb.commit_predictions(g.client, rid, {product: ["baseColour"]})
        runs_db.release(g.client, rid)


def test_pending_proposals_are_hidden_then_undone(world) -> None:
    g, ids, _ = world
    r1 = runs_db.new_run_id()
    _proposal_run(g, r1, ids["new1"], "Zorblue", commit=True)
    assert proposed(g)[("baseColour", "Zorblue")]["support"] == 1
    rid = runs_db.new_run_id()
    try:
        _proposal_run(g, rid, ids["new2"], "Plumwave", commit=False)
        # the same run also re-proposes Zorblue, for another product
        ev = gp.SpanEvidence(ids["new2"], "title", 0, 3, "Zor", 0.8, MODEL_ID)
        gp.write_proposals(g.client, rid, [gp.ProposalRow("baseColour", "zorblue", "Zorblue", ev, MODEL_ID)])
        # a pending run: its proposal, its evidence and its share of an existing proposal are not shown
        props = proposed(g)
        assert ("baseColour", "Plumwave") not in props and props[("baseColour", "Zorblue")]["runs"] == [r1]
        assert not g.query("value_evidence", attribute="baseColour", value="Plumwave").as_dicts()
        assert g.query("value_evidence", attribute="baseColour", value="Zorblue").as_dicts()[0]["run"] == r1
        assert all(rid not in p.runs for p in gp.proposals(g.client))
        und = wb.undo_run_writes(g.client, rid, holder=rid)
        assert und.deleted == 1 and und.proposals_deleted == 1
    finally:
        runs_db.finish_run(g.client, rid, status="failed", extra={"cleaned": True})
        runs_db.release(g.client, rid)
    assert not g.client.read("MATCH (v:Value {norm: 'plumwave'}) RETURN v")
    z = g.client.read("MATCH (v:Value {attribute: 'baseColour', norm: 'zorblue'}) RETURN v.runs AS runs")
    assert z == [{"runs": [r1]}]


def test_predict_and_complete_cli_show_new_candidates(world, tmp_path: Path, neo4j_settings: Neo4jSettings) -> None:
    g, ids, _ = world
    env = _env(neo4j_settings)
    runner = CliRunner()
    snap, model = tmp_path / "snap", tmp_path / "model"
    for args in (["snapshot", "--out", str(snap)],
                 ["train", "--snapshot", str(snap), "--model", "majority", "--out", str(model)]):
        res = runner.invoke(cli, args, env=env)
        assert res.exit_code == 0, res.output
    out = tmp_path / "pred.jsonl"
    res = runner.invoke(cli, ["predict", "--snapshot", str(snap), "--model-dir", str(model), "--extractor", "x",
                              "--product", ids["new1"], "--product", ids["alias"], "--product", ids["brand"],
                              "--out", str(out)], env=env)
    assert res.exit_code == 0, res.output
    slots = {(s["product"], s["attribute"]): s for s in map(json.loads, out.read_text().splitlines())}
    top = slots[(ids["new1"], "baseColour")]["candidates"][0]
    assert top["new"] is True and top["value"] == "Zorblue" and top["evidence"]["field"] == "title"
    t = g.product(ids["new1"]).title
    assert t[top["evidence"]["start"]:top["evidence"]["end"]] == "Zorblue"
    nb = slots[(ids["alias"], "baseColour")]["candidates"][0]
    assert nb["value"] == "Navy Blue" and nb["new"] is False and nb["alias"]["text"] == "Navyblue"
    assert slots[(ids["brand"], "@brand")]["candidates"][0]["value"] == "Quuxcorp"
    assert "extracted candidates new to the graph" in res.output
    res = runner.invoke(cli, ["complete", "--model", "majority", "--rules", "myntra", "--work-dir", str(tmp_path / "w"),
                              "--full", "--extractor", "x", "--top", "0"], env=env)
    assert res.exit_code == 0, res.output
    assert "proposed" in res.output and proposed(g)[("baseColour", "Zorblue")]["support"] == 2
