"""Streaming reads of the asserted catalog, for the rule layer (``kb``) and anything else that needs
every product with its leaf category, brand and facts.

Products come in pages ordered by id (keyset pagination on the unique ``Product.id`` index: each
page is one short read transaction, memory per page is bounded). Fixed Cypher, parameters only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .connection import Neo4jClient


@dataclass(frozen=True)
class FactRow:
    attribute: str
    norm: str
    value: str | None
    quantity: float | None
    unit: str | None


@dataclass(frozen=True)
class ProductFacts:
    id: str
    categories: tuple[str, ...]  # leaf category paths: exactly one in a well-formed graph
    brands: tuple[tuple[str, str | None], ...]  # (key, name): at most one in a well-formed graph
    facts: tuple[FactRow, ...]


@dataclass(frozen=True)
class CategoryRow:
    path: str
    name: str | None
    level: int | None
    parents: tuple[str, ...]  # one, or none for a root, in a tree


_PAGE = """
MATCH (p:Product)
WHERE p.id > $after
WITH p ORDER BY p.id LIMIT $limit
CALL (p) {
  OPTIONAL MATCH (p)-[:IN_CATEGORY]->(c:Category)
  RETURN collect(c.path) AS categories
}
CALL (p) {
  OPTIONAL MATCH (p)-[:HAS_BRAND]->(b:Brand)
  RETURN collect(CASE WHEN b IS NULL THEN null ELSE [b.key, b.name] END) AS brands
}
CALL (p) {
  OPTIONAL MATCH (p)-[:HAS_VALUE]->(v:Value)
  RETURN collect(CASE WHEN v IS NULL THEN null ELSE
    {attribute: v.attribute, norm: v.norm, value: v.value, quantity: v.quantity, unit: v.unit} END) AS facts
}
RETURN p.id AS id, categories, brands, facts
ORDER BY id
"""

_CATEGORIES = """
MATCH (c:Category)
OPTIONAL MATCH (c)-[:SUBCATEGORY_OF]->(parent:Category)
RETURN c.path AS path, c.name AS name, c.level AS level, collect(parent.path) AS parents
ORDER BY path
"""

_COUNT = "MATCH (p:Product) RETURN count(p) AS n"


def count_products(client: Neo4jClient) -> int:
    return int(client.read(_COUNT)[0]["n"])


def iter_product_pages(client: Neo4jClient, *, page_size: int = 5000) -> Iterator[list[ProductFacts]]:
    """Every product with its categories, brands and facts, ``page_size`` products at a time."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    after = ""  # ids are non-empty strings, all greater than ""
    while True:
        rows = client.read(_PAGE, {"after": after, "limit": page_size})
        if not rows:
            return
        page = []
        for r in rows:
            facts = tuple(FactRow(f["attribute"], f["norm"], f.get("value"),
                                  float(f["quantity"]) if f.get("quantity") is not None else None, f.get("unit"))
                          for f in r["facts"] if f)
            page.append(ProductFacts(str(r["id"]), tuple(r["categories"]),
                                     tuple((b[0], b[1]) for b in r["brands"] if b), facts))
        yield page
        if len(rows) < page_size:
            return
        after = rows[-1]["id"]


def category_rows(client: Neo4jClient) -> list[CategoryRow]:
    """Every category with its parent(s): the edges of the category tree."""
    return [CategoryRow(r["path"], r["name"], r["level"], tuple(r["parents"])) for r in client.read(_CATEGORIES)]
