"""The product graph's schema: constraints and indexes, created idempotently.

Nodes and keys (see the README for the full picture)::

    (:Product {id})        (:Brand {key})          (:Category {path})
    (:Attribute {name})    (:Value {attribute, norm})   (:IngestRun {id})
    (:CompletionRun {id})  (:CompletionLock {name})  (:Alias {attribute, norm})

Labels and relationship types are fixed here and in ``queries/``; attribute names and
values are only ever properties and parameters.
"""

from __future__ import annotations

from .connection import Neo4jClient

SCHEMA_VERSION = 1

CONSTRAINTS = [
    "CREATE CONSTRAINT product_id IF NOT EXISTS FOR (p:Product) REQUIRE p.id IS UNIQUE",
    "CREATE CONSTRAINT brand_key IF NOT EXISTS FOR (b:Brand) REQUIRE b.key IS UNIQUE",
    "CREATE CONSTRAINT category_path IF NOT EXISTS FOR (c:Category) REQUIRE c.path IS UNIQUE",
    "CREATE CONSTRAINT attribute_name IF NOT EXISTS FOR (a:Attribute) REQUIRE a.name IS UNIQUE",
    "CREATE CONSTRAINT value_key IF NOT EXISTS FOR (v:Value) REQUIRE (v.attribute, v.norm) IS UNIQUE",
    "CREATE CONSTRAINT ingest_run_id IF NOT EXISTS FOR (r:IngestRun) REQUIRE r.id IS UNIQUE",
    "CREATE CONSTRAINT completion_run_id IF NOT EXISTS FOR (r:CompletionRun) REQUIRE r.id IS UNIQUE",
    "CREATE CONSTRAINT completion_lock_name IF NOT EXISTS FOR (l:CompletionLock) REQUIRE l.name IS UNIQUE",
    "CREATE CONSTRAINT alias_key IF NOT EXISTS FOR (a:Alias) REQUIRE (a.attribute, a.norm) IS UNIQUE",
]

INDEXES = [
    "CREATE INDEX brand_name IF NOT EXISTS FOR (b:Brand) ON (b.name)",
    "CREATE INDEX category_name IF NOT EXISTS FOR (c:Category) ON (c.name)",
    "CREATE INDEX category_level IF NOT EXISTS FOR (c:Category) ON (c.level)",
    "CREATE INDEX value_attribute IF NOT EXISTS FOR (v:Value) ON (v.attribute)",
    "CREATE INDEX product_source IF NOT EXISTS FOR (p:Product) ON (p.source)",
    # completion runs: rollback finds a run's writes and what it superseded. Write-back itself always
    # expands from the product (see graph.writeback): a relationship index seek there is quadratic.
    "CREATE INDEX predicted_run IF NOT EXISTS FOR ()-[e:PREDICTED_VALUE]-() ON (e.run_id)",
    "CREATE INDEX predicted_superseded_by IF NOT EXISTS FOR ()-[e:PREDICTED_VALUE]-() ON (e.superseded_by)",
    "CREATE INDEX completion_run_status IF NOT EXISTS FOR (r:CompletionRun) ON (r.status)",
    # proposals of extraction (graph.proposals): found by status, for support counts and rollback
    "CREATE INDEX value_status IF NOT EXISTS FOR (v:Value) ON (v.status)",
    "CREATE INDEX brand_status IF NOT EXISTS FOR (b:Brand) ON (b.status)",
    "CREATE INDEX value_provenance IF NOT EXISTS FOR (v:Value) ON (v.provenance)",
    "CREATE INDEX brand_provenance IF NOT EXISTS FOR (b:Brand) ON (b.provenance)",
]

# Opt-in (`attrgraph schema --fulltext`): keeping a Lucene index current costs about a quarter of
# bulk-ingest time, and it is cheaper to build once after a large load.
FULLTEXT_INDEXES = [
    "CREATE FULLTEXT INDEX product_text IF NOT EXISTS FOR (p:Product) ON EACH [p.title, p.description]",
]


def ensure_schema(client: Neo4jClient, *, fulltext: bool = False) -> None:
    """Create every constraint and index that is missing and wait until they are online.

    ``fulltext=True`` also creates the full-text index ``product_text`` on title + description.
    """
    client.schema(CONSTRAINTS + INDEXES + (FULLTEXT_INDEXES if fulltext else []), await_seconds=300)


def schema_objects(client: Neo4jClient) -> dict[str, list[str]]:
    """Names of the constraints and indexes that exist (for `attrgraph stats` and tests)."""
    cons = [r["name"] for r in client.read("SHOW CONSTRAINTS YIELD name RETURN name ORDER BY name")]
    idx = [r["name"] for r in client.read("SHOW INDEXES YIELD name, owningConstraint WHERE owningConstraint IS NULL RETURN name ORDER BY name")]
    return {"constraints": cons, "indexes": idx}
