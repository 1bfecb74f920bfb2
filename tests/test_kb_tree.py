"""The category tree checked as a tree (networkx), and the plain-data catalog's own checks."""

from __future__ import annotations

import numpy as np
import pytest

import kb
from kb import Catalog, CatalogBuilder, check_category_tree


def test_a_forest_is_a_tree() -> None:
    edges = [("A > B", "A"), ("A > B > C", "A > B"), ("D > E", "D")]
    rep = check_category_tree(edges, ["A", "D", "F"])
    assert rep.ok and rep.roots == ("A", "D", "F") and rep.depth == 3 and rep.nodes == 6


def test_cycles_and_several_parents_are_reported() -> None:
    rep = check_category_tree([("A", "B"), ("B", "C"), ("C", "A"), ("X", "A"), ("X", "B")], check_paths=False)
    assert not rep.ok
    kinds = sorted(p.kind for p in rep.problems)
    assert kinds == ["cycle", "multiple_parents"]
    cycle = next(p for p in rep.problems if p.kind == "cycle")
    assert set(cycle.nodes) == {"A", "B", "C"} and "cycle in the category tree" in cycle.message
    multi = next(p for p in rep.problems if p.kind == "multiple_parents")
    assert multi.nodes == ("X", "A", "B") and "'X' has 2 parents" in multi.message
    assert check_category_tree([("A", "A")]).problems[0].kind == "cycle"  # a self loop


def test_a_parent_that_disagrees_with_the_path() -> None:
    rep = check_category_tree([("A > B", "C")], ["A"])
    assert [p.kind for p in rep.problems] == ["path_mismatch"]
    assert "its path says 'A'" in rep.problems[0].message
    assert check_category_tree([("A > B", "C")], check_paths=False).ok


def test_builder_refuses_a_graph_that_is_not_a_tree() -> None:
    b = CatalogBuilder()
    b.add_category("A > B", "A")
    b.add_category("A > B", "Z")
    b.add_product("1", "A > B")
    with pytest.raises(kb.CategoryTreeError, match="not a tree: category 'A > B' has 2 parents") as ei:
        b.build()
    assert not ei.value.report.ok


def test_catalog_from_paths_builds_the_tree() -> None:
    cat = Catalog.from_dicts([{"id": "1", "category": ["A", "B", "C"], "brand": "Acme", "facts": {"x": ["1", "2"]}},
                              {"id": "2", "category": "A > D", "brand": "ACME ", "facts": {"x": "1"}}])
    assert cat.categories == ("A", "A > B", "A > B > C", "A > D")
    assert cat.categories[cat.category_parent[cat.category_index["A > B > C"]]] == "A > B"
    assert list(cat.category_depth) == [0, 1, 2, 1]
    assert cat.brands == ("acme",) and list(cat.product_brand) == [0, 0]
    assert cat.summary() == kb.CatalogSummary(2, 3, 1, 2, 4, 1, 3)
    assert list(cat.subtree(cat.category_index["A > B"])) == [False, True, True, False]
    assert list(cat.value_count) == [2, 1]


def test_catalog_errors() -> None:
    b = CatalogBuilder()
    b.add_product("1")
    with pytest.raises(kb.CatalogError, match="added twice"):
        b.add_product("1")
    b.add_fact("2", "x", "y")
    with pytest.raises(kb.CatalogError, match="never added, e.g. '2'"):
        b.build()
    with pytest.raises(kb.CatalogError, match="no value"):
        CatalogBuilder().add_fact("1", "x")
    with pytest.raises(kb.CatalogError, match="index out of range"):
        Catalog(product_ids=["1"], product_category=np.array([5]), product_brand=np.array([-1]), categories=[],
                category_parent=np.array([], np.int32), brands=[], brand_names=None, attributes=[],
                value_attribute=np.array([], np.int32), value_norm=[], value_display=None, value_quantity=None,
                value_unit=None, fact_product=np.array([], np.int32), fact_value=np.array([], np.int32))
    with pytest.raises(kb.CategoryTreeError, match="cycle"):
        Catalog(product_ids=[], product_category=np.array([], np.int32), product_brand=np.array([], np.int32),
                categories=["A", "B"], category_parent=np.array([1, 0]), brands=[], brand_names=None,
                attributes=[], value_attribute=np.array([], np.int32), value_norm=[], value_display=None,
                value_quantity=None, value_unit=None, fact_product=np.array([], np.int32),
                fact_value=np.array([], np.int32))


def test_measures_are_parsed_from_canonical_norms() -> None:
    b = CatalogBuilder()
    b.add_product("1")
    b.add_fact("1", "Heel Height", "3.5 inches", norm="8.89 cm")
    b.add_fact("1", "weight", "500 g")
    b.add_fact("1", "colour", "Red")
    cat = b.build()
    q = dict(zip(cat.value_norm.tolist(), zip(cat.value_quantity.tolist(), cat.value_unit.tolist())))
    assert q["8.89 cm"] == (8.89, kb.catalog.UNITS.index("cm"))
    assert q["500 g"] == (500.0, 0)
    assert np.isnan(q["red"][0]) and q["red"][1] == -1
    assert list(cat.value_display) == ["3.5 inches", "500 g", "Red"]
