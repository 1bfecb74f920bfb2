"""Training examples (product texts + asserted values) from a graph snapshot or straight from a catalog file,
and the product-level splits the extractor is trained, calibrated and graded on."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .supervision import BRAND, Example


def examples_from_snapshot(snap: Any) -> list[Example]:
    """One example per product node of a ``gnn.snapshot.Snapshot``: its title, description and asserted
    values (value displays per attribute; the brand's name under ``"brand"``)."""
    prods = snap.nodes["product"]
    facts: list[dict[str, list[str]]] = [{} for _ in prods]
    values = snap.nodes["value"]
    hv = snap.edges.get("has_value")
    if hv is not None:
        for p, v in zip(hv[0].tolist(), hv[1].tolist()):
            r = values[v]
            facts[p].setdefault(str(r["attribute"]), []).append(str(r.get("value") or r["norm"]))
    brands = snap.nodes["brand"]
    hb = snap.edges.get("has_brand")
    if hb is not None:
        for p, b in zip(hb[0].tolist(), hb[1].tolist()):
            r = brands[b]
            facts[p].setdefault(BRAND, []).append(str(r.get("name") or r["key"]))
    return [Example(str(r["key"]), str(r.get("title") or ""), str(r.get("description") or ""),
                    {a: list(dict.fromkeys(v)) for a, v in f.items()}) for r, f in zip(prods, facts)]


def examples_from_products(products: Sequence[Any]) -> list[Example]:
    """Examples from ``ingest.mapping.MappedProduct`` rows (what ``attrgraph ingest`` would store)."""
    out = []
    for p in products:
        f: dict[str, list[str]] = {}
        if p.brand is not None:
            f[BRAND] = [p.brand.display]
        for a, v in p.facts:
            f.setdefault(a, [])
            if v.display not in f[a]:
                f[a].append(v.display)
        out.append(Example(p.id, p.title or "", p.description or "", f))
    return out


def examples_from_catalog(path: str | Path, mapping: str, limit: int | None = None) -> list[Example]:
    """Examples from a catalog file read through a mapping (a shipped name or a YAML path), as ingest reads
    it: rejected rows and repeated ids are skipped."""
    from ingest import read_products

    return examples_from_products(read_products(path, mapping, limit))


def dedup_titles(examples: Sequence[Example]) -> list[Example]:
    """The first example of each case-folded, whitespace-collapsed title (examples without a title are kept)."""
    seen: set[str] = set()
    out = []
    for e in examples:
        k = " ".join(e.title.casefold().split())
        if k and k in seen:
            continue
        seen.add(k)
        out.append(e)
    return out


def _h(seed: int, s: str) -> str:
    return hashlib.sha256(f"{seed}:{s}".encode()).hexdigest()


def split_products(examples: Sequence[Example], *, test_share: float = 0.2, seed: int = 0,
                   group: str = "title") -> tuple[list[Example], list[Example]]:
    """A seeded product-level split (train, test); ``group="title"``: products with equal titles go to the
    same side, so no test product has a title twin in training. The order of the input does not matter."""
    if not 0 <= test_share < 1:
        raise ValueError(f"test_share must be in [0, 1), got {test_share}")
    key = (lambda e: " ".join(e.title.casefold().split()) or e.id) if group == "title" else (lambda e: e.id)
    thr = int(test_share * 2**32)
    train, test = [], []
    for e in examples:
        (test if int(_h(seed, key(e))[:8], 16) < thr else train).append(e)
    return train, test
