"""Read a graph snapshot (written by ``graph.export``) and its feature store, without Neo4j.

Node types: product, brand, category, attribute, value. Relations (source -> target):
has_value (product -> value), has_brand (product -> brand), in_category (product -> category),
subcategory_of (category -> category), of_attribute (value -> attribute).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SnapshotError
from .text import product_text

NODE_TYPES = ("product", "brand", "category", "attribute", "value")


@dataclass
class Snapshot:
    path: Path
    manifest: dict[str, Any]
    nodes: dict[str, list[dict[str, Any]]]
    edges: dict[str, np.ndarray]  # relation -> int64 [2, E]
    edge_types: dict[str, tuple[str, str]]  # relation -> (source type, target type)
    features: "FeatureStore" = field(init=False)

    def __post_init__(self) -> None:
        self.features = FeatureStore(self.path / "features", self)

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    def num_nodes(self, ntype: str) -> int:
        return len(self.nodes[ntype])

    def keys(self, ntype: str) -> list[Any]:
        return [tuple(r["key"]) if isinstance(r["key"], list) else r["key"] for r in self.nodes[ntype]]

    @cached_property
    def index(self) -> dict[str, dict[Any, int]]:
        """Key -> integer id, per node type (value keys are ``(attribute, norm)``)."""
        return {t: {k: i for i, k in enumerate(self.keys(t))} for t in NODE_TYPES}

    # -- texts for the encoders -----------------------------------------------------------------
    def texts(self, ntype: str, *, max_chars: int = 1000) -> list[str]:
        """The text that describes each node: title + description for products, names otherwise."""
        out = []
        for r in self.nodes[ntype]:
            if ntype == "product":
                t = product_text(r.get("title"), r.get("description"), max_chars)
            elif ntype == "value":
                t = f"{r['attribute']}: {r.get('value') or r['norm']}"
            elif ntype == "category":
                t = r["key"]
            else:
                t = r.get("name") or r["key"]
            out.append(t[:max_chars])
        return out

    # -- PyG ----------------------------------------------------------------------------------------
    def to_hetero_data(self, features: dict[str, Any] | None = None):  # -> torch_geometric.data.HeteroData
        """The snapshot as a PyG ``HeteroData``: ``num_nodes`` per type, ``edge_index`` [2, E] per
        relation, and ``x`` per node type from ``features`` (name -> tensor/array) when given."""
        import torch
        from torch_geometric.data import HeteroData

        data = HeteroData()
        for t in NODE_TYPES:
            data[t].num_nodes = self.num_nodes(t)
            if features and t in features:
                data[t].x = torch.as_tensor(np.asarray(features[t]), dtype=torch.float32)
        for rel, (s, d) in self.edge_types.items():
            data[s, rel, d].edge_index = torch.from_numpy(self.edges[rel].copy())
        return data


def load_snapshot(path: str | Path) -> Snapshot:
    p = Path(path)
    mf = p / "manifest.json"
    if not mf.exists():
        raise SnapshotError(f"{p}: not a snapshot (no manifest.json); export one with `attrgraph snapshot`")
    manifest = json.loads(mf.read_text(encoding="utf-8"))
    if manifest.get("format") != 1:
        raise SnapshotError(f"{p}: snapshot format {manifest.get('format')!r} is not supported (expected 1)")
    nodes: dict[str, list[dict[str, Any]]] = {}
    for t in NODE_TYPES:
        with open(p / "nodes" / f"{t}.jsonl", encoding="utf-8") as fh:
            nodes[t] = [json.loads(line) for line in fh]
        if len(nodes[t]) != manifest["nodes"][t]:
            raise SnapshotError(f"{p}: nodes/{t}.jsonl has {len(nodes[t])} rows, the manifest says {manifest['nodes'][t]}")
    edges, types = {}, {}
    for rel, meta in manifest["edges"].items():
        e = np.load(p / "edges" / f"{rel}.npy")
        if e.shape != (2, meta["count"]):
            raise SnapshotError(f"{p}: edges/{rel}.npy has shape {e.shape}, expected (2, {meta['count']})")
        edges[rel] = e
        types[rel] = (meta["source"], meta["target"])
    return Snapshot(p, manifest, nodes, edges, types)


class FeatureStore:
    """Named node-feature matrices kept beside a snapshot (``features/<name>.npy`` + ``index.json``).

    Each entry records its node type, what produced it (encoder/model and version) and the
    snapshot fingerprint it was computed for.
    """

    def __init__(self, root: Path, snapshot: Snapshot):
        self.root = root
        self.snapshot = snapshot

    def _index(self) -> dict[str, Any]:
        f = self.root / "index.json"
        return json.loads(f.read_text(encoding="utf-8")) if f.exists() else {}

    def names(self) -> list[str]:
        return sorted(self._index())

    def meta(self, name: str) -> dict[str, Any]:
        idx = self._index()
        if name not in idx:
            raise SnapshotError(f"no feature {name!r} in {self.root}; available: {', '.join(sorted(idx)) or '(none)'}")
        return idx[name]

    def put(self, name: str, ntype: str, matrix: np.ndarray, **meta: Any) -> None:
        if ntype not in NODE_TYPES:
            raise SnapshotError(f"unknown node type {ntype!r}; valid: {', '.join(NODE_TYPES)}")
        if matrix.shape[0] != self.snapshot.num_nodes(ntype):
            raise SnapshotError(f"feature {name!r}: {matrix.shape[0]} rows for {self.snapshot.num_nodes(ntype)} {ntype} nodes")
        self.root.mkdir(parents=True, exist_ok=True)
        np.save(self.root / f"{name}.npy", matrix)
        idx = self._index()
        idx[name] = {"node_type": ntype, "shape": list(matrix.shape), "dtype": str(matrix.dtype),
                     "snapshot": self.snapshot.fingerprint,
                     "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta}
        tmp = self.root / "index.json.tmp"
        tmp.write_text(json.dumps(idx, indent=1, default=str), encoding="utf-8")
        tmp.replace(self.root / "index.json")

    def get(self, name: str) -> np.ndarray:
        self.meta(name)
        return np.load(self.root / f"{name}.npy")

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
