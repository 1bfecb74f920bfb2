"""bench/bench_rules.py on the shipped Myntra sample: injected invalid values are caught by the rules
designed for them, clean facts and correct predictions mostly pass, catalogs without a kind say n/a."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import kb
from bench import bench_rules as B
from bench._catalog import read_products, write_snapshot
from gnn.protocol import make_split
from gnn.snapshot import load_snapshot

SAMPLE = Path(__file__).resolve().parent.parent / "attrgraph" / "sample" / "myntra_sample.jsonl.gz"


@pytest.fixture(scope="module")
def products() -> list[Any]:
    return read_products(SAMPLE, "myntra")


@pytest.fixture(scope="module")
def snap(products: list[Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_snapshot(write_snapshot(products, tmp_path_factory.mktemp("rules") / "snap", mapping_name="myntra"))


@pytest.fixture(scope="module")
def predictions(snap: Any) -> dict[str, Any]:
    f = B.Facts(snap)
    split = make_split(snap, seed=0)
    world = B.PredictionWorld(f, split)
    rules, mined, impls = B.rules_for("myntra", B.kb_catalog(snap, world.edges))
    ctx = kb.Context(B.kb_catalog(snap, world.edges), rules)
    inj = B.Injector(f, rules, seed=0, level=2)
    items, na = B.inject_predictions(world, inj, impls, [r.id for r in mined if r.type == "implication"], 15)
    items += B.clean_predictions(world, 300, 0)
    j = B.judge(ctx, ctx.rows_for(B.prediction_rows(f, items)))
    return {"f": f, "world": world, "items": items, "na": na, "j": j, "ctx": ctx}


def _rows(items: list[B.Item], kind: str) -> np.ndarray:
    return np.array([it.kind == kind for it in items])


def _fired(j: B.Judged, label: str) -> np.ndarray:
    return j.fired[:, j.labels.index(label)]


def test_snapshot_is_what_ingest_would_store(snap: Any, products: list[Any]) -> None:
    assert snap.num_nodes("product") == len(products)
    assert snap.edges["has_value"].shape[1] == len({(p.id, a, v.norm) for p in products for a, v in p.facts})
    assert snap.edges["in_category"].shape[1] == sum(bool(p.category) for p in products)
    # every level of a path is a category node, linked to its parent
    assert snap.edges["subcategory_of"].shape[1] == snap.num_nodes("category") - len(
        {p.category[0] for p in products if p.category})


def test_injected_values_are_caught_by_the_rules_made_for_them(predictions: dict[str, Any]) -> None:
    items, j = predictions["items"], predictions["j"]
    caught = j.status > 0
    fa = _rows(items, "foreign_attribute")
    assert fa.sum() == 15 and caught[fa].all() and _fired(j, "known-value")[fa].all()
    br = _rows(items, "brand_category")
    assert br.sum() == 15 and _fired(j, "brand-category")[br].all()
    dup = _rows(items, "duplicate")
    card = [i for i, t in enumerate(j.label_types) if t == "cardinality"]
    assert dup.sum() == 15 and j.fired[dup][:, card].any(1).all()
    for kind in B.NUMERIC_KINDS:  # the sample is small: a numeric attribute with < 20 measures has no learned
        m = _rows(items, kind)  # range, and new values are common on it, so known-value does not judge it either
        assert m.sum() > 0 and caught[m].mean() >= 0.8, kind
    heel = np.array([it.attribute == "Heel Height" and it.kind in B.NUMERIC_KINDS for it in items])
    if heel.any():
        assert _fired(j, "myntra.heel-height")[heel].all()
    imp = np.flatnonzero(_rows(items, "implication"))
    assert len(imp) > 0 and all((int(i), items[i].rule) in j.pairs for i in imp)  # the broken rule itself fired


def test_clean_predictions_mostly_pass(predictions: dict[str, Any]) -> None:
    items, j = predictions["items"], predictions["j"]
    clean = _rows(items, B.CLEAN)
    assert clean.sum() == 300
    assert (j.status[clean] > 0).mean() < 0.15
    # a correct value that other products have is blocked no more often than any clean value
    assert (j.status[clean & j.seen] > 0).mean() <= (j.status[clean] > 0).mean() + 1e-9
    # the true value of an injected foreign value's slot is the clean twin: mostly accepted
    same = np.array([it.kind == B.SAME_SLOT and it.of == "foreign_attribute" for it in items])
    assert (j.status[same] == 0).mean() > 0.7


def test_scores_name_precision_recall_and_targets(predictions: dict[str, Any]) -> None:
    res = B.score(predictions["items"], predictions["j"], predictions["na"])
    assert res["kinds"]["foreign_attribute"]["recall"] == 1.0
    assert res["kinds"]["brand_category"]["recall_designed_types"] == 1.0
    assert res["kinds"]["implication"]["caught_by_the_broken_rule"] == 1.0
    kv = res["rules"]["known-value"]
    assert kv["type"] == "domain" and "foreign_attribute" in kv["target_kinds"] and kv["recall_target_kinds"] == 1.0
    assert res["rules"]["brand-category"]["precision"] > 0.8
    o = res["overall"]
    assert o["injected"] == sum(d["n"] for d in res["kinds"].values())
    assert 0 <= o["clean_blocked_share"] < 0.15 and o["meets_blocked_target"] == (o["clean_blocked_share"] <= 0.01)
    assert o["clean_seen"]["n"] + o["clean_unseen"]["n"] == o["clean"]


def test_audit_path_catches_corrupted_facts(snap: Any) -> None:
    f = B.Facts(snap)
    full = B.kb_catalog(snap)
    rules, mined, impls = B.rules_for("myntra", full)
    res, _ = B.audit_path("sample", snap, f, rules, mined, impls, per_kind=10, n_clean=300, seed=0, level=2,
                          rounds=2, full_cat=full)
    k = res["kinds"]
    assert k["foreign_attribute"]["n"] == 10 and k["foreign_attribute"]["recall"] == 1.0
    assert k["brand_category"]["n"] == 10 and k["brand_category"]["caught_by"].get("brand-category") == 10
    assert k["duplicate"]["recall"] == 1.0 and k["implication"]["caught_by_the_broken_rule"] == 1.0
    assert k["numeric_huge"]["recall"] >= 0.8 and k["numeric_negative"]["recall"] >= 0.8  # see above
    assert res["overall"]["clean"] == 300 and res["overall"]["clean_blocked_share"] < 0.15
    assert res["rounds"] == 2


def test_audit_corruptions_never_support_each_other(snap: Any) -> None:
    """Each new (attribute, value) and each foreign (brand, part of the tree) is given to one product only:
    two products sharing a corrupt value would make it look established to the audit."""
    f = B.Facts(snap)
    rules, mined, impls = B.rules_for("myntra", B.kb_catalog(snap))
    ai = B.AuditInjection(f, B.Injector(f, rules, seed=0, level=2), impls, [r.id for r in mined if r.type == "implication"])
    items = [it for _ in range(2) for it in ai.round({k: 10 for k in B.KINDS}).items if it.kind != B.SAME_SLOT]
    new = [(it.attribute, it.value) for it in items if it.kind in ("foreign_attribute",) + B.NUMERIC_KINDS]
    assert len(new) == len(set(new))
    assert len({it.product for it in items}) == len(items)  # one corruption per product


def test_nonsense_values_are_spelled_as_ingest_stores_them() -> None:
    assert B._nonsense("numeric_huge", "cm", 2.54)[0] == "2540000 cm"
    assert B._nonsense("numeric_negative", "cm", 2.54)[0] == "-2.54 cm"
    assert B._nonsense("numeric_unit", "cm", 2.54)[:2] == ("2540 g", "2.54 kg")
    assert B._nonsense("numeric_negative", None, 3.0)[0] == "-3"
    assert B._nonsense("numeric_huge", None, 1.0, k=1)[0] == "1010000"


def test_kinds_a_catalog_cannot_have_are_not_applicable(products: list[Any], tmp_path: Path) -> None:
    flat = [dataclasses.replace(p, category=()) for p in products[:400]]
    snap = load_snapshot(write_snapshot(flat, tmp_path / "flat"))
    f = B.Facts(snap)
    rules, _, impls = B.rules_for("myntra", B.kb_catalog(snap))
    inj = B.Injector(f, rules, seed=0, level=2)
    assert "no category tree" in inj.not_applicable("brand_category", impls)
    assert "no category tree" in inj.not_applicable("foreign_category", impls)
    assert "no rule was mined" in inj.not_applicable("implication", impls)
    assert inj.not_applicable("foreign_attribute", impls) is None
    brands_only = [dataclasses.replace(p, facts=()) for p in products[:400]]
    g = B.Facts(load_snapshot(write_snapshot(brands_only, tmp_path / "brands")))
    why = B.Injector(g, rules, seed=0, level=2).not_applicable("numeric_huge", impls)
    assert "no attribute values" in why



def test_decisions_are_made_on_the_valid_pairs(snap: Any) -> None:
    """--clean-from valid: the valid pairs are the hidden slots, judged against the train facts only; the test
    pairs stay hidden either way, and the clean rows come from the held pairs."""
    f = B.Facts(snap)
    split = make_split(snap, seed=0)
    test_w, valid_w = B.PredictionWorld(f, split, "test"), B.PredictionWorld(f, split, "valid")
    assert valid_w.visible == ("train",) and test_w.visible == ("train", "valid")
    assert set(valid_w.hidden.tolist()) == set(split.pairs("valid").tolist())
    assert valid_w.edges["has_value"].shape[1] < test_w.edges["has_value"].shape[1]
    held = {(int(split.product[q]), int(split.attribute[q])) for q in split.pairs("valid").tolist()}
    clean = B.clean_predictions(valid_w, 50, 0)
    names = {n: i for i, n in enumerate(split.attribute_names)}
    assert len(clean) == 50
    assert all((it.product, names.get(it.attribute, split.brand_attribute)) in held for it in clean)
    with pytest.raises(ValueError, match="held must be one of"):
        B.PredictionWorld(f, split, "train")
