"""Text encoders: offline loading, agreement with sentence-transformers, the registry, the cache,
the static encoder distilled from the transformer (and its on-disk table)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from tests._deps import need

need("torch")
need("transformers")

from gnn.errors import EncoderError  # noqa: E402
from gnn.text import (ENCODERS, CharNgramSvdEncoder, EmbeddingCache, StaticEncoder, default_model_path,  # noqa: E402
                      get_encoder, product_text)

TITLES = [
    "Nike Men Blue Running Shoes",
    "Nike Men Navy Blue Sports Shoes",
    "Lakme Absolute Lip Gloss Pink",
    "Fabindia Women Cotton Kurta Red",
    "耐克男士跑步鞋",
]


@pytest.fixture(scope="module")
def minilm():
    return get_encoder("minilm", batch_size=4, threads=2)


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_minilm_loads_offline_and_matches_sentence_transformers(no_network, monkeypatch) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    enc = get_encoder("minilm", batch_size=2, threads=2)
    v = enc.encode(TITLES)
    assert v.shape == (5, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    st = need("sentence_transformers")
    ref = st.SentenceTransformer(str(default_model_path()), device="cpu").encode(TITLES, normalize_embeddings=True)
    assert np.min(np.sum(v * ref, axis=1)) > 0.999  # the same model and pooling
    # semantics: the two Nike shoes are closer to each other than to lip gloss
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_any_local_model_directory(tmp_path: Path, minilm) -> None:
    import shutil

    copy = tmp_path / "my-model"
    shutil.copytree(default_model_path(), copy)
    enc = get_encoder("minilm", model_path=str(copy), batch_size=8)
    assert np.allclose(enc.encode(TITLES[:2]), minilm.encode(TITLES[:2]), atol=1e-5)
    with pytest.raises(EncoderError, match="not a Hugging Face model directory"):
        get_encoder("minilm", model_path=str(tmp_path))


def test_registry_errors() -> None:
    assert {"minilm", "char-svd", "static"} <= set(ENCODERS)
    with pytest.raises(EncoderError, match="unknown text encoder 'bert-huge'; valid: char-svd, minilm, static"):
        get_encoder("bert-huge")


def test_char_svd(tmp_path: Path) -> None:
    corpus = TITLES * 3 + [f"product number {i} colour {c}" for i, c in enumerate(["red", "blue", "green"] * 5)]
    enc = CharNgramSvdEncoder(dim=8).fit(corpus)
    v = enc.encode(TITLES)
    assert v.shape == (5, 8)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]  # shared character n-grams
    p = tmp_path / "enc.npz"
    enc.save(p)
    back = CharNgramSvdEncoder.load(p)
    assert back.version == enc.version and np.allclose(back.encode(TITLES), v)
    other = CharNgramSvdEncoder(dim=8).fit(corpus[::-1] + ["something else entirely"])
    assert other.version != enc.version  # a different fit is a different version: no stale cache hits
    with pytest.raises(EncoderError, match="not fitted"):
        CharNgramSvdEncoder().encode(["x"])


class CountingEncoder:
    """Wraps an encoder and counts the texts it is really asked to encode."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, []

    @property
    def version(self) -> str:
        return self.inner.version

    def encode(self, texts, progress=None):
        self.calls.append(list(texts))
        return self.inner.encode(texts, progress)


def test_cache_hits_and_misses(tmp_path: Path) -> None:
    enc = CountingEncoder(CharNgramSvdEncoder(dim=8).fit(TITLES * 4))
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = cache.encode(enc, TITLES + [TITLES[0]])  # a duplicate is encoded once
    assert enc.calls == [TITLES] and (cache.misses, cache.hits) == (6, 0)
    second = cache.encode(enc, TITLES)
    assert len(enc.calls) == 1 and cache.hits == 5  # nothing re-encoded
    assert np.array_equal(first[:5], second)
    cache.close()
    reopened = EmbeddingCache(tmp_path / "cache.sqlite")
    mixed = reopened.encode(enc, [TITLES[2], "a brand new title"])
    assert enc.calls[-1] == ["a brand new title"] and (reopened.hits, reopened.misses) == (1, 1)
    assert np.array_equal(mixed[0], first[2])
    refit = CountingEncoder(CharNgramSvdEncoder(dim=8).fit(TITLES * 4 + ["more text"]))
    reopened.encode(refit, TITLES)  # another version: a miss for every text
    assert refit.calls == [TITLES]
    reopened.close()


def test_an_interrupted_encode_keeps_the_chunks_it_finished(tmp_path: Path) -> None:
    class Failing(CountingEncoder):
        def encode(self, texts, progress=None):
            if len(self.calls) == 2:
                raise KeyboardInterrupt
            return super().encode(texts, progress)

    enc = Failing(CharNgramSvdEncoder(dim=8).fit(TITLES * 4))
    cache = EmbeddingCache(tmp_path / "cache.sqlite", chunk=2)
    with pytest.raises(KeyboardInterrupt):
        cache.encode(enc, TITLES)
    assert enc.calls == [TITLES[:2], TITLES[2:4]]
    again = CountingEncoder(enc.inner)
    out = cache.encode(again, TITLES)
    assert again.calls == [TITLES[4:]]  # the first two chunks came from the cache
    assert np.allclose(out, enc.inner.encode(TITLES), atol=1e-6)
    cache.close()


