"""Typed access to one rule's YAML (or Python) parameters, with errors naming file, line and key.

Every getter marks its key as used; :meth:`Spec.done` rejects the keys nobody asked for, listing
the valid ones — so a typo (``vaules:``) is an error, never a silently ignored line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .errors import RuleConfigError
from .yamlconf import Located

_MISSING = object()


class Spec:
    def __init__(self, doc: Located, path: tuple, data: Any, what: str = "rule"):
        if not isinstance(data, dict):
            raise doc.error(path, f"expected a mapping of keys for the {what}, got {type(data).__name__}")
        self.doc, self.path, self.data, self.what = doc, path, data, what
        self.used: set[str] = set()

    # -- plumbing -----------------------------------------------------------------------
    def error(self, key: str | None, message: str) -> RuleConfigError:
        return self.doc.error(self.path + ((key,) if key is not None else ()), message)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise self.error(None, f"missing required key {key!r}{self._found()}")
            return default
        return self.data[key]

    def _found(self) -> str:
        """A hint for a missing key: the keys given that nothing has asked for yet (typos?)."""
        rest = [repr(k) for k in self.data if k not in self.used]
        return f" (found {', '.join(rest)})" if rest else ""

    def done(self, extra_valid: Iterable[str] = ()) -> None:
        unknown = [k for k in self.data if k not in self.used and k not in set(extra_valid)]
        if unknown:
            valid = sorted(self.used | set(extra_valid))
            raise self.error(str(unknown[0]), f"unknown key {unknown[0]!r} for this {self.what}; valid keys: "
                             + ", ".join(valid))

    def sub(self, key: str, what: str | None = None, default: Any = _MISSING) -> "Spec | None":
        v = self.raw(key, default)
        if v is None and default is None:
            return None
        return Spec(self.doc, self.path + (key,), v, what or key)

    # -- typed getters ----------------------------------------------------------------------
    def str(self, key: str, default: Any = _MISSING, *, pattern: str | None = None) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool):
            raise self.error(key, f"expected a string, got {v} (YAML reads an unquoted yes/no/on/off/true/false "
                             "as a boolean: quote it)")
        if not isinstance(v, (str, int, float)):
            raise self.error(key, f"expected a string, got {_show(v)}")
        s = str(v).strip()
        if not s:
            raise self.error(key, "expected a non-empty string")
        if pattern and not re.fullmatch(pattern, s):
            raise self.error(key, f"{s!r} does not match {pattern}")
        return s

    def str_list(self, key: str, default: Any = _MISSING, *, allow_star: bool = False) -> Any:
        """A string or a list of strings (``"*"`` for all, when allowed)."""
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if allow_star and v == "*":
            return "*"
        items = [v] if isinstance(v, (str, int, float)) and not isinstance(v, bool) else v
        if not isinstance(items, list) or not items:
            raise self.error(key, f"expected a string or a non-empty list of strings, got {_show(v)}")
        out = []
        for i, x in enumerate(items):
            if isinstance(x, bool) or not isinstance(x, (str, int, float)) or not str(x).strip():
                raise self.doc.error(self.path + (key, i), f"expected a non-empty string, got {_show(x)}")
            out.append(str(x).strip())
        return out

    def number(self, key: str, default: Any = _MISSING, *, minimum: float | None = None,
               maximum: float | None = None, integer: bool = False) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            raise self.error(key, f"expected {'an integer' if integer else 'a number'}, got {_show(v)}")
        if v != v:  # NaN
            raise self.error(key, "expected a number, got NaN")
        if minimum is not None and v < minimum:
            raise self.error(key, f"must be at least {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise self.error(key, f"must be at most {maximum}, got {v}")
        return int(v) if integer else float(v)

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, bool):
            raise self.error(key, f"expected true or false, got {_show(v)}")
        return v

    def choice(self, key: str, choices: Iterable[str], default: Any = _MISSING) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        choices = list(choices)
        if v not in choices:
            raise self.error(key, f"{_show(v)} is not one of: {', '.join(choices)}")
        return v

    def regex(self, key: str, default: Any = _MISSING) -> Any:
        s = self.str(key, default)
        if s is default and default is not _MISSING:
            return s
        try:
            re.compile(s)
        except re.error as e:
            raise self.error(key, f"not a valid regular expression: {e}") from None
        return s


def _show(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return f"a {'mapping' if isinstance(v, dict) else 'list'}"
    return repr(v)
