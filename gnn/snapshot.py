"""Read a graph snapshot (written by ``graph.export``) and its feature store, without Neo4j.

Node types: product, brand, category, attribute, value. Relations (source -> target):
has_value (product -> value), has_brand (product -> brand), in_category (product -> category),
subcategory_of (category -> category), of_attribute (value -> attribute).
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SnapshotError
from .text import product_text

NODE_TYPES = ("product", "brand", "category", "attribute", "value")


class JsonlRows(Sequence):
    """The rows of a ``nodes/<type>.jsonl`` file, read on demand: the file memory-mapped, the offset of each
    line kept (8 bytes per row), a row parsed when it is asked for. Iteration streams the file.

    A million product records (title, description, properties) take several GB as Python dicts; this
    keeps them on disk and in the page cache. Rows are equal to ``json.loads`` of each line.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        ends = [np.zeros(0, np.int64)]
        step = 1 << 20  # scanned 1 MB at a time, in place: no file-sized temporary
        for lo in range(0, size, step):
            view = np.frombuffer(self._mm, dtype=np.uint8, count=min(step, size - lo), offset=lo)
            ends.append(np.flatnonzero(view == 10).astype(np.int64) + lo)
            del view  # (an exported buffer would pin the map)
        end = np.concatenate(ends)
        if size and (not len(end) or end[-1] != size - 1):  # a last line without its newline
            end = np.append(end, size)
        self._start = np.concatenate([[0], end[:-1] + 1]).astype(np.int64)
        self._end = end

    def __len__(self) -> int:
        return len(self._end)

    def _row(self, i: int) -> dict[str, Any]:
        return json.loads(self._mm[int(self._start[i]): int(self._end[i])])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._row(j) for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of {self.path} (it has {len(self)})")
        return self._row(i)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, JsonlRows)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@dataclass
class Snapshot:
    path: Path
    manifest: dict[str, Any]
    nodes: dict[str, Sequence[dict[str, Any]]]  # lists, or JsonlRows when loaded with mmap=True
    edges: dict[str, np.ndarray]  # relation -> int64 [2, E] (read-only memory maps when loaded with mmap=True)
    edge_types: dict[str, tuple[str, str]]  # relation -> (source type, target type)
    features: "FeatureStore" = field(init=False)
    mmap: bool = False  # feature matrices are read as memory maps too

    def __post_init__(self) -> None:
        self.features = FeatureStore(self.path / "features", self)
        self._keys: dict[str, list[Any]] = {}

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    def num_nodes(self, ntype: str) -> int:
        return len(self.nodes[ntype])

    def keys(self, ntype: str) -> list[Any]:
        if ntype not in self._keys:  # (kept: with memory-mapped rows, each pass parses the file)
            self._keys[ntype] = [tuple(r["key"]) if isinstance(r["key"], list) else r["key"] for r in self.nodes[ntype]]
        return list(self._keys[ntype])

    @cached_property
    def index(self) -> dict[str, dict[Any, int]]:
        """Key -> integer id, per node type (value keys are ``(attribute, norm)``)."""
        return {t: {k: i for i, k in enumerate(self.keys(t))} for t in NODE_TYPES}

    # -- texts for the encoders -----------------------------------------------------------------
    def texts(self, ntype: str, *, max_chars: int = 1000) -> list[str]:
        """The text that describes each node: title + description for products, names otherwise."""
        return list(self.iter_texts(ntype, max_chars=max_chars))

    def iter_texts(self, ntype: str, *, max_chars: int = 1000) -> Iterator[str]:
        """:meth:`texts`, one at a time (nothing held)."""
        for r in self.nodes[ntype]:
            if ntype == "product":
                t = product_text(r.get("title"), r.get("description"), max_chars)
            elif ntype == "value":
                t = f"{r['attribute']}: {r.get('value') or r['norm']}"
            elif ntype == "category":
                t = r["key"]
            else:
                t = r.get("name") or r["key"]
            yield t[:max_chars]

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


