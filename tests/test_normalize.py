"""Unit tests for ingest/normalize.py: clean_text, quantities, synonyms, normalize_value (no Neo4j)."""

from __future__ import annotations

import pytest

from ingest import NormalizedValue, Synonyms, clean_text, normalize_value, parse_quantity
from ingest.normalize import format_quantity, match_key


# -- clean_text ---------------------------------------------------------------------------
class TestCleanText:
    def test_nfkc_folds_compatibility_characters(self) -> None:
        # fullwidth letters/digits, the "fi" ligature, a non-breaking space, superscript two
        assert clean_text("ＡＢＣ１２３") == "ABC123"
        assert clean_text("\ufb01ne") == "fine"
        assert clean_text("100\u00a0ml") == "100 ml"
        assert clean_text("m\u00b2") == "m2"

    def test_nfkc_composes_combining_sequences(self) -> None:
        decomposed = "Cafe\u0301"  # e + combining acute
        assert clean_text(decomposed) == "Caf\u00e9"
        assert len(clean_text(decomposed)) == 4

    @pytest.mark.parametrize("ch", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x0e", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"])
    def test_control_characters_are_dropped(self, ch: str) -> None:
        assert clean_text(f"ab{ch}cd") == "abcd"

    def test_nul_bytes_anywhere_are_dropped(self) -> None:
        assert clean_text("\x00\x00Nike\x00 Shoes\x00") == "Nike Shoes"
        assert "\x00" not in clean_text("\x00" * 1000 + "x")

    def test_whitespace_is_collapsed_and_stripped(self) -> None:
        assert clean_text("  a \t\t b\n\nc\r\n d  ") == "a b c d"
        assert clean_text("a\u2028b\u2029c\u3000d") == "a b c d"  # line/paragraph separators, ideographic space

    def test_only_whitespace_and_controls_gives_empty_string(self) -> None:
        assert clean_text(" \t\n\x00\x1f ") == ""

    def test_non_strings_are_stringified(self) -> None:
        assert clean_text(1495) == "1495"
        assert clean_text(2.5) == "2.5"
        assert clean_text(None) == "None"

    def test_max_len_truncates(self) -> None:
        assert clean_text("abcdefghij", max_len=4) == "abcd"
        assert clean_text("abc", max_len=4) == "abc"
        assert len(clean_text("x" * 1_000_000, max_len=1000)) == 1000

    def test_max_len_counts_after_cleaning(self) -> None:
        # the controls and the whitespace run are removed before the length is checked
        assert clean_text("a\x00\x00\x00b     c", max_len=5) == "ab c"

    def test_keep_newlines_keeps_line_breaks_but_cleans_each_line(self) -> None:
        s = "  first   line \r\nsecond\tline\n\n\n\n\nthird\x00 line  \n"
        assert clean_text(s, keep_newlines=True) == "first line\nsecond line\n\nthird line"

    def test_without_keep_newlines_line_breaks_become_spaces(self) -> None:
        assert clean_text("a\nb\n\nc") == "a b c"

    def test_keep_newlines_at_most_one_blank_line(self) -> None:
        out = clean_text("a" + "\n" * 10 + "b", keep_newlines=True)
        assert out == "a\n\nb"


