"""Mining finds the rules planted in a synthetic catalog, and nothing below the thresholds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import kb
from kb import Catalog, MiningConfig, mine, mine_rules

CONFIG = MiningConfig(min_products=30, min_support=20, min_confidence=0.95, min_lift=1.2,
                      applicability_min_support=5, applicability_min_share=0.05)


def synthetic(seed: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    colours = ["red", "blue", "green", "black", "white", "grey"]
    products: list[dict] = []

    def base(i: int, cat: str) -> dict:
        return {"id": f"{cat.split(' > ')[-1][:3]}{i}", "category": cat,
                "facts": {"colour": colours[i % 6], "size": str(rng.choice(["s", "m", "l", "xl", "xxl"])),
                          "gender": str(rng.choice(["men", "women"]))}}

    for i in range(300):  # Apparel > Tops
        p = base(i, "Apparel > Tops")
        f = p["facts"]
        # planted: red implies cotton (support 50, confidence 1)
        f["material"] = "cotton" if f["colour"] == "red" else str(rng.choice(["cotton", "poly", "wool", "silk"]))
        if i < 10:  # below min_support: striped implies short sleeves, 10 products
            f["pattern"], f["sleeve"] = "striped", "short"
        products.append(p)
    for i in range(300):  # Apparel > Bottoms
        p = base(i, "Apparel > Bottoms")
        f = p["facts"]
        f["material"] = str(rng.choice(["cotton", "poly", "wool", "silk"]))  # red does not imply cotton here
        if i < 50:  # below min_confidence: slim implies long, 40 of 50
            f["fit"], f["length"] = "slim", ("long" if i < 40 else "short")
        else:
            f["fit"], f["length"] = "regular", str(rng.choice(["long", "short"]))
        products.append(p)
    for p in products:  # planted across Apparel: premium implies dry clean (28 per leaf, 56 in Apparel)
        i = int(p["id"][3:])
        p["facts"]["brandtier"] = "premium" if i % 11 == 0 else "standard"
        p["facts"]["care"] = ("dry clean" if i % 11 == 0 or i % 30 == 1 else
                              str(rng.choice(["machine wash", "hand wash"])))
    for i in range(200):  # Footwear > Shoes: planted category rule, gender unisex
        p = base(i, "Footwear > Shoes")
        p["facts"]["gender"] = "unisex"
        products.append(p)
    for i in range(20):  # Footwear > Tiny: fewer than min_products
        p = base(i, "Footwear > Tiny")
        p["facts"]["lace"] = ["yes", "no"][i % 2]
        products.append(p)
    return products


PLANTED = {
    ("Footwear > Shoes", None, ("gender", "unisex")),
    ("Apparel > Tops", ("colour", "red"), ("material", "cotton")),
    ("Apparel", ("brandtier", "premium"), ("care", "dry clean")),
}


def nodes_of(path: str) -> list[str]:
    parts = path.split(" > ")
    return [" > ".join(parts[: i + 1]) for i in range(len(parts))]


def stats(products: list[dict], node: str, cond: tuple[str, str] | None, cons: tuple[str, str]) -> tuple[int, float]:
    """Support and confidence of a rule, counted in plain Python."""
    inside = [p["facts"] for p in products if node in nodes_of(p["category"])]
    with_cond = [f for f in inside if cond is None or f.get(cond[0]) == cond[1]]
    having = [f for f in with_cond if cons[0] in f]
    support = sum(1 for f in having if f[cons[0]] == cons[1])
    return support, support / len(having)


def test_finds_exactly_the_planted_implications() -> None:
    products = synthetic()
    _, found = mine(Catalog.from_dicts(products), CONFIG)
    got = {(r.category, r.condition, r.consequence) for r in found}
    assert got == PLANTED
    for r in found:  # the evidence is right, counted independently
        s, c = stats(products, r.category, r.condition, r.consequence)
        assert (r.support, r.confidence) == (s, pytest.approx(c))
        assert s >= CONFIG.min_support and c >= CONFIG.min_confidence


def test_nothing_below_the_thresholds() -> None:
    products = synthetic()
    cat = Catalog.from_dicts(products)
    # the two rules planted below the thresholds are really there...
    assert stats(products, "Apparel > Bottoms", ("fit", "slim"), ("length", "long")) == (40, 0.8)
    assert stats(products, "Apparel > Tops", ("pattern", "striped"), ("sleeve", "short")) == (10, 1.0)
    loose = MiningConfig(**{**CONFIG.__dict__, "min_confidence": 0.8, "min_support": 10})
    got_loose = {(r.condition, r.consequence): r.category for r in mine(cat, loose)[1]}
    # found at the highest category where they hold (only Bottoms have a length)
    assert got_loose[(("fit", "slim"), ("length", "long"))] in ("Apparel", "Apparel > Bottoms")
    # every product with a sleeve has it short: the category alone implies it, so no value rule is kept
    assert got_loose[(None, ("sleeve", "short"))] in ("Apparel", "Apparel > Tops")
    assert (("pattern", "striped"), ("sleeve", "short")) not in got_loose
    # ... and every rule found at any threshold clears it, counted independently
    for cfg in (CONFIG, loose):
        for r in mine(cat, cfg)[1]:
            s, c = stats(products, r.category, r.condition, r.consequence)
            assert s >= cfg.min_support and c >= cfg.min_confidence - 1e-12


def test_pure_noise_gives_no_implications() -> None:
    rng = np.random.default_rng(11)
    products = [{"id": str(i), "category": ["A", "B"][i % 2],
                 "facts": {a: str(rng.integers(0, 4)) for a in ("w", "x", "y", "z")}} for i in range(1000)]
    applic, found = mine(Catalog.from_dicts(products), CONFIG)
    assert found == []
    assert applic["A"]["support"] == {a: 500 for a in "wxyz"}


def test_applicability_per_category() -> None:
    products = synthetic()
    applic, _ = mine(Catalog.from_dicts(products), CONFIG)
    expected = {}
    for node in sorted({n for p in products for n in nodes_of(p["category"])}):
        inside = [p["facts"] for p in products if node in nodes_of(p["category"])]
        if len(inside) < CONFIG.min_products:
            continue
        counts = Counter(a for f in inside for a in f)
        expected[node] = {a: n for a, n in counts.items()
                          if n >= CONFIG.applicability_min_support and n / len(inside) >= CONFIG.applicability_min_share}
    assert {k: v["support"] for k, v in applic.items()} == expected
    assert "Footwear > Tiny" not in applic and "lace" in applic["Footwear"]["support"]
    assert "pattern" not in applic["Apparel > Tops"]["support"]  # 10 of 300: below 5%


def test_mined_yaml_reads_back_and_audits(tmp_path: Path) -> None:
    products = synthetic()
    products.append({"id": "odd", "category": "Apparel > Tops",
                     "facts": {"colour": "red", "material": "poly", "gender": "men"}})
    cat = Catalog.from_dicts(products)
    rules = mine_rules(cat, CONFIG)
    path = rules.dump(tmp_path / "mined.yaml", header=kb.mining_header(cat, CONFIG))
    text = path.read_text()
    assert text.startswith("# Rules mined by `attrgraph rules mine` from 821 products")
    assert "mined.apparel-tops.colour-red.implies.material-cotton" in text
    back = kb.RuleSet.load(path)
    assert back.ids() == rules.ids()
    assert [(r.type, r.params, r.scope, r.severity) for r in back] == [(r.type, r.params, r.scope, r.severity) for r in rules]
    imp = [r for r in back if r.type == "implication"]
    assert {r.evidence["support"] for r in imp} == {50, 56, 200}
    assert all(r.severity == "review" for r in back)
    # the mined rules, used as rules, flag the planted exception (and only facts it involves)
    report = kb.audit(kb.Context(cat, kb.RuleSet(imp)))
    assert {(v.product, v.attribute) for v in report} == {("odd", "material"), ("odd", "colour")}
    # applicability as mined: closed lists per category
    app = back["mined.applicability"]
    v = kb.validate([{"product": "Sho0", "attribute": "material", "value": "cotton"},
                     {"product": "Sho0", "attribute": "colour", "value": "red"}], kb.Context(cat, kb.RuleSet([app])))
    assert list(v.labels) == ["needs_review", "accept"]


def test_config_is_checked() -> None:
    with pytest.raises(kb.KBError, match="min_confidence must be between 0 and 1"):
        MiningConfig(min_confidence=1.5)
    with pytest.raises(kb.KBError, match="levels start at 1"):
        MiningConfig(levels=(0,))
    products = synthetic()
    _, found = mine(Catalog.from_dicts(products), MiningConfig(**{**CONFIG.__dict__, "levels": (2,)}))
    assert {r.category for r in found} == {"Footwear > Shoes", "Apparel > Tops", "Apparel > Bottoms"}