def load_snapshot(path: str | Path, *, mmap: bool = True) -> Snapshot:
    """Open a snapshot. ``mmap=True`` (default): node rows are read on demand from their files
    (:class:`JsonlRows`), edge arrays and feature matrices are read-only memory maps -- what a catalog of
    millions of products needs; ``mmap=False``: everything is read into memory (the same values)."""
    p = Path(path)
    mf = p / "manifest.json"
    if not mf.exists():
        raise SnapshotError(f"{p}: not a snapshot (no manifest.json); export one with `attrgraph snapshot`")
    manifest = json.loads(mf.read_text(encoding="utf-8"))
    if manifest.get("format") != 1:
        raise SnapshotError(f"{p}: snapshot format {manifest.get('format')!r} is not supported (expected 1)")
    nodes: dict[str, Sequence[dict[str, Any]]] = {}
    for t in NODE_TYPES:
        if mmap:
            nodes[t] = JsonlRows(p / "nodes" / f"{t}.jsonl")
        else:
            with open(p / "nodes" / f"{t}.jsonl", encoding="utf-8") as fh:
                nodes[t] = [json.loads(line) for line in fh]
        if len(nodes[t]) != manifest["nodes"][t]:
            raise SnapshotError(f"{p}: nodes/{t}.jsonl has {len(nodes[t])} rows, the manifest says {manifest['nodes'][t]}")
    edges, types = {}, {}
    for rel, meta in manifest["edges"].items():
        e = np.load(p / "edges" / f"{rel}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        if e.shape != (2, meta["count"]):
            raise SnapshotError(f"{p}: edges/{rel}.npy has shape {e.shape}, expected (2, {meta['count']})")
        edges[rel] = e
        types[rel] = (meta["source"], meta["target"])
    return Snapshot(p, manifest, nodes, edges, types, mmap=mmap)


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
        # a new file renamed into place, never the old one rewritten: a memory map of it stays valid
        tmp = self.root / f".{name}.npy.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(matrix), allow_pickle=False)
            os.replace(tmp, self.root / f"{name}.npy")
        finally:
            tmp.unlink(missing_ok=True)
        self._register(name, ntype, matrix.shape, matrix.dtype, meta)

    def _register(self, name: str, ntype: str, shape: Sequence[int], dtype: Any, meta: dict[str, Any]) -> None:
        idx = self._index()
        idx[name] = {"node_type": ntype, "shape": list(shape), "dtype": str(np.dtype(dtype)),
                     "snapshot": self.snapshot.fingerprint,
                     "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta}
        tmp = self.root / "index.json.tmp"
        tmp.write_text(json.dumps(idx, indent=1, default=str), encoding="utf-8")
        tmp.replace(self.root / "index.json")

    @contextmanager
    def writer(self, name: str, ntype: str, dim: int, dtype: Any = np.float32, **meta: Any) -> Iterator[np.ndarray]:
        """A preallocated ``[num nodes, dim]`` memory-mapped ``.npy`` to fill row block by row block; on a clean
        exit it is flushed, renamed into place and registered with ``meta``; a failure leaves no entry behind."""
        if ntype not in NODE_TYPES:
            raise SnapshotError(f"unknown node type {ntype!r}; valid: {', '.join(NODE_TYPES)}")
        self.root.mkdir(parents=True, exist_ok=True)
        n = self.snapshot.num_nodes(ntype)
        tmp = self.root / f".{name}.npy.tmp-{os.getpid()}"
        m = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=(n, int(dim)))
        try:
            yield m
            m.flush()
            del m
            os.replace(tmp, self.root / f"{name}.npy")
        finally:
            tmp.unlink(missing_ok=True)
        self._register(name, ntype, (n, int(dim)), dtype, meta)

    def get(self, name: str) -> np.ndarray:
        """The matrix (a read-only memory map when the snapshot was loaded with ``mmap=True``)."""
        self.meta(name)
        return np.load(self.root / f"{name}.npy", mmap_mode="r" if self.snapshot.mmap else None, allow_pickle=False)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
