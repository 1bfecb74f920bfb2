"""The library of named, parameterised Cypher queries (``queries/*.cypher``).

Each file starts with comment lines: first what the query answers, then one line per
parameter::

    // Products in a category that have no value for an attribute.
    // param: attribute: str                 the attribute name
    // param: limit: int = 100               at most this many rows

Types are ``str``, ``int``, ``float`` and ``bool``; ``= null`` makes a parameter optional.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

QUERY_DIR = Path(__file__).resolve().parent
_PARAM = re.compile(r"^//\s*param:\s*(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<type>str|int|float|bool)\b"
                    r"(?:\s*=\s*(?P<default>\"[^\"]*\"|'[^']*'|\S+))?\s*(?P<help>.*)$")
_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_MISSING = object()


class QueryError(Exception):
    """A named query is unknown, badly declared, or given wrong parameters."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any = _MISSING
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def coerce(self, value: Any, query: str) -> Any:
        if value is None:
            return None
        t = _TYPES[self.type]
        if isinstance(value, str) and t is not str:
            v = value.strip()
            try:
                if t is bool:
                    if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(v)
                    return v.lower() in ("true", "1", "yes")
                return t(v)
            except ValueError:
                raise QueryError(f"query {query!r}: parameter {self.name!r} must be {self.type}, got {value!r}") from None
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise QueryError(f"query {query!r}: parameter {self.name!r} must be {self.type}, got {type(value).__name__}")
        return value


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[Param, ...]
    text: str
    file: Path

    def bind(self, values: dict[str, Any]) -> dict[str, Any]:
        """Check and convert parameters (strings from the CLI are parsed to the declared type)."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise QueryError(f"query {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                             f"its parameters: {', '.join(known) or '(none)'}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in values and not (values[p.name] is None and p.required):
                out[p.name] = p.coerce(values[p.name], self.name)
            elif p.required:
                raise QueryError(f"query {self.name!r} needs parameter {p.name!r} ({p.type}): {p.help}")
            else:
                out[p.name] = p.default
        return out


def _parse_default(raw: str, typ: str, file: Path, lineno: int) -> Any:
    if raw == "null":
        return None
    try:
        return Param("default", typ).coerce(raw.strip("\"'"), file.stem)
    except QueryError:
        raise QueryError(f"{file}:{lineno}: default {raw!r} is not a {typ}") from None


def parse(file: Path) -> NamedQuery:
    text = file.read_text(encoding="utf-8")
    desc: list[str] = []
    params: list[Param] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("//"):
            break
        if re.match(r"^//\s*param:", line):
            m = _PARAM.match(line)
            if not m:
                raise QueryError(f"{file}:{lineno}: bad parameter line; expected '// param: name: type [= default] help'")
            default = _MISSING if m["default"] is None else _parse_default(m["default"], m["type"], file, lineno)
            params.append(Param(m["name"], m["type"], default, m["help"].strip()))
        else:
            desc.append(line[2:].strip())
    if not desc:
        raise QueryError(f"{file}: the first line must be a comment saying what the query answers")
    return NamedQuery(file.stem, " ".join(desc), tuple(params), text, file)


@lru_cache(maxsize=1)
def load_all() -> dict[str, NamedQuery]:
    return {f.stem: parse(f) for f in sorted(QUERY_DIR.glob("*.cypher"))}


def get(name: str) -> NamedQuery:
    qs = load_all()
    if name not in qs:
        raise QueryError(f"no named query {name!r}; available: {', '.join(qs)}")
    return qs[name]


__all__ = ["NamedQuery", "Param", "QueryError", "get", "load_all", "parse"]
