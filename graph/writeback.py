"""Write-back of completion predictions, rollback of runs, and review decisions.

Predictions live beside the asserted facts, never over them::

    (:Product)-[:PREDICTED_VALUE {run_id, attribute, p, rank, threshold, model, model_version, verdict,
                                  rules, violations, evidence_products, text_evidence, explanation,
                                  current, staged, created_at, superseded_by, superseded_at, retired,
                                  review}]->(:Value)

(to a ``(:Brand)`` for the pseudo-attribute ``@brand``). ``HAS_VALUE`` / ``HAS_BRAND`` edges are
only ever *created* here, by an explicit review acceptance (``source: 'review'``).

**What readers see.** A run is *pending* while its ``(:CompletionRun)`` is ``running``, or ``failed``
and not yet cleaned (:data:`PENDING_RUNS`). Every reader here and every named query in ``queries/``
reads the pending runs once, first, and then shows

* no edge of a pending run (nor a ``staged`` one), and
* as current: an edge with ``current = true``, or one that a pending run is replacing
  (``superseded_by`` a pending run) and that no reviewer has decided on.

A run's predictions therefore appear all at once, when its status turns ``committed`` — one property
of one node, in the run's last transaction, after every edge is in its final state — and what they
replace disappears at that same moment. A reader never sees part of a run. (Neo4j's isolation is
read committed, and a query running while a transaction is applied can read part of it, so one big
transaction would not be enough on its own; nor does one fit: 200,000 new plus 200,000 replaced
edges exceed the transaction memory of a 1 GB heap at commit.) The one exception: a single query
that started before a run took the lock and is still running when that run commits, minutes later.

Invariants (tests check them, on what readers see):

* for every (product, attribute) at most one edge is current;
* a run writes at most one edge per (product, attribute, value): writes are ``MERGE``\\ d on
  ``run_id``, so a batch that is retried, or written again after a crash, changes nothing;
* an edge a run replaced keeps ``current = false, superseded_by = <run>``: rolling that run back
  deletes the run's edges and makes the replaced ones current again (unless a later run has a
  current edge for the slot: then that run becomes their ``superseded_by``);
* a ``staged`` edge is never current, and only a pending run has staged edges.

**Writing** (every transaction first checks that the run still holds the completion lock,
:func:`graph.runs.check_holder`, and a run that lost it writes nothing more):

1. :func:`write_predictions`, in batches: the run's edges, ``staged = true, current = false``; the
   current edge of each slot they will replace gets ``superseded_by = <run>`` (still current);
2. :func:`commit_predictions`: products the run scored get ``superseded_by = <run>, retired = true`` on
   their current edges of earlier runs for slots the run did not write (now asserted, abstained,
   rejected); then, in transactions of at most ``batch`` edges, the replaced edges get
   ``current = false, superseded_at`` and the run's edges ``current = true`` (``false`` for one a
   reviewer rejected while it was staged), ``staged`` removed; then one last transaction marks the
   run ``committed``. The raw ``current`` flags change over those transactions, so only readers that
   apply the rule above (all of this package's) see the commit as one step; a bare
   ``MATCH ... {current: true}`` can see part of a commit for the seconds it takes.

A run that dies before its last transaction stays pending, so nothing of it is ever shown; the
next run marks it failed and undoes it with the same code as a rollback (:func:`undo_run_writes`:
its edges deleted, the edges it was replacing current again, ``superseded_by`` cleared), and only
then cleans it (``cleaned = true``), when it stops being pending.

**Review**: accepting a prediction asserts it (``HAS_VALUE``/``HAS_BRAND``, ``source: 'review'``) and
the edge gets ``current = false, review = 'accepted'``; rejecting records a ``REJECTED_VALUE`` (no
later run proposes the value for the product again) and every edge of the slot to that value,
staged ones included, gets ``current = false, review = 'rejected'``. A rollback never makes a
reviewed edge current again. Rolling back a committed run (``attrgraph runs rollback``) is batched
as before: readers see its predictions go and the earlier ones come back over its transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import neo4j

from .api import plain
from .connection import Neo4jClient
from .errors import GraphError
from .proposals import refresh_support, undo_run_proposals
from .runs import LOCK_NAME, check_holder, now

BRAND = "@brand"
VERDICTS = ("accept", "needs_review")

# The runs whose edges readers do not show yet (see the module docstring). First in a query, and
# aggregated: the list is read once, before any edge, so one query applies one list throughout.
PENDING_RUNS = """
OPTIONAL MATCH (pending_run:CompletionRun)
WHERE pending_run.status = 'running' OR (pending_run.status = 'failed' AND coalesce(pending_run.cleaned, false) = false)
WITH collect(pending_run.id) AS pending
"""
# an edge readers may show at all (``e``: the PREDICTED_VALUE edge; needs ``pending`` in scope)
SHOWN = "(e.staged IS NULL AND NOT e.run_id IN pending)"
# a shown edge that is current for readers
CURRENT = "(e.current = true OR (e.superseded_by IN pending AND e.review IS NULL))"


class WritebackError(GraphError):
    """A prediction, a rollback or a review decision cannot be written."""


@dataclass(frozen=True)
class PredictionRow:
    """One prediction to write: the best candidate of one (product, attribute) slot."""

    product: str
    attribute: str  # "@brand" for a brand
    norm: str  # the value's norm (the brand key for @brand)
    p: float
    rank: int
    verdict: str  # accept | needs_review
    threshold: float | None = None
    rules: tuple[str, ...] = ()  # rules checked and passed
    violations: tuple[str, ...] = ()  # why it needs review (plain words)
    evidence_products: tuple[str, ...] = ()
    text_evidence: str | None = None
    explanation: str | None = None  # JSON: the full explanation
    # extra edge properties: an extracted candidate's ``new``, ``provenance``, ``extractor`` and
    # ``evidence_*`` (``graph.proposals.SpanEvidence.edge_props``); None for a closed-world prediction
    extra: dict[str, Any] | None = None

    def params(self) -> dict[str, Any]:
        if self.verdict not in VERDICTS:
            raise WritebackError(f"prediction {self.product}/{self.attribute}: verdict must be one of "
                                 f"{', '.join(VERDICTS)}, got {self.verdict!r}")
        th = self.threshold if self.threshold is not None and self.threshold != float("inf") else None
        return {"product": self.product, "attribute": self.attribute, "norm": self.norm,
                "props": {"p": float(self.p), "rank": int(self.rank), "verdict": self.verdict, "threshold": th,
                          "rules": list(self.rules), "violations": list(self.violations),
                          "evidence_products": list(self.evidence_products), "text_evidence": self.text_evidence,
                          "explanation": self.explanation, **(self.extra or {})}}


@dataclass(frozen=True)
class StageResult:
    written: int  # staged edges written (or found written by an earlier try of the batch)
    superseded: int  # current edges of earlier runs that the staged ones will replace
    missing: int  # rows whose product or value no longer exists


@dataclass(frozen=True)
class CommitResult:
    run_id: str
    written: int  # the run's edges committed (current, unless rejected in review while staged)
    superseded: int  # current edges of earlier runs for the slots the run wrote, replaced
    retired: int  # current edges of earlier runs of scored products for slots the run did not write
    transactions: int = 0  # flip transactions, the last one (the run committed) included
    already: bool = False  # the run was committed already (a retried commit): nothing changed


# Stage this run's edge unless it exists (a retried batch), and mark the slot's current edge of an
# earlier run as the one it will replace. Only the run holding the lock writes, so check-then-create
# is safe. ``toString(e.run_id)`` keeps the planner from seeking the run_id index (all of the run's
# edges) instead of expanding from the product: that plan is quadratic in the size of a run.
_STAGE = """
UNWIND $rows AS r
MATCH (p:Product {id: r.product})
MATCH (v:%s)
CALL (p, r) {
  OPTIONAL MATCH (p)-[old:PREDICTED_VALUE]->()
  WHERE old.current = true AND old.attribute = r.attribute AND toString(old.run_id) <> $run
  SET old.superseded_by = $run
  RETURN count(old) AS superseded
}
CALL (p, v, r) {
  OPTIONAL MATCH (p)-[e0:PREDICTED_VALUE]->(v) WHERE toString(e0.run_id) = $run
  WITH e0 WHERE e0 IS NULL
  CREATE (p)-[:PREDICTED_VALUE {run_id: $run, attribute: r.attribute, created_at: $now, staged: true,
                                current: false}]->(v)
}
MATCH (p)-[e:PREDICTED_VALUE]->(v) WHERE toString(e.run_id) = $run
SET e += r.props, e.model = $model, e.model_version = $model_version
RETURN count(e) AS written, sum(superseded) AS superseded
"""
_STAGE_VALUES = _STAGE % "Value {attribute: r.attribute, norm: r.norm}"
_STAGE_BRANDS = _STAGE % "Brand {key: r.norm}"

# Products this run scored: their current predictions of earlier runs for slots this run did not write
# will stop being current too.
_STAGE_RETIRE = """
UNWIND $rows AS r
MATCH (p:Product {id: r.product})-[old:PREDICTED_VALUE]->()
WHERE old.current = true AND toString(old.run_id) <> $run AND NOT old.attribute IN r.keep
SET old.superseded_by = $run, old.retired = true
RETURN count(old) AS retired
"""

# The flip, in bounded transactions: first every edge the run replaces, then the run's own edges
# (so no slot ever has two edges with ``current = true``).
_FLIP_OLD = """
MATCH ()-[old:PREDICTED_VALUE]->() WHERE old.superseded_by = $run AND old.current = true
WITH old LIMIT $batch
SET old.current = false, old.superseded_at = $now
RETURN count(old) AS n, sum(CASE WHEN old.retired THEN 1 ELSE 0 END) AS retired
"""

_FLIP_NEW = """
MATCH ()-[e:PREDICTED_VALUE]->() WHERE e.run_id = $run AND e.staged = true
WITH e LIMIT $batch
SET e.current = e.review IS NULL, e.staged = null
RETURN count(e) AS n
"""

_RUN_STATUS = "MATCH (r:CompletionRun {id: $run}) RETURN r.status AS status, r.written AS written, " \
              "r.superseded AS superseded, r.retired AS retired"


def write_predictions(client: Neo4jClient, run_id: str, rows: Sequence[PredictionRow], *, model: str,
                      model_version: str, lock: str = LOCK_NAME, batch_size: int = 2000,
                      on_batch: Callable[[int, int], None] | None = None) -> StageResult:
    """Stage ``rows`` (at most one per product and attribute) as ``run_id``'s predictions: no reader
    shows them until :func:`commit_predictions` (see the module docstring).

    Each batch is one transaction that checks the lock first. ``on_batch(done, total)`` is called
    after each committed batch."""
    total = len(rows)
    written = superseded = missing = 0
    for lo in range(0, total, batch_size):
        chunk = rows[lo : lo + batch_size]
        values = [r.params() for r in chunk if r.attribute != BRAND]
        brands = [r.params() for r in chunk if r.attribute == BRAND]

        def work(tx: neo4j.ManagedTransaction) -> tuple[int, int]:
            check_holder(tx, run_id, lock)
            w = s = 0
            t = now()
            for q, rs in ((_STAGE_VALUES, values), (_STAGE_BRANDS, brands)):
                if rs:
                    rec = tx.run(q, {"rows": rs, "run": run_id, "now": t, "model": model,
                                     "model_version": model_version}).single()
                    if rec:
                        w += int(rec["written"] or 0)
                        s += int(rec["superseded"] or 0)
            return w, s

        w, s = client.write_tx(work)
        written += w
        superseded += s
        missing += len(chunk) - w
        if on_batch:
            on_batch(min(lo + batch_size, total), total)
    return StageResult(written, superseded, missing)


def commit_predictions(client: Neo4jClient, run_id: str, keep: dict[str, Iterable[str]] | None = None, *,
                       lock: str = LOCK_NAME, batch: int = 20_000,
                       finish: Callable[[neo4j.ManagedTransaction, CommitResult], None] | None = None,
                       on_step: Callable[[str], None] | None = None) -> CommitResult:
    """Make ``run_id``'s staged predictions what readers see, all at once (see the module docstring).

    ``keep`` (product id -> attributes this run wrote, for every product it scored) says which
    products' other slots lose their current prediction of an earlier run. The edges change in
    transactions of at most ``batch`` edges (Neo4j holds a transaction's changes in its heap: one
    transaction for a whole run of 200,000 predictions does not fit in 1 GB); readers see none of it
    until the last transaction, where ``finish(tx, result)`` records the run ``committed``. Raises
    :class:`graph.runs.LockLost` when the run lost the lock: the run then stays pending (undone by
    whoever recovers it)."""
    items = [{"product": p, "keep": sorted(set(a))} for p, a in (keep or {}).items()]
    say = on_step or (lambda _m: None)
    rec = client.read(_RUN_STATUS, {"run": run_id})
    if rec and rec[0]["status"] == "committed":  # a commit that was retried after its answer got lost
        r0 = rec[0]
        return CommitResult(run_id, int(r0["written"] or 0), int(r0["superseded"] or 0), int(r0["retired"] or 0),
                            0, already=True)
    for lo in range(0, len(items), batch):
        chunk = items[lo : lo + batch]

        def retire(tx: neo4j.ManagedTransaction) -> None:
            check_holder(tx, run_id, lock)
            tx.run(_STAGE_RETIRE, {"rows": chunk, "run": run_id}).consume()

        client.write_tx(retire)
    written = replaced = retired = txs = 0
    t = now()
    while True:
        def flip(tx: neo4j.ManagedTransaction) -> tuple[int, int, int]:
            check_holder(tx, run_id, lock)
            r = tx.run(_FLIP_OLD, {"run": run_id, "batch": batch, "now": t}).single()
            n_old, n_ret = int(r["n"] or 0), int(r["retired"] or 0)
            n_new = 0
            if n_old < batch:  # every replaced edge is retired: now the run's own edges
                n_new = int(tx.run(_FLIP_NEW, {"run": run_id, "batch": batch - n_old}).single()["n"] or 0)
            return n_old, n_ret, n_new

        n_old, n_ret, n_new = client.write_tx(flip)
        txs += 1
        replaced += n_old
        retired += n_ret
        written += n_new
        say(f"commit: {replaced} replaced, {written} made current")
        if n_old + n_new < batch:
            break
    res = CommitResult(run_id, written, replaced - retired, retired, txs + 1)

    def last(tx: neo4j.ManagedTransaction) -> None:
        check_holder(tx, run_id, lock)
        refresh_support(tx, run_id)  # proposals' support, seen with the run
        if finish is not None:
            finish(tx, res)
        else:
            tx.run("MATCH (r:CompletionRun {id: $run}) SET r.status = 'committed', r.finished_at = $now",
                   {"run": run_id, "now": now()}).consume()

    client.write_tx(last)
    return res


# -- rollback ---------------------------------------------------------------------------------------
_DELETE_RUN_EDGES = """
MATCH ()-[e:PREDICTED_VALUE]->() WHERE e.run_id = $run
WITH e LIMIT $batch
DELETE e
RETURN count(*) AS deleted
"""

# Before ``superseded_by`` is cleared: what the run replaced is current again (readers that apply the
# pending rule show it as current throughout: first through ``superseded_by``, then through ``current``).
_RECURRENT = """
MATCH (p:Product)-[x:PREDICTED_VALUE]->()
WHERE x.superseded_by = $run AND x.current = false AND x.review IS NULL
  AND NOT EXISTS { MATCH (p)-[c:PREDICTED_VALUE]->() WHERE c.current = true AND c.attribute = x.attribute AND c <> x }
