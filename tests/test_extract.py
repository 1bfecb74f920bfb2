"""The open-world value extractor (extract/): distant-supervision tagging (CJK, words, measures), resolution to
known values, a tiny CRF that reads brands it never saw, the model's round trip, and `attrgraph extract`."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests._deps import need

need("pycrfsuite")
need("jieba")

from extract import ExtractConfig, Example, Span, Stacker, combine, load, train  # noqa: E402
from extract.evaluate import grade, threshold_for_precision  # noqa: E402
from extract.resolve import Resolver, span_norm  # noqa: E402
from extract.supervision import Gazetteer, base_features, bio, locate, make_doc  # noqa: E402
from extract.text import tokenize  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "attrgraph" / "sample" / "myntra_sample.jsonl.gz"


# -- distant supervision ------------------------------------------------------------------------------------------
def test_cjk_text_is_tagged_per_character_with_jieba_features() -> None:
    doc = make_doc("p1", "GIORDANO佐丹奴简约韩版亲子鞋 2018新款")
    assert [t.text for t in doc.tokens][:5] == ["GIORDANO", "佐", "丹", "奴", "简"]
    r = locate(doc, ["佐丹奴"])
    assert r == [(1, 4)]
    assert doc.span_text(1, 4) == ("佐丹奴", "title", 8, 11)
    assert bio(len(doc.tokens), r)[:5] == ["O", "B", "I", "I", "O"]
    feats = base_features(doc)
    assert "jw=佐丹奴" in feats[1] and any(f.startswith("jp=") for f in feats[1])
    assert locate(doc, ["giordano"]) == [(0, 1)]  # case-insensitive, Latin as a word inside CJK text


def test_words_are_matched_case_and_space_insensitive_on_word_boundaries() -> None:
    doc = make_doc("p2", "Roadster Men NAVY  Blue shirt", "<p>Made of <b>cotton</b> blend</p>")
    assert locate(doc, ["Navy Blue"]) == [(2, 4)]
    assert doc.span_text(2, 4)[0] == "NAVY  Blue"
    assert locate(doc, ["Blu"]) == []  # not inside a word
    (i, j), = locate(doc, ["Cotton"])  # the description, HTML tags skipped, offsets into the raw field
    text, field, start, end = doc.span_text(i, j)
    assert (text, field) == ("cotton", "description")
    assert doc.fields["description"][start:end] == "cotton"


def test_measures_are_found_by_quantity_and_normalised() -> None:
    doc = make_doc("p3", "Milton steel bottle 950ML blue, pack of 2", "Height 20.8 cm")
    (i, j), = locate(doc, ["0.95 l"])  # the asserted value in another unit
    assert doc.span_text(i, j)[0] == "950ML"
    assert span_norm("950ML") == ("950 ml", 950.0, "ml")
    (i, j), = locate(doc, ["208 mm"])
    assert doc.span_text(i, j)[:2] == ("20.8 cm", "description")
    assert "qty=B" in base_features(doc)[i]


def test_gazetteer_marks_longest_known_value() -> None:
    doc = make_doc("p4", "new Van Heusen Sport shirt")
    g = Gazetteer(["Van Heusen", "Van Heusen Sport", "shirt"])
    f = g.features(doc)
    assert "gz=B" in f[1] and "gz=I" in f[2] and "gz=I" in f[3] and "gz=B" in f[4]


# -- resolution ----------------------------------------------------------------------------------------------------
def test_resolution_exact_alias_and_new() -> None:
    r = Resolver(["Navy Blue", "Van Heusen", "Red", "500 g"])
    assert r.resolve("Navy Blue") == ("Navy Blue", False)
    assert r.resolve("NAVY  BLUE") == ("Navy Blue", True)  # case and spacing: an alias
    assert r.resolve("Navy-Blue") == ("Navy Blue", True)
    assert r.resolve("Van Huesen") == ("Van Heusen", True)  # two edits on 9 characters
    assert r.resolve("Rod") == (None, False)  # short strings must match exactly
    assert r.resolve("Van Hxxxxx") == (None, False)
    assert r.resolve("0.5kg") == ("500 g", True)  # measures by quantity
    assert r.resolve("5 kg") == (None, False)


def test_combine_ranks_known_and_new_values_in_one_list() -> None:
    sp = [Span("p", "brand", "Zorbo", "title", 0, 5, 0.9, "zorbo", model="m"),
          Span("p", "brand", "Nike", "title", 6, 10, 0.6, "nike", value="Nike", model="m")]
    out = combine([("Nike", 0.5), ("Puma", 0.3)], sp)
    assert [c.value for c in out][:2] == ["Zorbo", "Nike"]  # noisy-or without a fitted stacker
    assert out[0].new and not out[1].new and out[1].p_model == 0.5 and out[1].p_span == 0.6
    assert abs(out[1].p - (1 - 0.5 * 0.4)) < 1e-9
    # a stacker fitted on slots where the span is right and the model wrong learns to trust spans
    slots = [([("Nike", 0.5), ("Puma", 0.3)], [sp[0]], {"zorbo"})] * 20 + [([("Nike", 0.9)], [], {"nike"})] * 20
    st = Stacker().fit(slots)
    assert combine([("Nike", 0.5)], [sp[0]], st)[0].value == "Zorbo"
    assert threshold_for_precision(__import__("numpy").array([0.9, 0.8, 0.7, 0.2]),
                                   __import__("numpy").array([1, 1, 0, 0]), 0.8, min_kept=1) == 0.8


# -- a tiny CRF ----------------------------------------------------------------------------------------------------
def _synthetic(n: int, brands: list[str], seed: int) -> list[Example]:
    rng = random.Random(seed)
    colours = ["Blue", "Black", "White", "Green", "Red", "Grey"]
    kinds = ["Shirt", "Tshirt", "Jeans", "Shoes", "Watch", "Jacket"]
    out = []
    for k in range(n):
        b, c, t = rng.choice(brands), rng.choice(colours), rng.choice(kinds)
        g = rng.choice(["Men", "Women", "Unisex"])
        out.append(Example(f"s{seed}-{k}", f"{b} {g} {c} {t}", f"A {c.lower()} {t.lower()} by {b}.",
                           {"brand": [b], "baseColour": [c]}))
    return out


def _brands(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    syll = ["ka", "lo", "ri", "zen", "mo", "tar", "vi", "qu", "den", "sa", "po", "lux"]
    return sorted({"".join(rng.choice(syll) for _ in range(rng.randint(2, 3))).title() for _ in range(n)})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    seen = _brands(40, 1)
    unseen = [b for b in _brands(40, 2) if b not in seen]
    tr = _synthetic(300, seen, 1)
    cfg = ExtractConfig(min_located=10, max_iterations=60)
    m = train(tr, tmp_path_factory.mktemp("tiny") / "model", config=cfg)
    return m, _synthetic(80, unseen, 3), unseen


def test_tiny_crf_reads_brands_it_never_saw(tiny) -> None:
    m, test, unseen = tiny
    assert set(m.attributes) == {"brand", "baseColour"}
    res = grade(m, test, ["brand"])
    assert res["overall"]["unseen_slots"] == len(test)  # every test brand is new to the model
    assert res["overall"]["exact"] >= 0.9
    spans = m.predict(test[:5], ["brand"], top_k=1)
    assert len(spans) == 5 and all(s.new and s.value is None for s in spans)
    assert all(0.0 <= s.confidence <= 1.0 and s.model == m.model_id for s in spans)
    for e, s in zip(test, spans):
        assert (e.title if s.field == "title" else e.description)[s.start:s.end] == s.text


def test_known_values_resolve_and_support_is_counted(tiny) -> None:
    m, test, unseen = tiny
    spans = m.predict(test[:10], ["brand"], known={"brand": [unseen[0].upper()]})
    hits = [s for s in spans if s.norm == unseen[0].casefold()]
    for s in hits:
        assert s.value == unseen[0].upper() and s.alias  # case differs from the known spelling
    assert all(s.support == sum(1 for x in spans if x.norm == s.norm) for s in spans)


def test_round_trip_and_tamper(tiny, tmp_path: Path) -> None:
    m, test, _ = tiny
    out = m.save(tmp_path / "copy")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    m2 = load(out)
    assert m2.predict(test[:20], top_k=2) == m.predict(test[:20], top_k=2)
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert not any(p.suffix == ".pkl" for p in out.rglob("*"))
    f = out / meta["attributes"][0]["file"]
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(Exception, match="checksum"):
        load(out)


# -- the command line ----------------------------------------------------------------------------------------------
def test_cli_train_evaluate_predict_on_a_catalog(tmp_path: Path) -> None:
    from attrgraph.cli import cli

    run = CliRunner()
    model = tmp_path / "ex"
    src = ["--catalog", str(SAMPLE), "--mapping", "myntra", "--limit", "800"]
    r = run.invoke(cli, ["extract", "train", *src, "--out", str(model), "--attribute", "brand",
                         "--attribute", "baseColour", "--option", "max_iterations=50"])
    assert r.exit_code == 0, r.output
    assert "extractor trained" in r.output
    r = run.invoke(cli, ["extract", "evaluate", *src, "--model-dir", str(model), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["products"] > 50 and res["per_attribute"]["brand"]["exact"] > 0.6
    r = run.invoke(cli, ["extract", "predict", *src, "--model-dir", str(model), "--attribute", "brand"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in r.output.splitlines()]
    assert len(rows) == 800 and {"product_id", "text", "start", "end", "confidence", "new"} <= set(rows[0])
    r = run.invoke(cli, ["extract", "predict", *src, "--model-dir", str(tmp_path / "nothing")])
    assert r.exit_code != 0 and "not an extractor" in r.output
    r = run.invoke(cli, ["extract", "train", *src, "--out", str(model), "--option", "bogus=1"])
    assert r.exit_code != 0 and "unknown option 'bogus'" in r.output


# -- the README's figures ------------------------------------------------------------------------------------------
def test_readme_extract_block_equals_what_the_records_render() -> None:
    from bench import extract_table as et

    text = et.render()
    assert et.readme_block() == text, "run `python bench/extract_table.py --write-readme` (never edit inside the block)"
    recs = et.latest()
    assert recs, "bench/results/extract.jsonl has no record"
    for r in recs.values():
        assert len(r["commit"]) == 40 and r["bench"] == "extract"
        assert r["commit"][:9] in text
