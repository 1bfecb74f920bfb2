"""Rule-layer benchmark (issue 14, point 3): what kb's rules catch, and what they wrongly block.

    python bench/bench_rules.py [--catalogs myntra,bigbasket,taobao] [--per-kind 200] [--clean 2000]
                                [--seed 0] [--model tfidf] [--threads 1] [--category-level 2]
                                [--clean-from test|valid] [--audit-seed N] [--paths predictions,audit]
                                [--mining key=value,...] [--max-products N] [--no-model] [--no-save]

Decide on validation, report on test: thresholds (``kb/rules/default.yaml``, ``kb.MiningConfig``) are chosen
with ``--clean-from valid --audit-seed 1`` (the predictions path hides the valid pairs and shows the train
facts only; the audit path corrupts and samples with seed 1); the recorded figures use the defaults
(``--clean-from test --audit-seed 0``). ``settings`` in each record says which; ``bench/trust_tables.py``
renders the latest of each kind.

No database: each shared catalog is read through its shipped mapping (``bench/_catalog.py``) and turned
into the snapshot ``attrgraph snapshot`` would export (``write_snapshot``); a seeded protocol split
(``gnn.protocol.make_split``: 80/10/10 pairs, 5% cold products) says which facts are hidden.

Rules, as a completion run would load them: the shipped general rules (``kb/rules/default.yaml``), the
catalog's shipped rules (``myntra.yaml`` for Myntra) and the rules ``kb.mine_rules`` mines (default
thresholds) from the catalog being judged against.

Two paths, as the rule layer meets them:

* **predictions** -- the catalog is the visible facts (train + valid; test and cold hidden; with
  ``--clean-from valid``: train only, the valid pairs hidden): the hidden pairs are the missing slots a
  completion run predicts. Injected candidates and clean ones are
  ``kb.Predictions`` rows (product, attribute, value key) judged by ``kb.validate`` against it. Clean: the
  true value of ``--clean`` random test (valid) pairs (correct predictions), and, per kind, the true value of the
  very slots the injected rows were put in ("same slots").
* **audit** -- the full catalog with the corruptions written into it (at most one per product);
  its facts and brands are judged as ``kb.audit`` judges them (each against the rest of the catalog),
  with rules mined from the clean catalog. Clean: ``--clean`` random facts and brands of untouched
  products; "same slots": the facts the corruptions replaced, audited in the clean catalog.

Injected kinds, ``--per-kind`` of each (fewer when the catalog has fewer places for them; ``n/a`` with the
reason when it has none, e.g. no numeric attribute):

* ``foreign_attribute`` -- a value of another attribute, whose key never occurs with this attribute;
* ``foreign_category`` -- a value of this attribute seen on at least 3 products, none of them in the
  product's category at ``--category-level`` (1 = root; the leaf when the tree is shallower);
* ``brand_category`` -- an established brand (at least the brand rule's ``min_brand_products``) that has no
  product under the product's part of the tree at the brand rule's ``level``;
* ``numeric_huge`` / ``numeric_negative`` / ``numeric_unit`` -- on a numeric attribute (20+ facts, half of them
  measures or plain numbers, or named by a declared numeric rule): the typical value times 10^6, its
  negative, or the number in a wrong unit (cm -> kg, g -> m, ...), spelled and normalised as ingest would;
* ``implication`` -- a mined implication broken (mined with the thresholds of the rules in force, so the
  kind says that a broken mined rule is caught, not how many true implications the thresholds keep): the product
  meets its condition (its category, or an asserted value) and gets another known value of the implied
  attribute (drawn by frequency among that category's facts);
* ``duplicate`` -- a second, different value (seen in the product's category) for an attribute that 99%+ of
  the 20+ products having it hold once, on a product that has one.

A row is *caught* (or a clean row *blocked*) when the rules reject it or send it to review. Reported per
kind (recall, and recall by the rule types designed for the kind), per rule (mined implications pooled):
precision over the pool of injected + clean rows, recall over the kinds its type is designed for, and the
share of clean rows it fires on; overall recall on injected values and the share of clean rows blocked,
checked against the issue's targets (recall >= 0.95, <= 1% of correct predictions blocked).

Real errors: the ``tfidf`` baseline (``gnn.baselines``; ``--model majority`` for a cheaper one) fitted on
the train facts; its top-1 value of every test (valid) pair is judged against the visible catalog: the share of
wrong top-1 values caught, and of right ones blocked.

Prints the tables and appends one JSON record to ``bench/results/rules.jsonl``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kb  # noqa: E402
from kb.context import Rows  # noqa: E402
from kb.units import norm_key, parse_number  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "rules.jsonl"
SHIPPED_RULES: dict[str, tuple[str, ...]] = {"myntra": ("myntra",)}  # catalog -> shipped rule files
KINDS = ("foreign_attribute", "foreign_category", "brand_category", "numeric_huge", "numeric_negative",
         "numeric_unit", "implication", "duplicate")
NUMERIC_KINDS = ("numeric_huge", "numeric_negative", "numeric_unit")
# the rule types designed to catch each kind (a rule's recall is over the kinds its type is designed for)
DESIGNED: dict[str, tuple[str, ...]] = {
    "foreign_attribute": ("domain",),
    "foreign_category": ("category_value", "implication", "exclusion"),
    "brand_category": ("brand_category",),
    "numeric_huge": ("numeric",), "numeric_negative": ("numeric",), "numeric_unit": ("numeric",),
    "implication": ("implication", "exclusion"),
    "duplicate": ("cardinality",),
}
WRONG_UNIT = {"cm": "kg", "g": "m", "ml": "m", "pcs": "kg", None: "kg"}  # a numeric attribute's unit -> a wrong one
TARGET_RECALL, TARGET_BLOCKED = 0.95, 0.01
PATHS = ("predictions", "audit")
HELD = ("test", "valid")  # the predictions path's hidden pairs: test (recorded figures) or valid (decisions)
CLEAN, SAME_SLOT = "clean", "same_slot"


# -- the catalog as arrays ---------------------------------------------------------------------------------
class Facts:
    """The full catalog of a snapshot as arrays of snapshot ids, with the lookups the injections need."""

    def __init__(self, snap: Any):
        from gnn.protocol import category_tree, leaf_categories

        self.snap = snap
        self.pkeys = np.asarray(snap.keys("product"), dtype=object)
        self.P = len(self.pkeys)
        self.attr_names = [str(k) for k in snap.keys("attribute")]
        self.A = len(self.attr_names)
        aix = {a: i for i, a in enumerate(self.attr_names)}
        vals = snap.nodes["value"]
        self.V = len(vals)
        self.v_attr = np.array([aix[r["attribute"]] for r in vals], np.int64)
        self.v_norm = [r["norm"] for r in vals]
        self.v_display = [r.get("value") or r["norm"] for r in vals]
        self.v_qty = np.array([np.nan if r.get("quantity") is None else float(r["quantity"]) for r in vals])
        self.v_unit = [r.get("unit") for r in vals]
        self.v_number = np.array([np.nan if (x := parse_number(n)) is None else x for n in self.v_norm])
        hv = snap.edges["has_value"]
        self.fp, self.fv = hv[0].astype(np.int64), hv[1].astype(np.int64)
        self.fa = self.v_attr[self.fv] if len(self.fv) else np.zeros(0, np.int64)
        self.brand_keys = [str(k) for k in snap.keys("brand")]
        self.pbrand = np.full(self.P, -1, np.int64)
        hb = snap.edges.get("has_brand", np.zeros((2, 0), np.int64))
        self.pbrand[hb[0]] = hb[1]
        self.leaf = leaf_categories(snap)
        parent, depth = category_tree(snap)
        self.cat_depth = depth
        C = snap.num_nodes("category")
        self.C = C
        D = int(depth.max()) + 1 if C else 1
        self.anc = np.full((max(C, 1), D), -1, np.int64)
        for c in range(C):
            n = c
            while n >= 0:
                self.anc[c, depth[n]] = n
                n = int(parent[n])
        self.norms_of: list[set[str]] = [set() for _ in range(self.A)]
        for v, a in enumerate(self.v_attr.tolist()):
            self.norms_of[a].add(self.v_norm[v])
        self.value_count = np.bincount(self.fv, minlength=self.V)

    def node_at(self, products: np.ndarray, level: int) -> np.ndarray:
        """Each product's category at ``level`` (1 = root; its leaf when the tree is shallower; -1: none)."""
        products = np.asarray(products, np.int64)
        leaf = self.leaf[products]
        out = np.full(len(products), -1, np.int64)
        ok = leaf >= 0
        if ok.any():
            out[ok] = self.anc[leaf[ok], np.minimum(self.cat_depth[leaf[ok]], level - 1)]
        return out

    def in_subtree(self, products: np.ndarray, c: int) -> np.ndarray:
        leaf = self.leaf[np.asarray(products, np.int64)]
        out = np.zeros(len(leaf), bool)
        ok = leaf >= 0
        out[ok] = self.anc[leaf[ok], self.cat_depth[c]] == c
        return out

    def value_id(self, attribute: str, norm: str) -> int | None:
        return self.snap.index["value"].get((attribute, norm))

    def single_valued(self, min_products: int = 20, min_share: float = 0.99) -> list[int]:
        """Attributes held by ``min_products`` products, ``min_share`` of them with exactly one value."""
        if not len(self.fp):
            return []
        keys, counts = np.unique(self.fp * self.A + self.fa, return_counts=True)
        attr = keys % self.A
        having = np.bincount(attr, minlength=self.A)
        one = np.bincount(attr[counts == 1], minlength=self.A)
        return [a for a in range(self.A) if having[a] >= min_products and one[a] / having[a] >= min_share]

    def numeric_attributes(self, rules: kb.RuleSet, min_facts: int = 20) -> dict[int, tuple[str | None, float]]:
        """attribute -> (unit, typical value): attributes whose facts are mostly measures (unit: the usual
        one) or plain numbers (unit None), and those a declared numeric rule names."""
        out: dict[int, tuple[str | None, float]] = {}
        for a in range(self.A):
            fv = self.fv[self.fa == a]
            if len(fv) < min_facts:
                continue
            q, num = self.v_qty[fv], self.v_number[fv]
            if (~np.isnan(q)).mean() >= 0.5:
                units = Counter(self.v_unit[v] for v in fv[~np.isnan(q)].tolist())
                u = units.most_common(1)[0][0]
                sel = np.array([self.v_unit[v] == u for v in fv.tolist()]) & ~np.isnan(q)
                out[a] = (u, float(np.median(q[sel])))
            elif (~np.isnan(num)).mean() >= 0.5:
                out[a] = (None, float(np.median(num[~np.isnan(num)])))
        aix = {n: i for i, n in enumerate(self.attr_names)}
        for r in rules:
            if r.type != "numeric" or r.params.attributes == "*":
                continue
            for name in r.params.attributes:
                a = aix.get(name)
                if a is None or a in out or not (self.fa == a).any():
                    continue
                fv = self.fv[self.fa == a]
                unit = None if r.params.unit in (None, "none") else r.params.unit
                vals = self.v_number[fv] if unit is None else np.where(
                    np.array([self.v_unit[v] == unit for v in fv.tolist()]), self.v_qty[fv], np.nan)
                vals = vals[~np.isnan(vals)]
                out[a] = (unit, float(np.median(vals)) if len(vals) else 1.0)
        return out


