"""Export the product graph from Neo4j into an on-disk snapshot for learning.

A snapshot is a directory that the learning code reads without touching Neo4j::

    manifest.json                     what, from where, when, counts, content fingerprint
    nodes/<type>.jsonl                one JSON object per node, in id order (row i = integer id i)
    edges/<relation>.npy              int64 array of shape [2, E]: source ids, target ids

Node types and their keys: ``product`` (id), ``brand`` (key), ``category`` (path),
``attribute`` (name), ``value`` (attribute, norm). Integer ids follow the sorted keys, so
exporting the same graph twice gives the same ids. Product records carry ``props``: the
mapping's product properties (scalars and lists of strings; never the bookkeeping ones, never
vectors), which the completion model may read as inputs. Records are streamed from Neo4j and
written as they come; edges are collected in compact integer arrays, never as Python
objects per record.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .connection import Neo4jClient
from .errors import GraphError

SNAPSHOT_FORMAT = 1

# Product properties that are the graph's own bookkeeping, not catalog data (the mapping's
# ``properties`` are exported as ``props``: scalars and lists of strings; vectors are left out)
SYSTEM_PRODUCT_PROPERTIES = ("id", "title", "description", "source", "content_hash", "created_at", "updated_at",
                             "ingest_id")

# A value or brand proposed by extraction (``graph.proposals``) is no catalog value until a fact asserts
# it: the snapshot (and so the model's candidates) leaves it out.
ASSERTED_VALUE = "(coalesce(v.status, '') <> 'proposed' OR EXISTS { MATCH (:Product)-[:HAS_VALUE]->(v) })"
ASSERTED_BRAND = "(coalesce(b.status, '') <> 'proposed' OR EXISTS { MATCH (:Product)-[:HAS_BRAND]->(b) })"

NODE_QUERIES: dict[str, str] = {
    "product": """
        MATCH (p:Product) WHERE p.id > $after
        WITH p ORDER BY p.id LIMIT $page
        RETURN p.id AS key, p.title AS title, p.description AS description, p.content_hash AS hash,
               p.source AS source,
               [k IN keys(p) WHERE NOT k IN $system AND p[k] IS NOT NULL
                    AND (valueType(p[k]) =~ '(STRING|INTEGER|FLOAT|BOOLEAN) NOT NULL'
                         OR valueType(p[k]) STARTS WITH 'LIST<STRING') | [k, p[k]]] AS props""",
    "brand": "MATCH (b:Brand) WHERE " + ASSERTED_BRAND + " RETURN b.key AS key, b.name AS name ORDER BY key",
    "category": "MATCH (c:Category) RETURN c.path AS key, c.name AS name, c.level AS level ORDER BY key",
    "attribute": "MATCH (a:Attribute) RETURN a.name AS key ORDER BY key",
    "value": """
        MATCH (v:Value) WHERE """ + ASSERTED_VALUE + """
        RETURN [v.attribute, v.norm] AS key, v.attribute AS attribute, v.norm AS norm, v.value AS value,
               v.quantity AS quantity, v.unit AS unit
        ORDER BY v.attribute, v.norm""",
}

# node types read in keyset pages (``$after``: the last key of the previous page, "" first; ``$page`` rows), in the
# order of the unique key's index: no server-side sort of a million product records, one page in flight at a time
PAGED = {"product"}

# relation name -> (source type, target type, query returning source key `s` and target key `t`)
EDGE_QUERIES: dict[str, tuple[str, str, str]] = {
    "has_value": ("product", "value",
                  "MATCH (p:Product)-[:HAS_VALUE]->(v:Value) RETURN p.id AS s, [v.attribute, v.norm] AS t"),
    "has_brand": ("product", "brand", "MATCH (p:Product)-[:HAS_BRAND]->(b:Brand) RETURN p.id AS s, b.key AS t"),
    "in_category": ("product", "category",
                    "MATCH (p:Product)-[:IN_CATEGORY]->(c:Category) RETURN p.id AS s, c.path AS t"),
    "subcategory_of": ("category", "category",
                       "MATCH (c:Category)-[:SUBCATEGORY_OF]->(d:Category) RETURN c.path AS s, d.path AS t"),
    "of_attribute": ("value", "attribute",
                     "MATCH (v:Value)-[:OF_ATTRIBUTE]->(a:Attribute) WHERE " + ASSERTED_VALUE
                     + " RETURN [v.attribute, v.norm] AS s, a.name AS t"),
}


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    nodes: dict[str, int]
    edges: dict[str, int]
    fingerprint: str
    seconds: float


def _key(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def replace_dir(tmp: Path, out: Path) -> None:
    """Put the finished directory ``tmp`` in place of ``out`` (renames: a reader sees the old or the new one)."""
    if out.exists():
        old = out.with_name(out.name + f".old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)


def _fingerprint(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(list((root / "nodes").glob("*.jsonl")) + list((root / "edges").glob("*.npy"))):
        h.update(f.relative_to(root).as_posix().encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _read_pages(client: Neo4jClient, q: str, params: dict[str, Any], node: Any, ids: dict[Any, int], fh: Any,
                page: int, fetch_size: int) -> None:
    """Read a paged node query (``$after``, ``$page``) page after page; a retried page first drops what its failed
    attempt wrote (the file back to the page's start, its keys forgotten)."""
    after = ""  # keys are non-empty strings, all greater than ""
    while True:
        start, n0 = fh.tell(), len(ids)

        def restart(start: int = start, n0: int = n0) -> None:
            fh.seek(start)
            fh.truncate()
            while len(ids) > n0:
                ids.popitem()

        client.read_each(q, {**params, "after": after, "page": page}, node, restart=restart, fetch_size=fetch_size)
        if len(ids) - n0 < page:
            return
        after = next(reversed(ids))


def export_snapshot(client: Neo4jClient, out_dir: str | Path, *, fetch_size: int = 5000,
                    page_size: int = 20_000) -> ExportSummary:
    """Write a snapshot of the whole product graph to ``out_dir`` (replaced atomically). Products are read in
    keyset pages of ``page_size`` and written as they come; edges are kept as compact integer arrays."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "nodes").mkdir(parents=True)
    (tmp / "edges").mkdir()
    t0 = time.perf_counter()
    index: dict[str, dict[Any, int]] = {}
    counts: dict[str, int] = {}
    # Each query is one managed read transaction, streamed ``fetch_size`` records at a time. A retried
    # transaction (lost connection, restart, leader change) delivers its records again from the first:
    # ``restart`` drops what the failed attempt had written, so every file holds one complete result.
    for ntype, q in NODE_QUERIES.items():
        ids: dict[Any, int] = {}
        with open(tmp / "nodes" / f"{ntype}.jsonl", "w", encoding="utf-8") as fh:
            params = {"system": list(SYSTEM_PRODUCT_PROPERTIES)} if ntype == "product" else {}

            def node(rec: Any, ntype: str = ntype, ids: dict[Any, int] = ids, fh: Any = fh) -> None:
                d = rec.data()
                if ntype == "product":  # props sorted: the same graph gives the same bytes (and fingerprint)
                    d["props"] = dict(sorted((k, v) for k, v in d["props"]))
                k = _key(d["key"])
                if k in ids:  # cannot happen under the schema's constraints; refuse rather than guess
                    raise GraphError(f"export: duplicate {ntype} key {k!r}")
                ids[k] = len(ids)
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")

            def restart_nodes(ids: dict[Any, int] = ids, fh: Any = fh) -> None:
                ids.clear()
                fh.seek(0)
                fh.truncate()

            if ntype in PAGED:  # keyset pages, each its own managed transaction (a retry redoes one page)
                _read_pages(client, q, params, node, ids, fh, page_size, fetch_size)
            else:
                client.read_each(q, params, node, restart=restart_nodes, fetch_size=fetch_size)
        index[ntype] = ids
        counts[ntype] = len(ids)
    edge_counts: dict[str, int] = {}
    for rel, (src, dst, q) in EDGE_QUERIES.items():
        si, di = index[src], index[dst]
        a, b = array("q"), array("q")

        def edge(rec: Any, si: dict[Any, int] = si, di: dict[Any, int] = di, a: array = a, b: array = b) -> None:
            a.append(si[_key(rec["s"])])
            b.append(di[_key(rec["t"])])

        def restart_edges(a: array = a, b: array = b) -> None:
            del a[:], b[:]

        client.read_each(q, {}, edge, restart=restart_edges, fetch_size=fetch_size)
        e = np.stack([np.frombuffer(a, dtype=np.int64), np.frombuffer(b, dtype=np.int64)]) if a else np.zeros((2, 0), np.int64)
        order = np.lexsort((e[1], e[0]))  # deterministic edge order
        np.save(tmp / "edges" / f"{rel}.npy", e[:, order])
        edge_counts[rel] = int(e.shape[1])
    fp = _fingerprint(tmp)
    s = client.settings
    manifest = {
        "format": SNAPSHOT_FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"uri": s.uri, "database": s.database or "(default)"},  # never credentials
        "nodes": counts,
        "edges": {rel: {"source": EDGE_QUERIES[rel][0], "target": EDGE_QUERIES[rel][1], "count": n}
                  for rel, n in edge_counts.items()},
        "fingerprint": fp,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    replace_dir(tmp, out)
    return ExportSummary(out, counts, edge_counts, fp, time.perf_counter() - t0)
