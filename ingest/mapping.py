"""Declarative mapping from any catalog record to a product, its brand, category path and facts.

A mapping is a YAML file (documented in ``ingest/mappings/README.md``; the shipped ones
are examples). Field references are *paths*: ``brand``, ``descriptors.description``,
``sizes[0]``, ``entities[type=HPPX].text``; a CSV column is matched by its exact name first.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RowError
from .normalize import NormalizedValue, Synonyms, clean_text, normalize_value
from .yamlconf import Located, load_yaml, parse_yaml

RESERVED_PROPERTIES = {"id", "title", "description", "source", "content_hash", "created_at", "updated_at", "ingest_id"}
_SEGMENT = re.compile(r"^(?P<name>[^\[\]]*)(?P<sel>(\[[^\[\]]*\])*)$")
_SELECTOR = re.compile(r"\[([^\[\]]*)\]")
_TAG = re.compile(r"<[^>]{0,2000}>")


class FieldPath:
    """A reference into a record: dotted keys, ``[n]`` list indexes, ``[key=value]`` filters.

    ``values(record)`` returns every match (lists are flattened), ``first(record)`` the first.
    """

    def __init__(self, spec: str):
        self.spec = spec
        self.steps: list[tuple[str, Any]] = []
        for seg in spec.split("."):
            m = _SEGMENT.match(seg)
            if not m or (not m["name"] and not m["sel"]):
                raise ValueError(f"bad field path {spec!r} at {seg!r}")
            if m["name"]:
                self.steps.append(("key", m["name"]))
            for sel in _SELECTOR.findall(m["sel"] or ""):
                if "=" in sel:
                    k, v = sel.split("=", 1)
                    self.steps.append(("filter", (k.strip(), v.strip())))
                elif sel.strip().lstrip("-").isdigit():
                    self.steps.append(("index", int(sel)))
                else:
                    raise ValueError(f"bad selector [{sel}] in field path {spec!r}")

    def values(self, record: Any) -> list[Any]:
        if isinstance(record, MappingABC) and self.spec in record:  # flat keys with dots or brackets
            cur = [record[self.spec]]
        else:
            cur = [record]
            for kind, arg in self.steps:
                nxt: list[Any] = []
                for item in cur:
                    if kind == "key":
                        if isinstance(item, MappingABC) and arg in item:
                            nxt.append(item[arg])
                    elif kind == "index":
                        if isinstance(item, list) and -len(item) <= arg < len(item):
                            nxt.append(item[arg])
                    else:
                        k, v = arg
                        if isinstance(item, list):
                            nxt.extend(x for x in item if isinstance(x, MappingABC) and str(x.get(k)) == v)
                cur = nxt
        out: list[Any] = []
        for v in cur:
            if isinstance(v, list):
                out.extend(v)
            elif v is not None:
                out.append(v)
        return out

    def __repr__(self) -> str:
        return f"FieldPath({self.spec!r})"


@dataclass(frozen=True)
class AttributeSource:
    """Where facts come from: one field (``field``), a nested dict (``map``) or a list of records (``list``)."""

    kind: str  # "field" | "map" | "list"
    path: FieldPath
    name: str | None = None  # for kind=field: the attribute's name
    key: str | None = None  # for kind=list: the record key holding the attribute name
    value: str | None = None  # for kind=list: the record key holding the value
    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    names: dict[str, str] = field(default_factory=dict)  # rename attribute names
    split: str | None = None  # split one string into several values


@dataclass(frozen=True)
class MappedProduct:
    id: str
    title: str | None
    description: str | None
    brand: NormalizedValue | None
    category: tuple[str, ...]
    facts: tuple[tuple[str, NormalizedValue], ...]
    properties: dict[str, Any]

    def content_hash(self, mapping_name: str) -> str:
        doc = {
            "m": mapping_name,
            "t": self.title,
            "d": self.description,
            "b": self.brand.norm if self.brand else None,
            "bd": self.brand.display if self.brand else None,
            "c": self.category,
            "f": sorted((a, v.norm, v.display) for a, v in self.facts),
            "p": self.properties,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:32]


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def _to_int(v: Any) -> int:
    """Exact for big integers ("9007199254740993"), tolerant of "12.0"; raises ValueError otherwise."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    try:
        return int(str(v).strip())
    except ValueError:
        f = float(v)
        if not f.is_integer():
            raise
        return int(f)


