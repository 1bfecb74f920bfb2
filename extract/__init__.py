"""Open-world value extraction: spans of titles and descriptions that name an attribute's value.

The stage learns from the graph's own asserted facts (distant supervision) and never talks to
Neo4j. `extract.api` holds the contract between the extractor and the rest of attrgraph
(completion, proposals, review): ``extract.load(path).predict(products, attributes, top_k)`` returns
``Span``s; :func:`extract.combine.combine` merges them with a completion model's ranked known values.
"""

from .api import Extractor, ProductText, Span
from .combine import Choice, Stacker, combine
from .model import CrfExtractor, ExtractConfig, ExtractError, load, train
from .supervision import BRAND, Example

__all__ = ["BRAND", "Choice", "CrfExtractor", "Example", "ExtractConfig", "ExtractError", "Extractor", "ProductText",
           "Span", "Stacker", "combine", "load", "train"]