def catalog_of(snap: Any) -> kb.Catalog:
    """The snapshot as the :class:`kb.Catalog` a completion run's validation judges against."""
    from attrgraph.complete import catalog_from_snapshot

    return catalog_from_snapshot(snap)


def kb_catalog(snap: Any, edges: dict[str, np.ndarray] | None = None,
               extra_values: Sequence[dict[str, Any]] = ()) -> kb.Catalog:
    """:func:`catalog_of` the snapshot with other fact edges (and extra value nodes): the catalog the rule
    layer judges against."""
    s = dataclasses.replace(snap, nodes={**snap.nodes, "value": list(snap.nodes["value"]) + list(extra_values)},
                            edges={**snap.edges, **(edges or {})})
    return catalog_of(s)


MINING = kb.MiningConfig()  # the thresholds of the mined rules in force (``--mining`` changes them)


def rules_for(catalog_name: str, catalog: kb.Catalog) -> tuple[kb.RuleSet, kb.RuleSet, list[kb.MinedImplication]]:
    """(every rule, the mined ones, the mined implications in the mined rule set's order)."""
    cfg = MINING
    _, impls = kb.mine(catalog, cfg)
    mined = kb.mine_rules(catalog, cfg)
    if sum(r.type == "implication" for r in mined) != len(impls):  # the rule set keeps the mining order
        raise SystemExit("kb.mine and kb.mine_rules disagree on the implications")
    return kb.load_rules("default", *SHIPPED_RULES.get(catalog_name, ()), mined), mined, impls


def rule_label(rule: kb.Rule) -> str:
    """Mined implications are pooled as ``mined.implication``; every other rule is itself."""
    if rule.source == "mined":
        return f"mined.{rule.type}"
    return rule.id


# -- injected and clean items -------------------------------------------------------------------------------
@dataclass
class Item:
    kind: str  # one of KINDS, or CLEAN / SAME_SLOT
    product: int  # snapshot product id
    attribute: str  # attribute name; "@brand" for a brand
    value: str  # value key (norm), or brand key
    display: str
    of: str | None = None  # SAME_SLOT: the kind whose slot it is
    rule: str | None = None  # implication: the id of the mined rule broken
    note: str = ""


def _nonsense(kind: str, unit: str | None, base: float, k: int = 0) -> tuple[str, str, float | None, str | None]:
    """A numeric corruption of ``base`` (its key, display, quantity, unit as ingest would normalise it);
    ``k`` > 0 varies it (distinct keys for distinct products)."""
    from ingest.normalize import format_quantity, normalize_value

    b = abs(base) if base else 1.0
    b = b * (1 + 0.01 * k)

    def num(x: float) -> str:
        return format_quantity(x, "u")[:-2]

    if kind == "numeric_huge":
        q = float(round(b * 1e6))
        raw = format_quantity(q, unit) if unit else num(q)
    elif kind == "numeric_negative":
        raw = "-" + (format_quantity(b, unit) if unit else num(b))
    else:
        raw = f"{num(b)} {WRONG_UNIT.get(unit, 'kg')}"
    nv = normalize_value(raw)
    return nv.norm, nv.display, nv.quantity, nv.unit


class Injector:
    """Chooses where and what to inject, seeded per path and kind."""

    def __init__(self, facts: Facts, rules: kb.RuleSet, *, seed: int, level: int):
        self.f, self.rules, self.seed, self.level = facts, rules, seed, level
        f = facts
        self.single = f.single_valued()
        self.numeric = f.numeric_attributes(rules)
        br = [r for r in rules if r.type == "brand_category"]
        self.brand_rule = br[0] if br else None
        # per attribute: value ids with their fact counts, and the (category at `level`, value) pairs seen
        self.values_of: list[np.ndarray] = [np.flatnonzero(f.v_attr == a) for a in range(f.A)]
        node = f.node_at(f.fp, level) if len(f.fp) else np.zeros(0, np.int64)
        self.seen_in_node = set(zip(node.tolist(), f.fv.tolist()))
        if self.brand_rule is not None and f.C:
            bl = self.brand_rule.params.level
            has = (f.pbrand >= 0) & (f.leaf >= 0)
            part = f.node_at(np.flatnonzero(has), bl)
            self.brand_parts = set(zip(f.pbrand[has].tolist(), part.tolist()))
        else:
            self.brand_parts = set()

    def rng(self, path: str, kind: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, PATHS.index(path) + 1, (KINDS + (CLEAN,)).index(kind) + 1])

    # -- what each kind needs; None: possible, else why not ----------------------------------------------
    def not_applicable(self, kind: str, implications: Sequence[Any]) -> str | None:
        f = self.f
        if kind in ("foreign_attribute", "foreign_category", "implication", "duplicate") + NUMERIC_KINDS and not len(f.fv):
            return "the catalog has no attribute values (only brands and categories)"
        if kind == "foreign_attribute" and f.A < 2:
            return "the catalog has a single attribute"
        if kind in ("foreign_category", "brand_category") and not f.C:
            return "the catalog has no category tree"
        if kind == "brand_category" and self.brand_rule is None:
            return "no brand_category rule in the rule set"
        if kind == "brand_category" and not len(f.brand_keys):
            return "the catalog has no brands"
        if kind in NUMERIC_KINDS and not self.numeric:
            return "the catalog has no numeric attribute (20+ facts, half of them measures or plain numbers)"
        if kind == "implication" and not implications:
            return (f"no rule was mined (kb.mine_rules needs categories with {MINING.min_products}+ products and "
                    f"{MINING.min_support}+ supporting ones)")
        if kind == "duplicate" and not self.single:
            return "no single-valued attribute (20+ products, 99% of them with one value)"
        return None

    # -- values ------------------------------------------------------------------------------------------
    def foreign_value(self, a: int, rng: np.random.Generator, avoid: set[tuple[int, str]] = frozenset()) -> int | None:
        """A value id of another attribute whose key never occurs with ``a`` (drawn by fact frequency)."""
        f = self.f
        for _ in range(200):
            v = int(f.fv[rng.integers(len(f.fv))])
            if f.v_attr[v] != a and f.v_norm[v] not in f.norms_of[a] and (a, f.v_norm[v]) not in avoid:
                return v
        return None

    def foreign_category_value(self, a: int, p: int, rng: np.random.Generator) -> int | None:
        """A value id of ``a`` on 3+ products, none of them in ``p``'s category at the chosen level."""
        f = self.f
        node = int(f.node_at(np.array([p]), self.level)[0])
        vs = self.values_of[a]
        ok = np.array([f.value_count[v] >= 3 and (node, v) not in self.seen_in_node for v in vs.tolist()], bool)
        vs = vs[ok] if len(vs) else vs
        if not len(vs):
            return None
        w = f.value_count[vs].astype(float)
        return int(rng.choice(vs, p=w / w.sum()))

    def foreign_brand(self, p: int, brand_total: np.ndarray, rng: np.random.Generator,
                      avoid: set[tuple[int, int]] = frozenset()) -> tuple[int, int] | None:
        """(brand, part): an established brand (``brand_total`` >= the rule's min_brand_products) with no
        product in ``p``'s part of the tree (nor a pair of ``avoid``)."""
        f = self.f
        part = int(f.node_at(np.array([p]), self.brand_rule.params.level)[0])
        if part < 0:
            return None
        cand = np.flatnonzero(brand_total >= self.brand_rule.params.min_brand_products)
        for _ in range(200):
            if not len(cand):
                return None
            b = int(rng.choice(cand))
            if (b, part) not in self.brand_parts and (b, part) not in avoid:
                return b, part
        return None

    def other_known_value(self, a: int, v: int, p: int, fv_of_products: Callable[[np.ndarray], np.ndarray],
                          scope: np.ndarray | None, rng: np.random.Generator) -> int | None:
        """Another value of ``a`` than ``v``, drawn by frequency among the facts of the products in
        ``scope`` (else of the whole catalog)."""
        f = self.f
        for prods in ([scope] if scope is not None else []) + [None]:
            vals = fv_of_products(prods)
            vals = vals[(f.v_attr[vals] == a) & (vals != v)]
            if len(vals):
                return int(vals[rng.integers(len(vals))])
        return None

    def mined_rule_matches(self, impls: Sequence[kb.MinedImplication],
                           slot_products: dict[int, np.ndarray], asserts: Callable[[np.ndarray, int], np.ndarray],
                           ) -> list[tuple[int, np.ndarray, int, int]]:
        """Per mined implication with somewhere to break it: (its index, the products of ``slot_products[a2]``
        that meet its condition, the implied attribute, the implied value)."""
        f = self.f
        cix = self.f.snap.index["category"]
        out = []
        for i, r in enumerate(impls):
            a2name, s2 = r.consequence
            v2 = f.value_id(a2name, norm_key(s2))
            c = cix.get(r.category)
            if v2 is None or c is None:
                continue
            a2 = int(f.v_attr[v2])
            prods = slot_products.get(a2)
            if prods is None or not len(prods):
                continue
            ok = f.in_subtree(prods, c)
            if r.condition is not None:
                v1 = f.value_id(r.condition[0], norm_key(r.condition[1]))
                if v1 is None:
                    continue
                ok &= asserts(prods, v1)
            if ok.any():
                out.append((i, prods[ok], a2, v2))
        return out


