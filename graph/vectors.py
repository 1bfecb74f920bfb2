"""Node vectors (e.g. KG embeddings) written back to Neo4j as properties, for Cypher users."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .connection import Neo4jClient
from .errors import GraphError

# node type -> statement; labels and keys are fixed here, never taken from data
_SET_VECTOR = {
    "product": "UNWIND $rows AS r MATCH (n:Product {id: r.key}) SET n[$prop] = r.vec",
    "brand": "UNWIND $rows AS r MATCH (n:Brand {key: r.key}) SET n[$prop] = r.vec",
    "category": "UNWIND $rows AS r MATCH (n:Category {path: r.key}) SET n[$prop] = r.vec",
    "attribute": "UNWIND $rows AS r MATCH (n:Attribute {name: r.key}) SET n[$prop] = r.vec",
    "value": "UNWIND $rows AS r MATCH (n:Value {attribute: r.key[0], norm: r.key[1]}) SET n[$prop] = r.vec",
}
ALLOWED_PROPS = ("kge", "text_embedding")


def ensure_vector_index(client: Neo4jClient, dimensions: int, *, similarity: str = "cosine") -> None:
    """The vector index ``product_kge`` on ``Product.kge`` (used by the query ``similar_products``).

    An existing index of another dimension is dropped and rebuilt."""
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
        raise GraphError(f"vector dimensions must be an integer in 1..4096, got {dimensions!r}")
    if similarity not in ("cosine", "euclidean"):
        raise GraphError(f"similarity must be 'cosine' or 'euclidean', got {similarity!r}")
    rows = client.read("SHOW VECTOR INDEXES YIELD name, options WHERE name = 'product_kge' RETURN options")
    if rows:
        if rows[0]["options"]["indexConfig"].get("vector.dimensions") == dimensions:
            return
        client.schema(["DROP INDEX product_kge IF EXISTS"], await_seconds=None)
    # the two settings are checked above; index options cannot be query parameters
    client.schema([
        "CREATE VECTOR INDEX product_kge IF NOT EXISTS FOR (p:Product) ON p.kge OPTIONS {indexConfig: "
        f"{{`vector.dimensions`: {dimensions}, `vector.similarity_function`: '{similarity}'}}}}"], await_seconds=300)


def write_node_vectors(client: Neo4jClient, node_type: str, keys: Sequence[Any], vectors: np.ndarray,
                       *, prop: str = "kge", batch: int = 2000, mask: np.ndarray | None = None) -> int:
    """Set ``prop`` (a float list) on the nodes with these keys; rows where ``mask`` is false are skipped.
    Returns how many nodes were written."""
    if node_type not in _SET_VECTOR:
        raise GraphError(f"unknown node type {node_type!r}; valid: {', '.join(_SET_VECTOR)}")
    if prop not in ALLOWED_PROPS:
        raise GraphError(f"vector property must be one of {', '.join(ALLOWED_PROPS)}, got {prop!r}")
    if len(keys) != len(vectors):
        raise GraphError(f"{len(keys)} keys but {len(vectors)} vectors")
    n = 0
    rows: list[dict[str, Any]] = []
    for i, k in enumerate(keys):
        if mask is not None and not mask[i]:
            continue
        rows.append({"key": list(k) if isinstance(k, tuple) else k, "vec": vectors[i].astype(float).tolist()})
        if len(rows) >= batch:
            n += client.write(_SET_VECTOR[node_type], {"rows": rows, "prop": prop}).properties_set
            rows = []
    if rows:
        n += client.write(_SET_VECTOR[node_type], {"rows": rows, "prop": prop}).properties_set
    return n
