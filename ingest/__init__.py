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


def read_products(path: "str | Path", mapping: "str | Mapping", limit: int | None = None) -> list[MappedProduct]:
    """The mapped products of a catalog file, in file order (at most ``limit`` rows read), as ingest reads it
    but without a database: rejected rows and repeated ids are skipped. ``mapping``: a ``Mapping``, a shipped
    name or a YAML path."""
    from pathlib import Path

    from .readers import format_of, get_reader, open_binary

    path = Path(path)
    if isinstance(mapping, Mapping):
        m = mapping
    else:
        m = Mapping.load(Path(mapping)) if str(mapping).endswith((".yaml", ".yml")) else shipped_mapping(mapping)
    reader = get_reader(m.format or format_of(path))
    out: list[MappedProduct] = []
    seen: set[str] = set()
    with open_binary(path) as stream:
        for n, (_, rec) in enumerate(reader(stream, **m.csv)):
            if limit is not None and n >= limit:
                break
            if isinstance(rec, RowError):
                continue
            try:
                p = m.apply(rec)
            except RowError:
                continue
            if p.id not in seen:
                seen.add(p.id)
                out.append(p)
    return out


__all__ = [
    "ConfigError", "FieldPath", "IngestError", "IngestReport", "MappedProduct", "Mapping", "NormalizedValue",
    "READERS", "Rejection", "RowError", "SHIPPED_MAPPINGS", "Synonyms", "clean_text", "ingest_file",
    "normalize_value", "parse_quantity", "read_products", "register_reader", "shipped_mapping",
]
