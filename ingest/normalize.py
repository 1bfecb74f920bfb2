"""Value normalisation: one match key per value, the original kept for display.

``clean_text`` makes any string safe to store and show: Unicode NFKC, control
characters (NUL included) dropped, whitespace collapsed. ``normalize_value`` adds
the match key: case-folded, with synonyms applied and quantities with common units
rewritten into a canonical unit ("0.5 kg", "500g" and "500 gm" all become "500 g").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

# C0/C1 controls, plus the Unicode line/paragraph separators; tab/newline become spaces.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")


def clean_text(value: object, *, max_len: int | None = None, keep_newlines: bool = False) -> str:
    """NFKC, drop control characters, collapse whitespace (keeping line breaks if asked)."""
    s = str(value)
    # Fast path (most catalog strings): printable ASCII is NFKC-stable and has no controls.
    if s.isascii() and s.isprintable() and "  " not in s and s[:1] != " " and s[-1:] != " ":
        return s if max_len is None or len(s) <= max_len else s[:max_len]
    s = unicodedata.normalize("NFKC", s)
    s = _CONTROL.sub("", s)
    if keep_newlines:
        s = "\n".join(_SPACE.sub(" ", line).strip() for line in s.splitlines())
        s = re.sub(r"\n{3,}", "\n\n", s).strip()
    else:
        s = _SPACE.sub(" ", s).strip()
    if max_len is not None and len(s) > max_len:
        s = s[:max_len]
    return s


def match_key(value: str) -> str:
    """Case-folded key used to decide that two spellings are the same value."""
    return clean_text(value).casefold()


# unit spelling -> (canonical unit, factor to canonical)
_UNITS: dict[str, tuple[str, float]] = {}


def _units(canonical: str, factor: float, *names: str) -> None:
    for n in names:
        _UNITS[n] = (canonical, factor)


_units("g", 1.0, "g", "gm", "gms", "gr", "gram", "grams", "gramme", "grammes")
_units("g", 1e-3, "mg", "milligram", "milligrams")
_units("g", 1e3, "kg", "kgs", "kilo", "kilos", "kilogram", "kilograms")
_units("g", 453.59237, "lb", "lbs", "pound", "pounds")
_units("g", 28.349523125, "oz", "ounce", "ounces")
_units("ml", 1.0, "ml", "mls", "millilitre", "millilitres", "milliliter", "milliliters")
_units("ml", 10.0, "cl", "centilitre", "centiliter")
_units("ml", 1e3, "l", "lt", "ltr", "ltrs", "litre", "litres", "liter", "liters")
_units("ml", 29.5735295625, "fl oz", "floz", "fl. oz", "fl.oz")
_units("cm", 1.0, "cm", "cms", "centimetre", "centimetres", "centimeter", "centimeters")
_units("cm", 0.1, "mm", "millimetre", "millimetres", "millimeter", "millimeters")
_units("cm", 100.0, "m", "metre", "metres", "meter", "meters", "mtr", "mtrs")
_units("cm", 2.54, "in", "inch", "inches", '"')
_units("pcs", 1.0, "pc", "pcs", "piece", "pieces", "nos", "no", "units", "unit", "pack of")

_UNIT_ALT = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
_QUANTITY = re.compile(rf"^(?P<num>\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>{_UNIT_ALT})\.?$", re.IGNORECASE)


def parse_quantity(text: str) -> tuple[float, str] | None:
    """``"0.5 kg"`` -> ``(500.0, "g")``; ``None`` unless the whole text is number + known unit."""
    m = _QUANTITY.match(text.strip())
    if not m:
        return None
    hit = _UNITS.get(m["unit"].lower())  # None for case-insensitive matches such as "İ" that lower() spells differently
    if hit is None:
        return None
    unit, factor = hit
    return float(m["num"].replace(",", "")) * factor, unit


def format_quantity(qty: float, unit: str) -> str:
    if abs(qty - round(qty)) < 1e-9:
        num = str(int(round(qty)))
    else:
        num = f"{qty:.6g}"
    return f"{num} {unit}"


@dataclass(frozen=True)
class NormalizedValue:
    display: str  # cleaned original, for people
    norm: str  # match key: unique per attribute
    quantity: float | None = None  # magnitude in ``unit`` when the value is a quantity
    unit: str | None = None  # canonical unit ("g", "ml", "cm", "pcs")


class Synonyms:
    """Configurable synonyms: ``{"*": {"grey": "Gray"}, "baseColour": {"navy": "Navy Blue"}}``.

    Keys are spellings (matched case-insensitively), values the canonical spelling;
    ``"*"`` applies to every attribute, an attribute's own table wins over it.
    """

    def __init__(self, table: Mapping[str, Mapping[str, str]] | None = None):
        self._table: dict[str, dict[str, str]] = {}
        for attr, pairs in (table or {}).items():
            self._table[attr] = {match_key(k): clean_text(v) for k, v in pairs.items()}

    def canonical(self, attribute: str | None, display: str) -> str:
        key = match_key(display)
        for scope in (attribute, "*"):
            if scope is not None and key in self._table.get(scope, {}):
                return self._table[scope][key]
        return display

    def __bool__(self) -> bool:
        return bool(self._table)


def normalize_value(
    raw: object,
    *,
    attribute: str | None = None,
    synonyms: Synonyms | None = None,
    parse_units: bool = True,
    max_len: int = 1000,
) -> NormalizedValue | None:
    """Normalise one attribute value; ``None`` when nothing is left after cleaning."""
    display = clean_text(raw, max_len=max_len)
    if not display:
        return None
    if synonyms:
        display = synonyms.canonical(attribute, display)
        if not display:  # a synonym to "" drops the value
            return None
    if parse_units:
        q = parse_quantity(display)
        if q is not None:
            return NormalizedValue(display, format_quantity(*q), q[0], q[1])
    return NormalizedValue(display, display.casefold())
