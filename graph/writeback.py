"""Write-back of completion predictions, rollback of runs, and review decisions.

Predictions live beside the asserted facts, never over them::

    (:Product)-[:PREDICTED_VALUE {run_id, attribute, p, rank, threshold, model, model_version, verdict,
                                  rules, violations, evidence_products, text_evidence, explanation,
                                  current, created_at, superseded_by, superseded_at, review}]->(:Value)

(to a ``(:Brand)`` for the pseudo-attribute ``@brand``). ``HAS_VALUE`` / ``HAS_BRAND`` edges are
only ever *created* here, by an explicit review acceptance (``source: 'review'``).

Invariants (tests check them):

* for every (product, attribute) at most one edge has ``current = true``;
* a run writes at most one edge per (product, attribute, value): writes are ``MERGE``\\ d on
  ``run_id``, so a batch that is retried, or written again after a crash, changes nothing;
* an edge a run replaced keeps ``current = false, superseded_by = <run>``: rolling that run back
  deletes the run's edges and makes the replaced ones current again (unless a later run has a
  current edge for the slot: then that run becomes their ``superseded_by``).

A run writes in batches, each one transaction that first checks that the run still holds the
completion lock (:func:`graph.runs.check_holder`). A run that dies mid-way leaves some batches
written: the next run marks it failed and undoes them with the same code as a rollback, so readers
only ever see whole batches and every slot keeps at most one current prediction throughout.
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
from .runs import LOCK_NAME, check_holder, now

BRAND = "@brand"
VERDICTS = ("accept", "needs_review")


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

    def params(self) -> dict[str, Any]:
        if self.verdict not in VERDICTS:
            raise WritebackError(f"prediction {self.product}/{self.attribute}: verdict must be one of "
                                 f"{', '.join(VERDICTS)}, got {self.verdict!r}")
        th = self.threshold if self.threshold is not None and self.threshold != float("inf") else None
        return {"product": self.product, "attribute": self.attribute, "norm": self.norm,
                "props": {"p": float(self.p), "rank": int(self.rank), "verdict": self.verdict, "threshold": th,
                          "rules": list(self.rules), "violations": list(self.violations),
                          "evidence_products": list(self.evidence_products), "text_evidence": self.text_evidence,
                          "explanation": self.explanation}}


@dataclass(frozen=True)
class BatchResult:
    written: int
    superseded: int
    missing: int  # rows whose product or value no longer exists


# In one statement: retire the slot's current prediction of an earlier run, then create this run's edge
# unless it exists (a retried batch). Only the run holding the lock writes, so check-then-create is safe.
# ``toString(e.run_id)`` keeps the planner from seeking the run_id index (all of the run's edges) instead
# of expanding from the product: that plan is quadratic in the size of a run.
_WRITE_VALUES = """
UNWIND $rows AS r
MATCH (p:Product {id: r.product})
MATCH (v:Value {attribute: r.attribute, norm: r.norm})
CALL (p, r) {
  OPTIONAL MATCH (p)-[old:PREDICTED_VALUE]->()
  WHERE old.current = true AND old.attribute = r.attribute AND toString(old.run_id) <> $run
  SET old.current = false, old.superseded_by = $run, old.superseded_at = $now
  RETURN count(old) AS superseded
}
CALL (p, v, r) {
  OPTIONAL MATCH (p)-[e0:PREDICTED_VALUE]->(v) WHERE toString(e0.run_id) = $run
  WITH e0 WHERE e0 IS NULL
  CREATE (p)-[:PREDICTED_VALUE {run_id: $run, attribute: r.attribute, created_at: $now}]->(v)
}
MATCH (p)-[e:PREDICTED_VALUE]->(v) WHERE toString(e.run_id) = $run
SET e += r.props, e.current = true, e.model = $model, e.model_version = $model_version
RETURN count(e) AS written, sum(superseded) AS superseded
"""

_WRITE_BRANDS = """
UNWIND $rows AS r
MATCH (p:Product {id: r.product})
MATCH (v:Brand {key: r.norm})
CALL (p, r) {
  OPTIONAL MATCH (p)-[old:PREDICTED_VALUE]->()
  WHERE old.current = true AND old.attribute = r.attribute AND toString(old.run_id) <> $run
  SET old.current = false, old.superseded_by = $run, old.superseded_at = $now
  RETURN count(old) AS superseded
}
CALL (p, v, r) {
  OPTIONAL MATCH (p)-[e0:PREDICTED_VALUE]->(v) WHERE toString(e0.run_id) = $run
  WITH e0 WHERE e0 IS NULL
  CREATE (p)-[:PREDICTED_VALUE {run_id: $run, attribute: r.attribute, created_at: $now}]->(v)
}
MATCH (p)-[e:PREDICTED_VALUE]->(v) WHERE toString(e.run_id) = $run
SET e += r.props, e.current = true, e.model = $model, e.model_version = $model_version
RETURN count(e) AS written, sum(superseded) AS superseded
"""

# Products this run scored: their current predictions of earlier runs for slots this run did not
# write (now asserted, abstained, rejected) stop being current.
_RETIRE = """
UNWIND $rows AS r
MATCH (p:Product {id: r.product})-[old:PREDICTED_VALUE]->()
WHERE old.current = true AND toString(old.run_id) <> $run AND NOT old.attribute IN r.keep
SET old.current = false, old.superseded_by = $run, old.superseded_at = $now, old.retired = true
RETURN count(old) AS retired
"""


def write_predictions(client: Neo4jClient, run_id: str, rows: Sequence[PredictionRow], *, model: str,
                      model_version: str, lock: str = LOCK_NAME, batch_size: int = 2000,
                      on_batch: Callable[[int, int], None] | None = None) -> BatchResult:
    """Write ``rows`` (at most one per product and attribute) as ``run_id``'s predictions.

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
            for q, rs in ((_WRITE_VALUES, values), (_WRITE_BRANDS, brands)):
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
    return BatchResult(written, superseded, missing)


