"""Catalog ingest: readers, declarative mappings, value normalisation, batched idempotent writes."""

from .errors import ConfigError, IngestError, Rejection, RowError
from .mapping import FieldPath, MappedProduct, Mapping
from .normalize import NormalizedValue, Synonyms, clean_text, normalize_value, parse_quantity
from .pipeline import IngestReport, ingest_file
from .readers import READERS, register_reader

SHIPPED_MAPPINGS = ("myntra", "bigbasket", "taobao")


def shipped_mapping(name: str) -> "Mapping":
    """One of the mappings shipped in ``ingest/mappings`` by name."""
    from pathlib import Path

    p = Path(__file__).resolve().parent / "mappings" / f"{name}.yaml"
    if not p.exists():
        raise IngestError(f"no shipped mapping {name!r}; shipped: {', '.join(SHIPPED_MAPPINGS)}")
    return Mapping.load(p)


__all__ = [
    "ConfigError", "FieldPath", "IngestError", "IngestReport", "MappedProduct", "Mapping", "NormalizedValue",
    "READERS", "Rejection", "RowError", "SHIPPED_MAPPINGS", "Synonyms", "clean_text", "ingest_file",
    "normalize_value", "parse_quantity", "register_reader", "shipped_mapping",
]
