"""Readers never see part of a completion run (issue 14, point 6), against the real Neo4j.

A graph holds a committed run (state A). A child process writes back a second run (state B) in many
small staging batches and many small commit transactions, and is SIGKILLed at a random point: while
staging, while its commit flips the edges, or after it committed. Meanwhile a reader thread reads
the set of current (product, attribute, value, run) predictions as fast as it can, through the
Python API and a named query; it must only ever see exactly A or exactly B. After each kill the dead
run is recovered (the code ``attrgraph complete`` uses) and the invariants hold; the state the round
ended in is the next round's A.
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
from collections import Counter

import pytest

from graph import Neo4jSettings, ProductGraph
from graph import runs as runs_db
from graph import writeback as wb
from tests.conftest import ROOT

pytestmark = pytest.mark.neo4j

PRODUCTS = 200
SCORED = 160  # products the child run scores; the rest keep their predictions
COLOR_ONLY = range(130, 160)  # scored, but the run writes only Color: their other slots are retired
BRANDS = 5
STAGE_BATCH = 12  # rows per staging transaction
FLIP_BATCH = 40  # edges per commit transaction
ROUNDS = 20

# A hostile value: data, never Cypher.
HOSTILE = "Blue' }) MATCH (n) DETACH DELETE n //`\"x"

# Started ahead of its round (imports and connecting take a second or two here); its round's
# arguments come as one JSON line on stdin.
CHILD = r"""
import json, os, sys, time
from graph import ProductGraph
from graph import runs as runs_db, writeback as wb
c = json.loads(sys.argv[1])
g = ProductGraph.connect(c["uri"], c["user"], os.environ["ATTRGRAPH_TEST_PW"])
print("ready", flush=True)
a = json.loads(sys.stdin.readline())
run = a["run"]
rows = [wb.PredictionRow(*r) for r in a["rows"]]
runs_db.acquire(g.client, run, mode="test")
print("start", flush=True)
wb.write_predictions(g.client, run, rows, model="test", model_version="1", batch_size=a["stage_batch"],
                     on_batch=lambda d, t: print("staged", d, t, flush=True))
