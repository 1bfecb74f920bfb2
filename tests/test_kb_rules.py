"""Every registered rule type accepting and rejecting, on tiny catalogs with known answers.

Each rule type has a ``RuleTypeCases`` subclass below with ``test_accepts`` and ``test_rejects``;
``test_every_rule_type_has_cases`` fails when a registered type has none.
"""

from __future__ import annotations

import numpy as np
import pytest

import kb
from kb import Catalog, Context, Predictions, RuleSet, make_rule, validate


def catalog(*products: dict) -> Catalog:
    return Catalog.from_dicts(list(products))


def many(n: int, prefix: str, category: str, brand: str | None = None, **facts) -> list[dict]:
    return [{"id": f"{prefix}{i}", "category": category, "brand": brand, "facts": dict(facts)} for i in range(n)]


def verdicts(cat: Catalog, rules: list, rows: list[tuple]) -> kb.Verdicts:
    preds = Predictions.from_dicts([{"product": p, "attribute": a, "value": v, "score": 0.5} for p, a, v in rows])
    return validate(preds, Context(cat, RuleSet(rules)))


def labels(cat: Catalog, rules: list, rows: list[tuple]) -> list[str]:
    return list(verdicts(cat, rules, rows).labels)


def audited(cat: Catalog, rules: list) -> set[tuple[str, str, str]]:
    """(product, attribute, value) of the audited facts that violate a rule."""
    return {(v.product, v.attribute, v.value) for v in kb.audit(Context(cat, RuleSet(rules)))}