WITH x LIMIT $batch
SET x.current = true
RETURN count(*) AS n
"""

_RESTORE = """
MATCH (p:Product)-[x:PREDICTED_VALUE]->() WHERE x.superseded_by = $run
WITH p, x LIMIT $batch
CALL (p, x) {
  OPTIONAL MATCH (p)-[c:PREDICTED_VALUE]->()
  WHERE c.current = true AND c.attribute = x.attribute AND c <> x
  RETURN head(collect(c.run_id)) AS owner
}
SET x.current = CASE WHEN owner IS NULL AND x.review IS NULL THEN true ELSE false END,
    x.superseded_by = owner,
    x.superseded_at = CASE WHEN owner IS NULL THEN null ELSE x.superseded_at END,
    x.retired = null
RETURN count(*) AS restored, sum(CASE WHEN owner IS NULL AND x.review IS NULL THEN 1 ELSE 0 END) AS current
"""


@dataclass(frozen=True)
class RollbackResult:
    run_id: str
    deleted: int  # the run's predicted edges removed
    restored: int  # earlier predictions the run had replaced (or was about to replace), current again
    reassigned: int  # earlier predictions now superseded by a later run instead
    proposals_deleted: int = 0  # proposed values/brands the run created that nothing else uses
    aliases_deleted: int = 0


def undo_run_writes(client: Neo4jClient, run_id: str, *, lock: str = LOCK_NAME, holder: str | None = None,
                    batch_size: int = 5000) -> RollbackResult:
    """Remove exactly ``run_id``'s predicted edges (staged or committed) and restore what it superseded
    or was about to (batched, idempotent: an interrupted rollback is finished by calling it again).
    ``holder`` (the run or session holding the lock) is checked in every batch.

    For a pending run (one that died or failed) readers see no change at all: none of its edges were
    shown and what it was replacing was shown as current all along. Rolling back a committed run
    changes what readers see batch by batch."""
    deleted = restored = current = 0

    def batch(q: str) -> dict[str, Any]:
        def work(tx: neo4j.ManagedTransaction) -> dict[str, Any]:
            if holder is not None:
                check_holder(tx, holder, lock)
            rec = tx.run(q, {"run": run_id, "batch": batch_size}).single()
            return rec.data() if rec else {}
        return client.write_tx(work)

    while True:
        n = int(batch(_DELETE_RUN_EDGES).get("deleted") or 0)
        deleted += n
        if n < batch_size:
            break
    while int(batch(_RECURRENT).get("n") or 0) == batch_size:
        pass
    while True:
        d = batch(_RESTORE)
        n = int(d.get("restored") or 0)
        restored += n
        current += int(d.get("current") or 0)
        if n == 0:
            break
    undo = undo_run_proposals(client, run_id, lock=lock, holder=holder)
    return RollbackResult(run_id, deleted, current, restored - current, undo.nodes_deleted, undo.aliases_deleted)


def recover_dead_runs(client: Neo4jClient, holder: str, *, exclude: str | None = None, lock: str = LOCK_NAME
                      ) -> list[RollbackResult]:
    """Under the lock held by ``holder``: every run that died pending (still ``running``, or ``failed``
    and not cleaned; ``exclude`` aside) is marked failed, undone (:func:`undo_run_writes`) and then
    marked cleaned, which is when it stops being pending. Readers see no change throughout."""
    from .runs import dead_runs, finish_run, get_run, update_run

    done = []
    for rid in dead_runs(client, exclude or holder):
        rec = get_run(client, rid)
        if rec.status == "running":
            finish_run(client, rid, status="failed",
                       error="the run stopped without finishing (its process died or lost the database); "
                             f"recovered by {holder}", extra={"cleaned": False})
        done.append(undo_run_writes(client, rid, lock=lock, holder=holder))
        update_run(client, rid, {"cleaned": True, "recovered_by": holder})
    return done


# -- review -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewResult:
    action: str  # accepted | rejected
    product: str
    attribute: str
    value: str
    norm: str
    run_id: str | None
    p: float | None


_FIND_PREDICTION = PENDING_RUNS + """
MATCH (p:Product {id: $product})-[e:PREDICTED_VALUE {attribute: $attribute}]->(v)
WHERE """ + SHOWN + """
  AND (($norm IS NULL AND """ + CURRENT + """) OR ($norm IS NOT NULL AND coalesce(v.norm, v.key) = $norm))
