"""Faults during completion runs, against real Neo4j servers and real processes (no mocks):

* the run process is SIGKILLed at random points of write-back, repeatedly: the next run completes,
  no duplicate predicted edges exist, the asserted facts are unchanged, the killed runs are failed;
* Neo4j is stopped in the middle of a run (a second, private Neo4j): a clear error, the run is
  marked failed by the next run, and the rerun converges;
* readers (the Python API and named queries) keep working while a run writes;
* credentials never appear in errors, logs or reports.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from attrgraph.complete import CompleteError, complete
from graph import LocalNeo4j, LocalNeo4jSettings, Neo4jSettings, ProductGraph
from graph import runs as runs_db
from graph import writeback as wb
from tests.conftest import ROOT, free_port, write_jsonl

pytestmark = pytest.mark.neo4j

FAST = {"model": "majority", "review_min_p": 0.3, "rules": ["myntra"]}

CHILD = r"""
import json, sys
from graph import ProductGraph
from attrgraph.complete import complete
a = json.loads(sys.argv[1])
g = ProductGraph.connect(a["uri"], a["user"], a["password"])
def say(m):
    print(m, flush=True)
res = complete(g, model="majority", review_min_p=0.3, rules=["myntra"], batch_size=a["batch"], work_dir=a["work"],
               full=True, progress=say)
print("DONE", res.run_id, flush=True)
"""


@pytest.fixture()
def graph500(empty_graph: ProductGraph, sample_records: list[dict], tmp_path: Path) -> ProductGraph:
    rep = empty_graph.ingest(write_jsonl(tmp_path / "s.jsonl", sample_records[:500]), mapping="myntra")
    assert rep.rows_rejected == 0
    return empty_graph


def _child(settings: Neo4jSettings, work: Path, batch: int) -> subprocess.Popen:
    args = json.dumps({"uri": settings.uri, "user": settings.user, "password": settings.password, "work": str(work),
                       "batch": batch})
    return subprocess.Popen([sys.executable, "-c", CHILD, args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_sigkill_during_write_back_repeatedly_converges(graph500: ProductGraph, neo4j_settings: Neo4jSettings,
                                                         tmp_path: Path) -> None:
    g = graph500
    work = tmp_path / "w"
    before = wb.asserted_fingerprint(g.client)
    first = complete(g, **FAST, work_dir=str(work), full=True)  # an earlier committed run to supersede
    rng = random.Random(7)
    killed = []
    for attempt in range(4):
        p = _child(neo4j_settings, work, batch=40)
        kill_after = rng.randint(1, 25)  # batches committed before the kill, then a random delay into the next
        batches = 0
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("written "):
                batches += 1
                if batches >= kill_after:
                    time.sleep(rng.uniform(0.0, 0.05))
                    break
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        assert p.returncode == -signal.SIGKILL, f"attempt {attempt}: the child ended before the kill ({batches} batches)"
        lock = runs_db.lock_state(g.client)
        killed.append(lock.holder)
        integ = wb.integrity(g.client)
        assert integ.slots_with_several_current == 0 and integ.duplicate_run_edges == 0  # even mid-way
        assert wb.asserted_fingerprint(g.client) == before
    nxt = complete(g, **FAST, work_dir=str(work), full=True)
    assert nxt.status == "committed"
    for rid in killed:
        rec = runs_db.get_run(g.client, rid)
        assert rec.status == "failed" and rec.cleaned, rec
        assert not wb.predictions(g.client, run_id=rid)
    integ = wb.integrity(g.client)
    assert integ.ok and integ.current_edges == nxt.counts["written"]
    assert integ.predicted_edges == first.counts["written"] + nxt.counts["written"]
    assert wb.asserted_fingerprint(g.client) == before
    assert runs_db.lock_state(g.client).holder is None


@pytest.mark.slow
def test_neo4j_stopped_mid_run_then_rerun_converges(sample_records: list[dict], tmp_path: Path) -> None:
    local = LocalNeo4jSettings(home=tmp_path / "neo4j", dist_dir=LocalNeo4jSettings.from_env().dist_dir,
                               port=free_port(), heap_mb=512, pagecache_mb=64)
    server = LocalNeo4j(local)
    server.start()
    try:
        g = ProductGraph.connect(local=local)
        g.ensure_schema()
        g.ingest(write_jsonl(tmp_path / "s.jsonl", sample_records[:300]), mapping="myntra")
        before = wb.asserted_fingerprint(g.client)
        work = tmp_path / "w"
        stopped = threading.Event()

        def say(msg: str) -> None:
            if msg.startswith("written ") and not stopped.is_set():
                stopped.set()
                server.stop()  # the database goes away between two write batches

        with pytest.raises(CompleteError) as ei:
            complete(g, **FAST, work_dir=str(work), batch_size=50, progress=say)
        msg = str(ei.value)
        assert "became unreachable during stage 'write'" in msg and "rerunning converges" in msg, msg
        assert local.password() not in msg
        failed_dir = sorted((work / "runs").iterdir())[-1]
        rec = json.loads((failed_dir / "run.json").read_text())
        assert rec["status"] == "failed" and rec["stage"] == "write"
        g.close()
        server.start()
        g = ProductGraph.connect(local=local)
        res = complete(g, **FAST, work_dir=str(work), batch_size=50)
        assert res.status == "committed"
        dead = runs_db.get_run(g.client, rec["run_id"])
        assert dead.status == "failed" and dead.cleaned
        assert any(f"recovered run {rec['run_id']}" in n for n in res.notes)
        integ = wb.integrity(g.client)
        assert integ.ok and integ.current_edges == res.counts["written"] == integ.predicted_edges
        assert wb.asserted_fingerprint(g.client) == before
        for f in work.rglob("*"):
            if f.is_file() and f.suffix in (".md", ".json", ".jsonl"):
                assert local.password() not in f.read_text(errors="replace"), f
        g.close()
    finally:
        server.stop()


@pytest.mark.slow
def test_readers_keep_working_during_a_run(empty_graph: ProductGraph, neo4j_settings: Neo4jSettings,
                                           sample_records: list[dict], tmp_path: Path) -> None:
    g = empty_graph
    g.ingest(write_jsonl(tmp_path / "s.jsonl", sample_records[:1500]), mapping="myntra")
    stats0 = g.stats()
    pid = str(sample_records[0]["id"])
    done = threading.Event()
    errors: list[BaseException] = []
    result: list = []

    def writer() -> None:
        try:
            with ProductGraph.connect(neo4j_settings.uri, neo4j_settings.user, neo4j_settings.password) as w:
                result.append(complete(w, **FAST, work_dir=str(tmp_path / "w"), batch_size=100))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    reads = during_write = 0
    while not done.is_set():
        s = g.stats()
        assert (s.products, s.has_value, s.has_brand) == (stats0.products, stats0.has_value, stats0.has_brand)
        assert g.product(pid).id == pid
        g.query("predictions_above", category="Apparel", min_p=0.0, limit=50)
        g.query("products_missing_attribute", attribute="Pattern", category="Tshirts", limit=20)
        integ = wb.integrity(g.client)
        assert integ.slots_with_several_current == 0
        reads += 1
        if integ.predicted_edges:
            during_write += 1
    t.join()
    assert not errors, errors
    assert result[0].status == "committed" and reads >= 3
    assert during_write >= 1 or result[0].stages.get("write", 0) < 0.5