print("committing", flush=True)
wb.commit_predictions(g.client, run, a["keep"], batch=a["flip_batch"], on_step=lambda m: print("flip", m, flush=True))
print("committed", flush=True)
time.sleep(0.5)  # still holding the lock: a kill now leaves a committed run behind its lock
runs_db.release(g.client, run)
print("released", flush=True)
"""


def values(template: int, i: int) -> dict[str, str]:
    """The value of each slot of product ``i`` under a template (0 or 1: every slot differs)."""
    color = HOSTILE if (i + template) % 10 == 3 else f"c{(i + template) % 10}"
    return {"Color": color, "Size": f"s{(i + 3 * template) % 10}", wb.BRAND: f"b{(i + template) % BRANDS}"}


def setup_graph(g: ProductGraph) -> None:
    c = g.client
    c.write("CREATE (:Category {path: 'Cat', name: 'Cat', level: 0})")
    c.write("UNWIND range(0, $n - 1) AS i MATCH (k:Category {path: 'Cat'}) "
            "CREATE (:Product {id: 'p' + toString(i), title: 'product ' + toString(i)})-[:IN_CATEGORY]->(k)",
            {"n": PRODUCTS})
    vals = {("Color", values(t, i)["Color"]) for t in (0, 1) for i in range(10)} | \
           {("Size", f"s{j}") for j in range(10)}
    c.write("UNWIND $vals AS x CREATE (:Value {attribute: x[0], norm: x[1], value: x[1]})", {"vals": sorted(vals)})
    c.write("UNWIND range(0, $n - 1) AS j CREATE (:Brand {key: 'b' + toString(j), name: 'b' + toString(j)})",
            {"n": BRANDS})


def rows_for(template: int, products: range, *, color_only: range = COLOR_ONLY) -> list[wb.PredictionRow]:
    out = []
    for i in products:
        for attr, v in values(template, i).items():
            if i in color_only and attr != "Color":
                continue
            out.append(wb.PredictionRow(f"p{i}", attr, v, 0.5 + (i % 7) / 20, 0, "accept" if i % 3 else "needs_review",
                                        explanation=json.dumps({"value": v})))
    return out


def expected_after(before: set[tuple], run: str, template: int) -> set[tuple]:
    """The current predictions once ``run`` (``template``, products 0..SCORED-1) has committed."""
    keep = {x for x in before if int(x[0][1:]) >= SCORED}
    return keep | {(r.product, r.attribute, r.norm, run) for r in rows_for(template, range(SCORED))}


def named_query_set(g: ProductGraph) -> set[tuple]:
    rows = g.query("predictions_above", category="Cat", min_p=0.0, limit=100_000).as_dicts()
    return {(r["id"], r["attribute"], r["value"], r["run"]) for r in rows}  # values display as their norm here


def left_behind(g: ProductGraph, run: str) -> tuple[int, int]:
    """A run's own edges, and how many edges its commit already changed the raw flags of (its own no
    longer staged, or one it replaces no longer ``current``)."""
    r = g.client.read("""
        CALL () { MATCH ()-[e:PREDICTED_VALUE]->() WHERE e.run_id = $run
                  RETURN count(e) AS own, sum(CASE WHEN e.staged IS NULL THEN 1 ELSE 0 END) AS own_flipped }
        CALL () { MATCH ()-[o:PREDICTED_VALUE]->() WHERE o.superseded_by = $run AND o.current = false
                  RETURN count(o) AS old_flipped }
        RETURN own, own_flipped + old_flipped AS flipped""", {"run": run})[0]
    return int(r["own"]), int(r["flipped"])


class Reader(threading.Thread):
    """Reads the current predictions in a loop; every read must equal one of the allowed states."""

    def __init__(self, settings: Neo4jSettings):
        super().__init__(daemon=True)
        self.g = ProductGraph.connect(settings.uri, settings.user, settings.password)
        self.allowed: tuple[set[tuple], ...] = ()
        self.stop = threading.Event()
        self.reads = Counter()  # "A" / "B" / "mix", and per source
        self.stamps: list[float] = []
        self.mixes: list[tuple[str, int, int]] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                allowed = self.allowed
                if not allowed:
                    time.sleep(0.001)
                    continue
                t = time.monotonic()
                src = "named_query" if n % 4 == 3 else "api"
                got = named_query_set(self.g) if src == "named_query" else wb.current_set(self.g.client)
                # the test moves to its next round between reads; one that straddles it may see either round's state
                label = next((("A", "B")[k] for k, s in enumerate(allowed) if got == s), None) or \
                    next((("A", "B")[k] for k, s in enumerate(self.allowed) if got == s), "mix")
                self.reads[label] += 1
                self.reads[src] += 1
                if label == "mix":
                    self.mixes.append((src, len(got & allowed[0]), len(got - allowed[0]), len(allowed[0] - got)))
                self.stamps.append(t)
                n += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)
        finally:
            self.g.close()


def _child(settings: Neo4jSettings) -> subprocess.Popen:
    args = json.dumps({"uri": settings.uri, "user": settings.user})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTRGRAPH_TEST_PW": settings.password or ""}
    return subprocess.Popen([sys.executable, "-c", CHILD, args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def _go(p: subprocess.Popen, run: str, rows: list[wb.PredictionRow], keep: dict[str, list[str]]) -> None:
    assert p.stdin is not None and p.stdout is not None
    ready = p.stdout.readline()
    assert ready.startswith("ready"), (ready, p.stderr.read() if p.stderr else "")
    p.stdin.write(json.dumps({"run": run, "stage_batch": STAGE_BATCH, "flip_batch": FLIP_BATCH, "keep": keep,
                              "rows": [[r.product, r.attribute, r.norm, r.p, r.rank, r.verdict] for r in rows]}) + "\n")
    p.stdin.flush()


def _recover(g: ProductGraph, k: int) -> list[wb.RollbackResult]:
    """What a new run does first: take the stale lock of the dead child, recover dead runs, release."""
    holder = f"recovery-{k}"
    runs_db.acquire(g.client, holder, stale_seconds=120, record=False)
    try:
        return wb.recover_dead_runs(g.client, holder)
    finally:
        runs_db.release(g.client, holder)


@pytest.mark.slow
def test_readers_see_all_of_a_run_or_none_of_it_across_sigkills(empty_graph: ProductGraph,
                                                                 neo4j_settings: Neo4jSettings) -> None:
    t_start = time.monotonic()
    g = empty_graph
    setup_graph(g)
    # state A: a committed run over every product
    runs_db.acquire(g.client, "cr-a", mode="test")
    wb.write_predictions(g.client, "cr-a", rows_for(0, range(PRODUCTS), color_only=range(0)), model="test",
                         model_version="1")
    wb.commit_predictions(g.client, "cr-a", {f"p{i}": ["Color", "Size", wb.BRAND] for i in range(PRODUCTS)},
                          finish=lambda tx, r: runs_db.finish_run(g.client, "cr-a", status="committed", tx=tx))
    runs_db.release(g.client, "cr-a")
    state = wb.current_set(g.client)
    assert len(state) == 3 * PRODUCTS and {x[3] for x in state} == {"cr-a"}
    assert named_query_set(g) == state  # the named query and the API agree
    template = 0

    rng = random.Random(14)
    phases = ["stage"] * 7 + ["flip"] * 9 + ["after"] * 4  # the point each round's kill aims at
    assert len(phases) == ROUNDS
    rng.shuffle(phases)
    reader = Reader(neo4j_settings)
    reader.start()
    nxt = _child(neo4j_settings)
    outcomes: Counter = Counter()
    log = []
    flip_windows: list[tuple[float, float]] = []
    timing: dict[str, list[float]] = {}
    try:
        for k, phase in enumerate(phases):
            run = f"cr-b{k:02d}"
            template = 1 - template
            rows = rows_for(template, range(SCORED))
            keep: dict[str, list[str]] = {f"p{i}": [] for i in range(SCORED)}
            for r in rows:
                keep[r.product].append(r.attribute)
            after = expected_after(state, run, template)
            assert after != state
            reader.allowed = (state, after)
            p, nxt = nxt, (_child(neo4j_settings) if k + 1 < len(phases) else None)
            _go(p, run, rows, keep)
            assert p.stdout is not None
            n_stage = -(-len(rows) // STAGE_BATCH)
            target = {"stage": ("staged", rng.randint(1, n_stage - 1)), "flip": ("flip", rng.randint(1, 22)),
                      "after": ("committed", 1)}[phase]
            seen: Counter = Counter()
            t_flip = None
            last = ""
            t_spawn = time.monotonic()
            for line in p.stdout:
                last = line.split()[0] if line.strip() else last
                timing.setdefault(last, []).append(time.monotonic() - t_spawn)
                if last == "committing":
                    t_flip = time.monotonic()
                seen[last] += 1
                if last == target[0] and seen[last] >= target[1]:
                    break
                if last in ("committed", "released") and phase != "after":
                    break  # the run finished its commit before the chosen point: a kill after the commit
            time.sleep(rng.uniform(0.0, 0.012))
            timing.setdefault("kill", []).append(time.monotonic() - t_spawn)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
            err = p.stderr.read() if p.stderr else ""
            assert p.returncode == -signal.SIGKILL, f"round {k}: the child ended before the kill: {err[-2000:]}"
            if t_flip is not None:
                flip_windows.append((t_flip, time.monotonic()))
            rec = runs_db.get_run(g.client, run)
            pending_edges, flipped = left_behind(g, run)
            # before any recovery, whatever the kill left: readers see A or B, and the invariants hold
            now_set = wb.current_set(g.client)
            integ = wb.integrity(g.client)
            assert integ.ok, (k, integ)
            rec_res = _recover(g, k)
            if rec.status == "committed":
                outcome = "B"
                assert now_set == after and not rec_res
            else:
                outcome = "A"
                assert rec.status == "running" and now_set == state, (k, rec.status)
                assert [r.run_id for r in rec_res] == [run]
                dead = runs_db.get_run(g.client, run)
                assert dead.status == "failed" and dead.cleaned
                assert not wb.predictions(g.client, run_id=run, pending=True)
            outcomes[outcome] += 1
            outcomes[f"{phase}->{outcome}"] += 1
            if outcome == "A" and pending_edges and not flipped:
                outcomes["killed while staging"] += 1
            if outcome == "A" and flipped:
                outcomes["killed mid-commit"] += 1  # raw flags part-flipped, yet readers saw A
            log.append((k, phase, last, outcome, pending_edges, flipped))
            state = after if outcome == "B" else state
            if outcome == "A":
                template = 1 - template
            # after recovery: exactly that state, every invariant, no pending edge, the lock free
            assert wb.current_set(g.client) == state, k
            integ = wb.integrity(g.client)
            assert integ.ok and integ.pending_edges == 0 and integ.current_edges == len(state), (k, integ)
            assert runs_db.lock_state(g.client).holder is None
            timing.setdefault("round", []).append(time.monotonic() - t_spawn)
    finally:
        reader.stop.set()
        reader.join(timeout=30)
        if nxt is not None:
            nxt.kill()
            nxt.wait(timeout=30)
    during_flip = sum(1 for t in reader.stamps if any(a <= t <= b for a, b in flip_windows))
    print(f"\nrounds (round, phase, last line before the kill, outcome, edges of the run, raw flags flipped): {log}"
          f"\noutcomes: {dict(outcomes)}\nreads: {dict(reader.reads)}, {during_flip} while a commit was flipping"
          f"\nseconds after the child started (mean, max): "
          f"{ {k: (round(sum(v) / len(v), 2), round(max(v), 2)) for k, v in timing.items()} }"
          f"\n{time.monotonic() - t_start:.1f} s")
    assert not reader.errors, reader.errors
    assert reader.reads["mix"] == 0, reader.mixes[:10]
    assert reader.reads["A"] + reader.reads["B"] >= 200 and reader.reads["named_query"] >= 20
    assert outcomes["A"] >= 1 and outcomes["B"] >= 1, outcomes
    assert outcomes["killed while staging"] >= 1 and outcomes["killed mid-commit"] >= 1, outcomes
    assert during_flip >= 5, (during_flip, len(flip_windows))  # the reader read while commits flipped edges
    # the hostile value went through as data
    assert any(x[2] == HOSTILE for x in state) and g.stats().products == PRODUCTS


def test_pending_edges_are_shown_nowhere(empty_graph: ProductGraph) -> None:
    """A run that staged its predictions and died: no reader shows them, every named query that reads
    predictions applies the pending rule, and recovery leaves the earlier predictions as they were."""
    g = empty_graph
    setup_graph(g)
    runs_db.acquire(g.client, "cr-a", mode="test")
    wb.write_predictions(g.client, "cr-a", rows_for(0, range(20), color_only=range(0)), model="test",
                         model_version="1")
    wb.commit_predictions(g.client, "cr-a", {f"p{i}": ["Color", "Size", wb.BRAND] for i in range(20)},
                          finish=lambda tx, r: runs_db.finish_run(g.client, "cr-a", status="committed", tx=tx))
    runs_db.release(g.client, "cr-a")
    a = wb.current_set(g.client)
    ex_a = g.query("prediction_explanation", product="p1", current_only=False).as_dicts()
    # a run stages predictions for the same slots, then stops (no commit)
    runs_db.acquire(g.client, "cr-dead", mode="test")
    st = wb.write_predictions(g.client, "cr-dead", rows_for(1, range(20), color_only=range(0)), model="test",
                              model_version="1", batch_size=7)
    assert st.written == 3 * 20 and st.superseded == 3 * 20
    assert wb.current_set(g.client) == a
    assert all(not p.pending for p in wb.predictions(g.client, limit=10_000))
    assert not wb.predictions(g.client, run_id="cr-dead")
    staged = wb.predictions(g.client, run_id="cr-dead", pending=True)
    assert len(staged) == 60 and all(p.pending and not p.current for p in staged)
    cur = wb.predictions(g.client, current=True, limit=10_000)
    assert {(p.product, p.attribute, p.norm, p.run_id) for p in cur} == a and all(p.superseded_by is None for p in cur)
    assert g.query("prediction_explanation", product="p1", current_only=False).as_dicts() == ex_a
    assert not g.query("run_changes", run="cr-dead").as_dicts()
    assert len(g.query("predictions_above", category="Cat", min_p=0.0, limit=1000)) == 60
    missing = {r["id"] for r in g.query("missing_after_run", attribute="Color", category="Cat", limit=1000).as_dicts()}
    assert missing == {f"p{i}" for i in range(20, PRODUCTS)}
    # review sees only what readers see: the current prediction is run A's
    rej = wb.reject_prediction(g.client, "p2", "Size")
    assert rej.run_id == "cr-a" and rej.norm == values(0, 2)["Size"]
    assert ("p2", "Size", rej.norm, "cr-a") not in wb.current_set(g.client)
    integ = wb.integrity(g.client)
    assert integ.ok and integ.pending_edges == 60 and integ.current_edges == 59
    # the lock taken over from the dead run (its holder is not of this process any more), then recovery
    runs_db.ACTIVE.discard("cr-dead")
    before = wb.current_set(g.client)
    [res] = _recover(g, 0)
    assert res.deleted == 60 and wb.current_set(g.client) == before
    assert runs_db.get_run(g.client, "cr-dead").status == "failed"
    integ = wb.integrity(g.client)
    assert integ.ok and integ.pending_edges == 0 and integ.predicted_edges == 60
    assert not g.client.read("MATCH ()-[e:PREDICTED_VALUE]->() WHERE e.superseded_by IS NOT NULL "
                             "OR e.staged IS NOT NULL RETURN e LIMIT 1")
    # every named query that reads predictions applies the pending rule
    import queries

    pending_lines = [line.strip() for line in wb.PENDING_RUNS.strip().splitlines()]
    for q in queries.load_all().values():
        if "PREDICTED_VALUE" in q.text:
            text = [line.split("//")[0].strip() for line in q.text.splitlines()]
            assert all(line in text for line in pending_lines), q.name
            assert "e.staged IS NULL AND NOT e.run_id IN pending" in q.text, q.name
            assert q.text.count("e.current") == q.text.count(wb.CURRENT), q.name  # only in the pending rule
