"""The contract between the extractor and its users (completion, proposals, review, rules).

An extractor reads product texts and returns `Span`s: one proposed value for one
(product, attribute) slot, with where it was read and how sure the extractor is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Span:
    product_id: str
    attribute: str  # the attribute's name as in the graph; the brand slot is "brand"
    text: str  # the surface string exactly as it stands in the field
    field: str  # the text field it was read from: "title" or "description"
    start: int  # character offsets in that field: field_text[start:end] == text
    end: int
    confidence: float  # calibrated probability that this span is the slot's value
    norm: str  # normalised key (kb.units.norm_key; measures as "<quantity> <unit>")
    value: str | None = None  # the known graph value it resolves to (exact or alias), None when new
    alias: bool = False  # True when it resolved to `value` only by a near match (case, spacing, an edit or two)
    quantity: float | None = None  # for measures: the number and its normalised unit
    unit: str | None = None
    model: str = ""  # the extractor's model id (written as provenance)
    support: int = 1  # how many products the same (attribute, norm) was extracted from in this batch
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def new(self) -> bool:
        """A value the graph does not hold yet for this attribute (a proposal)."""
        return self.value is None


class ProductText(Protocol):
    id: str
    title: str
    description: str


class Extractor(Protocol):
    attributes: list[str]  # the attributes it can extract (incl. "brand")

    def predict(self, products: list[ProductText], attributes: list[str] | None = None,
                top_k: int = 1) -> list[Span]:
        """Up to top_k spans per (product, attribute), best first."""
        ...
