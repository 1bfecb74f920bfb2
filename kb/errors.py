"""Exceptions of the kb package (one root: :class:`KBError`)."""

from __future__ import annotations


class KBError(Exception):
    """Root of every error raised by :mod:`kb`."""


class RuleConfigError(KBError):
    """A rule (from a YAML file or from Python) is invalid. Names the file, the line and the key."""

    def __init__(self, file: str, line: int | None, key: str, message: str):
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}")


class UnknownRuleType(RuleConfigError):
    """A rule names a type that is not registered."""


class CatalogError(KBError):
    """The plain-data catalog given to kb is inconsistent (a fact of an unknown product, ...)."""


class CategoryTreeError(CatalogError):
    """The category graph is not a tree (a cycle, or a node with several parents)."""

    def __init__(self, report: object):
        self.report = report
        problems = getattr(report, "problems", ())
        lines = "; ".join(p.message for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"the category graph is not a tree: {lines}{more}")


class PredictionError(KBError):
    """Predictions given to :func:`kb.validate` are malformed."""
