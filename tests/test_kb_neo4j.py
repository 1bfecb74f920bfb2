"""The rule layer on the shipped Myntra sample in the real Neo4j: the catalog read out of the graph,
and an audit whose violations are recomputed here, independently, from the raw sample file.

The raw records are turned into facts the way the README documents ingest (missing markers dropped,
whitespace collapsed, ``ingest.normalize_value`` for the match key and measures); every rule's
verdicts are then recomputed in plain Python, without kb.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import kb
from attrgraph.cli import cli
from attrgraph.rules import check_rules, check_tree, load_catalog, rules_context
from graph import Neo4jSettings, ProductGraph
from graph.facts import count_products, iter_product_pages
from ingest import normalize_value

pytestmark = pytest.mark.neo4j

NA = {"", "NA", "N/A", "null"}
TOP = ("gender", "ageGroup", "baseColour", "season", "usage")
UNITS = ("g", "ml", "cm", "pcs")


@dataclass(frozen=True)
class RawFact:
    product: str
    attribute: str
    norm: str
    display: str
    qty: float | None
    unit: str | None


@dataclass
class Raw:
    path: dict[str, str]  # product -> leaf path
    brand: dict[str, str]  # product -> brand key
    facts: list[RawFact]


def nodes(path: str) -> list[str]:
    """The path and its ancestors, nearest first."""
    parts = path.split(" > ")
    return [" > ".join(parts[:i]) for i in range(len(parts), 0, -1)]


def raw_from_records(records: list[dict]) -> Raw:
    path, brand, facts = {}, {}, []
    for r in records:
        pid = str(r["id"])
        path[pid] = " > ".join(r[k] for k in ("masterCategory", "subCategory", "articleType") if r.get(k) not in NA)
        brand[pid] = " ".join(r["brand"].split()).casefold()
        pairs = [(k, r.get(k)) for k in TOP] + list((r.get("articleAttributes") or {}).items())
        for k, v in pairs:
            if v is None or v in NA:
                continue
            nv = normalize_value(v, attribute=k)
            facts.append(RawFact(pid, " ".join(k.split()), nv.norm, nv.display, nv.quantity, nv.unit))
    return Raw(path, brand, facts)


@pytest.fixture(scope="module")
def raw(sample_records: list[dict]) -> Raw:
    return raw_from_records(sample_records)


# -- the catalog out of the graph ------------------------------------------------------------------
def test_catalog_read_from_the_graph_is_the_sample(sample_graph: ProductGraph, raw: Raw) -> None:
    loaded = load_catalog(sample_graph, page_size=700)  # several pages
    cat = loaded.catalog
    assert loaded.tree.ok and loaded.notes == []
    assert len(cat) == len(raw.path) and cat.n_facts == len(raw.facts)
    got_path = {p: cat.categories[c] for p, c in zip(cat.product_ids.tolist(), cat.product_category.tolist())}
    assert got_path == raw.path
    got_brand = {p: cat.brands[b] for p, b in zip(cat.product_ids.tolist(), cat.product_brand.tolist())}
    assert got_brand == raw.brand
    got = {(cat.product_ids[p], cat.attributes[cat.value_attribute[v]], cat.value_norm[v])
           for p, v in zip(cat.fact_product.tolist(), cat.fact_value.tolist())}
    assert got == {(f.product, f.attribute, f.norm) for f in raw.facts}
    measures = {(f.attribute, f.norm): (f.qty, f.unit) for f in raw.facts if f.qty is not None}
    assert measures  # the sample has measures (heel heights in inches become cm)
    for v in range(len(cat.value_norm)):
        key = (cat.attributes[cat.value_attribute[v]], cat.value_norm[v])
        if key in measures:
            assert cat.value_quantity[v] == pytest.approx(measures[key][0])
            assert UNITS[cat.value_unit[v]] == measures[key][1]
        else:
            assert np.isnan(cat.value_quantity[v]) and cat.value_unit[v] == -1
    # the tree, from the graph's own edges
    assert cat.summary().tree_depth == 3 and loaded.tree.roots == tuple(sorted({p.split(" > ")[0] for p in raw.path.values()}))


def test_validate_predictions_against_the_graph(sample_graph: ProductGraph, sample_records: list[dict]) -> None:
    ctx = rules_context(sample_graph, ["myntra"])
    kid = next(r for r in sample_records if r["ageGroup"] == "Kids-Boys" and r["gender"] == "Boys")
    man = next(r for r in sample_records if r["ageGroup"] == "Adults-Men" and r.get("articleAttributes"))
    v = kb.validate([
        {"product": kid["id"], "attribute": "gender", "value": "Boys"},  # as asserted
        {"product": kid["id"], "attribute": "gender", "value": "Men"},  # contradicts gender and age group
        {"product": man["id"], "attribute": "ageGroup", "value": "Kids-Boys"},  # contradicts the age group
        {"product": man["id"], "attribute": "season", "value": "Monsoon"},  # not a season
    ], ctx)
    assert list(v.labels) == ["accept", "reject", "reject", "reject"]
    assert {r.rule for r in v[1].reasons} >= {"functional", "myntra.kids-not-adult-gender"}
    assert "myntra.season-values" in {r.rule for r in v[3].reasons}


def test_pages_cover_every_product_once(sample_graph: ProductGraph) -> None:
    ids = [p.id for page in iter_product_pages(sample_graph.client, page_size=1000) for p in page]
    assert len(ids) == len(set(ids)) == count_products(sample_graph.client)
    small = [len(page) for page in iter_product_pages(sample_graph.client, page_size=999)]
    assert small == [999, 999, 999, 3]
    assert check_tree(sample_graph).ok


# -- the audit, recomputed -------------------------------------------------------------------------
def expected_violations(raw: Raw) -> dict[str, set[tuple[str, str, str]]]:
    """(product, attribute, norm) of the facts violating each rule of default.yaml + myntra.yaml
    ("brand" and the brand key for brand facts), computed without kb."""
    F = raw.facts
    by_product: dict[str, list[RawFact]] = defaultdict(list)
    for f in F:
        by_product[f.product].append(f)
    value_products = Counter((f.attribute, f.norm) for f in F)
    subtree = Counter(n for p in raw.path.values() for n in nodes(p))
    pa = {(f.product, f.attribute) for f in F}
    subtree_attr = Counter((n, a) for p, a in pa for n in nodes(raw.path[p]))
    values_of = Counter((f.product, f.attribute) for f in F)
    out: dict[str, set] = defaultdict(set)
    key = lambda f: (f.product, f.attribute, f.norm)  # noqa: E731

    # default.yaml
    # known-value judges attributes where at most 0.5% of the facts have a value no other product has, and
    # elsewhere a value that other facts of another attribute have
    attr_facts = Counter(f.attribute for f in F)
    attr_single = Counter(f.attribute for f in F if value_products[(f.attribute, f.norm)] == 1)
    judged = {a for a in attr_facts if attr_single[a] / attr_facts[a] <= 0.005}
    key_facts = Counter(f.norm for f in F)
    own_key = Counter((f.product, f.norm) for f in F)

    def form(s: str) -> str:  # digits 9, latin letters a, other letters 字, runs collapsed
        out = ""
        for ch in s:
            c = "9" if ch.isdigit() else "a" if ch.isascii() and ch.isalpha() else "字" if ch.isalpha() else ch
            out += c if not out.endswith(c) else ""
        return out

    form_facts = Counter((f.attribute, form(f.norm)) for f in F)
    form_single = Counter(f.attribute for f in F if form_facts[(f.attribute, form(f.norm))] == 1)
    judged_form = {a for a in attr_facts if form_single[a] / attr_facts[a] <= 0.005}
    for f in F:
        if value_products[(f.attribute, f.norm)] - 1 < 1:
            elsewhere = key_facts[f.norm] - value_products[(f.attribute, f.norm)] - (own_key[(f.product, f.norm)] - 1)
            new_form = f.attribute in judged_form and form_facts[(f.attribute, form(f.norm))] - 1 < 1
            if f.attribute in judged or elsewhere >= 1 or new_form:
                out["known-value"].add(key(f))
        for n in nodes(raw.path[f.product]):  # applicability, learned, the fact's own product left out
            total, k = subtree[n] - 1, subtree_attr[(n, f.attribute)] - 1
            if total <= 0:
                continue
            if k >= 1 and k / total >= 0.002:
                break
            if total >= 50:
                out["applicability"].add(key(f))
                break
    having = Counter(a for _, a in pa)
    # category-value: from the root down, the first category whose other products with the attribute never
    # have the value; its parent's share (the whole catalog above a root) makes at least 3 of them expected
    subtree_val = Counter((n, f.attribute, f.norm) for f in F for n in nodes(raw.path[f.product]))
    for f in F:
        if not raw.path[f.product]:
            continue
        k_par, m_par = value_products[(f.attribute, f.norm)] - 1, having[f.attribute] - 1
        if k_par < 1:
            continue
        for n in reversed(nodes(raw.path[f.product])):
            c, na = subtree_val[(n, f.attribute, f.norm)] - 1, subtree_attr[(n, f.attribute)] - 1
            if c <= 0:
                if m_par > 0 and na * k_par / m_par >= 3 and k_par >= 3:
                    out["category-value"].add(key(f))
                break
            k_par, m_par = c, na
    single = Counter(a for (p, a), n in values_of.items() if n <= 1)
    functional = {a for a in having if having[a] >= 20 and single[a] / having[a] >= 0.98}
    for f in F:
        if f.attribute in functional and values_of[(f.product, f.attribute)] >= 2:
            out["functional"].add(key(f))
    brand_total = Counter(raw.brand.values())
    brand_root = Counter((b, raw.path[p].split(" > ")[0]) for p, b in raw.brand.items())
    for p, b in raw.brand.items():
        if brand_total[b] - 1 >= 5 and brand_root[(b, raw.path[p].split(" > ")[0])] - 1 < 1:
            out["brand-category"].add((p, "brand", b))
    def learned_range(qs: list[float]) -> tuple[float, float]:  # numeric-sanity's: the 5-95% bulk, widened 10x
        lo, hi = np.quantile(qs, [0.05, 0.95])
        return (lo / 10 if lo > 0 else lo * 10), (hi * 10 if hi > 0 else hi / 10)

    def plain_number(f: RawFact) -> float | None:
        if f.qty is not None:
            return None
        try:
            return float(f.norm)
        except ValueError:
            return None

    measured: dict[str, list[RawFact]] = defaultdict(list)
    plain: dict[str, list[RawFact]] = defaultdict(list)
    for f in F:
        if f.qty is not None:
            measured[f.attribute].append(f)
        elif plain_number(f) is not None:
            plain[f.attribute].append(f)
    for a in list(plain):  # attributes of plain numbers (20+, at most 5% measures): judged as plain numbers
        if len(plain[a]) >= 20 and len(measured.get(a, ())) <= 0.05 * (len(plain[a]) + len(measured.get(a, ()))):
            for f in measured.pop(a, ()):
                out["numeric-sanity"].add(key(f))  # a measure with a unit where plain numbers are expected
            below: dict[str, list[float]] = defaultdict(list)
            for g in plain[a]:
                for n in nodes(raw.path[g.product]):
                    below[n].append(plain_number(g))
            for f in plain[a]:
                for n in nodes(raw.path[f.product]):
                    qs = below[n]
                    if len(qs) < 20:
                        continue
                    lo, hi = learned_range(qs)
                    if not lo <= plain_number(f) <= hi:
                        out["numeric-sanity"].add(key(f))
                    break
    for a, fs in measured.items():  # numeric sanity, learned
        units = Counter(f.unit for f in fs)
        unit = min(units, key=lambda u: (-units[u], UNITS.index(u)))
        in_unit: dict[str, list[float]] = defaultdict(list)  # tree node -> quantities below it
        for g in fs:
            if g.unit == unit:
                for n in nodes(raw.path[g.product]):
                    in_unit[n].append(g.qty)
        for f in fs:
            if f.unit != unit:
                out["numeric-sanity"].add(key(f))
                continue
            for n in nodes(raw.path[f.product]):
                qs = in_unit[n]
                if len(qs) < 20:
                    continue
                lo, hi = learned_range(qs)
                if not lo <= f.qty <= hi:
                    out["numeric-sanity"].add(key(f))
                break

    # myntra.yaml
    allowed = {"gender": {"men", "women", "boys", "girls", "unisex"}, "season": {"summer", "fall", "winter", "spring"}}
    for f in F:
        if f.attribute == "gender" and f.norm not in allowed["gender"]:
            out["myntra.gender-values"].add(key(f))
        if f.attribute == "season" and f.norm not in allowed["season"]:
            out["myntra.season-values"].add(key(f))
        if f.attribute == "ageGroup" and not re.fullmatch("(adults|kids)-(men|women|boys|girls|unisex)", f.norm, re.I):
            out["myntra.age-group-values"].add(key(f))
        if f.attribute in TOP and values_of[(f.product, f.attribute)] >= 2:
            out["myntra.one-gender-age-season"].add(key(f))
    for p, fs in by_product.items():
        ages = [f for f in fs if f.attribute == "ageGroup"]
        genders = [f for f in fs if f.attribute == "gender"]
        for rule, age_re, bad in (("myntra.kids-not-adult-gender", "kids-.*", {"men", "women"}),
                                  ("myntra.adults-not-kids-gender", "adults-.*", {"boys", "girls"})):
            a_side = [f for f in ages if re.fullmatch(age_re, f.norm)]
            b_side = [f for f in genders if f.norm in bad]
            if a_side and b_side:
                out[rule].update(key(f) for f in a_side + b_side)
        for rule, age in (("myntra.adults-unisex-is-unisex", "adults-unisex"),
                          ("myntra.kids-unisex-is-unisex", "kids-unisex")):
            a_side = [f for f in ages if f.norm == age]
            fails = [f for f in genders if f.norm != "unisex"]
            if a_side and fails:
                out[rule].update(key(f) for f in a_side + fails)
    not_applies = {"Footwear": {"Sleeve Length", "Neck", "Collar", "Waist Rise", "Sleeve Styling"},
                   "Accessories > Watches": {"Sleeve Length", "Neck", "Collar", "Fabric", "Heel Height"},
                   "Apparel": {"Heel Height", "Dial Shape", "Lens Colour", "Strap Material"}}
    for f in F:
        if any(f.attribute in not_applies.get(n, ()) for n in nodes(raw.path[f.product])):
            out["myntra.garment-attributes-not-on-footwear"].add(key(f))
        if f.attribute == "Heel Height" and f.qty is not None and (f.unit != "cm" or not 0 <= f.qty <= 30):
            out["myntra.heel-height"].add(key(f))
        if f.attribute in ("Number of Pockets", "Number of Components", "Units Per Bundle", "Multipack Set"):
            try:
                x = float(f.norm)
            except ValueError:
                x = None
            if (x is None and f.qty is not None) or (x is not None and not 0 <= x <= 100):
                out["myntra.counts"].add(key(f))
    return out


def audit_matches_recount(graph: ProductGraph, raw: Raw) -> tuple[kb.AuditReport, dict[str, set]]:
    """Audit ``graph`` with default.yaml + myntra.yaml and check every finding and count against
    :func:`expected_violations` of the same records; returns the report and the recount."""
    res = check_rules(graph, ["myntra"])
    rep = res.report
    assert res.warnings == []
    assert rep.facts_checked == len(raw.facts) and rep.brands_checked == len(raw.brand)
    expected = expected_violations(raw)
    norm_of = {(f.product, f.attribute, f.display): f.norm for f in raw.facts}  # reports show display forms
    got: dict[str, set] = defaultdict(set)
    for v in rep:
        norm = kb.units.norm_key(v.value) if v.attribute == "brand" else norm_of[(v.product, v.attribute, v.value)]
        got[v.rule].add((v.product, v.attribute, norm))
    ids = [c.rule.id for c in res.context.compiled]
    assert set(expected) <= set(ids)
    for rid in ids:
        assert got.get(rid, set()) == expected.get(rid, set()), rid
    # the reported counts: per rule, and per rule, category and attribute
    assert rep.rule_counts() == {rid: len(expected.get(rid, ())) for rid in ids}
    leaf = raw.path
    exp_groups = Counter((rid, leaf[p], a) for rid, s in expected.items() for p, a, _ in s)
    assert dict(rep.count_by("rule", "category", "attribute")) == {k: n for k, n in exp_groups.items()}
    return rep, expected


def test_audit_of_the_sample_matches_an_independent_count(sample_graph: ProductGraph, raw: Raw) -> None:
    _, expected = audit_matches_recount(sample_graph, raw)
    # the sample really has findings of several kinds (so the comparison above is not vacuous)
    assert {rid for rid, s in expected.items() if s} >= {"known-value", "applicability", "brand-category",
                                                          "myntra.kids-not-adult-gender", "myntra.adults-unisex-is-unisex"}


# -- the CLI ----------------------------------------------------------------------------------------
@pytest.fixture()
def run(neo4j_settings: Neo4jSettings, sample_graph: ProductGraph):
    env = {"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
           "NEO4J_PASSWORD": neo4j_settings.password or "", "COLUMNS": "250"}

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


def test_cli_rules_check_exports(run, raw: Raw, tmp_path: Path) -> None:
    expected = expected_violations(raw)
    total = sum(len(s) for s in expected.values())
    res = run("rules", "check", "--rules", "myntra", "--out", str(tmp_path / "v.jsonl"), "--top", "5")
    assert res.exit_code == 0, res.output
    assert "myntra.kids-not-adult-gender" in res.output and "violations per rule" in res.output
    assert re.search(rf"violations\s*│\s*{total}\b", res.output)
    assert f"{total} violations written to" in res.output
    rows = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert len(rows) == total
    assert Counter(r["rule"] for r in rows) == {k: len(s) for k, s in expected.items() if s}
    assert set(rows[0]) == {"rule", "type", "severity", "product", "category", "attribute", "value", "message"}
    res = run("rules", "check", "--no-default", "--rules", "myntra", "--out", str(tmp_path / "v.csv"), "--by", "rule",
              "--fail-on", "reject")
    assert res.exit_code == 1  # the sample has reject-severity findings (kids with adult genders)
    with open(tmp_path / "v.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    myntra_total = sum(len(s) for k, s in expected.items() if k.startswith("myntra."))
    assert len(csv_rows) == myntra_total and all(r["rule"].startswith("myntra.") for r in csv_rows)
    assert run("rules", "check", "--by", "colour").exit_code != 0


def test_cli_rules_mine_then_check_with_the_mined_rules(run, tmp_path: Path) -> None:
    out = tmp_path / "mined.yaml"
    res = run("rules", "mine", "--out", str(out), "--min-products", "50", "--min-support", "30")
    assert res.exit_code == 0, res.output
    rules = kb.RuleSet.load(out)
    assert any(r.type == "implication" for r in rules) and "mined.applicability" in rules
    assert all(r.evidence["support"] >= 30 for r in rules if r.type == "implication")
    res = run("rules", "check", "--no-default", "--rules", str(out), "--examples", "0")
    assert res.exit_code == 0, res.output
    assert "mined.applicability" in res.output
    res = run("rules", "lint", str(out), "myntra")
    assert res.exit_code == 0 and f"{len(rules) + len(kb.load_rules('myntra'))} rules, no errors" in res.output
    assert run("rules", "tree").output.startswith("ok: ")
    res = run("rules", "types")
    assert res.exit_code == 0 and all(t in res.output for t in kb.RULE_TYPES)
