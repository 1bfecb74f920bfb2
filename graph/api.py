"""The Python graph API: :class:`ProductGraph` answers catalog questions with typed objects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import neo4j.time

import queries as named_queries

from .connection import Neo4jClient
from .schema import ensure_schema, schema_objects
from .settings import LocalNeo4jSettings, Neo4jSettings

if TYPE_CHECKING:  # ingest imports graph, not the other way round at import time
    from ingest import IngestReport, Mapping


@dataclass(frozen=True)
class Fact:
    attribute: str
    value: str
    norm: str
    source: str | None = None
    ingested_at: datetime | None = None


@dataclass(frozen=True)
class Product:
    id: str
    title: str | None
    description: str | None
    brand: str | None
    category: str | None  # leaf category path, "A > B > C"
    facts: tuple[Fact, ...]
    properties: dict[str, Any] = field(default_factory=dict)

    def values(self, attribute: str) -> list[str]:
        return [f.value for f in self.facts if f.attribute == attribute]


@dataclass(frozen=True)
class ProductRef:
    id: str
    title: str | None
    category: str | None


@dataclass(frozen=True)
class Coverage:
    category: str
    attribute: str
    with_value: int
    products: int
    coverage: float


@dataclass(frozen=True)
class ValueCount:
    value: str
    norm: str
    products: int
    share: float


@dataclass(frozen=True)
class CategoryNode:
    path: str
    name: str
    level: int
    parent: str | None
    direct_products: int
    products: int


@dataclass(frozen=True)
class GraphStats:
    nodes: int
    products: int
    brands: int
    categories: int
    attributes: int
    values: int
    has_value: int
    has_brand: int
    in_category: int
    subcategory_of: int
    retracted: int
    ingest_runs: int


@dataclass(frozen=True)
class QueryResult:
    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def plain(v: Any) -> Any:
    """Driver values to plain Python (temporal types become ``datetime``/``date``)."""
    if isinstance(v, (neo4j.time.DateTime, neo4j.time.Date, neo4j.time.Time)):
        return v.to_native()
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def _build(cls: type, row: dict[str, Any]) -> Any:
    return cls(**{f.name: plain(row.get(f.name)) for f in fields(cls)})


_PRODUCT = """
MATCH (p:Product {id: $id})
OPTIONAL MATCH (p)-[:HAS_BRAND]->(b:Brand)
OPTIONAL MATCH (p)-[:IN_CATEGORY]->(c:Category)
CALL (p) {
  OPTIONAL MATCH (p)-[r:HAS_VALUE]->(v:Value)
  RETURN collect(CASE WHEN v IS NULL THEN null ELSE
    {attribute: v.attribute, value: v.value, norm: v.norm, source: r.source, ingested_at: r.ingested_at} END) AS facts
}
RETURN properties(p) AS props, b.name AS brand, c.path AS category, facts
"""

_CORE_PROPS = {"id", "title", "description"}


class ProductGraph:
    """The product graph in Neo4j, from Python.

    >>> with ProductGraph.connect() as g:          # NEO4J_URI, or the local Neo4j
    ...     g.ingest("styles.jsonl.gz", mapping="myntra")
    ...     g.products_missing("Pattern", "Tshirts")
    """

    def __init__(self, client: Neo4jClient):
        self.client = client

    @classmethod
    def connect(
        cls,
        uri: str | None = None,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        *,
        local: LocalNeo4jSettings | None = None,
    ) -> "ProductGraph":
        client = Neo4jClient(Neo4jSettings.resolve(uri, user, password, database, local=local))
        try:
            client.verify()
        except Exception:
            client.close()
            raise
        return cls(client)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "ProductGraph":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema and ingest ----------------------------------------------------------------
    def ensure_schema(self, *, fulltext: bool = False) -> dict[str, list[str]]:
        """Constraints and indexes (idempotent); ``fulltext=True`` adds the ``product_text`` index."""
        ensure_schema(self.client, fulltext=fulltext)
        return schema_objects(self.client)

    def ingest(
        self,
        path: str | Path,
        *,
        mapping: "Mapping | str | Path",
        batch_size: int = 2000,
        progress: Callable[[int, int, int], None] | None = None,
        limit: int | None = None,
    ) -> "IngestReport":
        """Ingest a catalog file. ``mapping`` is a :class:`ingest.Mapping`, a YAML path, or a shipped name."""
        from ingest import Mapping, ingest_file, shipped_mapping

        if isinstance(mapping, str) and not Path(mapping).exists() and not mapping.endswith((".yaml", ".yml")):
            mapping = shipped_mapping(mapping)
        elif not isinstance(mapping, Mapping):
            mapping = Mapping.load(mapping)
        return ingest_file(self.client, path, mapping, batch_size=batch_size, progress=progress, limit=limit)

    # -- reads ------------------------------------------------------------------------------
    def product(self, id: str) -> Product | None:
        rows = self.client.read(_PRODUCT, {"id": str(id)})
        if not rows:
            return None
        r = rows[0]
        props = plain(r["props"])
        facts = tuple(sorted((_build(Fact, f) for f in r["facts"] if f), key=lambda f: (f.attribute, f.norm)))
        extra = {k: v for k, v in props.items() if k not in _CORE_PROPS}
        return Product(props["id"], props.get("title"), props.get("description"), r["brand"], r["category"], facts, extra)

    def products_missing(self, attribute: str, category: str, *, limit: int = 100) -> list[ProductRef]:
        res = self.query("products_missing_attribute", attribute=attribute, category=category, limit=limit)
        return [_build(ProductRef, d) for d in res.as_dicts()]

    def coverage(self, category: str | None = None, *, min_products: int = 1, limit: int = 100_000) -> list[Coverage]:
        res = self.query("attribute_coverage", category=category, min_products=min_products, limit=limit)
        return [_build(Coverage, d) for d in res.as_dicts()]

    def value_distribution(self, attribute: str, category: str | None = None, *, limit: int = 20) -> list[ValueCount]:
        res = self.query("top_values", attribute=attribute, category=category, limit=limit)
        return [_build(ValueCount, d) for d in res.as_dicts()]

    def category_tree(self, root: str | None = None) -> list[CategoryNode]:
        return [_build(CategoryNode, d) for d in self.query("category_tree", root=root).as_dicts()]

    def stats(self) -> GraphStats:
        return _build(GraphStats, self.query("graph_stats").as_dicts()[0])

    def query(self, name: str, **params: Any) -> QueryResult:
        """Run a named query from ``queries/`` with checked parameters."""
        q = named_queries.get(name)
        bound = q.bind(params)
        def work(tx: neo4j.ManagedTransaction) -> QueryResult:
            res = tx.run(q.text, bound)
            rows = tuple(tuple(plain(v) for v in rec.values()) for rec in res)
            return QueryResult(name, tuple(res.keys()), rows)

        return self.client.read_tx(work)

    # -- maintenance ------------------------------------------------------------------------
    def clear(self, *, confirm: bool = False, batch: int = 10_000) -> None:
        """Delete every node and relationship, in batches of ``batch`` (bounded transaction memory).
        Needs ``confirm=True``."""
        if not confirm:
            raise ValueError("clear() deletes the whole graph; call it with confirm=True")
        # Relationships first: DETACH DELETE of a value node with 20k products would be one huge transaction.
        # Idempotent by construction: a retry (after a lost connection) deletes whatever is left.
        self.client.run_in_transactions(
            "MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF $batch ROWS", {"batch": batch})
        self.client.run_in_transactions(
            "MATCH (n) CALL (n) { DELETE n } IN TRANSACTIONS OF $batch ROWS", {"batch": batch})