# -- the predictions path ------------------------------------------------------------------------------------
class PredictionWorld:
    """The visible catalog of a split and its hidden slots: with ``held="test"`` (the recorded figures) the
    train + valid facts are visible and the test + cold pairs hidden; with ``held="valid"`` (where thresholds
    are chosen) only the train facts are visible and the valid pairs are the hidden slots (test and cold
    facts stay out of sight either way)."""

    def __init__(self, facts: Facts, split: Any, held: str = "test"):
        from gnn.protocol import visible_edges

        if held not in HELD:
            raise ValueError(f"held must be one of {HELD}, got {held!r}")
        self.f, self.split, self.held = facts, split, held
        self.visible = ("train", "valid") if held == "test" else ("train",)
        self.edges = visible_edges(facts.snap, split, keep=self.visible)
        hv = self.edges["has_value"]
        self.vp, self.vv = hv[0].astype(np.int64), hv[1].astype(np.int64)
        order = np.lexsort((self.vv, self.vp))
        self.vp, self.vv = self.vp[order], self.vv[order]
        self.vkey = self.vp * max(facts.V, 1) + self.vv
        self.ptr = np.searchsorted(self.vp, np.arange(facts.P + 1))
        hb = self.edges.get("has_brand", np.zeros((2, 0), np.int64))
        self.brand_total = np.bincount(hb[1], minlength=len(facts.brand_keys))
        self.hidden = split.pairs("test", "cold") if held == "test" else split.pairs("valid")
        self.brand_attr = split.brand_attribute

    def asserts(self, products: np.ndarray, v: int) -> np.ndarray:
        k = np.asarray(products, np.int64) * max(self.f.V, 1) + v
        pos = np.minimum(np.searchsorted(self.vkey, k), max(len(self.vkey) - 1, 0))
        return (self.vkey[pos] == k) if len(self.vkey) else np.zeros(len(k), bool)

    def fv_of(self, products: np.ndarray | None) -> np.ndarray:
        if products is None:
            return self.vv
        return self.vv[np.isin(self.vp, products)]

    def truth(self, pair: int) -> tuple[str, str]:
        """(key, display) of a pair's first true value."""
        v = int(self.split.values_of(pair)[0])
        if int(self.split.attribute[pair]) == self.brand_attr:
            return self.f.brand_keys[v], self.f.snap.nodes["brand"][v].get("name") or self.f.brand_keys[v]
        return self.f.v_norm[v], self.f.v_display[v]

    def attr_name(self, a: int) -> str:
        return self.split.attribute_names[a]


def inject_predictions(world: PredictionWorld, inj: Injector, impls: Sequence[kb.MinedImplication],
                       impl_ids: Sequence[str], n: int) -> tuple[list[Item], dict[str, str]]:
    """Injected candidates of every kind (and, beside each, its slot's true value as a SAME_SLOT item)."""
    f, sp = world.f, world.split
    items: list[Item] = []
    na: dict[str, str] = {}
    hid = world.hidden
    hid_a = sp.attribute[hid]
    value_slots = hid[hid_a != world.brand_attr]

    def add(kind: str, pair: int | None, p: int, attr: str, key: str, display: str, **kw: Any) -> None:
        items.append(Item(kind, p, attr, key, display, **kw))
        if pair is not None:
            tk, td = world.truth(pair)
            items.append(Item(SAME_SLOT, p, attr, tk, td, of=kind))

    for kind in KINDS:
        why = inj.not_applicable(kind, impls)
        if why:
            na[kind] = why
            continue
        rng = inj.rng("predictions", kind)
        got = 0
        if kind in ("foreign_attribute", "foreign_category"):
            for pair in rng.permutation(value_slots).tolist():
                if got >= n:
                    break
                a, p = int(sp.attribute[pair]), int(sp.product[pair])
                v = inj.foreign_value(a, rng) if kind == "foreign_attribute" else inj.foreign_category_value(a, p, rng)
                if v is not None:
                    add(kind, pair, p, world.attr_name(a), f.v_norm[v], f.v_display[v],
                        note=f"from {f.attr_names[f.v_attr[v]]}" if kind == "foreign_attribute" else "")
                    got += 1
        elif kind == "brand_category":
            for pair in rng.permutation(hid[hid_a == world.brand_attr]).tolist():
                if got >= n:
                    break
                p = int(sp.product[pair])
                bp = inj.foreign_brand(p, world.brand_total, rng)
                if bp is not None:
                    b = bp[0]
                    add(kind, pair, p, kb.BRAND_ATTRIBUTE, f.brand_keys[b],
                        f.snap.nodes["brand"][b].get("name") or f.brand_keys[b])
                    got += 1
        elif kind in NUMERIC_KINDS:
            slots = hid[np.isin(hid_a, list(inj.numeric))]
            for pair in rng.permutation(slots).tolist()[:n]:
                a, p = int(sp.attribute[pair]), int(sp.product[pair])
                unit, typical = inj.numeric[a]
                key, disp, _, _ = _nonsense(kind, unit, typical)
                add(kind, pair, p, world.attr_name(a), key, disp)
                got += 1
        elif kind == "implication":
            slot_products = {a: sp.product[value_slots[sp.attribute[value_slots] == a]]
                             for a in np.unique(sp.attribute[value_slots]).tolist()}
            matches = inj.mined_rule_matches(impls, slot_products, world.asserts)
            pair_of = {(int(sp.product[q]), int(sp.attribute[q])): int(q) for q in value_slots.tolist()}
            items_by_rule = _round_robin(matches, n, rng)
            cix = f.snap.index["category"]
            for i, p, a2, v2 in items_by_rule:
                c = cix[impls[i].category]
                scope_products = np.flatnonzero(f.in_subtree(np.arange(f.P), c))
                v = inj.other_known_value(a2, v2, p, world.fv_of, scope_products, rng)
                if v is None:
                    continue
                add(kind, pair_of[(p, a2)], p, f.attr_names[a2], f.v_norm[v], f.v_display[v], rule=impl_ids[i],
                    note=_impl_text(impls[i]))
        elif kind == "duplicate":
            vis = sp.pairs(*world.visible)
            counts = sp.indptr[vis + 1] - sp.indptr[vis]
            cand = vis[np.isin(sp.attribute[vis], inj.single) & (counts == 1)]
            for pair in rng.permutation(cand).tolist():
                if got >= n:
                    break
                a, p = int(sp.attribute[pair]), int(sp.product[pair])
                v0 = int(sp.values_of(pair)[0])
                leaf = f.leaf[p]
                scope = np.flatnonzero(f.leaf == leaf) if leaf >= 0 else None
                v = inj.other_known_value(a, v0, p, world.fv_of, scope, rng)
                if v is not None:
                    add(kind, None, p, world.attr_name(a), f.v_norm[v], f.v_display[v],
                        note=f"the product has {f.v_display[v0]!r}")
                    got += 1
    return items, na


