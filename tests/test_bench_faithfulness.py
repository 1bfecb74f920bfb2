"""The deletion test's perturbations (bench/bench_faithfulness.py) delete what they claim to."""

from __future__ import annotations

import re

import numpy as np

from bench.bench_faithfulness import delete_cited, delete_random
from gnn.baselines import TOKEN_PATTERN

PATTERN = re.compile(TOKEN_PATTERN)
REC = {"key": "p1", "title": "Nike Blue Cotton T-shirt", "description": "<p>Soft cotton, blue dye.</p> Machine wash",
       "props": {"year": 2012, "usage": "Casual"}}


def _name(k: str) -> str:
    return k.lower()


def test_cited_words_chars_and_properties_are_deleted() -> None:
    r, counts = delete_cited(REC, ["cotton", "title~ nik", "usage=casual"], PATTERN, _name)
    assert "cotton" not in (r["title"] + r["description"]).lower()
    assert "Nike" not in r["title"] and "Blue" in r["title"] and "blue" in r["description"]
    assert r["props"] == {"year": 2012}
    assert counts == {"word": 2, "title_word": 1, "property": 1}
    assert REC["title"] == "Nike Blue Cotton T-shirt"  # the original record is untouched


def test_a_word_ngram_deletes_its_words_and_cjk_characters_count_one_by_one() -> None:
    r, counts = delete_cited(REC, ["blue cotton"], PATTERN, _name)
    assert "blue" not in r["title"].lower() and "cotton" not in r["description"].lower() and counts["word"] == 4
    zh = {"key": "z", "title": "红色连衣裙 红色", "description": "", "props": {}}
    r, counts = delete_cited(zh, ["红"], PATTERN, _name)
    assert "红" not in r["title"] and counts["word"] == 2


def test_random_deletion_removes_as_many_tokens_of_each_kind() -> None:
    counts = {"word": 2, "title_word": 1, "property": 1}
    r = delete_random(REC, counts, PATTERN, np.random.default_rng(0))
    before = len(PATTERN.findall(REC["title"] + " " + REC["description"]))
    after = len(PATTERN.findall(r["title"] + " " + r["description"]))
    assert before - after >= 3 and len(r["props"]) == 1