def retire_predictions(client: Neo4jClient, run_id: str, keep: dict[str, Iterable[str]], *,
                       lock: str = LOCK_NAME, batch_size: int = 5000) -> int:
    """For each scored product (``keep``: product id -> attributes this run wrote), retire the current
    predictions of earlier runs for the other attributes. Returns how many were retired."""
    items = [{"product": p, "keep": sorted(set(a))} for p, a in keep.items()]
    retired = 0
    for lo in range(0, len(items), batch_size):
        chunk = items[lo : lo + batch_size]

        def work(tx: neo4j.ManagedTransaction) -> int:
            check_holder(tx, run_id, lock)
            rec = tx.run(_RETIRE, {"rows": chunk, "run": run_id, "now": now()}).single()
            return int(rec["retired"]) if rec else 0

        retired += client.write_tx(work)
    return retired


# -- rollback ---------------------------------------------------------------------------------------
_DELETE_RUN_EDGES = """
MATCH ()-[e:PREDICTED_VALUE]->() WHERE e.run_id = $run
WITH e LIMIT $batch
DELETE e
RETURN count(*) AS deleted
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
    restored: int  # earlier predictions the run had replaced, made current again
    reassigned: int  # earlier predictions now superseded by a later run instead


def undo_run_writes(client: Neo4jClient, run_id: str, *, lock: str = LOCK_NAME, holder: str | None = None,
                    batch_size: int = 5000) -> RollbackResult:
    """Remove exactly ``run_id``'s predicted edges and restore what it superseded (batched, idempotent:
    an interrupted rollback is finished by calling it again). ``holder`` (the run or session holding
    the lock) is checked in every batch."""
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
    while True:
        d = batch(_RESTORE)
        n = int(d.get("restored") or 0)
        restored += n
        current += int(d.get("current") or 0)
        if n == 0:
            break
    return RollbackResult(run_id, deleted, current, restored - current)


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


_FIND_PREDICTION = """
MATCH (p:Product {id: $product})-[e:PREDICTED_VALUE {attribute: $attribute}]->(v)
WHERE ($norm IS NULL AND e.current = true) OR ($norm IS NOT NULL AND coalesce(v.norm, v.key) = $norm)
RETURN elementId(e) AS eid, e.run_id AS run_id, e.p AS p, e.model AS model, e.model_version AS model_version,
       e.current AS current, e.review AS review, coalesce(v.value, v.name, v.key) AS value,
       coalesce(v.norm, v.key) AS norm, e.created_at AS created_at
ORDER BY e.current DESC, e.created_at DESC
LIMIT 1
"""

_ACCEPT_VALUE = """
MATCH (p:Product {id: $product})-[e:PREDICTED_VALUE]->(v:Value) WHERE elementId(e) = $eid
MERGE (p)-[h:HAS_VALUE]->(v)
  ON CREATE SET h.source = 'review', h.ingested_at = $now, h.reviewed_by = $by, h.review_note = $note,
                h.predicted_by_run = e.run_id, h.predicted_p = e.p, h.predicted_model = e.model,
                h.predicted_model_version = e.model_version, h.predicted_at = e.created_at
SET e.current = false, e.review = 'accepted', e.reviewed_at = $now, e.reviewed_by = $by
"""

_ACCEPT_BRAND = """
MATCH (p:Product {id: $product})-[e:PREDICTED_VALUE]->(v:Brand) WHERE elementId(e) = $eid
MERGE (p)-[h:HAS_BRAND]->(v)
  ON CREATE SET h.source = 'review', h.ingested_at = $now, h.reviewed_by = $by, h.review_note = $note,
                h.predicted_by_run = e.run_id, h.predicted_p = e.p, h.predicted_model = e.model,
                h.predicted_model_version = e.model_version, h.predicted_at = e.created_at