RETURN elementId(e) AS eid, e.run_id AS run_id, e.p AS p, e.model AS model, e.model_version AS model_version,
       """ + CURRENT + """ AS current, e.review AS review, coalesce(v.value, v.name, v.key) AS value,
       coalesce(v.norm, v.key) AS norm, e.created_at AS created_at
ORDER BY current DESC, e.created_at DESC
LIMIT 1
"""

_ACCEPT_VALUE = """
MATCH (p:Product {id: $product})-[e:PREDICTED_VALUE]->(v:Value) WHERE elementId(e) = $eid
MERGE (p)-[h:HAS_VALUE]->(v)
  ON CREATE SET h.source = 'review', h.ingested_at = $now, h.reviewed_by = $by, h.review_note = $note,
                h.predicted_by_run = e.run_id, h.predicted_p = e.p, h.predicted_model = e.model,
                h.predicted_model_version = e.model_version, h.predicted_at = e.created_at,
                h.accepted_from = CASE WHEN e.new = true THEN 'extraction' END, h.extractor = e.extractor,
                h.evidence_field = e.evidence_field, h.evidence_start = e.evidence_start,
                h.evidence_end = e.evidence_end, h.evidence_text = e.evidence_text
SET e.current = false, e.review = 'accepted', e.reviewed_at = $now, e.reviewed_by = $by
WITH v WHERE v.status = 'proposed'
// a proposal becomes an asserted value: provenance kept, status accepted
MERGE (a:Attribute {name: v.attribute})
MERGE (v)-[:OF_ATTRIBUTE]->(a)
SET v.status = 'accepted', v.accepted_at = $now, v.accepted_by = $by
"""

_ACCEPT_BRAND = """
MATCH (p:Product {id: $product})-[e:PREDICTED_VALUE]->(v:Brand) WHERE elementId(e) = $eid
MERGE (p)-[h:HAS_BRAND]->(v)
  ON CREATE SET h.source = 'review', h.ingested_at = $now, h.reviewed_by = $by, h.review_note = $note,
                h.predicted_by_run = e.run_id, h.predicted_p = e.p, h.predicted_model = e.model,
                h.predicted_model_version = e.model_version, h.predicted_at = e.created_at,
                h.accepted_from = CASE WHEN e.new = true THEN 'extraction' END, h.extractor = e.extractor,
                h.evidence_field = e.evidence_field, h.evidence_start = e.evidence_start,
                h.evidence_end = e.evidence_end, h.evidence_text = e.evidence_text
