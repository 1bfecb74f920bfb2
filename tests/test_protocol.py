"""The evaluation protocol: seeded pair splits, cold-start products, no leakage into the visible
graph, applicability walking up the category tree, literal value-in-text detection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gnn.protocol import (
    BRAND, COLD, TEST, TRAIN, VALID, ProtocolError, applicable_attributes, leaf_categories, make_split,
    product_texts, value_in_text, visible_edges,
)
from gnn.snapshot import NODE_TYPES, Snapshot, load_snapshot


def write_snapshot(root: Path, products: list[dict[str, Any]]) -> Path:
    """A snapshot on disk (the format graph.export writes) from product dicts:
    ``{"key", "title", "description", "brand", "category": "A > X", "facts": {attribute: [values]}}``
    (optionally ``"props": {name: value}``, the mapping's product properties).
    Every level of each category path becomes a category node, linked child -> parent."""
    cats: set[str] = set()
    for p in products:
        parts = p["category"].split(" > ")
        cats.update(" > ".join(parts[: i + 1]) for i in range(len(parts)))
    attrs = sorted({a for p in products for a in p.get("facts", {})})
    values = sorted({(a, v.casefold()) for p in products for a, vs in p.get("facts", {}).items() for v in vs})
    brands = sorted({p["brand"].casefold() for p in products if p.get("brand")})
    keys = sorted(p["key"] for p in products)
    nodes = {
        "product": [next({"key": p["key"], "title": p.get("title", ""), "description": p.get("description", ""),
                          **({"props": p["props"]} if "props" in p else {})}
                         for p in products if p["key"] == k) for k in keys],
        "brand": [{"key": b, "name": b.title()} for b in brands],
        "category": [{"key": c, "name": c.split(" > ")[-1], "level": c.count(" > ") + 1} for c in sorted(cats)],
        "attribute": [{"key": a} for a in attrs],
        "value": [{"key": [a, v], "attribute": a, "norm": v, "value": v.title()} for a, v in values],
    }
    pix = {k: i for i, k in enumerate(keys)}
    cix = {c["key"]: i for i, c in enumerate(nodes["category"])}
    vix = {tuple(v["key"]): i for i, v in enumerate(nodes["value"])}
    bix = {b: i for i, b in enumerate(brands)}
    aix = {a: i for i, a in enumerate(attrs)}
    hv, hb, ic = [], [], []
    for p in products:
        i = pix[p["key"]]
        ic.append((i, cix[p["category"]]))
        if p.get("brand"):
            hb.append((i, bix[p["brand"].casefold()]))
        for a, vs in p.get("facts", {}).items():
            hv.extend((i, vix[(a, v.casefold())]) for v in vs)
    sc = [(cix[c], cix[c.rsplit(" > ", 1)[0]]) for c in sorted(cats) if " > " in c]
    oa = [(i, aix[v["attribute"]]) for i, v in enumerate(nodes["value"])]
    edges = {"has_value": hv, "has_brand": hb, "in_category": ic, "subcategory_of": sc, "of_attribute": oa}
    types = {"has_value": ("product", "value"), "has_brand": ("product", "brand"), "in_category": ("product", "category"),
             "subcategory_of": ("category", "category"), "of_attribute": ("value", "attribute")}
    (root / "nodes").mkdir(parents=True)
    (root / "edges").mkdir()
    for t in NODE_TYPES:
        (root / "nodes" / f"{t}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in nodes[t]))
    for rel, e in edges.items():
        np.save(root / "edges" / f"{rel}.npy", np.array(e, dtype=np.int64).reshape(-1, 2).T.copy())
    manifest = {"format": 1, "fingerprint": "test", "source": {}, "nodes": {t: len(nodes[t]) for t in NODE_TYPES},
                "edges": {r: {"source": types[r][0], "target": types[r][1], "count": len(e)} for r, e in edges.items()}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def catalog(n_x: int = 60, n_y: int = 3, n_z: int = 30, seed: int = 0) -> list[dict[str, Any]]:
    """Shirts (A > X) have colour, size and material; A > Y is tiny; trousers (B > Z) have colour only.
    Product x000 has two colours (a multi-valued pair)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_x):
        colour = ["red", "blue"][i % 2]
        out.append({"key": f"x{i:03d}", "title": f"shirt {colour} zq{i % 3}", "brand": f"b{i % 4}", "category": "A > X",
                    "facts": {"colour": [colour] + (["green"] if i == 0 else []), "size": [["s", "m", "l"][i % 3]],
                              "material": ["cotton"]}})
    for i in range(n_y):
        out.append({"key": f"y{i:03d}", "title": "tiny", "brand": "b0", "category": "A > Y",
                    "facts": {"colour": ["red"]}})
    for i in range(n_z):
        out.append({"key": f"z{i:03d}", "title": f"trouser {int(rng.integers(100))}", "description": "shredded denim",
                    "brand": "b9", "category": "B > Z", "facts": {"colour": ["blue"]}})
    return out


