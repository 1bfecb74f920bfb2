"""The rule layer on the live graph: read the catalog out of Neo4j into ``kb``, audit it, mine rules.

``kb`` never talks to Neo4j; this module is the glue (``graph.facts`` reads, ``kb`` judges).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kb
from graph import ProductGraph
from graph.facts import category_rows, count_products, iter_product_pages


@dataclass
class LoadedCatalog:
    catalog: kb.Catalog
    tree: kb.TreeReport
    notes: list[str] = field(default_factory=list)  # oddities met while reading (several categories, ...)


def check_tree(graph: ProductGraph) -> kb.TreeReport:
    """The category graph in Neo4j checked as a tree (networkx): no cycles, one parent per category,
    parents that agree with the paths."""
    cats = category_rows(graph.client)
    edges = [(c.path, p) for c in cats for p in c.parents]
    return kb.check_category_tree(edges, [c.path for c in cats])


def load_catalog(graph: ProductGraph, *, page_size: int = 5000,
                 progress: Callable[[int, int], None] | None = None) -> LoadedCatalog:
    """Every product, its leaf category, brand and asserted facts, as a :class:`kb.Catalog`.

    Raises :class:`kb.CategoryTreeError` (with the report) when the category graph is not a tree.
    ``progress(done, total)`` is called after each page.
    """
    client = graph.client
    cats = category_rows(client)
    edges = [(c.path, p) for c in cats for p in c.parents]
    tree = kb.check_category_tree(edges, [c.path for c in cats])
    if not tree.ok:
        raise kb.CategoryTreeError(tree)
    b = kb.CatalogBuilder()
    for c in cats:
        b.add_category(c.path, c.parents[0] if c.parents else None)
    notes: list[str] = []
    multi_cat = multi_brand = 0
    total = count_products(client)
    done = 0
    for page in iter_product_pages(client, page_size=page_size):
        for p in page:
            if len(p.categories) > 1:
                multi_cat += 1
            if len(p.brands) > 1:
                multi_brand += 1
            category = sorted(p.categories, key=lambda c: (-c.count(" > "), c))[0] if p.categories else None
            brand = sorted(p.brands)[0] if p.brands else (None, None)
            b.add_product(p.id, category, brand[0], brand[1])
            for f in p.facts:
                b.add_fact(p.id, f.attribute, f.value if f.value is not None else f.norm, norm=f.norm,
                           quantity=f.quantity, unit=f.unit)
        done += len(page)
        if progress:
            progress(done, total)
    if done != total:  # the pages walk string ids; anything else would be missed silently
        notes.append(f"{total - done} of {total} products were not read (their ids are not strings)")
    if multi_cat:
        notes.append(f"{multi_cat} products are in several categories; the deepest one was used")
    if multi_brand:
        notes.append(f"{multi_brand} products have several brands; the first by key was used")
    return LoadedCatalog(b.build(), tree, notes)


@dataclass
class CheckResult:
    loaded: LoadedCatalog
    context: kb.Context
    report: kb.AuditReport

    @property
    def warnings(self) -> list[str]:
        return self.loaded.notes + self.context.warnings


def rule_sources(rules: Sequence[str] = (), *, defaults: bool = True) -> list[str]:
    """The shipped general rules (unless ``defaults`` is false), then the given files or shipped names."""
    return (["default"] if defaults else []) + list(rules)


def rules_context(graph: ProductGraph, rules: Sequence[str] = (), *, defaults: bool = True,
                  page_size: int = 5000) -> kb.Context:
    """The graph's catalog with rules compiled: build it once, then ``kb.validate(predictions, ctx)``
    for every batch of predictions (the catalog is a snapshot: rebuild it after writes)."""
    ruleset = kb.load_rules(*rule_sources(rules, defaults=defaults))
    return kb.Context(load_catalog(graph, page_size=page_size).catalog, ruleset)


def check_rules(graph: ProductGraph, rules: Sequence[str] = (), *, defaults: bool = True,
                page_size: int = 5000, progress: Callable[[int, int], None] | None = None) -> CheckResult:
    """Audit the asserted facts (and brands) of the graph against rules from YAML files or shipped names."""
    sources = rule_sources(rules, defaults=defaults)
    if not sources:
        raise kb.KBError("no rules to check: give --rules FILE or keep the default rules")
    ruleset = kb.load_rules(*sources)
    loaded = load_catalog(graph, page_size=page_size, progress=progress)
    ctx = kb.Context(loaded.catalog, ruleset)
    return CheckResult(loaded, ctx, kb.audit(ctx))


def mine_rules(graph: ProductGraph, out: str | Path, config: kb.MiningConfig = kb.MiningConfig(), *,
               page_size: int = 5000, progress: Callable[[int, int], None] | None = None) -> tuple[kb.RuleSet, Path]:
    """Mine applicability and implication rules from the graph and write them as YAML to ``out``."""
    loaded = load_catalog(graph, page_size=page_size, progress=progress)
    rules = kb.mine_rules(loaded.catalog, config)
    path = rules.dump(out, header=kb.mining_header(loaded.catalog, config))
    kb.RuleSet.load(path)  # what we wrote must load back
    return rules, path
