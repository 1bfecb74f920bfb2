"""Open-world value extraction: spans of titles and descriptions that name an attribute's value.

The stage learns from the graph's own asserted facts (distant supervision) and never talks to
Neo4j. `extract.api` holds the contract between the extractor and the rest of attrgraph
(completion, proposals, review).
"""