SET e.current = false, e.review = 'accepted', e.reviewed_at = $now, e.reviewed_by = $by
WITH v WHERE v.status = 'proposed'
// a proposal becomes an asserted value: provenance kept, status accepted
SET v.status = 'accepted', v.accepted_at = $now, v.accepted_by = $by
"""

_REJECT_VALUE = """
MATCH (p:Product {id: $product}), (v:Value {attribute: $attribute, norm: $norm})
MERGE (p)-[x:REJECTED_VALUE {attribute: $attribute}]->(v)
  ON CREATE SET x.rejected_at = $now, x.rejected_by = $by, x.note = $note, x.run_id = $run_id, x.p = $p
WITH p, v
OPTIONAL MATCH (p)-[e:PREDICTED_VALUE {attribute: $attribute}]->(v)
SET e.current = false, e.review = 'rejected', e.reviewed_at = $now, e.reviewed_by = $by
RETURN count(*) AS n
"""

_REJECT_BRAND = """
MATCH (p:Product {id: $product}), (v:Brand {key: $norm})
MERGE (p)-[x:REJECTED_VALUE {attribute: $attribute}]->(v)
  ON CREATE SET x.rejected_at = $now, x.rejected_by = $by, x.note = $note, x.run_id = $run_id, x.p = $p
