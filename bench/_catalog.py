"""Catalog files read straight through the ingest readers and mappings, without a database.

For benchmarks that need product texts and facts but no graph: the rows, ids, titles, descriptions,
brands, categories and facts are exactly what ``attrgraph ingest`` would store (rejected rows and
duplicate ids are skipped as ingest skips them), and ``text_of`` builds the text that
``attrgraph features`` encodes (``gnn.text.product_text``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gnn.text import product_text
import ingest
from ingest.mapping import MappedProduct, Mapping

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
CATALOGS = {  # shipped mapping name -> catalog file
    "myntra": SHARED / "myntra" / "styles.jsonl.gz",
    "bigbasket": SHARED / "bigbasket" / "products.csv.gz",
    "taobao": SHARED / "taobao_zh" / "titles.jsonl.gz",
}


def read_products(path: str | Path, mapping: str | Mapping, limit: int | None = None) -> list[MappedProduct]:
    """The mapped products of a catalog file, in file order (at most ``limit`` rows read)."""
    return ingest.read_products(path, mapping, limit)


def catalog_names(ap: Any, text: str, valid: Any) -> list[str]:
    """The comma-separated catalog names of ``text``, each one of ``valid`` (else ``ap.error``)."""
    names = [c for c in text.split(",") if c]
    bad = [c for c in names if c not in valid]
    if bad:
        ap.error(f"unknown catalog(s) {bad}; valid: {', '.join(valid)}")
    return names


def text_of(p: MappedProduct, max_chars: int = 1000) -> str:
    return product_text(p.title, p.description, max_chars)


def write_snapshot(products: Sequence[MappedProduct], out_dir: str | Path, *, mapping_name: str = "",
                   source: str = "") -> Path:
    """The snapshot (``gnn.snapshot`` format, as ``graph.export`` writes it) that ``attrgraph ingest`` of
    ``products`` followed by ``attrgraph snapshot`` would give, built without a database: nodes in the
    export's key order, one ``in_category`` edge to each product's leaf path, every level of a path a
    category node, the first spelling of a brand or value its display form, repeated facts once.
    For benchmarks that need a snapshot (a protocol split, a baseline) from a shared catalog file."""
    import hashlib
    import json

    import numpy as np

    from gnn.snapshot import NODE_TYPES

    out = Path(out_dir)
    brands: dict[str, str] = {}
    cats: dict[str, dict] = {}
    values: dict[tuple[str, str], dict] = {}
    for p in products:
        if p.brand is not None:
            brands.setdefault(p.brand.norm, p.brand.display)
        for i in range(len(p.category)):
            path = " > ".join(p.category[: i + 1])
            cats.setdefault(path, {"key": path, "name": p.category[i], "level": i + 1,
                                   "parent": " > ".join(p.category[:i]) if i else None})
        for a, v in p.facts:
            values.setdefault((a, v.norm), {"key": [a, v.norm], "attribute": a, "norm": v.norm, "value": v.display,
                                            "quantity": v.quantity, "unit": v.unit})
    prods = sorted(products, key=lambda p: p.id)
    nodes: dict[str, list[dict]] = {
        "product": [{"key": p.id, "title": p.title, "description": p.description,
                     "hash": p.content_hash(mapping_name) if mapping_name else None, "source": source or None,
                     "props": dict(sorted((k, v) for k, v in p.properties.items()
                                          if v is not None and (isinstance(v, (str, int, float, bool))
                                                                or (isinstance(v, list) and all(isinstance(x, str) for x in v)))))}
                    for p in prods],
        "brand": [{"key": k, "name": brands[k]} for k in sorted(brands)],
        "category": [{k: c[k] for k in ("key", "name", "level")} for _, c in sorted(cats.items())],
        "attribute": [{"key": a} for a in sorted({a for a, _ in values})],
        "value": [values[k] for k in sorted(values)],
    }
    ix = {t: {(tuple(r["key"]) if isinstance(r["key"], list) else r["key"]): i for i, r in enumerate(rs)}
          for t, rs in nodes.items()}
    hv, hb, ic = set(), [], []
    for p in prods:
        i = ix["product"][p.id]
        if p.brand is not None:
            hb.append((i, ix["brand"][p.brand.norm]))
        if p.category:
            ic.append((i, ix["category"][" > ".join(p.category)]))
        hv.update((i, ix["value"][(a, v.norm)]) for a, v in p.facts)
    sc = [(ix["category"][c["key"]], ix["category"][c["parent"]]) for c in cats.values() if c["parent"] is not None]
    oa = [(i, ix["attribute"][r["attribute"]]) for i, r in enumerate(nodes["value"])]
    edges = {"has_value": ("product", "value", hv), "has_brand": ("product", "brand", hb),
             "in_category": ("product", "category", ic), "subcategory_of": ("category", "category", sc),
             "of_attribute": ("value", "attribute", oa)}
    (out / "nodes").mkdir(parents=True, exist_ok=True)
    (out / "edges").mkdir(exist_ok=True)
    h = hashlib.sha256()
    for t in NODE_TYPES:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in nodes[t])
        (out / "nodes" / f"{t}.jsonl").write_text(text, encoding="utf-8")
        h.update(text.encode("utf-8"))
    for rel, (_, _, e) in edges.items():
        arr = np.array(sorted(e), dtype=np.int64).reshape(-1, 2).T.copy()
        np.save(out / "edges" / f"{rel}.npy", arr)
        h.update(arr.tobytes())
    manifest = {"format": 1, "created_at": None, "source": {"file": source or None, "database": None},
                "nodes": {t: len(nodes[t]) for t in NODE_TYPES},
                "edges": {rel: {"source": s, "target": d, "count": len(e)} for rel, (s, d, e) in edges.items()},
                "fingerprint": h.hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out