# -- quantities ------------------------------------------------------------------------------
class TestParseQuantity:
    @pytest.mark.parametrize(
        "text, qty, unit",
        [
            ("500 g", 500.0, "g"),
            ("0.5 kg", 500.0, "g"),
            ("500gm", 500.0, "g"),
            ("500 GMS", 500.0, "g"),
            ("1,000 g", 1000.0, "g"),
            ("12,345,678 g", 12_345_678.0, "g"),
            ("250 mg", 0.25, "g"),
            ("2 Kgs", 2000.0, "g"),
            (".5 kg", 500.0, "g"),
            ("1.5 L", 1500.0, "ml"),
            ("250ml", 250.0, "ml"),
            ("1 Ltr", 1000.0, "ml"),
            ("33 cl", 330.0, "ml"),
            ("2 pcs", 2.0, "pcs"),
            ("1 piece", 1.0, "pcs"),
            ("15 mm", 1.5, "cm"),
            ("2 m", 200.0, "cm"),
            ("  100 g.  ", 100.0, "g"),  # surrounding space, trailing dot
        ],
    )
    def test_parses_number_and_unit(self, text: str, qty: float, unit: str) -> None:
        got = parse_quantity(text)
        assert got is not None
        assert got[0] == pytest.approx(qty)
        assert got[1] == unit

    def test_imperial_units_convert(self) -> None:
        q = parse_quantity("1 lb")
        assert q is not None and q[1] == "g" and q[0] == pytest.approx(453.59237)
        q = parse_quantity("2 oz")
        assert q is not None and q[1] == "g" and q[0] == pytest.approx(56.69904625)
        q = parse_quantity('3"')
        assert q is not None and q == (pytest.approx(7.62), "cm")

    @pytest.mark.parametrize(
        "text",
        [
            "M", "XL", "Free Size", "2 in 1", "500 g x 2", "2 x 500 g", "Pack of 2", "about 500 g", "500",
            "g", "", "   ", "500 gold", "1e3 g", "12,00 g", "-5 g", "5 kgs of rice", "10/20 g",
        ],
    )
    def test_values_that_are_not_a_single_quantity(self, text: str) -> None:
        assert parse_quantity(text) is None

    @pytest.mark.parametrize("text", ["5 k\u0130lo", "5 l\u0131tre", "5 gm\u017f"])
    def test_unicode_case_lookalikes_do_not_crash(self, text: str) -> None:
        # re.IGNORECASE matches these letters against i/s, but lower() spells them differently
        assert parse_quantity(text) is None

    def test_unicode_case_lookalikes_in_normalize_value(self) -> None:
        # dotted/dotless i survive NFKC: plain text, no crash; the long s is folded to "s" by NFKC
        for text in ("5 k\u0130lo", "5 l\u0131tre"):
            nv = normalize_value(text)
            assert nv is not None and nv.quantity is None and nv.display == text
        assert normalize_value("5 gm\u017f").norm == "5 g"


class TestFormatQuantity:
    def test_whole_numbers_have_no_decimals(self) -> None:
        assert format_quantity(500.0, "g") == "500 g"
        assert format_quantity(1500.0, "ml") == "1500 ml"
        assert format_quantity(1e-10 + 3, "pcs") == "3 pcs"

    def test_fractions_keep_six_significant_digits(self) -> None:
        assert format_quantity(0.25, "g") == "0.25 g"
        assert format_quantity(147.8676478125, "ml") == "147.868 ml"


# -- normalize_value ------------------------------------------------------------------------
class TestNormalizeValue:
    @pytest.mark.parametrize("raw", ["500 g", "0.5 kg", "500gm", "500 GMS", "500 Grams", ".5 KG"])
    def test_spellings_of_the_same_weight_share_one_key(self, raw: str) -> None:
        nv = normalize_value(raw)
        assert nv is not None
        assert nv.norm == "500 g"
        assert nv.quantity == pytest.approx(500.0) and nv.unit == "g"
        assert nv.display == raw  # the original is kept for people

    def test_litres_become_millilitres(self) -> None:
        nv = normalize_value("1.5 L")
        assert nv == NormalizedValue("1.5 L", "1500 ml", 1500.0, "ml")
        assert normalize_value("1500ml").norm == normalize_value("1.5 litres").norm == "1500 ml"

    def test_thousands_separator(self) -> None:
        assert normalize_value("1,000 g").norm == "1000 g"
        assert normalize_value("1,000 g").norm == normalize_value("1 kg").norm

    def test_pieces(self) -> None:
        nv = normalize_value("2 pcs")
        assert nv.norm == "2 pcs" and nv.quantity == 2.0 and nv.unit == "pcs"

    @pytest.mark.parametrize("raw, norm", [("M", "m"), ("2 in 1", "2 in 1"), ("500 g x 2", "500 g x 2"), ("Navy Blue", "navy blue")])
    def test_non_quantities_are_case_folded_text(self, raw: str, norm: str) -> None:
        nv = normalize_value(raw)
        assert nv is not None
        assert nv.norm == norm and nv.display == raw
        assert nv.quantity is None and nv.unit is None

    def test_size_m_is_not_metres(self) -> None:
        # "M" (a size) must never be read as a length; "1 M" is one
        assert normalize_value("M").unit is None
        assert normalize_value("1 M").norm == "100 cm"

    def test_parse_units_false_keeps_text(self) -> None:
        nv = normalize_value("0.5 kg", parse_units=False)
        assert nv == NormalizedValue("0.5 kg", "0.5 kg", None, None)

    def test_casefold_not_just_lower(self) -> None:
        assert normalize_value("STRASSE").norm == normalize_value("straße").norm == "strasse"

    def test_value_is_cleaned_before_keying(self) -> None:
        nv = normalize_value("  Navy\x00  Blue\t")
        assert nv.display == "Navy Blue" and nv.norm == "navy blue"

    def test_fullwidth_quantity(self) -> None:
        assert normalize_value("５００ｇ").norm == "500 g"

    @pytest.mark.parametrize("raw", ["", "   ", "\x00\x00", "\t\n", "\x1f"])
    def test_nothing_left_gives_none(self, raw: str) -> None:
        assert normalize_value(raw) is None

    def test_max_len(self) -> None:
        nv = normalize_value("y" * 5000, max_len=100)
        assert nv.display == "y" * 100 and nv.norm == "y" * 100
        assert len(normalize_value("z" * 5000).display) == 1000  # default cap

    def test_non_string_raw(self) -> None:
        assert normalize_value(42).norm == "42"


