"""Open-world proposals in Neo4j: values (and brands) that extraction found in product texts and that
the graph does not hold yet, and aliases of the values it does hold.

Schema (see README, "Proposals")::

    (:Value {attribute, norm, value, status: 'proposed', provenance: 'extracted', model, created_by_run,
             created_at, runs, support, evidence_product, evidence_field, evidence_start, evidence_end,
             evidence_text, quantity, unit})
    (:Brand {key, name, status: 'proposed', provenance: 'extracted', ...the same...})
    (:Product)-[:PREDICTED_VALUE {..., new: true, provenance: 'extracted', extractor, evidence_field,
                                  evidence_start, evidence_end, evidence_text, evidence_confidence}]->(proposed)
    (:Alias {attribute, norm, text, provenance: 'extracted', model, created_by_run, runs, evidence_...})
        -[:ALIAS_OF {created_by_run, created_at}]->(:Value | :Brand)

A proposed node is ``MERGE``\\ d on its key ((attribute, norm), or the brand key), so writing the same
proposal again -- a retried batch, a later run -- changes nothing but the list of ``runs`` that proposed
it. It has no ``HAS_VALUE``/``HAS_BRAND`` and no ``OF_ATTRIBUTE`` edge until a reviewer accepts it, so
nothing that reads asserted facts sees it; the snapshot export leaves it out (the model never ranks it
as a known value) and ``graph_stats`` does not count it. ``review accept`` turns it into an asserted
value: ``status: 'accepted'`` (provenance kept), an ``OF_ATTRIBUTE`` edge, and the ``HAS_VALUE`` fact
(``source: 'review'``, ``accepted_from: 'extraction'``, the evidence copied onto the fact).

**Hidden while pending.** Nodes are written under the run's lock before its prediction edges are
staged; readers (``queries/proposed_values.cypher``, ``queries/value_evidence.cypher``, :func:`proposals`)
show a proposal or an alias only through runs that are not pending (:data:`graph.writeback.PENDING_RUNS`),
and its support only as of the last committed run (written in the run's last transaction, the one
that marks it committed). **Rollback** (:func:`undo_run_proposals`, called by
:func:`graph.writeback.undo_run_writes`) takes the run off every proposal and alias, and deletes those
left with no run that are used by nothing (no asserted fact, no predicted edge, no review decision, no
alias).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import neo4j

from .connection import Neo4jClient
from .runs import LOCK_NAME, check_holder, now

BRAND = "@brand"


@dataclass(frozen=True)
class SpanEvidence:
    """Where a proposed string was read: ``field_text[start:end] == text``."""

    product: str
    field: str  # title | description
    start: int
    end: int
    text: str
    confidence: float | None = None
    model: str = ""  # the extractor's model id

    def edge_props(self) -> dict[str, Any]:
        return {"provenance": "extracted", "extractor": self.model, "evidence_field": self.field,
                "evidence_start": int(self.start), "evidence_end": int(self.end), "evidence_text": self.text,
                "evidence_confidence": None if self.confidence is None else float(self.confidence)}

    def node_props(self) -> dict[str, Any]:
        return {"evidence_product": self.product, "evidence_field": self.field, "evidence_start": int(self.start),
                "evidence_end": int(self.end), "evidence_text": self.text}


@dataclass(frozen=True)
class ProposalRow:
    """A value (``attribute``) or a brand (``attribute == "@brand"``) new to the graph."""

    attribute: str
    norm: str
    value: str  # display form
    evidence: SpanEvidence  # one example span (every product's own span is on its predicted edge)
    model: str
    support: int = 1  # products it was proposed for in this run
    quantity: float | None = None
    unit: str | None = None

    def params(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "norm": self.norm, "value": self.value, "model": self.model,
                "support": int(self.support), "quantity": self.quantity, "unit": self.unit,
                "evidence": self.evidence.node_props()}


@dataclass(frozen=True)
class AliasRow:
    """An extracted spelling (``norm``/``text``) that resolved to a known value (``value_norm``) by a near
    match."""

    attribute: str
    norm: str
    text: str
    value_norm: str
    evidence: SpanEvidence
    model: str

    def params(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "norm": self.norm, "text": self.text, "value_norm": self.value_norm,
                "model": self.model, "evidence": self.evidence.node_props()}


@dataclass(frozen=True)
class ProposalWrite:
    proposed: int  # proposal rows written (nodes created or found)
    created: int  # nodes this call created
    aliases: int


_PROPOSE = """
UNWIND $rows AS r
MERGE (v:%s)
  ON CREATE SET v += r.evidence, v.%s = r.value, v.status = 'proposed', v.provenance = 'extracted',
                v.model = r.model, v.created_by_run = $run, v.created_at = $now, v.runs = [], v.support = 0,
                v.quantity = r.quantity, v.unit = r.unit, v.created_now = true
