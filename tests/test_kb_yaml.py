"""Rule files: the documented format loads, every mistake is reported with file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import kb
from kb import RuleConfigError, RuleSet, load_rules

ROOT = Path(__file__).resolve().parent.parent


def load(text: str) -> RuleSet:
    return RuleSet.from_yaml(text, "r.yaml")


def error(text: str) -> RuleConfigError:
    with pytest.raises(RuleConfigError) as ei:
        load(text)
    return ei.value


GOOD = """\
version: 1
rules:
  - id: gender
    type: domain
    attribute: gender
    values: [Men, Women]
  - id: kids
    type: exclusion
    if: {attribute: ageGroup, pattern: "kids-.*"}
    then: {attribute: gender, values: [Men, Women]}
    severity: review
    message: "{attribute} {value} clashes with {other}"
  - id: disabled-one
    type: domain
    attribute: x
    values: [y]
    enabled: false
"""


def test_a_good_file_loads_with_sources() -> None:
    rs = load(GOOD)
    assert rs.ids() == ["gender", "kids"]  # disabled rules are left out
    assert rs["gender"].source == "r.yaml:3" and rs["kids"].source == "r.yaml:7"
    assert rs["kids"].severity == "review" and rs["gender"].severity == "reject"


@pytest.mark.parametrize("text, line, key, words", [
    ("rules:\n  - id: a\n    type: domain\n    attribute: [unclosed\n", 5, "(syntax)", "expected"),
    ("rules:\n  - id: a\n    type: domian\n    attribute: g\n", 3, "rules.0.type", "unknown rule type 'domian'; registered: applicability"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    vaules: [x]\n", 5, "rules.0.vaules",
     "unknown key 'vaules' for a domain rule; valid keys: attribute, attributes, category"),
    ("rules:\n  - type: domain\n    attribute: g\n    values: [x]\n", 2, "rules.0", "missing required key 'id'"),
    ("rules:\n  - id: 'has space'\n    type: domain\n    attribute: g\n    values: [x]\n", 2, "rules.0.id", "does not match"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    known: {min_count: two}\n", 5, "rules.0.known.min_count",
     "expected an integer, got 'two'"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    values: [x]\n    severity: fatal\n", 6,
     "rules.0.severity", "'fatal' is not one of: reject, review"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    range: {min: 5, max: 1, unit: cm}\n", 5,
     "rules.0.range.min", "min (5.0) is above max (1.0)"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    range: {max: 1, unit: kg}\n", 5,
     "rules.0.range.unit", "'kg' is not a canonical unit; use one of g, ml, cm, pcs"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    pattern: '(unclosed'\n", 5, "rules.0.pattern",
     "not a valid regular expression"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    values: [x]\n    pattern: x\n", 6, "rules.0.pattern",
     "give only one of values, value, pattern, range"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    attribute: h\n    values: [x]\n", 5, "rules.0.attribute",
     "duplicate key (first written on line 4)"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    values: [x]\n  - id: a\n    type: domain\n"
     "    attribute: g\n    values: [y]\n", 6, "rules.1.id", "rule id 'a' is already used (by the rule from r.yaml:2)"),
    ("rules:\n  - id: a\n    type: domain\n    attribute: g\n    values: [x]\n    message: 'bad {nope}'\n", 6,
     "rules.0.message", "unknown field {nope}"),
    ("rules:\n  - id: a\n    type: implication\n    if: {attribute: g, value: x}\n    then: {attribute: g, value: y}\n",
     5, "rules.0.then", "an attribute cannot imply itself"),
    ("rules:\n  - id: a\n    type: implication\n    if: {category: Footwear}\n    then: {attribute: g}\n", 5,
     "rules.0.then", "`then` needs values"),
    ("rules:\n  - id: a\n    type: exclusion\n    if: {category: Footwear, attribute: g}\n    then: {attribute: g}\n", 4,
     "rules.0.if.attribute", "a category condition takes no attribute"),
    ("rules:\n  - id: a\n    type: exclusion\n    if: {attribute: g, value: x}\n    then: {category: Footwear}\n", 5,
     "rules.0.then.category", "must name an `attribute`"),
    ("rules:\n  - id: a\n    type: applicability\n    categories:\n      Footwear: {applies: [x], not_applies: [x]}\n", 5,
     "rules.0.categories.Footwear.not_applies", "'x' is listed both"),
    ("rules:\n  - id: a\n    type: applicability\n    default: applies\n    learn: {min_products: 5}\n", 5,
     "rules.0.learn", "need `default: learn`"),
    ("rules:\n  - id: a\n    type: applicability\n    learn: {min_share: 2}\n", 4, "rules.0.learn.min_share",
     "must be at most 1"),
    ("rules:\n  - id: a\n    type: cardinality\n    max: 2\n", 2, "rules.0", "declare `attributes`"),
    ("rules:\n  - id: a\n    type: numeric\n    attribute: h\n    ranges:\n      - {min: 0, max: 30}\n", 5,
     "rules.0.ranges", "declared ranges need a `unit`"),
    ("rules:\n  - id: a\n    type: numeric\n    attribute: h\n    unit: cm\n    ranges:\n      - {min: 0, mx: 30}\n", 7,
     "rules.0.ranges.0.mx", "unknown key 'mx' for this range"),
    ("rules:\n  - id: a\n    type: brand_category\n    level: 0\n", 4, "rules.0.level", "must be at least 1"),
    ("rules:\n  - id: a\n    type: brand_category\n    category: [ ]\n", 4, "rules.0.category",
     "expected a string or a non-empty list"),
    ("rules: {id: a}\n", 1, "rules", "expected a list of rules"),
    ("version: 2\nrules: []\n", 1, "version", "unsupported version 2"),
    ("rulez: []\n", 1, "(top level)", "missing required key 'rules' (found 'rulez')"),
    ("rules:\n  - id: off\n    type: domain\n", 2, "rules.0.id", "quote it"),
    ("", None, "(top level)", "the file is empty"),
])
def test_errors_name_file_line_and_key(text: str, line: int | None, key: str, words: str) -> None:
    e = error(text)
    assert e.file == "r.yaml"
    assert e.line == line, str(e)
    assert e.key == key, str(e)
    assert words in e.message, str(e)
    assert str(e).startswith(f"r.yaml:{line}: {key}: " if line else f"r.yaml: {key}: ")


def test_the_range_key_with_a_typo_is_named() -> None:
    e = error("rules:\n  - id: a\n    type: domain\n    attribute: g\n    range: {min: 1, unti: cm}\n")
    assert e.key == "rules.0.range" and "missing required key 'unit' (found 'unti')" in e.message


def test_files_missing_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(RuleConfigError, match="no shipped rule file named 'nope'; shipped: default, myntra"):
        load_rules("nope")
    with pytest.raises(RuleConfigError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("rules: []\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(RuleConfigError, match="not UTF-8"):
        load_rules(bad)


def test_ids_are_unique_across_files(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text(GOOD)
    with pytest.raises(RuleConfigError, match=r"rule id 'gender' is already used \(by the rule from .*a.yaml:3\)"):
        load_rules(a, a)


def test_shipped_files_load_and_round_trip() -> None:
    assert kb.shipped_rules() == ["default", "myntra"]
    for name in kb.shipped_rules():
        rs = load_rules(name)
        assert len(rs) >= 5
        back = RuleSet.from_yaml(rs.to_yaml(header="round trip"), "back.yaml")
        assert back.ids() == rs.ids()
        for r in rs:
            b = back[r.id]
            assert (b.type, b.params, b.severity, b.message, b.scope) == (r.type, r.params, r.severity, r.message, r.scope)
    assert {r.type for r in load_rules("default", "myntra")} == set(kb.RULE_TYPES)


def test_every_rule_type_round_trips_through_yaml() -> None:
    text = """\
