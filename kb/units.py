"""Value keys and quantities as the graph stores them, without importing ``ingest``.

A value's ``norm`` is its case-folded, whitespace-collapsed NFKC spelling; a measure's norm is
``"<number> <unit>"`` in one of the canonical units below (ingest rewrites "0.5 kg" to "500 g").
"""

from __future__ import annotations

import math
import re
import unicodedata

UNITS: tuple[str, ...] = ("g", "ml", "cm", "pcs")
UNIT_CODE: dict[str, int] = {u: i for i, u in enumerate(UNITS)}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")
_CANONICAL = re.compile(r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?) (g|ml|cm|pcs)$")
_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?$")


def norm_key(value: object) -> str:
    """The match key of a value: NFKC, control characters dropped, whitespace collapsed, case-folded."""
    s = unicodedata.normalize("NFKC", str(value))
    return _SPACE.sub(" ", _CONTROL.sub("", s)).strip().casefold()


def clean(value: object) -> str:
    """A display spelling: like :func:`norm_key` without case folding."""
    s = unicodedata.normalize("NFKC", str(value))
    return _SPACE.sub(" ", _CONTROL.sub("", s)).strip()


def parse_canonical(norm: str) -> tuple[float, str] | None:
    """``"500 g"`` -> ``(500.0, "g")``; ``None`` for anything that is not number + canonical unit."""
    m = _CANONICAL.match(norm)
    if not m:
        return None
    q = float(m.group(1))
    return (q, m.group(2)) if math.isfinite(q) else None


def parse_number(norm: str) -> float | None:
    """A plain number (``"3"``, ``"2.5"``) without a unit, else ``None``."""
    if not _NUMBER.match(norm):
        return None
    q = float(norm)
    return q if math.isfinite(q) else None


def unit_code(unit: str | None) -> int:
    """Index of a canonical unit in :data:`UNITS`; -1 for none or an unknown unit."""
    if unit is None:
        return -1
    return UNIT_CODE.get(str(unit).strip().lower(), -1)