WITH v, r, coalesce(v.created_now, false) AS created
REMOVE v.created_now
WITH v, created WHERE v.status = 'proposed'
SET v.runs = CASE WHEN $run IN coalesce(v.runs, []) THEN v.runs ELSE coalesce(v.runs, []) + $run END
RETURN count(v) AS n, sum(CASE WHEN created THEN 1 ELSE 0 END) AS created
"""
_PROPOSE_VALUES = _PROPOSE % ("Value {attribute: r.attribute, norm: r.norm}", "value")
_PROPOSE_BRANDS = _PROPOSE % ("Brand {key: r.norm}", "name")

_ALIAS = """
UNWIND $rows AS r
MATCH (v:%s)
MERGE (a:Alias {attribute: r.attribute, norm: r.norm})
  ON CREATE SET a += r.evidence, a.text = r.text, a.provenance = 'extracted', a.model = r.model,
                a.created_by_run = $run, a.created_at = $now, a.runs = []
SET a.runs = CASE WHEN $run IN a.runs THEN a.runs ELSE a.runs + $run END
MERGE (a)-[x:ALIAS_OF]->(v)
  ON CREATE SET x.created_by_run = $run, x.created_at = $now
RETURN count(a) AS n
"""
_ALIAS_VALUES = _ALIAS % "Value {attribute: r.attribute, norm: r.value_norm}"
_ALIAS_BRANDS = _ALIAS % "Brand {key: r.value_norm}"


def write_proposals(client: Neo4jClient, run_id: str, proposals: Sequence[ProposalRow],
                    aliases: Sequence[AliasRow] = (), *, lock: str = LOCK_NAME, batch_size: int = 2000) -> ProposalWrite:
    """``MERGE`` the proposed nodes and the aliases of ``run_id`` (before its predicted edges are staged:
    they point at these nodes). Each batch is one lock-fenced transaction; idempotent."""
    n = created = n_alias = 0
    t = now()
    items: list[tuple[str, list[dict[str, Any]]]] = []
    for lo in range(0, max(len(proposals), len(aliases)), batch_size):
        ps, als = proposals[lo:lo + batch_size], aliases[lo:lo + batch_size]
        items = [(_PROPOSE_VALUES, [p.params() for p in ps if p.attribute != BRAND]),
                 (_PROPOSE_BRANDS, [p.params() for p in ps if p.attribute == BRAND]),
                 (_ALIAS_VALUES, [a.params() for a in als if a.attribute != BRAND]),
                 (_ALIAS_BRANDS, [a.params() for a in als if a.attribute == BRAND])]

        def work(tx: neo4j.ManagedTransaction, items: list = items) -> tuple[int, int, int]:
            check_holder(tx, run_id, lock)
            out = [0, 0, 0]
            for q, rows in items:
                if not rows:
                    continue
                rec = tx.run(q, {"rows": rows, "run": run_id, "now": t}).single()
                if q in (_PROPOSE_VALUES, _PROPOSE_BRANDS):
                    out[0] += int(rec["n"] or 0)
                    out[1] += int(rec["created"] or 0)
                else:
                    out[2] += int(rec["n"] or 0)
            return out[0], out[1], out[2]

        a, b, c = client.write_tx(work)
        n, created, n_alias = n + a, created + b, n_alias + c
    return ProposalWrite(n, created, n_alias)


# Support = products whose current predicted edge of the slot is this proposal. Run in the run's last
# transaction (the run is still pending there, its own edges already flipped current): readers see the
# new counts when they see the run.
SUPPORT = """
CALL () {
  MATCH (v:Value {status: 'proposed'}) WHERE $run IN v.runs RETURN v
  UNION
  MATCH (v:Brand {status: 'proposed'}) WHERE $run IN v.runs RETURN v
}
SET v.support = COUNT { MATCH (:Product)-[e:PREDICTED_VALUE]->(v) WHERE e.current = true AND e.new = true }
"""


def refresh_support(tx: neo4j.ManagedTransaction, run_id: str) -> None:
    tx.run(SUPPORT, {"run": run_id}).consume()


# Rollback, after the run's predicted edges are gone: the run leaves every proposal and alias; what no
# run proposes any more and nothing uses is deleted.
_UNDO_NODES = """
CALL () {
  MATCH (v:Value {status: 'proposed'}) WHERE $run IN v.runs RETURN v
  UNION
  MATCH (v:Brand {status: 'proposed'}) WHERE $run IN v.runs RETURN v
}
SET v.runs = [r IN v.runs WHERE r <> $run]
WITH v WHERE size(v.runs) = 0
  AND NOT EXISTS { MATCH (v)<-[:HAS_VALUE|HAS_BRAND|PREDICTED_VALUE|REJECTED_VALUE|RETRACTED]-() }
  AND NOT EXISTS { MATCH (v)<-[:ALIAS_OF]-() }
