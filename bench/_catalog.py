"""Catalog files read straight through the ingest readers and mappings, without a database.

For benchmarks that need product texts and facts but no graph: the rows, ids, titles, descriptions,
brands, categories and facts are exactly what ``attrgraph ingest`` would store (rejected rows and
duplicate ids are skipped as ingest skips them), and ``text_of`` builds the text that
``attrgraph features`` encodes (``gnn.text.product_text``).
"""

from __future__ import annotations

from pathlib import Path

from gnn.text import product_text
from ingest import shipped_mapping
from ingest.errors import RowError
from ingest.mapping import MappedProduct, Mapping
from ingest.readers import format_of, get_reader, open_binary

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
CATALOGS = {  # shipped mapping name -> catalog file
    "myntra": SHARED / "myntra" / "styles.jsonl.gz",
    "bigbasket": SHARED / "bigbasket" / "products.csv.gz",
    "taobao": SHARED / "taobao_zh" / "titles.jsonl.gz",
}


def read_products(path: str | Path, mapping: str | Mapping, limit: int | None = None) -> list[MappedProduct]:
    """The mapped products of a catalog file, in file order (at most ``limit`` rows read)."""
    path = Path(path)
    m = mapping if isinstance(mapping, Mapping) else shipped_mapping(mapping)
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


def text_of(p: MappedProduct, max_chars: int = 1000) -> str:
    return product_text(p.title, p.description, max_chars)
