"""Unit tests for ingest/mapping.py and ingest/yamlconf.py (no Neo4j).

FieldPath, loading and validating mappings (errors name file, line and key), applying a
mapping to hand-made records, the three shipped mappings on the first rows of the real
catalogs in ../shared/data, and hostile strings.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import itertools
import json
import re
import unicodedata
from pathlib import Path

import pytest
import yaml

import ingest
from ingest import ConfigError, FieldPath, IngestError, Mapping, RowError
from ingest.mapping import RESERVED_PROPERTIES
from ingest.readers import open_binary, read_csv, read_jsonl

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
N_ROWS = 200
# the missing markers as written in the shipped myntra mapping (read with PyYAML, not with ingest)
MISSING_MYNTRA = set(yaml.safe_load((Path(ingest.__file__).parent / "mappings" / "myntra.yaml").read_text("utf-8"))["missing"])


_C0_C1 = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def ws(s: str) -> str:
    """Expected cleaning, written independently of clean_text: NFKC, C0/C1 controls out, whitespace runs to one space."""
    return " ".join(_C0_C1.sub("", unicodedata.normalize("NFKC", s)).split())


def m(yaml_text: str, file: str = "test.yaml") -> Mapping:
    return Mapping.from_yaml(yaml_text, file)


def facts(p) -> set[tuple[str, str]]:
    return {(a, v.display) for a, v in p.facts}


def norms(p) -> set[tuple[str, str]]:
    return {(a, v.norm) for a, v in p.facts}


def config_error(yaml_text: str, file: str = "bad.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        Mapping.from_yaml(yaml_text, file)
    return ei.value


# =====================================================================================
# FieldPath
# =====================================================================================
class TestFieldPath:
    REC = {
        "id": 7,
        "brand": "Nike",
        "descriptors": {"description": "Soft", "care": {"wash": "cold"}},
        "sizes": ["S", "M", "L"],
        "entities": [
            {"type": "HPPX", "text": "Apple"},
            {"type": "HCCX", "text": "phone"},
            {"type": "HPPX", "text": "Beats"},
            {"type": "HCCX", "text": "case"},
            {"n": 1, "text": "one"},
            "not a record",
        ],
        "nested": [["a", "b"], ["c"]],
        "nothing": None,
        "a.b": "flat",
        "a": {"b": "deep"},
        "sizes[0]": "flat-bracket",
    }

    @pytest.mark.parametrize(
        "spec, expected",
        [
            ("brand", ["Nike"]),
            ("id", [7]),
            ("descriptors.description", ["Soft"]),
            ("descriptors.care.wash", ["cold"]),
            ("descriptors.missing", []),
            ("brand.sub", []),  # a key into a string
            ("missing", []),
            ("nothing", []),  # None is no value
        ],
    )
    def test_dotted_keys(self, spec: str, expected: list) -> None:
        assert FieldPath(spec).values(self.REC) == expected

    @pytest.mark.parametrize(
        "spec, expected",
        [("entities[0].text", ["Apple"]), ("entities[-3].text", ["case"]), ("entities[99].text", []),
         ("entities[-99].text", []), ("brand[0]", []), ("descriptors[0]", []), ("entities[1][0]", [])],
    )
    def test_indexes(self, spec: str, expected: list) -> None:
        assert FieldPath(spec).values(self.REC) == expected

    def test_index_into_a_flat_list_key(self) -> None:
        # "sizes[1]" is not a key of the record, so the path is walked
        assert FieldPath("sizes[1]").values(self.REC) == ["M"]
        assert FieldPath("sizes[-1]").values(self.REC) == ["L"]

    def test_filters_on_lists_of_records(self) -> None:
        assert FieldPath("entities[type=HPPX].text").values(self.REC) == ["Apple", "Beats"]
        assert FieldPath("entities[type=HCCX].text").values(self.REC) == ["phone", "case"]
        assert FieldPath("entities[type = HPPX].text").values(self.REC) == ["Apple", "Beats"]
        assert FieldPath("entities[type=XH].text").values(self.REC) == []
        assert FieldPath("entities[n=1].text").values(self.REC) == ["one"]  # compared as text
        assert FieldPath("entities[type=HPPX][1].text").values(self.REC) == []  # the filter yields records, not a list
        assert FieldPath("brand[type=HPPX]").values(self.REC) == []  # a filter on a non-list

    def test_filter_returns_whole_records(self) -> None:
        assert FieldPath("entities[type=HCCX]").values(self.REC) == [
            {"type": "HCCX", "text": "phone"}, {"type": "HCCX", "text": "case"},
        ]

    def test_flat_keys_containing_dots_or_brackets_win(self) -> None:
        assert FieldPath("a.b").values(self.REC) == ["flat"]
        assert FieldPath("sizes[0]").values(self.REC) == ["flat-bracket"]
        assert FieldPath("a.b").values({"a": {"b": "deep"}}) == ["deep"]  # no flat key: walk the path
        assert FieldPath("sizes[0]").values({"sizes": ["x", "y"]}) == ["x"]

    def test_lists_are_flattened_one_level(self) -> None:
        assert FieldPath("sizes").values(self.REC) == ["S", "M", "L"]
        assert FieldPath("nested").values(self.REC) == [["a", "b"], ["c"]]
        assert FieldPath("nested[0]").values(self.REC) == ["a", "b"]
        assert FieldPath("x").values({"x": [1, None, 2]}) == [1, None, 2]  # only a top-level None is dropped

    def test_non_mapping_record(self) -> None:
        assert FieldPath("a").values(["a"]) == []
        assert FieldPath("[1]").values(["a", "b"]) == ["b"]

    @pytest.mark.parametrize("spec", ["", "a..b", ".a", "a.", "a[", "a]", "a[x]", "a[1", "a]b[", "a[[1]]", "a[]", "a[1.5]", "a[b]c"])
    def test_bad_paths_raise_value_error(self, spec: str) -> None:
        with pytest.raises(ValueError) as ei:
            FieldPath(spec)
        assert "field path" in str(ei.value)

    def test_repr(self) -> None:
        assert repr(FieldPath("a.b[0]")) == "FieldPath('a.b[0]')"


# =====================================================================================
# Loading and validation
# =====================================================================================
class TestLoadErrors:
    def test_unknown_top_level_key(self) -> None:
        e = config_error("name: a\nid: id\ntitel: title\n")
        assert (e.file, e.line, e.key) == ("bad.yaml", 3, "titel")
        assert "unknown key" in e.message and "title" in e.message  # lists the valid keys
        assert str(e).startswith("bad.yaml:3: titel:")
        assert isinstance(e, IngestError)

    def test_unknown_key_inside_an_attributes_entry(self) -> None:
        e = config_error(
            "name: a\n"
            "id: id\n"
            "attributes:\n"
            "  - field: colour\n"
            "  - map: attrs\n"
            "    inclde: [Fabric]\n"
        )
        assert (e.file, e.line, e.key) == ("bad.yaml", 6, "attributes.1.inclde")
        assert "include" in e.message

    def test_bad_format(self) -> None:
        e = config_error("name: a\nformat: xml\nid: id\n")
        assert (e.line, e.key) == (2, "format")
        assert "xml" in e.message and "csv" in e.message and "jsonl" in e.message

    def test_missing_id(self) -> None:
        e = config_error("name: a\ntitle: t\n")
        assert e.key == "id" and e.file == "bad.yaml"
        assert e.line == 1  # no line of its own: the document
        assert "required" in e.message

    def test_missing_name(self) -> None:
        e = config_error("id: id\ntitle: t\n")
        assert e.key == "name" and "required" in e.message

    def test_reserved_property_name(self) -> None:
        e = config_error("name: a\nid: id\nproperties:\n  price: price\n  title: name\n")
        assert (e.line, e.key) == (5, "properties.title")
        assert "reserved" in e.message

    @pytest.mark.parametrize("reserved", sorted(RESERVED_PROPERTIES))
    def test_every_reserved_name_is_refused_in_list_form(self, reserved: str) -> None:
        e = config_error(f"name: a\nid: id\nproperties: [{reserved}]\n")
        assert e.key == f"properties.{reserved}" and e.line == 3

    def test_bad_yaml_syntax(self) -> None:
        e = config_error("name: a\nid: id\ntitle: [unclosed\n")
        assert e.key == "(syntax)" and e.file == "bad.yaml"
        assert e.line is not None and e.line >= 3
        e = config_error("name: a\n  id: b\n")
        assert (e.key, e.line) == ("(syntax)", 2)

    def test_not_a_mapping(self) -> None:
        e = config_error("- a\n- b\n")
        assert e.key == "(top level)" and e.line == 1
        assert config_error("").key == "(top level)"

    def test_bad_property_type(self) -> None:
        e = config_error("name: a\nid: id\nproperties:\n  price:\n    field: p\n    type: decimal\n")
        assert (e.line, e.key) == (6, "properties.price.type")
        assert "decimal" in e.message and "float" in e.message

    def test_bad_field_path(self) -> None:
        e = config_error("name: a\nid: id\nattributes:\n  - field: colour\n  - field: 'a[x]'\n")
        assert (e.line, e.key) == (5, "attributes.1.field")
        e = config_error("name: a\nid: 'a..b'\n")
        assert (e.line, e.key) == (2, "id")
        e = config_error("name: a\nid: id\ntitle: [t, 5]\n")
        assert e.key == "title.1" and e.line == 3

    def test_attribute_entry_needs_exactly_one_kind(self) -> None:
        e = config_error("name: a\nid: id\nattributes:\n  - {field: a, map: b}\n")
        assert (e.line, e.key) == (4, "attributes.0")
        e = config_error("name: a\nid: id\nattributes:\n  - {name: a}\n")
        assert e.key == "attributes.0"
        e = config_error("name: a\nid: id\nattributes:\n  - 5\n")
        assert e.key == "attributes.0"
        e = config_error("name: a\nid: id\nattributes: {field: a}\n")
        assert (e.line, e.key) == (3, "attributes")

    def test_list_source_needs_key_and_value(self) -> None:
        e = config_error("name: a\nid: id\nattributes:\n  - list: entities\n    key: type\n")
        assert (e.line, e.key) == (4, "attributes.0") and "value" in e.message

    def test_bad_names_include_exclude(self) -> None:
        assert config_error("name: a\nid: id\nattributes:\n  - {map: m, names: [a]}\n").key == "attributes.0.names"
        assert config_error("name: a\nid: id\nattributes:\n  - {map: m, include: a}\n").key == "attributes.0.include"
        assert config_error("name: a\nid: id\nattributes:\n  - {map: m, exclude: [{a: 1}]}\n").key == "attributes.0.exclude"

    def test_bad_split(self) -> None:
        e = config_error("name: a\nid: id\nattributes:\n  - field: tags\n    split: 5\n")
        assert (e.line, e.key) == (5, "attributes.0.split")
        assert config_error("name: a\nid: id\nattributes:\n  - {field: tags, split: ''}\n").key == "attributes.0.split"

    def test_empty_attribute_name(self) -> None:
        e = config_error("name: a\nid: id\nattributes:\n  - field: tags\n    name: '  '\n")
        assert (e.line, e.key) == (5, "attributes.0.name")

    def test_bad_category(self) -> None:
        e = config_error("name: a\nid: id\ncategory:\n  levels: [a, b]\n")
        assert (e.line, e.key) == (3, "category")
        e = config_error("name: a\nid: id\ncategory:\n  field: path\n  separator: ''\n")
        assert (e.line, e.key) == (5, "category.separator")

    def test_bad_id_forms(self) -> None:
        e = config_error("name: a\nid:\n  prefix: x\n")
        assert (e.line, e.key) == (2, "id")
        e = config_error("name: a\nid:\n  hash: []\n")
        assert (e.line, e.key) == (3, "id.hash")
        e = config_error("name: a\nid: 5\n")
        assert e.key == "id"

    def test_bad_normalize(self) -> None:
        e = config_error("name: a\nid: id\nnormalize:\n  unit: true\n")
        assert (e.line, e.key) == (4, "normalize.unit")
        e = config_error("name: a\nid: id\nnormalize:\n  synonyms: {'*': [a, b]}\n")
        assert (e.line, e.key) == (4, "normalize.synonyms")
        assert config_error("name: a\nid: id\nnormalize: [units]\n").key == "normalize"

    @pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", "true"])
    def test_bad_max_lengths(self, value: str) -> None:
        for key in ("max_value_length", "max_text_length"):
            e = config_error(f"name: a\nid: id\nnormalize:\n  units: true\n  {key}: {value}\n")
            assert (e.line, e.key) == (5, f"normalize.{key}")

    def test_bad_required(self) -> None:
        e = config_error("name: a\nid: id\nrequired:\n  - title\n  - colour\n")
        assert (e.line, e.key) == (5, "required.1") and "colour" in e.message
        assert config_error("name: a\nid: id\nrequired: [[title]]\n").key == "required.0"
        assert config_error("name: a\nid: id\nrequired: title\n").key == "required"

    def test_bad_missing_and_csv(self) -> None:
        assert config_error("name: a\nid: id\nmissing: NA\n").key == "missing"
        e = config_error("name: a\nid: id\ncsv:\n  separator: ';'\n")
        assert (e.line, e.key) == (3, "csv")

    def test_load_names_the_real_file(self, tmp_path: Path) -> None:
        p = tmp_path / "mine.yaml"
        p.write_text("# a comment\nname: mine\nid: id\nattributes:\n  - field: colour\n    nme: Colour\n", encoding="utf-8")
        with pytest.raises(ConfigError) as ei:
            Mapping.load(p)
        e = ei.value
        assert (e.file, e.line, e.key) == (str(p), 6, "attributes.0.nme")
        assert str(e).startswith(f"{p}:6: attributes.0.nme:")

    def test_load_missing_file(self, tmp_path: Path) -> None:
        p = tmp_path / "nope.yaml"
        with pytest.raises(ConfigError) as ei:
            Mapping.load(p)
        assert ei.value.file == str(p) and ei.value.key == "(file)" and ei.value.line is None

    def test_load_non_utf8_file(self, tmp_path: Path) -> None:
        p = tmp_path / "latin.yaml"
        p.write_bytes("name: caf\u00e9\nid: id\n".encode("latin-1"))
        with pytest.raises(ConfigError) as ei:
            Mapping.load(p)
        assert ei.value.file == str(p) and ei.value.key == "(file)"

    def test_recursive_yaml_alias_is_an_error_not_a_crash(self) -> None:
        e = config_error("name: a\nid: &x [*x]\n")
        assert e.key == "id"

    def test_shipped_mapping_unknown_name(self) -> None:
        with pytest.raises(IngestError) as ei:
            ingest.shipped_mapping("amazon")
        assert "amazon" in str(ei.value) and "myntra" in str(ei.value)


class TestLoadGood:
    def test_full_mapping_fields(self) -> None:
        mp = m(
            "name: ' shop '\nsource: shop.example\nformat: csv\nid: sku\ntitle: [name, subtitle]\n"
            "description: desc\nbrand: maker\ncategory: {field: path, separator: '/'}\n"
            "attributes:\n  - colour\n  - {field: size, name: Size}\n  - {map: specs, exclude: [x]}\n"
            "properties:\n  price: {field: p, type: float}\n  note: n\n"
            "missing: ['-']\nnormalize: {units: false, html: false, max_value_length: 50, max_text_length: 500}\n"
            "required: [title]\ncsv: {delimiter: ';'}\n"
        )
        assert mp.name == "shop" and mp.source == "shop.example" and mp.format == "csv"
        assert [f.spec for f in mp.id_paths] == ["sku"] and not mp.id_hash
        assert [f.spec for f in mp.title] == ["name", "subtitle"]
        assert mp.brand is not None and mp.brand.spec == "maker"
        assert mp.category_separator == "/"
        assert [(a.kind, a.name) for a in mp.attributes] == [("field", "colour"), ("field", "Size"), ("map", None)]
        assert mp.attributes[2].exclude == frozenset({"x"}) and mp.attributes[2].include is None
        assert mp.properties["price"][1] is float and mp.properties["note"][1] is None
        assert mp.missing == frozenset({"-"})
        assert (mp.parse_units, mp.strip_html, mp.max_value_length, mp.max_text_length) == (False, False, 50, 500)
        assert mp.required == ("title",) and mp.csv == {"delimiter": ";"}

    def test_defaults(self) -> None:
        mp = m("name: x\nid: id\n")
        assert mp.source == "x" and mp.format is None and mp.brand is None
        assert {"", "na", "n/a", "null", "none", "nan"} == set(mp.missing)
        assert mp.parse_units and mp.strip_html and mp.max_value_length == 1000

    def test_from_dict(self) -> None:
        mp = Mapping.from_dict({"name": "d", "id": "id", "attributes": ["colour"]})
        assert mp.apply({"id": 1, "colour": "Red"}).facts[0][0] == "colour"
        with pytest.raises(ConfigError) as ei:
            Mapping.from_dict({"name": "d"})
        assert ei.value.key == "id" and ei.value.file == "<dict>"

    @pytest.mark.parametrize("name", ingest.SHIPPED_MAPPINGS)
    def test_shipped_mappings_load(self, name: str) -> None:
        mp = ingest.shipped_mapping(name)
        assert mp.name == name
        assert mp.file.endswith(f"{name}.yaml")


# =====================================================================================
# Applying a mapping to hand-made records
# =====================================================================================
SIMPLE = """
name: simple
id: id
title: [title, subtitle]
description: [desc, notes]
brand: brand
category:
  fields: [l1, l2, l3]