# -- static: a table distilled from the transformer ------------------------------------------------------

def refuse_network(mp: pytest.MonkeyPatch) -> None:
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a}")

    mp.setattr(socket.socket, "connect", refuse)
    mp.setattr(socket, "create_connection", refuse)
    mp.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random BERT with the shipped model's tokenizer (30k tokens): distils in about a second."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    d = tmp_path_factory.mktemp("tiny-bert")
    src = default_model_path()
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy(src / f, d / f)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_static(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> StaticEncoder:
    enc = get_encoder("static", model_path=str(tiny_model), pca_dims=16, threads=1,
                      cache_dir=str(tmp_path_factory.mktemp("encoders")))
    return enc.load()


def test_static_distils_once_into_its_cache_directory(tiny_static: StaticEncoder, tiny_model: Path,
                                                      monkeypatch) -> None:
    assert tiny_static.distilled and tiny_static.distill_seconds > 0
    d = tiny_static.table_dir
    assert d.name.startswith("static-")
    assert sorted(p.name for p in d.parent.iterdir()) == [d.name]  # nothing left of the temporary directory
    meta = json.loads((d / "meta.json").read_text())
    assert tiny_static.version.startswith(meta["table"]) and meta["shape"] == [30522, 16]
    mtime = (d / "table.npy").stat().st_mtime_ns
    v = tiny_static.encode(TITLES)

    def no_distilling(self):
        raise AssertionError("distilled again although the table is cached")

    monkeypatch.setattr(StaticEncoder, "_distill", no_distilling)
    again = get_encoder("static", model_path=str(tiny_model), pca_dims=16, cache_dir=str(d.parent)).load()
    assert not again.distilled and again.distill_seconds is None and again.table_dir == d
    assert (d / "table.npy").stat().st_mtime_ns == mtime
    assert np.array_equal(again.encode(TITLES), v)  # deterministic, and the same table read back


def test_static_shape_norm_and_determinism(tiny_static: StaticEncoder) -> None:
    v = tiny_static.encode(TITLES)
    assert tiny_static.dim == 16 and v.shape == (5, 16) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(v, tiny_static.encode(TITLES))
    # each text encodes alone as in a batch (a table lookup: no padding, no batch effects)
    assert np.allclose(tiny_static.encode([TITLES[3]])[0], v[3], atol=1e-6)
    # a text with no ordinary token (only the tokenizer's special tokens) is zeros, not NaN
    z = tiny_static.encode(["[CLS] [SEP]", ""])
    assert np.all(np.isfinite(z)) and not z.any()


def test_static_reads_the_whole_text(tiny_static: StaticEncoder) -> None:
    # a word after 300 tokens still changes the embedding: there is no 128-token cut
    long = product_text("Nike Men Blue Running Shoes", "<p>" + "comfortable breathable mesh upper " * 75 + "</p>",
                        max_chars=10_000)
    assert len(tiny_static._tokenizer()(long, add_special_tokens=False)["input_ids"]) > 300
    a, b = tiny_static.encode([long, long + " zebra"])
    assert a @ b < 1 - 1e-5


def test_static_gives_the_title_its_share(tiny_static: StaticEncoder, tiny_model: Path) -> None:
    boiler = "Wash care: machine wash cold, do not bleach, line dry in shade, warm iron only. " * 8
    texts = [product_text("Red skirt", boiler), product_text("Blue skirt", boiler), "Red skirt", "Red skirt."]
    plain = get_encoder("static", model_path=str(tiny_model), pca_dims=16, head_weight=0.0,
                        cache_dir=str(tiny_static.table_dir.parent))
    assert plain.table_dir == tiny_static.table_dir and plain.version != tiny_static.version  # same table
    p, h = plain.encode(texts), tiny_static.encode(texts)
    # the plain mean: two titles drowned in the same boilerplate look alike; the title share tells them apart
    assert p[0] @ p[1] > h[0] @ h[1] + 0.05
    # h = normalise(0.5 * normalise(mean of all) + 0.5 * normalise(mean of the title))
    z = 0.5 * p[0] + 0.5 * p[2]
    assert np.allclose(h[0], z / np.linalg.norm(z), atol=1e-5)
    assert np.allclose(h[2:], p[2:], atol=1e-6)  # no ". ": all head, the plain mean


def test_static_version_follows_model_and_settings(tiny_static: StaticEncoder, tiny_model: Path,
                                                   tmp_path: Path) -> None:
    import shutil

    kw = {"model_path": str(tiny_model), "cache_dir": str(tiny_static.table_dir.parent)}
    same = get_encoder("static", pca_dims=16, **kw)
    assert same.version == tiny_static.version and same.table_dir == tiny_static.table_dir
    others = [get_encoder("static", pca_dims=8, **kw), get_encoder("static", pca_dims=16, sif_coefficient=1e-3, **kw),
              get_encoder("static", pca_dims=16, sif_coefficient=None, **kw), get_encoder("static", pca_dims=None, **kw)]
    assert others[0].dim == 8 and others[3].dim == 32  # no PCA: the model's hidden size
    copy = tmp_path / "retrained"
    shutil.copytree(tiny_model, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["layer_norm_eps"] = 1e-6  # another model (a changed config is enough for the digest)
    (copy / "config.json").write_text(json.dumps(cfg))
    others.append(get_encoder("static", model_path=str(copy), pca_dims=16, cache_dir=kw["cache_dir"]))
    versions = {tiny_static.version} | {o.version for o in others}
    dirs = {tiny_static.table_dir} | {o.table_dir for o in others}
    assert len(versions) == len(dirs) == 1 + len(others)  # each its own cache key and table
    assert all(o._table is None for o in others)  # constructing does not distil; only load/encode does


def test_static_table_lives_under_the_attrgraph_home(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ATTRGRAPH_HOME", str(tmp_path))
    enc = get_encoder("static", model_path=str(tiny_model), pca_dims=4)
    assert enc.table_dir.parent == tmp_path / "encoders"


def test_static_errors(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="not a Hugging Face model directory"):
        get_encoder("static", model_path=str(tmp_path))
    with pytest.raises(EncoderError, match="pca_dims"):
        get_encoder("static", pca_dims=0, cache_dir=str(tmp_path))
    with pytest.raises(EncoderError, match="sif_coefficient"):
        get_encoder("static", sif_coefficient=2.0, cache_dir=str(tmp_path))
    with pytest.raises(EncoderError, match="head_weight"):
        get_encoder("static", head_weight=-0.1, cache_dir=str(tmp_path))


@pytest.fixture(scope="module")
def shipped_static(tmp_path_factory: pytest.TempPathFactory) -> StaticEncoder:
    """The static encoder distilled from the shipped MiniLM, with any network access failing."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.delenv(var, raising=False)
        refuse_network(mp)
        return get_encoder("static", threads=2, cache_dir=str(tmp_path_factory.mktemp("encoders"))).load()


@pytest.mark.slow
def test_static_from_the_shipped_model(shipped_static: StaticEncoder, minilm) -> None:
    enc = shipped_static
    assert enc.distilled and enc.path == default_model_path() and enc.dim == 256
    texts = ["red cotton t-shirt", "red cotton tshirt", "stainless steel water bottle"]
    v = enc.encode(texts)
    assert v.shape == (3, 256) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # similar texts closer than unrelated ones
    t = enc.encode(TITLES)
    assert t[0] @ t[1] > t[0] @ t[2] + 0.2  # the two Nike shoes, not the lip gloss
    # it is a distillation of minilm: the pairwise similarities of both agree
    items = TITLES[:4] + texts + ["Puma Women Black Sneakers", "Titan Men Analog Watch", "Maggi 2-Minute Noodles Masala"]
    s, m = enc.encode(items), minilm.encode(items)
    iu = np.triu_indices(len(items), 1)
    assert np.corrcoef((s @ s.T)[iu], (m @ m.T)[iu])[0, 1] > 0.6


def test_features_cli_with_the_static_encoder(tiny_model: Path, tmp_path: Path) -> None:
    """`attrgraph features --encoder static --model-path DIR` end to end on a snapshot (no Neo4j): the
    table is distilled once under $ATTRGRAPH_HOME/encoders and the whole product text is encoded."""
    from click.testing import CliRunner

    from attrgraph.cli import cli
    from gnn.snapshot import load_snapshot
    from tests.test_protocol import write_snapshot

    long_desc = "<p>" + "soft breathable knit fabric " * 60 + "</p>"
    snap_dir = write_snapshot(tmp_path / "snap", [
        {"key": "p1", "title": "Red cotton t-shirt", "description": long_desc, "brand": "Nike", "category": "A > X",
         "facts": {"colour": ["red"]}},
        {"key": "p2", "title": "Steel water bottle", "description": "", "brand": "Milton", "category": "B > Y",
         "facts": {"colour": ["silver"]}}])
    env = {"ATTRGRAPH_HOME": str(tmp_path / "home")}

    def run():
        res = CliRunner().invoke(cli, ["features", "--snapshot", str(snap_dir), "--encoder", "static", "--model-path",
                                       str(tiny_model), "--threads", "1", "--no-kge"], env=env, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    out = run()
    assert "static" in out
    tables = list((tmp_path / "home" / "encoders").iterdir())
    assert len(tables) == 1 and (tables[0] / "table.npy").exists()
    snap = load_snapshot(snap_dir)
    x = snap.features.get("text.product")
    enc = get_encoder("static", model_path=str(tiny_model), cache_dir=str(tmp_path / "home" / "encoders"))
    assert x.shape == (2, 32) and np.allclose  # the tiny model: 32 < 256 PCA dimensions(x, enc.encode(snap.texts("product")), atol=1e-6)
    mtime = (tables[0] / "table.npy").stat().st_mtime_ns
    run()  # a second run: the same table, every text from the cache
    assert (tables[0] / "table.npy").stat().st_mtime_ns == mtime