@pytest.fixture()
def snap(tmp_path: Path) -> Snapshot:
    return load_snapshot(write_snapshot(tmp_path / "snap", catalog()))


def _facts(edges: dict[str, np.ndarray]) -> set[tuple[str, int, int]]:
    return {("v", int(p), int(v)) for p, v in edges["has_value"].T} | {("b", int(p), int(b)) for p, b in edges["has_brand"].T}


def test_pairs_group_all_values_and_include_brand(snap: Snapshot) -> None:
    sp = make_split(snap, seed=0)
    # 60 shirts x (colour, size, material, brand) + 3 x (colour, brand) + 30 x (colour, brand)
    assert sp.num_pairs == 60 * 4 + 3 * 2 + 30 * 2
    assert sp.attribute_names[-1] == BRAND and sp.brand_attribute == snap.num_nodes("attribute")
    assert len(sp.values) == sp.num_pairs + 1  # x000's colour pair holds red and green
    x0 = snap.index["product"]["x000"]
    colour = sp.attribute_id("colour")
    pair = int(np.flatnonzero((sp.product == x0) & (sp.attribute == colour))[0])
    assert sorted(snap.keys("value")[v][1] for v in sp.values_of(pair)) == ["green", "red"]
    # candidates: every colour value; truth() gives positions among them
    cands = [snap.keys("value")[v] for v in sp.candidates(colour)]
    assert cands == [("colour", "blue"), ("colour", "green"), ("colour", "red")]
    ip, loc = sp.truth(np.array([pair]))
    assert ip.tolist() == [0, 2] and sorted(loc.tolist()) == [1, 2]
    assert sp.candidates(sp.brand_attribute).tolist() == list(range(snap.num_nodes("brand")))
    with pytest.raises(ProtocolError, match="one attribute"):
        sp.truth(np.array([0, 1]))


def test_split_is_seeded_and_sized(snap: Snapshot) -> None:
    a, b, c = make_split(snap, seed=3), make_split(snap, seed=3), make_split(snap, seed=4)
    assert np.array_equal(a.split, b.split) and np.array_equal(a.cold_products, b.cold_products)
    assert not np.array_equal(a.split, c.split)
    warm = a.num_pairs - int((a.split == COLD).sum())
    assert (a.split == TRAIN).sum() == round(0.8 * warm)
    assert (a.split == VALID).sum() == round(0.1 * warm)
    assert (a.split == TEST).sum() == warm - round(0.8 * warm) - round(0.1 * warm)
    assert len(a.cold_products) == round(0.05 * snap.num_nodes("product"))
    with pytest.raises(ProtocolError, match="summing to 1"):
        make_split(snap, fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ProtocolError, match="cold_share"):
        make_split(snap, cold_share=1.0)


def test_cold_products_keep_no_facts_but_their_category(snap: Snapshot) -> None:
    sp = make_split(snap, seed=1, cold_share=0.2)
    assert len(sp.cold_products) == round(0.2 * 93)
    is_cold = np.isin(sp.product, sp.cold_products)
    assert (sp.split[is_cold] == COLD).all() and (sp.split[~is_cold] != COLD).all()
    vis = visible_edges(snap, sp)
    for rel in ("has_value", "has_brand"):
        assert not np.isin(vis[rel][0], sp.cold_products).any(), rel
    assert np.array_equal(vis["in_category"], snap.edges["in_category"])  # the category remains
    assert np.array_equal(vis["subcategory_of"], snap.edges["subcategory_of"])


def test_visible_edges_never_hold_a_test_fact(snap: Snapshot) -> None:
    sp = make_split(snap, seed=2, fractions=(0.5, 0.2, 0.3), cold_share=0.1)

    def facts_of(*names: str) -> set[tuple[str, int, int]]:
        out = set()
        for p in sp.pairs(*names).tolist():
            kind = "b" if sp.attribute[p] == sp.brand_attribute else "v"
            out |= {(kind, int(sp.product[p]), int(v)) for v in sp.values_of(p)}
        return out

    hidden, train, valid = facts_of("test", "cold"), facts_of("train"), facts_of("valid")
    assert hidden and train and valid
    vis = _facts(visible_edges(snap, sp))
    assert vis == train | valid and not (vis & hidden)
    assert _facts(visible_edges(snap, sp, keep=("train",))) == train
    assert _facts(snap.edges) == train | valid | hidden  # the snapshot itself is untouched
    with pytest.raises(ProtocolError, match="test"):
        visible_edges(snap, sp, keep=("train", "test"))