WITH p, v
OPTIONAL MATCH (p)-[e:PREDICTED_VALUE {attribute: $attribute}]->(v)
SET e.current = false, e.review = 'rejected', e.reviewed_at = $now, e.reviewed_by = $by
RETURN count(*) AS n
"""


def _find_prediction(client: Neo4jClient, product: str, attribute: str, norm: str | None) -> list[dict[str, Any]]:
    return client.read(_FIND_PREDICTION, {"product": product, "attribute": attribute, "norm": norm})


def _norm_of(client: Neo4jClient, attribute: str, value: str | None) -> str | None:
    """The norm of a value given by its display form or norm (None stays None)."""
    if value is None:
        return None
    if attribute == BRAND:
        rows = client.read("MATCH (b:Brand) WHERE b.key = $v OR b.name = $v OR b.key = toLower($v) "
                           "RETURN b.key AS norm LIMIT 1", {"v": value})
    else:
        rows = client.read("MATCH (v:Value {attribute: $a}) WHERE v.norm = $v OR v.value = $v OR v.norm = toLower($v) "
                           "RETURN v.norm AS norm LIMIT 1", {"a": attribute, "v": value})
    if not rows:
        raise WritebackError(f"{attribute!r} has no value {value!r} in the graph")
    return rows[0]["norm"]


def accept_prediction(client: Neo4jClient, product: str, attribute: str, value: str | None = None, *,
                      by: str | None = None, note: str | None = None) -> ReviewResult:
    """Turn a prediction (the current one of the slot, or the one of ``value``) into an asserted fact
    with provenance (``source: 'review'``, the run, model and probability that proposed it)."""
    norm = _norm_of(client, attribute, value)
    rows = _find_prediction(client, str(product), attribute, norm)
    if not rows:
        what = f"value {value!r}" if value else "a current prediction"
        raise WritebackError(f"product {product!r} has no predicted {what} for {attribute!r}; "
                             f"see `attrgraph query prediction_explanation -p product={product} -p attribute=...`")
    r = rows[0]
    if r["review"] == "rejected":
        raise WritebackError(f"product {product!r}: {attribute} = {r['value']!r} was rejected in review; "
                             f"it cannot be accepted")
    q = _ACCEPT_BRAND if attribute == BRAND else _ACCEPT_VALUE
    client.write(q, {"product": str(product), "eid": r["eid"], "now": now(), "by": by, "note": note})
    return ReviewResult("accepted", str(product), attribute, r["value"], r["norm"], r["run_id"], r["p"])


def reject_prediction(client: Neo4jClient, product: str, attribute: str, value: str | None = None, *,
                      by: str | None = None, note: str | None = None) -> ReviewResult:
    """Record that ``value`` (default: the slot's current prediction) is wrong for the product: the
    prediction stops being current and no later run proposes that value for that product again."""
    norm = _norm_of(client, attribute, value)
    rows = _find_prediction(client, str(product), attribute, norm)
    if not rows and norm is None:
        raise WritebackError(f"product {product!r} has no current prediction for {attribute!r}; give the value to reject")
    r = rows[0] if rows else {"run_id": None, "p": None, "value": value, "norm": norm}
    q = _REJECT_BRAND if attribute == BRAND else _REJECT_VALUE
    res = client.write_tx(lambda tx: tx.run(q, {"product": str(product), "attribute": attribute, "norm": r["norm"],
                                                "now": now(), "by": by, "note": note, "run_id": r["run_id"],
                                                "p": r["p"]}).data())
    if not res or not res[0]["n"]:
        raise WritebackError(f"product {product!r} or value {value!r} of {attribute!r} is not in the graph")
    return ReviewResult("rejected", str(product), attribute, r["value"], r["norm"], r["run_id"], r["p"])


def rejected_values(client: Neo4jClient) -> set[tuple[str, str, str]]:
    """Every (product id, attribute, norm) rejected in review: never proposed again."""
    rows = client.read("MATCH (p:Product)-[x:REJECTED_VALUE]->(v) "
                       "RETURN p.id AS product, x.attribute AS attribute, coalesce(v.norm, v.key) AS norm")
    return {(r["product"], r["attribute"], r["norm"]) for r in rows}


# -- reads ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredPrediction:
    product: str
    attribute: str
    value: str
    norm: str
    p: float
    rank: int
    verdict: str
    run_id: str
    model: str | None
    current: bool  # as readers see it (see the module docstring)
    review: str | None
    superseded_by: str | None
    rules: tuple[str, ...]
    violations: tuple[str, ...]
    evidence_products: tuple[str, ...]
    text_evidence: str | None
    explanation: str | None
    created_at: datetime | None
    pending: bool = False  # an edge of a run that has not committed (only with ``predictions(pending=True)``)


_PRED_FIELDS = """
RETURN p.id AS product, e.attribute AS attribute, coalesce(v.value, v.name, v.key) AS value,
       coalesce(v.norm, v.key) AS norm, e.p AS p, e.rank AS rank, e.verdict AS verdict, e.run_id AS run_id,
       e.model AS model, shown AND cur AS current, e.review AS review,
       CASE WHEN shown AND cur THEN null ELSE e.superseded_by END AS superseded_by,
       e.rules AS rules, e.violations AS violations, e.evidence_products AS evidence_products,
       e.text_evidence AS text_evidence, e.explanation AS explanation, e.created_at AS created_at,
       NOT shown AS pending
"""


def _stored(r: dict[str, Any]) -> StoredPrediction:
    return StoredPrediction(r["product"], r["attribute"], r["value"], r["norm"], float(r["p"]), int(r["rank"] or 0),
                            r["verdict"], r["run_id"], r["model"], bool(r["current"]), r["review"], r["superseded_by"],
                            tuple(r["rules"] or ()), tuple(r["violations"] or ()), tuple(r["evidence_products"] or ()),
                            r["text_evidence"], r["explanation"], plain(r["created_at"]), bool(r["pending"]))


_PREDICTIONS = PENDING_RUNS + """
MATCH (p:Product)-[e:PREDICTED_VALUE]->(v)
WHERE ($run IS NULL OR e.run_id = $run) AND ($product IS NULL OR p.id = $product)
WITH p, e, v, """ + SHOWN + """ AS shown, """ + CURRENT + """ AS cur
WHERE (shown OR $pending) AND ($current IS NULL OR (shown AND cur) = $current)
  AND ($verdict IS NULL OR e.verdict = $verdict)
""" + _PRED_FIELDS + " ORDER BY e.p DESC, p.id, e.attribute LIMIT $limit"


def predictions(client: Neo4jClient, *, run_id: str | None = None, product: str | None = None,
                current: bool | None = None, verdict: str | None = None, pending: bool = False,
                limit: int = 1000) -> list[StoredPrediction]:
    """Stored predictions as readers see them, filtered (best probability first). The edges of a run
    that has not committed (running, or dead and not yet recovered) only with ``pending=True``."""
    rows = client.read(_PREDICTIONS, {"run": run_id, "product": product, "current": current, "verdict": verdict,
                                      "pending": pending, "limit": limit})
    return [_stored(r) for r in rows]


_CURRENT_SET = PENDING_RUNS + """
MATCH (p:Product)-[e:PREDICTED_VALUE]->(v)
WHERE """ + SHOWN + " AND " + CURRENT + """
RETURN p.id AS product, e.attribute AS attribute, coalesce(v.norm, v.key) AS norm, e.run_id AS run_id
"""


def current_set(client: Neo4jClient) -> set[tuple[str, str, str, str]]:
    """Every current prediction as readers see it, as (product id, attribute, norm, run id), in one query."""
    return {(r["product"], r["attribute"], r["norm"], r["run_id"]) for r in client.read(_CURRENT_SET)}


@dataclass(frozen=True)
class IntegrityReport:
    """Invariant checks over all predicted edges (see the module docstring), as readers see them."""

    predicted_edges: int  # every edge, pending runs' included
    current_edges: int
    slots_with_several_current: int
    duplicate_run_edges: int  # a run with two edges for one (product, attribute, value)
    duplicate_run_slots: int  # a run with two edges for one (product, attribute)
    current_over_asserted: int  # current predictions of a slot that has an asserted value: allowed but counted
    pending_edges: int = 0  # edges of runs that have not committed (running, or dead and not yet recovered)
    staged_current: int = 0  # staged and ``current = true`` at once, outside a commit in progress: never
    staged_of_finished: int = 0  # still staged although their run committed or was rolled back: never

    @property
    def ok(self) -> bool:
        return (self.slots_with_several_current == 0 and self.duplicate_run_edges == 0 and self.duplicate_run_slots == 0
                and self.staged_current == 0 and self.staged_of_finished == 0)


_INTEGRITY = PENDING_RUNS + """
CALL (pending) { MATCH ()-[e:PREDICTED_VALUE]->() WITH e, """ + SHOWN + """ AS shown
          RETURN count(e) AS edges, sum(CASE WHEN shown AND """ + CURRENT + """ THEN 1 ELSE 0 END) AS cur,
                 sum(CASE WHEN shown THEN 0 ELSE 1 END) AS pend,
                 sum(CASE WHEN e.staged AND e.current AND NOT e.run_id IN pending THEN 1 ELSE 0 END) AS staged_cur }
CALL (pending) { MATCH (p:Product)-[e:PREDICTED_VALUE]->() WHERE """ + SHOWN + " AND " + CURRENT + """
          WITH p, e.attribute AS a, count(*) AS n WHERE n > 1 RETURN count(*) AS several }
CALL () { MATCH (p:Product)-[e:PREDICTED_VALUE]->(v) WITH p, v, e.run_id AS run, count(*) AS n
          WHERE n > 1 RETURN count(*) AS dup_edges }
CALL () { MATCH (p:Product)-[e:PREDICTED_VALUE]->() WITH p, e.attribute AS a, e.run_id AS run, count(*) AS n
          WHERE n > 1 RETURN count(*) AS dup_slots }
CALL (pending) { MATCH (p:Product)-[e:PREDICTED_VALUE]->(:Value) WHERE """ + SHOWN + " AND " + CURRENT + """
            AND EXISTS { MATCH (p)-[:HAS_VALUE]->(:Value {attribute: e.attribute}) }
          RETURN count(e) AS over }
CALL () { MATCH ()-[e:PREDICTED_VALUE {staged: true}]->() WITH e.run_id AS run, count(*) AS n
          MATCH (r:CompletionRun {id: run}) WHERE r.status IN ['committed', 'rolled_back']
          RETURN sum(n) AS staged_fin }
RETURN edges, cur, several, dup_edges, dup_slots, over, pend, staged_cur, staged_fin
"""


def integrity(client: Neo4jClient) -> IntegrityReport:
    """The invariants, in one query, on what readers see (never part of a commit)."""
    r = client.read(_INTEGRITY)[0]
    return IntegrityReport(int(r["edges"]), int(r["cur"] or 0), int(r["several"]), int(r["dup_edges"]),
                           int(r["dup_slots"]), int(r["over"]), int(r["pend"] or 0), int(r["staged_cur"] or 0),
                           int(r["staged_fin"] or 0))


def asserted_fingerprint(client: Neo4jClient) -> tuple[int, int, int, str]:
    """(HAS_VALUE, HAS_BRAND, IN_CATEGORY counts, a hash of every asserted fact and its properties):
    equal before and after a run means the run left the asserted facts alone."""
    rows = client.read("""
        MATCH (p:Product)-[h:HAS_VALUE|HAS_BRAND|IN_CATEGORY]->(x)
        WITH type(h) AS t, p.id + '|' + type(h) + '|' + coalesce(x.attribute, '') + '|' + coalesce(x.norm, x.key, x.path)
             + '|' + coalesce(h.source, '') + '|' + coalesce(h.ingest_id, '') AS k
        ORDER BY k
        RETURN t, count(*) AS n, collect(k) AS keys""")
    import hashlib

    h = hashlib.sha256()
    counts = {"HAS_VALUE": 0, "HAS_BRAND": 0, "IN_CATEGORY": 0}
    for r in sorted(rows, key=lambda r: r["t"]):
        counts[r["t"]] = int(r["n"])
        for k in r["keys"]:
            h.update(k.encode("utf-8", "surrogatepass"))
            h.update(b"\n")
    return counts["HAS_VALUE"], counts["HAS_BRAND"], counts["IN_CATEGORY"], h.hexdigest()


__all__ = [
    "BRAND", "CURRENT", "CommitResult", "IntegrityReport", "PENDING_RUNS", "PredictionRow", "ReviewResult",
    "RollbackResult", "SHOWN", "StageResult", "StoredPrediction", "VERDICTS", "WritebackError", "accept_prediction",
    "asserted_fingerprint", "commit_predictions", "current_set", "integrity", "predictions", "reject_prediction",
    "recover_dead_runs", "rejected_values", "undo_run_writes", "write_predictions",
]
