"""attrgraph: a knowledge graph + GNN that finds and fills missing product attributes, with evidence.

The public Python facade. ``ProductGraph`` is the graph API (see :mod:`graph`).
"""

from graph import (
    CategoryNode, Coverage, Fact, GraphStats, LocalNeo4j, Product, ProductGraph, ProductRef, QueryResult,
    ValueCount,
)
from ingest import IngestReport, Mapping, Rejection

__version__ = "0.1.0"

__all__ = [
    "CategoryNode", "Coverage", "Fact", "GraphStats", "IngestReport", "LocalNeo4j", "Mapping", "Product",
    "ProductGraph", "ProductRef", "QueryResult", "Rejection", "ValueCount", "__version__",
]