SET e.current = false, e.review = 'accepted', e.reviewed_at = $now, e.reviewed_by = $by
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
    rows = client.read(_FIND_PREDICTION, {"product": str(product), "attribute": attribute, "norm": norm})
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
    rows = client.read(_FIND_PREDICTION, {"product": str(product), "attribute": attribute, "norm": norm})
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
    current: bool
    review: str | None
    superseded_by: str | None
    rules: tuple[str, ...]
    violations: tuple[str, ...]
    evidence_products: tuple[str, ...]
    text_evidence: str | None
    explanation: str | None
    created_at: datetime | None


_PRED_FIELDS = """
RETURN p.id AS product, e.attribute AS attribute, coalesce(v.value, v.name, v.key) AS value,
       coalesce(v.norm, v.key) AS norm, e.p AS p, e.rank AS rank, e.verdict AS verdict, e.run_id AS run_id,
       e.model AS model, e.current AS current, e.review AS review, e.superseded_by AS superseded_by,
       e.rules AS rules, e.violations AS violations, e.evidence_products AS evidence_products,
       e.text_evidence AS text_evidence, e.explanation AS explanation, e.created_at AS created_at
"""


def _stored(r: dict[str, Any]) -> StoredPrediction:
    return StoredPrediction(r["product"], r["attribute"], r["value"], r["norm"], float(r["p"]), int(r["rank"] or 0),
                            r["verdict"], r["run_id"], r["model"], bool(r["current"]), r["review"], r["superseded_by"],
                            tuple(r["rules"] or ()), tuple(r["violations"] or ()), tuple(r["evidence_products"] or ()),
                            r["text_evidence"], r["explanation"], plain(r["created_at"]))


def predictions(client: Neo4jClient, *, run_id: str | None = None, product: str | None = None,
                current: bool | None = None, verdict: str | None = None, limit: int = 1000) -> list[StoredPrediction]:
    """Stored predictions, filtered (best probability first)."""
    rows = client.read("""
        MATCH (p:Product)-[e:PREDICTED_VALUE]->(v)
        WHERE ($run IS NULL OR e.run_id = $run) AND ($product IS NULL OR p.id = $product)
          AND ($current IS NULL OR e.current = $current) AND ($verdict IS NULL OR e.verdict = $verdict)
        """ + _PRED_FIELDS + " ORDER BY e.p DESC, p.id, e.attribute LIMIT $limit",
        {"run": run_id, "product": product, "current": current, "verdict": verdict, "limit": limit})
    return [_stored(r) for r in rows]


@dataclass(frozen=True)
class IntegrityReport:
    """Invariant checks over all predicted edges (see the module docstring)."""

    predicted_edges: int
    current_edges: int
    slots_with_several_current: int
    duplicate_run_edges: int  # a run with two edges for one (product, attribute, value)
    duplicate_run_slots: int  # a run with two edges for one (product, attribute)
    current_over_asserted: int  # current predictions of a slot that has an asserted value: allowed but counted

    @property
    def ok(self) -> bool:
        return self.slots_with_several_current == 0 and self.duplicate_run_edges == 0 and self.duplicate_run_slots == 0


def integrity(client: Neo4jClient) -> IntegrityReport:
    r = client.read("""
        CALL () { MATCH ()-[e:PREDICTED_VALUE]->() RETURN count(e) AS edges,
                  sum(CASE WHEN e.current THEN 1 ELSE 0 END) AS cur }
        CALL () { MATCH (p:Product)-[e:PREDICTED_VALUE {current: true}]->() WITH p, e.attribute AS a, count(*) AS n
                  WHERE n > 1 RETURN count(*) AS several }
        CALL () { MATCH (p:Product)-[e:PREDICTED_VALUE]->(v) WITH p, v, e.run_id AS run, count(*) AS n
                  WHERE n > 1 RETURN count(*) AS dup_edges }
        CALL () { MATCH (p:Product)-[e:PREDICTED_VALUE]->() WITH p, e.attribute AS a, e.run_id AS run, count(*) AS n
                  WHERE n > 1 RETURN count(*) AS dup_slots }
        CALL () { MATCH (p:Product)-[e:PREDICTED_VALUE {current: true}]->(:Value)
                  WHERE EXISTS { MATCH (p)-[:HAS_VALUE]->(:Value {attribute: e.attribute}) }
                  RETURN count(e) AS over }
        RETURN edges, cur, several, dup_edges, dup_slots, over""")[0]
    return IntegrityReport(int(r["edges"]), int(r["cur"] or 0), int(r["several"]), int(r["dup_edges"]),
                           int(r["dup_slots"]), int(r["over"]))


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
    "BRAND", "BatchResult", "IntegrityReport", "PredictionRow", "ReviewResult", "RollbackResult", "StoredPrediction",
    "VERDICTS", "WritebackError", "accept_prediction", "asserted_fingerprint", "integrity", "predictions",
    "reject_prediction", "rejected_values", "retire_predictions", "undo_run_writes", "write_predictions",
]