class RuleTypeCases:
    rule_type: str

    def test_accepts(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def test_rejects(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def test_every_rule_type_has_cases() -> None:
    covered = {}
    for cls in RuleTypeCases.__subclasses__():
        assert "test_accepts" in vars(cls) and "test_rejects" in vars(cls), cls.__name__
        covered[cls.rule_type] = cls
    missing = sorted(set(kb.RULE_TYPES) - set(covered))
    assert not missing, f"rule types without accept/reject tests: {missing}"
    assert set(covered) <= set(kb.RULE_TYPES)


# -- domain --------------------------------------------------------------------------------------
class TestDomain(RuleTypeCases):
    rule_type = "domain"
    CAT = catalog(
        *many(3, "m", "Apparel > Tshirts", gender="Men", Fabric="Cotton"),
        {"id": "w0", "category": "Apparel > Tshirts", "facts": {"gender": "Women", "Fabric": "Silk"}},
        {"id": "s0", "category": "Footwear > Heels", "facts": {"Heel Height": "8 cm"}},
    )

    def test_accepts(self) -> None:
        rules = [make_rule("domain", id="g", attribute="gender", values=["Men", "Women"]),
                 make_rule("domain", id="age", attribute="ageGroup", pattern="(adults|kids)-(men|women)"),
                 make_rule("domain", id="heel", attribute="Heel Height", range={"min": 0, "max": 30, "unit": "cm"})]
        got = labels(self.CAT, rules, [("w0", "gender", "  MEN "), ("m0", "ageGroup", "Kids-Men"),
                                       ("s0", "Heel Height", "12.5 cm"), ("m0", "Fabric", "anything")])
        assert got == ["accept"] * 4

    def test_rejects(self) -> None:
        rules = [make_rule("domain", id="g", attribute="gender", values=["Men", "Women"]),
                 make_rule("domain", id="age", attribute="ageGroup", pattern="(adults|kids)-(men|women)"),
                 make_rule("domain", id="heel", attribute="Heel Height", range={"min": 0, "max": 30, "unit": "cm"})]
        v = verdicts(self.CAT, rules, [("m0", "gender", "Alien"), ("m0", "ageGroup", "teen"),
                                       ("s0", "Heel Height", "45 cm"), ("s0", "Heel Height", "500 g"),
                                       ("s0", "Heel Height", "tall")])
        assert list(v.labels) == ["reject"] * 5
        assert [r.rule for r in v[0].reasons] == ["g"] and "one of Men, Women" in v[0].reasons[0].message
        assert "'Alien'" in v[0].reasons[0].message
        assert "pattern" in v[1].reasons[0].message
        assert "between 0 and 30 cm" in v[2].reasons[0].message

    def test_known_values_predict_and_audit(self) -> None:
        rule = make_rule("domain", id="known", attributes="*", known={"min_count": 1}, severity="review")
        # predictions: a value asserted on one product is known; a new one is not
        assert labels(self.CAT, [rule], [("m0", "Fabric", "Silk"), ("m0", "Fabric", "Wool")]) == ["accept", "needs_review"]
        # audit: each fact is judged against the *other* products: Silk (1 product) and 8 cm are new
        assert audited(self.CAT, [rule]) == {("w0", "gender", "Women"), ("w0", "Fabric", "Silk"),
                                             ("s0", "Heel Height", "8 cm")}
        two = make_rule("domain", id="known2", attribute="Fabric", known={"min_count": 3})
        assert labels(self.CAT, [two], [("w0", "Fabric", "cotton"), ("w0", "Fabric", "Silk")]) == ["accept", "reject"]

    def test_measures_from_the_prediction_and_scope(self) -> None:
        rule = make_rule("domain", id="heel", attribute="Heel Height", range={"min": 0, "max": 30, "unit": "cm"},
                         category="Footwear")
        preds = Predictions.from_dicts([
            {"product": "s0", "attribute": "Heel Height", "value": "2 inches", "quantity": 5.08, "unit": "cm"},
            {"product": "s0", "attribute": "Heel Height", "value": "2 feet", "quantity": 60.96, "unit": "cm"},
            {"product": "m0", "attribute": "Heel Height", "value": "2 feet", "quantity": 60.96, "unit": "cm"},
        ])
        v = validate(preds, Context(self.CAT, RuleSet([rule])))
        assert list(v.labels) == ["accept", "reject", "accept"]  # the last is outside the rule's scope


# -- applicability ------------------------------------------------------------------------------
class TestApplicability(RuleTypeCases):
    rule_type = "applicability"
    CAT = catalog(
        *many(30, "t", "Apparel > Topwear > Tshirts", Fabric="Cotton", Neck="Round"),
        *many(2, "k", "Apparel > Topwear > Kurtas", Fabric="Silk"),
        *many(25, "h", "Footwear > Shoes > Heels", **{"Heel Height": "8 cm"}),
        *many(25, "p", "Footwear > Shoes > Sports", Fabric="Mesh"),
        {"id": "odd", "category": "Apparel > Topwear > Tshirts", "facts": {"Heel Height": "2 cm"}},
    )
    LEARN = dict(default="learn", learn={"min_products": 20, "min_count": 3, "min_share": 0.05})

    def test_accepts(self) -> None:
        rule = make_rule("applicability", id="app", severity="reject", **self.LEARN)
        got = labels(self.CAT, [rule], [("t0", "Neck", "V"), ("h0", "Heel Height", "5 cm"),
                                        ("k0", "Neck", "Round")])  # Kurtas: too small, Topwear decides
        assert got == ["accept"] * 3

    def test_rejects(self) -> None:
        rule = make_rule("applicability", id="app", severity="reject", **self.LEARN)
        v = verdicts(self.CAT, [rule], [("t0", "Heel Height", "5 cm"), ("h0", "Neck", "Round"),
                                        ("t0", "Never Seen", "x")])
        assert list(v.labels) == ["reject"] * 3
        msg = v[0].reasons[0].message
        assert "does not apply to products in Apparel > Topwear > Tshirts" in msg and "1 of 31" in msg

    def test_declared_inherited_and_overridden(self) -> None:
        rule = make_rule("applicability", id="decl", default="applies", categories={
            "Footwear": {"not_applies": ["Fabric"]},
            "Footwear > Shoes > Sports": {"applies": ["Fabric"]},
            "Apparel > Topwear > Kurtas": {"closed": True, "applies": ["Fabric"]},
        })
        got = labels(self.CAT, [rule], [("h0", "Fabric", "Leather"),  # inherited from Footwear
                                        ("p0", "Fabric", "Mesh"),  # overridden below
                                        ("k0", "Fabric", "Silk"), ("k0", "Neck", "Round"),  # closed list
                                        ("t0", "Anything", "x")])  # nothing declared: default applies
        assert got == ["accept" if x else "reject" for x in (0, 1, 1, 0, 1)]

    def test_audit_leaves_the_fact_out(self) -> None:
        rule = make_rule("applicability", id="app", **self.LEARN)
        # the one Tshirt with a heel height is flagged; the 25 heels (24 others each) are not
        assert audited(self.CAT, [rule]) == {("odd", "Heel Height", "2 cm")}


# -- cardinality --------------------------------------------------------------------------------
class TestCardinality(RuleTypeCases):
    rule_type = "cardinality"
    CAT = catalog(
        {"id": "a", "category": "Apparel", "facts": {"gender": "Men", "Features": ["Pockets", "Hood"]}},
        {"id": "b", "category": "Apparel", "facts": {"Features": "Zip"}},
        {"id": "c", "category": "Apparel", "facts": {"gender": ["Men", "Women"]}},
    )

    def test_accepts(self) -> None:
        rule = make_rule("cardinality", id="one", attribute="gender")
        got = labels(self.CAT, [rule], [("a", "gender", "men"),  # the asserted value itself
                                        ("b", "gender", "Women"),  # no value yet
                                        ("a", "Features", "Zip")])  # not functional
        assert got == ["accept"] * 3

    def test_rejects(self) -> None:
        rule = make_rule("cardinality", id="one", attribute="gender")
        v = verdicts(self.CAT, [rule], [("a", "gender", "Women"), ("a", "gender", "Unisex")])
        assert list(v.labels) == ["reject", "reject"]
        assert "already has 'Men'" in v[0].reasons[0].message
        # max: 2 allows a second feature but not a third
        two = make_rule("cardinality", id="two", attribute="Features", max=2)
        assert labels(self.CAT, [two], [("b", "Features", "Hood"), ("a", "Features", "Zip")]) == ["accept", "reject"]

    def test_learned_and_audit(self) -> None:
        cat = catalog(*many(30, "s", "X", colour="Red"),
                      *[{"id": f"m{i}", "category": "X", "facts": {"tag": ["a", "b"]}} for i in range(30)],
                      {"id": "bad", "category": "X", "facts": {"colour": ["Red", "Blue"]}})
        rule = make_rule("cardinality", id="learned", learn={"min_products": 20, "min_share": 0.95})
        assert labels(cat, [rule], [("s0", "colour", "Blue"), ("m0", "tag", "c")]) == ["reject", "accept"]
        assert audited(cat, [rule]) == {("bad", "colour", "Red"), ("bad", "colour", "Blue")}


# -- exclusion ------------------------------------------------------------------------------------
class TestExclusion(RuleTypeCases):
    rule_type = "exclusion"
    CAT = catalog(
        {"id": "kid", "category": "Apparel > Tshirts", "facts": {"ageGroup": "Kids-Boys"}},
        {"id": "man", "category": "Apparel > Tshirts", "facts": {"gender": "Men"}},
        {"id": "shoe", "category": "Footwear > Sports", "facts": {}},
        {"id": "both", "category": "Apparel > Tshirts", "facts": {"ageGroup": "Kids-Girls", "gender": "Women"}},
    )
    KIDS = make_rule("exclusion", id="kids", if_={"attribute": "ageGroup", "pattern": "kids-.*"},
                     then={"attribute": "gender", "values": ["Men", "Women"]})
    FOOT = make_rule("exclusion", id="foot", if_={"category": "Footwear"}, then={"attribute": "Sleeve Length"})

    def test_accepts(self) -> None:
        got = labels(self.CAT, [self.KIDS, self.FOOT], [("kid", "gender", "Boys"), ("man", "ageGroup", "Adults-Men"),
                                                        ("kid", "Sleeve Length", "Short"), ("shoe", "gender", "Men")])
        assert got == ["accept"] * 4

    def test_rejects(self) -> None:
        v = verdicts(self.CAT, [self.KIDS, self.FOOT], [("kid", "gender", "Men"),  # excluded by the asserted age group
                                                        ("man", "ageGroup", "Kids-Boys"),  # the other direction
                                                        ("shoe", "Sleeve Length", "Short")])  # by the category
        assert list(v.labels) == ["reject"] * 3
        assert "conflicts with ageGroup = Kids-Boys" in v[0].reasons[0].message
        assert "conflicts with gender = Men" in v[1].reasons[0].message
        assert "a product in Footwear cannot have any Sleeve Length" in v[2].reasons[0].message

    def test_audit_flags_both_facts(self) -> None:
        assert audited(self.CAT, [self.KIDS]) == {("both", "ageGroup", "Kids-Girls"), ("both", "gender", "Women")}


# -- implication -------------------------------------------------------------------------------------
class TestImplication(RuleTypeCases):
    rule_type = "implication"
    CAT = catalog(
        {"id": "saree", "category": "Apparel > Sarees", "facts": {}},
        {"id": "shirt", "category": "Apparel > Shirts", "facts": {"gender": "Men"}},
        {"id": "uni", "category": "Apparel > Shirts", "facts": {"ageGroup": "Adults-Unisex"}},
        {"id": "bad", "category": "Apparel > Shirts", "facts": {"ageGroup": "Adults-Unisex", "gender": "Men"}},
        {"id": "empty", "category": "Apparel > Shirts", "facts": {"ageGroup": "Adults-Unisex"}},
    )
    SAREE = make_rule("implication", id="saree", if_={"category": "Apparel > Sarees"},
                      then={"attribute": "gender", "values": ["Women"]})
    UNISEX = make_rule("implication", id="unisex", if_={"attribute": "ageGroup", "value": "Adults-Unisex"},
                       then={"attribute": "gender", "value": "Unisex"})

    def test_accepts(self) -> None:
        got = labels(self.CAT, [self.SAREE, self.UNISEX], [("saree", "gender", "Women"), ("shirt", "gender", "Women"),
                                                           ("uni", "gender", "Unisex"), ("shirt", "ageGroup", "Adults-Men")])
        assert got == ["accept"] * 4

    def test_rejects(self) -> None:
        v = verdicts(self.CAT, [self.SAREE, self.UNISEX], [("saree", "gender", "Men"), ("uni", "gender", "Men"),
                                                           ("shirt", "ageGroup", "Adults-Unisex")])  # contrapositive
        assert list(v.labels) == ["reject"] * 3
        assert v[0].reasons[0].message.startswith("a product in Apparel > Sarees must have gender Women")
        assert "on a product that has gender = Men" in v[2].reasons[0].message

    def test_audit_ignores_missing_values(self) -> None:
        # "empty" has the condition but no gender: nothing asserted contradicts the rule
        assert audited(self.CAT, [self.UNISEX]) == {("bad", "gender", "Men"), ("bad", "ageGroup", "Adults-Unisex")}


# -- brand_category --------------------------------------------------------------------------------
class TestBrandCategory(RuleTypeCases):
    rule_type = "brand_category"
    CAT = catalog(
        *many(6, "a", "Apparel > Tshirts", brand="Acme"),
        {"id": "stray", "category": "Footwear > Heels", "brand": "ACME"},
        *many(6, "s", "Footwear > Heels", brand="Stiletto"),
        {"id": "tiny1", "category": "Apparel > Tshirts", "brand": "Tiny"},
        {"id": "tiny2", "category": "Footwear > Heels", "brand": "Tiny"},
    )
    RULE = make_rule("brand_category", id="bc", level=1, min_products=2, min_brand_products=5, severity="reject")

    def test_accepts(self) -> None:
        got = labels(self.CAT, [self.RULE], [("a0", "@brand", "acme"), ("s0", "@brand", "Stiletto"),
                                             ("s0", "@brand", "Tiny")])  # too few products to judge Tiny
        assert got == ["accept"] * 3

    def test_rejects(self) -> None:
        v = verdicts(self.CAT, [self.RULE], [("s1", "@brand", "Acme"),  # one Acme product in Footwear: < 2
                                             ("a0", "@brand", "Stiletto"), ("a0", "@brand", "Nobody")])
        assert list(v.labels) == ["reject"] * 3
        assert "'Acme' has 1 product (of 7 in the catalog) under Footwear" in v[0].reasons[0].message
        assert "'Stiletto' has none of its 6 products under Apparel" in v[1].reasons[0].message
        assert "not in the catalog" in v[2].reasons[0].message

    def test_default_severity_is_review_and_audit(self) -> None:
        rule = make_rule("brand_category", id="bc", min_brand_products=5)
        assert labels(self.CAT, [rule], [("a1", "@brand", "Stiletto")]) == ["needs_review"]
        # Acme has 6 other products, none under Footwear: the stray one needs review
        got = {v.product: v.message for v in kb.audit(Context(self.CAT, RuleSet([rule])))}
        assert set(got) == {"stray"} and "has none of its 6 other products under Footwear" in got["stray"]


# -- numeric ---------------------------------------------------------------------------------------
class TestNumeric(RuleTypeCases):
    rule_type = "numeric"
    CAT = catalog(
        *[{"id": f"w{i}", "category": "Food > Snacks", "facts": {"weight": f"{100 + 5 * i} g"}} for i in range(30)],
        {"id": "heel", "category": "Footwear > Heels", "facts": {"Heel Height": "8 cm"}},
        {"id": "flat", "category": "Footwear > Flats", "facts": {"Heel Height": "1 cm"}},
        {"id": "bag", "category": "Bags", "facts": {"Pockets": "3"}},
    )
    DECLARED = make_rule("numeric", id="heel", attribute="Heel Height", unit="cm",
                         ranges=[{"min": 0, "max": 30}, {"category": "Footwear > Flats", "max": 3}])

    def test_accepts(self) -> None:
        learned = make_rule("numeric", id="learned", attributes="*", learn={"min_count": 20, "factor": 10})
        plain = make_rule("numeric", id="count", attribute="Pockets", unit="none", ranges=[{"min": 0, "max": 50}])
        got = labels(self.CAT, [self.DECLARED, learned, plain],
                     [("heel", "Heel Height", "12 cm"), ("flat", "Heel Height", "2 cm"), ("w0", "weight", "1000 g"),
                      ("w0", "weight", "20 g"), ("bag", "Pockets", "12"), ("bag", "Pockets", "many")])
        assert got == ["accept"] * 6

    def test_rejects(self) -> None:
        learned = make_rule("numeric", id="learned", attributes="*", learn={"min_count": 20, "factor": 10})
        plain = make_rule("numeric", id="count", attribute="Pockets", unit="none", ranges=[{"min": 0, "max": 50}])
        v = verdicts(self.CAT, [self.DECLARED, learned, plain],
                     [("heel", "Heel Height", "45 cm"), ("flat", "Heel Height", "8 cm"), ("heel", "Heel Height", "8 g"),
                      ("w0", "weight", "50000 g"), ("w0", "weight", "200 ml"), ("bag", "Pockets", "300"),
                      ("bag", "Pockets", "3 cm")])
        assert list(v.labels) == ["reject"] * 7
        assert "declared for Footwear > Flats" in v[1].reasons[0].message
        assert "measured in g, but Heel Height is measured in cm" in v[2].reasons[0].message
        assert "learned from 30 values under Food > Snacks" in v[3].reasons[0].message
        assert "plain number" in v[6].reasons[0].message

    def test_audit(self) -> None:
        cat = catalog(*[{"id": f"w{i}", "category": "Food", "facts": {"weight": f"{100 + i} g"}} for i in range(30)],
                      {"id": "typo", "category": "Food", "facts": {"weight": "110000 g"}})
        rule = make_rule("numeric", id="learned", attribute="weight", learn={"min_count": 20, "factor": 10})
        assert audited(cat, [rule]) == {("typo", "weight", "110000 g")}


# -- new_value (proposals of values new to the catalog) -------------------------------------------------
class TestNewValue(RuleTypeCases):
    rule_type = "new_value"
    # marketing words in titles across 8 categories; "red" is a value, so never a marketing word
    CAT = catalog(
        *[{"id": f"t{i}", "title": f"New Arrival Red Dress Free Shipping {i}", "category": f"Apparel > C{i % 8}",
           "brand": "Acme", "facts": {"colour": "Red", "size": str(30 + i % 5)}} for i in range(40)],
        {"id": "x", "title": "Blue shoes", "category": "Footwear > Shoes", "brand": "Nike", "facts": {"colour": "Blue"}},
    )
    RULES = [make_rule("new_value", id=f"nv-{c}", check=c) for c in ("length", "marketing", "digits", "conflict")]

    def test_accepts(self) -> None:
        got = labels(self.CAT, self.RULES, [("t1", "colour", "Teal"), ("t1", "size", "12"), ("t1", "@brand", "Zara"),
                                            ("x", "colour", "Shoes"), ("t1", "colour", "new red")])
        assert got == ["accept"] * 5  # "Shoes" names the product's own category; "red" is a value's word
        # asserted facts are never new: an audit does not trip these rules
        assert audited(self.CAT, self.RULES) == set()

    def test_rejects(self) -> None:
        v = verdicts(self.CAT, self.RULES, [("t1", "colour", "New Arrival"), ("t1", "colour", "free shipping!"),
                                            ("t1", "colour", "12345"), ("t1", "@brand", "2024"),
                                            ("t1", "colour", "x" * 30), ("t1", "colour", "q"),
                                            ("t1", "colour", "ACME"), ("t1", "colour", "Nike"), ("t1", "colour", "Shoes"),
                                            ("t1", "@brand", "shoes"), ("t1", "@brand", "blue")])
        assert list(v.labels) == ["reject"] * 11
        rules = [[r.rule for r in v[i].reasons] for i in range(len(v))]
        assert "nv-marketing" in rules[0] and "nv-marketing" in rules[1]
        msg = {r.rule: r.message for r in v[0].reasons}["nv-marketing"]
        assert "marketing wording" in msg and "'arrival' is in the titles of 40 products across 8 categories" in msg
        assert rules[2] == ["nv-digits"] and "not numbers" in v[2].reasons[0].message
        assert "nv-digits" in rules[3] and "a brand is a name" in v[3].reasons[-1].message
        assert rules[4] == ["nv-length"] and "longer than 8" in v[4].reasons[0].message
        assert rules[5] == ["nv-length"] and "shorter than 2" in v[5].reasons[0].message
        assert rules[6] == ["nv-conflict"] and "the product's own brand ('Acme')" in v[6].reasons[0].message
        assert "names the brand 'Nike'" in v[7].reasons[0].message
        assert "names the category 'Footwear > Shoes', but the product is in 'Apparel > C1'" in v[8].reasons[0].message
        assert "is the name of the category" in v[9].reasons[0].message
        assert "is a known value of colour" in v[10].reasons[0].message

    def test_learned_marketing_words_and_yaml(self) -> None:
        from kb.proposals import learn_marketing_words, marketing_cover, tokens

        assert tokens("新款包邮 Red") == {"新款", "款包", "包邮", "red"}
        cat = self.CAT
        words = learn_marketing_words(cat.product_titles.tolist(), cat.product_category, ["red", "acme", "dress"],
                                      min_products=20, min_categories=5)
        assert set(words) == {"new", "arrival", "free", "shipping"}
        assert marketing_cover("新款包邮", {"新款", "包邮"}) == ["新款", "包邮"]
        assert marketing_cover("新款连衣裙", {"新款", "包邮"}) is None
        assert marketing_cover("2024", {"new"}) is None
        # without titles only declared words count; the YAML form round-trips
        plain = catalog({"id": "a", "category": "A", "facts": {"colour": "Red"}})
        r = make_rule("new_value", id="m", check="marketing", words=["Hot Sale"], learn=False)
        assert labels(plain, [r], [("a", "colour", "hot sale"), ("a", "colour", "hot pink")]) == ["reject", "accept"]
        again = RuleSet.from_yaml(RuleSet([r]).to_yaml())
        assert again["m"].params == r.params
        with pytest.raises(kb.RuleConfigError, match="check"):
            make_rule("new_value", id="bad", check="vibes")


# -- verdicts ---------------------------------------------------------------------------------------
def test_unknown_product_is_rejected_with_a_reason() -> None:
    v = verdicts(TestDomain.CAT, [], [("nope", "gender", "Men"), ("m0", "gender", "Men")])
    assert list(v.labels) == ["reject", "accept"]
    assert v[0].reasons[0].rule == "kb:unknown-product" and "'nope'" in v[0].reasons[0].message


def test_severity_review_and_reject_combine() -> None:
    rules = [make_rule("domain", id="soft", attribute="gender", values=["Men"], severity="review"),
             make_rule("domain", id="hard", attribute="gender", values=["Men", "Women"])]
    v = verdicts(TestDomain.CAT, rules, [("m0", "gender", "Men"), ("m0", "gender", "Women"), ("m0", "gender", "X")])
    assert list(v.labels) == ["accept", "needs_review", "reject"]
    assert [r.rule for r in v[2].reasons] == ["soft", "hard"]
    assert v.counts() == {"accept": 1, "needs_review": 1, "reject": 1}
    assert v.rule_counts() == {"soft": 2, "hard": 1}


def test_a_prediction_contradicting_an_asserted_fact_is_never_accepted() -> None:
    rng = np.random.default_rng(7)
    products = []
    for i in range(200):
        age = rng.choice(["Kids-Boys", "Adults-Men", "Adults-Unisex"])
        gender = {"Kids-Boys": "Boys", "Adults-Men": "Men", "Adults-Unisex": "Unisex"}[age]
        products.append({"id": f"p{i}", "category": ["Apparel", "Tshirts"], "brand": "B",
                         "facts": {"ageGroup": age, "gender": gender, "colour": rng.choice(["Red", "Blue"])}})
    cat = catalog(*products)
    rules = kb.load_rules("default", "myntra")
    ctx = Context(cat, rules)
    rows = []
    for p in products:
        for g in ("Men", "Women", "Boys", "Girls", "Unisex"):
            rows.append((p["id"], "gender", g))
        for c in ("Red", "Blue", "Green"):
            rows.append((p["id"], "colour", c))
    v = validate(Predictions.from_dicts([{"product": p, "attribute": a, "value": x} for p, a, x in rows]), ctx)
    asserted = {(p["id"], a, str(x)) for p in products for a, x in p["facts"].items()}
    for i, (p, a, x) in enumerate(rows):
        if (p, a, x) not in asserted:  # another value of an attribute the product already has
            assert v.labels[i] != "accept", (p, a, x, v[i].reasons)
    # the asserted values themselves pass
    same = [i for i, r in enumerate(rows) if r in asserted]
    assert same and all(v.labels[i] == "accept" for i in same)


def test_ranked_candidates_and_best() -> None:
    cat = TestCardinality.CAT
    rule = make_rule("cardinality", id="one", attribute="gender")
    preds = Predictions.from_ranked([
        {"product": "a", "attribute": "gender", "candidates": [("Women", 0.7), ("Men", 0.3)]},
        {"product": "b", "attribute": "gender", "candidates": [{"value": "Women", "score": 0.2},
                                                               {"value": "Men", "score": 0.8}]},
        {"product": "c", "attribute": "gender", "candidates": [("Unisex", 0.9)]},
    ])
    v = validate(preds, Context(cat, RuleSet([rule])))
    assert list(preds.rank) == [0, 1, 0, 1, 0]  # re-ranked by score
    assert list(v.labels) == ["reject", "accept", "accept", "accept", "reject"]
    best = v.best()
    assert [(v[i].product, v[i].value) for i in best] == [("a", "Men"), ("b", "Men")]
    d = v.to_dicts([0])[0]
    assert d["verdict"] == "reject" and d["reasons"][0]["rule"] == "one" and d["score"] == pytest.approx(0.7)


def test_context_accepts_a_catalog_and_rejects_bad_inputs() -> None:
    v = validate([{"product": "m0", "attribute": "gender", "value": "Men"}], TestDomain.CAT)  # default rules
    assert len(v) == 1 and v.labels[0] == "accept"
    with pytest.raises(kb.PredictionError, match="missing key 'value'"):
        validate([{"product": "m0", "attribute": "gender"}], TestDomain.CAT)
    with pytest.raises(kb.KBError, match="Context or a kb.Catalog"):
        validate([], {"not": "a catalog"})  # type: ignore[arg-type]
    ctx = Context(TestDomain.CAT)
    with pytest.raises(kb.KBError, match="pass rules when building"):
        validate([], ctx, rules=[])


def test_rules_from_python_and_a_custom_rule_type() -> None:
    rs = RuleSet()
    rs.add("domain", id="g", attribute="gender", values=["Men"])
    with pytest.raises(kb.RuleConfigError, match="already used"):
        rs.add("domain", id="g", attribute="gender", values=["Men"])
    with pytest.raises(kb.RuleConfigError, match=r"<python rule 'x'>: vaules: unknown key 'vaules'.*valid keys"):
        rs.add("domain", id="x", attribute="gender", vaules=["Men"])
    with pytest.raises(kb.UnknownRuleType, match="registered: applicability, brand_category"):
        rs.add("nonsense", id="y")

    @kb.register_rule_type
    class NoEmptyish(kb.RuleType):
        name = "test_no_dash"
        summary = "values may not be a dash"
        template = "{attribute} = {value!r} is a placeholder"

        @classmethod
        def parse(cls, spec):
            return None

        @classmethod
        def dump(cls, params):
            return {}

        @classmethod
        def compile(cls, rule, ctx):
            class C(kb.Compiled):
                def _check(self, rows):
                    return rows.per_value(ctx.values.norm == "-", lambda e: e.norm == "-", False) & rows.is_value
            return C(rule, ctx)

    try:
        rs.add("test_no_dash", id="dash", severity="review")
        got = labels(TestDomain.CAT, list(rs), [("m0", "Fabric", "-"), ("m0", "gender", "Men")])
        assert got == ["needs_review", "accept"]
        with pytest.raises(kb.KBError, match="already registered"):
            @kb.register_rule_type
            class Again(NoEmptyish):
                pass
    finally:
        del kb.RULE_TYPES["test_no_dash"]


def test_context_warns_about_rules_that_match_nothing() -> None:
    rules = [make_rule("domain", id="typo", attribute="Gendr", values=["Men"], category="Apparrel"),
             make_rule("implication", id="amb", if_={"category": "Tshirts"}, then={"attribute": "gender", "value": "Men"})]
    cat = catalog({"id": "1", "category": "A > Tshirts"}, {"id": "2", "category": "B > Tshirts"})
    ctx = Context(cat, RuleSet(rules))
    text = "\n".join(ctx.warnings)
    assert "'Apparrel' is not in this catalog" in text
    assert "'Gendr' has no asserted value" in text
    assert "'Tshirts' is ambiguous" in text


def test_million_scale_shapes_are_vectorised() -> None:
    """Not a timing test: a batch larger than the catalog goes through every rule as arrays."""
    cat = TestApplicability.CAT
    rng = np.random.default_rng(0)
    n = 20_000
    prods = rng.choice(cat.product_ids, n)
    attrs = rng.choice(["Fabric", "Neck", "Heel Height", "@brand", "Other"], n)
    vals = rng.choice(["Cotton", "Silk", "5 cm", "Round", "x"], n)
    v = validate(Predictions.from_arrays(prods, attrs, vals, rng.random(n)), cat)
    assert len(v) == n and v.status.dtype == np.int8
    # same verdict for the same (product, attribute, value) wherever it appears in the batch
    seen: dict[tuple, int] = {}
    for p, a, x, s in zip(prods.tolist(), attrs.tolist(), vals.tolist(), v.status.tolist()):
        assert seen.setdefault((p, a, x), s) == s


# -- category_value ----------------------------------------------------------------------------------
class TestCategoryValue(RuleTypeCases):
    """Type values: Flip Flops on 20 sandals, Crew on 30 T-shirts, Casual on 10 shirts, Rare on 2 sandals.
    Apparel has 40 products with a Type, none of them Flip Flops; the whole catalog (an uncategorised product
    too) has Flip Flops on 20 of its 63: about 40 * 20 / 63 = 12.7 were expected under Apparel."""

    rule_type = "category_value"
    CAT = catalog(
        *many(20, "f", "Footwear > Sandals", Type="Flip Flops", Colour="Black"),
        *many(2, "r", "Footwear > Sandals", Type="Rare", Colour="Black"),
        *many(30, "t", "Apparel > Tshirts", Type="Crew", Colour="Black"),
        *many(10, "s", "Apparel > Shirts", Type="Casual", Colour="Black"),
        {"id": "nocat", "facts": {"Type": "Crew"}},
    )

    def test_accepts(self) -> None:
        rule = make_rule("category_value", id="cv", min_expected=10)
        got = labels(self.CAT, [rule], [("t0", "Type", "Crew"),  # seen there
                                        ("t0", "Type", "Casual"),  # absent from Tshirts: 30 * 10/40 = 7.5 < 10
                                        ("t0", "Type", "Brand New"),  # no product has it: not this rule's call
                                        ("nocat", "Type", "Flip Flops"),  # no category to judge in
                                        ("t0", "Colour", "Black")])
        assert got == ["accept"] * 5
        small = make_rule("category_value", id="cv", min_expected=0.5, min_support=3)
        assert labels(self.CAT, [small], [("t0", "Type", "Rare")]) == ["accept"]  # on 2 products only: < min_support

    def test_rejects(self) -> None:
        rule = make_rule("category_value", id="cv", min_expected=10, severity="reject")
        v = verdicts(self.CAT, [rule], [("t0", "Type", "Flip Flops"), ("s0", "Type", "Flip Flops")])
        assert list(v.labels) == ["reject", "reject"]
        msg = v[0].reasons[0].message
        assert msg.startswith("Type = 'Flip Flops' is foreign to Apparel: none of its 40 products with Type has it, "
                              "while 20 of the 63 products with Type under the whole catalog do (31.7%): about 12.7 "
                              "were expected there"), msg
        assert "probability 2e-07" in msg and "needs 10 expected" in msg
        # a lower threshold: Casual is absent from Tshirts, where Apparel's share makes 7.5 expected
        low = make_rule("category_value", id="cv", min_expected=5)
        v = verdicts(self.CAT, [low], [("t0", "Type", "Casual")])
        assert list(v.labels) == ["needs_review"]  # the type's default severity
        assert "foreign to Apparel > Tshirts: none of its 30 products with Type has it, while 10 of the 40 " \
               "products with Type under Apparel do (25.0%): about 7.5 were expected" in v[0].reasons[0].message

    def test_audit_leaves_the_fact_out(self) -> None:
        odd = {"id": "odd", "category": "Apparel > Tshirts", "facts": {"Type": "Flip Flops"}}
        cat = catalog(*self.CAT_PRODUCTS, odd)
        rule = make_rule("category_value", id="cv", min_expected=10)
        # as a prediction, one T-shirt with Flip Flops is enough to have seen it there
        assert labels(cat, [rule], [("t0", "Type", "Flip Flops")]) == ["accept"]
        # audited, the odd fact is judged against the other products: none under Apparel has it
        got = [v for v in kb.audit(Context(cat, RuleSet([rule])))]
        assert [(v.product, v.attribute, v.value) for v in got] == [("odd", "Type", "Flip Flops")]
        assert ("none of its 40 other products with Type has it, while 20 of the 63 other products with Type "
                "under the whole catalog do") in got[0].message

    def test_yaml_round_trip_and_lint(self) -> None:
        text = ("rules:\n  - id: cv\n    type: category_value\n    attributes: [Type, Colour]\n"
                "    min_expected: 4.5\n    min_support: 2\n    category: Apparel\n")
        rs = RuleSet.from_yaml(text, "r.yaml")
        r = rs["cv"]
        assert r.params.attributes == ("Type", "Colour") and r.params.min_expected == 4.5 and r.params.min_support == 2
        assert r.severity == "review" and r.scope == ("Apparel",)
        again = RuleSet.from_yaml(rs.to_yaml(), "again.yaml")
        assert again["cv"].params == r.params and again["cv"].scope == r.scope
        default = make_rule("category_value", id="d")
        assert default.params.attributes == "*" and default.params.min_expected == 10 and default.params.min_support == 3
        with pytest.raises(kb.RuleConfigError, match=r"r.yaml:5.*unknown key 'min_expect'"):
            RuleSet.from_yaml(text.replace("min_expected", "min_expect"), "r.yaml")
        with pytest.raises(kb.RuleConfigError, match="min_expected.*at least 0"):
            make_rule("category_value", id="bad", min_expected=-1)
        shipped = kb.load_rules("default")["category-value"]
        assert shipped.type == "category_value" and shipped.severity == "review"

    def test_teeth(self) -> None:
        rule = make_rule("category_value", id="cv", min_expected=10)
        # Apparel's Type could be foreign (Flip Flops: 12.7 expected), and Footwear's (Crew: 22 * 31 / 63 = 10.8);
        # Colour is Black everywhere; without a category there is nothing to judge against
        assert _teeth(self.CAT, rule, [("t0", "Type", "Crew"), ("t0", "Colour", "Black"), ("nocat", "Type", "Crew"),
                                       ("f0", "Type", "Flip Flops")]) == [True, False, False, True]
        strict = make_rule("category_value", id="cv", min_expected=11)
        assert _teeth(self.CAT, strict, [("t0", "Type", "Crew"), ("f0", "Type", "Flip Flops")]) == [True, False]


TestCategoryValue.CAT_PRODUCTS = [
    *many(20, "f", "Footwear > Sandals", Type="Flip Flops", Colour="Black"),
    *many(2, "r", "Footwear > Sandals", Type="Rare", Colour="Black"),
    *many(30, "t", "Apparel > Tshirts", Type="Crew", Colour="Black"),
    *many(10, "s", "Apparel > Shirts", Type="Casual", Colour="Black"),
    {"id": "nocat", "facts": {"Type": "Crew"}},
]


def test_new_values_and_brands_are_judged_where_they_are_rare() -> None:
    """Good-Turing: where many facts have a value no other product has, a new value is no evidence of an error,
    unless the catalog knows it as another attribute's value."""
    cat = catalog(*many(20, "c", "A > B", Colour="Red", brand="Acme"),
                  *[{"id": f"m{i}", "category": "A > B", "brand": f"b{i}", "facts": {"Model": f"x{i}"}}
                    for i in range(10)])
    rule = make_rule("domain", id="kv", attributes="*", known={"min_count": 1, "max_new_share": 0.05})
    v = verdicts(cat, [rule], [("c0", "Colour", "Blue"), ("c0", "Model", "x99"), ("c0", "Model", "Red"),
                               ("c0", "Model", "99-x")])
    assert list(v.labels) == ["reject", "accept", "reject", "reject"]
    assert "its form '9-a' is new to it, and new forms are rare (0.00% of its facts)" in v[3].reasons[0].message
    assert "new values are rare for it: 0.00% of its facts" in v[0].reasons[0].message
    assert "new values are common for it (100.0%), but the catalog knows it as a value of Colour (20 facts)" \
        in v[2].reasons[0].message
    # audit: Model's values are each on one product, which is normal there
    assert audited(cat, [rule]) == set()
    assert RuleSet.from_yaml(RuleSet([rule]).to_yaml())["kv"].params == rule.params
    # brands: 10 of the 30 branded products have a brand no other product has (33%)
    strict = make_rule("brand_category", id="bc", min_brand_products=5, max_new_share=0.5)
    lax = make_rule("brand_category", id="bc", min_brand_products=5, max_new_share=0.2)
    assert labels(cat, [strict], [("c0", "@brand", "Nobody")]) == ["needs_review"]
    assert labels(cat, [lax], [("c0", "@brand", "Nobody"), ("m0", "@brand", "Acme")]) == ["accept", "accept"]
    assert RuleSet.from_yaml(RuleSet([lax]).to_yaml())["bc"].params == lax.params


# -- could a rule have fired? ------------------------------------------------------------------------------
def _teeth(cat: Catalog, rule: object, rows: list[tuple]) -> list[bool]:
    ctx = Context(cat, RuleSet([rule]))
    preds = Predictions.from_dicts([{"product": p, "attribute": a, "value": v, "score": 0.5} for p, a, v in rows])
    return ctx.compiled[0].could_fire(validate(preds, ctx).rows).tolist()


def test_a_rule_has_teeth_only_where_some_value_could_break_it() -> None:
    """'Rules passed' lists only rules that could have fired: a functional attribute on an empty slot, a
    count-1 known-value rule on values the catalog has, a brand too small to judge -- none could."""
    card = TestCardinality.CAT
    one = make_rule("cardinality", id="one", attribute="gender")
    assert _teeth(card, one, [("a", "gender", "Women"), ("b", "gender", "Women"), ("a", "Features", "Zip")]) == \
        [True, False, False]  # a holds a gender already; b has none; Features is not functional
    known1 = make_rule("domain", id="k1", attributes="*", known={"min_count": 1})
    known3 = make_rule("domain", id="k3", attribute="Features", known={"min_count": 3})
    assert _teeth(card, known1, [("b", "gender", "Men"), ("b", "Features", "Hood")]) == [False, False]
    assert _teeth(card, known3, [("b", "Features", "Hood"), ("b", "gender", "Men")]) == [True, False]
    bc = TestBrandCategory
    assert _teeth(bc.CAT, bc.RULE, [("s0", "@brand", "Acme"), ("s0", "@brand", "Tiny"),
                                    ("s0", "@brand", "Nobody"), ("s0", "gender", "Men")]) == [True, False, True, False]