attributes:
  - field: colour
  - field: sizes
    name: size
  - field: tags
    split: ","
  - map: attrs
  - list: entities
    key: type
    value: text
    include: [HCCX, XH]
    names: {HCCX: product type, XH: model number}
properties:
  price: {field: price, type: float}
  year: {field: year, type: int}
  active: {field: active, type: bool}
  note: note
"""


class TestApplyId:
    def test_id_from_a_field(self) -> None:
        mp = m(SIMPLE)
        assert mp.apply({"id": "ABC-1"}).id == "ABC-1"
        assert mp.apply({"id": "  ABC\x00-2  "}).id == "ABC-2"

    @pytest.mark.parametrize("raw, expected", [(10000, "10000"), (10000.0, "10000"), (12.5, "12.5"), (0, "0"), ("007", "007")])
    def test_int_like_ids(self, raw: object, expected: str) -> None:
        assert m(SIMPLE).apply({"id": raw}).id == expected

    @pytest.mark.parametrize("rec", [{}, {"id": None}, {"id": ""}, {"id": "NA"}, {"id": "  na "}, {"id": "\x00"}, {"id": []}, {"id": {"a": 1}}])
    def test_missing_id_is_a_row_error_naming_the_field(self, rec: dict) -> None:
        with pytest.raises(RowError) as ei:
            m(SIMPLE).apply(rec)
        assert ei.value.field == "id"

    def test_nested_id_path(self) -> None:
        mp = m("name: n\nid: meta.sku\n")
        assert mp.apply({"meta": {"sku": "X9"}}).id == "X9"
        with pytest.raises(RowError) as ei:
            mp.apply({"meta": {}})
        assert ei.value.field == "meta.sku"

    def test_too_long_id(self) -> None:
        mp = m(SIMPLE)
        assert mp.apply({"id": "x" * 512}).id == "x" * 512
        with pytest.raises(RowError) as ei:
            mp.apply({"id": "x" * 513})
        assert ei.value.field == "id" and "513" in ei.value.reason

    def test_hashed_id(self) -> None:
        mp = m("name: h\nid: {hash: [brand, title], prefix: 'p-'}\n")
        rec = {"brand": "Acme", "title": "Rocket Skates"}
        expected = "p-" + hashlib.sha1("Acme\x1fRocket Skates".encode()).hexdigest()[:16]
        assert mp.apply(rec).id == expected
        assert mp.apply(dict(reversed(list(rec.items())))).id == expected  # key order is irrelevant
        assert mp.apply({"brand": "Acme", "title": "Rocket  Skates "}).id == expected  # cleaned first
        assert mp.apply({"brand": "Acme", "title": "Rocket Skis"}).id != expected
        assert mp.apply({"brand": "Rocket Skates", "title": "Acme"}).id != expected  # order of fields matters

    def test_hashed_id_without_prefix_and_missing_part(self) -> None:
        mp = m("name: h\nid: {hash: [text]}\n")
        assert mp.apply({"text": "abc"}).id == hashlib.sha1(b"abc").hexdigest()[:16]
        with pytest.raises(RowError) as ei:
            mp.apply({"other": "abc"})
        assert ei.value.field == "text"

    def test_record_must_be_an_object(self) -> None:
        for rec in ([1, 2], "text", 5, None):
            with pytest.raises(RowError) as ei:
                m(SIMPLE).apply(rec)
            assert ei.value.field is None


class TestApplyContent:
    def test_missing_markers_are_skipped(self) -> None:
        p = m(SIMPLE).apply({
            "id": 1, "title": "NA", "subtitle": "", "brand": "N/A", "colour": "null", "tags": "a,NA,,b",
            "attrs": {"Fabric": "None", "Fit": "nan", "Neck": "Round"}, "l1": "NA", "l2": "Shoes", "note": "NA",
        })
        assert p.title is None and p.brand is None
        assert facts(p) == {("tags", "a"), ("tags", "b"), ("Neck", "Round")}
        assert p.category == ("Shoes",)
        assert "note" not in p.properties

    def test_custom_missing_list(self) -> None:
        mp = m("name: c\nid: id\nbrand: brand\nattributes: [colour]\nmissing: ['-', unknown]\n")
        p = mp.apply({"id": 1, "brand": "UNKNOWN", "colour": "NA"})
        assert p.brand is None
        assert facts(p) == {("colour", "NA")}  # "NA" is a value for this mapping
        assert mp.apply({"id": 1, "colour": "-"}).facts == ()

    def test_title_joined_with_spaces(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "title": "Blue  Shirt\n", "subtitle": "Slim\nfit"})
        assert p.title == "Blue Shirt Slim fit"

    def test_title_is_capped(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "title": "t" * 5000})
        assert p.title == "t" * 2000

    def test_description_joined_with_html_stripped(self) -> None:
        p = m(SIMPLE).apply({
            "id": 1,
            "desc": "<p>Soft <b>cotton</b>&nbsp;tee</p><br/>Fish &amp; Chips &lt;3",
            "notes": "<ul><li>Machine wash</li></ul>",
        })
        assert p.description is not None
        assert "<" not in p.description.replace("&lt;3", "").replace("<3", "")
        assert p.description == "Soft cotton tee Fish & Chips <3\nMachine wash"

    def test_description_keeps_paragraphs(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "desc": "Line one\n\n\n\nLine   two\x00"})
        assert p.description == "Line one\n\nLine two"

    def test_html_false_keeps_tags(self) -> None:
        mp = m("name: h\nid: id\ndescription: d\nnormalize: {html: false}\n")
        assert mp.apply({"id": 1, "d": "<b>bold</b> &amp;"}).description == "<b>bold</b> &amp;"

    def test_description_capped_at_max_text_length(self) -> None:
        mp = m("name: h\nid: id\ndescription: d\nnormalize: {max_text_length: 100}\n")
        d = mp.apply({"id": 1, "d": "w " * 1000}).description
        assert len(d) <= 100 and d.rstrip() == ("w " * 50).strip()

    def test_no_title_or_description(self) -> None:
        p = m(SIMPLE).apply({"id": 1})
        assert p.title is None and p.description is None and p.brand is None
        assert p.category == () and p.facts == () and p.properties == {}

    def test_brand(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "brand": " Sri Sri  Ayurveda "})
        assert p.brand is not None
        assert (p.brand.display, p.brand.norm) == ("Sri Sri Ayurveda", "sri sri ayurveda")
        p = m(SIMPLE).apply({"id": 1, "brand": "500 g"})  # brands are never read as quantities
        assert p.brand.norm == "500 g" and p.brand.unit is None
        assert m(SIMPLE).apply({"id": 1, "brand": "B" * 400}).brand.display == "B" * 300

    def test_category_from_several_fields(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "l1": "Apparel", "l2": " Topwear ", "l3": "Tshirts"})
        assert p.category == ("Apparel", "Topwear", "Tshirts")
        assert m(SIMPLE).apply({"id": 1, "l1": "Apparel", "l3": "Tshirts"}).category == ("Apparel", "Tshirts")

    def test_category_from_one_field_with_separator(self) -> None:
        mp = m("name: c\nid: id\ncategory: {field: path, separator: '>'}\n")
        assert mp.apply({"id": 1, "path": "Food > Snacks >  Chips "}).category == ("Food", "Snacks", "Chips")
        assert mp.apply({"id": 1, "path": "Food >> NA > Chips"}).category == ("Food", "Chips")
        assert mp.apply({"id": 1, "path": "Food"}).category == ("Food",)
        assert mp.apply({"id": 1}).category == ()

    def test_category_single_field_shorthand(self) -> None:
        assert m("name: c\nid: id\ncategory: cat\n").apply({"id": 1, "cat": "Toys"}).category == ("Toys",)

    def test_attribute_from_field_and_renamed(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "colour": "Navy  Blue", "sizes": "M"})
        assert facts(p) == {("colour", "Navy Blue"), ("size", "M")}
        assert norms(p) == {("colour", "navy blue"), ("size", "m")}

    def test_multi_valued_list_field(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "sizes": ["S", "M", "NA", "", "m", None, {"x": 1}, "XL"]})
        assert facts(p) == {("size", "S"), ("size", "M"), ("size", "XL")}  # "m" is the same value as "M"
        assert [v.display for a, v in p.facts if a == "size" and v.norm == "m"] == ["M"]  # the first spelling wins

    def test_split(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "tags": "cotton, summer ,, Cotton,  casual"})
        assert facts(p) == {("tags", "cotton"), ("tags", "summer"), ("tags", "casual")}

    def test_attributes_from_a_map(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "attrs": {"Fabric": "Cotton", "Sleeve Length": "Short Sleeves",
                                                 "Colours": ["Red", "Blue"], "Nested": {"a": "b"}, "Empty": ""}})
        assert facts(p) == {("Fabric", "Cotton"), ("Sleeve Length", "Short Sleeves"), ("Colours", "Red"), ("Colours", "Blue")}

    def test_map_include_exclude_names(self) -> None:
        rec = {"id": 1, "attrs": {"Fabric": "Cotton", "Fit": "Slim", "Neck": "Round", "Wash": "Cold"}}
        inc = m("name: x\nid: id\nattributes:\n  - map: attrs\n    include: [Fabric, Fit]\n    names: {Fit: fit type}\n")
        assert facts(inc.apply(rec)) == {("Fabric", "Cotton"), ("fit type", "Slim")}
        exc = m("name: x\nid: id\nattributes:\n  - map: attrs\n    exclude: [Wash, Neck]\n")
        assert facts(exc.apply(rec)) == {("Fabric", "Cotton"), ("Fit", "Slim")}
        both = m("name: x\nid: id\nattributes:\n  - {map: attrs, include: [Fabric, Fit], exclude: [Fit]}\n")
        assert facts(both.apply(rec)) == {("Fabric", "Cotton")}

    def test_map_on_a_non_object_is_a_row_error(self) -> None:
        with pytest.raises(RowError) as ei:
            m(SIMPLE).apply({"id": 1, "attrs": "Fabric: Cotton"})
        assert ei.value.field == "attrs"
        assert m(SIMPLE).apply({"id": 1, "attrs": None}).facts == ()

    def test_attributes_from_a_list_of_records(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "entities": [
            {"type": "HPPX", "text": "Apple"}, {"type": "HCCX", "text": "phone"}, {"type": "HCCX", "text": "case"},
            {"type": "XH", "text": "A1586"}, {"type": "MISC", "text": "2015"}, {"text": "no type"}, "junk",
        ]})
        assert facts(p) == {("product type", "phone"), ("product type", "case"), ("model number", "A1586")}

    def test_list_without_include_takes_every_key(self) -> None:
        mp = m("name: x\nid: id\nattributes:\n  - {list: specs, key: k, value: v}\n")
        p = mp.apply({"id": 1, "specs": [{"k": "Weight", "v": "0.5 kg"}, {"k": "Colour", "v": ["Red", "Blue"]}]})
        assert facts(p) == {("Weight", "0.5 kg"), ("Colour", "Red"), ("Colour", "Blue")}
        assert ("Weight", "500 g") in norms(p)

    def test_units_in_facts(self) -> None:
        rec = {"id": 1, "attrs": {"Net Weight": "0.5 kg", "Volume": "1.5 L", "Size": "M"}}
        assert norms(m(SIMPLE).apply(rec)) == {("Net Weight", "500 g"), ("Volume", "1500 ml"), ("Size", "m")}
        no_units = m("name: x\nid: id\nattributes: [{map: attrs}]\nnormalize: {units: false}\n")
        assert ("Net Weight", "0.5 kg") in norms(no_units.apply(rec))

    def test_synonyms_from_the_mapping(self) -> None:
        mp = m("name: x\nid: id\nattributes: [colour, {map: attrs}]\n"
               "normalize:\n  synonyms:\n    colour: {navy: Navy Blue}\n    '*': {grey: Gray, 'not applicable': ''}\n")
        p = mp.apply({"id": 1, "colour": "NAVY", "attrs": {"Trim": "grey", "Lining": "Not Applicable", "Body": "navy"}})
        assert facts(p) == {("colour", "Navy Blue"), ("Trim", "Gray"), ("Body", "navy")}

    def test_facts_are_sorted(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "colour": "Red", "attrs": {"Zip": "Yes", "Arm": "Long"}, "sizes": ["XL", "L"]})
        keys = [(a, v.norm) for a, v in p.facts]
        assert keys == sorted(keys)

    def test_typed_properties(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "price": "649", "year": "2011", "active": "false", "note": "  a  note "})
        assert p.properties == {"price": 649.0, "year": 2011, "active": False, "note": "a note"}
        assert type(p.properties["price"]) is float and type(p.properties["year"]) is int
        p = m(SIMPLE).apply({"id": 1, "price": 649, "year": "2011.0", "active": True})
        assert p.properties == {"price": 649.0, "year": 2011, "active": True}
        assert m(SIMPLE).apply({"id": 1, "active": "YES"}).properties["active"] is True
        assert m(SIMPLE).apply({"id": 1, "active": "0"}).properties["active"] is False

    def test_untyped_properties_keep_json_types(self) -> None:
        assert m(SIMPLE).apply({"id": 1, "note": 5}).properties == {"note": 5}

    @pytest.mark.parametrize("field, value", [("price", "1,495"), ("price", "abc"), ("year", "twenty"), ("year", "inf"),
                                              ("year", "1e400"), ("active", "maybe"), ("active", "2")])
    def test_bad_typed_value_is_a_row_error_naming_the_field(self, field: str, value: object) -> None:
        with pytest.raises(RowError) as ei:
            m(SIMPLE).apply({"id": 1, field: value})
        assert ei.value.field == field
        assert str(value)[:10] in ei.value.reason

    def test_property_from_a_differently_named_field(self) -> None:
        mp = m("name: x\nid: id\nproperties:\n  fashion_type: fashionType\n  cost: {field: pricing.mrp, type: float}\n")
        assert mp.apply({"id": 1, "fashionType": "Core", "pricing": {"mrp": "99.5"}}).properties == {
            "fashion_type": "Core", "cost": 99.5}

    @pytest.mark.parametrize("req, rec_extra", [("title", {"title": "T"}), ("brand", {"brand": "B"}),
                                                ("category", {"l1": "C"}), ("description", {"desc": "D"})])
    def test_required_fields(self, req: str, rec_extra: dict) -> None:
        mp = m(SIMPLE + f"required: [{req}]\n")
        with pytest.raises(RowError) as ei:
            mp.apply({"id": 1})
        assert ei.value.field == req
        with pytest.raises(RowError):
            mp.apply({"id": 1, **{k: "NA" for k in rec_extra}})  # a missing marker is not a value
        assert mp.apply({"id": 1, **rec_extra}).id == "1"


class TestContentHash:
    REC = {"id": 1, "title": "Tee", "desc": "Soft", "brand": "Nike", "l1": "Apparel", "colour": "Red",
           "attrs": {"Fabric": "Cotton"}, "price": "10", "ignored": "x"}

    def h(self, rec: dict, name: str = "simple") -> str:
        return m(SIMPLE).apply(rec).content_hash(name)

    def test_stable(self) -> None:
        a = self.h(self.REC)
        assert re.fullmatch(r"[0-9a-f]{32}", a)
        assert a == self.h(dict(self.REC)) == self.h(dict(reversed(list(self.REC.items()))))
        assert a == self.h({**self.REC, "attrs": {"Fabric": "Cotton"}})

    def test_unmapped_fields_and_spelling_noise_do_not_matter(self) -> None:
        a = self.h(self.REC)
        assert a == self.h({**self.REC, "ignored": "y", "other": 5})
        assert a == self.h({**self.REC, "title": " Tee  ", "colour": "Red\x00"})

    @pytest.mark.parametrize("change", [
        {"colour": "Blue"}, {"colour": "red"}, {"attrs": {"Fabric": "Linen"}}, {"attrs": {}}, {"title": "Top"},
        {"desc": "Hard"}, {"brand": "Adidas"}, {"l1": "Footwear"}, {"price": "11"}, {"l2": "Topwear"},
    ])
    def test_changes_when_a_fact_changes(self, change: dict) -> None:
        assert self.h({**self.REC, **change}) != self.h(self.REC)

    def test_depends_on_the_mapping_name(self) -> None:
        assert self.h(self.REC, "a") != self.h(self.REC, "b")


# =====================================================================================
# Hostile strings
# =====================================================================================
HOSTILE = [
    "it's \"quoted\" `back` ticks",
    "x'}) DETACH DELETE n //",
    "`}) DETACH DELETE n //",
    "\"}) MATCH (n) DETACH DELETE n RETURN 1 //",
    "$param {a: 1} \\u0000 \\' \\\\",
    "<script>alert(1)</script>",
    "null\x00byte",
    "bell\x07esc\x1b[31mred\x7fdel\x9fc1",
]
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class TestHostile:
    MAPPING = SIMPLE.replace("  note: note\n", "  note: note\n  typed_note: {field: tnote, type: str}\n") + \
        "normalize: {max_value_length: 300, max_text_length: 5000}\n"

    @pytest.mark.parametrize("s", HOSTILE)
    def test_hostile_strings_are_plain_data(self, s: str) -> None:
        mp = m(self.MAPPING)
        rec = {"id": s, "title": s, "desc": s, "brand": s, "l1": s, "colour": s, "attrs": {s: s},
               "entities": [{"type": "HCCX", "text": s}], "note": s, "tnote": s}
        p = mp.apply(rec)
        expected = ws(CONTROL.sub("", s))
        assert p.id == expected
        assert p.title == expected and p.brand.display == expected and p.category == (expected,)
        assert ("colour", expected) in facts(p) and (expected, expected) in facts(p)
        assert ("product type", expected) in facts(p)
        assert p.properties["note"] == expected and p.properties["typed_note"] == expected
        every = [p.id, p.title, p.description, p.brand.display, *p.category, *(a for a, _ in p.facts),
                 *(v.display for _, v in p.facts), *(v.norm for _, v in p.facts), *p.properties.values()]
        for text in every:
            assert not CONTROL.search(text), repr(text)
        json.dumps(p.properties)  # plain, serialisable values

    def test_hostile_description_keeps_the_text_not_the_markup(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "desc": "<script>x'}) DETACH DELETE n //</script>"})
        assert p.description == "x'}) DETACH DELETE n //"

    def test_one_megabyte_strings_are_truncated(self) -> None:
        mp = m(self.MAPPING)
        big = ("ab\x00c " * 250_000)[:1_000_000]
        rec = {"id": 1, "title": big, "subtitle": big, "desc": big, "notes": big, "brand": big, "l1": big,
               "colour": big, "tags": big, "attrs": {big: big}, "note": big, "tnote": big,
               "entities": [{"type": "HCCX", "text": big}]}
        p = mp.apply(rec)
        assert len(p.title) <= 2000
        assert len(p.description) <= 5000
        assert len(p.brand.display) <= 300
        assert all(len(c) <= 300 for c in p.category)
        assert p.facts
        for a, v in p.facts:
            assert len(a) <= 300 and len(v.display) <= 300 and len(v.norm) <= 300
        assert len(p.properties["note"]) <= 5000 and len(p.properties["typed_note"]) <= 5000
        for text in (p.title, p.description, p.brand.display, p.properties["note"], p.properties["typed_note"]):
            assert "\x00" not in text and text.startswith("abc abc")

    def test_long_map_keys_are_capped_as_attribute_names(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "attrs": {"K" * 10_000: "v"}})
        ((attr, val),) = p.facts
        assert attr == "K" * 200 and val.display == "v"

    def test_default_max_value_length(self) -> None:
        p = m(SIMPLE).apply({"id": 1, "colour": "c" * 1_000_000})
        assert [v.display for _, v in p.facts] == ["c" * 1000]

    def test_huge_id_is_rejected_not_truncated(self) -> None:
        with pytest.raises(RowError) as ei:
            m(SIMPLE).apply({"id": "i" * 1_000_000})
        assert ei.value.field == "id"


# =====================================================================================
# Shipped mappings on the real catalogs
# =====================================================================================
def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real catalog not available: {path}")
    return path


def _jsonl_head(path: Path, n: int) -> list[dict]:
    with gzip.open(_need(path), "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in itertools.islice(fh, n)]


def _present(v: object, missing: set[str]) -> bool:
    return v is not None and not isinstance(v, (dict, list)) and str(v).strip() not in missing


@pytest.fixture(scope="module")
def myntra_rows() -> list[dict]:
    return _jsonl_head(SHARED / "myntra" / "styles.jsonl.gz", N_ROWS)


@pytest.fixture(scope="module")
def myntra_mapped(myntra_rows: list[dict]) -> list:
    mp = ingest.shipped_mapping("myntra")
    return [mp.apply(r) for r in myntra_rows]  # a RowError fails the test


class TestMyntra:
    @pytest.fixture()
    def rows(self, myntra_rows: list[dict]) -> list[dict]:
        return myntra_rows

    @pytest.fixture()
    def mapped(self, myntra_mapped: list) -> list:
        return myntra_mapped

    def test_reader_yields_the_same_records(self, rows: list[dict]) -> None:
        with open_binary(SHARED / "myntra" / "styles.jsonl.gz") as fh:
            got = list(itertools.islice(read_jsonl(fh), N_ROWS))
        assert [n for n, _ in got] == list(range(1, N_ROWS + 1))
        assert [r for _, r in got] == rows

    def test_ids_titles_brands(self, rows: list[dict], mapped: list) -> None:
        assert len(mapped) == N_ROWS
        assert [p.id for p in mapped] == [str(r["id"]) for r in rows]
        assert len({p.id for p in mapped}) == N_ROWS
        for r, p in zip(rows, mapped):
            assert p.title == ws(r["title"])
            if _present(r.get("brand"), MISSING_MYNTRA):
                assert p.brand is not None and p.brand.display == ws(r["brand"])
            else:
                assert p.brand is None
        assert sum(p.brand is not None for p in mapped) > N_ROWS * 0.9

    def test_three_level_category(self, rows: list[dict], mapped: list) -> None:
        for r, p in zip(rows, mapped):
            expected = tuple(ws(r[k]) for k in ("masterCategory", "subCategory", "articleType")
                             if _present(r.get(k), MISSING_MYNTRA))
            assert p.category == expected
        assert sum(len(p.category) == 3 for p in mapped) > N_ROWS * 0.9

    def test_simple_field_facts(self, rows: list[dict], mapped: list) -> None:
        for r, p in zip(rows, mapped):
            for field in ("gender", "ageGroup", "baseColour", "season", "usage"):
                got = [v.display for a, v in p.facts if a == field]
                if _present(r.get(field), MISSING_MYNTRA):
                    assert got == [ws(r[field])], (r["id"], field)
                else:
                    assert got == [], (r["id"], field)
        assert sum(any(a == "baseColour" for a, _ in p.facts) for p in mapped) > N_ROWS * 0.9

    def test_article_attributes_become_facts(self, rows: list[dict], mapped: list) -> None:
        with_attrs = 0
        for r, p in zip(rows, mapped):
            aa = r.get("articleAttributes") or {}
            expected = {(ws(k), ws(v)) for k, v in aa.items() if _present(v, MISSING_MYNTRA)}
            simple = {"gender", "ageGroup", "baseColour", "season", "usage"}
            got = {(a, v.display) for a, v in p.facts if a not in simple}
            assert got == expected, r["id"]
            with_attrs += bool(expected)
        assert with_attrs > N_ROWS * 0.5  # most products have some (the README says 83%)
        keys = {a for p in mapped for a, _ in p.facts}
        assert {"Pattern", "Fabric"} <= keys

    def test_properties(self, rows: list[dict], mapped: list) -> None:
        for r, p in zip(rows, mapped):
            assert p.properties.get("price") == float(r["price"])
            assert p.properties.get("year") == int(r["year"])
            for prop, field in (("colour1", "colour1"), ("fashion_type", "fashionType"), ("variant_name", "variantName")):
                if _present(r.get(field), MISSING_MYNTRA):
                    assert p.properties[prop] == ws(r[field])
                else:
                    assert prop not in p.properties

    def test_description_from_descriptors(self, rows: list[dict], mapped: list) -> None:
        n = 0
        for r, p in zip(rows, mapped):
            d = (r.get("descriptors") or {}).get("description")
            if _present(d, MISSING_MYNTRA) and ws(d):
                n += 1
                first_words = ws(d).split(" ")[:3]
                assert p.description is not None and p.description.startswith(" ".join(first_words)), r["id"]
        assert n > N_ROWS * 0.5

    def test_real_html_is_stripped(self) -> None:
        # the first product whose descriptors carry HTML tags (a few dozen in the catalog)
        with gzip.open(_need(SHARED / "myntra" / "styles.jsonl.gz"), "rt", encoding="utf-8") as fh:
            row = next((json.loads(line) for line in itertools.islice(fh, 10_000)
                        if re.search(r"<(b|br|p|li|ul)\b", line)), None)
        if row is None:
            pytest.skip("no product with HTML in the first 10,000 rows")
        p = ingest.shipped_mapping("myntra").apply(row)
        assert p.description is not None
        assert not re.search(r"<\s*/?\s*(b|br|p|li|ul)\b", p.description)
        raw = row["descriptors"]["description"]
        words = [w for w in re.sub(r"<[^>]*>", " ", raw).split() if w.isalpha()][:5]
        for w in words:
            assert w in p.description


@pytest.fixture(scope="module")
def bigbasket_rows() -> list[tuple[int, object]]:
    with open_binary(_need(SHARED / "bigbasket" / "products.csv.gz")) as fh:
        return list(itertools.islice(read_csv(fh), N_ROWS))


@pytest.fixture(scope="module")
def bigbasket_expected() -> list[dict]:
    """The same rows read with the csv module alone."""
    with gzip.open(_need(SHARED / "bigbasket" / "products.csv.gz"), "rt", encoding="utf-8", newline="") as fh:
        r = csv.reader(fh)
        header = next(r)
        return [dict(enumerate(row)) | {"_header": header} for row in itertools.islice(r, N_ROWS)]


class TestBigBasket:
    @pytest.fixture()
    def rows(self, bigbasket_rows: list) -> list:
        return bigbasket_rows

    @pytest.fixture()
    def expected_rows(self, bigbasket_expected: list[dict]) -> list[dict]:
        return bigbasket_expected

    def test_reader_output(self, rows: list, expected_rows: list[dict]) -> None:
        assert not [x for x in rows if isinstance(x[1], RowError)]
        assert len(rows) == N_ROWS
        header = expected_rows[0]["_header"]
        assert header[:9] == ["index", "product", "category", "sub_category", "brand", "sale_price",
                              "market_price", "type", "rating"]
        for (line, rec), exp in zip(rows, expected_rows):
            assert rec["index"] == exp[0] and rec["product"] == exp[1] and rec["brand"] == exp[4]
            assert len(rec) == len(header)
            assert all(k.startswith("_col") for k, h in zip(rec, header) if not h.strip())
        assert rows[0][0] == 2  # line 1 is the header
        assert [line for line, _ in rows] == sorted({line for line, _ in rows})

    def test_mapping(self, rows: list, expected_rows: list[dict]) -> None:
        mp = ingest.shipped_mapping("bigbasket")
        missing = {"", "NA", "nan"}
        for (line, rec), exp in zip(rows, expected_rows):
            p = mp.apply(rec)
            assert p.id == exp[0].strip()
            assert p.title == ws(exp[1])
            assert p.brand is not None and p.brand.display == ws(exp[4])
            assert p.category == tuple(ws(exp[i]) for i in (2, 3, 7) if exp[i].strip() not in missing)
            assert p.facts == ()
            assert p.properties["sale_price"] == float(exp[5])
            assert p.properties["market_price"] == float(exp[6])
            if exp[8].strip() in missing:
                assert "rating" not in p.properties
            else:
                assert p.properties["rating"] == float(exp[8])
        # a brand with a trailing space in the file comes out trimmed
        assert any(exp[4] != exp[4].strip() for exp in expected_rows)


@pytest.fixture(scope="module")
def taobao_rows() -> list[dict]:
    return _jsonl_head(SHARED / "taobao_zh" / "titles.jsonl.gz", N_ROWS)


@pytest.fixture(scope="module")
def taobao_mapped(taobao_rows: list[dict]) -> list:
    mp = ingest.shipped_mapping("taobao")
    return [mp.apply(r) for r in taobao_rows]


class TestTaobao:
    @pytest.fixture()
    def rows(self, taobao_rows: list[dict]) -> list[dict]:
        return taobao_rows

    @pytest.fixture()
    def mapped(self, taobao_mapped: list) -> list:
        return taobao_mapped

    def test_hashed_ids(self, rows: list[dict], mapped: list) -> None:
        for p in mapped:
            assert re.fullmatch(r"tb-[0-9a-f]{16}", p.id)
        by_text: dict[str, str] = {}
        for r, p in zip(rows, mapped):
            assert by_text.setdefault(ws(r["text"]), p.id) == p.id  # same title, same id
        assert len(set(by_text.values())) == len(by_text)  # different titles, different ids
        again = [ingest.shipped_mapping("taobao").apply(r).id for r in rows]
        assert again == [p.id for p in mapped]

    def test_title_brand_and_facts(self, rows: list[dict], mapped: list) -> None:
        with_brand = 0
        for r, p in zip(rows, mapped):
            assert p.title == ws(r["text"])
            assert p.category == () and p.description is None
            brands = [e["text"] for e in r["entities"] if e["type"] == "HPPX" and ws(e["text"])]
            if brands:
                with_brand += 1
                assert p.brand is not None and p.brand.display == ws(brands[0])
            else:
                assert p.brand is None
            exp = {("product type", ws(e["text"]).casefold()) for e in r["entities"] if e["type"] == "HCCX"}
            exp |= {("model number", ws(e["text"]).casefold()) for e in r["entities"] if e["type"] == "XH"}
            got = {(a, v.display.casefold()) for a, v in p.facts}
            assert got == {x for x in exp if x[1] and x[1] not in {"na", "n/a", "null", "none", "nan"}}
            assert {a for a, _ in p.facts} <= {"product type", "model number"}
            assert p.properties == {"split": r["split"]}
        assert with_brand > 20  # a third of the titles name a brand
        assert sum(any(a == "product type" for a, _ in p.facts) for p in mapped) > N_ROWS * 0.8