def test_applicability_walks_up_sparse_leaves(snap: Snapshot) -> None:
    sp = make_split(snap, seed=0, fractions=(1.0, 0.0, 0.0), cold_share=0.0)  # every fact visible: exact shares
    app = applicable_attributes(snap, sp, min_share=0.5, min_products=10)
    cix, pix = snap.index["category"], snap.index["product"]
    mat = sp.attribute_id("material")
    # A > Y has 3 products (< 10): decided at A, where 60 of 63 products have material
    assert app.decided_at[cix["A > Y"]] == cix["A"]
    assert app.observed[cix["A"]] == 63 and app.share[cix["A"], mat] == pytest.approx(60 / 63)
    assert app.matrix[cix["A > Y"], mat] and app.matrix[cix["A > X"], mat] and not app.matrix[cix["B > Z"], mat]
    got = app.for_products(np.array([pix["y000"], pix["z000"]]))
    names = [[sp.attribute_names[a] for a in np.flatnonzero(r)] for r in got]
    assert names == [["colour", "material", "size", BRAND], ["colour", BRAND]]
    # with a higher bar A is sparse too: decided on all 93 products, where material is on 60/93 < 0.7
    app2 = applicable_attributes(snap, sp, min_share=0.7, min_products=70)
    assert app2.decided_at[cix["A > Y"]] == -1 and not app2.matrix[cix["A > Y"], mat]
    assert app2.applies(np.array([pix["y000"]]), np.array([sp.attribute_id("colour")])).tolist() == [True]
    assert leaf_categories(snap)[pix["x001"]] == cix["A > X"]


def test_applicability_counts_visible_facts_only(snap: Snapshot) -> None:
    sp = make_split(snap, seed=0, fractions=(0.5, 0.0, 0.5), cold_share=0.0)
    app = applicable_attributes(snap, sp, min_share=0.01, min_products=1)
    cix, mat = snap.index["category"], sp.attribute_id("material")
    visible_material = int(((sp.attribute == mat) & (sp.split == TRAIN)).sum())
    assert 0 < visible_material < 60
    assert app.share[cix["A > X"], mat] == pytest.approx(visible_material / app.observed[cix["A > X"]])


def test_value_in_text_is_case_insensitive_and_word_bounded(tmp_path: Path) -> None:
    prods = [
        {"key": "1", "title": "A RED shirt", "category": "C", "brand": "Acme", "facts": {"colour": ["red"]}},
        {"key": "2", "title": "shredded jeans", "category": "C", "brand": "Acme", "facts": {"colour": ["red"]}},
        {"key": "3", "title": "jeans", "description": "<b>navy-blue</b> wash", "category": "C", "brand": "Zed",
         "facts": {"colour": ["navy-blue"]}},
        {"key": "4", "title": "acme tee", "category": "C", "brand": "Acme", "facts": {"colour": ["green", "red"]}},
    ]
    s = load_snapshot(write_snapshot(tmp_path / "s", prods))
    sp = make_split(s, cold_share=0.0)
    pairs = np.arange(sp.num_pairs)
    got = value_in_text(s, sp, pairs, product_texts(s))
    by = {(s.keys("product")[sp.product[p]], sp.attribute_names[sp.attribute[p]]): bool(g) for p, g in zip(pairs, got)}
    assert by == {("1", "colour"): True, ("2", "colour"): False, ("3", "colour"): True, ("4", "colour"): False,
                  ("1", BRAND): False, ("2", BRAND): False, ("3", BRAND): False, ("4", BRAND): True}


# -- the title-grouped split ----------------------------------------------------------------------
def _title_key(snap: Snapshot) -> list[str]:
    return [" ".join(str(r.get("title") or "").casefold().split()) for r in snap.nodes["product"]]


def _splits_per_title(snap: Snapshot, sp: Any) -> dict[str, set[int]]:
    titles = _title_key(snap)
    out: dict[str, set[int]] = {}
    for p, s in zip(sp.product.tolist(), sp.split.tolist()):
        out.setdefault(titles[p], set()).add(s)
    return out


