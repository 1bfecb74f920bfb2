"""Model files that loading can never turn into code: a JSON tree, numpy arrays in ``.npz``, tensors in
``.safetensors``, every file checksummed.

A fitted predictor is an object graph (our dataclasses, a few scikit-learn estimators, numpy and
scipy arrays, torch tensors). :func:`save_tree` writes it as

* ``<name>.json`` -- the graph as a JSON tree: builtins as themselves, containers tagged
  (``{"$tuple": [...]}``, ``{"$dict": [[k, v], ...]}``, a vocabulary as ``{"$dict_ints": {...}}``), objects as ``{"$obj": "module.Class",
  "state": ...}``, shared objects once (later references are ``{"$ref": n}``), plus a ``files`` table
  with the SHA-256 of each file below;
* ``<name>.npz`` -- numpy arrays (``allow_pickle=False``: object arrays are never stored there);
* ``<name>.safetensors`` -- torch tensors.

:func:`load_tree` checks every checksum before reading anything else, then rebuilds the graph. An
object is created only for a class on the allow-list (any class defined in this package's ``gnn.*``
modules, and the named scikit-learn / numpy types below), by ``cls.__new__`` and its state restored
by ``__setstate__`` or ``__dict__``; no ``pickle``, no ``eval``, no import of a name the file chose
outside that list. A tampered, truncated or foreign file raises :class:`SafeIOError` naming the file.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from graph.settings import private_dir

from .errors import GnnError

FORMAT = 1
_OUR_PACKAGE = "gnn."
# third-party classes a predictor may hold (fully-qualified name as ``type.__module__ + '.' + __qualname__``)
_ALLOWED_FOREIGN = {
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.CountVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.isotonic.IsotonicRegression",
}
_ALLOWED_TYPES = {f"numpy.{n}": getattr(np, n) for n in
                  ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                   "uint32", "uint64", "bool_")}
_SPARSE = ("csr", "csc", "coo")


class SafeIOError(GnnError):
    """A model file cannot be written safely, or is not a file this module wrote (tampered, truncated, foreign)."""


def _qualname(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.tensors: dict[str, Any] = {}
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps encoded objects alive so that their ids stay unique

    def _remember(self, o: Any) -> int:
        n = len(self.keep)
        self.memo[id(o)] = n
        self.keep.append(o)
        return n

    def encode(self, o: Any, where: str) -> Any:
        if o is None or isinstance(o, (bool, str)):
            return o
        if isinstance(o, int) and type(o) is int:
            return o
        if type(o) is float:
            return o if math.isfinite(o) else {"$float": repr(o)}
        if id(o) in self.memo:
            return {"$ref": self.memo[id(o)]}
        if isinstance(o, np.generic):
            v = o.item()
            return {"$npv": o.dtype.str, "v": self.encode(v, where)}
        if isinstance(o, type):
            name = _qualname(o)
            if name not in _ALLOWED_TYPES:
                raise SafeIOError(f"cannot save the type {name} (at {where})")
            return {"$type": name}
        if isinstance(o, tuple) and type(o) is tuple:
            return {"$tuple": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(o)]}
        if isinstance(o, (set, frozenset)):
            items = sorted((self.encode(v, where) for v in o), key=lambda e: json.dumps(e, sort_keys=True))
            return {"$frozenset" if isinstance(o, frozenset) else "$set": items}
        n = self._remember(o)
        if isinstance(o, np.ndarray):
            if o.dtype.hasobject:
                return {"$id": n, "$ndo": [self.encode(v, where) for v in o.ravel().tolist()], "shape": list(o.shape)}
            key = f"a{len(self.arrays)}"
            self.arrays[key] = o
            return {"$id": n, "$nd": key}
        if _is_tensor(o):
            import torch

            key = f"t{len(self.tensors)}"
            self.tensors[key] = o.detach().cpu().contiguous().clone()
            out = {"$id": n, "$tensor": key}
            if isinstance(o, torch.nn.Parameter):
                out["param"], out["requires_grad"] = True, bool(o.requires_grad)
            return out
        if _is_sparse(o):
            fmt = o.format
            if fmt not in _SPARSE:
                o = o.tocsr()
                fmt = "csr"
            parts = {"row": o.row, "col": o.col} if fmt == "coo" else {"indices": o.indices, "indptr": o.indptr}
            return {"$id": n, "$sparse": fmt, "shape": list(o.shape), "data": self.encode(o.data, where),
                    **{k: self.encode(v, where) for k, v in parts.items()}}
        if type(o) is list:
            return {"$id": n, "$list": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(o)]}
        if type(o) in (dict, OrderedDict):
            tag = "$odict" if type(o) is OrderedDict else "$dict"
            if o and all(type(k) is str for k in o):
                vt = type(next(iter(o.values())))
                if issubclass(vt, np.integer) and all(type(v) is vt for v in o.values()):  # a vocabulary
                    return {"$id": n, tag + "_ints": {k: int(v) for k, v in o.items()}, "dtype": np.dtype(vt).str}
                return {"$id": n, tag + "s": {k: self.encode(v, f"{where}[{k!r}]") for k, v in o.items()}}
            return {"$id": n, tag: [[self.encode(k, where), self.encode(v, f"{where}[{k!r}]")] for k, v in o.items()]}
        name = _qualname(type(o))
        if not _allowed_class(name):
            raise SafeIOError(f"cannot save an object of type {name} (at {where}): not on the allow-list of gnn.safeio")
        state = o.__getstate__()
        state = {} if state is None else state
        if not isinstance(state, dict):
            raise SafeIOError(f"cannot save {name} (at {where}): its state is not a dict")
        return {"$id": n, "$obj": name, "state": self.encode(dict(state), f"{where}.{name.rsplit('.', 1)[-1]}")}


def _is_tensor(o: Any) -> bool:
    mod = type(o).__module__
    if not mod.startswith("torch"):
        return False
    import torch

    return isinstance(o, torch.Tensor)


def _is_sparse(o: Any) -> bool:
    if not type(o).__module__.startswith("scipy.sparse"):
        return False
    import scipy.sparse as sp

    return sp.issparse(o)


def _allowed_class(name: str) -> bool:
    return name.startswith(_OUR_PACKAGE) or name in _ALLOWED_FOREIGN


def _resolve_class(name: str, file: Path) -> type:
    if not isinstance(name, str) or not _allowed_class(name):
        raise SafeIOError(f"{file}: refers to the class {name!r}, which a model file may not hold")
    module, _, qual = name.rpartition(".")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise SafeIOError(f"{file}: the class {name} cannot be found ({e}); saved by another version?") from None
    cls = getattr(mod, qual, None)
    if not isinstance(cls, type) or cls.__module__ != module:
        raise SafeIOError(f"{file}: {name} is not a class of {module}")
    return cls


class _Decoder:
    def __init__(self, file: Path, arrays: Any, tensors: dict[str, Any]) -> None:
        self.file, self.arrays, self.tensors = file, arrays, tensors
        self.objects: dict[int, Any] = {}

    def _bad(self, what: str) -> SafeIOError:
        return SafeIOError(f"{self.file}: {what}; the file is damaged or was not written by attrgraph")

    def _register(self, e: dict[str, Any], o: Any) -> Any:
        if "$id" in e:
            self.objects[e["$id"]] = o
        return o

    def decode(self, e: Any) -> Any:
        if e is None or isinstance(e, (bool, int, float, str)):
            return e
        if isinstance(e, list):
            raise self._bad("an untagged list")
        if not isinstance(e, dict) or not e:
            raise self._bad(f"an unexpected value of type {type(e).__name__}")
        if "$ref" in e:
            if e["$ref"] not in self.objects:
                raise self._bad(f"a reference to an unknown object {e['$ref']!r}")
            return self.objects[e["$ref"]]
        if "$float" in e:
            if e["$float"] not in ("nan", "inf", "-inf"):
                raise self._bad(f"a float {e['$float']!r}")
            return float(e["$float"])
        if "$npv" in e:
            return np.dtype(e["$npv"]).type(self.decode(e["v"]))
        if "$type" in e:
            if e["$type"] not in _ALLOWED_TYPES:
                raise self._bad(f"a type {e['$type']!r} off the allow-list")
            return _ALLOWED_TYPES[e["$type"]]
        if "$tuple" in e:
            return tuple(self.decode(v) for v in e["$tuple"])
        if "$set" in e or "$frozenset" in e:
            items = [self.decode(v) for v in e.get("$set", e.get("$frozenset"))]
            return set(items) if "$set" in e else frozenset(items)
        if "$nd" in e:
            if e["$nd"] not in self.arrays:
                raise self._bad(f"a missing array {e['$nd']!r}")
            return self._register(e, self.arrays[e["$nd"]])
        if "$ndo" in e:
            arr = np.empty(len(e["$ndo"]), dtype=object)
            arr[:] = [self.decode(v) for v in e["$ndo"]]
            return self._register(e, arr.reshape(e["shape"]))
        if "$tensor" in e:
            if e["$tensor"] not in self.tensors:
                raise self._bad(f"a missing tensor {e['$tensor']!r}")
            t = self.tensors[e["$tensor"]]
            if e.get("param"):
                import torch

                t = torch.nn.Parameter(t, requires_grad=bool(e.get("requires_grad", True)))
            return self._register(e, t)
        if "$sparse" in e:
            import scipy.sparse as sp

            fmt, shape = e["$sparse"], tuple(e["shape"])
            data = self.decode(e["data"])
            if fmt == "coo":
                m = sp.coo_matrix((data, (self.decode(e["row"]), self.decode(e["col"]))), shape=shape)
            elif fmt in ("csr", "csc"):
                make = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
                m = make((data, self.decode(e["indices"]), self.decode(e["indptr"])), shape=shape)
            else:
                raise self._bad(f"a sparse format {fmt!r}")
            return self._register(e, m)
        if "$list" in e:
            out: list[Any] = self._register(e, [])
            out.extend(self.decode(v) for v in e["$list"])
            return out
        for tag, kind in (("$dict", dict), ("$odict", OrderedDict)):
            if tag + "_ints" in e:
                cast = np.dtype(e["dtype"]).type
                return self._register(e, kind((k, cast(v)) for k, v in e[tag + "_ints"].items()))
            if tag in e:
                d = self._register(e, kind())
                for k, v in e[tag]:
                    d[self.decode(k)] = self.decode(v)
                return d
            if tag + "s" in e:
                d = self._register(e, kind())
                for k, v in e[tag + "s"].items():
                    d[k] = self.decode(v)
                return d
        if "$obj" in e:
            cls = _resolve_class(e["$obj"], self.file)
            obj = self._register(e, cls.__new__(cls))
            state = self.decode(e.get("state"))
            if not isinstance(state, dict):
                raise self._bad(f"{e['$obj']} without a state")
            if getattr(cls, "__setstate__", None) is not None:
                obj.__setstate__(state)
            else:
                obj.__dict__.update(state)
            return obj
        raise self._bad(f"an unknown tag {sorted(e)[:3]}")


def save_tree(obj: Any, directory: str | Path, name: str) -> Path:
    """Write ``obj`` as ``name.json`` (+ ``name.npz``, ``name.safetensors``) in ``directory`` (created 0700).

    Each file is written beside its final name and renamed; the JSON, which carries the others'
    checksums, is renamed last, so a reader sees the old files or the new ones."""
    d = private_dir(directory)
    enc = _Encoder()
    tree = enc.encode(obj, name)
    files: dict[str, str] = {}
    if enc.arrays:
        tmp = d / f".{name}.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **enc.arrays)
        os.chmod(tmp, 0o600)
        files[f"{name}.npz"] = _sha256(tmp)
        tmp.replace(d / f"{name}.npz")
    if enc.tensors:
        from safetensors.torch import save_file

        tmp = d / f".{name}.safetensors.tmp"
        save_file(enc.tensors, str(tmp))
        os.chmod(tmp, 0o600)
        files[f"{name}.safetensors"] = _sha256(tmp)
        tmp.replace(d / f"{name}.safetensors")
    doc = {"format": FORMAT, "writer": "attrgraph gnn.safeio", "files": files, "root": tree}
    tmp = d / f".{name}.json.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    os.chmod(tmp, 0o600)
    tmp.replace(d / f"{name}.json")
    return d / f"{name}.json"


def load_tree(directory: str | Path, name: str) -> Any:
    """Rebuild what :func:`save_tree` wrote. Raises :class:`SafeIOError` (naming the file) when a file is
    missing, altered after saving (checksum), or holds anything off the allow-list."""
    d = Path(directory)
    f = d / f"{name}.json"
    if not f.exists():
        raise SafeIOError(f"{f}: no such model file")
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafeIOError(f"{f}: not a model file ({e})") from None
    if not isinstance(doc, dict) or doc.get("writer") != "attrgraph gnn.safeio" or "root" not in doc:
        raise SafeIOError(f"{f}: not a model file written by attrgraph")
    if doc.get("format") != FORMAT:
        raise SafeIOError(f"{f}: model file format {doc.get('format')!r} is not supported (expected {FORMAT})")
    files = doc.get("files") or {}
    if not isinstance(files, dict) or any(k not in (f"{name}.npz", f"{name}.safetensors") for k in files):
        raise SafeIOError(f"{f}: lists unexpected files {sorted(files) if isinstance(files, dict) else files!r}")
    for fname, digest in files.items():
        p = d / fname
        if not p.exists():
            raise SafeIOError(f"{p}: missing (the model file {f.name} needs it)")
        if _sha256(p) != digest:
            raise SafeIOError(f"{p}: changed after it was saved (SHA-256 mismatch); refusing to load it")
    arrays: Any = {}
    if f"{name}.npz" in files:
        try:
            with np.load(d / f"{name}.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError) as e:
            raise SafeIOError(f"{d / (name + '.npz')}: cannot be read ({e})") from None
    tensors: dict[str, Any] = {}
    if f"{name}.safetensors" in files:
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(d / f"{name}.safetensors"))
        except Exception as e:  # safetensors raises its own error types
            raise SafeIOError(f"{d / (name + '.safetensors')}: cannot be read ({type(e).__name__}: {e})") from None
    try:
        return _Decoder(f, arrays, tensors).decode(doc["root"])
    except SafeIOError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise SafeIOError(f"{f}: cannot be rebuilt ({type(e).__name__}: {e}); damaged, or saved by another version") from None


__all__ = ["SafeIOError", "load_tree", "save_tree"]