def _to_bool(v: Any) -> bool:
    """``bool("false")`` is True: parse the usual spellings instead, anything else is an error."""
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "1", "yes", "y", "t"):
        return True
    if s in ("false", "0", "no", "n", "f"):
        return False
    raise ValueError(v)


@dataclass
class Mapping:
    """A validated mapping. Build with :meth:`load` (file) or :meth:`from_dict`."""

    name: str
    source: str
    format: str | None
    id_paths: list[FieldPath]
    id_hash: bool
    id_prefix: str
    title: list[FieldPath]
    description: list[FieldPath]
    brand: FieldPath | None
    category_fields: list[FieldPath]
    category_separator: str | None
    attributes: list[AttributeSource]
    properties: dict[str, tuple[FieldPath, type | None]]
    missing: frozenset[str]
    synonyms: Synonyms
    parse_units: bool = True
    strip_html: bool = True
    max_value_length: int = 1000
    max_text_length: int = 100_000
    required: tuple[str, ...] = ()
    csv: dict[str, Any] = field(default_factory=dict)
    file: str = "<dict>"
    _value_cache: dict[tuple[str, str], NormalizedValue | None] = field(default_factory=dict, repr=False, compare=False)

    # -- loading ---------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "Mapping":
        doc = load_yaml(path)
        return cls._from_located(doc)

    @classmethod
    def from_yaml(cls, text: str, file: str = "<string>") -> "Mapping":
        return cls._from_located(parse_yaml(text, file))

    @classmethod
    def from_dict(cls, data: dict[str, Any], file: str = "<dict>") -> "Mapping":
        return cls._from_located(Located(file, data, {}))

    @classmethod
    def _from_located(cls, doc: Located) -> "Mapping":
        d = doc.data
        if not isinstance(d, dict):
            raise doc.error((), "a mapping must be a YAML mapping (key: value)")
        known = {"name", "source", "format", "id", "title", "description", "brand", "category", "attributes",
                 "properties", "missing", "normalize", "required", "csv"}
        for k in d:
            if k not in known:
                raise doc.error((k,), f"unknown key; valid keys: {', '.join(sorted(known))}")

        def path(v: Any, where: tuple) -> FieldPath:
            if not isinstance(v, str) or not v.strip():
                raise doc.error(where, f"expected a field path (string), got {v!r}")
            try:
                return FieldPath(v.strip())
            except ValueError as e:
                raise doc.error(where, str(e)) from None

        def paths(v: Any, where: tuple) -> list[FieldPath]:
            if v is None:
                return []
            if isinstance(v, list):
                return [path(x, where + (i,)) for i, x in enumerate(v)]
            return [path(v, where)]

        def str_set(v: Any, where: tuple) -> frozenset[str]:
            if v is None:
                return frozenset()
            if not isinstance(v, list) or not all(isinstance(x, (str, int, float)) for x in v):
                raise doc.error(where, "expected a list of strings")
            return frozenset(str(x) for x in v)

        name = d.get("name")
        if not isinstance(name, str) or not name.strip():
            raise doc.error(("name",), "required: a short name for this catalog mapping")
        fmt = d.get("format")
        if fmt is not None and fmt not in ("jsonl", "csv"):
            raise doc.error(("format",), f"unknown format {fmt!r}; valid: csv, jsonl")

        idv = d.get("id")
        id_hash, id_prefix = False, ""
        if isinstance(idv, dict):
            if "hash" not in idv:
                raise doc.error(("id",), "expected a field path, or {hash: [fields], prefix: ...}")
            id_paths = paths(idv["hash"], ("id", "hash"))
            if not id_paths:
                raise doc.error(("id", "hash"), "expected at least one field to hash")
            id_hash, id_prefix = True, str(idv.get("prefix", ""))
        elif idv is None:
            raise doc.error(("id",), "required: the field that identifies a product (or {hash: [fields]})")
        else:
            id_paths = [path(idv, ("id",))]

        cat = d.get("category")
        cat_fields: list[FieldPath] = []
        cat_sep = None
        if isinstance(cat, dict):
            if "fields" in cat:
                cat_fields = paths(cat["fields"], ("category", "fields"))
            elif "field" in cat:
                cat_fields = [path(cat["field"], ("category", "field"))]
                cat_sep = cat.get("separator")
                if cat_sep is not None and (not isinstance(cat_sep, str) or not cat_sep):
                    raise doc.error(("category", "separator"), "expected a non-empty string")
            else:
                raise doc.error(("category",), "expected 'fields: [level1, level2, ...]' or 'field: x' with 'separator'")
        elif cat is not None:
            cat_fields = paths(cat, ("category",))

        attrs: list[AttributeSource] = []
        av = d.get("attributes") or []
        if not isinstance(av, list):
            raise doc.error(("attributes",), "expected a list of {field: ...}, {map: ...} or {list: ...}")
        for i, a in enumerate(av):
            w = ("attributes", i)
            if isinstance(a, str):
                a = {"field": a}
            if not isinstance(a, dict):
                raise doc.error(w, "expected {field: ...}, {map: ...} or {list: ...}")
            kinds = [k for k in ("field", "map", "list") if k in a]
            if len(kinds) != 1:
                raise doc.error(w, "give exactly one of 'field', 'map', 'list'")
            kind = kinds[0]
            allowed = {"field": {"field", "name", "split"}, "map": {"map", "include", "exclude", "names", "split"},
                       "list": {"list", "key", "value", "include", "exclude", "names", "split"}}[kind]
            for k in a:
                if k not in allowed:
                    raise doc.error(w + (k,), f"unknown key for a {kind!r} attribute source; valid: {', '.join(sorted(allowed))}")
            if kind == "list" and not (isinstance(a.get("key"), str) and isinstance(a.get("value"), str)):
                raise doc.error(w, "a 'list' source needs 'key' and 'value' (the record keys holding name and value)")
            names = a.get("names") or {}
            if not isinstance(names, dict):
                raise doc.error(w + ("names",), "expected a mapping {source name: attribute name}")
            attr_name = a.get("name", a.get("field") if kind == "field" else None)
            if attr_name is not None:
                attr_name = clean_text(attr_name)
                if not attr_name:
                    raise doc.error(w + ("name",), "expected a non-empty attribute name")
            if "split" in a and (not isinstance(a["split"], str) or not a["split"]):
                raise doc.error(w + ("split",), "expected a non-empty string to split values on")
            attrs.append(AttributeSource(
                kind=kind, path=path(a[kind], w + (kind,)), name=attr_name, key=a.get("key"), value=a.get("value"),
                include=str_set(a["include"], w + ("include",)) if "include" in a else None,
                exclude=str_set(a.get("exclude"), w + ("exclude",)),
                names={str(k): clean_text(v) for k, v in names.items()}, split=a.get("split"),
            ))

        props: dict[str, tuple[FieldPath, type | None]] = {}
        pv = d.get("properties") or []
        items = pv.items() if isinstance(pv, dict) else [(x, x) for x in pv] if isinstance(pv, list) else None
        if items is None:
            raise doc.error(("properties",), "expected a list of fields or {property: field | {field, type}}")
        for pname, spec in items:
            w = ("properties", pname)
            if not isinstance(pname, str) or pname in RESERVED_PROPERTIES:
                raise doc.error(w, f"property name {pname!r} is reserved or invalid; reserved: {', '.join(sorted(RESERVED_PROPERTIES))}")
            typ = None
            if isinstance(spec, dict):
                t = spec.get("type")
                if t is not None and t not in _TYPES:
                    raise doc.error(w + ("type",), f"unknown type {t!r}; valid: {', '.join(_TYPES)}")
                typ = _TYPES.get(t) if t else None
                spec = spec.get("field", pname)
            props[pname] = (path(spec, w), typ)

        norm = d.get("normalize") or {}
        if not isinstance(norm, dict):
            raise doc.error(("normalize",), "expected a mapping")
        for k in norm:
            if k not in {"units", "synonyms", "html", "max_value_length", "max_text_length"}:
                raise doc.error(("normalize", k), "unknown key; valid: html, max_text_length, max_value_length, synonyms, units")
        syn = norm.get("synonyms") or {}
        if not isinstance(syn, dict) or not all(isinstance(v, dict) for v in syn.values()):
            raise doc.error(("normalize", "synonyms"), "expected {attribute or '*': {spelling: canonical}}")

        missing = d.get("missing", ["", "NA", "N/A", "null", "None", "nan"])
        required = d.get("required") or []
        valid_required = {"title", "description", "brand", "category"}
        if not isinstance(required, list):
            raise doc.error(("required",), f"expected a list of: {', '.join(sorted(valid_required))}")
        for i, r in enumerate(required):
            if not isinstance(r, str) or r not in valid_required:
                raise doc.error(("required", i), f"unknown {r!r}; valid: {', '.join(sorted(valid_required))}")
        for k in ("max_value_length", "max_text_length"):
            if k in norm and (not isinstance(norm[k], int) or isinstance(norm[k], bool) or norm[k] < 1):
                raise doc.error(("normalize", k), f"expected a positive whole number, got {norm[k]!r}")
        csv_opts = d.get("csv") or {}
        if not isinstance(csv_opts, dict) or any(k not in {"delimiter", "quotechar", "encoding"} for k in csv_opts):
            raise doc.error(("csv",), "expected {delimiter, quotechar, encoding}")

        return cls(
            name=name.strip(), source=str(d.get("source") or name).strip(), format=fmt,
            id_paths=id_paths, id_hash=id_hash, id_prefix=id_prefix,
            title=paths(d.get("title"), ("title",)), description=paths(d.get("description"), ("description",)),
            brand=path(d["brand"], ("brand",)) if d.get("brand") is not None else None,
            category_fields=cat_fields, category_separator=cat_sep, attributes=attrs, properties=props,
            missing=frozenset(clean_text(m).casefold() for m in str_set(missing, ("missing",))),
            synonyms=Synonyms(syn), parse_units=bool(norm.get("units", True)), strip_html=bool(norm.get("html", True)),
            max_value_length=int(norm.get("max_value_length", 1000)),
            max_text_length=int(norm.get("max_text_length", 100_000)),
            required=tuple(required), csv=dict(csv_opts), file=doc.file,
        )

    # -- applying ------------------------------------------------------------------------
    def _present(self, v: Any) -> bool:
        if v is None or isinstance(v, (dict, list)):
            return False
        return clean_text(v).casefold() not in self.missing

    def _scalars(self, fp: FieldPath, record: Any) -> list[Any]:
        return [v for v in fp.values(record) if self._present(v)]

    def _text(self, paths: list[FieldPath], record: Any, strip_html: bool) -> str | None:
        parts = []
        for fp in paths:
            for v in self._scalars(fp, record):
                s = str(v)
                if strip_html:
                    s = html.unescape(_TAG.sub(" ", s))
                s = clean_text(s, keep_newlines=True)
                if s:
                    parts.append(s)
        if not parts:
            return None
        text = "\n".join(parts)
        return text[: self.max_text_length]

    def _values(self, attribute: str, raw: Any, split: str | None, field_name: str) -> list[NormalizedValue]:
        raws = [raw]
        if split and isinstance(raw, str):
            raws = raw.split(split)
        out = []
        for r in raws:
            key = (attribute, r) if isinstance(r, str) and len(r) <= 256 else None
            if key is not None and key in self._value_cache:
                nv = self._value_cache[key]
            else:
                nv = None
                if self._present(r):
                    nv = normalize_value(r, attribute=attribute, synonyms=self.synonyms,
                                         parse_units=self.parse_units, max_len=self.max_value_length)
                if key is not None:
                    if len(self._value_cache) >= 200_000:  # bounded: catalogs repeat a few thousand values
                        self._value_cache.clear()
                    self._value_cache[key] = nv
            if nv is not None:
                out.append(nv)
        return out

    def apply(self, record: Any) -> MappedProduct:
        """Map one record; raises :class:`RowError` naming the field when the row is unusable."""
        if not isinstance(record, MappingABC):
            raise RowError(None, f"expected an object/row, got {type(record).__name__}")
        # id
        id_parts = []
        for fp in self.id_paths:
            vals = self._scalars(fp, record)
            if not vals:
                raise RowError(fp.spec, "missing id")
            id_parts.append(clean_text(vals[0]))
        if self.id_hash:
            pid = self.id_prefix + hashlib.sha1("\x1f".join(id_parts).encode()).hexdigest()[:16]
        else:
            pid = id_parts[0]
            if isinstance(record.get(self.id_paths[0].spec), float) and float(pid).is_integer():
                pid = str(int(float(pid)))
        if not pid:
            raise RowError(self.id_paths[0].spec, "empty id")
        if len(pid) > 512:
            raise RowError(self.id_paths[0].spec, f"id is {len(pid)} characters long (at most 512)")

        title = self._text(self.title, record, strip_html=False)
        if title is not None:
            title = title.replace("\n", " ")[:2000]
        description = self._text(self.description, record, strip_html=self.strip_html)

        brand = None
        if self.brand is not None:
            vals = self._scalars(self.brand, record)
            if vals:
                brand = normalize_value(vals[0], parse_units=False, max_len=300)

        levels: list[str] = []
        for fp in self.category_fields:
            for v in self._scalars(fp, record):
                parts = str(v).split(self.category_separator) if self.category_separator else [v]
                levels.extend(p for p in (clean_text(x, max_len=300) for x in parts) if p and self._present(p))
                break

        facts: dict[tuple[str, str], NormalizedValue] = {}
        for src in self.attributes:
            if src.kind == "field":
                assert src.name is not None
                for raw in self._scalars(src.path, record):
                    for nv in self._values(src.name, raw, src.split, src.path.spec):
                        facts.setdefault((src.name, nv.norm), nv)
                continue
            containers = src.path.values(record)
            pairs: list[tuple[Any, Any]] = []
            for c in containers:
                if src.kind == "map":
                    if isinstance(c, MappingABC):
                        pairs.extend(c.items())
                    elif c is not None:
                        raise RowError(src.path.spec, f"expected a key/value object, got {type(c).__name__}")
                else:
                    if isinstance(c, MappingABC):
                        pairs.append((c.get(src.key), c.get(src.value)))
            for k, raw in pairs:
                if k is None:
                    continue
                k = str(k)
                if src.include is not None and k not in src.include or k in src.exclude:
                    continue
                attr = clean_text(src.names.get(k, k), max_len=200)
                if not attr:
                    continue
                for r in raw if isinstance(raw, list) else [raw]:
                    for nv in self._values(attr, r, src.split, f"{src.path.spec}.{k}"):
                        facts.setdefault((attr, nv.norm), nv)

        props: dict[str, Any] = {}
        for pname, (fp, typ) in self.properties.items():
            vals = self._scalars(fp, record)
            if not vals:
                continue
            v = vals[0]
            if typ is not None:
                try:
                    v = _to_int(v) if typ is int else _to_bool(v) if typ is bool else typ(v)
                except (TypeError, ValueError, OverflowError):
                    raise RowError(fp.spec, f"{str(v)[:80]!r} is not a valid {typ.__name__}") from None
            if isinstance(v, str):
                v = clean_text(v, max_len=self.max_text_length)
            props[pname] = v

        for r in self.required:
            if {"title": title, "description": description, "brand": brand, "category": levels or None}[r] is None:
                raise RowError(r, f"required {r} is missing")

        return MappedProduct(
            id=pid, title=title, description=description, brand=brand, category=tuple(levels),
            facts=tuple(sorted(((a, v) for (a, _), v in facts.items()), key=lambda x: (x[0], x[1].norm))),
            properties=props,
        )