DETACH DELETE v
RETURN count(*) AS deleted
"""
_UNDO_ALIASES = """
OPTIONAL MATCH ()-[x:ALIAS_OF {created_by_run: $run}]->()
DELETE x
WITH count(x) AS edges
MATCH (a:Alias) WHERE $run IN a.runs
SET a.runs = [r IN a.runs WHERE r <> $run]
WITH edges, a WHERE size(a.runs) = 0 OR NOT EXISTS { MATCH (a)-[:ALIAS_OF]->() }
DETACH DELETE a
RETURN edges, count(a) AS deleted
"""


@dataclass(frozen=True)
class ProposalUndo:
    nodes_deleted: int
    aliases_deleted: int


def undo_run_proposals(client: Neo4jClient, run_id: str, *, lock: str = LOCK_NAME,
                       holder: str | None = None) -> ProposalUndo:
    """Take ``run_id`` off every proposal and alias; delete those no run proposes any more and nothing
    uses. Call after the run's predicted edges are deleted. Idempotent."""
    def work(tx: neo4j.ManagedTransaction) -> ProposalUndo:
        if holder is not None:
            check_holder(tx, holder, lock)
        a = tx.run(_UNDO_ALIASES, {"run": run_id}).single()
        v = tx.run(_UNDO_NODES, {"run": run_id}).single()
        return ProposalUndo(int(v["deleted"] or 0) if v else 0, int(a["deleted"] or 0) if a else 0)

    return client.write_tx(work)


# -- reads ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proposal:
    attribute: str
    value: str
    norm: str
    status: str  # proposed | accepted
    support: int
    model: str | None
    runs: tuple[str, ...]
    evidence: dict[str, Any]


def proposals(client: Neo4jClient, *, attribute: str | None = None, status: str | None = "proposed",
              limit: int = 1000) -> list[Proposal]:
    """Proposals as readers see them (the named query ``proposed_values``), most supported first."""
    import queries as named_queries

    q = named_queries.get("proposed_values")
    rows = client.read(q.text, q.bind({"attribute": attribute, "status": status, "limit": limit}))
    return [Proposal(r["attribute"], r["value"], r["norm"], r["status"], int(r["support"] or 0), r["model"],
                     tuple(r["runs"] or ()), {"product": r["evidence_product"], "field": r["evidence_field"],
                                              "start": r["evidence_start"], "end": r["evidence_end"],
                                              "text": r["evidence_text"]}) for r in rows]


__all__ = ["AliasRow", "BRAND", "Proposal", "ProposalRow", "ProposalUndo", "ProposalWrite", "SUPPORT", "SpanEvidence",
           "proposals", "refresh_support", "undo_run_proposals", "write_proposals"]