def _reference_split(snap: Snapshot, fractions: tuple[float, float, float], cold_share: float, seed: int) -> np.ndarray:
    """The ungrouped split as it was before ``group_by`` existed (old splits must stay the same)."""
    sp = make_split(snap, fractions=(1.0, 0.0, 0.0), cold_share=0.0)  # only for the pairs' order
    rng = np.random.default_rng(seed)
    with_facts = np.unique(sp.product)
    n_cold = int(round(cold_share * len(with_facts)))
    cold = np.sort(rng.choice(with_facts, size=n_cold, replace=False)) if n_cold else np.zeros(0, np.int64)
    split = np.full(sp.num_pairs, TRAIN, np.int8)
    is_cold = np.isin(sp.product, cold)
    split[is_cold] = COLD
    warm = np.flatnonzero(~is_cold)
    perm = warm[rng.permutation(len(warm))]
    n_train, n_valid = int(round(fractions[0] * len(warm))), int(round(fractions[1] * len(warm)))
    split[perm[n_train: n_train + n_valid]] = VALID
    split[perm[n_train + n_valid:]] = TEST
    return split


def test_default_split_is_unchanged_by_group_by(snap: Snapshot) -> None:
    for seed, fr, cs in ((0, (0.8, 0.1, 0.1), 0.05), (3, (0.5, 0.2, 0.3), 0.2), (1, (0.9, 0.1, 0.0), 0.0)):
        a, b = make_split(snap, seed=seed, fractions=fr, cold_share=cs), \
            make_split(snap, seed=seed, fractions=fr, cold_share=cs, group_by=None)
        assert np.array_equal(a.split, _reference_split(snap, fr, cs, seed))
        assert np.array_equal(a.split, b.split) and np.array_equal(a.cold_products, b.cold_products)
        assert "group_by" not in a.config and "group_by" not in a.summary()


def test_title_split_keeps_title_twins_on_one_side(snap: Snapshot) -> None:
    titles = _title_key(snap)
    assert len(set(titles)) < len(titles)  # the fixture has twins: 60 shirts under 6 titles, 3 "tiny"
    for seed in range(6):
        sp = make_split(snap, seed=seed, cold_share=0.1, group_by="title")
        assert sp.config["group_by"] == "title" and sp.config["groups"] == len({titles[p] for p in np.unique(sp.product)})
        per_title = _splits_per_title(snap, sp)
        assert all(len(s) == 1 for s in per_title.values()), per_title
        # no test (or cold) product has a title twin among the training products
        train_titles = {titles[p] for p in sp.product[sp.split == TRAIN].tolist()}
        assert not any(titles[p] in train_titles for p in sp.product[np.isin(sp.split, [TEST, COLD])].tolist())
        # cold products are whole groups: every product of a cold title is cold
        cold_titles = {titles[p] for p in sp.cold_products.tolist()}
        assert {p for p in range(snap.num_nodes("product")) if titles[p] in cold_titles} == set(sp.cold_products.tolist())


def _twin_catalog(n: int = 1500, n_titles: int = 500, seed: int = 0) -> list[dict[str, Any]]:
    """Products drawing their titles from a pool (groups of 1 to ~15 twins, spelled in varying case and
    spacing), two or three facts each."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = int(rng.integers(n_titles // 10)) if i % 4 == 0 else int(rng.integers(n_titles))  # some larger groups
        title = f"Item  {t} Blue" if i % 3 else f"ITEM {t} blue "
        facts = {"colour": [["red", "blue"][t % 2]]}
        if t % 3:
            facts["size"] = [["s", "m"][i % 2]]
        out.append({"key": f"p{i:05d}", "title": title, "brand": f"b{t % 7}", "category": "A > X", "facts": facts})
    return out


def test_title_split_is_seeded_and_respects_fractions(tmp_path: Path) -> None:
    s = load_snapshot(write_snapshot(tmp_path / "twins", _twin_catalog()))
    a, b, c = (make_split(s, seed=k, group_by="title") for k in (5, 5, 6))
    assert np.array_equal(a.split, b.split) and np.array_equal(a.cold_products, b.cold_products)
    assert not np.array_equal(a.split, c.split)
    for sp in (a, c):
        assert all(len(x) == 1 for x in _splits_per_title(s, sp).values())
        warm = sp.split != COLD
        shares = [float((sp.split[warm] == k).mean()) for k in (TRAIN, VALID, TEST)]
        assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.03), shares
        assert len(sp.cold_products) / len(np.unique(sp.product)) == pytest.approx(0.05, abs=0.02)
    # the completion run's split (no test share, no cold) keeps its shape when grouped
    d = make_split(s, seed=0, fractions=(0.9, 0.1, 0.0), cold_share=0.0, group_by="title")
    assert not (d.split == TEST).any() and not (d.split == COLD).any()
    assert float((d.split == VALID).mean()) == pytest.approx(0.1, abs=0.03)
    with pytest.raises(ProtocolError, match="group_by"):
        make_split(s, group_by="brand")
