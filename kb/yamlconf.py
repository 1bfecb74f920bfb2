"""YAML loading that remembers where each key was written, for errors naming file, line and key.

The same small idea as ``ingest/yamlconf.py``, kept here because ``kb`` imports plain data only.
Duplicate keys in a mapping are an error here (PyYAML would silently keep the last one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import RuleConfigError


class Located:
    """A YAML document as plain data plus a (key path -> line) table."""

    def __init__(self, file: str, data: Any, lines: dict[tuple, int] | None = None):
        self.file = file
        self.data = data
        self._lines = lines or {}

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return self._lines.get((), None)

    def error(self, path: tuple, message: str, cls: type[RuleConfigError] = RuleConfigError) -> RuleConfigError:
        key = ".".join(str(p) for p in path) or "(top level)"
        return cls(self.file, self.line(path), key, message)


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], file: str, seen: set[int]) -> None:
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        keys: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value
            line = k.start_mark.line + 1
            if key in keys and key != "<<":
                raise RuleConfigError(file, line, ".".join(str(p) for p in path + (key,)),
                                      f"duplicate key (first written on line {keys[key]})")
            keys[key] = line
            lines[path + (key,)] = line
            _walk(v, path + (key,), lines, file, seen)
            lines[path + (key,)] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, path + (i,), lines, file, seen)


def load_yaml(path: str | Path) -> Located:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RuleConfigError(str(p), None, "(file)", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise RuleConfigError(str(p), None, "(file)", f"not UTF-8 (byte {e.start})") from None
    return parse_yaml(text, str(p))


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: mined files are long


def parse_yaml(text: str, file: str = "<string>") -> Located:
    try:
        node = yaml.compose(text, Loader=_Loader)  # parsed once: lines from the nodes, data built from them
        data = yaml.constructor.SafeConstructor().construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RuleConfigError(file, line, "(syntax)", str(getattr(e, "problem", e))) from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _walk(node, (), lines, file, set())
    return Located(file, data, lines)