rules:
  - {id: d1, type: domain, attributes: "*", known: {min_count: 2, max_new_share: 0.01}, severity: review}
  - {id: d2, type: domain, attributes: [a, b], range: {min: 1, unit: none}, category: [X, Y]}
  - {id: ap, type: applicability, learn: {min_products: 5, min_count: 2, min_share: 0.1},
     categories: {X: {closed: true, applies: [a]}, "X > Y": {not_applies: [b]}}}
  - {id: c, type: cardinality, attribute: a, max: 2, learn: {min_products: 3, min_share: 0.9}}
  - {id: ex, type: exclusion, if: {category: X}, then: {attribute: a}}
  - {id: im, type: implication, if: {attribute: a, range: {max: 3, unit: cm}}, then: {attribute: b, pattern: "z.*"},
     message: "{condition} / {consequence} / {problem}"}
  - {id: bc, type: brand_category, level: 2, min_products: 3, min_brand_products: 4, max_new_share: 0.02}
  - {id: cv, type: category_value, attributes: [a], min_expected: 2.5, min_support: 4, category: X}
  - {id: nu, type: numeric, attribute: w, unit: g, ranges: [{max: 5}, {category: X, min: 1, max: 2}],
     learn: {min_count: 5, low: 0.1, high: 0.9, factor: 2}}
  - {id: nv1, type: new_value, check: length, attributes: [a], min_length: 3, max_length: 9, length_factor: 1.5}
  - {id: nv2, type: new_value, check: marketing, words: [hot sale], learn: {min_products: 3, min_categories: 2, max_share: 0.4}}
  - {id: nv3, type: new_value, check: digits, brands: false, numeric_share: 0.3}
  - {id: nv4, type: new_value, check: conflict, category: X}
"""
    rs = load(text)
    assert {r.type for r in rs} == set(kb.RULE_TYPES)
    back = RuleSet.from_yaml(rs.to_yaml(), "back.yaml")
    assert [(r.id, r.type, r.params, r.severity, r.scope, r.message) for r in back] == \
        [(r.id, r.type, r.params, r.severity, r.scope, r.message) for r in rs]


def test_the_readme_examples_load() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Rules (kb)"):]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert blocks, "the README's Rules (kb) section has no YAML example"
    for b in blocks:
        rs = RuleSet.from_yaml(b, "README.md")
        assert len(rs) >= 1