# -- synonyms ---------------------------------------------------------------------------------
class TestSynonyms:
    TABLE = {
        "*": {"grey": "Gray", "n/a": "", "navy": "Dark Blue"},
        "baseColour": {"navy": "Navy Blue", "off white": "Off White"},
    }

    def test_attribute_synonym_applies_case_insensitively(self) -> None:
        syn = Synonyms(self.TABLE)
        nv = normalize_value("NAVY", attribute="baseColour", synonyms=syn)
        assert nv.display == "Navy Blue" and nv.norm == "navy blue"
        nv = normalize_value("  Off   WHITE ", attribute="baseColour", synonyms=syn)
        assert nv.display == "Off White"

    def test_star_applies_to_every_attribute(self) -> None:
        syn = Synonyms(self.TABLE)
        for attr in ("baseColour", "colour1", None):
            nv = normalize_value("grey", attribute=attr, synonyms=syn)
            assert nv.display == "Gray" and nv.norm == "gray"

    def test_attribute_table_wins_over_star(self) -> None:
        syn = Synonyms(self.TABLE)
        assert normalize_value("navy", attribute="baseColour", synonyms=syn).display == "Navy Blue"
        assert normalize_value("navy", attribute="colour1", synonyms=syn).display == "Dark Blue"

    def test_other_attributes_do_not_see_an_attribute_table(self) -> None:
        syn = Synonyms({"baseColour": {"off white": "Off White"}})
        assert normalize_value("off white", attribute="colour2", synonyms=syn).display == "off white"

    def test_synonym_to_empty_drops_the_value(self) -> None:
        syn = Synonyms(self.TABLE)
        assert normalize_value("N/A", attribute="anything", synonyms=syn) is None

    def test_unknown_spelling_unchanged(self) -> None:
        syn = Synonyms(self.TABLE)
        nv = normalize_value("Teal", attribute="baseColour", synonyms=syn)
        assert nv.display == "Teal" and nv.norm == "teal"

    def test_synonym_target_can_be_a_quantity(self) -> None:
        syn = Synonyms({"weight": {"half kilo": "0.5 kg"}})
        nv = normalize_value("Half Kilo", attribute="weight", synonyms=syn)
        assert nv.display == "0.5 kg" and nv.norm == "500 g" and nv.unit == "g"

    def test_canonical_values_are_cleaned(self) -> None:
        syn = Synonyms({"*": {"x": "  Ex\x00tra  "}})
        assert syn.canonical("a", "X") == "Extra"

    def test_truthiness(self) -> None:
        assert not Synonyms()
        assert not Synonyms({})
        assert Synonyms({"*": {"a": "b"}})

    def test_match_key(self) -> None:
        assert match_key("  Navy\tBLUE ") == "navy blue"
