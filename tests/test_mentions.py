"""gnn.mentions: which candidates a product's text names, and the GNN reading them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._deps import need

need("torch")
need("torch_geometric")

from gnn.mentions import mention_matrix, tokens  # noqa: E402
from gnn.model import GnnCompletionModel  # noqa: E402
from gnn.protocol import make_split  # noqa: E402
from gnn.snapshot import load_snapshot  # noqa: E402
from tests.test_gnn_model import FAST  # noqa: E402
from tests.test_protocol import write_snapshot  # noqa: E402


def test_tokens_split_words_and_cjk_characters() -> None:
    assert tokens("Navy-Blue T-Shirt") == ["navy", "blue", "t", "shirt"]
    assert tokens("虎扑Skechers斯凯奇") == ["虎", "扑", "skechers", "斯", "凯", "奇"]


def test_mentions_are_whole_token_sequences_in_any_script() -> None:
    texts = ["a Navy Blue shirt", "shredded paper", "夏季新款连衣裙女", "RED'); MATCH (n) DETACH DELETE n //", ""]
    names = [("Navy Blue", "navy blue"), ("red",), ("连衣裙",), ("blue",), ("裙子",)]
    m = mention_matrix(texts, names).toarray()
    assert m.tolist() == [[1, 0, 0, 1, 0],  # "red" is not in "shredded"; both "navy blue" and "blue" are named
                          [0, 0, 0, 0, 0],
                          [0, 0, 1, 0, 0],  # a Chinese value inside a title without spaces
                          [0, 1, 0, 0, 0],  # a hostile string is text like any other
                          [0, 0, 0, 0, 0]]
    assert m.dtype == np.float32


def span_catalog(n: int = 300, seed: int = 0) -> list[dict[str, Any]]:
    """Titles name one of 60 random model codes (a span of the title); nothing else says which."""
    rng = np.random.default_rng(seed)
    codes = [f"x{int(c)}" for c in rng.choice(10**6, 60, replace=False)]
    out = []
    for i in range(n):
        code = codes[int(rng.integers(len(codes)))]
        out.append({"key": f"p{i:04d}", "title": f"w{int(rng.integers(10**6))} {code} w{int(rng.integers(10**6))}",
                    "brand": f"b{i % 3}", "category": "A > X", "facts": {"model": [code]}})
    return out


@pytest.mark.parametrize("mentions", [True, False])
def test_the_model_reads_values_its_titles_name(tmp_path: Path, mentions: bool) -> None:
    snap = load_snapshot(write_snapshot(tmp_path / "s", span_catalog()))
    split = make_split(snap, seed=0, cold_share=0.0, include_brand=False)
    m = GnnCompletionModel(**{**FAST, "epochs": 3, "mentions": mentions}).fit(snap, split)
    test = split.pairs("test")
    from gnn.metrics import evaluate

    h = evaluate(m.score(test), per_attribute=False)["hits@1"]
    if mentions:
        a = split.attribute_id("model")
        assert float(m.net.mention_w[a, 0].detach()) > 3  # the title's mentions: started at their log-odds, strong here
        assert float(m.net.mention_w[a, 1].detach()) == 0.0  # no description names anything: no weight, no gradient
        assert h >= 0.95
    else:
        assert h < 0.6  # 60 codes, ~4 training products each: without mentions the model barely knows them


def test_a_value_named_only_in_the_description_is_read_from_it(tmp_path: Path) -> None:
    rows = span_catalog(seed=1)
    for r in rows:  # the code moves from the title to a specification line deep in the description
        code = r["facts"]["model"][0]
        r["title"] = " ".join(w for w in r["title"].split() if w != code)
        r["description"] = "<p>" + "Lorem ipsum dolor. " * 20 + f"</p><table><tr><td>Model</td><td>{code}</td></tr></table>"
    snap = load_snapshot(write_snapshot(tmp_path / "s", rows))
    split = make_split(snap, seed=0, cold_share=0.0, include_brand=False)
    from gnn.metrics import evaluate

    test = split.pairs("test")
    m = GnnCompletionModel(**{**FAST, "epochs": 3}).fit(snap, split)
    assert float(m.net.mention_w[split.attribute_id("model"), 1].detach()) > 3
    assert evaluate(m.score(test), per_attribute=False)["hits@1"] >= 0.95
    short = GnnCompletionModel(**{**FAST, "epochs": 3, "mention_description_chars": 100}).fit(snap, split)
    assert evaluate(short.score(test), per_attribute=False)["hits@1"] < 0.6  # the spec line is past 100 characters
