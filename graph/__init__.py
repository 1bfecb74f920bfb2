"""Neo4j side of attrgraph: the local server, connection, schema, and the Python graph API."""

from .api import (
    CategoryNode, Coverage, Fact, GraphStats, Product, ProductGraph, ProductRef, QueryResult, ValueCount,
)
from .connection import Neo4jClient
from .errors import ConnectionFailed, GraphError, LauncherError
from .schema import ensure_schema
from .server import LocalNeo4j
from .settings import LocalNeo4jSettings, Neo4jSettings, SettingsError

__all__ = [
    "CategoryNode", "ConnectionFailed", "Coverage", "Fact", "GraphError", "GraphStats", "LauncherError",
    "LocalNeo4j", "LocalNeo4jSettings", "Neo4jClient", "Neo4jSettings", "Product", "ProductGraph", "ProductRef",
    "QueryResult", "SettingsError", "ValueCount", "ensure_schema",
]