def _round_robin(matches: list[tuple[int, np.ndarray, int, int]], n: int,
                 rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Up to ``n`` (rule, product, attribute, value) picks spread over the rules: rules in a seeded order,
    one unused product of each per round (a rule's products are shuffled when it is first visited)."""
    order = rng.permutation(len(matches)).tolist()
    pools: dict[int, list[int]] = {}
    used: set[tuple[int, int]] = set()
    out: list[tuple[int, int, int, int]] = []
    live = list(order)
    while len(out) < n and live:
        still = []
        for j in live:
            if len(out) >= n:
                break
            i, prods, a2, v2 = matches[j]
            pool = pools.get(j)
            if pool is None:
                pool = pools[j] = rng.permutation(prods).tolist()
            while pool:
                p = int(pool.pop())
                if (p, a2) not in used:
                    used.add((p, a2))
                    out.append((i, p, a2, v2))
                    break
            if pool:
                still.append(j)
        live = still
    return out


def _impl_text(r: kb.MinedImplication) -> str:
    cond = f"{r.condition[0]} = {r.condition[1]} => " if r.condition else ""
    return f"in {r.category}: {cond}{r.consequence[0]} = {r.consequence[1]} (support {r.support}, confidence {r.confidence:.3f})"


def clean_predictions(world: PredictionWorld, n: int, seed: int) -> list[Item]:
    """The true value of ``n`` random held-out pairs (``world.held``: test, or valid), as a correct model
    would predict it."""
    sp = world.split
    test = sp.pairs(world.held)
    rng = np.random.default_rng([seed, 1, 99])
    out = []
    for pair in rng.choice(test, size=min(n, len(test)), replace=False).tolist():
        a = int(sp.attribute[pair])
        key, disp = world.truth(pair)
        out.append(Item(CLEAN, int(sp.product[pair]), kb.BRAND_ATTRIBUTE if a == world.brand_attr else world.attr_name(a),
                        key, disp))
    return out


def prediction_rows(f: Facts, items: Sequence[Item], scores: Sequence[float] | None = None) -> kb.Predictions:
    """The rows as ``judge_slots`` hands them to ``kb.validate`` (value keys, one candidate per slot)."""
    sc = np.full(len(items), np.nan) if scores is None else np.asarray(scores, float)
    return kb.Predictions.from_arrays(f.pkeys[[it.product for it in items]] if items else np.zeros(0, object),
                                      [it.attribute for it in items], [it.value for it in items], sc, normalized=True)


# -- the audit path ------------------------------------------------------------------------------------------
@dataclass
class Corrupted:
    """One round of the audit path: the full catalog's fact edges with that round's corruptions written in."""

    snap_edges: dict[str, np.ndarray]
    extra_values: list[dict[str, Any]]
    items: list[Item]  # injected (the corrupted facts), and SAME_SLOT (the facts they replaced)


class AuditInjection:
    """Corruptions written into the full catalog, at most one per product over every round. Each round is
    a catalog of its own: corruptions that share a catalog are each other's evidence (a learned range
    widened by its own outliers, a foreign brand seen twice), so a round keeps them few."""

    def __init__(self, f: Facts, inj: Injector, impls: Sequence[kb.MinedImplication], impl_ids: Sequence[str]):
        self.f, self.inj, self.impls, self.impl_ids = f, inj, impls, impl_ids
        self.na = {k: why for k in KINDS if (why := inj.not_applicable(k, impls))}
        self.rngs = {k: inj.rng("audit", k) for k in KINDS}
        self.touched: set[int] = set()
        self.used_keys: set[tuple[int, str]] = set()  # (attribute, key) of new values: each on one product
        self.used_parts: set[tuple[int, int]] = set()  # (brand, part) of foreign brands: each on one product
        self.brand_total = np.bincount(f.pbrand[f.pbrand >= 0], minlength=len(f.brand_keys))
        key = f.fp * max(f.V, 1) + f.fv
        self.sorted_key = np.sort(key)
        self._matches: list[tuple[int, np.ndarray, int, int]] | None = None

    def asserts(self, products: np.ndarray, v: int) -> np.ndarray:
        k = np.asarray(products, np.int64) * max(self.f.V, 1) + v
        if not len(self.sorted_key):
            return np.zeros(len(k), bool)
        pos = np.minimum(np.searchsorted(self.sorted_key, k), len(self.sorted_key) - 1)
        return self.sorted_key[pos] == k

    def fv_of(self, products: np.ndarray | None) -> np.ndarray:
        f = self.f
        return f.fv if products is None else f.fv[np.isin(f.fp, products)]

    def matches(self) -> list[tuple[int, np.ndarray, int, int]]:
        """Mined implications with products that assert the implied value (to replace) and meet the condition."""
        if self._matches is None:
            f = self.f
            slot_products = {a: np.unique(f.fp[f.fa == a]) for a in np.unique(f.fa).tolist()}
            ms = self.inj.mined_rule_matches(self.impls, slot_products, self.asserts)
            ms = [(i, prods[self.asserts(prods, v2)], a2, v2) for i, prods, a2, v2 in ms]
            self._matches = [m for m in ms if len(m[1])]
        return self._matches

    def round(self, quota: dict[str, int]) -> Corrupted:
        f, inj = self.f, self.inj
        items: list[Item] = []
        remove: set[tuple[int, int]] = set()
        add_edges: list[tuple[int, int]] = []
        extra: list[dict[str, Any]] = []
        new_key: dict[tuple[int, str], int] = {}
        pbrand = f.pbrand.copy()
        touched = self.touched

        def value_node(a: int, key: str, display: str, qty: float | None, unit: str | None) -> int:
            v = f.value_id(f.attr_names[a], key)
            if v is not None:
                return v
            if (a, key) not in new_key:
                new_key[(a, key)] = f.V + len(extra)
                extra.append({"key": [f.attr_names[a], key], "attribute": f.attr_names[a], "norm": key,
                              "value": display, "quantity": qty, "unit": unit})
            return new_key[(a, key)]

        def replace(kind: str, p: int, v_old: int, v_new: int, display: str, **kw: Any) -> None:
            a = f.attr_names[f.v_attr[v_old]]
            remove.add((p, v_old))
            add_edges.append((p, v_new))
            touched.add(p)
            key = f.v_norm[v_new] if v_new < f.V else extra[v_new - f.V]["norm"]
            items.append(Item(kind, p, a, key, display, **kw))
            items.append(Item(SAME_SLOT, p, a, f.v_norm[v_old], f.v_display[v_old], of=kind))

        for kind in KINDS:
            n = quota.get(kind, 0)
            if kind in self.na or n <= 0:
                continue
            rng = self.rngs[kind]
            got = 0
            if kind in ("foreign_attribute", "foreign_category") + NUMERIC_KINDS:
                pool = np.flatnonzero(np.isin(f.fa, list(inj.numeric))) if kind in NUMERIC_KINDS else np.arange(len(f.fp))
                for j in rng.permutation(pool).tolist():
                    if got >= n:
                        break
                    p, v0 = int(f.fp[j]), int(f.fv[j])
                    if p in touched:
                        continue
                    a = int(f.v_attr[v0])
                    if kind == "foreign_attribute":
                        v = inj.foreign_value(a, rng, self.used_keys)
                        if v is None:
                            continue
                        self.used_keys.add((a, f.v_norm[v]))
                        vn = value_node(a, f.v_norm[v], f.v_display[v], None if np.isnan(f.v_qty[v]) else f.v_qty[v],
                                        f.v_unit[v])
                        replace(kind, p, v0, vn, f.v_display[v], note=f"from {f.attr_names[f.v_attr[v]]}")
                    elif kind == "foreign_category":
                        v = inj.foreign_category_value(a, p, rng)
                        if v is None:
                            continue
                        replace(kind, p, v0, v, f.v_display[v])
                    else:
                        unit, typical = inj.numeric[a]
                        base = f.v_qty[v0] if unit is not None and f.v_unit[v0] == unit else f.v_number[v0]
                        base = typical if np.isnan(base) else float(base)
                        k = 0
                        while True:  # a key no other product has: a shared corrupt value would look established
                            key, disp, q, u = _nonsense(kind, unit, base, k)
                            if (a, key) not in self.used_keys and key not in f.norms_of[a]:
                                break
                            k += 1
                        self.used_keys.add((a, key))
                        replace(kind, p, v0, value_node(a, key, disp, q, u), disp)
                    got += 1
            elif kind == "brand_category":
                cand = np.flatnonzero((f.pbrand >= 0) & (f.leaf >= 0))
                for p in rng.permutation(cand).tolist():
                    if got >= n:
                        break
                    if p in touched:
                        continue
                    # the audit leaves the product out: the new brand needs min_brand_products others
                    bp = inj.foreign_brand(p, self.brand_total, rng, self.used_parts)
                    if bp is None:
                        continue
                    self.used_parts.add(bp)
                    b, old = bp[0], int(pbrand[p])
                    pbrand[p] = b
                    touched.add(p)
                    items.append(Item(kind, p, kb.BRAND_ATTRIBUTE, f.brand_keys[b],
                                      f.snap.nodes["brand"][b].get("name") or f.brand_keys[b]))
                    items.append(Item(SAME_SLOT, p, kb.BRAND_ATTRIBUTE, f.brand_keys[old],
                                      f.snap.nodes["brand"][old].get("name") or f.brand_keys[old], of=kind))
                    got += 1
            elif kind == "implication":
                cix = f.snap.index["category"]
                for i, p, a2, v2 in _round_robin(self.matches(), 4 * n, rng):
                    if got >= n:
                        break
                    if p in touched:
                        continue
                    scope = np.flatnonzero(f.in_subtree(np.arange(f.P), cix[self.impls[i].category]))
                    v = inj.other_known_value(a2, v2, p, self.fv_of, scope, rng)
                    if v is None or self.asserts(np.array([p]), v)[0]:  # a value it has would be asserted twice
                        continue
                    replace(kind, p, v2, v, f.v_display[v], rule=self.impl_ids[i], note=_impl_text(self.impls[i]))
                    got += 1
            elif kind == "duplicate":
                keys, counts = np.unique(f.fp * f.A + f.fa, return_counts=True)
                one = keys[(counts == 1) & np.isin(keys % f.A, inj.single)]
                for k in rng.permutation(one).tolist():
                    if got >= n:
                        break
                    p, a = divmod(int(k), f.A)
                    if p in touched:
                        continue
                    v0 = int(f.fv[(f.fp == p) & (f.fa == a)][0])
                    leaf = f.leaf[p]
                    scope = np.flatnonzero(f.leaf == leaf) if leaf >= 0 else None
                    v = inj.other_known_value(a, v0, p, self.fv_of, scope, rng)
                    if v is None:
                        continue
                    add_edges.append((p, v))
                    touched.add(p)
                    items.append(Item(kind, p, f.attr_names[a], f.v_norm[v], f.v_display[v],
                                      note=f"the product has {f.v_display[v0]!r}"))
                    got += 1
        hv = np.stack([f.fp, f.fv]) if len(f.fp) else np.zeros((2, 0), np.int64)
        if remove:
            M = f.V + len(extra) + 1
            keep = ~np.isin(f.fp * M + f.fv, np.array([p * M + v for p, v in remove], np.int64))
            hv = hv[:, keep]
        if add_edges:
            hv = np.concatenate([hv, np.array(add_edges, np.int64).T], axis=1)
        hb_p = np.flatnonzero(pbrand >= 0)
        return Corrupted({"has_value": hv, "has_brand": np.stack([hb_p, pbrand[hb_p]]).astype(np.int64)}, extra, items)


def audit_path(name: str, snap: Any, f: Facts, rules: kb.RuleSet, mined: kb.RuleSet,
               impls: Sequence[kb.MinedImplication], *, per_kind: int, n_clean: int, seed: int, level: int,
               rounds: int, full_cat: kb.Catalog) -> tuple[dict[str, Any], dict[str, float]]:
    """Inject over ``rounds`` corrupted catalogs, audit each; the replaced facts audited in the clean catalog."""
    T: dict[str, float] = defaultdict(float)
    inj = Injector(f, rules, seed=seed, level=level)
    ai = AuditInjection(f, inj, impls, [r.id for r in mined if r.type == "implication"])
    t = time.perf_counter()
    rounds = max(1, rounds)
    cors = [ai.round({k: per_kind // rounds + (1 if r < per_kind % rounds else 0) for k in KINDS})
            for r in range(rounds)]
    clean = clean_audit(f, ai.touched, n_clean, seed)
    T["inject_audit"] += time.perf_counter() - t
    judged: list[Judged] = []
    all_items: list[Item] = []
    for r, cor in enumerate(cors):
        t = time.perf_counter()
        ctx = rows = None  # the previous round's context goes before the next is built
        gc.collect()
        ctx = kb.Context(kb_catalog(snap, cor.snap_edges, cor.extra_values), rules)
        T["context_audit"] += time.perf_counter() - t
        t = time.perf_counter()
        items = [it for it in cor.items if it.kind != SAME_SLOT] + clean[r::rounds]
        rows, found = audit_rows_of(ctx, f, items)
        if not found.all():
            raise SystemExit(f"{name}: {int((~found).sum())} audit items not found in the corrupted catalog")
        judged.append(judge(ctx, rows))
        all_items += items
        T["judge_audit"] += time.perf_counter() - t
    t = time.perf_counter()
    ctx = rows = None
    gc.collect()
    res = score(all_items, Judged.concat(judged), ai.na)
    # the facts the corruptions replaced, audited in the clean catalog
    same = [it for cor in cors for it in cor.items if it.kind == SAME_SLOT]
    clean_ctx = kb.Context(full_cat, rules)
    rows_same, found_same = audit_rows_of(clean_ctx, f, same)
    j_same = judge(clean_ctx, rows_same)
    kinds_same = np.array([it.of for it, ok in zip(same, found_same) if ok], dtype=object)
    for kind, d in res["kinds"].items():
        if d.get("n"):
            m = kinds_same == kind
            b = int((j_same.status[m] > 0).sum())
            d["same_slot_clean"] = {"n": int(m.sum()), "blocked": b, "blocked_share": _share(b, int(m.sum()))}
    res["rounds"] = rounds
    T["judge_audit"] += time.perf_counter() - t
    return res, dict(T)


def audit_rows_of(ctx: kb.Context, f: Facts, items: Sequence[Item]) -> tuple[Rows, np.ndarray]:
    """The audit rows (``kb.Context.audit_rows``) of the items' facts or brands, and which items were found."""
    cat = ctx.catalog
    rows = ctx.audit_rows(brands=True)
    F = cat.n_facts
    keys = ctx._fact_keys
    bp = np.flatnonzero(cat.product_brand >= 0)
    idx, found = [], []
    for it in items:
        p = cat.product_index.get(str(f.pkeys[it.product]), -1)
        r = -1
        if p >= 0 and it.attribute == kb.BRAND_ATTRIBUTE:
            j = int(np.searchsorted(bp, p))
            if j < len(bp) and bp[j] == p and cat.brands[cat.product_brand[p]] == norm_key(it.value):
                r = F + j
        elif p >= 0:
            a = ctx.attribute_code.get(it.attribute)
            v = ctx.value_lookup[a].get(it.value) if a is not None else None
            if v is not None:
                k = p * ctx.n_values + v
                j = int(np.searchsorted(keys, k))
                if j < len(keys) and keys[j] == k:
                    r = j
        found.append(r >= 0)
        if r >= 0:
            idx.append(r)
    ix = np.array(idx, np.int64)
    sub = Rows(ctx, rows.product[ix], rows.attribute[ix], rows.value[ix], rows.brand[ix], audit=True,
               fact=rows.fact[ix])
    return sub, np.array(found, bool)


def clean_audit(f: Facts, touched: set[int], n: int, seed: int) -> list[Item]:
    """``n`` random asserted facts and brands of products no corruption touched."""
    rng = np.random.default_rng([seed, 2, 99])
    bp = np.flatnonzero(f.pbrand >= 0)
    total = len(f.fp) + len(bp)
    out: list[Item] = []
    tried: set[int] = set()
    while len(out) < n and len(tried) < total:
        j = int(rng.integers(total))
        if j in tried:
            continue
        tried.add(j)
        if j < len(f.fp):
            p, v = int(f.fp[j]), int(f.fv[j])
            if p not in touched:
                out.append(Item(CLEAN, p, f.attr_names[f.v_attr[v]], f.v_norm[v], f.v_display[v]))
        else:
            p = int(bp[j - len(f.fp)])
            if p not in touched:
                b = int(f.pbrand[p])
                out.append(Item(CLEAN, p, kb.BRAND_ATTRIBUTE, f.brand_keys[b], f.brand_keys[b]))
    return out


# -- judging and scoring ---------------------------------------------------------------------------------------
@dataclass
class Judged:
    status: np.ndarray  # (N,) int8 0 accept / 1 needs_review / 2 reject
    fired: np.ndarray  # (N, L) bool: label l fired on row i
    labels: list[str]
    label_types: list[str]
    pairs: set[tuple[int, str]]  # (row, rule id) of every violation
    seen: np.ndarray  # (N,) bool: the value (brand) is asserted on another product of the catalog

    @staticmethod
    def concat(parts: Sequence["Judged"]) -> "Judged":
        """Rows of several judgements (of one rule set) one after the other."""
        labels = parts[0].labels
        if any(p.labels != labels for p in parts):
            raise ValueError("judgements of different rule sets")
        pairs: set[tuple[int, str]] = set()
        off = 0
        for p in parts:
            pairs |= {(r + off, k) for r, k in p.pairs}
            off += len(p.status)
        return Judged(np.concatenate([p.status for p in parts]), np.concatenate([p.fired for p in parts]), labels,
                      parts[0].label_types, pairs, np.concatenate([p.seen for p in parts]))


def seen_rows(ctx: kb.Context, rows: Rows) -> np.ndarray:
    """(N,) bool: the row's value (its brand, for a brand row) is asserted on some other product."""
    own = 1 if rows.audit else 0
    out = np.zeros(len(rows), bool)
    val = ~rows.is_brand & (rows.value >= 0) & (rows.value < ctx.n_values)
    out[val] = ctx.values.count[rows.value[val]] - own >= 1
    br = rows.is_brand & (rows.brand >= 0)
    totals = np.bincount(ctx.catalog.product_brand[ctx.catalog.product_brand >= 0], minlength=len(ctx.catalog.brands))
    out[br] = totals[rows.brand[br]] - own >= 1
    return out


def judge(ctx: kb.Context, rows: Rows) -> Judged:
    status, v_rows, v_rules = ctx.judge(rows)
    labels: list[str] = []
    types: list[str] = []
    lab_of = np.zeros(len(ctx.compiled) + 1, np.int64)
    for k in range(-1, len(ctx.compiled)):
        c = ctx.compiled_rule(k)
        lab = rule_label(c.rule) if k >= 0 else c.rule.id
        if lab not in labels:
            labels.append(lab)
            types.append(c.rule.type)
        lab_of[k + 1] = labels.index(lab)
    fired = np.zeros((len(rows), len(labels)), bool)
    if len(v_rows):
        fired[v_rows, lab_of[v_rules + 1]] = True
    ids = [ctx.compiled_rule(k).rule.id for k in range(-1, len(ctx.compiled))]
    pairs = {(int(r), ids[int(k) + 1]) for r, k in zip(v_rows.tolist(), v_rules.tolist())}
    return Judged(status, fired, labels, types, pairs, seen_rows(ctx, rows))


def _share(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score(items: Sequence[Item], j: Judged, na: dict[str, str]) -> dict[str, Any]:
    """Per kind, per rule and overall figures of one path."""
    kinds = np.array([it.kind for it in items], dtype=object)
    of = np.array([it.of or "" for it in items], dtype=object)
    caught = j.status > 0
    is_inj = np.isin(kinds, KINDS)
    is_clean = kinds == CLEAN
    out: dict[str, Any] = {"kinds": {}, "rules": {}}
    for kind in KINDS:
        if kind in na:
            out["kinds"][kind] = {"n": 0, "na": na[kind]}
            continue
        m = kinds == kind
        n = int(m.sum())
        designed = [l for l, t in enumerate(j.label_types) if t in DESIGNED[kind]]
        by_designed = j.fired[m][:, designed].any(1) if designed else np.zeros(n, bool)
        same = (kinds == SAME_SLOT) & (of == kind)
        d = {"n": n, "caught": int(caught[m].sum()), "rejected": int((j.status[m] == 2).sum()),
             "review": int((j.status[m] == 1).sum()), "recall": _share(int(caught[m].sum()), n),
             "recall_designed_types": _share(int(by_designed.sum()), n), "designed_types": list(DESIGNED[kind]),
             "caught_by": {lab: int(c) for lab, c in zip(j.labels, j.fired[m].sum(0).tolist()) if c},
             "same_slot_clean": {"n": int(same.sum()), "blocked": int(caught[same].sum()),
                                 "blocked_share": _share(int(caught[same].sum()), int(same.sum()))}}
        if n == 0:
            d["na"] = "no place in this catalog to inject it"
        if kind == "implication":
            rows = np.flatnonzero(m)
            hit = sum((int(r), items[r].rule) in j.pairs for r in rows.tolist())
            d["caught_by_the_broken_rule"] = _share(hit, n)
        ex = [it for it, mm in zip(items, m) if mm][:3]
        d["examples"] = [f"{it.attribute} = {it.display!r}" + (f" ({it.note})" if it.note else "") for it in ex]
        out["kinds"][kind] = d
    n_inj, n_clean = int(is_inj.sum()), int(is_clean.sum())
    for l, (lab, typ) in enumerate(zip(j.labels, j.label_types)):
        fi, fc = int(j.fired[is_inj, l].sum()), int(j.fired[is_clean, l].sum())
        targets = [k for k in KINDS if typ in DESIGNED[k] and k not in na and (kinds == k).any()]
        tm = np.isin(kinds, targets)
        out["rules"][lab] = {
            "type": typ, "fired_injected": fi, "fired_clean": fc,
            "precision": _share(fi, fi + fc), "target_kinds": targets,
            "recall_target_kinds": _share(int(j.fired[tm, l].sum()), int(tm.sum())) if targets else None,
            "recall_all_injected": _share(fi, n_inj), "clean_fire_rate": _share(fc, n_clean)}
    kind_recalls = [d["recall"] for d in out["kinds"].values() if d.get("n")]
    blocked = int(caught[is_clean].sum())
    out["overall"] = {
        "injected": n_inj, "caught": int(caught[is_inj].sum()), "recall": _share(int(caught[is_inj].sum()), n_inj),
        "recall_macro_over_kinds": round(float(np.mean(kind_recalls)), 4) if kind_recalls else None,
        "clean": n_clean, "clean_blocked": blocked, "clean_blocked_share": _share(blocked, n_clean),
        "clean_rejected": int((j.status[is_clean] == 2).sum()),
        "clean_blocked_by": {lab: int(c) for lab, c in zip(j.labels, j.fired[is_clean].sum(0).tolist()) if c},
        "clean_seen": {"n": int((is_clean & j.seen).sum()), "blocked": int((is_clean & j.seen & caught).sum()),
                       "blocked_share": _share(int((is_clean & j.seen & caught).sum()), int((is_clean & j.seen).sum()))},
        "clean_unseen": {"n": int((is_clean & ~j.seen).sum()), "blocked": int((is_clean & ~j.seen & caught).sum()),
                         "blocked_share": _share(int((is_clean & ~j.seen & caught).sum()),
                                                 int((is_clean & ~j.seen).sum()))},
        "clean_blocked_attributes": dict(Counter(it.attribute for it, c in zip(items, caught) if it.kind == CLEAN and c)
                                         .most_common(8)),
        "precision_pool": _share(int(caught[is_inj].sum()), int(caught[is_inj].sum()) + blocked),
    }
    o = out["overall"]
    o["meets_recall_target"] = None if o["recall"] is None else o["recall"] >= TARGET_RECALL
    o["meets_blocked_target"] = None if o["clean_blocked_share"] is None else o["clean_blocked_share"] <= TARGET_BLOCKED
    return out


# -- real model errors -------------------------------------------------------------------------------------------
def real_model(world: PredictionWorld, ctx: kb.Context, model: str, threads: int, seed: int) -> dict[str, Any]:
    """Top-1 predictions of a baseline (fitted on the train facts) on the held-out pairs (``world.held``),
    judged: errors caught, correct ones blocked."""
    from gnn.baselines import get_baseline

    f, sp = world.f, world.split
    kw: dict[str, Any] = {"n_jobs": threads, "seed": seed} if model in ("tfidf", "tfidf-props") else {}
    t = time.perf_counter()
    m = get_baseline(model, **kw).fit(f.snap, sp, on=("train",))
    fit_s = time.perf_counter() - t
    test = sp.pairs(world.held)
    t = time.perf_counter()
    top = m.score(test).top1()
    score_s = time.perf_counter() - t
    items, conf = [], top.confidence
    for a, pair, ch in zip(top.attribute.tolist(), top.pairs.tolist(), top.choice.tolist()):
        node = int(sp.candidates(a)[ch])
        p = int(sp.product[pair])
        if a == world.brand_attr:
            items.append(Item("top1", p, kb.BRAND_ATTRIBUTE, f.brand_keys[node], f.brand_keys[node]))
        else:
            items.append(Item("top1", p, sp.attribute_names[a], f.v_norm[node], f.v_display[node]))
    t = time.perf_counter()
    preds = prediction_rows(f, items, conf)
    j = judge(ctx, ctx.rows_for(preds))
    judge_s = time.perf_counter() - t
    correct = top.correct
    err = ~correct
    caught = j.status > 0
    out: dict[str, Any] = {
        "model": model, "config": m.config(), "held": world.held, "pairs": int(len(test)), "hits@1": _share(int(correct.sum()), len(correct)),
        "errors": int(err.sum()), "errors_caught": int(caught[err].sum()),
        "errors_caught_share": _share(int(caught[err].sum()), int(err.sum())),
        "errors_rejected": int((j.status[err] == 2).sum()), "errors_review": int((j.status[err] == 1).sum()),
        "correct": int(correct.sum()), "correct_blocked": int(caught[correct].sum()),
        "correct_blocked_share": _share(int(caught[correct].sum()), int(correct.sum())),
        "correct_rejected": int((j.status[correct] == 2).sum()),
        "fit_seconds": round(fit_s, 1), "score_seconds": round(score_s, 1), "judge_seconds": round(judge_s, 1),
        "rules": {},
    }
    out["meets_blocked_target"] = (None if out["correct_blocked_share"] is None
                                   else out["correct_blocked_share"] <= TARGET_BLOCKED)
    for l, (lab, typ) in enumerate(zip(j.labels, j.label_types)):
        fe, fc = int(j.fired[err, l].sum()), int(j.fired[correct, l].sum())
        if fe or fc:
            out["rules"][lab] = {"type": typ, "fired_on_errors": fe, "fired_on_correct": fc,
                                 "precision": _share(fe, fe + fc), "errors_share": _share(fe, int(err.sum())),
                                 "correct_share": _share(fc, int(correct.sum()))}
    attrs = np.array([it.attribute for it in items], dtype=object)
    out["correct_blocked_attributes"] = dict(Counter(attrs[correct & caught].tolist()).most_common(8))
    out["errors_caught_attributes"] = dict(Counter(attrs[err & caught].tolist()).most_common(8))
    out["errors_attributes"] = dict(Counter(attrs[err].tolist()).most_common(8))
    return out


# -- mined rules ----------------------------------------------------------------------------------------------------
def mined_summary(mined: kb.RuleSet, impls: Sequence[kb.MinedImplication], top: int = 8) -> dict[str, Any]:
    def dist(xs: Sequence[float]) -> dict[str, float] | None:
        if not xs:
            return None
        a = np.asarray(xs, float)
        return {"min": round(float(a.min()), 4), "median": round(float(np.median(a)), 4), "max": round(float(a.max()), 4)}

    appl = [r for r in mined if r.type == "applicability"]
    cats = [r for r in impls if r.condition is None]
    vals = [r for r in impls if r.condition is not None]
    best = sorted(impls, key=lambda r: (-r.support, -r.confidence, r.category))[:top]
    return {
        "rules": len(mined), "implications": len(impls), "category_implications": len(cats),
        "value_implications": len(vals),
        "applicability_categories": len(appl[0].params.categories) if appl else 0,
        "support": dist([r.support for r in impls]), "confidence": dist([r.confidence for r in impls]),
        "lift": dist([r.lift for r in vals if r.lift is not None]),
        "confidence_histogram": {k: int(v) for k, v in zip(
            ("0.95-0.97", "0.97-0.99", "0.99-1.00", "1.00"),
            np.histogram([r.confidence for r in impls], [0.95, 0.97, 0.99, 1.0 - 1e-12, 1.0 + 1e-9])[0])} if impls else {},
        "top": [_impl_text(r) for r in best],
    }


# -- one catalog ------------------------------------------------------------------------------------------------------
def load_snapshot_of(name: str, work: Path, max_products: int | None, log: Callable[[str], None] = print) -> Any:
    from bench._catalog import CATALOGS, read_products, write_snapshot
    from gnn.snapshot import load_snapshot

    t = time.perf_counter()
    prods = read_products(CATALOGS[name], name, max_products)
    path = write_snapshot(prods, work / name / "snapshot", mapping_name=name, source=str(CATALOGS[name]))
    snap = load_snapshot(path)
    log(f"[{name}] {len(prods)} products read and snapshotted in {time.perf_counter() - t:.1f} s")
    return snap


def run_catalog(name: str, snap: Any, *, per_kind: int, n_clean: int, seed: int, level: int, model: str | None,
                threads: int, rounds: int = 10, held: str = "test", audit_seed: int | None = None,
                paths: Sequence[str] = PATHS, log: Callable[[str], None] = print) -> dict[str, Any]:
    from gnn.protocol import make_split

    T: dict[str, float] = {}
    rss: dict[str, float] = {}
    t0 = time.perf_counter()
    f = Facts(snap)
    split = make_split(snap, seed=seed)
    out: dict[str, Any] = {
        "counts": {t: snap.num_nodes(t) for t in ("product", "brand", "category", "attribute", "value")},
        "facts": int(len(f.fp)), "brand_facts": int((f.pbrand >= 0).sum()), "split": split.summary()}

    audit_seed = seed if audit_seed is None else audit_seed
    # -- the predictions path: the visible catalog, rules mined from it ---------------------------------------
    if "predictions" in paths:
        _predictions_path(name, snap, f, split, out, T, rss, per_kind=per_kind, n_clean=n_clean, seed=seed,
                          level=level, model=model, threads=threads, held=held, log=log)
    if "audit" in paths:
        _audit_part(name, snap, f, out, T, rss, per_kind=per_kind, n_clean=n_clean, seed=audit_seed, level=level,
                    rounds=rounds, log=log)
    out["rss_mb"] = rss
    T["total"] = time.perf_counter() - t0
    out["seconds"] = {k: round(v, 1) for k, v in T.items()}
    return out


def _predictions_path(name: str, snap: Any, f: Facts, split: Any, out: dict[str, Any], T: dict[str, float],
                      rss: dict[str, float], *, per_kind: int, n_clean: int, seed: int, level: int, model: str | None,
                      threads: int, held: str, log: Callable[[str], None]) -> None:
    t = time.perf_counter()
    world = PredictionWorld(f, split, held)
    vis_cat = kb_catalog(snap, world.edges)
    vis_rules, vis_mined, vis_impls = rules_for(name, vis_cat)
    T["mine_visible"] = time.perf_counter() - t
    t = time.perf_counter()
    vis_ctx = kb.Context(vis_cat, vis_rules)
    T["context_visible"] = time.perf_counter() - t
    inj = Injector(f, vis_rules, seed=seed, level=level)
    impl_ids = [r.id for r in vis_mined if r.type == "implication"]
    t = time.perf_counter()
    items, na = inject_predictions(world, inj, vis_impls, impl_ids, per_kind)
    items += clean_predictions(world, n_clean, seed)
    T["inject_predictions"] = time.perf_counter() - t
    t = time.perf_counter()
    j = judge(vis_ctx, vis_ctx.rows_for(prediction_rows(f, items)))
    T["judge_predictions"] = time.perf_counter() - t
    out["rules"] = {"default+shipped": len(vis_rules) - len(vis_mined), "shipped_files": list(SHIPPED_RULES.get(name, ())),
                    "mined_visible": len(vis_mined), "warnings": vis_ctx.warnings[:10]}
    out["numeric_attributes"] = {f.attr_names[a]: {"unit": u, "typical": q} for a, (u, q) in inj.numeric.items()}
    out["single_valued_attributes"] = len(inj.single)
    out["predictions"] = score(items, j, na)
    rss["predictions"] = _rss_mb()
    log(f"[{name}] predictions path: {_brief(out['predictions']['overall'])}; RSS {rss['predictions']} MB")

    # -- real model errors, judged against the same visible catalog and rules -----------------------------------
    if model:
        t = time.perf_counter()
        out["model"] = real_model(world, vis_ctx, model, threads, seed)
        T["model"] = time.perf_counter() - t
        rss["model"] = _rss_mb()
        log(f"[{name}] {model}: hits@1 {out['model']['hits@1']}, errors caught {out['model']['errors_caught_share']}, "
            f"correct blocked {out['model']['correct_blocked_share']}; RSS {rss['model']} MB")
    # a context holds dense per-product arrays for every compiled rule (GBs with mined rules): one at a time
    del vis_ctx, vis_cat, j, items
    gc.collect()


def _audit_part(name: str, snap: Any, f: Facts, out: dict[str, Any], T: dict[str, float], rss: dict[str, float], *,
                per_kind: int, n_clean: int, seed: int, level: int, rounds: int, log: Callable[[str], None]) -> None:
    # -- the audit path: the full catalog, corrupted; rules mined from the clean one ------------------------------
    t = time.perf_counter()
    full_cat = kb_catalog(snap)
    rules, mined, impls = rules_for(name, full_cat)
    T["mine_full"] = time.perf_counter() - t
    out["mined"] = mined_summary(mined, impls)
    out["audit"], ta = audit_path(name, snap, f, rules, mined, impls, per_kind=per_kind, n_clean=n_clean, seed=seed,
                                  level=level, rounds=rounds, full_cat=full_cat)
    T.update(ta)
    rss["audit"] = _rss_mb()
    log(f"[{name}] audit path: {_brief(out['audit']['overall'])}; RSS {rss['audit']} MB")


def _rss_mb() -> float:
    """This process's resident set now, MB."""
    with open("/proc/self/statm") as fh:
        return round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _brief(o: dict[str, Any]) -> str:
    return (f"recall {o['recall']} ({o['caught']}/{o['injected']}), clean blocked {o['clean_blocked_share']} "
            f"({o['clean_blocked']}/{o['clean']})")


# -- report ------------------------------------------------------------------------------------------------------------
def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def report(record: dict[str, Any]) -> str:
    lines: list[str] = []
    st = record["settings"]
    lines.append(f"{record['when']}, commit {record['commit']}; seed {st['seed']}, {st['per_kind']} per kind, "
                 f"{st['clean']} clean; clean rows of the predictions path from the {st.get('clean_from', 'test')} "
                 f"pairs, audit seed {st.get('audit_seed', st['seed'])}; model {st['model'] or '(none)'}; "
                 f"{record['seconds']} s")
    for name, c in record["catalogs"].items():
        lines.append("")
        lines.append(f"== {name}: {c['counts']['product']} products, {c['facts']} facts, {c['brand_facts']} brands "
                     f"asserted; rules {c['rules']['default+shipped']} default+shipped + {c['rules']['mined_visible']} "
                     f"mined (visible) / {c.get('mined', {}).get('rules', '—')} mined (full) ==")
        for path in PATHS:
            if path not in c:
                continue
            r = c[path]
            lines.append(f"-- {path} path --")
            lines.append(f"{'kind':<18} {'n':>5} {'caught':>6} {'rej':>5} {'rev':>5} {'recall':>7} {'designed':>8} "
                         f"{'same-slot clean blocked':>24}")
            for kind, d in r["kinds"].items():
                if not d.get("n"):
                    lines.append(f"{kind:<18} {'n/a':>5}  {d.get('na', '')}")
                    continue
                ss = d["same_slot_clean"]
                lines.append(f"{kind:<18} {d['n']:>5} {d['caught']:>6} {d['rejected']:>5} {d['review']:>5} "
                             f"{_f(d['recall']):>7} {_f(d['recall_designed_types']):>8} "
                             f"{(_f(ss['blocked_share']) + ' of ' + str(ss['n'])) if ss['n'] else '—':>24}")
            o = r["overall"]
            lines.append(f"overall: recall {_f(o['recall'])} ({o['caught']}/{o['injected']}; macro over kinds "
                         f"{_f(o['recall_macro_over_kinds'])}); clean blocked {_f(o['clean_blocked_share'])} "
                         f"({o['clean_blocked']}/{o['clean']}, {o['clean_rejected']} rejected); targets: recall >= "
                         f"{TARGET_RECALL} {'met' if o['meets_recall_target'] else 'NOT met'}, blocked <= "
                         f"{TARGET_BLOCKED:.0%} {'met' if o['meets_blocked_target'] else 'NOT met'}")
            lines.append(f"clean rows whose value another product has: blocked {_f(o['clean_seen']['blocked_share'])} "
                         f"of {o['clean_seen']['n']}; whose value no other product has: blocked "
                         f"{_f(o['clean_unseen']['blocked_share'])} of {o['clean_unseen']['n']}")
            if o["clean_blocked_by"]:
                lines.append("clean blocked by: " + ", ".join(f"{k} {v}" for k, v in
                                                              sorted(o["clean_blocked_by"].items(), key=lambda kv: -kv[1])))
            lines.append(f"{'rule':<44} {'type':<14} {'inj':>5} {'clean':>5} {'prec':>6} {'recall(targets)':>15} "
                         f"{'clean rate':>10}")
            for lab, d in sorted(r["rules"].items(), key=lambda kv: -(kv[1]["fired_injected"] + kv[1]["fired_clean"])):
                lines.append(f"{lab[:44]:<44} {d['type']:<14} {d['fired_injected']:>5} {d['fired_clean']:>5} "
                             f"{_f(d['precision']):>6} {_f(d['recall_target_kinds']):>15} {_f(d['clean_fire_rate'], 4):>10}")
        m = c.get("model")
        if m:
            lines.append(f"-- real {m['model']} top-1 on {m['pairs']} test pairs: hits@1 {_f(m['hits@1'])} --")
            lines.append(f"errors {m['errors']}: caught {_f(m['errors_caught_share'])} ({m['errors_rejected']} rejected, "
                         f"{m['errors_review']} review); correct {m['correct']}: blocked {_f(m['correct_blocked_share'])} "
                         f"({m['correct_rejected']} rejected; <= {TARGET_BLOCKED:.0%}: "
                         f"{'met' if m['meets_blocked_target'] else 'NOT met'})")
            for lab, d in sorted(m["rules"].items(), key=lambda kv: -(kv[1]["fired_on_errors"] + kv[1]["fired_on_correct"])):
                lines.append(f"  {lab[:44]:<44} on errors {d['fired_on_errors']:>6} ({_f(d['errors_share'])}), on correct "
                             f"{d['fired_on_correct']:>6} ({_f(d['correct_share'])}), precision {_f(d['precision'])}")
        mm = c.get("mined")
        if not mm:
            continue
        lines.append(f"-- mined rules (full catalog): {mm['rules']} rules = {mm['implications']} implications "
                     f"({mm['category_implications']} category, {mm['value_implications']} value) + applicability over "
                     f"{mm['applicability_categories']} categories --")
        if mm["support"]:
            lines.append(f"support min/median/max {mm['support']['min']:.0f}/{mm['support']['median']:.0f}/"
                         f"{mm['support']['max']:.0f}; confidence {mm['confidence']['min']:.3f}/"
                         f"{mm['confidence']['median']:.3f}/{mm['confidence']['max']:.3f}; histogram {mm['confidence_histogram']}")
            for t in mm["top"][:5]:
                lines.append(f"  {t}")
    return "\n".join(lines)


def run(*, catalogs: Sequence[str], per_kind: int = 200, n_clean: int = 2000, seed: int = 0, level: int = 2,
        model: str | None = "tfidf", threads: int = 1, max_products: int | None = None, audit_rounds: int = 10,
        clean_from: str = "test", audit_seed: int | None = None, paths: Sequence[str] = PATHS, jobs: int = 1,
        results: Path | None = RESULTS, snapshots: dict[str, Any] | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark; ``snapshots`` (name -> Snapshot) skips reading the catalog files (tests)."""
    from threadpoolctl import threadpool_limits

    from bench._neo4j import git_commit
    from bench.bench_catalogs import uncommitted_changes

    threadpool_limits(threads)
    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(),
        "uncommitted_changes": uncommitted_changes(),
        "settings": {"catalogs": list(catalogs), "per_kind": per_kind, "clean": n_clean, "seed": seed,
                     "clean_from": clean_from, "audit_seed": seed if audit_seed is None else audit_seed,
                     "paths": list(paths),
                     "split": {"fractions": [0.8, 0.1, 0.1], "cold_share": 0.05, "seed": seed},
                     "category_level": level, "audit_rounds": audit_rounds, "model": model, "threads": threads, "max_products": max_products,
                     "mining": dataclasses.asdict(MINING), "targets": {"recall": TARGET_RECALL,
                                                                                 "blocked": TARGET_BLOCKED}},
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                 "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
        "catalogs": {},
    }
    record["settings"]["jobs"] = jobs
    work = Path(tempfile.mkdtemp(prefix="attrgraph-bench-rules-"))
    kw = dict(per_kind=per_kind, n_clean=n_clean, seed=seed, level=level, model=model, threads=threads,
              rounds=audit_rounds, held=clean_from, audit_seed=audit_seed, paths=paths)
    try:
        if jobs > 1 and len(catalogs) > 1:  # catalogs in parallel processes (each single-threaded)
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as ex:
                futs = {name: ex.submit(_one_catalog, name, snapshots, work, max_products, kw) for name in catalogs}
                for name in catalogs:
                    record["catalogs"][name] = futs[name].result()
        else:
            for name in catalogs:
                record["catalogs"][name] = _one_catalog(name, snapshots, work, max_products, kw, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    text = report(record)
    log("\n" + text)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        with open(results, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        log(f"appended to {results}")
    return record


def is_decision_run(record: dict[str, Any]) -> bool:
    """A run on the validation pairs (``--clean-from valid``), where thresholds are chosen, not reported."""
    return record.get("settings", {}).get("clean_from", "test") == "valid"


def readme_records(records: Sequence[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the latest reported run: test pairs, both paths; the latest decision run before it or after it)."""
    rep = [r for r in records if not is_decision_run(r) and set(r["settings"].get("paths", PATHS)) >= set(PATHS)]
    dec = [r for r in records if is_decision_run(r) and set(r["settings"].get("paths", PATHS)) >= set(PATHS)]
    return (rep[-1] if rep else None), (dec[-1] if dec else None)


def _one_catalog(name: str, snapshots: dict[str, Any] | None, work: Path, max_products: int | None,
                 kw: dict[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    threadpool_limits(kw["threads"])
    snap = snapshots[name] if snapshots and name in snapshots else load_snapshot_of(name, work, max_products, log)
    out = run_catalog(name, snap, log=log, **kw)
    shutil.rmtree(work / name, ignore_errors=True)
    return out


def readme_markdown(record: dict[str, Any], decided_on: dict[str, Any] | None = None) -> str:
    """The README's rules table (bench/trust_tables.py) from one recorded run (and, with ``decided_on``, the
    validation run its thresholds were chosen on)."""
    from bench.catalogs_table import _table

    def n(x: Any, nd: int = 3) -> str:
        return "—" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x))

    rows, kinds_rows = [], []
    kinds: list[str] = []
    for name, c in record["catalogs"].items():
        po, ao, m, mined = c["predictions"]["overall"], c["audit"]["overall"], c.get("model") or {}, c.get("mined") or {}
        sup, conf = mined.get("support") or {}, mined.get("confidence") or {}
        rows.append([name, f"{n(po['recall'])} ({po['caught']:,}/{po['injected']:,})", n(po["clean_blocked_share"]),
                     f"{n(ao['recall'])} ({ao['caught']:,}/{ao['injected']:,})", n(ao["clean_blocked_share"]),
                     f"{m.get('model', '—')} {n(m.get('hits@1'))}", n(m.get("errors_caught_share")),
                     n(m.get("correct_blocked_share")), n(mined.get("rules")),
                     f"{n(sup.get('min'), 0)} / {n(sup.get('median'), 0)} / {n(sup.get('max'), 0)}" if sup else "—",
                     f"{n(conf.get('min'))} / {n(conf.get('median'))} / {n(conf.get('max'))}" if conf else "—"])
        for k in c["predictions"]["kinds"]:
            if k not in kinds:
                kinds.append(k)
    for k in kinds:
        row = [k]
        for c in record["catalogs"].values():
            kp, ka = c["predictions"]["kinds"].get(k), c["audit"]["kinds"].get(k)
            ok = isinstance(kp, dict) and isinstance(ka, dict) and kp.get("recall") is not None
            row.append(f"{n(kp.get('recall'))} / {n(ka.get('recall'))}" if ok else "n/a")
        kinds_rows.append(row)
    st = record["settings"]
    decided = ""
    if decided_on is not None:
        ds = decided_on["settings"]
        drows = []
        for name, c in decided_on["catalogs"].items():
            po, ao = c["predictions"]["overall"], c["audit"]["overall"]
            drows.append([name, f"{n(po['recall'])} ({po['caught']:,}/{po['injected']:,})",
                          f"{n(po['clean_blocked_share'])} ({po['clean_blocked']:,}/{po['clean']:,})",
                          f"{n(ao['recall'])} ({ao['caught']:,}/{ao['injected']:,})",
                          f"{n(ao['clean_blocked_share'])} ({ao['clean_blocked']:,}/{ao['clean']:,})"])
        decided = (f"\n\nWhere the thresholds were chosen (commit {decided_on['commit']}, {decided_on['when']}; "
                   f"`--clean-from valid --audit-seed {ds.get('audit_seed')}`: the predictions path judges the valid "
                   f"pairs against the train facts, the audit path corrupts and samples other facts (seed "
                   f"{ds.get('audit_seed')}); mining thresholds "
                   f"min_support {ds['mining']['min_support']}, min_confidence {ds['mining']['min_confidence']}, "
                   f"applicability {ds['mining']['applicability_min_support']} products and "
                   f"{ds['mining']['applicability_min_share']} share):\n\n"
                   + _table(["catalog", "valid predictions: recall", "clean blocked", "audit (seed "
                             f"{ds.get('audit_seed')}): recall", "clean blocked"], drows))
    return (f"**Rules** (`bench/bench_rules.py`, commit {record['commit']}, {record['when']}; {st['per_kind']} injected "
            f"invalid values per kind and {st['clean']} clean ones per path, seed {st['seed']}; clean rows and model "
            f"errors of the predictions path from the {st.get('clean_from', 'test')} pairs, audit seed "
            f"{st.get('audit_seed', st['seed'])}; caught = rejected or sent "
            f"to review; targets: recall >= {st['targets']['recall']}, clean blocked <= {st['targets']['blocked']}):\n\n"
            + _table(["catalog", "predictions: recall", "clean blocked", "audit: recall", "clean blocked",
                      "model (test Hits@1)", "its errors caught", "its right answers blocked", "mined rules",
                      "support min / median / max", "confidence min / median / max"], rows)
            + "\n\nRecall per injected kind (predictions / audit; n/a: the catalog has nothing of that kind):\n\n"
            + _table(["kind", *record["catalogs"]], kinds_rows) + decided)


def main() -> None:
    from bench._catalog import CATALOGS, catalog_names

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalogs", default="myntra,bigbasket,taobao", help=f"comma-separated: {', '.join(CATALOGS)}")
    ap.add_argument("--per-kind", type=int, default=200, help="injected rows per kind and path")
    ap.add_argument("--clean", type=int, default=2000, help="clean rows per path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clean-from", choices=HELD, default="test",
                    help="predictions path: hide the test pairs (train + valid visible; the recorded figures) or the "
                         "valid pairs (train visible; where thresholds are chosen): injected, clean and real-model rows "
                         "go in those slots")
    ap.add_argument("--audit-seed", type=int, default=None,
                    help="audit path: the seed of its corruptions and clean facts (default --seed; thresholds are "
                         "chosen with --audit-seed 1, the recorded figures use 0)")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated: {', '.join(PATHS)}")
    ap.add_argument("--mining", default="", help="mining thresholds other than kb.MiningConfig's defaults, e.g. "
                    "min_confidence=0.99,min_support=30 (the injected implications break the rules mined with them)")
    ap.add_argument("--category-level", type=int, default=2, help="foreign_category: the category level (1 = root)")
    ap.add_argument("--model", default="tfidf", help="baseline for the real-error figures (gnn.baselines)")
    ap.add_argument("--no-model", action="store_true", help="skip the real-error figures")
    ap.add_argument("--audit-rounds", type=int, default=10,
                    help="audit path: corruptions spread over this many corrupted catalogs (few per catalog)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-products", type=int, default=None, help="read only the first N rows of each catalog")
    ap.add_argument("--jobs", type=int, default=1, help="catalogs judged in this many parallel processes")
    ap.add_argument("--no-save", action="store_true", help=f"do not append to {RESULTS.relative_to(ROOT)}")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    names = catalog_names(ap, args.catalogs, CATALOGS)
    paths = [x.strip() for x in args.paths.split(",") if x.strip()]
    global MINING
    if args.mining:
        fields = {f.name: f.type for f in dataclasses.fields(kb.MiningConfig)}
        kw: dict[str, Any] = {}
        for part in args.mining.split(","):
            k, _, v = part.partition("=")
            if k.strip() not in fields:
                ap.error(f"--mining: unknown threshold {k.strip()!r}; valid: {', '.join(fields)}")
            kw[k.strip()] = type(getattr(kb.MiningConfig(), k.strip()))(v)
        MINING = kb.MiningConfig(**kw)
    if not paths or any(x not in PATHS for x in paths):
        ap.error(f"--paths: comma-separated of {', '.join(PATHS)}, got {args.paths!r}")
    run(catalogs=names, per_kind=args.per_kind, n_clean=args.clean, seed=args.seed, level=args.category_level,
        model=None if args.no_model else args.model, threads=args.threads, max_products=args.max_products,
        audit_rounds=args.audit_rounds, clean_from=args.clean_from, audit_seed=args.audit_seed, paths=paths,
        jobs=args.jobs,
        results=None if args.no_save else RESULTS)


if __name__ == "__main__":
    main()
