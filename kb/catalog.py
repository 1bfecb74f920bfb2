"""The plain-data context of the rules: products, their leaf categories, brands and asserted facts.

Nothing here knows about Neo4j: ``attrgraph.rules`` reads the graph (``graph/facts.py``) and feeds
a :class:`CatalogBuilder`; tests and benchmarks build catalogs from dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .arrays import unique
from .errors import CatalogError, CategoryTreeError
from .tree import PATH_SEP, TreeReport, check_category_tree
from .units import UNITS, clean, norm_key, parse_canonical, unit_code


@dataclass(frozen=True)
class CatalogSummary:
    products: int
    facts: int
    attributes: int
    values: int
    categories: int
    brands: int
    tree_depth: int


class Catalog:
    """Asserted facts as parallel numpy arrays (P products, F facts, V values, C categories, B brands).

    ==========================  ==============  ===================================================
    array                       shape, dtype    meaning
    ==========================  ==============  ===================================================
    ``product_ids``             (P,) object     product id strings
    ``product_category``        (P,) int32      leaf category index, -1 = none
    ``product_brand``           (P,) int32      brand index, -1 = none
    ``category_parent``         (C,) int32      parent category index, -1 = root
    ``value_attribute``         (V,) int32      attribute index of each distinct value
    ``value_norm``              (V,) object     the value's match key (unique per attribute)
    ``value_display``           (V,) object     the value as people write it
    ``value_quantity``          (V,) float64    magnitude in ``value_unit``, NaN when not a measure
    ``value_unit``              (V,) int8       index into :data:`kb.units.UNITS`, -1 = none
    ``fact_product``            (F,) int32      product of each asserted fact
    ``fact_value``              (F,) int32      value of each asserted fact (sorted by product)
    ==========================  ==============  ===================================================

    plus the vocabularies ``categories`` (paths), ``attributes`` (names), ``brands`` (case-folded
    keys) and ``brand_names``.
    """

    def __init__(
        self,
        *,
        product_ids: Iterable[str],
        product_category: np.ndarray,
        product_brand: np.ndarray,
        categories: Iterable[str],
        category_parent: np.ndarray,
        brands: Iterable[str],
        brand_names: Iterable[str] | None,
        attributes: Iterable[str],
        value_attribute: np.ndarray,
        value_norm: Iterable[str],
        value_display: Iterable[str] | None,
        value_quantity: np.ndarray | None,
        value_unit: np.ndarray | None,
        fact_product: np.ndarray,
        fact_value: np.ndarray,
        product_titles: Iterable[str | None] | None = None,
    ):
        self.product_ids = np.asarray(list(product_ids), dtype=object)
        self.product_category = np.asarray(product_category, dtype=np.int32)
        self.product_brand = np.asarray(product_brand, dtype=np.int32)
        self.categories: tuple[str, ...] = tuple(categories)
        self.category_parent = np.asarray(category_parent, dtype=np.int32)
        self.brands: tuple[str, ...] = tuple(brands)
        self.brand_names: tuple[str, ...] = tuple(brand_names) if brand_names is not None else self.brands
        self.attributes: tuple[str, ...] = tuple(attributes)
        self.value_attribute = np.asarray(value_attribute, dtype=np.int32)
        self.value_norm = np.asarray(list(value_norm), dtype=object)
        V = len(self.value_norm)
        self.value_display = (np.asarray(list(value_display), dtype=object) if value_display is not None
                              else self.value_norm.copy())
        self.value_quantity = (np.asarray(value_quantity, dtype=np.float64) if value_quantity is not None
                               else np.full(V, np.nan))
        self.value_unit = np.asarray(value_unit, dtype=np.int8) if value_unit is not None else np.full(V, -1, np.int8)
        fp = np.asarray(fact_product, dtype=np.int32)
        fv = np.asarray(fact_value, dtype=np.int32)
        order = np.lexsort((fv, fp))
        self.fact_product, self.fact_value = fp[order], fv[order]
        # optional (P,) object: product titles, for rules that learn from the catalog's own wording
        # (the marketing words of ``new_value`` rules); None when the catalog was built without them
        self.product_titles = (np.asarray(["" if t is None else str(t) for t in product_titles], dtype=object)
                               if product_titles is not None else None)
        self._check()

    def _check(self) -> None:
        P, C, B, A, V = (len(self.product_ids), len(self.categories), len(self.brands), len(self.attributes),
                         len(self.value_norm))
        for name, arr, n in (("product_category", self.product_category, P), ("product_brand", self.product_brand, P),
                             ("category_parent", self.category_parent, C), ("value_attribute", self.value_attribute, V),
                             ("value_display", self.value_display, V), ("value_quantity", self.value_quantity, V),
                             ("value_unit", self.value_unit, V), ("fact_value", self.fact_value, len(self.fact_product))):
            if len(arr) != n:
                raise CatalogError(f"{name} has {len(arr)} entries, expected {n}")
        if self.product_titles is not None and len(self.product_titles) != P:
            raise CatalogError(f"product_titles has {len(self.product_titles)} entries, expected {P}")
        for name, arr, n in (("product_category", self.product_category, C), ("product_brand", self.product_brand, B),
                             ("category_parent", self.category_parent, C), ("value_attribute", self.value_attribute, A),
                             ("fact_product", self.fact_product, P), ("fact_value", self.fact_value, V)):
            if len(arr) and (arr.min() < (0 if name.startswith(("fact", "value")) else -1) or arr.max() >= n):
                raise CatalogError(f"{name} has an index out of range (0..{n - 1})")
        if len(set(self.product_ids.tolist())) != P:
            raise CatalogError("product ids are not unique")
        if len(set(self.categories)) != C:
            raise CatalogError("category paths are not unique")
        if len(set(self.attributes)) != A:
            raise CatalogError("attribute names are not unique")
        keys = set(zip(self.value_attribute.tolist(), self.value_norm.tolist()))
        if len(keys) != V:
            raise CatalogError("values are not unique per (attribute, norm)")
        if len(self.fact_product) > 1:
            dup = (np.diff(self.fact_product) == 0) & (np.diff(self.fact_value) == 0)
            if dup.any():
                i = int(np.flatnonzero(dup)[0])
                raise CatalogError(f"fact asserted twice: product {self.product_ids[self.fact_product[i]]!r}, "
                                   f"value {self.value_norm[self.fact_value[i]]!r}")
        self.tree_report = check_category_tree(
            [(self.categories[c], self.categories[p]) for c, p in enumerate(self.category_parent.tolist()) if p >= 0],
            self.categories, check_paths=False)
        if not self.tree_report.ok:  # only a cycle can remain: a parent array has one parent per node
            raise CategoryTreeError(self.tree_report)

    # -- sizes and vocabularies -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self.product_ids)

    @property
    def n_facts(self) -> int:
        return len(self.fact_product)

    def summary(self) -> CatalogSummary:
        return CatalogSummary(len(self), self.n_facts, len(self.attributes), len(self.value_norm),
                              len(self.categories), len(self.brands), int(self.category_depth.max(initial=-1)) + 1)

    @cached_property
    def fact_attribute(self) -> np.ndarray:
        """(F,) int32: attribute of each fact."""
        return self.value_attribute[self.fact_value]

    @cached_property
    def product_index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.product_ids.tolist())}

    @cached_property
    def attribute_index(self) -> dict[str, int]:
        return {a: i for i, a in enumerate(self.attributes)}

    @cached_property
    def category_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.categories)}

    @cached_property
    def brand_index(self) -> dict[str, int]:
        return {b: i for i, b in enumerate(self.brands)}

    @cached_property
    def value_count(self) -> np.ndarray:
        """(V,) int64: how many products assert each value."""
        return np.bincount(self.fact_value, minlength=len(self.value_norm))

    @cached_property
    def category_depth(self) -> np.ndarray:
        """(C,) int16: 0 for a root, 1 for its children, ..."""
        C = len(self.categories)
        depth = np.full(C, -1, np.int16)
        parent = self.category_parent
        for c in range(C):
            chain = []
            n = c
            while n >= 0 and depth[n] < 0:
                chain.append(n)
                n = parent[n]
            d = depth[n] if n >= 0 else -1
            for m in reversed(chain):
                d += 1
                depth[m] = d
        return depth

    @cached_property
    def category_ancestors(self) -> np.ndarray:
        """(C, D) int32: ``[c, d]`` is the ancestor of ``c`` at depth ``d`` (``c`` itself at its own depth);
        -1 below it."""
        C = len(self.categories)
        D = int(self.category_depth.max(initial=-1)) + 1
        anc = np.full((C, max(D, 1)), -1, np.int32)
        for c in range(C):
            n = c
            while n >= 0:
                anc[c, self.category_depth[n]] = n
                n = self.category_parent[n]
        return anc

    def subtree(self, category: int) -> np.ndarray:
        """(C,) bool: the categories at or below ``category``."""
        d = self.category_depth[category]
        return self.category_ancestors[:, d] == category

    def category_path(self, c: int) -> list[int]:
        """``c`` and its ancestors, nearest first."""
        out = []
        while c >= 0:
            out.append(c)
            c = int(self.category_parent[c])
        return out

    def products_in(self, categories: np.ndarray) -> np.ndarray:
        """(P,) bool: products whose leaf category is marked in the (C,) bool array ``categories``."""
        pc = self.product_category
        out = np.zeros(len(pc), bool)
        has = pc >= 0
        out[has] = categories[pc[has]]
        return out

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dicts(cls, products: Iterable[Mapping[str, Any]], *,
                   category_edges: Iterable[tuple[str, str]] | None = None) -> "Catalog":
        """``[{"id": "1", "category": "A > B" or ["A", "B"], "brand": "Acme", "facts": {"colour": "Red",
        "size": ["S", "M"]}}, ...]`` — handy for tests, notebooks and synthetic catalogs."""
        b = CatalogBuilder()
        for p in products:
            cat = p.get("category")
            if isinstance(cat, (list, tuple)):
                cat = PATH_SEP.join(str(x) for x in cat)
            b.add_product(str(p["id"]), cat, p.get("brand"), title=p.get("title"))
            for attr, vals in (p.get("facts") or {}).items():
                for v in (vals if isinstance(vals, (list, tuple, set)) else [vals]):
                    if v is not None:
                        b.add_fact(str(p["id"]), attr, v)
        for child, parent in category_edges or ():
            b.add_category(child, parent)
        return b.build()


class CatalogBuilder:
    """Collects products, facts and category edges in any order (e.g. streamed in batches), then builds.

    >>> b = CatalogBuilder()
    >>> b.add_product("p1", "Apparel > Topwear > Tshirts", "Nike")
    >>> b.add_fact("p1", "Pattern", "Solid")
    >>> catalog = b.build()
    """

    def __init__(self) -> None:
        self._pid: dict[str, int] = {}
        self._pcat: list[str | None] = []
        self._pbrand: list[int] = []
        self._ptitle: list[str | None] = []
        self._brand: dict[str, int] = {}
        self._brand_names: list[str] = []
        self._attr: dict[str, int] = {}
        self._value: dict[tuple[int, str], int] = {}
        self._v_attr: list[int] = []
        self._v_norm: list[str] = []
        self._v_display: list[str] = []
        self._v_qty: list[float] = []
        self._v_unit: list[int] = []
        self._f_product: list[str] = []
        self._f_value: list[int] = []
        self._edges: list[tuple[str, str]] = []
        self._declared: set[str] = set()

    def add_product(self, id: str, category: str | None = None, brand: str | None = None,
                    brand_name: str | None = None, title: str | None = None) -> None:
        """``brand`` is the brand key or name (keys are case-folded names); ``brand_name`` its display form;
        ``title`` (optional) the product's title, for rules that learn from the catalog's wording."""
        id = str(id)
        if id in self._pid:
            raise CatalogError(f"product {id!r} added twice")
        self._pid[id] = len(self._pcat)
        self._pcat.append(clean(category) if category else None)
        self._ptitle.append(title)
        bi = -1
        if brand is not None and clean(brand):
            key = norm_key(brand)
            bi = self._brand.get(key, -1)
            if bi < 0:
                bi = self._brand[key] = len(self._brand_names)
                self._brand_names.append(clean(brand_name or brand))
        self._pbrand.append(bi)

    def add_fact(self, product: str, attribute: str, value: object = None, *, norm: str | None = None,
                 quantity: float | None = None, unit: str | None = None) -> None:
        """One asserted fact. ``norm`` defaults to the match key of ``value``; a canonical measure
        (``"500 g"``) gets its quantity and unit parsed when they are not given."""
        if value is None and norm is None:
            raise CatalogError(f"fact of product {product!r}, attribute {attribute!r}: no value")
        attribute = clean(attribute)
        a = self._attr.setdefault(attribute, len(self._attr))
        n = norm if norm is not None else norm_key(value)
        key = (a, n)
        v = self._value.get(key)
        if v is None:
            v = self._value[key] = len(self._v_norm)
            self._v_attr.append(a)
            self._v_norm.append(n)
            self._v_display.append(clean(value) if value is not None else n)
            if quantity is None or unit is None:
                q = parse_canonical(n)
                quantity, unit = q if q else (None, None)
            self._v_qty.append(float(quantity) if quantity is not None else np.nan)
            self._v_unit.append(unit_code(unit))
        self._f_product.append(str(product))
        self._f_value.append(v)

    def add_category(self, path: str, parent: str | None = None) -> None:
        """A category node and (unless it is a root) its parent: the edges of the tree."""
        path = clean(path)
        self._declared.add(path)
        if parent is not None:
            parent = clean(parent)
            self._declared.add(parent)
            self._edges.append((path, parent))

    def build(self) -> Catalog:
        """Categories only known from product paths get their parents from the path ("A > B" is under "A")."""
        nodes: dict[str, None] = dict.fromkeys(sorted(self._declared))
        edges = list(dict.fromkeys(self._edges))
        has_parent = {c for c, _ in edges}
        todo = [c for c in self._pcat if c]
        while todo:
            c = todo.pop()
            if c in nodes and (c in has_parent or c in self._declared):
                continue
            nodes[c] = None
            if PATH_SEP in c and c not in has_parent:
                parent = c.rsplit(PATH_SEP, 1)[0]
                edges.append((c, parent))
                has_parent.add(c)
                todo.append(parent)
        report = check_category_tree(edges, nodes, check_paths=False)
        if not report.ok:
            raise CategoryTreeError(report)
        categories = sorted(nodes)
        cidx = {c: i for i, c in enumerate(categories)}
        parent = np.full(len(categories), -1, np.int32)
        for c, p in edges:
            parent[cidx[c]] = cidx[p]
        missing = [p for p in dict.fromkeys(self._f_product) if p not in self._pid]
        if missing:
            raise CatalogError(f"{len(missing)} facts name products that were never added, e.g. {missing[0]!r}")
        fp = np.fromiter((self._pid[p] for p in self._f_product), np.int32, len(self._f_product))
        fv = np.asarray(self._f_value, np.int32)
        if len(fp):  # the same fact given twice counts once
            V = max(len(self._v_norm), 1)
            key = unique(fp.astype(np.int64) * V + fv)
            fp, fv = (key // V).astype(np.int32), (key % V).astype(np.int32)
        return Catalog(
            product_ids=list(self._pid),
            product_category=np.array([cidx[c] if c else -1 for c in self._pcat], np.int32),
            product_brand=np.asarray(self._pbrand, np.int32),
            categories=categories, category_parent=parent,
            brands=list(self._brand), brand_names=self._brand_names,
            attributes=list(self._attr),
            value_attribute=np.asarray(self._v_attr, np.int32), value_norm=self._v_norm,
            value_display=self._v_display, value_quantity=np.asarray(self._v_qty, np.float64),
            value_unit=np.asarray(self._v_unit, np.int8), fact_product=fp, fact_value=fv,
            product_titles=self._ptitle if any(t is not None for t in self._ptitle) else None,
        )


__all__ = ["Catalog", "CatalogBuilder", "CatalogSummary", "TreeReport", "UNITS"]
