"""YAML loading that remembers where each key was written, for errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


class Located:
    """A YAML document as plain data plus a (key path -> line) table."""

    def __init__(self, file: str, data: Any, lines: dict[tuple, int]):
        self.file = file
        self.data = data
        self._lines = lines

    def line(self, path: tuple) -> int | None:
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return self._lines.get((), None)

    def error(self, path: tuple, message: str) -> ConfigError:
        key = ".".join(str(p) for p in path) or "(top level)"
        return ConfigError(self.file, self.line(path), key, message)


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias (*x) of a node already walked: recursive or repeated anchors
        return
    seen.add(id(node))
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            lines[path + (key,)] = k.start_mark.line + 1
            _walk(v, path + (key,), lines, seen)
            lines[path + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, path + (i,), lines, seen)


def load_yaml(path: str | Path) -> Located:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), None, "(file)", f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(str(p), None, "(file)", f"not UTF-8 (byte {e.start})") from None
    return parse_yaml(text, str(p))


def parse_yaml(text: str, file: str = "<string>") -> Located:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(file, line, "(syntax)", str(getattr(e, "problem", e))) from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return Located(file, data, lines)
